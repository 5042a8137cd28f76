"""Evaluate an upscaler on a folder of HR images: per-image PSNR/SSIM (NIQE, LPIPS) and the mean.

The benchmark protocol, step by step:
  1. read HR, drop alpha (colour is compared; alpha is not part of SR benchmarks),
     crop to a multiple of the scale (``modcrop``);
  2. make LR with MATLAB bicubic ``imresize(hr, 1/scale)``, or read it from an LR folder
     (paired by sorted file order, with a warning where the names differ; sizes must match HR / scale);
  3. upscale LR, then PSNR/SSIM on Y with ``crop_border = scale``, and RGB PSNR; NIQE of the
     upscaled image alone (no reference, same border), LPIPS of it against HR (RGB, same border).
Grayscale images are compared as Y directly; 16-bit images keep 16 bits (data range 65535).

Images with no HR (real photos, upscaled) can still be judged by NIQE: :func:`score_images`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from .images import ImageReadError, drop_alpha, list_images, pair_images, read_image
from .metrics import _default_range, niqe, niqe_blocks, psnr, ssim
from .preference import NIQE_TIE, PSNR_TIE_DB
from .reports import markdown_cell
from .resize import imresize, modcrop

__all__ = [
    "CLASSICAL_METHODS",
    "METRIC_CHOICES",
    "METRICS",
    "check_metrics",
    "load_lpips",
    "upscale_classical",
    "model_upscaler",
    "score_pair",
    "evaluate_folder",
    "score_images",
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


# what ``metrics=`` accepts; psnr gives psnr_y and psnr_rgb, ssim gives ssim_y, the others their own key
METRIC_CHOICES = ("psnr", "ssim", "niqe", "lpips")
NO_REFERENCE = ("niqe",)  # the metrics that need no HR image
# metric -> (the optional package it needs, how to get it)
NEEDS_PACKAGE = {"lpips": ("lpips", "pip install lpips; it needs internet once, to download its AlexNet backbone")}


def check_metrics(metrics, reference: bool = True) -> tuple[str, ...]:
    """``metrics`` (names or a comma list such as "psnr,ssim,niqe") checked, in order, duplicates dropped.

    With ``reference=False`` (upscaled images with no HR) only :data:`NO_REFERENCE` metrics are allowed.
    A metric whose package (:data:`NEEDS_PACKAGE`) is not installed is refused here, before any work:
    it gave an empty table and exit code 0.
    """
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    unknown = [n for n in names if n not in METRIC_CHOICES]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; choose from {', '.join(METRIC_CHOICES)}")
    needs_hr = [n for n in names if n not in NO_REFERENCE]
    if not reference and needs_hr:
        raise ValueError(
            f"these images have no HR to compare with, so {' and '.join(needs_hr)} cannot be scored: "
            f"give HR images (--hr), or use the no-reference metric {', '.join(NO_REFERENCE)}"
        )
    for name in names:
        _require_package(name)
    return names


def _require_package(metric: str) -> None:
    """ValueError (one line: how to install it) when ``metric`` needs a package that cannot be imported."""
    if metric not in NEEDS_PACKAGE:
        return
    package, how = NEEDS_PACKAGE[metric]
    try:
        __import__(package)
    except ImportError:
        raise ValueError(
            f"metric {metric} needs the {package} package, which is not installed: {how}; "
            f"or leave {metric} out of the metrics"
        ) from None


def score_pair(sr: np.ndarray, hr: np.ndarray, scale: int, metrics=("psnr", "ssim")) -> dict[str, float]:
    """PSNR-Y / SSIM-Y / PSNR-RGB of one image (the ones ``metrics`` asks for), with the benchmark conventions."""
    out = {}
    if "psnr" in metrics:
        out["psnr_y"] = psnr(sr, hr, crop_border=scale, y_channel=True)
    if "ssim" in metrics:
        out["ssim_y"] = ssim(sr, hr, crop_border=scale, y_channel=True)
    if "psnr" in metrics:
        out["psnr_rgb"] = psnr(sr, hr, crop_border=scale, y_channel=False)
    return out


_LPIPS_SKIPPED = "LPIPS skipped: "


def load_lpips() -> tuple[Callable | None, str | None]:
    """LPIPS (AlexNet, v0.1) as ``(sr, hr, crop_border) -> float``, or ``(None, why not)``.

    Needs the ``lpips`` package and, the first time, internet for torchvision's ImageNet
    AlexNet (cached afterwards): on Colab, ``pip install lpips``. Images are compared in RGB
    (gray as three equal channels) in [0, 1], which LPIPS maps to [-1, 1] itself.
    """
    try:
        import lpips
    except ImportError:
        return None, f"{_LPIPS_SKIPPED}the lpips package is not installed ({NEEDS_PACKAGE['lpips'][1]})"
    try:
        net = lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception as err:  # the backbone's download (offline), a broken cache: never a crash
        return None, f"{_LPIPS_SKIPPED}lpips could not load its AlexNet backbone (it needs internet once): {err}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = net.to(device)

    def as_tensor(img: np.ndarray, crop: int) -> torch.Tensor:
        x = img.astype(np.float32) / _default_range(img.dtype)
        x = np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x  # (H, W, 3)
        x = x[crop : x.shape[0] - crop, crop : x.shape[1] - crop]
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].to(device)  # (1, 3, H, W)

    @torch.no_grad()
    def distance(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> float:
        return float(net(as_tensor(sr, crop_border), as_tensor(hr, crop_border), normalize=True).item())

    return distance, None


class _PerImage:
    """NIQE and LPIPS per image; their problems gathered so each image is named once, in one warning."""

    def __init__(self):
        self.missing: dict[str, list[str]] = {"NIQE": [], "LPIPS": []}  # metric -> ["name (why)"]
        self.few_blocks: list[str] = []

    def niqe(self, name: str, img: np.ndarray, crop_border: int) -> float | None:
        blocks = niqe_blocks(*img.shape[:2], crop_border)
        if 0 < blocks < 4:
            self.few_blocks.append(f"{name} ({blocks})")
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="NIQE on a")  # said once below, with the name
                return niqe(img, crop_border=crop_border)
        except ValueError as err:  # too small for one block, or flat
            self.missing["NIQE"].append(f"{name} ({err})")
            return None

    def lpips(self, name: str, distance: Callable, sr: np.ndarray, hr: np.ndarray, crop_border: int) -> float | None:
        try:
            return distance(sr, hr, crop_border)
        except RuntimeError as err:  # AlexNet's pooling needs more than ~32 px
            self.missing["LPIPS"].append(f"{name} ({err})")
            return None

    def warn(self, total: int) -> None:
        for metric, names in self.missing.items():
            if names:
                warnings.warn(f"no {metric} for {len(names)} of {total} images: {'; '.join(names)}", stacklevel=3)
        if self.few_blocks:
            warnings.warn(
                f"NIQE is unreliable on {len(self.few_blocks)} of {total} images, with fewer than 4 blocks of "
                f"96x96 per scale (blocks in brackets): {', '.join(self.few_blocks)}; use larger images",
                stacklevel=3,
            )


def _warn_skipped(skipped: list[dict], total: int) -> None:
    if skipped:
        listing = "; ".join(f"{s['name']} ({s['reason']})" for s in skipped)
        warnings.warn(f"skipped {len(skipped)} of {total} images: {listing}", stacklevel=3)


def _mean(rows: list[dict]) -> dict:
    """Each metric's mean over the images that have it (None where none has)."""
    keys = dict.fromkeys(k for r in rows for k in r if k != "name")
    values = {k: [r[k] for r in rows if r.get(k) is not None] for k in keys}
    return {k: float(np.mean(v)) if v else None for k, v in values.items()}


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
    hr_dir,
    lr_dir=None,
    scale: int = 4,
    upscaler: Upscaler | str = "bicubic",
    progress: bool = True,
    metrics=("psnr", "ssim"),
) -> dict:
    """Evaluate ``upscaler`` on every image in ``hr_dir``; returns the report as a dict.

    Args:
        hr_dir: folder of HR images.
        lr_dir: optional folder of LR images, paired with HR by sorted file order (a warning
            names pairs whose names differ beyond benchmark tags such as ``x4`` or ``_LRBI_x4``).
        scale: SR factor (2, 3, 4, 8, ...).
        upscaler: a classical method name or a function ``(lr, scale) -> sr`` on numpy images.
        metrics: any of :data:`METRIC_CHOICES`: "psnr" (psnr_y, psnr_rgb), "ssim" (ssim_y), "niqe"
            (of the SR image, ``crop_border=scale``), "lpips" (the lpips package and its backbone
            must load: else ValueError saying why, before any image is read).
    Returns ``{"scale", "model", "mean": {...}, "images": [{"name", "psnr_y", "ssim_y",
    "psnr_rgb", ...}], "skipped": [{"name", "reason"}]}``. Unreadable or mismatched images are
    skipped, named in one warning and listed under ``"skipped"``. An image NIQE cannot score
    (smaller than one 96x96 block after the crop) has ``"niqe": None``, is named in one warning
    and left out of the mean; so is one with fewer than 4 blocks, whose NIQE is kept.
    """
    metrics = check_metrics(metrics)
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    name = upscaler if isinstance(upscaler, str) else getattr(upscaler, "__name__", "model")
    upscale = (lambda lr, s: upscale_classical(lr, s, upscaler)) if isinstance(upscaler, str) else upscaler
    if isinstance(upscaler, str) and upscaler not in CLASSICAL_METHODS:
        raise ValueError(f"unknown method {upscaler!r}; choose one of {', '.join(CLASSICAL_METHODS)}")
    pairs = pair_images(hr_dir, lr_dir)
    if not pairs:
        raise FileNotFoundError(f"no images in {hr_dir}")
    lpips_distance = None
    if "lpips" in metrics:  # before any image: a backbone that cannot load is refused, not a missing column
        lpips_distance, why_not = load_lpips()
        if why_not:
            raise ValueError(f"{why_not.removeprefix(_LPIPS_SKIPPED)}; or leave lpips out of the metrics")

    rows, skipped, per_image = [], [], _PerImage()
    for hr_path, lr_path in tqdm(pairs, desc=f"{name} x{scale}", disable=not progress):
        try:
            hr, lr = _load_pair(hr_path, lr_path, scale)
        except (ImageReadError, ValueError) as err:
            skipped.append({"name": hr_path.name, "reason": str(err)})
            continue
        sr = upscale(lr, scale)
        try:
            row = {"name": hr_path.name, **score_pair(sr, hr, scale, metrics)}
        except ValueError as err:  # too small to score after the border crop (SSIM needs 11 x 11)
            skipped.append({"name": hr_path.name, "reason": str(err)})
            continue
        if "niqe" in metrics:
            row["niqe"] = per_image.niqe(hr_path.name, sr, scale)
        if lpips_distance is not None:
            row["lpips"] = per_image.lpips(hr_path.name, lpips_distance, sr, hr, scale)
        rows.append(row)
    _warn_skipped(skipped, len(pairs))
    per_image.warn(len(pairs))
    if not rows:
        raise ValueError(f"no usable image pair in {hr_dir}")
    return {"scale": scale, "model": name, "mean": _mean(rows), "images": rows, "skipped": skipped}


def score_images(sr_dir, metrics=("niqe",), crop_border: int = 0, progress: bool = True) -> dict:
    """No-reference scores of the images in ``sr_dir`` as they are (e.g. upscaled real photos, no HR).

    Returns the :func:`evaluate_folder` report's shape: ``{"sr_dir", "crop_border", "mean",
    "images": [{"name", "niqe"}], "skipped"}``, with the same warnings (unreadable files, images
    too small for NIQE or with fewer than 4 blocks). ``metrics``: no-reference ones only (niqe).
    """
    metrics = check_metrics(metrics, reference=False)
    paths = list_images(sr_dir)
    if not paths:
        raise FileNotFoundError(f"no images in {sr_dir}")
    rows, skipped, per_image = [], [], _PerImage()
    for path in tqdm(paths, desc="NIQE", disable=not progress):
        try:
            img = drop_alpha(read_image(path))
        except ImageReadError as err:
            skipped.append({"name": path.name, "reason": str(err)})
            continue
        rows.append({"name": path.name, "niqe": per_image.niqe(path.name, img, crop_border)})
    _warn_skipped(skipped, len(paths))
    per_image.warn(len(paths))
    if not rows:
        raise ValueError(f"no readable image in {sr_dir}")
    return {"sr_dir": str(sr_dir), "crop_border": crop_border, "mean": _mean(rows), "images": rows, "skipped": skipped}


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


# gaps under these are no difference (srlab.preference's tie limits): such values are all bold
_TIES = {"psnr_y": PSNR_TIE_DB, "psnr_rgb": PSNR_TIE_DB, "niqe": NIQE_TIE}


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
            Names and headers are escaped (:func:`srlab.reports.markdown_cell`): a ``|`` in a file
            or method name stays in its cell.
        label: the first column's header.
        groups: e.g. test-set names: one column per group, its cell the metrics joined by " / "
            (``| x4, PSNR-Y (dB) / SSIM-Y | Set5 | Set14 |``).
        bold: the best value of each column in bold, and every value that ties with it: within
            ``PSNR_TIE_DB`` (0.05 dB) for PSNR, ``NIQE_TIE`` (0.2) for NIQE, equal as printed for
            the others (the ties of the perception-distortion plot and the study's PSNR order).
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
            best[group, key] = pick(values)

    def ties_best(v, group, key) -> bool:
        top = best.get((group, key))
        if v is None or top is None:
            return False
        if v == top or text(v, key) == text(top, key):
            return True
        tol = _TIES.get(key)
        return tol is not None and abs(v - top) < tol

    def cell(name, group, key):
        v = value(name, group, key)
        return f"**{text(v, key)}**" if ties_best(v, group, key) else text(v, key)

    if groups is None:
        head = [label, *(_metric(k)[0] for k in metrics)]
        body = [[markdown_cell(name), *(cell(name, None, k) for k in metrics)] for name in rows]
    else:
        heads = " / ".join(_metric(k)[0] for k in metrics)
        head = [f"{label}, {heads}" if label else heads, *groups]
        body = [
            [markdown_cell(name), *(" / ".join(cell(name, g, k) for k in metrics) for g in groups)] for name in rows
        ]
    head = list(map(markdown_cell, head))
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def format_table(report: dict) -> str:
    """An :func:`evaluate_folder` (or :func:`score_images`) report as a Markdown table: one row per
    image, the mean last, a column per metric computed."""
    rows = {r["name"]: r for r in report["images"]}
    rows["**mean**"] = report["mean"]
    return metrics_table(rows, tuple(report["mean"]), label="image", bold=False)
