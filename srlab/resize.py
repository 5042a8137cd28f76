"""MATLAB-compatible bicubic resizing, the way SR benchmarks make their LR images.

Every SR paper since SRCNN makes LR images with MATLAB's ``imresize(hr, 1/4, 'bicubic')``.
It differs from PIL/OpenCV bicubic in three ways, and each one moves PSNR:

1. the cubic kernel uses a = -0.5 (OpenCV uses -0.75);
2. when shrinking, the kernel is stretched by 1/scale (antialiasing), so a x4
   downscale averages over 16 input pixels per axis, not 4;
3. integer images are rounded back to their type after *each* axis (height first),
   with halves rounded away from zero: the weights are dyadic fractions, so exact
   .5 ties are common and numpy's round-half-to-even would differ.

Out-of-range taps at the borders take the edge pixel (replicate). With these
three rules the x4 LR images of Set5 and Set14 published with SelfExSR (made with
MATLAB) are reproduced byte for byte; mirroring the border instead (symmetric
padding) or skipping the per-axis rounding leaves 50-70 dB differences.

A resize along one axis is a linear map, so we build it as a small matrix
(out_len x in_len) and apply it with one matrix product per axis: the same
weights serve the numpy and the torch version. Height is resized first, then
width, as MATLAB does for equal scale factors.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["cubic_kernel", "resize_matrix", "imresize", "imresize_torch", "modcrop"]


def cubic_kernel(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel with MATLAB's a = -0.5 (support [-2, 2])."""
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    near = ((a + 2) * absx3 - (a + 3) * absx2 + 1) * (absx <= 1)
    far = (a * absx3 - 5 * a * absx2 + 8 * a * absx - 4 * a) * ((absx > 1) & (absx <= 2))
    return near + far


@lru_cache(maxsize=64)
def resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The (out_len, in_len) float64 matrix of one MATLAB bicubic resize along one axis.

    Row i holds the weights output pixel i gives to each input pixel. Pixel
    centres map as u = x / scale + 0.5 (1 - 1 / scale) in 1-based coordinates,
    as in MATLAB's ``contributions``; out-of-range taps take the edge pixel.
    """
    antialias = scale < 1
    kernel_width = 4.0 / scale if antialias else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # (out_len,) input-space centres
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # (out_len, taps), 1-based
    dist = u[:, None] - idx
    weights = scale * cubic_kernel(scale * dist) if antialias else cubic_kernel(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    idx0 = np.clip(idx - 1, 0, in_len - 1).astype(np.int64)  # 0-based, edge replicated
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), idx0.ravel()), weights.ravel())
    return matrix


def _output_shape(h: int, w: int, scale: float | None, size: tuple[int, int] | None):
    if size is not None:
        out_h, out_w = size
        return out_h, out_w, out_h / h, out_w / w
    if scale is None or scale <= 0:
        raise ValueError(f"imresize needs a positive scale or an output size, got scale={scale}")
    return math.ceil(h * scale), math.ceil(w * scale), scale, scale


def imresize(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None):
    """Resize an (H, W) or (H, W, C) image like MATLAB's ``imresize(img, scale, 'bicubic')``.

    Args:
        img: uint8, uint16 or float array. Integer images are computed in float64
            and rounded and clipped back to their dtype, as MATLAB does; float
            images stay float (no clipping).
        scale: factor, e.g. ``1/4`` to make an x4 LR image or ``4`` to upscale.
            Output size is ``ceil(H * scale)`` by ``ceil(W * scale)``.
        size: ``(out_h, out_w)`` instead of ``scale``.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an (H, W) or (H, W, C) array, got shape {img.shape}")
    h, w = img.shape[:2]
    out_h, out_w, scale_h, scale_w = _output_shape(h, w, scale, size)
    rows = resize_matrix(h, out_h, scale_h)  # (out_h, h)
    cols = resize_matrix(w, out_w, scale_w)  # (out_w, w)
    back = _back_to_dtype(img.dtype)
    out = back(np.tensordot(rows, img.astype(np.float64), axes=(1, 0)))  # (out_h, w[, C])
    out = back(np.moveaxis(np.tensordot(cols, out, axes=(1, 1)), 0, 1))  # (out_h, out_w[, C])
    return out.astype(img.dtype) if img.dtype.kind in "uif" else out


def _back_to_dtype(dtype: np.dtype):
    """MATLAB keeps integer images integer between the two axes: round half away, clip."""
    if not np.issubdtype(dtype, np.integer):
        return lambda x: x
    info = np.iinfo(dtype)
    return lambda x: np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), info.min, info.max)


def imresize_torch(x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Torch twin of :func:`imresize` for (..., H, W) float tensors (e.g. (N, C, H, W)).

    Same weights, so it matches the numpy version to float precision; no rounding.
    Differentiable and runs on the tensor's device.
    """
    if x.dim() < 2 or not torch.is_floating_point(x):
        raise ValueError(f"imresize_torch expects a float tensor (..., H, W), got {x.dtype} {tuple(x.shape)}")
    h, w = x.shape[-2:]
    out_h, out_w, scale_h, scale_w = _output_shape(h, w, scale, size)
    rows = torch.from_numpy(resize_matrix(h, out_h, scale_h)).to(x.device, x.dtype)
    cols = torch.from_numpy(resize_matrix(w, out_w, scale_w)).to(x.device, x.dtype)
    return rows @ x @ cols.T  # (..., out_h, h) @ (..., h, w) @ (w, out_w)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right edges so H and W are multiples of ``scale`` (benchmark convention)."""
    h, w = img.shape[:2]
    if h < scale or w < scale:
        raise ValueError(f"image of size {h}x{w} is smaller than the scale {scale}")
    return img[: h - h % scale, : w - w % scale, ...]
