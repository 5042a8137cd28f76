"""Datasets. For now: the colour photos scikit-image ships inside its wheel.

They are the embedded default: the demo (and, later, smoke training) runs on them
on a fresh machine with nothing downloaded. None of them is in Set5/Set14/BSD100/
Urban100, so training on them never leaks into the test sets.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EMBEDDED_IMAGES", "embedded_images"]

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
