"""PSNR and SSIM with the super-resolution conventions spelled out at every call.

Published SR numbers (SRCNN onwards) are computed
  * on the luma channel Y of BT.601 as MATLAB's ``rgb2ycbcr`` gives it
    (Y in [16, 235] for RGB in [0, 255]); a single-channel image is used as Y directly;
  * after cropping ``crop_border`` pixels (usually the scale) from every edge, because
    the outermost pixels of an upscaled image depend on how the border was padded;
  * with SSIM's 11x11 Gaussian window (sigma 1.5) and constants K1 = 0.01, K2 = 0.03,
    averaged over the "valid" positions where the window fits (Wang et al. 2004).
Change any one of these and PSNR moves by 0.1-1 dB: enough to reverse a ranking.

Numpy versions (`psnr`, `ssim`) take (H, W) or (H, W, C) arrays; the torch versions
(`batch_psnr`, `batch_ssim`) take (N, C, H, W) tensors in [0, 1] and return one value
per image, for validation during training.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["rgb_to_y", "psnr", "ssim", "batch_rgb_to_y", "batch_psnr", "batch_ssim"]

# BT.601 luma for RGB in [0, 1], giving Y in [16/255, 235/255] (MATLAB's rgb2ycbcr / 255).
_Y_WEIGHTS = (65.481 / 255, 128.553 / 255, 24.966 / 255)
_Y_OFFSET = 16 / 255
_SSIM_WINDOW, _SSIM_SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03


# ---------------------------------------------------------------- numpy


def _default_range(dtype: np.dtype) -> float:
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W) BT.601 luma in [16/255, 235/255]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return _Y_OFFSET + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b


def _prepare(img, ref, scale, crop_border, y_channel, data_range):
    """Both images as float64 (H, W, C) in [0, 1], border cropped, Y taken if asked."""
    img, ref = np.asarray(img), np.asarray(ref)
    if img.shape != ref.shape:
        raise ValueError(f"image and reference differ in shape: {img.shape} vs {ref.shape}")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    data_range = data_range or _default_range(ref.dtype)
    crop = scale if crop_border is None else crop_border
    out = []
    for x in (img, ref):
        x = x.astype(np.float64) / data_range
        x = x[..., None] if x.ndim == 2 else x
        if y_channel and x.shape[-1] == 3:
            x = rgb_to_y(x)[..., None]
        elif y_channel and x.shape[-1] != 1:
            raise ValueError(f"y_channel=True needs 1 or 3 channels, got {x.shape[-1]}")
        if crop:
            x = x[crop:-crop, crop:-crop]
        out.append(x)
    if out[0].size == 0:
        raise ValueError(f"crop_border={crop} leaves nothing of a {img.shape[0]}x{img.shape[1]} image")
    return out


def psnr(
    img, ref, scale: int = 4, crop_border: int | None = None, y_channel: bool = True, data_range: float | None = None
) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(1 / MSE) on images scaled to [0, 1].

    Args:
        img, ref: (H, W) or (H, W, C) arrays of the same shape (uint8, uint16 or float).
        scale: SR factor; the default ``crop_border``.
        crop_border: pixels cropped from each edge before comparing (None = ``scale``).
        y_channel: compare BT.601 luma (the SR convention) instead of every channel.
        data_range: the value of white (None = 255 for uint8, 65535 for uint16, 1 for floats).
    Returns ``inf`` for identical images.
    """
    a, b = _prepare(img, ref, scale, crop_border, y_channel, data_range)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def _gaussian_window() -> np.ndarray:
    g = cv2.getGaussianKernel(_SSIM_WINDOW, _SSIM_SIGMA, ktype=cv2.CV_64F)  # (11, 1), sums to 1
    return g @ g.T  # (11, 11)


def _ssim_one_channel(a: np.ndarray, b: np.ndarray) -> float:
    window, half = _gaussian_window(), _SSIM_WINDOW // 2
    c1, c2 = _K1**2, _K2**2  # data range is 1 after _prepare

    def blur(x):  # Gaussian-weighted local mean, kept where the window fits ("valid")
        return cv2.filter2D(x, cv2.CV_64F, window, borderType=cv2.BORDER_REFLECT)[half:-half, half:-half]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(
    img, ref, scale: int = 4, crop_border: int | None = None, y_channel: bool = True, data_range: float | None = None
) -> float:
    """Structural similarity (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5.

    Same arguments as :func:`psnr`. Multi-channel images (``y_channel=False``) give the
    mean of the per-channel SSIMs. The image must exceed the window after cropping.
    """
    a, b = _prepare(img, ref, scale, crop_border, y_channel, data_range)
    if min(a.shape[:2]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after cropping, got {a.shape[:2]}")
    return float(np.mean([_ssim_one_channel(a[..., c], b[..., c]) for c in range(a.shape[-1])]))


# ---------------------------------------------------------------- torch


def batch_rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) BT.601 luma; 1-channel input is returned as is."""
    if x.shape[1] == 1:
        return x
    w = x.new_tensor(_Y_WEIGHTS).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True) + _Y_OFFSET  # (N, 1, H, W)


def _batch_prepare(sr, hr, crop_border, y_channel):
    if sr.shape != hr.shape or sr.dim() != 4:
        raise ValueError(f"expected two (N, C, H, W) tensors of one shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    sr, hr = sr.double(), hr.double()  # metrics in full precision, whatever the training used
    if y_channel:
        sr, hr = batch_rgb_to_y(sr), batch_rgb_to_y(hr)
    if crop_border:
        sr = sr[..., crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[..., crop_border:-crop_border, crop_border:-crop_border]
    return sr, hr


@torch.no_grad()
def batch_psnr(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 4, y_channel: bool = True) -> torch.Tensor:
    """PSNR in dB of each image in a batch, (N,) float64; inputs (N, C, H, W) in [0, 1]."""
    sr, hr = _batch_prepare(sr, hr, crop_border, y_channel)
    mse = ((sr - hr) ** 2).mean(dim=(1, 2, 3))  # (N,)
    return 10 * torch.log10(1.0 / mse)


@torch.no_grad()
def batch_ssim(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 4, y_channel: bool = True) -> torch.Tensor:
    """SSIM of each image in a batch, (N,) float64; same window and constants as :func:`ssim`."""
    sr, hr = _batch_prepare(sr, hr, crop_border, y_channel)
    channels = sr.shape[1]
    window = torch.from_numpy(_gaussian_window()).to(sr.device, sr.dtype)
    window = window.expand(channels, 1, _SSIM_WINDOW, _SSIM_WINDOW)  # depthwise (C, 1, 11, 11)

    def blur(x):  # "valid" convolution, as in the numpy version
        return F.conv2d(x, window, groups=channels)  # (N, C, H-10, W-10)

    mu_a, mu_b = blur(sr), blur(hr)
    var_a = blur(sr * sr) - mu_a**2
    var_b = blur(hr * hr) - mu_b**2
    cov = blur(sr * hr) - mu_a * mu_b
    c1, c2 = _K1**2, _K2**2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(1, 2, 3))  # (N,)
