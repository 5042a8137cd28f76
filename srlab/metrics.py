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

`niqe` is no-reference: it needs no HR image, only the one being judged, and measures how far
its local statistics are from those of pristine photos (lower is more natural). It
reproduces the official MATLAB release to 1e-4 (see its docstring).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import gamma

from .resize import imresize

__all__ = [
    "rgb_to_y",
    "psnr",
    "ssim",
    "aggd_fit",
    "niqe",
    "niqe_blocks",
    "batch_rgb_to_y",
    "batch_psnr",
    "batch_ssim",
]

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
    if data_range is None and _default_range(img.dtype) != _default_range(ref.dtype):
        raise ValueError(
            f"image is {img.dtype} and reference {ref.dtype}: their white differs "
            f"({_default_range(img.dtype):g} vs {_default_range(ref.dtype):g}); convert one, or pass data_range"
        )
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


# ---------------------------------------------------------------- NIQE (no reference)
# Mittal, Soundararajan, Bovik, "Making a 'Completely Blind' Image Quality Analyzer", IEEE SPL 2013,
# following the official MATLAB release (computequality.m, computefeature.m, estimateaggdparam.m).

NIQE_BLOCK = 96  # the block size the pristine model was fitted with
_AGGD_SHAPES = 0.2 + 0.001 * np.arange(9801)  # MATLAB's grid 0.2:0.001:10 of candidate shapes
_PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, two diagonals


@lru_cache(maxsize=1)
def _niqe_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pristine mean (36,), covariance (36, 36) and 7x7 window (srlab/assets/SOURCES.md)."""
    with resources.files("srlab").joinpath("assets/niqe_pris_params.npz").open("rb") as f:
        data = np.load(f)
        return data["mu_pris_param"].ravel(), data["cov_pris_param"], data["gaussian_window"]


def _aggd_ratio(shape: np.ndarray) -> np.ndarray:
    """E|x|^2 / E[x^2] of a generalized Gaussian of this shape: rises monotonically with it."""
    return gamma(2 / shape) ** 2 / (gamma(1 / shape) * gamma(3 / shape))


def aggd_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit an asymmetric generalized Gaussian to each row of ``samples`` (n, m), by moments.

    Returns ``(shape, left_scale, right_scale)``, each (n,). The shape is the grid value
    (0.2, 0.201, ..., 10) whose moment ratio is nearest the sample's, as MATLAB's
    ``estimateaggdparam`` picks it: the first on ties, the first of the grid when the ratio is
    NaN (a row with no negative or no positive value; that side's scale is NaN too).
    """
    x = np.atleast_2d(samples)  # (n, m)
    neg, pos = x < 0, x > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((x**2 * neg).sum(axis=1) / neg.sum(axis=1))  # (n,)
        right_std = np.sqrt((x**2 * pos).sum(axis=1) / pos.sum(axis=1))
        g = left_std / right_std
        r = np.mean(np.abs(x), axis=1) ** 2 / np.mean(x**2, axis=1)
        r_norm = r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    # argmin, like MATLAB's min: the first smallest, and index 0 for an all-NaN row
    best = np.argmin((_aggd_ratio(_AGGD_SHAPES)[None, :] - r_norm[:, None]) ** 2, axis=1)  # (n,)
    shape = _AGGD_SHAPES[best]
    to_scale = np.sqrt(gamma(1 / shape) / gamma(3 / shape))  # std -> scale of a GGD of this shape
    return shape, left_std * to_scale, right_std * to_scale


def _mscn(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (NIQE Eq. 1), edges replicated as imfilter."""
    blur = lambda x: cv2.filter2D(x, cv2.CV_64F, window, borderType=cv2.BORDER_REPLICATE)
    mu = blur(y)
    sigma = np.sqrt(np.abs(blur(y * y) - mu * mu))
    return (y - mu) / (sigma + 1)  # the +1 is on the 0-255 scale: NIQE is not scale invariant


def _block_features(coeffs: np.ndarray, block: int) -> np.ndarray:
    """(H, W) MSCN coefficients cut into block x block tiles -> (n_blocks, 18) features."""
    h, w = coeffs.shape
    tiles = coeffs.reshape(h // block, block, w // block, block).swapaxes(1, 2).reshape(-1, block, block)
    n = len(tiles)
    shape, left, right = aggd_fit(tiles.reshape(n, -1))
    features = [shape, (left + right) / 2]
    for shift in _PAIR_SHIFTS:  # products of neighbours, each tile shifted circularly (MATLAB circshift)
        pairs = tiles * np.roll(tiles, shift, axis=(1, 2))  # (n, block, block)
        shape, left, right = aggd_fit(pairs.reshape(n, -1))
        mean = (right - left) * gamma(2 / shape) / gamma(1 / shape)
        features += [shape, mean, left, right]
    return np.stack(features, axis=1)  # (n, 18)


def _niqe_luma(img: np.ndarray, data_range: float | None) -> np.ndarray:
    """Y on 0-255, rounded as MATLAB's ``rgb2ycbcr`` of a uint8 image; 1 channel is Y already."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim != 2 and not (img.ndim == 3 and img.shape[2] == 3):
        raise ValueError(f"NIQE needs an (H, W) gray or (H, W, 3) RGB image, got shape {img.shape}")
    x = img.astype(np.float64) * (255 / (data_range or _default_range(img.dtype)))  # 0-255
    # MATLAB's arithmetic on 0-255 values: exact .5 ties (RGB 146, 124, 97 is Y 125.5) come out a
    # hair below .5 in double precision and round down, here as there
    if x.ndim == 3:  # written out: a matrix product may sum in another order and round ties up
        x = _Y_WEIGHTS[0] * x[..., 0] + _Y_WEIGHTS[1] * x[..., 1] + _Y_WEIGHTS[2] * x[..., 2] + 16  # (H, W)
    return np.floor(x + 0.5)  # round half up (Y >= 0), as MATLAB does converting to uint8


def _half_size(y: np.ndarray) -> np.ndarray:
    """NIQE's second scale: MATLAB R2021a ``imresize(y, 0.5)``, bicubic, antialiased, edges mirrored.

    :func:`srlab.resize.imresize` replicates the edge pixel, as the MATLAB releases that made
    the SR benchmarks' LR images did; newer releases (R2021a gave the published NIQE figure)
    mirror it instead (``aux = [1:n, n:-1:1]``), which moves baboon's NIQE by 0.01. The x0.5
    kernel reaches 4 pixels, so mirroring 8 pixels on each side, resizing and dropping 4 output
    pixels on each side is exactly the mirrored resize.
    """
    pad = 8
    out = imresize(np.pad(y, pad, mode="symmetric"), 0.5)  # (H/2 + 8, W/2 + 8)
    return out[pad // 2 : -pad // 2, pad // 2 : -pad // 2]  # (H/2, W/2)


def _mvg_distance(mu_pris: np.ndarray, cov_pris: np.ndarray, features: np.ndarray) -> float:
    """NIQE Eq. 10 between the pristine Gaussian and the one fitted to ``features`` (n, 36).

    NaN features (flat blocks) are left out as MATLAB's ``nanmean`` (per column) and ``nancov``
    (whole rows) leave them; the pseudo-inverse uses MATLAB's ``pinv`` tolerance.
    """
    if np.isnan(features).all(axis=0).any():
        raise ValueError("NIQE is undefined for a flat image: no block has any texture")
    mu = np.nanmean(features, axis=0)  # (36,)
    complete = features[~np.isnan(features).any(axis=1)]
    cov = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros_like(cov_pris)
    avg = (cov_pris + cov) / 2
    inv = np.linalg.pinv(avg, rcond=max(avg.shape) * np.finfo(np.float64).eps)
    diff = mu_pris - mu
    return float(np.sqrt(diff @ inv @ diff))


def niqe_blocks(height: int, width: int, crop_border: int = 0) -> int:
    """How many whole 96x96 blocks NIQE scores per scale in an image of this size (0: too small)."""
    return max(height - 2 * crop_border, 0) // NIQE_BLOCK * (max(width - 2 * crop_border, 0) // NIQE_BLOCK)


def niqe(img, crop_border: int = 0, data_range: float | None = None) -> float:
    """NIQE, the Natural Image Quality Evaluator (no reference; lower = more natural).

    The steps of the official MATLAB release, on Y (MATLAB ``rgb2ycbcr``, rounded to integers
    as for a uint8 image; the release itself takes ``rgb2gray`` of a colour image, SR papers and
    the published figure score Y), cropped to whole 96x96 blocks from the top left; at two
    scales (the image, then MATLAB ``imresize(y, 0.5)``, blocks of 48x48: :func:`_half_size`), MSCN
    coefficients and 18 features per block (an AGGD fit of the coefficients and of the products
    of neighbours in four directions); the Mahalanobis-like distance (Eq. 10) between a Gaussian
    fitted to the blocks' 36 features and the authors' pristine model (srlab/assets). Set14
    ``baboon.png`` gives 5.72996; MATLAB R2021a gave 5.72957 (as published by BasicSR). The
    0.0004 is arithmetic precision: srlab computes in float64, and the same steps in float32
    (as BasicSR's port computes the MSCN coefficients) give 5.72957 too, so the published run
    most likely worked in single precision somewhere. Only the local variance ``E[y^2] - mu^2``
    is sensitive to it (a difference of two numbers near 255^2).

    Args:
        img: (H, W) gray or (H, W, 3) RGB image; uint8, uint16 or float.
        crop_border: pixels cropped from each edge first (SR convention: the scale).
        data_range: the value of white (None = 255 for uint8, 65535 for uint16, 1 for floats).
    The pristine model was fitted on 96x96 blocks, so an image needs at least one whole block;
    with fewer than 4 per scale the fitted covariance means little, and a warning says so. A
    set's NIQE is the mean of its images' NIQE.
    """
    y = _niqe_luma(img, data_range)
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    blocks = niqe_blocks(*y.shape)
    if blocks == 0:
        raise ValueError(
            f"NIQE needs at least one whole {NIQE_BLOCK}x{NIQE_BLOCK} block, got a {y.shape[0]}x{y.shape[1]} image"
            + (f" after crop_border={crop_border}" if crop_border else "")
        )
    if blocks < 4:
        warnings.warn(
            f"NIQE on a {y.shape[0]}x{y.shape[1]} image has only {blocks} block(s) of {NIQE_BLOCK}x{NIQE_BLOCK} "
            f"per scale (fewer than 4): the score is unreliable; use larger images",
            stacklevel=2,
        )
    rows, cols = y.shape[0] // NIQE_BLOCK, y.shape[1] // NIQE_BLOCK
    y = y[: rows * NIQE_BLOCK, : cols * NIQE_BLOCK]
    mu_pris, cov_pris, window = _niqe_model()
    fine = _block_features(_mscn(y, window), NIQE_BLOCK)  # (n, 18)
    coarse = _block_features(_mscn(_half_size(y), window), NIQE_BLOCK // 2)  # (n, 18), the same blocks
    return _mvg_distance(mu_pris, cov_pris, np.concatenate([fine, coarse], axis=1))


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
