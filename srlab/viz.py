"""Figures: zoomed-crop comparisons, where the differences between methods are visible.

Whole images hide SR artefacts at screen size; a 4x-8x zoom into a textured region
(hair, fur, text) shows blur, ringing and hallucinated detail at once.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .preference import NIQE_TIE, PSNR_TIE_DB

__all__ = [
    "detail_box",
    "show_image",
    "crop_grid",
    "compare",
    "compare_images",
    "plain_ticks",
    "at_least_span",
    "plot_history",
    "tied_groups",
    "perception_distortion_plot",
    "swipe_html",
    "swipe_composite",
    "swipe_widget",
    "png_bytes",
    "architecture_figure",
]


def _as_display(img: np.ndarray) -> np.ndarray:
    """Any srlab image -> float array in [0, 1] that imshow draws correctly (alpha dropped: gray +
    alpha as gray, RGBA as RGB; one channel as gray)."""
    from .images import drop_alpha

    img = drop_alpha(np.asarray(img))
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
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
            name = textwrap.fill(label, 22)  # "Real-ESRGAN x4plus (published weights)" on two lines
            show_image(ax, img[t : t + s, l : l + s], f"{name}\n{caption}" if caption else name)
        for ax in ax_row[1 + len(row["panels"]) :]:
            ax.set_axis_off()
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


def _niqe_fits(img: np.ndarray, border: int) -> bool:
    """Whether ``img`` holds a whole NIQE block (96x96) once ``border`` pixels are cropped."""
    from .metrics import NIQE_BLOCK

    return min(img.shape[:2]) - 2 * border >= NIQE_BLOCK


def compare_images(
    images: dict,
    scale: int = 4,
    *,
    path: str | Path | None = None,
    crop: int = 96,
    table: bool = True,
    niqe: bool = True,
) -> dict[str, dict[str, dict[str, float]]]:
    """Score every method's output on every image and draw one :func:`crop_grid` of them all.

    Args:
        images: ``{image name: {"hr": HR, "outputs": {method: SR image}, "lr": LR (optional)}}``;
            each row shows LR (when given), the outputs in order, then HR, each captioned with
            its PSNR-Y in dB (and its NIQE).
        path: where to save the figure as PNG (see :func:`crop_grid`).
        table: also show the scores as a Markdown table (:func:`srlab.notebook.show_markdown`):
            PSNR-Y, SSIM-Y, PSNR-RGB (and NIQE) for one image; PSNR-Y / SSIM-Y (/ NIQE) per image
            for several.
        niqe: also score every output and HR with NIQE (no reference, lower = more natural;
            :func:`srlab.metrics.niqe`, border ``scale`` cropped), next to PSNR: the one number
            here that can rank a GAN's texture above a blur. Images too small for a 96x96 block
            get none.
    Returns ``{image name: {method: score_pair(...) (+ "niqe")}}`` (PSNR-Y, SSIM-Y, PSNR-RGB with
    the benchmark conventions: border ``scale`` cropped), plus ``"HR": {"niqe": ...}`` when NIQE
    was computed.
    """
    from .evaluate import metrics_table, score_pair
    from .metrics import niqe as niqe_score
    from .notebook import show_markdown

    scores, rows = {}, []
    for name, item in images.items():
        hr, outputs = item["hr"], item["outputs"]
        scores[name] = {method: score_pair(sr, hr, scale) for method, sr in outputs.items()}
        if niqe and _niqe_fits(hr, scale):
            for method, sr in outputs.items():
                scores[name][method]["niqe"] = niqe_score(sr, crop_border=scale)
            scores[name]["HR"] = {"niqe": niqe_score(hr, crop_border=scale)}  # how natural the real photo scores
        lr = item.get("lr")
        panels = {**({"LR": lr} if lr is not None else {}), **outputs, "HR": hr}
        captions = {
            method: ", ".join(
                ([f"{s['psnr_y']:.2f} dB"] if "psnr_y" in s else [])
                + ([f"NIQE {s['niqe']:.2f}"] if "niqe" in s else [])
            )
            for method, s in scores[name].items()
        }
        rows.append({"name": name, "hr": hr, "panels": panels, "captions": captions})
    has_niqe = any("niqe" in s for per_method in scores.values() for s in per_method.values())
    if table:
        if len(scores) == 1:
            ((name, per_method),) = scores.items()
            keys = ("psnr_y", "ssim_y", "psnr_rgb") + (("niqe",) if has_niqe else ())
            show_markdown(metrics_table(per_method, keys, label=f"{name}, x{scale}"))
        else:
            methods = list(dict.fromkeys(m for per_method in scores.values() for m in per_method))
            by_method = {m: {img: scores[img][m] for img in scores if m in scores[img]} for m in methods}
            keys = ("psnr_y", "ssim_y") + (("niqe",) if has_niqe else ())
            show_markdown(metrics_table(by_method, keys, label=f"x{scale}", groups=list(scores)))
    crop_grid(rows, path=path, scale=scale, crop=crop)
    return scores


def compare(
    outputs: dict,
    hr: np.ndarray,
    scale: int = 4,
    *,
    lr: np.ndarray | None = None,
    name: str = "image",
    path: str | Path | None = None,
    crop: int = 96,
    table: bool = True,
    niqe: bool = True,
) -> dict[str, dict[str, float]]:
    """Compare upscalers on one image: score each output against ``hr``, show the table, draw the crops.

    ``outputs`` is ``{method: SR image}`` (same size as ``hr``); ``lr``, when given, is shown
    first. Returns ``{method: {"psnr_y", "ssim_y", "psnr_rgb", "niqe"}}`` and ``"HR": {"niqe"}``
    (NIQE when ``niqe`` and the image holds a 96x96 block); the figure is the current one
    (``plt.gcf()``), saved to ``path`` when given.
    """
    item = {"hr": hr, "outputs": outputs, "lr": lr}
    return compare_images({name: item}, scale, path=path, crop=crop, table=table, niqe=niqe)[name]


def plain_ticks(ax, axis: str = "y") -> None:
    """Tick labels as plain numbers (30.69, not an offset such as ``1e-5 + 3.069e1``);
    log-scaled axes are left as they are."""
    from matplotlib.ticker import ScalarFormatter

    scale = ax.get_yscale() if axis == "y" else ax.get_xscale()
    if scale == "linear":
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_scientific(False)
        (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


VAL_PSNR_SPAN_DB = 1.0  # the validation panel shows at least this many dB: noise of 0.001 dB stays flat


def at_least_span(ax, span: float, axis: str = "y") -> None:
    """Widen a linear axis to at least ``span`` around its data: matplotlib would stretch a
    change of 0.001 dB over the whole panel, and a flat curve would look like a steep rise."""
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if high - low < span:
        mid, other = (low + high) / 2, (ax.get_xlim() if axis == "y" else ax.get_ylim())[0]
        ends = [(other, mid - span / 2), (other, mid + span / 2)]
        ax.update_datalim(ends if axis == "y" else [e[::-1] for e in ends])  # autoscaling stays on: a
        ax.autoscale_view()  # line drawn later (bicubic's PSNR) still widens the axis


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
    panels = [
        ("generator", ["loss_g", "loss_pixel", "loss_perceptual", "loss_adv"], True),
        ("discriminator", ["loss_d", "d_real", "d_fake"], False),
        ("validation PSNR-Y (dB)", ["val_psnr"], False),
    ]
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        plain_ticks(ax)  # a nearly flat curve keeps readable dB values, not an axis offset
        if keys == ["val_psnr"]:
            at_least_span(ax, VAL_PSNR_SPAN_DB)
    collapses = [r["step"] for r in history if r.get("event") == "discriminator_collapse"]
    for ax in axes[0]:
        for step in collapses:
            ax.axvline(step, color="red", ls="--", lw=1)  # where D started winning every time
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


# ---------------------------------------------------------------- perception-distortion plane


def tied_groups(points: dict, psnr_db: float = PSNR_TIE_DB, niqe: float = NIQE_TIE) -> list[list[str]]:
    """Groups of labels whose ``(psnr_y, niqe)`` points are within ``psnr_db`` and ``niqe`` of each
    other (chained: a ties b, b ties c puts a, b, c in one group); only groups of two or more.

    Such points sit on top of each other in :func:`perception_distortion_plot`: no ordering of
    them can be read from the figure, and the figure says so.
    """
    labels = list(points)
    group = {label: {label} for label in labels}
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            (pa, na), (pb, nb) = points[a], points[b]
            same_psnr = pa == pb or abs(pa - pb) < psnr_db  # equal infinities (two references) tie
            if same_psnr and abs(na - nb) < niqe and group[a] is not group[b]:
                merged = group[a] | group[b]
                for label in merged:
                    group[label] = merged
    seen, out = set(), []
    for label in labels:
        g = group[label]
        if len(g) > 1 and id(g) not in seen:
            seen.add(id(g))
            out.append([m for m in labels if m in g])
    return out


def perception_distortion_plot(
    points: dict[str, tuple[float, float]],
    path: str | Path | None = None,
    *,
    title: str = "perception-distortion plane",
    references: tuple[str, ...] = ("HR", "bicubic"),
):
    """Every method as one point: NIQE on x (lower = more natural), PSNR-Y on y (higher = less distortion).

    Blau & Michaeli (2018) proved that no method can be both optimal in distortion (PSNR) and
    perfectly natural: the reachable points have a bound, and pixel-loss models sit high and to
    the right of the GAN models. ``points`` is ``{label: (psnr_y, niqe)}``; a point with infinite
    PSNR (HR, the reference itself) is drawn as a dotted vertical line at its NIQE, the
    naturalness of real photos. ``references`` (HR, bicubic) are styled apart from the models.
    Points that tie (:func:`tied_groups`) are named in a note under the plot.
    """
    ties = tied_groups(points)
    tied = {label for group in ties for label in group}
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    for label, (psnr_y, niqe) in points.items():
        if not np.isfinite(psnr_y):
            ax.axvline(niqe, color="grey", ls=":", lw=1.2, label=f"{label} (PSNR ∞)")
            ax.annotate(f"{label} (PSNR ∞)", (niqe, 0.02), xycoords=("data", "axes fraction"), xytext=(3, 0),
                        textcoords="offset points", fontsize=8, color="grey")  # fmt: skip
            continue
        style = dict(marker="s", color="grey", ms=7) if label in references else dict(marker="o", ms=7)
        ax.plot([niqe], [psnr_y], ls="none", label=label, **style)
        if label not in tied:
            ax.annotate(label, (niqe, psnr_y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    for group in ties:  # one label for points on top of each other, not a pile of overprinted names
        psnr_y, niqe = points[group[0]]
        if np.isfinite(psnr_y):
            ax.annotate(" = ".join(group), (niqe, psnr_y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("NIQE (lower = more natural)")
    ax.set_ylabel("PSNR-Y (dB, higher = less distortion)")
    ax.text(0.01, 0.99, "↖ better", transform=ax.transAxes, ha="left", va="top", fontsize=8, color="grey")
    ax.margins(0.15)
    ax.grid(alpha=0.3)
    plain_ticks(ax, "x")
    plain_ticks(ax, "y")
    ax.set_title(title, fontsize=10)
    if ties:
        names = "; ".join(", ".join(g) for g in ties)
        note = f"tie (PSNR-Y within {PSNR_TIE_DB} dB and NIQE within {NIQE_TIE}): {names}. The plot cannot order these."
        fig.text(0.01, 0.01, note, fontsize=8, wrap=True, va="bottom")
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    else:
        fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


# ---------------------------------------------------------------- before/after swipe


def png_bytes(img: np.ndarray) -> bytes:
    """An RGB or grayscale image (any dtype) as 8-bit PNG file bytes, e.g. for an ipywidgets Image."""
    import cv2

    img = (_as_display(img) * 255).round().astype(np.uint8)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    return buf.tobytes()


def _png_base64(img: np.ndarray) -> str:
    import base64

    return base64.b64encode(png_bytes(img)).decode("ascii")


def swipe_html(
    left: np.ndarray,
    right: np.ndarray,
    left_label: str = "before",
    right_label: str = "after",
    path: str | Path | None = None,
    width: int | None = None,
) -> str:
    """A self-contained before/after swipe: inline CSS/JS, images embedded as base64 PNG.

    No CDN and no kernel: it works in a saved or CI-executed notebook (``IPython.display.HTML``)
    and as a standalone page (``path``). Drag on the image, or move the range input below it.
    Both images must have the same size (upscale an LR image first).
    """
    import html
    import uuid

    if left.shape[:2] != right.shape[:2]:
        raise ValueError(f"swipe images differ in size: {left.shape[:2]} vs {right.shape[:2]}")
    h, w = left.shape[:2]
    width = width or w
    height = round(h * width / w)
    uid = "sw" + uuid.uuid4().hex[:8]
    page = f"""<div id="{uid}" class="srlab-swipe" style="font:13px sans-serif;width:{width}px">
<div class="frame" style="position:relative;width:{width}px;height:{height}px;cursor:ew-resize;user-select:none;touch-action:none">
<img draggable="false" alt="{html.escape(left_label)}" src="data:image/png;base64,{_png_base64(left)}"
 style="position:absolute;left:0;top:0;width:100%;height:100%;image-rendering:pixelated">
<img draggable="false" class="right" alt="{html.escape(right_label)}" src="data:image/png;base64,{_png_base64(right)}"
 style="position:absolute;left:0;top:0;width:100%;height:100%;image-rendering:pixelated;clip-path:inset(0 0 0 50%)">
<div class="bar" style="position:absolute;top:0;bottom:0;left:50%;width:2px;margin-left:-1px;background:#fff;box-shadow:0 0 3px #000"></div>
<span style="position:absolute;left:6px;top:6px;color:#fff;background:rgba(0,0,0,.55);padding:1px 5px">{html.escape(left_label)}</span>
<span style="position:absolute;right:6px;top:6px;color:#fff;background:rgba(0,0,0,.55);padding:1px 5px">{html.escape(right_label)}</span>
</div>
<input class="pos" type="range" min="0" max="1000" value="500" style="width:{width}px" aria-label="swipe position">
</div>
<script>(function(){{
var root=document.getElementById("{uid}"),frame=root.querySelector(".frame"),right=root.querySelector("img.right"),
bar=root.querySelector(".bar"),pos=root.querySelector("input.pos");
function set(f){{f=Math.max(0,Math.min(1,f));var p=(100*f).toFixed(2)+"%";
right.style.clipPath="inset(0 0 0 "+p+")";bar.style.left=p;pos.value=Math.round(1000*f);}}
pos.addEventListener("input",function(){{set(pos.value/1000);}});
var drag=false;function at(e){{var r=frame.getBoundingClientRect();set((e.clientX-r.left)/r.width);}}
frame.addEventListener("pointerdown",function(e){{e.preventDefault();drag=true;at(e);}});
window.addEventListener("pointermove",function(e){{if(drag)at(e);}});
window.addEventListener("pointerup",function(){{drag=false;}});
}})();</script>"""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>srlab swipe: "
            f"{html.escape(left_label)} | {html.escape(right_label)}</title></head>"
            f"<body style='margin:16px'>{page}</body></html>"
        )
    return page


def swipe_composite(left: np.ndarray, right: np.ndarray, split: float) -> np.ndarray:
    """``left`` up to column ``split * W``, ``right`` after it, and a white line between."""
    out = (_as_display(left) * 255).round().astype(np.uint8)
    r = (_as_display(right) * 255).round().astype(np.uint8)
    x = int(round(np.clip(split, 0, 1) * out.shape[1]))
    out[:, x:] = r[:, x:]
    out[:, max(x - 1, 0) : x + 1] = 255
    return out


def swipe_widget(images: dict, left: str | None = None, right: str | None = None):
    """Before/after comparison of any two of ``images`` (``name -> (H, W[, 3]) array``, one size)
    built from core ipywidgets only (Dropdown, FloatSlider, Image), so it works in Colab."""
    import ipywidgets as w

    names = list(images)
    pick_l = w.Dropdown(options=names, value=left or names[0], description="left")
    pick_r = w.Dropdown(options=names, value=right or names[-1], description="right")
    split = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01, description="swipe", readout=False)
    view = w.Image(format="png")

    def redraw(_=None):
        comp = swipe_composite(images[pick_l.value], images[pick_r.value], split.value)
        view.value = png_bytes(comp)

    for control in (pick_l, pick_r, split):
        control.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([pick_l, pick_r]), split, view])


# ---------------------------------------------------------------- architecture figures


def architecture_figure(kind: str = "generator", path: str | Path | None = None):
    """Block diagram of the SRGAN generator (SRResNet) or discriminator, drawn from the layer list."""
    from matplotlib.patches import FancyBboxPatch

    if kind == "generator":
        blocks = [
            ("LR\n3 x h x w", "#ddd"),
            ("conv 9x9\n64, PReLU", "#9cf"),
            ("B x residual block\nconv-BN-PReLU-conv-BN\n+ skip", "#fc9"),
            ("conv 3x3, BN\n+ global skip", "#9cf"),
            ("conv 3x3 256\nPixelShuffle x2\nPReLU", "#9d9"),
            ("conv 3x3 256\nPixelShuffle x2\nPReLU", "#9d9"),
            ("conv 9x9\n3", "#9cf"),
            ("SR\n3 x 4h x 4w", "#ddd"),
        ]
        title = "SRGAN generator (SRResNet): B = 16 in the paper, 8 in the student project"
    elif kind == "discriminator":
        blocks = [
            ("HR or SR\n3 x 96 x 96", "#ddd"),
            ("conv 64\nLReLU", "#9cf"),
            ("conv 64 /2\nBN, LReLU", "#fc9"),
            ("conv 128\nconv 128 /2\nBN, LReLU", "#fc9"),
            ("conv 256\nconv 256 /2\nBN, LReLU", "#fc9"),
            ("conv 512\nconv 512 /2\nBN, LReLU", "#fc9"),
            ("dense 1024\nLReLU", "#9d9"),
            ("dense 1\nlogit", "#f99"),
        ]
        title = "SRGAN discriminator: strided convs instead of pooling; the sigmoid lives in the loss"
    else:
        raise ValueError(f"kind must be 'generator' or 'discriminator', got {kind!r}")
    fig, ax = plt.subplots(figsize=(1.7 * len(blocks), 2.4))
    for i, (label, colour) in enumerate(blocks):
        ax.add_patch(FancyBboxPatch((i * 1.7 + 0.1, 0.2), 1.35, 1.6, boxstyle="round,pad=0.05", fc=colour, ec="#333"))
        ax.text(i * 1.7 + 0.775, 1.0, label, ha="center", va="center", fontsize=8)
        if i:
            ax.annotate("", xy=(i * 1.7 + 0.08, 1.0), xytext=(i * 1.7 - 0.23, 1.0), arrowprops=dict(arrowstyle="->"))
    ax.set_xlim(0, 1.7 * len(blocks))
    ax.set_ylim(0, 2.1)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
