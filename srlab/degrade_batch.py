"""Batched degradations in torch: a whole (N, 3, H, W) batch at once, on the batch's device.

``srlab.degradations.realesrgan`` degrades one numpy image at a time on the CPU, inside the
data loader; with a GPU that loader becomes the bottleneck. Real-ESRGAN itself (its
``RealESRGANModel.feed_data``) degrades the batch on the GPU instead, and
``realesrgan_batch`` does the same here, with the same parameter ranges
(``srlab.degradations.RealESRGANOptions``) and the same steps:

* every random draw is made up front with a numpy Generator, reusing
  ``degradations.random_kernel``/``sinc_kernel`` (so a seed such as ``[seed, step]`` gives the
  same batch), plus one seed for a torch Generator on the device that draws the noise;
* the per-sample kernels are zero-padded to one size and applied with one grouped
  convolution per step; the border is mirrored reflect-101 (OpenCV's ``BORDER_REFLECT_101``,
  as ``degradations.filter2d``), for any image size;
* resizing uses ``torch.nn.functional.interpolate`` (area/bilinear/bicubic). One tensor has
  one size, so the resize factor and mode are drawn once per batch, as the reference does;
  the order of the final JPEG and resize+sinc is also per batch. Everything else (kernels,
  blur on/off, Gaussian or Poisson noise, its strength, gray or colour noise, JPEG quality,
  final sinc on/off) is drawn per sample, as the CPU version draws it per image;
* JPEG is a torch re-implementation of libjpeg's baseline codec (``jpeg_batch``), with a
  per-sample quality; it matches OpenCV's encode/decode to within about half a grey level
  on average (see ``tests/test_degrade_batch.py`` for the measured bounds).

Interpolation differs from the CPU version (torch's area/bilinear/bicubic are not OpenCV's:
e.g. torch's "area" upscale is nearest-neighbour), so outputs are statistically alike, not
equal. Nothing needs gradients; rounding is exact, not the differentiable approximation of
DiffJPEG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from srlab import degradations as dg
from srlab.resize import imresize_torch

__all__ = [
    "BATCH_DEGRADATIONS",
    "degrade_batch",
    "bicubic_batch",
    "realesrgan_batch",
    "filter2d_batch",
    "resize_batch",
    "gaussian_noise_batch",
    "poisson_noise_batch",
    "jpeg_batch",
    "jpeg_quant_tables",
]

BATCH_DEGRADATIONS = ("bicubic", "realesrgan")
_LUMA = (0.299, 0.587, 0.114)  # BT.601, as degradations.add_poisson_noise

# libjpeg's base quantisation tables (ITU T.81 Annex K), natural (row = vertical frequency) order.
_LUMA_Q = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ]
)
_CHROMA_Q = np.full((8, 8), 99)
_CHROMA_Q[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]

# JFIF full-range YCbCr as libjpeg computes it: the encoder's matrix in 16-bit fixed point
# (0.299 -> 19595 / 65536, ...), the decoder's inverse in float (it matches libjpeg's tables).
_FIX = [[19595, 38470, 7471], [-11059, -21709, 32768], [32768, -27439, -5329]]
_YCC2RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])


# --------------------------------------------------------------------------- checks and helpers


def _check(hr: torch.Tensor, scale: int) -> None:
    if not isinstance(hr, torch.Tensor) or hr.dim() != 4 or hr.shape[1] != 3 or not hr.is_floating_point():
        got = f"{hr.dtype} {tuple(hr.shape)}" if isinstance(hr, torch.Tensor) else type(hr).__name__
        raise ValueError(f"expected a float (N, 3, H, W) tensor in [0, 1], got {got}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not a multiple of scale {scale}; crop the batch to a multiple first")


def _numpy_rng(generator) -> np.random.Generator:
    """A numpy Generator from a Generator, an int seed or sequence ([seed, step]), a torch
    Generator (one draw from it) or None (fresh entropy)."""
    if isinstance(generator, torch.Generator):
        seed = torch.randint(2**62, (1,), generator=generator, device=generator.device)
        return np.random.default_rng(int(seed))
    return dg._rng(generator)


def _per_sample(values, x: torch.Tensor) -> torch.Tensor:
    """A length-N numpy array as an (N, 1, 1, 1) tensor that broadcasts over x's samples."""
    dtype = torch.bool if np.asarray(values).dtype == bool else x.dtype
    return torch.as_tensor(np.asarray(values), dtype=dtype, device=x.device).view(-1, 1, 1, 1)


def _to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to the nearest of the 256 levels of an 8-bit image."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


# --------------------------------------------------------------------------- blur and resize


def _reflect101_index(size: int, pad: int, device) -> torch.Tensor:
    """Source indices of a reflect-101 padded axis (OpenCV's borderInterpolate, any pad)."""
    i = torch.arange(-pad, size + pad, device=device)
    if size == 1:
        return torch.zeros_like(i)
    period = 2 * (size - 1)
    i = i.remainder(period)
    return torch.where(i >= size, period - i, i)


def filter2d_batch(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter sample n of ``x`` (N, C, H, W) with ``kernels[n]`` (N, K, K), K odd: one grouped conv.

    Correlation like ``cv2.filter2D`` (equal to convolution for our point-symmetric kernels),
    border mirrored reflect-101 like ``degradations.filter2d``, also when K exceeds the image.
    Not clipped.
    """
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    p = k // 2
    x = x.index_select(2, _reflect101_index(h, p, x.device)).index_select(3, _reflect101_index(w, p, x.device))
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0)[:, None]  # (N*C, 1, K, K)
    out = F.conv2d(x.reshape(1, n * c, h + 2 * p, w + 2 * p), weight, groups=n * c)
    return out.reshape(n, c, h, w)


def _kernel_stack(kernels: list, device) -> torch.Tensor | None:
    """Kernels (numpy, odd sizes; None = no blur) zero-padded to the largest, as (N, K, K).

    None when no sample is blurred, so the convolution can be skipped.
    """
    if all(k is None for k in kernels):
        return None
    size = max(k.shape[0] for k in kernels if k is not None)
    out = np.zeros((len(kernels), size, size), np.float32)
    for i, k in enumerate(kernels):
        k = np.ones((1, 1)) if k is None else k  # identity: a unit impulse
        o = (size - k.shape[0]) // 2
        out[i, o : o + k.shape[0], o : o + k.shape[0]] = k
    return torch.from_numpy(out).to(device)


def resize_batch(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize the batch to ``size = (h, w)`` (at least 1 px) with torch's area/bilinear/bicubic, clipped."""
    h, w = max(1, int(size[0])), max(1, int(size[1]))
    corners = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=(h, w), mode=mode, **corners).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- noise


def gaussian_noise_batch(x: torch.Tensor, sigma, gray, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample white Gaussian noise, ``sigma[n]`` grey levels (0-255 units), clipped.

    ``gray[n]`` True: the same noise on every channel (as ``degradations.add_gaussian_noise``).
    ``sigma`` and ``gray`` are length-N arrays; ``generator`` lives on x's device.
    """
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    noise = torch.where(_per_sample(gray, x), noise[:, :1].expand_as(noise), noise)
    return (x + noise * (_per_sample(sigma, x) / 255.0)).clamp(0.0, 1.0)


def poisson_noise_batch(x: torch.Tensor, scale, gray, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample Poisson (shot) noise times ``scale[n]``, one photon per grey level, clipped.

    As ``degradations.add_poisson_noise``: a level v draws Poisson(255 v) / 255 - v; ``gray[n]``
    True draws it from the BT.601 luma and adds it to all channels.
    """
    luma = (x * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    gray = _per_sample(gray, x)
    base = torch.where(gray, luma.expand_as(x), x).clamp(0.0, 1.0)
    noise = torch.poisson(base * 255.0, generator=generator) / 255.0 - base
    noise = torch.where(gray, noise[:, :1].expand_as(noise), noise)  # one luma draw for all channels
    return (x + noise * _per_sample(scale, x)).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- JPEG


def jpeg_quant_tables(quality) -> tuple[np.ndarray, np.ndarray]:
    """libjpeg's luma and chroma tables, (N, 8, 8) ints, for integer qualities (rounded, 1-100).

    ``jpeg_set_quality(q, force_baseline=TRUE)``: scale 5000 / q below 50, else 200 - 2 q
    (percent); entries (base * scale + 50) // 100, kept in 1..255.
    """
    q = np.clip(np.rint(np.atleast_1d(quality)).astype(np.int64), 1, 100)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)[:, None, None]
    return tuple(np.clip((base[None] * scale + 50) // 100, 1, 255) for base in (_LUMA_Q, _CHROMA_Q))


def _dct_matrix(device, dtype) -> torch.Tensor:
    """JPEG's 2-D 8x8 DCT as one (64, 64) matrix acting on row-major flattened blocks.

    The orthonormal 8-point DCT-II D[u, x] = c(u) cos((2x + 1) u pi / 16), applied to rows and
    columns (D B D^T), is kron(D, D) on the flattened block: one matrix product per image.
    """
    u, xs = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    d = np.cos((2 * xs + 1) * u * np.pi / 16) * np.where(u == 0, math.sqrt(1 / 8), math.sqrt(2 / 8))
    return torch.as_tensor(np.kron(d, d), dtype=dtype, device=device)


def _quantise(plane: torch.Tensor, table: np.ndarray) -> torch.Tensor:
    """8x8-block DCT, quantise with ``table[n]`` (rounding), dequantise and invert.

    ``plane`` is (N, H, W) with H and W multiples of 8, samples level-shifted to [-128, 127].
    """
    n, h, w = plane.shape
    dct = _dct_matrix(plane.device, plane.dtype)
    blocks = plane.reshape(n, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(n, -1, 64)
    q = torch.as_tensor(table, dtype=plane.dtype, device=plane.device).reshape(n, 1, 64)
    ratio = blocks @ dct.T / q
    # libjpeg rounds halves away from zero. Integer samples make exact halves common; the
    # 1e-3 lets a half that float32 computed a hair low count as one.
    coef = torch.sign(ratio) * torch.floor(ratio.abs() + (0.5 + 1e-3)) * q
    return (coef @ dct).reshape(n, h // 8, w // 8, 8, 8).transpose(2, 3).reshape(n, h, w)


def _rgb_to_ycc(x: torch.Tensor) -> torch.Tensor:
    """libjpeg's exact RGB -> YCbCr of 8-bit values: 16-bit fixed point, in int32 on any device.

    Y rounds halves up, Cb and Cr round them down (libjpeg's ``ONE_HALF - 1``).
    """
    r, g, b = x.to(torch.int32).unbind(1)
    y = (_FIX[0][0] * r + _FIX[0][1] * g + _FIX[0][2] * b + 32768) >> 16
    cb = (_FIX[1][0] * r + _FIX[1][1] * g + _FIX[1][2] * b + (128 << 16) + 32767) >> 16
    cr = (_FIX[2][0] * r + _FIX[2][1] * g + _FIX[2][2] * b + (128 << 16) + 32767) >> 16
    return torch.stack([y, cb, cr], dim=1).to(x.dtype)


def jpeg_batch(x: torch.Tensor, quality) -> torch.Tensor:
    """JPEG encode + decode of each sample at its own libjpeg ``quality[n]`` (rounded to an int).

    libjpeg(-turbo) baseline as OpenCV calls it, step by step: 8-bit RGB -> YCbCr in libjpeg's
    fixed point; chroma averaged over 2x2 (4:2:0) with libjpeg's alternating rounding; 8x8
    DCT; quantisation with ``jpeg_quant_tables``, halves away from zero. Decoding: dequantise,
    inverse DCT, round to 8 bits, upsample chroma with libjpeg's "fancy" triangle filter
    (taps 3/4, 1/4 per axis: bilinear x2 with half-pixel centres, edge repeated) and its
    rounding, back to RGB. Images are padded to a multiple of 16 by repeating the last row
    and column, as libjpeg extends the edge. The DCTs are float, not libjpeg's integer ones,
    so a coefficient within ~0.005 of a rounding boundary can round the other way: see the
    tests for the measured distance to OpenCV.
    """
    n, _, h, w = x.shape

    def parity(size: int) -> torch.Tensor:  # 0, 1, 0, 1, ... along a row
        return torch.arange(size, device=x.device).remainder(2).to(x.dtype)

    luma_q, chroma_q = jpeg_quant_tables(np.broadcast_to(quality, (n,)))
    x = F.pad(torch.round(x.clamp(0.0, 1.0) * 255.0), (0, -w % 16, 0, -h % 16), mode="replicate")
    ycc = _rgb_to_ycc(x)
    sums = F.avg_pool2d(ycc[:, 1:], 2, divisor_override=1)
    chroma = torch.floor((sums + 1 + parity(sums.shape[-1])) / 4)  # (sum + 1, 2, 1, 2...) >> 2
    hc, wc = chroma.shape[-2:]
    y = _quantise(ycc[:, 0] - 128.0, luma_q) + 128.0
    chroma = _quantise(chroma.reshape(2 * n, hc, wc) - 128.0, np.repeat(chroma_q, 2, axis=0)) + 128.0
    chroma = torch.round(chroma.clamp(0, 255)).reshape(n, 2, hc, wc)
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    chroma = torch.floor(chroma + 0.5 - parity(2 * wc) / 16)  # (16 v + 8, 7, 8, 7...) >> 4
    ycc = torch.cat([torch.round(y.clamp(0, 255))[:, None], chroma - 128.0], dim=1)
    rgb = torch.einsum("ij,njhw->nihw", torch.as_tensor(_YCC2RGB, dtype=x.dtype, device=x.device), ycc)
    return torch.round(rgb).clamp(0, 255)[..., :h, :w] / 255.0


# --------------------------------------------------------------------------- Real-ESRGAN


@dataclass(frozen=True)
class _StageDraws:
    """One stage's random choices for a batch: per sample except ``factor`` and ``mode``."""

    kernels: list  # numpy kernel or None (no blur), per sample
    factor: float  # resize factor (per batch)
    mode: str  # interpolation (per batch)
    gaussian: np.ndarray  # bool: Gaussian (else Poisson) noise
    sigma: np.ndarray  # Gaussian std, grey levels
    poisson_scale: np.ndarray
    gray: np.ndarray  # bool: gray (else colour) noise
    quality: np.ndarray  # JPEG quality


def _draw_stage(rng: np.random.Generator, n: int, s: dg.StageOptions) -> _StageDraws:
    kernels = [dg.random_kernel(rng, s) if rng.uniform() < s.blur_prob else None for _ in range(n)]
    factor, mode = dg.draw_resize(rng, s.resize_probs, s.resize_range)
    return _StageDraws(
        kernels=kernels,
        factor=factor,
        mode=mode,
        gaussian=rng.uniform(size=n) < s.gaussian_noise_prob,
        sigma=rng.uniform(*s.noise_range, size=n),
        poisson_scale=rng.uniform(*s.poisson_scale_range, size=n),
        gray=rng.uniform(size=n) < s.gray_noise_prob,
        quality=np.rint(rng.uniform(*s.jpeg_range, size=n)),
    )


def _blur(x: torch.Tensor, kernels: list) -> torch.Tensor:
    stack = _kernel_stack(kernels, x.device)
    return x if stack is None else filter2d_batch(x, stack).clamp(0.0, 1.0)


def _noise(x: torch.Tensor, d: _StageDraws, g: torch.Generator) -> torch.Tensor:
    """Gaussian noise on the samples that drew it, Poisson noise on the others."""
    out = torch.empty_like(x)
    for pick, add, amount in (
        (d.gaussian, gaussian_noise_batch, d.sigma),
        (~d.gaussian, poisson_noise_batch, d.poisson_scale),
    ):
        idx = np.flatnonzero(pick)
        if idx.size:
            i = torch.as_tensor(idx, device=x.device)
            out[i] = add(x[i], amount[idx], d.gray[idx], g)
    return out


def _final_sinc(rng: np.random.Generator, opts: dg.RealESRGANOptions) -> np.ndarray | None:
    """The final ringing filter of one sample (None: no filter), drawn as the CPU version does."""
    if rng.uniform() >= opts.final_sinc_prob:
        return None
    size = opts.final_kernel_sizes[rng.integers(len(opts.final_kernel_sizes))]
    return dg.sinc_kernel(int(size), rng.uniform(*opts.final_sinc_cutoff))


def realesrgan_batch(
    hr: torch.Tensor, scale: int = 4, generator=None, opts: dg.RealESRGANOptions | None = None
) -> torch.Tensor:
    """Real-ESRGAN's second-order degradation of a whole batch, on the batch's device.

    The steps of ``degradations.realesrgan`` (blur, resize, noise, JPEG, twice, then the
    final resize + sinc filter and JPEG in random order); see the module docstring for
    what is drawn per sample and what per batch. Computed in float32.

    Args:
        hr: (N, 3, H, W) float tensor in [0, 1], H and W multiples of ``scale``, any device.
        scale: overall factor; the output is (N, 3, H // scale, W // scale).
        generator: numpy Generator, int seed or seed sequence (e.g. ``[seed, step]``), torch
            Generator, or None. The same seed gives the same batch on the same device (the
            noise is drawn on the device, so CPU and GPU batches differ).
        opts: parameter ranges (default: the paper's x4 settings, ``RealESRGANOptions()``).
    Returns: the LR batch in hr's dtype and device, rounded to 8-bit levels (k / 255).
    """
    _check(hr, scale)
    opts = dg.RealESRGANOptions() if opts is None else opts
    n, _, h, w = hr.shape
    lr_size = (h // scale, w // scale)
    if n == 0:
        return hr.new_zeros((0, 3) + lr_size)

    # Every draw up front, in a fixed order, so one seed fixes the whole batch.
    rng = _numpy_rng(generator)
    d1, d2 = _draw_stage(rng, n, opts.stage1), _draw_stage(rng, n, opts.stage2)
    sinc = [_final_sinc(rng, opts) for _ in range(n)]
    final_mode = dg.draw_resize_mode(rng)
    jpeg_last = rng.uniform() < 0.5
    g = torch.Generator(device=hr.device).manual_seed(int(rng.integers(2**62)))

    x = hr.float().clamp(0.0, 1.0)
    x = _blur(x, d1.kernels)
    x = resize_batch(x, (h * d1.factor, w * d1.factor), d1.mode)
    x = jpeg_batch(_noise(x, d1, g), d1.quality)

    x = _blur(x, d2.kernels)
    x = resize_batch(x, (lr_size[0] * d2.factor, lr_size[1] * d2.factor), d2.mode)  # relative to LR
    x = _noise(x, d2, g)

    def resize_and_sinc(img):
        return _blur(resize_batch(img, lr_size, final_mode), sinc)

    if jpeg_last:
        x = jpeg_batch(resize_and_sinc(x), d2.quality)
    else:
        x = resize_and_sinc(jpeg_batch(x, d2.quality))
    return _to_8bit(x).to(hr.dtype)


# --------------------------------------------------------------------------- dispatch


def bicubic_batch(hr: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')`` of an 8-bit batch, as ``degradations.bicubic``
    does it on uint8: height first, rounding (halves away from zero) after each axis.

    ``srlab.resize.imresize_torch`` with a size that keeps one axis is a pure resize of the
    other (the unit-scale matrix is the identity). float64, so the many exact halves of the
    dyadic weights round as in numpy. Returns 8-bit levels (k / 255) in hr's dtype.
    """
    _check(hr, scale)
    n, _, h, w = hr.shape
    x = torch.round(hr.double().clamp(0.0, 1.0) * 255.0)
    for size in ((h // scale, w), (h // scale, w // scale)):
        x = imresize_torch(x, size=size)
        x = (torch.sign(x) * torch.floor(x.abs() + 0.5)).clamp(0, 255)
    return (x / 255.0).to(hr.dtype)


def degrade_batch(name: str, hr: torch.Tensor, scale: int = 4, generator=None) -> torch.Tensor:
    """Degrade an (N, 3, H, W) float batch in [0, 1] on its device with the degradation ``name``.

    ``bicubic``: ``bicubic_batch``, equal to ``degradations.bicubic`` of the 8-bit images;
    ``realesrgan``: ``realesrgan_batch``, the only one that uses ``generator``.
    """
    if name not in BATCH_DEGRADATIONS:
        raise ValueError(
            f"no batched degradation {name!r}; choose one of {', '.join(BATCH_DEGRADATIONS)} "
            "(the others run per image: srlab.degradations.degrade)"
        )
    if name == "realesrgan":
        return realesrgan_batch(hr, scale, generator)
    return bicubic_batch(hr, scale)
