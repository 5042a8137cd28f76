"""Upscaling whole images with a trained generator, in tiles so that any size fits.

A generator's activations are many times larger than its input: RRDBNet keeps 64-192
feature channels per LR pixel and 64 per HR pixel, so a 1000 x 1000 photo needs tens of
GB untiled. :func:`upscale` therefore cuts the image into tiles on the CPU, sends one tile
at a time to the device, and writes each result straight into the output image. Peak
memory then depends on the tile size, not on the image size.

Seams: a convolution near a tile's edge sees padding instead of the real neighbours.
Each tile is therefore run with ``tile_overlap`` extra LR pixels of real context on every
side, and only its central part is kept (each output pixel comes from exactly one tile).
The error left at the borders of the kept part fades with the distance to the padded
edge, so a margin of a few dozen pixels makes tiled and untiled outputs agree to well
over 45 dB PSNR (``tests/test_infer.py`` measures it).

Image modes: grayscale is fed to an RGB model as three equal channels and averaged back;
RGBA upscales its colour with the model and its alpha plane with MATLAB bicubic (alpha is
a mask, not a photo: a GAN has nothing to add to it, and bicubic keeps edges of shapes
clean); 8-bit stays 8-bit and 16-bit stays 16-bit.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import write_error
from .images import (
    ImageReadError,
    check_depth,
    list_images,
    name_max,
    read_image,
    to_image,
    to_tensor,
    write_image,
)
from .resize import imresize

__all__ = ["upscale", "upscale_files", "collect_inputs", "tile_windows", "model_scale", "half_dtype"]


def model_scale(model: nn.Module) -> int:
    """The upscaling factor of ``model``: its ``scale`` attribute, or measured on an 8 x 8 input."""
    scale = getattr(model, "scale", None)
    if isinstance(scale, int):
        return scale
    param = next(model.parameters())
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 8, 8, device=param.device, dtype=param.dtype))
    return out.shape[-1] // 8


def tile_windows(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Split ``range(length)`` into tiles: ``(keep_start, keep_stop, win_start, win_stop)``.

    The kept parts ``[keep_start, keep_stop)`` partition the axis; each window adds up to
    ``overlap`` pixels of context on both sides, clipped to the image.
    """
    out = []
    for start in range(0, length, tile):
        stop = min(start + tile, length)
        out.append((start, stop, max(0, start - overlap), min(length, stop + overlap)))
    return out


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _check_image(image: np.ndarray) -> None:
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected an (H, W) or (H, W, 1|2|3|4) image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise ValueError(f"unsupported pixel type {image.dtype}: use uint8, uint16 or float in [0, 1]")


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or CUDA when there is a GPU, else the CPU: where :func:`upscale` runs."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def half_dtype(device: torch.device, half: bool | None) -> torch.dtype | None:
    """The autocast dtype of :func:`upscale` (None = fp32). ``half=True``: fp16 on CUDA, bf16
    on a CPU (where fp16 convolutions are slow or missing); ``False``: fp32. ``None``: half
    where the hardware runs it natively, as in training (:func:`srlab.train.choose_precision`):
    fp16 on a GPU of compute capability >= 7.0, bf16 on a CPU with AMX (``SRLAB_CPU_AMX``
    forces it), fp32 elsewhere. fp16 and not bf16 on every GPU: with no gradients, fp16's
    range is enough here and its 3 more mantissa bits keep the pixels closer to fp32."""
    if half is None:
        from .train import choose_precision

        half = choose_precision(device, "auto").dtype is not None
    if not half:
        return None
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def inference_precision(device: torch.device, half: bool | None) -> tuple[torch.dtype | None, str]:
    """:func:`half_dtype` and why, in words: what ``srlab upscale`` prints before it starts."""
    dtype = half_dtype(device, half)
    name = {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    if half is not None:
        return dtype, f"{name} (--{'half' if half else 'fp32'})"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        why = f"{torch.cuda.get_device_name(device)} is compute capability {major}.{minor}"
    else:
        from .train import cpu_has_amx

        amx, how = cpu_has_amx()
        why = f"a CPU {'with' if amx else 'without'} AMX tiles, {how}"
    other = "--fp32 runs fp32" if dtype else f"--half runs {'fp16' if device.type == 'cuda' else 'bf16'}"
    return dtype, f"{name} (auto: {why}; {other})"


def _autocast(device: torch.device, half: bool):
    dtype = half_dtype(device, half)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def _cpu_weights(model: nn.Module, device: torch.device, half: bool):
    """Convolution weights as oneDNN runs them fastest on a CPU, for the length of one call.

    Channels-last (NHWC) weights and inputs spare oneDNN a reorder of every weight and every
    activation at every convolution; the weights are converted in place, once (the same
    values, so no second copy of the model is kept). With ``half`` the weights are also
    rounded to bf16 for the call, so that autocast does not cast them again on every tile
    (AMX then runs the convolutions); the fp32 weights are put back afterwards. Measured on
    Real-ESRGAN x4plus, 128 x 128 input, 2 cores: see ``python -m srlab.bench infer --vs-ncnn``.
    """
    if device.type != "cpu":
        yield
        return
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    dtype = half_dtype(device, half)
    if dtype is None:
        yield
        return
    kept = [(p, p.data) for conv in convs for p in (conv.weight, conv.bias) if p is not None]
    try:
        for p, data in kept:
            p.data = data.to(dtype)  # keeps channels-last
        yield
    finally:
        for p, data in kept:
            p.data = data


@torch.no_grad()
def _run_tile(model: nn.Module, window: np.ndarray, device: torch.device, half: bool) -> torch.Tensor:
    """(h, w[, 3]) pixels -> (1, C, h*s, w*s) float32 on the CPU, C as in the input.

    A grayscale window goes through the RGB model as three equal channels and is averaged back.
    """
    x = to_tensor(window).to(device)  # (1, C, h, w) in [0, 1]
    if device.type == "cpu":  # the layout the model's weights are in (see _cpu_weights)
        x = x.contiguous(memory_format=torch.channels_last)
    gray = x.shape[1] == 1
    with _autocast(device, half):
        y = model(x.expand(-1, 3, -1, -1) if gray else x).float()  # (1, 3, h*s, w*s)
    return (y.mean(dim=1, keepdim=True) if gray else y).cpu()


def upscale(
    image: np.ndarray,
    model: nn.Module,
    tile: int | None = None,
    tile_overlap: int = 32,
    device: str | torch.device | None = None,
    half: bool | None = False,
    progress: bool = False,
) -> np.ndarray:
    """Upscale an image array with ``model``, tile by tile.

    Args:
        image: (H, W), (H, W, 1|3|4) array, uint8, uint16 or float in [0, 1], RGB(A) order.
        model: A generator taking (N, 3, h, w) in [0, 1] to (N, 3, h*s, w*s). It is moved to
            ``device`` and put in eval mode.
        tile: Tile size in LR pixels; ``None`` runs the whole image at once.
        tile_overlap: LR pixels of context added around each tile (see the module docstring).
        device: ``"cuda"``, ``"cpu"``, ...; default: CUDA when available.
        half: Run the model in fp16 (CUDA) or bf16 (CPU) autocast; ``None``: where the device
            runs it natively (:func:`half_dtype`). Default fp32.
        progress: Show a progress bar over the tiles.

    Returns:
        (H*s, W*s[, C]) array with the input's dtype and channel layout.
    """
    image = np.asarray(image)
    _check_image(image)
    if tile is not None and tile < 8:
        raise ValueError(f"tile must be at least 8 pixels (or None for no tiling), got {tile}")
    if tile_overlap < 0:
        raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
    device = default_device(device)
    half = half_dtype(device, half) is not None  # None decided once, not per tile
    model = model.to(device).eval()
    scale = model_scale(model)

    squeeze = image.ndim == 3 and image.shape[2] == 1
    plane = image[..., 0] if squeeze else image
    alpha = plane.ndim == 3 and plane.shape[2] in (2, 4)  # gray + alpha, RGBA
    colour = plane[..., :-1] if alpha else plane
    colour = colour[..., 0] if colour.ndim == 3 and colour.shape[2] == 1 else colour  # (H, W, 3) or (H, W)
    with _cpu_weights(model, device, half):
        sr = _upscale_colour(colour, model, scale, tile, tile_overlap, device, half, progress)
    if alpha:  # bicubic, kept apart from the model
        sr = np.concatenate([sr.reshape(sr.shape[:2] + (-1,)), imresize(plane[..., -1], scale)[..., None]], axis=2)
    return sr[..., None] if squeeze else sr


def _upscale_colour(
    colour: np.ndarray,
    model: nn.Module,
    scale: int,
    tile: int | None,
    overlap: int,
    device: torch.device,
    half: bool,
    progress: bool,
) -> np.ndarray:
    """Tile loop: read a window, run it, keep its centre, write it into the output in place."""
    h, w = colour.shape[:2]
    # Models that fold the input with pixel_unshuffle (RRDBNet x2/x1) need windows that
    # start on multiples of the fold, or a tile would see a shifted grid.
    align = getattr(model, "unshuffle", 1)
    tile = _round_up(tile or max(h, w), align)
    overlap = _round_up(overlap, align)
    out = np.empty((h * scale, w * scale) + colour.shape[2:], dtype=colour.dtype)
    windows = [(r, c) for r in tile_windows(h, tile, overlap) for c in tile_windows(w, tile, overlap)]
    for (r0, r1, wr0, wr1), (c0, c1, wc0, wc1) in tqdm(
        windows, desc="tiles", unit="tile", leave=False, disable=not progress or len(windows) == 1
    ):
        y = _run_tile(model, colour[wr0:wr1, wc0:wc1], device, half)  # (1, C, h'*s, w'*s)
        if not y.isfinite().all():  # would be written as black pixels
            raise ValueError(
                "the model's output holds NaN or inf values: NaN weights (a diverged run), or an overflow in "
                "half precision (then run with --fp32 / half=False); nothing written"
            )
        keep = y[..., (r0 - wr0) * scale : (r1 - wr0) * scale, (c0 - wc0) * scale : (c1 - wc0) * scale]
        out[r0 * scale : r1 * scale, c0 * scale : c1 * scale] = to_image(keep, colour.dtype)
    return out


# ---------------------------------------------------------------- many files


def collect_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files directly inside each folder (sorted)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(list_images(item))
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    return files


def upscale_files(
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: nn.Module,
    force: bool = False,
    suffix: str = "",
    progress: bool = True,
    **kwargs,
) -> dict[str, list]:
    """Upscale every input image into ``out_dir`` (same file name and format, plus ``suffix``;
    a GIF's output is a PNG, as a GIF's 256 colours would undo the upscaling).

    An unreadable input is reported and skipped, and so is one whose output cannot be written
    (16-bit pixels in a file named ``.jpg``, a name longer than the file system allows), before
    it is upscaled; an existing output is skipped unless ``force``. An output that cannot be
    written for want of space stops the batch with a
    :class:`~srlab.checkpoint.WriteError` that says how far it got; no partial file is left.
    Returns ``{"written": [...], "skipped": [...], "failed": [(path, reason), ...]}``.
    ``kwargs`` go to :func:`upscale` (tile, tile_overlap, device, half).
    """
    out_dir = Path(out_dir)
    report = {"written": [], "skipped": [], "failed": []}
    files = collect_inputs(inputs)
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, inputs))}")
    files = _without_own_outputs(files, out_dir, suffix)
    bar = tqdm(files, desc="upscale", unit="img", disable=not progress)
    for index, path in enumerate(bar):
        bar.set_postfix_str(path.name)
        dest = _destination(path, out_dir, suffix)
        too_long = _name_too_long(dest)
        if too_long:  # checked first: dest.exists() would raise
            _failed(report, path, too_long)
            continue
        if dest in report["written"] or dest.resolve() == path.resolve():
            why = "another input has the same name" if dest in report["written"] else "it would overwrite its input"
            tqdm.write(f"failed {path}: {why} (use another output folder or --suffix)")
            report["failed"].append((path, why))
            continue
        if dest.exists() and not force:
            tqdm.write(f"skipped {path}: {dest} exists (--force to overwrite)")
            report["skipped"].append(dest)
            continue
        try:
            image = read_image(path)
            _check_depth(dest, image)
        except (ImageReadError, _Unwritable, OSError) as err:
            _failed(report, path, err)
            continue
        result = upscale(image, model, **kwargs)
        try:
            write_image(dest, result)
        except (ValueError, OSError) as err:  # write_image has removed its partial file
            if isinstance(err, OSError) and err.errno != errno.ENAMETOOLONG:  # a full disk: the others would fail too
                bar.close()
                raise write_error(err, dest, _where_it_stopped(report, files[index + 1 :])) from None
            _failed(report, path, err)  # an encoder that refuses this image, a name too long: this file only
            continue
        report["written"].append(dest)
    return report


def _failed(report: dict, path: Path, why) -> None:
    """Report ``path`` as failed in one line that names it once, and record why (an error or words)."""
    tqdm.write(f"failed: {why}" if str(path) in str(why) else f"failed {path}: {why}")
    report["failed"].append((path, str(why)))


class _Unwritable(ValueError):
    """An output that cannot be written, found before its input is upscaled."""


def _check_depth(dest: Path, image: np.ndarray) -> None:
    """_Unwritable when ``dest``'s format cannot hold ``image``'s depth (a 16-bit PNG named .jpg)."""
    try:
        check_depth(dest, image.dtype)
    except ValueError:
        raise _Unwritable(
            f"its pixels are 16-bit, which {dest.suffix} cannot hold: rename it .png if it is a PNG, or "
            "convert it to 8 bits, and run again"
        ) from None


def _name_too_long(dest: Path) -> str | None:
    """Why ``dest``'s name cannot be made in its folder (longer than its file system allows), or None."""
    limit, size = name_max(dest.parent), len(dest.name.encode())
    if size <= limit:
        return None
    return (
        f"the output name is {size} bytes, more than the {limit} the file system allows: rename the input "
        "or use a shorter --suffix"
    )


def _destination(path: Path, out_dir: Path, suffix: str) -> Path:
    """Where the upscaled ``path`` goes: same name and format in ``out_dir``, plus ``suffix``
    (a GIF as PNG)."""
    return out_dir / f"{path.stem}{suffix}{'.png' if path.suffix.lower() == '.gif' else path.suffix}"


def _without_own_outputs(files: list[Path], out_dir: Path, suffix: str) -> list[Path]:
    """``files`` less those that are another file's output here (``cat_x4.png`` beside ``cat.png``
    with ``-o`` the input folder and ``--suffix _x4``): run again, they would be upscaled again."""
    outputs = {_destination(p, out_dir, suffix).resolve() for p in files}
    own = [p for p in files if p.resolve() in outputs and _destination(p, out_dir, suffix).resolve() != p.resolve()]
    if own:
        names = ", ".join(p.name for p in own[:5]) + (", ..." if len(own) > 5 else "")
        tqdm.write(f"left out {len(own)} file(s) that are this command's own outputs: {names}")
    return [p for p in files if p not in own]


def _where_it_stopped(report: dict, left: list[Path]) -> str:
    """The end of the message of a batch stopped by a failed write: what was done, what was not."""
    names = ", ".join(p.name for p in left[:5]) + (", ..." if len(left) > 5 else "")
    return (
        f"; the partial file was removed. Written before it: {len(report['written'])}; not upscaled: "
        f"{len(left)}{f' ({names})' if left else ''}. Free some space and run the same command again: the "
        f"outputs already there are skipped"
    )
