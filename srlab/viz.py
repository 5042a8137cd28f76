"""Figures: zoomed-crop comparisons, where the differences between methods are visible.

Whole images hide SR artefacts at screen size; a 4x-8x zoom into a textured region
(hair, fur, text) shows blur, ringing and hallucinated detail at once.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

__all__ = ["detail_box", "show_image", "crop_grid", "plot_history"]


def _as_display(img: np.ndarray) -> np.ndarray:
    """Any srlab image -> float array in [0, 1] that imshow draws correctly."""
    img = np.asarray(img)
    if np.issubdtype(img.dtype, np.integer):
        img = img.astype(np.float32) / np.iinfo(img.dtype).max
    return np.clip(img, 0, 1)


def detail_box(img: np.ndarray, size: int, multiple: int = 1) -> tuple[int, int, int]:
    """(top, left, size) of the ``size``-pixel square with the most gradient energy.

    Corners are multiples of ``multiple`` (pass the SR scale, so the box maps exactly onto
    the LR image). A coarse grid search: good enough to land on texture, not on sky.
    """
    gray = _as_display(img)
    gray = gray.mean(axis=2) if gray.ndim == 3 else gray
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
    h, w = energy.shape
    size = min(size, h, w) // multiple * multiple
    step = max(multiple, size // 4 // multiple * multiple)
    best, best_box = -1.0, (0, 0, size)
    for top in range(0, h - size + 1, step):
        for left in range(0, w - size + 1, step):
            e = float(energy[top : top + size, left : left + size].sum())
            if e > best:
                best, best_box = e, (top, left, size)
    return best_box


def show_image(ax, img: np.ndarray, title: str | None = None) -> None:
    """Draw an image without axes; pixels stay sharp (nearest) so zooms show real pixels."""
    img = _as_display(img)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def crop_grid(rows: list[dict], path: str | Path | None = None, scale: int = 4, crop: int = 96):
    """One row per image: the full HR with the zoom box drawn, then the same crop of each panel.

    Args:
        rows: dicts with ``"name"``, ``"hr"`` (H, W[, C]) and ``"panels"``, an ordered mapping
            ``label -> image`` (an LR image of size H/scale is cropped at box/scale), plus
            optionally ``"captions"``: ``label -> text`` shown under the label (e.g. "28.4 dB").
        path: where to save a PNG (folders created); the figure is returned either way.
        crop: side of the HR crop in pixels.
    """
    ncols = 1 + max(len(r["panels"]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.1 * ncols, 2.3 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        hr = row["hr"]
        top, left, size = detail_box(hr, crop, multiple=scale)
        show_image(ax_row[0], hr, row["name"])
        ax_row[0].add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, edgecolor="red", lw=1.5))
        for ax, (label, img) in zip(ax_row[1:], row["panels"].items()):
            f = img.shape[0] / hr.shape[0]  # 1 for SR outputs, 1/scale for the LR input
            t, l, s = round(top * f), round(left * f), max(1, round(size * f))
            caption = row.get("captions", {}).get(label)
            show_image(ax, img[t : t + s, l : l + s], f"{label}\n{caption}" if caption else label)
        for ax in ax_row[1 + len(row["panels"]) :]:
            ax.set_axis_off()
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


def plot_history(history, path: str | Path | None = None):
    """Loss curves of a run: generator losses, discriminator (loss, D(real), D(fake)), validation.

    Args:
        history: a ``history.jsonl`` path or its list of records (``srlab.train.read_history``).
        path: where to save a PNG; the figure is returned either way.
    """
    if isinstance(history, (str, Path)):
        from .train import read_history

        history = read_history(history)
    series = lambda key: ([r["step"] for r in history if key in r], [r[key] for r in history if key in r])
    panels = [("generator", ["loss_g", "loss_pixel", "loss_perceptual", "loss_adv"], True),
              ("discriminator", ["loss_d", "d_real", "d_fake"], False),
              ("validation PSNR-Y (dB)", ["val_psnr"], False)]
    panels = [(t, [k for k in keys if series(k)[0]], log) for t, keys, log in panels]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for ax, (title, keys, log) in zip(axes[0], panels):
        for key in keys:
            steps, values = series(key)
            ax.plot(steps, values, marker="o" if key == "val_psnr" else None, ms=3, label=key)
        if log and all(v > 0 for k in keys for v in series(k)[1]):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    collapses = [r["step"] for r in history if r.get("event") == "discriminator_collapse"]
    for ax in axes[0]:
        for step in collapses:
            ax.axvline(step, color="red", ls="--", lw=1)  # where D started winning every time
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig
