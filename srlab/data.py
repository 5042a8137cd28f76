"""Data: embedded photos, training patches, a fast patch store, benchmark folders.

* The embedded default: colour photos scikit-image ships inside its wheel. The demo and
  the smoke/cpu presets run on them on a fresh machine with nothing downloaded. None of
  them is in Set5/Set14/BSD100/Urban100, so training on them never leaks into test sets.
* ``extract_patches`` decodes HR images once and stores them whole, uint8 bytes in a few
  memory-mapped ``.npy`` shards: a random patch is then a memory read, not a PNG decode
  (decoding a 2K PNG costs ~50 ms, which starves a GPU on a 2-core Colab machine). Each pixel
  is stored once. The training sub-images (BasicSR's overlapping 480 px windows every 240 px)
  are only a list of corners: ``PatchStore.hr(i)`` is a view of the memory-mapped image, and
  the crop is cut when the batch is read. Storing each sub-image's own pixels, as srlab did
  before, kept every pixel about 3.3 times (DIV2K: about 22 GB instead of 6.6 GB) for the same
  batches.
* ``PatchDataset`` (training) and ``ImageFolderDataset`` (benchmarks) are torch datasets.

Image conventions for training: everything becomes (H, W, 3) uint8 RGB: grayscale is
repeated to three channels, alpha is dropped, 16-bit is scaled to 8 bits (x / 257, rounded).

Training batches are ``(lr, hr)``, or ``(lr, hr, hr_sharp)`` with ``usm_target=True``:
Real-ESRGAN's GAN stage aims its pixel and perceptual losses at the unsharp-masked HR
(``srlab.degradations.usm_sharpen``) and, like its ``feed_data``, degrades that sharpened
HR, not the plain one, to make the LR.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .images import atomic_write, to_tensor

if TYPE_CHECKING:
    import torch

__all__ = [
    "EMBEDDED_IMAGES",
    "embedded_images",
    "stand_in_photos",
    "to_rgb8",
    "load_training_images",
    "RandomPatches",
    "min_validation_size",
    "center_crops",
    "rank_slice",
    "extract_patches",
    "PatchStore",
    "PatchDataset",
    "StorePatches",
    "is_patch_store",
    "ImageFolderDataset",
    "extract_archive",
    "download_dataset",
]

# Natural colour photos from skimage.data, with a loader for each (all uint8 RGB).
EMBEDDED_IMAGES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "immunohistochemistry",
    "hubble_deep_field",
)


def _load(name: str) -> np.ndarray:
    from skimage import data

    if name == "motorcycle":
        return data.stereo_motorcycle()[0]  # left view of the stereo pair, (500, 741, 3)
    return getattr(data, name)()


def embedded_images(names: tuple[str, ...] = EMBEDDED_IMAGES) -> dict[str, np.ndarray]:
    """Load the embedded photos as ``{name: (H, W, 3) uint8 RGB}``; nothing is downloaded."""
    unknown = sorted(set(names) - set(EMBEDDED_IMAGES))
    if unknown:
        raise ValueError(f"unknown embedded images {unknown}; available: {', '.join(EMBEDDED_IMAGES)}")
    return {name: np.ascontiguousarray(_load(name)) for name in names}


def stand_in_photos(count: int, size: tuple[int, int] = (1356, 2040), seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` generated photos, one at a time of ``size`` (h, w; default DIV2K's 2040 px wide): the embedded photos
    resized, with mild noise so they compress and decode like camera photos rather than like smooth
    upscales. For benchmarks and simulations: a stand-in for data sets nothing here may download."""
    from .resize import imresize

    rng = np.random.default_rng(seed)
    photos = list(embedded_images().values())
    for k in range(count):
        img = imresize(photos[(k + seed) % len(photos)], size=size).astype(np.int16)
        yield np.clip(img + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- training patches


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Any srlab image -> (H, W, 3) uint8 RGB: gray repeated, alpha dropped, 16 bit / 257."""
    if img.ndim == 3 and img.shape[2] in (2, 4):
        img = img[..., :-1]
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 257).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 or uint16 image, got {img.dtype}")
    if img.ndim == 2 or img.shape[2] == 1:
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(img)


def load_training_images(folder=None, exclude: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """HR images for training as ``{name: (H, W, 3) uint8 RGB}``.

    ``folder=None`` gives the embedded photos. From a folder, grayscale is repeated to RGB,
    alpha dropped and 16-bit reduced to 8 bits; unreadable files are skipped and named in
    one warning. A folder without a single usable image is an error.
    """
    if folder is None:
        return {k: v for k, v in embedded_images().items() if k not in exclude}
    import warnings

    from .images import ImageReadError, drop_alpha, list_images, read_image

    images, bad = {}, []
    for path in list_images(folder):
        if path.name in exclude:
            continue
        try:
            img = drop_alpha(read_image(path))
        except ImageReadError as err:
            bad.append(f"{path.name} ({err})")
            continue
        images[path.name] = to_rgb8(img)
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable images: {'; '.join(bad)}", stacklevel=2)
    if not images:
        raise ValueError(f"no usable training image in {folder}")
    return images


# The degradation of a batch source whose LR the training loop makes on its device
# (``TrainConfig.degrade_on="device"``, :mod:`srlab.degrade_batch`): its batches are
# ``(None, hr[, hr_sharp])``, the CPU only crops and augments.
HR_ONLY = "hr_only"


def _training_sample(hr: np.ndarray, degradation: str, scale: int, rng, usm_target: bool) -> tuple:
    """``(lr, hr)`` from one augmented HR patch, or ``(lr, hr, hr_sharp)`` with ``usm_target``;
    lr is None with ``degradation=HR_ONLY``.

    The sharpened patch is what Real-ESRGAN degrades (``filter2D(self.gt_usm, ...)`` in its
    ``feed_data``), so the LR is made from it; it is rounded to 8 bits like every training
    image here (the reference keeps it in float: at most half a grey level apart).
    """
    from .degradations import degrade, usm_sharpen

    sharp = usm_sharpen(hr) if usm_target else None
    source = hr if sharp is None else sharp
    lr = None if degradation == HR_ONLY else degrade(degradation, source, scale=scale, rng=rng)
    return (lr, hr) if sharp is None else (lr, hr, sharp)


def hr_batch(arrays) -> torch.Tensor:
    """(H, W, 3) uint8 patches -> one (N, 3, H, W) uint8 tensor with channels-last strides: a
    quarter of float32's bytes through the loader and the host-to-GPU copy, no conversion on the
    CPU (``Trainer.to_device`` makes it float in [0, 1], the same values as ``to_tensor``)."""
    import torch

    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def _stack(samples: list[tuple], join) -> tuple:
    """Per-sample tuples ``(lr, hr[, hr_sharp])`` -> one batch tensor per position (None stays None)."""
    return tuple(None if column[0] is None else join(list(column)) for column in zip(*samples))


class RandomPatches:
    """Random HR crops of in-memory images with random flips/90-degree rotations, and their LR.

    Batch ``step`` is a pure function of ``(seed, step)``: a resumed run sees exactly
    the batches an uninterrupted one would, with no sampler state to save.

    Args:
        images: HR images, (H, W, 3) uint8.
        hr_size: side of the HR patches (a multiple of ``scale``).
        scale: SR factor; LR patches are ``hr_size // scale`` pixels.
        batch_size: patches per batch.
        seed: base seed.
        degradation: how LR is made (``srlab.degradations``; default MATLAB bicubic).
        usm_target: also return the USM-sharpened HR, the target of Real-ESRGAN's pixel and
            perceptual losses, and make the LR from it (see :func:`_training_sample`).
            ``False`` gives the same batches as before the option existed.
    """

    def __init__(
        self,
        images,
        hr_size: int,
        scale: int,
        batch_size: int,
        seed: int = 0,
        degradation: str = "bicubic",
        usm_target: bool = False,
    ):
        if hr_size % scale:
            raise ValueError(f"hr_size={hr_size} must be a multiple of scale={scale}")
        images = list(images)
        self.images = [im for im in images if min(im.shape[:2]) >= hr_size]
        if not self.images:
            raise ValueError(f"no training image is at least {hr_size}x{hr_size} pixels")
        self.skipped_small = len(images) - len(self.images)
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()  # big images give proportionally more patches
        self.hr_size, self.scale, self.batch_size, self.seed = hr_size, scale, batch_size, seed
        self.degradation, self.usm_target = degradation, usm_target

    def batch(self, step: int, rank: int = 0, world: int = 1):
        """(lr, hr) float32 tensors in [0, 1]: (N, 3, h, w) and (N, 3, h*scale, w*scale);
        (lr, hr, hr_sharp) with ``usm_target``, hr_sharp shaped like hr. With ``HR_ONLY``:
        (None, hr[, hr_sharp]) as uint8 (see :func:`hr_batch`).

        With ``world`` > 1: process ``rank``'s share of the same global batch (see :func:`rank_slice`).
        """
        import torch

        rng = np.random.default_rng([self.seed, step])
        with one_blas_thread():  # small products; threads only fight torch's
            samples = self._samples(rng, rank_slice(self.batch_size, rank, world))
        if self.degradation == HR_ONLY:
            return _stack(samples, hr_batch)
        return _stack(samples, lambda arrays: torch.cat([to_tensor(a) for a in arrays]))

    def _samples(self, rng, keep: range) -> list[tuple]:
        """The kept samples of one batch as ``(lr, hr[, hr_sharp])`` uint8 arrays."""
        randomised = self.degradation == "realesrgan"  # the one degradation that draws from rng
        samples = []
        for k in range(self.batch_size):
            img = self.images[rng.choice(len(self.images), p=self.weights)]
            top = rng.integers(0, img.shape[0] - self.hr_size + 1)
            left = rng.integers(0, img.shape[1] - self.hr_size + 1)
            turns, flip = rng.integers(4), rng.random() < 0.5
            if k not in keep and not randomised:
                continue  # another rank's sample: its draws are made, so later samples stay the same
            hr = np.rot90(img[top : top + self.hr_size, left : left + self.hr_size], k=turns)
            hr = np.ascontiguousarray(hr[:, ::-1] if flip else hr)
            sample = _training_sample(hr, self.degradation, self.scale, rng, self.usm_target)
            if k in keep:
                samples.append(sample)
        return samples


def rank_slice(batch_size: int, rank: int = 0, world: int = 1) -> range:
    """The samples of a global batch that process ``rank`` of ``world`` trains on: a contiguous
    equal slice, so the ranks' slices, in rank order, are the one-process batch."""
    if batch_size % world:
        raise ValueError(
            f"batch_size={batch_size} is the global batch and must be divisible by the number of "
            f"processes ({world}): use e.g. --batch-size {batch_size // world * world or world}"
        )
    share = batch_size // world
    return range(rank * share, (rank + 1) * share)


def min_validation_size(scale: int) -> int:
    """The smallest side a validation image can have: PSNR/SSIM crop ``scale`` pixels at each
    border and SSIM's window is 11 pixels wide, on an image cropped to a multiple of ``scale``."""
    from .metrics import _SSIM_WINDOW

    return -(-(2 * scale + _SSIM_WINDOW) // scale) * scale  # x4: 20, x2: 16, x8: 32


def center_crops(images, size: int, scale: int):
    """Validation pairs: the central ``size`` square of each image (whole image if smaller,
    cropped to a multiple of ``scale``) and its bicubic LR, as lists of (1, 3, h, w) tensors.

    ``images``: a list, or ``{file name: image}`` so that messages name the files. An image
    under :func:`min_validation_size` is skipped with a warning; with none left it is an error.
    """
    import warnings

    from .resize import imresize, modcrop

    least = min_validation_size(scale)
    if size < least:
        raise ValueError(f"the validation crop ({size} px) is too small: x{scale} needs at least {least}")
    named = (
        images.items()
        if isinstance(images, dict)
        else ((f"validation image {k}", im) for k, im in enumerate(images, 1))
    )
    pairs, small = [], []
    for name, img in named:
        h, w = img.shape[:2]
        if min(h, w) < least:
            small.append(f"{name} ({h}x{w})")
            continue
        s = min(size, h, w)
        hr = modcrop(img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s], scale)
        lr = imresize(hr, 1 / scale)
        pairs.append((to_tensor(lr), to_tensor(hr)))
    too_small = f"smaller than {least}x{least} pixels, the least x{scale} validation needs: {'; '.join(small)}"
    if not pairs:
        raise ValueError(f"every validation image is {too_small}")
    if small:
        warnings.warn(f"skipped {len(small)} of {len(small) + len(pairs)} validation images {too_small}", stacklevel=2)
    return pairs


# ---------------------------------------------------------------- patch store

STORE_INDEX = "index.json"
# How the shards hold pixels, recorded in every shard's settings and in the index: "images" =
# each decoded image whole, once. srlab before it stored every sub-image's own pixels (a 4-D
# shard, no layout key): such shards are cut again, and such an index is refused when read.
LAYOUT = "images"


def _positions(length: int, size: int, stride: int, multiple: int) -> list[int]:
    """Top/left corners covering [0, length): every ``stride`` pixels, plus one flush with the end
    (BasicSR's rule) so no border strip is lost; all multiples of ``multiple`` (the LR grid)."""
    last = (length - size) // multiple * multiple
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def _image_size(path) -> tuple[int, int] | str:
    """(H, W) as read_image returns it, from the file header alone; or why it cannot be read
    (an image over the pixel cap is refused here, before its shard space is allocated)."""
    from .images import ImageReadError, image_size

    try:
        return image_size(path)
    except (ImageReadError, OSError) as err:
        return str(err)


def _decode_image(job):
    """Worker: decode one HR image (and its LR) whole as (H, W, 3) uint8, or give an error string."""
    from .images import ImageReadError, read_image

    hr_path, lr_path, hw, _tops, _lefts, scale = job
    try:
        hr = to_rgb8(read_image(hr_path))
        lr = to_rgb8(read_image(lr_path)) if lr_path else None
    except (ImageReadError, ValueError) as err:
        return None, None, str(err)
    if hr.shape[:2] != tuple(hw):  # the windows and the shard space were sized from the header
        return None, None, f"decoded {hr.shape[0]}x{hr.shape[1]}, its header says {hw[0]}x{hw[1]}"
    if lr is not None and lr.shape[:2] != (hr.shape[0] // scale, hr.shape[1] // scale):
        return None, None, f"LR {lr.shape[:2]} is not HR {hr.shape[:2]} / {scale}"
    return hr, lr, None


def extract_patches(
    hr_dir,
    out_dir,
    size: int = 480,
    stride: int = 240,
    workers: int = 2,
    lr_dir=None,
    scale: int = 4,
    images_per_shard: int = 64,
    progress: bool = True,
) -> Path:
    """Decode every HR image in ``hr_dir`` once into a store for fast random access to its
    ``size`` x ``size`` sub-images (windows every ``stride`` pixels, BasicSR's sub-images).

    Each pixel is stored once: the decoded images go whole, as uint8 bytes back to back, into
    one flat ``.npy`` per shard (memory-mapped when read); the shard's JSON and ``index.json``
    give each image's offset and (h, w) and list the windows (image, top, left). A sub-image is
    then a view of its memory-mapped image (:class:`PatchStore`), and the training crop is cut
    when the batch is read. Storing each overlapping sub-image's own pixels, as srlab did
    before, kept every pixel about 3.3 times at 480 / 240 (DIV2K: about 22 GB for 6.6 GB of
    pixels); the windows, and so every batch, are the same.

    Args:
        size, stride: sub-image side and step (BasicSR: 480 / 240; the primary student
            project: 256 / 256). Both must be multiples of ``scale``.
        workers: processes decoding images in parallel.
        lr_dir: optional LR folder (paired with HR by sorted order, e.g. DIV2K's official
            bicubic x4; names that differ are warned about); its images, ``HR / scale`` each,
            are stored whole in ``lr_*.npy`` shards, and a sub-image's LR is the aligned
            ``size / scale`` window.
        images_per_shard: images per shard; a finished shard is never redone, so an
            interrupted run resumes where it stopped.
    Unreadable images and images smaller than ``size`` are skipped and named in one warning
    (sizes and the pixel cap are checked in the headers, before anything is decoded); when no
    image gives a patch it is an error. Each shard records the settings and images it was cut
    with: a rerun into a folder holding a store made otherwise (another size, stride, scale, LR
    folder or not, or image list) is refused, naming the setting; shards of srlab versions that
    recorded no settings, or stored every sub-image's pixels (no ``layout``), are cut again.
    Returns ``out_dir``.
    """
    import warnings
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    from .images import pair_images

    if size % scale or stride % scale:
        raise ValueError(f"size={size} and stride={stride} must be multiples of scale={scale}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with_lr = bool(lr_dir)  # pair_images treats "" as no LR folder too
    # not the folders' paths: a store moved with its images (another machine, a Drive copy) resumes
    settings = {
        "layout": LAYOUT,
        "with_lr": with_lr,
        "size": size,
        "stride": stride,
        "scale": scale,
        "images_per_shard": images_per_shard,
    }
    jobs, skipped = [], []
    for hr_path, lr_path in pair_images(hr_dir, lr_dir or None):
        hw = _image_size(hr_path)
        if isinstance(hw, str):
            skipped.append(f"{hr_path.name} ({hw})")
        elif min(hw) < size:
            skipped.append(f"{hr_path.name} ({hw[0]}x{hw[1]} is smaller than {size})")
        else:
            jobs.append(
                (
                    str(hr_path),
                    str(lr_path) if lr_path else None,
                    tuple(hw),
                    _positions(hw[0], size, stride, scale),
                    _positions(hw[1], size, stride, scale),
                    scale,
                )
            )
    if not jobs:
        raise ValueError(f"no usable image in {hr_dir} (need at least {size}x{size}): {'; '.join(skipped)}")
    shards = [jobs[i : i + images_per_shard] for i in range(0, len(jobs), images_per_shard)]
    # every finished shard is checked before anything is written: a refused rerun changes nothing
    done = [_finished_shard(out_dir, k, settings, shard_jobs) for k, shard_jobs in enumerate(shards)]
    metas = []
    bar = tqdm(total=len(jobs), desc="patches", unit="img", disable=not progress)
    with get_context("spawn").Pool(workers) if workers > 1 else _InlinePool() as pool:
        for k, shard_jobs in enumerate(shards):
            meta = done[k]
            if meta is None:
                meta = _write_shard(pool, shard_jobs, out_dir, k, scale, with_lr, bar, settings)
            else:  # finished in an earlier run
                bar.update(len(shard_jobs))
            skipped += meta["skipped"]
            metas.append(meta)
    bar.close()
    if not sum(m["count"] for m in metas):
        (out_dir / STORE_INDEX).unlink(missing_ok=True)  # an old index would describe the shards just redone
        raise ValueError(
            f"no usable image in {hr_dir}: no image could be cut, {len(skipped)} skipped: {'; '.join(skipped)}"
        )
    _write_index(out_dir, metas, size, scale, with_lr)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} images: {'; '.join(skipped)}", stacklevel=2)
    return out_dir


def _sources(jobs) -> list[list]:
    """The [HR name, LR name or None] of each image of a shard, as its JSON records them."""
    return [[Path(hr).name, Path(lr).name if lr else None] for hr, lr, *_ in jobs]


def _finished_shard(out_dir: Path, k: int, settings: dict, jobs) -> dict | None:
    """Shard k's JSON when an earlier run finished it with these settings and images; None when
    it is to be cut (again). A shard made with other settings is a ValueError."""
    try:
        meta = json.loads((out_dir / f"shard_{k:05d}.json").read_text())
    except (OSError, ValueError):  # not there, or not a JSON file: cut it
        return None
    old = meta.get("settings") if isinstance(meta, dict) else None
    if not isinstance(old, dict) or old.get("layout") != LAYOUT or not meta.get("count"):
        # an older srlab recorded no settings, or stored every sub-image's pixels (no layout: its
        # 4-D shard would be misread); an empty shard may decode now (files fixed)
        return None
    differ = [f"{key}={old.get(key)!r} (now {value!r})" for key, value in settings.items() if old.get(key) != value]
    if not differ and meta.get("sources") != _sources(jobs):
        differ = [f"the images of shard {k} (images were added, removed or renamed)"]
    if differ:
        raise ValueError(
            f"{out_dir} holds a patch store made with other settings: {'; '.join(differ)}: "
            "use another out_dir, or delete this one to cut the patches again"
        )
    return meta


class _InlinePool:
    """``workers=1``: the same interface as a Pool, in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, jobs):
        return map(fn, jobs)


def _write_shard(pool, jobs, out_dir: Path, k: int, scale: int, with_lr: bool, bar, settings) -> dict:
    """Decode shard k's images and write each whole, back to back, into one flat uint8 ``.npy``
    (its LR images into another) through a memory map sized from the headers (the whole shard
    never sits in RAM); then commit the shard by writing its JSON last: a shard without JSON is
    incomplete and gets redone. Returns the JSON."""
    hr_bytes = sum(h * w * 3 for _, _, (h, w), *_ in jobs)
    lr_bytes = sum((h // scale) * (w // scale) * 3 for _, _, (h, w), *_ in jobs)
    hr_tmp = out_dir / f"shard_{k:05d}.npy.tmp"
    hr_mm = np.lib.format.open_memmap(hr_tmp, mode="w+", dtype=np.uint8, shape=(hr_bytes,))
    lr_tmp = out_dir / f"lr_{k:05d}.npy.tmp"
    lr_mm = np.lib.format.open_memmap(lr_tmp, mode="w+", dtype=np.uint8, shape=(lr_bytes,)) if with_lr else None
    images, entries, skipped, hr_end, lr_end = [], [], [], 0, 0
    for job, (hr, lr, err) in zip(jobs, pool.imap(_decode_image, jobs)):
        bar.update(1)
        name, tops, lefts = Path(job[0]).name, job[3], job[4]
        if err:
            skipped.append(f"{name} ({err})")
            continue
        image = {"name": name, "offset": hr_end, "h": hr.shape[0], "w": hr.shape[1], "lr_offset": None}
        hr_mm[hr_end : hr_end + hr.size] = hr.reshape(-1)
        hr_end += hr.size
        if with_lr:
            lr_mm[lr_end : lr_end + lr.size] = lr.reshape(-1)
            image["lr_offset"] = lr_end
            lr_end += lr.size
        images.append({**image, "tops": tops, "lefts": lefts})
        entries += [[name, t, l] for t in tops for l in lefts]
    del hr_mm, lr_mm  # flush
    _shrink_npy(hr_tmp, hr_end, out_dir / f"shard_{k:05d}.npy")
    if with_lr:
        _shrink_npy(lr_tmp, lr_end, out_dir / f"lr_{k:05d}.npy")
    meta = {
        "count": len(entries),
        "images": images,
        "patches": entries,
        "settings": settings,
        "sources": _sources(jobs),
        "skipped": skipped,
    }
    _write_json(out_dir / f"shard_{k:05d}.json", meta)
    return meta


def _write_json(path: Path, obj, indent=None) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=indent)))


def _shrink_npy(tmp: Path, count: int, final: Path) -> None:
    """Keep the first ``count`` bytes (fewer when images failed to decode) and rename into place."""
    mm = np.load(tmp, mmap_mode="r")
    if count != len(mm):
        # through an open file: np.save given a name not ending in .npy would append .npy to it
        atomic_write(final, lambda part: _save_npy(part, mm[:count]))
        del mm
        tmp.unlink()
    else:
        del mm
        os.replace(tmp, final)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


_IMAGE_KEYS = ("name", "offset", "h", "w", "lr_offset", "tops", "lefts")


def _write_index(out_dir: Path, metas: list[dict], size: int, scale: int, with_lr: bool) -> None:
    shards = [
        {
            "file": f"shard_{k:05d}.npy",
            "lr_file": f"lr_{k:05d}.npy" if with_lr else None,
            "count": meta["count"],
            "images": [{key: image[key] for key in _IMAGE_KEYS} for image in meta["images"]],
        }
        for k, meta in enumerate(metas)
    ]
    index = {
        "layout": LAYOUT,
        "size": size,
        "scale": scale,
        "has_lr": with_lr,
        "shards": shards,
        "count": sum(s["count"] for s in shards),
    }
    _write_json(out_dir / STORE_INDEX, index)


class PatchStore:
    """Read side of :func:`extract_patches`: ``len(store)`` sub-images of ``store.size`` pixels,
    ``store.hr(i)`` and ``store.lr(i)``.

    The store holds each image once, whole; sub-image ``i`` is a window (image, top, left) of
    it, and ``hr(i)`` / ``lr(i)`` return that window as a zero-copy view of the memory-mapped
    image: nothing is read or copied until the batch cuts its crop. Shards are memory-mapped
    lazily, so each DataLoader worker maps its own.
    """

    def __init__(self, path):
        self.path = Path(path)
        index_path = self.path / STORE_INDEX
        if not index_path.exists():
            raise FileNotFoundError(
                f"no patch store at {self.path} (missing {STORE_INDEX}): "
                "run srlab.data.extract_patches first (notebook 01)"
            )
        damaged, layout = None, None
        try:
            index = json.loads(index_path.read_text())
            layout = index.get("layout")
            if layout is None and "shards" not in index:
                raise KeyError("layout")
            if layout == LAYOUT:
                self.size, self.scale, self.has_lr = index["size"], index["scale"], index["has_lr"]
                self.shards = index["shards"]
                self._index_windows()
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:  # cut short, not an index
            damaged = err
        if damaged is None and layout != LAYOUT:
            kind = "every sub-image's pixels stored apart" if layout is None else f"layout {layout!r}"
            raise ValueError(
                f"{self.path} is a patch store of an older srlab ({kind}), which this srlab cannot read: "
                f"rerun srlab.data.extract_patches into {self.path} to cut it again (each pixel stored once)"
            )
        if damaged is not None:
            raise ValueError(
                f"{index_path} is damaged ({type(damaged).__name__}: {damaged}): rerun srlab.data.extract_patches "
                f"into {self.path} (its finished shards are kept)"
            )
        if not len(self):
            raise ValueError(
                f"the patch store at {self.path} holds no patch: rerun srlab.data.extract_patches on a folder "
                "of readable images"
            )
        self._maps: dict = {}  # shard file name -> flat map; (image, lr) -> its (h, w, 3) view

    def _index_windows(self) -> None:
        """Per image: its shard, offsets and (h, w); per window: its image and corner, in the
        order of the shards' ``patches`` lists (image by image, tops outer, lefts inner)."""
        images, windows, ends = [], [], {}
        for k, shard in enumerate(self.shards):
            count = 0
            for im in shard["images"]:
                h, w, tops, lefts = int(im["h"]), int(im["w"]), list(im["tops"]), list(im["lefts"])
                if not tops or not lefts or max(tops) + self.size > h or max(lefts) + self.size > w:
                    raise IndexError(f"the windows of {im['name']} do not fit its {h}x{w} pixels")
                lr_offset = -1 if im["lr_offset"] is None else int(im["lr_offset"])
                images.append((k, int(im["offset"]), h, w, lr_offset))
                windows += [(len(images) - 1, t, l) for t in tops for l in lefts]
                count += len(tops) * len(lefts)
                ends[shard["file"]] = max(ends.get(shard["file"], 0), int(im["offset"]) + h * w * 3)
                if self.has_lr:
                    lr_end = lr_offset + (h // self.scale) * (w // self.scale) * 3
                    ends[shard["lr_file"]] = max(ends.get(shard["lr_file"], 0), lr_end)
            if count != shard["count"]:
                raise ValueError(f"shard {k} lists {count} sub-images but counts {shard['count']}")
        self._images = np.array(images, dtype=np.int64).reshape(-1, 5)  # shard, offset, h, w, lr_offset
        self._windows = np.array(windows, dtype=np.int64).reshape(-1, 3)  # image, top, left
        self._ends = ends  # the bytes each shard file must hold

    def __len__(self) -> int:
        return len(self._windows)

    def _map(self, name: str) -> np.ndarray:
        if name not in self._maps:
            flat = np.load(self.path / name, mmap_mode="r")
            if flat.ndim != 1 or flat.dtype != np.uint8 or flat.size < self._ends[name]:
                raise ValueError(
                    f"{self.path / name} ({flat.dtype}, shape {flat.shape}) is not the shard its index describes "
                    f"({self._ends[name]} bytes of whole images): rerun srlab.data.extract_patches into {self.path}"
                )
            self._maps[name] = flat.view(np.ndarray)  # plain views slice faster than np.memmap's
        return self._maps[name]

    def _whole(self, j: int, lr: bool) -> np.ndarray:
        """Image j (its LR with ``lr``) as an (h, w, 3) view of its shard's memory map."""
        if (j, lr) not in self._maps:
            k, offset, h, w, lr_offset = (int(v) for v in self._images[j])
            if lr:
                offset, h, w = lr_offset, h // self.scale, w // self.scale
            flat = self._map(self.shards[k]["lr_file" if lr else "file"])
            self._maps[j, lr] = flat[offset : offset + h * w * 3].reshape(h, w, 3)
        return self._maps[j, lr]

    def _window(self, i: int, lr: bool) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"patch {i} out of range (store has {len(self)})")
        j, top, left = self._windows[i].tolist()
        size = self.size
        if lr:
            size, top, left = size // self.scale, top // self.scale, left // self.scale
        return self._whole(j, lr)[top : top + size, left : left + size]

    def hr(self, i: int) -> np.ndarray:
        """Sub-image ``i``: a (size, size, 3) uint8 view of its image in the memory map."""
        return self._window(i, lr=False)

    def lr(self, i: int) -> np.ndarray:
        """The LR of sub-image ``i``: a (size / scale, ...) view of the stored LR image."""
        if not self.has_lr:
            raise ValueError(f"the store at {self.path} has no pre-computed LR (extract it with lr_dir=...)")
        return self._window(i, lr=True)

    def __getstate__(self):  # DataLoader workers get a copy without open maps
        return {**self.__dict__, "_maps": {}}


# ---------------------------------------------------------------- torch datasets


_BLAS_LIMITED_PID = None


def _one_blas_thread_in_worker() -> None:
    """In a DataLoader worker, let numpy's BLAS use one thread (once per process).

    torch already gives each worker one thread; OpenBLAS keeps its own pool. Two workers
    with two BLAS threads each, plus torch's OpenMP threads spinning between calls, made a
    128 px patch 15x slower on 2 cores (measured: 12 ms instead of 0.8 ms)."""
    global _BLAS_LIMITED_PID
    import torch

    if torch.utils.data.get_worker_info() is not None and _BLAS_LIMITED_PID != os.getpid():
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
        _BLAS_LIMITED_PID = os.getpid()


_BLAS = {}  # pid -> threadpoolctl.ThreadpoolController


def one_blas_thread():
    """A context in which numpy's BLAS uses one thread. The controller that finds the BLAS libraries
    (it reads /proc/self/maps: 2.9 ms, measured, 40% of building an HR-only batch of 16) is made once
    per process; ``threadpool_limits(1)`` made it again on every call."""
    from threadpoolctl import ThreadpoolController

    pid = os.getpid()
    if pid not in _BLAS:
        _BLAS[pid] = ThreadpoolController()
    return _BLAS[pid].limit(limits=1, user_api="blas")


def _augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random 90-degree rotation and horizontal flip for every array (HR and its LR)."""
    k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
    out = [np.rot90(a, k) for a in arrays]
    return [a[:, ::-1] if flip else a for a in out]


def _to_chw_tensor(img: np.ndarray):
    """(H, W, 3) uint8 -> (3, H, W) float tensor in [0, 1]: one dataset item (None stays None)."""
    return None if img is None else to_tensor(img)[0]


class PatchDataset:
    """Training pairs from a patch store: a random ``hr_size`` crop of a sub-image, random
    flips and 90-degree rotations, and its LR made on the fly by ``degradation`` (or read
    from the store when ``degradation=None`` and the store has pre-computed LR). The
    sub-image is a view of its whole image in the memory map: the crop is the first copy.

    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``, so it is reproducible
    with any number of DataLoader workers; call ``set_epoch(e)`` before each epoch.
    Returns ``(lr, hr)`` float tensors in [0, 1]: (3, hr_size / scale, ...) and (3, hr_size, hr_size);
    with ``degradation=HR_ONLY``, ``(None, hr)`` with hr the (hr_size, hr_size, 3) uint8 crop, for
    :class:`StorePatches` to stack with :func:`hr_batch`.

    ``usm_target=True`` adds a third tensor, the USM-sharpened HR, and makes the LR from it
    (see :class:`RandomPatches`); with pre-computed LR the stored LR is used as it is, as
    Real-ESRGAN does for paired data (it then only sharpens the ground truth).
    """

    def __init__(
        self,
        store,
        hr_size: int = 128,
        scale: int = 4,
        degradation: str | None = "bicubic",
        augment: bool = True,
        seed: int = 0,
        usm_target: bool = False,
    ):
        self.store = store if isinstance(store, PatchStore) else PatchStore(store)
        if hr_size % scale:
            raise ValueError(f"hr_size={hr_size} must be a multiple of scale={scale}")
        if hr_size > self.store.size:
            raise ValueError(f"hr_size={hr_size} is larger than the store's {self.store.size}px sub-images")
        if degradation is None and not (self.store.has_lr and self.store.scale == scale):
            raise ValueError(
                "degradation=None reads pre-computed LR, but this store has none for "
                f"scale {scale}: pass degradation='bicubic' or extract with lr_dir"
            )
        if degradation is not None:
            from .degradations import DEGRADATIONS

            if degradation not in DEGRADATIONS and degradation != HR_ONLY:
                raise ValueError(f"unknown degradation {degradation!r}; choose one of {sorted(DEGRADATIONS)}")
        self.hr_size, self.scale, self.degradation = hr_size, scale, degradation
        self.augment, self.seed, self.epoch, self.usm_target = augment, seed, 0, usm_target

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int):
        _one_blas_thread_in_worker()
        rng = np.random.default_rng([self.seed, self.epoch, i])
        s, size = self.scale, self.store.size
        top = int(rng.integers(0, (size - self.hr_size) // s + 1)) * s  # on the LR grid
        left = int(rng.integers(0, (size - self.hr_size) // s + 1)) * s
        # the crop is copied out of the whole image first: rotating it in place would read the
        # image column by column, one memory page per row (2K rows are 6 KB apart)
        hr = np.array(self.store.hr(i)[top : top + self.hr_size, left : left + self.hr_size])
        if self.degradation is None:
            h = self.hr_size // s
            lr = np.array(self.store.lr(i)[top // s : top // s + h, left // s : left // s + h])
            pair = _augment([hr, lr], rng) if self.augment else [hr, lr]
            hr, lr = pair
            sample = (lr, hr)
            if self.usm_target:
                from .degradations import usm_sharpen

                sample += (usm_sharpen(hr),)
        else:
            hr = _augment([hr], rng)[0] if self.augment else hr
            sample = _training_sample(np.ascontiguousarray(hr), self.degradation, s, rng, self.usm_target)
        if self.degradation == HR_ONLY:  # the uint8 arrays: StorePatches stacks them with hr_batch
            return sample
        return tuple(_to_chw_tensor(a) for a in sample)


class StorePatches:
    """Training batches from a patch store with the :class:`RandomPatches` contract:
    batch ``step`` is a pure function of ``(seed, step)``, so resumed runs are exact;
    ``usm_target`` as there (see :class:`PatchDataset`)."""

    def __init__(
        self,
        store,
        hr_size: int,
        scale: int,
        batch_size: int,
        seed: int = 0,
        degradation: str = "bicubic",
        usm_target: bool = False,
    ):
        self.dataset = PatchDataset(store, hr_size, scale, degradation, augment=True, seed=seed, usm_target=usm_target)
        self.batch_size, self.seed = batch_size, seed

    def batch(self, step: int, rank: int = 0, world: int = 1):
        """Like :meth:`RandomPatches.batch`, including ``rank``/``world`` (items are independent,
        so a rank reads only its own)."""
        import torch

        rng = np.random.default_rng([self.seed, step, 1])
        self.dataset.set_epoch(step)
        picked = rng.integers(0, len(self.dataset), self.batch_size)[list(rank_slice(self.batch_size, rank, world))]
        with one_blas_thread():
            items = [self.dataset[int(i)] for i in picked]
        return _stack(items, hr_batch if self.dataset.degradation == HR_ONLY else torch.stack)


def is_patch_store(path) -> bool:
    return path is not None and (Path(path) / STORE_INDEX).is_file()


class ImageFolderDataset:
    """Whole images of a benchmark folder: ``(lr, hr, name)`` with HR mod-cropped to the scale
    and LR from ``lr_dir`` (paired by sorted order, sizes checked) or made by ``degradation``.

    Images are converted with :func:`to_rgb8`; unreadable or mismatched files are skipped
    and named in one warning; a folder with no usable image is an error.
    """

    def __init__(self, hr_dir, scale: int = 4, lr_dir=None, degradation: str = "bicubic", seed: int = 0):
        import warnings

        from .images import ImageReadError, pair_images, read_image
        from .resize import modcrop

        self.items, skipped = [], []
        for k, (hp, lp) in enumerate(pair_images(hr_dir, lr_dir or None)):
            try:
                hr = modcrop(to_rgb8(read_image(hp)), scale)
                if lp is None:
                    from .degradations import degrade

                    lr = degrade(degradation, hr, scale=scale, rng=np.random.default_rng([seed, k]))
                else:
                    lr = to_rgb8(read_image(lp))
                    if lr.shape[:2] != (hr.shape[0] // scale, hr.shape[1] // scale):
                        raise ValueError(f"LR {lp.name} is {lr.shape[:2]}, expected HR {hr.shape[:2]} / {scale}")
            except (ImageReadError, ValueError) as err:
                skipped.append(f"{hp.name} ({err})")
                continue
            self.items.append((lr, hr, hp.name))
        if skipped:
            warnings.warn(f"skipped {len(skipped)} images: {'; '.join(skipped)}", stacklevel=2)
        if not self.items:
            raise ValueError(f"no usable image in {hr_dir}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        lr, hr, name = self.items[i]
        return _to_chw_tensor(lr), _to_chw_tensor(hr), name


from .download import download_dataset, extract_archive  # noqa: E402  (public here too, as documented)
