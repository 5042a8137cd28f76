"""Degradation models: how a high-resolution (HR) image becomes the low-resolution (LR) input.

An SR network learns to invert whatever degradation made its training LR images, so the
degradation model *is* part of the problem definition. Three are provided:

* ``bicubic``: MATLAB ``imresize(hr, 1/4, 'bicubic')``, the benchmark convention since
  SRCNN (Dong et al. 2014). Clean, noise-free, known kernel.
* ``blur_bicubic``: Gaussian blur (sigma 1.5) + bicubic downscale; close to, but not, the
  "BD" setting of Zhang et al., RDN (CVPR 2018), which blurs with a 7x7 Gaussian of sigma
  1.6. Models a softer camera/optics.
* ``realesrgan``: the randomised second-order model of Real-ESRGAN (Wang et al.,
  "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data",
  ICCV-W 2021, arXiv:2107.10833): blur, resize, noise and JPEG applied twice with random
  parameters, then a sinc (ringing) filter. Models photos that went through a camera,
  an upload, a re-encode and a resize.

Conventions: every degradation takes an HR numpy image (H, W, 3), uint8 or float in [0, 1],
and ``scale`` (default 4), and returns the (H // scale, W // scale, 3) LR image in the input's
dtype: integer in -> integer out (rounded, clipped); float in -> float32 in [0, 1] out.
H and W must be multiples of ``scale`` (use ``srlab.resize.modcrop``) so HR and LR pixels
stay aligned. Randomised ones take ``rng``: a ``numpy.random.Generator`` or an int seed;
every random choice is drawn from it, so the same seed gives the same LR image.

``usm_sharpen`` is not a degradation but its opposite, on the HR side: Real-ESRGAN's GAN
stage sharpens the ground truth by unsharp masking, trains the pixel and perceptual losses
towards it, and makes the LR image from the sharpened HR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.special import j1

from srlab.resize import imresize

__all__ = [
    "bicubic",
    "blur_bicubic",
    "realesrgan",
    "degrade",
    "DEGRADATIONS",
    "usm_sharpen",
    "RealESRGANOptions",
    "StageOptions",
    "gaussian_blur",
    "gaussian_kernel",
    "generalized_gaussian_kernel",
    "plateau_kernel",
    "sinc_kernel",
    "random_kernel",
    "filter2d",
    "resize",
    "random_resize",
    "add_gaussian_noise",
    "add_poisson_noise",
    "jpeg_compress",
]

RESIZE_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


# --------------------------------------------------------------------------- dtype helpers


def _to_float(img: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Image as float in [0, 1] (integer images are divided by their type's maximum)."""
    img = np.asarray(img)
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(dtype) / np.iinfo(img.dtype).max
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(dtype)
    raise TypeError(f"expected an integer or float image, got dtype {img.dtype}")


def _from_float(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Back to ``dtype``: integers are rounded and clipped, floats become float32 in [0, 1]."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        return np.clip(np.rint(img * top), 0, top).astype(dtype)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _rng(rng) -> np.random.Generator:
    """Accept a Generator, an int seed or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_hr(hr: np.ndarray, scale: int) -> np.ndarray:
    hr = np.asarray(hr)
    if hr.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {hr.shape}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(
            f"HR size {h}x{w} is not a multiple of scale {scale}; crop it first with "
            f"srlab.resize.modcrop(hr, {scale}) so HR and LR pixels stay aligned"
        )
    return hr


# --------------------------------------------------------------------------- classic models


def bicubic(hr: np.ndarray, scale: int = 4) -> np.ndarray:
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')``: the standard benchmark degradation.

    Used for Set5/Set14/BSD100/Urban100 LR images since SRCNN (Dong et al., ECCV 2014);
    `srlab.resize.imresize` reproduces MATLAB's antialiased bicubic byte for byte on uint8.

    Args:
        hr: (H, W[, C]) uint8/uint16 or float image, H and W multiples of ``scale``.
        scale: downscaling factor.
    Raises ValueError when H or W is not a multiple of ``scale`` (modcrop first).
    """
    hr = _check_hr(hr, scale)
    if np.issubdtype(hr.dtype, np.integer):
        return imresize(hr, 1 / scale)  # MATLAB's own per-axis rounding, not ours
    return _from_float(imresize(hr.astype(np.float64), 1 / scale), np.float32)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Isotropic Gaussian blur with standard deviation ``sigma`` pixels, same dtype out.

    The kernel spans +-ceil(3 sigma) pixels (99.7% of the mass) and the border is mirrored
    half-sample symmetrically (``cv2.BORDER_REFLECT``, scipy's ``mode='reflect'``), so edges
    are neither darkened (zero padding) nor smeared (replication).
    Integer images are blurred in float and rounded once, not in fixed point as OpenCV's
    uint8 path would, so the result is the exact Gaussian rounded.
    """
    img = np.asarray(img)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:  # a zero-width Gaussian; OpenCV would pick its own sigma for a 3x3 kernel
        return img.copy()
    radius = max(1, math.ceil(3 * sigma))
    ksize = 2 * radius + 1
    # Blur the raw values in float64 (blurring is linear, so no need to rescale to [0, 1]).
    out = cv2.GaussianBlur(
        img.astype(np.float64), (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    ).reshape(img.shape)  # OpenCV drops a single channel's axis
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(img.dtype)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def blur_bicubic(hr: np.ndarray, scale: int = 4, radius: float = 1.5) -> np.ndarray:
    """Gaussian blur (sigma 1.5), then MATLAB bicubic downscale.

    Close to, but not, the "BD" setting of Zhang et al., "Residual Dense Network for Image
    Super-Resolution" (CVPR 2018), which blurs with a 7x7 Gaussian of sigma 1.6: our seed
    project B used PIL's ``ImageFilter.GaussianBlur(radius=1.5)``, which is what this
    reproduces, so its scores are not comparable with published BD tables. PIL's "radius"
    is the standard deviation sigma (not the kernel's half-width), so ``radius`` here is
    sigma too. PIL approximates the Gaussian by three box blurs; we use the true Gaussian
    (see ``gaussian_blur``), which agrees with PIL to well under one grey level on photos
    away from the border.

    Integer images are rounded after the blur, as PIL's 8-bit output would be, then
    downscaled with MATLAB's rounding.

    Args:
        hr: (H, W[, C]) uint8 or float image, H and W multiples of ``scale``.
        scale: downscaling factor.
        radius: Gaussian standard deviation in HR pixels.
    """
    hr = _check_hr(hr, scale)
    return bicubic(gaussian_blur(hr, radius), scale)


def usm_sharpen(img: np.ndarray, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> np.ndarray:
    """Real-ESRGAN's unsharp masking (BasicSR ``usm_sharp`` / ``USMSharp``), same dtype out.

    Real-ESRGAN's GAN stage trains its L1 and perceptual losses towards a sharpened ground
    truth, so the generator learns to restore crisper edges than the data has (the GAN loss
    still sees the plain HR). With ``blur`` a wide Gaussian blur of the image:

        residual  = img - blur                 the detail a blur removes
        mask      = |residual| * 255 > threshold
        soft_mask = the mask, blurred the same way
        sharp     = clip(img + weight * residual, 0, 1)
        out       = soft_mask * sharp + (1 - soft_mask) * img

    The mask keeps flat and gently shaded areas (|residual| under ``threshold`` grey
    levels) as they are, so noise and smooth gradients are not amplified; blurring the mask
    fades the sharpening in and out instead of cutting it at the mask's edge. Each channel
    is sharpened on its own. Computed in float64; integer images are rounded once at the end.

    Args:
        img: (H, W[, C]) uint8/uint16 or float image in [0, 1].
        weight: strength: how much of the residual is added back.
        radius: BasicSR's name for the *width* of the Gaussian kernel, rounded up to odd:
            50 gives 51x51. Its sigma is OpenCV's default for that width,
            0.3 * ((width - 1) / 2 - 1) + 0.8 (8.0 for 51).
        threshold: smallest |residual| sharpened, in 8-bit grey levels.
    """
    x = _to_float(img, np.float64)
    width = radius + 1 if radius % 2 == 0 else radius

    def blur(a: np.ndarray) -> np.ndarray:
        # sigma 0: OpenCV derives it from the width. Reflect-101, the border of BasicSR's
        # torch filter2D (F.pad mode="reflect").
        return cv2.GaussianBlur(a, (width, width), 0, borderType=cv2.BORDER_REFLECT_101).reshape(a.shape)

    residual = x - blur(x)
    soft_mask = blur((np.abs(residual) * 255 > threshold).astype(np.float64))
    sharp = np.clip(x + weight * residual, 0.0, 1.0)
    return _from_float(soft_mask * sharp + (1 - soft_mask) * x, np.asarray(img).dtype)


# --------------------------------------------------------------------------- blur kernels


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (x = column, y = row) from the centre of an odd ``size`` square."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    ax = np.arange(size, dtype=np.float64) - size // 2
    return np.meshgrid(ax, ax)  # xx varies along columns, yy along rows


def _mahalanobis2(size: int, sigma_x: float, sigma_y: float | None, theta: float) -> np.ndarray:
    """x^T Sigma^-1 x on the kernel grid, with Sigma = R diag(sx^2, sy^2) R^T.

    R rotates by ``theta`` radians from the x (column) axis towards the y (row) axis, i.e.
    the long axis points along (cos theta, sin theta) in (column, row) coordinates.
    """
    sigma_y = sigma_x if sigma_y is None else sigma_y
    xx, yy = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u = c * xx + s * yy  # coordinate along the rotated x axis
    v = -s * xx + c * yy  # coordinate along the rotated y axis
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Normalised (an)isotropic Gaussian blur kernel, float64 (size, size).

    k(c) ~ exp(-c^T Sigma^-1 c / 2), Real-ESRGAN eq. (2): the standard model of optical
    and motion-free camera blur (Liu & Sun 2014; Zhang et al., BSRGAN 2021).

    Args:
        size: odd kernel width.
        sigma_x: standard deviation along the (rotated) x axis, in pixels.
        sigma_y: same along the rotated y axis (None = sigma_x, isotropic).
        theta: rotation angle in radians (x axis towards the downward y axis).
    """
    k = np.exp(-0.5 * _mahalanobis2(size, sigma_x, sigma_y, theta))
    return k / k.sum()


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> np.ndarray:
    """Generalised Gaussian kernel exp(-(c^T Sigma^-1 c)^beta / 2), normalised.

    Real-ESRGAN Sec. 3.2 (after Liu et al. 2020): beta < 1 gives a peaky kernel with heavy
    tails, beta > 1 a flatter top with sharper fall-off; beta = 1 is the Gaussian.
    """
    k = np.exp(-0.5 * _mahalanobis2(size, sigma_x, sigma_y, theta) ** beta)
    return k / k.sum()


def plateau_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> np.ndarray:
    """Plateau-shaped kernel 1 / (1 + (c^T Sigma^-1 c)^beta), normalised (Real-ESRGAN Sec. 3.2).

    A flat top with polynomially decaying tails: defocus-like blur that Gaussians miss.
    """
    k = 1.0 / (1.0 + _mahalanobis2(size, sigma_x, sigma_y, theta) ** beta)
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """Circular ideal low-pass ("2D sinc") kernel, normalised, float64 (size, size).

    k(r) = cutoff J1(cutoff r) / (2 pi r), the inverse Fourier transform of a disc of radius
    ``cutoff`` (radians per pixel, at most pi). Real-ESRGAN eq. (7) uses it to synthesise
    ringing and overshoot artefacts, which sharpening and hard low-pass resampling create.
    The kernel is truncated to ``size``, so its spectrum ripples around the ideal disc.
    """
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = cutoff * j1(cutoff * r) / (2 * np.pi * r)
    k[r == 0] = cutoff**2 / (4 * np.pi)  # the limit of J1(a r) / r as r -> 0 is a / 2
    return k / k.sum()


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter a float image with ``kernel``, mirrored border (reflect-101, like torch 'reflect').

    cv2.filter2D correlates; all our kernels are point-symmetric, so that equals convolution.
    """
    return cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)


def _beta(rng: np.random.Generator, beta_range: tuple[float, float]) -> float:
    """Shape parameter: below or above 1 with equal chance, as Real-ESRGAN samples it."""
    if rng.uniform() < 0.5:
        return float(rng.uniform(beta_range[0], 1.0))
    return float(rng.uniform(1.0, beta_range[1]))


# --------------------------------------------------------------------------- resize


def resize(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize a float image to ``size = (h, w)`` with OpenCV's area/bilinear/bicubic, clipped.

    Real-ESRGAN picks the interpolation at random because each leaves a different
    signature (area averages, bilinear blurs, bicubic overshoots); none antialiases except area.
    """
    h, w = max(1, int(size[0])), max(1, int(size[1]))
    out = cv2.resize(img, (w, h), interpolation=RESIZE_MODES[mode])
    if out.ndim == 2 and img.ndim == 3:  # OpenCV drops a singleton channel axis
        out = out[..., None]
    return np.clip(out, 0.0, 1.0)


def draw_resize_mode(rng: np.random.Generator) -> str:
    """One of :data:`RESIZE_MODES` (area, bilinear, bicubic), each as likely."""
    return list(RESIZE_MODES)[rng.integers(len(RESIZE_MODES))]


def draw_resize(
    rng: np.random.Generator, probs: tuple[float, float, float], scale_range: tuple[float, float]
) -> tuple[float, str]:
    """Real-ESRGAN's resize draw: up, down or keep with ``probs``, then the factor (up:
    U(1, ``scale_range[1]``), down: U(``scale_range[0]``, 1)) and the interpolation."""
    direction = rng.choice(3, p=np.asarray(probs, dtype=np.float64) / np.sum(probs))
    if direction == 0:
        factor = rng.uniform(1.0, scale_range[1])
    elif direction == 1:
        factor = rng.uniform(scale_range[0], 1.0)
    else:
        factor = 1.0
    return float(factor), draw_resize_mode(rng)


def random_resize(
    img: np.ndarray,
    rng: np.random.Generator,
    probs: tuple[float, float, float] = (0.2, 0.7, 0.1),
    scale_range: tuple[float, float] = (0.15, 1.5),
    base_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Random up/down/keep resize with a random interpolation (Real-ESRGAN Sec. 3.1).

    Args:
        img: float (H, W, C) image.
        rng: random generator.
        probs: probabilities of (up, down, keep).
        scale_range: (lowest down factor, highest up factor); up draws U(1, hi), down U(lo, 1).
        base_size: (h, w) the factor applies to; None = the image's own size. Stage 2 of
            Real-ESRGAN scales relative to the final LR size instead.
    """
    factor, mode = draw_resize(rng, probs, scale_range)
    h, w = img.shape[:2] if base_size is None else base_size
    return resize(img, (int(h * factor), int(w * factor)), mode)


# --------------------------------------------------------------------------- noise and JPEG


def add_gaussian_noise(img: np.ndarray, sigma: float, gray: bool = False, rng=None) -> np.ndarray:
    """Additive white Gaussian noise of std ``sigma`` grey levels (0-255 units), clipped.

    Models read-out/thermal sensor noise (Real-ESRGAN eq. 3). ``gray=True`` adds the same
    noise to every channel (luminance-only noise, as after in-camera processing); otherwise
    each channel gets independent noise (colour noise). Same dtype out.
    """
    rng = _rng(rng)
    x = _to_float(img)
    shape = x.shape[:2] + (1,) if (gray and x.ndim == 3) else x.shape
    noise = rng.standard_normal(shape).astype(np.float32) * np.float32(sigma / 255.0)
    return _from_float(np.clip(x + noise, 0.0, 1.0), img.dtype)


def add_poisson_noise(img: np.ndarray, scale: float, gray: bool = False, rng=None) -> np.ndarray:
    """Poisson (shot) noise, whose variance grows with intensity, times ``scale``; clipped.

    Photon counting: a pixel of level v (in [0, 1]) receives Poisson(255 v) photons, i.e.
    one photon per 8-bit grey level, so the noise variance is scale^2 v / 255 (Real-ESRGAN
    eq. 4). ``gray=True`` draws the noise from the BT.601 luma and adds it to all channels.
    Same dtype out.
    """
    rng = _rng(rng)
    x = _to_float(img)
    peak = 255.0
    if gray and x.ndim == 3 and x.shape[2] >= 3:
        base = (x[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    else:
        base = x
    base = np.clip(base, 0.0, 1.0).astype(np.float64)
    noise = (rng.poisson(base * peak) / peak - base).astype(np.float32)
    return _from_float(np.clip(x + np.float32(scale) * noise, 0.0, 1.0), img.dtype)


def jpeg_compress(img: np.ndarray, quality: float) -> np.ndarray:
    """Encode and decode as JPEG with libjpeg's ``quality`` (1-100) via OpenCV; same dtype out.

    JPEG's 8x8 DCT quantisation gives blocking and ringing, the most common artefact of
    images found online (Real-ESRGAN Sec. 3.1). OpenCV expects BGR, so channels are swapped
    around the codec: the colour transform and 4:2:0 chroma subsampling then act on the
    right channels. Float images are quantised to 8 bits first, as a real file would be.
    """
    if np.ndim(img) == 3 and np.shape(img)[2] not in (1, 3):
        raise ValueError(f"JPEG holds gray or RGB images, got {np.shape(img)[2]} channels (drop alpha first)")
    x = _to_float(img)
    u8 = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    colour = u8.ndim == 3 and u8.shape[2] == 3
    if colour:
        u8 = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(round(quality))])
    if not ok:
        raise RuntimeError("OpenCV failed to encode the image as JPEG")
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if colour:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    out = out.reshape(np.shape(img))
    if np.asarray(img).dtype == np.uint8:
        return out
    return _from_float(out.astype(np.float32) / 255.0, np.asarray(img).dtype)


# --------------------------------------------------------------------------- Real-ESRGAN


@dataclass(frozen=True)
class StageOptions:
    """Parameter ranges of one Real-ESRGAN degradation stage (defaults: the first stage).

    Values are those of the paper's x4 training config (train_realesrgan_x4plus.yml).
    """

    blur_prob: float = 1.0  # stage 1 always blurs; stage 2 skips blur 20% of the time
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernel_types: tuple[str, ...] = KERNEL_TYPES
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)  # generalised Gaussian shape
    betap_range: tuple[float, float] = (1.0, 2.0)  # plateau shape
    sinc_prob: float = 0.1  # a sinc kernel replaces the blur kernel this often
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5  # otherwise Poisson noise
    noise_range: tuple[float, float] = (1.0, 30.0)  # Gaussian sigma, 0-255 units
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)


SECOND_STAGE = StageOptions(
    blur_prob=0.8,
    blur_sigma=(0.2, 1.5),
    resize_probs=(0.3, 0.4, 0.3),
    resize_range=(0.3, 1.2),
    noise_range=(1.0, 25.0),
    poisson_scale_range=(0.05, 2.5),
)


@dataclass(frozen=True)
class RealESRGANOptions:
    """Real-ESRGAN's degradation settings: two stages plus the final sinc filter."""

    stage1: StageOptions = field(default_factory=StageOptions)
    stage2: StageOptions = field(default_factory=lambda: SECOND_STAGE)
    final_sinc_prob: float = 0.8
    final_kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    final_sinc_cutoff: tuple[float, float] = (math.pi / 3, math.pi)


def random_kernel(rng: np.random.Generator, opts: StageOptions = StageOptions()) -> np.ndarray:
    """Draw one blur kernel as Real-ESRGAN does (Sec. 3.2).

    Size uniform over ``kernel_sizes``; with ``sinc_prob`` a sinc kernel whose cutoff is
    U(pi/3, pi), or U(pi/5, pi) for sizes >= 13 (a wide kernel can hold a low cutoff);
    otherwise a kernel type from ``kernel_types``/``kernel_probs``, sigmas U(blur_sigma)
    (equal for *_iso types) and rotation U(-pi, pi).
    """
    size = int(opts.kernel_sizes[rng.integers(len(opts.kernel_sizes))])
    if rng.uniform() < opts.sinc_prob:
        low = math.pi / 3 if size < 13 else math.pi / 5
        return sinc_kernel(size, rng.uniform(low, math.pi))
    probs = np.asarray(opts.kernel_probs, dtype=np.float64)
    kind = opts.kernel_types[rng.choice(len(opts.kernel_types), p=probs / probs.sum())]
    sigma_x = rng.uniform(*opts.blur_sigma)
    if kind.endswith("_iso") or kind == "iso":
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y, theta = rng.uniform(*opts.blur_sigma), rng.uniform(-math.pi, math.pi)
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, _beta(rng, opts.betag_range))
    if kind.startswith("plateau"):
        return plateau_kernel(size, sigma_x, sigma_y, theta, _beta(rng, opts.betap_range))
    return gaussian_kernel(size, sigma_x, sigma_y, theta)


def _random_noise(img: np.ndarray, rng: np.random.Generator, opts: StageOptions) -> np.ndarray:
    """Gaussian or Poisson noise (chance ``gaussian_noise_prob``), gray with ``gray_noise_prob``."""
    if rng.uniform() < opts.gaussian_noise_prob:
        sigma = rng.uniform(*opts.noise_range)
        return add_gaussian_noise(img, sigma, gray=rng.uniform() < opts.gray_noise_prob, rng=rng)
    scale = rng.uniform(*opts.poisson_scale_range)
    return add_poisson_noise(img, scale, gray=rng.uniform() < opts.gray_noise_prob, rng=rng)


def realesrgan(hr: np.ndarray, scale: int = 4, rng=None, opts: RealESRGANOptions | None = None) -> np.ndarray:
    """Real-ESRGAN's randomised second-order degradation (Wang et al. 2021, arXiv:2107.10833).

    Classic models (blur -> downsample -> noise -> JPEG, applied once) are too simple for
    real photos, which are degraded repeatedly (camera, editing, upload, re-compression).
    Real-ESRGAN applies the classic chain twice with random parameters:

      stage 1: blur (random kernel) -> random resize -> Gaussian/Poisson noise -> JPEG
      stage 2: blur (80%) -> random resize relative to the LR size -> noise
      final, in random order (50/50):
          [resize to LR size -> sinc filter] -> JPEG   or   JPEG -> [resize -> sinc filter]
      where the sinc filter (ringing) is applied with probability 0.8, else identity.

    Computation is in float32 [0, 1], clipped after every step; the result is rounded to
    8-bit levels like the reference (its LR images are 8-bit), for float output too.

    Args:
        hr: (H, W, 3) uint8 or float [0, 1] image, H and W multiples of ``scale``.
        scale: overall downscaling factor; the output is (H // scale, W // scale, 3).
        rng: numpy Generator or int seed; the same seed gives the same output.
        opts: parameter ranges (default: the paper's x4 settings, ``RealESRGANOptions()``).
    """
    hr = _check_hr(hr, scale)
    if hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"realesrgan expects an (H, W, 3) RGB image, got shape {hr.shape}")
    rng = _rng(rng)
    opts = RealESRGANOptions() if opts is None else opts
    s1, s2 = opts.stage1, opts.stage2
    lr_size = (hr.shape[0] // scale, hr.shape[1] // scale)
    x = _to_float(hr)

    # Stage 1.
    if rng.uniform() < s1.blur_prob:
        x = np.clip(filter2d(x, random_kernel(rng, s1)), 0.0, 1.0)
    x = random_resize(x, rng, s1.resize_probs, s1.resize_range)
    x = _random_noise(x, rng, s1)
    x = jpeg_compress(x, rng.uniform(*s1.jpeg_range))

    # Stage 2: its resize is relative to the LR size, so the final resize stays moderate.
    if rng.uniform() < s2.blur_prob:
        x = np.clip(filter2d(x, random_kernel(rng, s2)), 0.0, 1.0)
    x = random_resize(x, rng, s2.resize_probs, s2.resize_range, base_size=lr_size)
    x = _random_noise(x, rng, s2)

    # Final sinc filter (or identity), drawn up front like the reference's data loader.
    if rng.uniform() < opts.final_sinc_prob:
        size = int(opts.final_kernel_sizes[rng.integers(len(opts.final_kernel_sizes))])
        final_kernel = sinc_kernel(size, rng.uniform(*opts.final_sinc_cutoff))
    else:
        final_kernel = None

    def resize_and_sinc(img):
        img = resize(img, lr_size, draw_resize_mode(rng))
        return img if final_kernel is None else np.clip(filter2d(img, final_kernel), 0.0, 1.0)

    # Resize and sinc stay together: the paper found sinc -> JPEG -> resize makes twisted lines.
    if rng.uniform() < 0.5:
        x = jpeg_compress(resize_and_sinc(x), rng.uniform(*s2.jpeg_range))
    else:
        x = resize_and_sinc(jpeg_compress(x, rng.uniform(*s2.jpeg_range)))

    x = np.rint(np.clip(x, 0.0, 1.0) * 255.0) / 255.0  # 8-bit LR, as the reference rounds
    return _from_float(x, hr.dtype)


# --------------------------------------------------------------------------- dispatch

DEGRADATIONS = {"bicubic": bicubic, "blur_bicubic": blur_bicubic, "realesrgan": realesrgan}


def degrade(name: str, hr: np.ndarray, scale: int = 4, rng=None) -> np.ndarray:
    """Apply the degradation called ``name`` (a key of ``DEGRADATIONS``); ``rng`` is used
    only by the randomised ones."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; choose one of {', '.join(DEGRADATIONS)}")
    if name == "realesrgan":
        return realesrgan(hr, scale, rng=rng)
    return DEGRADATIONS[name](hr, scale)
