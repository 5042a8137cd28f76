"""Evaluate an upscaler on a folder of HR images: per-image PSNR/SSIM and the mean.

The benchmark protocol, step by step:
  1. read HR, drop alpha (colour is compared; alpha is not part of SR benchmarks),
     crop to a multiple of the scale (``modcrop``);
  2. make LR with MATLAB bicubic ``imresize(hr, 1/scale)``, or read it from an LR folder
     (paired by sorted file order; sizes must match HR / scale);
  3. upscale LR, then PSNR/SSIM on Y with ``crop_border = scale``, and RGB PSNR.
Grayscale images are compared as Y directly; 16-bit images keep 16 bits (data range 65535).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from .images import ImageReadError, drop_alpha, list_images, read_image
from .metrics import psnr, ssim
from .resize import imresize, modcrop

__all__ = [
    "CLASSICAL_METHODS",
    "METRICS",
    "upscale_classical",
    "model_upscaler",
    "score_pair",
    "evaluate_folder",
    "metrics_table",
    "format_table",
]

_CV2_FLAGS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "lanczos": cv2.INTER_LANCZOS4}
CLASSICAL_METHODS = ("nearest", "bilinear", "bicubic", "lanczos")

Upscaler = Callable[[np.ndarray, int], np.ndarray]


def upscale_classical(lr: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Upscale an (h, w[, C]) image by ``scale`` with a fixed interpolation kernel.

    ``bicubic`` is MATLAB's (:func:`srlab.resize.imresize`), the one SR papers report;
    ``nearest``, ``bilinear`` and ``lanczos`` (8x8 Lanczos-4) come from OpenCV.
    """
    if method == "bicubic":
        return imresize(lr, scale)
    if method not in _CV2_FLAGS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(CLASSICAL_METHODS)}")
    h, w = lr.shape[:2]
    out = cv2.resize(lr, (w * scale, h * scale), interpolation=_CV2_FLAGS[method])
    return out.reshape(h * scale, w * scale, *lr.shape[2:])  # cv2 drops a trailing channel of 1


def model_upscaler(model, name: str = "model", device: str = "cpu") -> Upscaler:
    """Wrap a generator as ``(lr, scale) -> sr`` on numpy images, in fp32, keeping the dtype.

    It runs :func:`srlab.infer.upscale` on the whole image (benchmark images are small):
    grayscale goes through an RGB model as three equal channels and is averaged back, and
    16-bit input is fed as [0, 1] floats and written back as 16 bit.
    """
    from .infer import upscale as run_model

    model = model.to(device).eval()

    def upscale(lr: np.ndarray, scale: int) -> np.ndarray:
        return run_model(lr, model, device=device)

    upscale.__name__ = name
    return upscale


def score_pair(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict[str, float]:
    """The three numbers srlab reports for one image, with the benchmark conventions."""
    return {
        "psnr_y": psnr(sr, hr, crop_border=scale, y_channel=True),
        "ssim_y": ssim(sr, hr, crop_border=scale, y_channel=True),
        "psnr_rgb": psnr(sr, hr, crop_border=scale, y_channel=False),
    }


def _load_pair(hr_path: Path, lr_path: Path | None, scale: int):
    hr = modcrop(drop_alpha(read_image(hr_path)), scale)
    if lr_path is None:
        return hr, imresize(hr, 1 / scale)
    lr = drop_alpha(read_image(lr_path))
    expected = (hr.shape[0] // scale, hr.shape[1] // scale, *hr.shape[2:])
    if lr.shape != expected:
        raise ValueError(f"LR {lr_path.name} is {lr.shape}, expected {expected} (HR {hr.shape} / {scale})")
    if lr.dtype != hr.dtype:
        raise ValueError(f"LR {lr_path.name} is {lr.dtype} but HR {hr_path.name} is {hr.dtype}")
    return hr, lr


def evaluate_folder(
    hr_dir, lr_dir=None, scale: int = 4, upscaler: Upscaler | str = "bicubic", progress: bool = True
) -> dict:
    """Evaluate ``upscaler`` on every image in ``hr_dir``; returns the report as a dict.

    Args:
        hr_dir: folder of HR images.
        lr_dir: optional folder of LR images, paired with HR by sorted file order.
        scale: SR factor (2, 3, 4, 8, ...).
        upscaler: a classical method name or a function ``(lr, scale) -> sr`` on numpy images.
    Returns ``{"scale", "model", "mean": {...}, "images": [{"name", "psnr_y", "ssim_y",
    "psnr_rgb"}], "skipped": [{"name", "reason"}]}``. Unreadable or mismatched images are
    skipped, named in one warning and listed under ``"skipped"``.
    """
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    name = upscaler if isinstance(upscaler, str) else getattr(upscaler, "__name__", "model")
    upscale = (lambda lr, s: upscale_classical(lr, s, upscaler)) if isinstance(upscaler, str) else upscaler
    if isinstance(upscaler, str) and upscaler not in CLASSICAL_METHODS:
        raise ValueError(f"unknown method {upscaler!r}; choose one of {', '.join(CLASSICAL_METHODS)}")
    hr_paths = list_images(hr_dir)
    lr_paths = list_images(lr_dir) if lr_dir is not None else [None] * len(hr_paths)
    if not hr_paths:
        raise FileNotFoundError(f"no images in {hr_dir}")
    if len(lr_paths) != len(hr_paths):
        raise ValueError(f"{len(hr_paths)} HR images but {len(lr_paths)} LR images: cannot pair them")

    rows, skipped = [], []
    for hr_path, lr_path in tqdm(list(zip(hr_paths, lr_paths)), desc=f"{name} x{scale}", disable=not progress):
        try:
            hr, lr = _load_pair(hr_path, lr_path, scale)
        except (ImageReadError, ValueError) as err:
            skipped.append({"name": hr_path.name, "reason": str(err)})
            continue
        sr = upscale(lr, scale)
        rows.append({"name": hr_path.name, **score_pair(sr, hr, scale)})
    if skipped:
        listing = "; ".join(f"{s['name']} ({s['reason']})" for s in skipped)
        warnings.warn(f"skipped {len(skipped)} of {len(hr_paths)} images: {listing}", stacklevel=2)
    if not rows:
        raise ValueError(f"no usable image pair in {hr_dir}")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr_y", "ssim_y", "psnr_rgb")}
    return {"scale": scale, "model": name, "mean": mean, "images": rows, "skipped": skipped}


# key -> (column header, number format, which value is best: max, min or None for no bold)
METRICS = {
    "psnr_y": ("PSNR-Y (dB)", "{:.2f}", max),
    "ssim_y": ("SSIM-Y", "{:.4f}", max),
    "psnr_rgb": ("PSNR-RGB (dB)", "{:.2f}", max),
    "psnr": ("PSNR (dB)", "{:.2f}", max),
    "ssim": ("SSIM", "{:.4f}", max),
    "lpips": ("LPIPS", "{:.3f}", min),
    "niqe": ("NIQE", "{:.2f}", min),  # no reference; lower = more natural
    "change": ("change (dB)", "{:+.2f}", None),
}


def _metric(key: str) -> tuple[str, str, Callable | None]:
    return METRICS.get(key, (key, "{:.4g}", None))


def metrics_table(
    rows: dict, metrics=("psnr_y", "ssim_y", "psnr_rgb"), *, label: str = "method", groups=None, bold: bool = True
) -> str:
    """Rows of metrics as one Markdown table: the course's only results-table formatter.

    Notebooks show it rendered (``IPython.display.Markdown``, or :func:`srlab.notebook.show_markdown`);
    the command line prints the same text.

    Args:
        rows: ``{row name: {metric: value}}``; with ``groups``, ``{row name: {group: {metric: value}}}``.
        metrics: the metric keys to show, in order. Known keys (:data:`METRICS`) get their header,
            precision and direction (LPIPS: lower is better); others are shown with 4 digits.
        label: the first column's header.
        groups: e.g. test-set names: one column per group, its cell the metrics joined by " / "
            (``| x4, PSNR-Y (dB) / SSIM-Y | Set5 | Set14 |``).
        bold: the best value of each column in bold (every value that equals it as printed).
            A missing value is shown as "–".
    """
    metrics = list(metrics)
    columns = [(g, k) for g in groups for k in metrics] if groups is not None else [(None, k) for k in metrics]

    def value(name, group, key):
        entry = rows[name] if group is None else rows[name].get(group, {})
        return entry.get(key)

    def text(v, key):
        return "–" if v is None else _metric(key)[1].format(v)

    best = {}
    for group, key in columns:
        pick = _metric(key)[2]
        values = [v for name in rows if (v := value(name, group, key)) is not None]
        if bold and pick is not None and values:
            best[group, key] = text(pick(values), key)

    def cell(name, group, key):
        shown = text(value(name, group, key), key)
        return f"**{shown}**" if best.get((group, key)) == shown else shown

    if groups is None:
        head = [label, *(_metric(k)[0] for k in metrics)]
        body = [[str(name), *(cell(name, None, k) for k in metrics)] for name in rows]
    else:
        heads = " / ".join(_metric(k)[0] for k in metrics)
        head = [f"{label}, {heads}" if label else heads, *map(str, groups)]
        body = [[str(name), *(" / ".join(cell(name, g, k) for k in metrics) for g in groups)] for name in rows]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def format_table(report: dict) -> str:
    """An :func:`evaluate_folder` report as a Markdown table: one row per image, the mean last."""
    rows = {r["name"]: r for r in report["images"]}
    rows["**mean**"] = report["mean"]
    return metrics_table(rows, label="image", bold=False)
