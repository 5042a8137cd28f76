"""The main job on the embedded default: classical upscalers on scikit-image's photos.

``python -m srlab demo`` makes x4 LR images with MATLAB bicubic, upscales them with
nearest, bilinear, bicubic and Lanczos, prints PSNR/SSIM, and writes under ``--out``:
  * ``metrics.json``: per-image and mean numbers for every method;
  * ``metrics.md``: the mean table in Markdown;
  * ``comparison.png``: zoomed crops (LR, each method, HR) for every image.
This is the floor every learned model in the course has to beat.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from .data import EMBEDDED_IMAGES, embedded_images
from .evaluate import CLASSICAL_METHODS, metrics_table, score_pair, upscale_classical
from .reports import check_report_path, file_head, is_matplotlib_png, write_json_report
from .resize import imresize, modcrop
from .viz import crop_grid

__all__ = ["run_demo"]


def run_demo(
    out_dir: str | Path = "outputs/demo",
    scale: int = 4,
    names=EMBEDDED_IMAGES,
    methods=CLASSICAL_METHODS,
    progress: bool = True,
) -> dict:
    """Run the classical baseline on the embedded images; returns the metrics dict written to JSON.
    An ``out_dir`` holding a file of those names that an earlier demo did not write is refused
    before any work (FileExistsError), so ``--out`` pointed at the wrong folder loses nothing."""
    out_dir = Path(out_dir)
    check_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image, figure_rows = [], []
    for name, img in tqdm(embedded_images(tuple(names)).items(), desc="demo", disable=not progress):
        hr = modcrop(img, scale)
        lr = imresize(hr, 1 / scale)  # the benchmark degradation
        outputs = {m: upscale_classical(lr, scale, m) for m in methods}
        scores = {m: score_pair(sr, hr, scale) for m, sr in outputs.items()}
        per_image.append({"name": name, "size": list(hr.shape[:2]), "scores": scores})
        captions = {m: f"{s['psnr_y']:.2f} dB / {s['ssim_y']:.3f}" for m, s in scores.items()}
        figure_rows.append({"name": name, "hr": hr, "panels": {"LR": lr, **outputs, "HR": hr}, "captions": captions})
    mean = {
        m: {k: float(np.mean([r["scores"][m][k] for r in per_image])) for k in ("psnr_y", "ssim_y", "psnr_rgb")}
        for m in methods
    }
    result = {
        "scale": scale,
        "conventions": "PSNR/SSIM on BT.601 Y, crop_border=scale; LR by MATLAB bicubic",
        "mean": mean,
        "images": per_image,
    }
    write_json_report(out_dir / "metrics.json", "demo", result, flag="")
    (out_dir / "metrics.md").write_text(metrics_table(mean, label=f"x{scale} method") + "\n")
    fig = crop_grid(figure_rows, out_dir / "comparison.png", scale=scale)
    plt.close(fig)
    return result


_OWN_TABLE = re.compile(rb"\A\| x\d+ method \|")  # the first row of the table run_demo writes to metrics.md


def _is_own_table(path: Path) -> bool:
    return bool(_OWN_TABLE.match(file_head(path)))


def check_outputs(out_dir: Path) -> None:
    """Refuse, before any work, to replace a ``metrics.json``, ``metrics.md`` or ``comparison.png``
    in ``out_dir`` that an earlier demo did not write."""
    check_report_path(out_dir / "metrics.json", flag="")
    check_report_path(out_dir / "metrics.md", flag="", own=_is_own_table)
    check_report_path(out_dir / "comparison.png", flag="", own=is_matplotlib_png)
