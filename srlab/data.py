"""Datasets. For now: the colour photos scikit-image ships inside its wheel.

They are the embedded default: the demo (and, later, smoke training) runs on them
on a fresh machine with nothing downloaded. None of them is in Set5/Set14/BSD100/
Urban100, so training on them never leaks into the test sets.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EMBEDDED_IMAGES", "embedded_images", "load_training_images", "RandomPatches", "center_crops"]

# Natural colour photos from skimage.data, with a loader for each (all uint8 RGB).
EMBEDDED_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle",
                   "immunohistochemistry", "hubble_deep_field")


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


# ---------------------------------------------------------------- training patches


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
        if img.dtype == np.uint16:
            img = (img.astype(np.float64) / 257).round().astype(np.uint8)
        images[path.name] = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable images: {'; '.join(bad)}", stacklevel=2)
    if not images:
        raise ValueError(f"no usable training image in {folder}")
    return images


class RandomPatches:
    """Random HR crops with random flips/90-degree rotations and their bicubic LR.

    Batch ``step`` is a pure function of ``(seed, step)``: a resumed run sees exactly
    the batches an uninterrupted one would, with no sampler state to save.

    Args:
        images: HR images, (H, W, 3) uint8.
        hr_size: side of the HR patches (a multiple of ``scale``).
        scale: SR factor; LR patches are ``hr_size // scale`` pixels, made with MATLAB bicubic.
        batch_size: patches per batch.
        seed: base seed.
    """

    def __init__(self, images, hr_size: int, scale: int, batch_size: int, seed: int = 0):
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

    def batch(self, step: int):
        """(lr, hr) float32 tensors in [0, 1]: (N, 3, h, w) and (N, 3, h*scale, w*scale)."""
        import torch

        from .resize import imresize

        rng = np.random.default_rng([self.seed, step])
        hrs, lrs = [], []
        for _ in range(self.batch_size):
            img = self.images[rng.choice(len(self.images), p=self.weights)]
            top = rng.integers(0, img.shape[0] - self.hr_size + 1)
            left = rng.integers(0, img.shape[1] - self.hr_size + 1)
            hr = img[top : top + self.hr_size, left : left + self.hr_size]
            hr = np.rot90(hr, k=rng.integers(4))
            hr = hr[:, ::-1] if rng.random() < 0.5 else hr
            hrs.append(np.ascontiguousarray(hr))
            lrs.append(imresize(hrs[-1], 1 / self.scale))
        to_batch = lambda arrs: torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float().div_(255)
        return to_batch(lrs), to_batch(hrs)


def center_crops(images, size: int, scale: int):
    """Validation pairs: the central ``size`` square of each image (whole image if smaller,
    cropped to a multiple of ``scale``) and its bicubic LR, as lists of (1, 3, h, w) tensors."""
    import torch

    from .resize import imresize, modcrop

    pairs = []
    for img in images:
        h, w = img.shape[:2]
        s = min(size, h, w)
        hr = modcrop(img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s], scale)
        lr = imresize(hr, 1 / scale)
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255
        pairs.append((to_t(lr), to_t(hr)))
    return pairs
