"""Reading and writing images as numpy arrays, with clear errors for bad files.

Conventions used everywhere in srlab:
  * arrays are (H, W) for grayscale or (H, W, C) with C = 3 (RGB) or 4 (RGBA), in RGB order;
  * dtype is kept: uint8 for 8-bit files, uint16 for 16-bit PNG/TIFF;
  * tensors for models are float (N, C, H, W) in [0, 1] (`to_tensor` / `to_image`).

OpenCV does the decoding because, unlike PIL, it keeps 16-bit colour PNGs 16-bit.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "list_images",
    "read_image",
    "write_image",
    "drop_alpha",
    "to_tensor",
    "to_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """A file that is not a readable image (corrupt, truncated, empty or not an image)."""


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (the pairing order for HR/LR)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W) or (H, W, 3|4) RGB[A], uint8 or uint16.

    Raises ImageReadError for files OpenCV cannot decode, including truncated ones
    (libpng and libjpeg only warn about those, so the file is checked first).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file")
    if _looks_truncated(data):
        raise ImageReadError(f"{path}: truncated file (the end-of-image marker is missing)")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported pixel type {img.dtype} (expected 8 or 16 bit)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def _looks_truncated(data: np.ndarray) -> bool:
    """PNG and JPEG files end with a marker; a download cut short lacks it."""
    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-16:].tobytes()
    if data[:2].tobytes() == b"\xff\xd8":  # JPEG may carry trailing bytes after its marker
        return b"\xff\xd9" not in data[-1024:].tobytes()
    return False


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write an (H, W[, 3|4]) uint8/uint16 RGB[A] array; the folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(path.suffix or ".png", img)
    if not ok:
        raise ValueError(f"could not encode an image of shape {img.shape} and type {img.dtype} as {path.suffix}")
    tmp = path.with_name(path.name + ".tmp")
    buf.tofile(tmp)
    os.replace(tmp, path)  # never leave a half-written image behind
    return path


def drop_alpha(img: np.ndarray) -> np.ndarray:
    """RGBA -> RGB by dropping alpha (metrics compare colour only); other images unchanged."""
    return img[..., :3] if img.ndim == 3 and img.shape[2] == 4 else img


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W[, C]) uint8/uint16/float array -> (1, C, H, W) float32 tensor in [0, 1]."""
    img = np.asarray(img)
    scale = float(np.iinfo(img.dtype).max) if np.issubdtype(img.dtype, np.integer) else 1.0
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / scale)
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)  # (C, H, W)
    return x[None]  # (1, C, H, W)


def to_image(x: torch.Tensor, dtype=np.uint8) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor in [0, 1] -> (H, W[, C]) array, clipped and rounded."""
    x = x.detach().float().cpu()
    x = x[0] if x.dim() == 4 else x
    arr = x.clamp(0, 1).permute(1, 2, 0).numpy()  # (H, W, C)
    arr = arr[..., 0] if arr.shape[2] == 1 else arr
    if np.issubdtype(np.dtype(dtype), np.integer):
        return np.round(arr * np.iinfo(dtype).max).astype(dtype)
    return arr.astype(dtype)
