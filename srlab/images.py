"""Reading and writing images as numpy arrays, with clear errors for bad files.

Conventions used everywhere in srlab:
  * arrays are (H, W) for grayscale or (H, W, C) with C = 3 (RGB) or 4 (RGBA), in RGB order;
  * dtype is kept: uint8 for 8-bit files, uint16 for 16-bit PNG/TIFF;
  * tensors for models are float (N, C, H, W) in [0, 1] (`to_tensor` / `to_image`).

OpenCV does the decoding because, unlike PIL, it keeps 16-bit colour PNGs 16-bit. Before it
decodes, the header is read (size, frames, EXIF orientation): an image over :data:`MAX_PIXELS`
is refused, so a small file that claims 20000x20000 pixels cannot take gigabytes of memory.
The header read is the one of the decoder OpenCV picks by the file's first bytes (a Radiance
HDR named ``.png`` is read as one); a file whose size cannot be read first is not decoded.

OpenCV's own ``OPENCV_IO_MAX_IMAGE_PIXELS`` is not set as a second cap: OpenCV reads it once,
when cv2 is loaded, so it could not follow ``SRLAB_MAX_PIXELS`` set later in a notebook, does
nothing if cv2 was imported first, and would cap the user's own cv2 calls too.
"""

from __future__ import annotations

import io
import os
import re
import struct
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageReadError",
    "list_images",
    "pair_images",
    "max_pixels",
    "image_size",
    "read_image",
    "write_image",
    "check_depth",
    "atomic_write",
    "name_max",
    "drop_alpha",
    "to_tensor",
    "to_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
"""What :func:`list_images` takes from a folder (a GIF: its first frame, see :func:`read_image`)."""

MAX_PIXELS = 100_000_000
"""Largest image (width x height) :func:`read_image` decodes unless the environment variable
``SRLAB_MAX_PIXELS`` sets another number. 100 MP is a 300 MB RGB array (800 MB at 16-bit RGBA);
a 400 KB PNG can claim 20000x20000 (a "decompression bomb")."""


class ImageReadError(ValueError):
    """A file that is not a readable image (corrupt, truncated, empty or not an image)."""


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (the pairing order for HR/LR)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


# benchmark LR suffixes: baby_LRBI_x4, babyx4, 0801x4 (DIV2K), img_001_SRF_4_LR (SelfExSR), _bicubic
_NAME_TAGS = re.compile(r"([_\-. ]?(x\d+|lrbi|lrbd|lrdn|bi|bd|dn|lr|hr|bicubic|srf_?\d+))+$")
_NUMBERED = re.compile(r"(?:img)?[_\-]?0*(\d+)")


def _names_correspond(hr: Path, lr: Path, position: int) -> bool:
    """Same name once benchmark tags are dropped, or an LR numbered by its place in the order
    (SelfExSR's Set5 pairs baby.png with img_001_SRF_4_LR.png)."""
    hr_key, lr_key = (_NAME_TAGS.sub("", p.stem.lower()) for p in (hr, lr))
    number = _NUMBERED.fullmatch(lr_key)
    return hr_key == lr_key or (number is not None and int(number.group(1)) == position)


def pair_images(hr_dir, lr_dir=None) -> list[tuple[Path, Path | None]]:
    """HR images with their LR (``None`` without ``lr_dir``), paired by sorted file name.

    The counts must agree. Names that do not correspond (``bird.png`` with ``baby_x4.png``) give
    one warning: a wrong LR folder is paired silently by order and scores nonsense.
    """
    hr_paths = list_images(hr_dir)
    if lr_dir is None:
        return [(p, None) for p in hr_paths]
    lr_paths = list_images(lr_dir)
    if len(lr_paths) != len(hr_paths):
        raise ValueError(f"{len(hr_paths)} HR images but {len(lr_paths)} LR images in {lr_dir}: cannot pair them")
    pairs = list(zip(hr_paths, lr_paths))
    odd = [f"{h.name} with {l.name}" for k, (h, l) in enumerate(pairs, 1) if not _names_correspond(h, l, k)]
    if odd:
        warnings.warn(
            f"LR and HR names do not correspond in {len(odd)} of {len(pairs)} pairs (paired by sorted name): "
            f"{'; '.join(odd[:3])}{'; ...' if len(odd) > 3 else ''}: check that {lr_dir} holds the LR of {hr_dir}",
            stacklevel=3,
        )
    return pairs


def max_pixels() -> int:
    """The pixel cap: ``SRLAB_MAX_PIXELS`` when set (e.g. 400_000_000), else :data:`MAX_PIXELS`."""
    value = os.environ.get("SRLAB_MAX_PIXELS", "").strip()
    try:
        return int(value) if value else MAX_PIXELS
    except ValueError:
        raise ValueError(f"SRLAB_MAX_PIXELS={value!r} is not a whole number of pixels (e.g. 400000000)") from None


class _Header(NamedTuple):
    size: tuple[int, int]  # (H, W) as stored
    frames: int
    orientation: int  # EXIF, still to apply: 1 = as stored, 6 = rotate 90 degrees clockwise, ...
    format: str | None


# What OpenCV decodes is decided by the file's first bytes, never by its name: each of its decoders
# checks a signature (cv2.haveImageReader(path) answers the same). Radiance HDR and PFM hold float
# pixels, which srlab refuses anyway; OpenCV's PAM reader cannot read its own PAM files.
_SIGNATURES = (
    (re.compile(rb"\x89PNG\r\n\x1a\n"), "PNG"),
    (re.compile(rb"\xff\xd8\xff"), "JPEG"),
    (re.compile(rb"BM"), "BMP"),
    (re.compile(rb"GIF8[79]a"), "GIF"),
    (re.compile(rb"RIFF....WEBP", re.DOTALL), "WEBP"),
    (re.compile(rb"II[*+]\x00|MM\x00[*+]"), "TIFF"),
    (re.compile(rb"P[1-6]\s"), "PPM"),
    (re.compile(rb"\x59\xa6\x6a\x95"), "SUN"),
    (re.compile(rb"\x00\x00\x00\x0cjP  \r\n\x87\n|\xff\x4f\xff\x51"), "JPEG2000"),
    (re.compile(rb"....ftyp", re.DOTALL), "AVIF"),  # if a brand says so: see _opencv_format
    (re.compile(rb"#\?(RGBE|RADIANCE)"), "HDR"),
    (re.compile(rb"P[Ff]\s"), "PFM"),
    (re.compile(rb"P7\s"), "PAM"),
)
_FLOAT = "holds floating-point pixels, which srlab does not read: convert it to a 16-bit PNG or TIFF"
_REFUSED = {
    "HDR": f"a Radiance HDR image {_FLOAT}",
    "PFM": f"a PFM image {_FLOAT}",
    "PAM": "a PAM image, which srlab does not read: convert it to PNG",
}


def _opencv_format(raw: bytes) -> str | None:
    """The decoder OpenCV picks for these bytes (its signature checks), whatever the file is named;
    None when OpenCV has none (it would not decode the file)."""
    fmt = next((name for sig, name in _SIGNATURES if sig.match(raw)), None)
    if fmt == "AVIF":  # libavif takes an ISO-BMFF file whose ftyp box lists the avif or avis brand
        box = raw[8 : max(8, min(struct.unpack(">I", raw[:4])[0], 4096))]
        brands = {box[k : k + 4] for k in range(0, len(box), 4)}
        return fmt if brands & {b"avif", b"avis"} else None
    return fmt


_JPEG_SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}  # SOF0..15, less DHT, JPG and DAC
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0..7 carry no length
# any bytes before it and FF fill bytes are skipped (search finds the last FF of a run: the run is not
# matched as a whole, which backtracked over a run of FF reaching the file's end, quadratic in its length)
_JPEG_MARKER = re.compile(rb"\xff([^\xff])")


def _jpeg_frame(raw: bytes) -> tuple[tuple[int, int] | None, int | None]:
    """((H, W), offset of the first scan) as libjpeg's header read finds them, None where not found.

    The walk is libjpeg's (jdmarker.c): bytes before a marker are skipped, as are FF fill bytes
    and the stuffed pair FF 00 (data, not a marker: read as a segment with a length, it let a
    fake SOF past the end marker report 64x64 for a 30000x30000 image); RSTn and TEM have no
    length; the first SOF counts (libjpeg refuses a second), and the header ends at the first SOS.
    """
    if raw[:2] != b"\xff\xd8":
        return None, None
    size, i = None, 2
    while (found := _JPEG_MARKER.search(raw, i)) and found.end() + 2 <= len(raw):
        marker, i = found[1][0], found.end()
        if marker in (0xD8, 0xD9):  # a second SOI (libjpeg stops), or the end before any image
            break
        if marker == 0xDA:
            return size, i
        if marker == 0x00 or marker in _JPEG_STANDALONE:  # 00: a stuffed FF 00, data
            continue
        if marker in _JPEG_SOF and size is None and i + 7 <= len(raw):
            size = struct.unpack(">HH", raw[i + 3 : i + 7])
        i += max(2, struct.unpack(">H", raw[i : i + 2])[0])  # libjpeg skips at least the length
    return size, None


def _jpeg2000_size(raw: bytes) -> tuple[int, int] | None:
    """(H, W) from the codestream's SIZ marker (what OpenJPEG decodes; a JP2 file's ihdr box may
    say something else): at the start of a raw codestream, or of a JP2 file's jp2c box."""
    i = 0
    while raw[:4] != b"\xff\x4f\xff\x51" and i + 8 <= len(raw):  # JP2 boxes: length, type[, 64-bit length]
        length, kind = struct.unpack(">I4s", raw[i : i + 8])
        head = 16 if length == 1 else 8
        if kind == b"jp2c":
            i += head
            break
        length = struct.unpack(">Q", raw[i + 8 : i + 16])[0] if length == 1 and i + 16 <= len(raw) else length
        if length < head:  # 0: the last box, running to the end
            return None
        i += length
    siz = raw[i : i + 24]  # SOC, SIZ, Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz
    if len(siz) < 24 or siz[:4] != b"\xff\x4f\xff\x51":
        return None
    width, height, x0, y0 = struct.unpack(">IIII", siz[8:24])
    return (height - y0, width - x0) if width > x0 and height > y0 else None


_OWN_SIZES = ("PNG", "JPEG", "JPEG2000")


def _own_size(raw: bytes, fmt: str) -> tuple[int, int] | None:
    """(H, W) read here for :data:`_OWN_SIZES`, whose size Pillow may read otherwise than OpenCV's
    decoder (Pillow's JPEG walk differs from libjpeg's; it takes a JP2's size from its ihdr box)."""
    if fmt == "PNG" and raw[12:16] == b"IHDR" and len(raw) >= 24:
        width, height = struct.unpack(">II", raw[16:24])
        return height, width
    if fmt == "JPEG":
        return _jpeg_frame(raw)[0]
    return _jpeg2000_size(raw) if fmt == "JPEG2000" else None


def _header(raw: bytes, path: Path) -> _Header:
    """What the header says, decoding no pixels, for the decoder OpenCV will use (by content):
    PNG, JPEG and JPEG 2000 sizes are read here; Pillow (which opens lazily) gives the other
    sizes, the frame count and the EXIF orientation. A file OpenCV would not decode, or whose
    size cannot be read before decoding, is an ImageReadError here."""
    from PIL import Image

    fmt = _opencv_format(raw)
    if fmt is None:
        raise ImageReadError(f"{path}: not a readable image (not a format OpenCV decodes: corrupt or unsupported)")
    if fmt in _REFUSED:
        raise ImageReadError(f"{path}: {_REFUSED[fmt]}")
    size, frames, orientation = _own_size(raw, fmt), 1, 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels() decides
            with Image.open(io.BytesIO(raw)) as im:
                if fmt not in _OWN_SIZES and im.format == fmt:  # Pillow read the header OpenCV will read
                    size = im.size[::-1]
                frames = getattr(im, "n_frames", 1) if getattr(im, "is_animated", False) else 1
                # TIFFs: Pillow's size and OpenCV's pixels are upright already; a PNG's EXIF after
                # the pixels would make Pillow decode the whole file to find it
                if im.format != "TIFF" and (im.format != "PNG" or "exif" in im.info):
                    orientation = int(im.getexif().get(0x0112, 1))
    except Image.DecompressionBombError as err:  # over twice Pillow's limit: the size is not given
        if size is None:
            raise ImageReadError(f"{path}: too large to open safely ({err})") from None
    except Exception:  # a header Pillow does not read: the size, if any, is our own
        pass
    if size is None:
        raise ImageReadError(
            f"{path}: a {fmt} file whose size cannot be read before decoding (damaged, truncated or an unusual "
            "variant): convert it to PNG"
        )
    return _Header(size, frames, orientation if orientation in _ORIENT else 1, fmt)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; a file that cannot be read (permissions, an I/O error) is an ImageReadError
    naming it, so that batches skip it like a corrupt image."""
    try:
        return path.read_bytes()
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied: make it readable (chmod u+r) or remove it") from None
    except OSError as err:
        raise ImageReadError(f"{path}: cannot be read ({err.strerror or err}): copy it again or remove it") from None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of the image :func:`read_image` returns (EXIF orientation applied), from the header
    alone. A header not understood, or over :func:`max_pixels`: ImageReadError."""
    path = Path(path)
    head = _header(_read_bytes(path), path)
    _check_size(path, head.size)
    return head.size[::-1] if head.orientation >= 5 else head.size  # 5-8 swap the axes


# EXIF orientation -> the flips/rotations that make the stored pixels upright
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W) gray, (H, W, 2) gray + alpha or (H, W, 3|4) RGB[A], uint8 or
    uint16, EXIF orientation applied.

    Raises ImageReadError for files OpenCV cannot decode, including truncated ones
    (libpng and libjpeg only warn about those, so the file is checked first; data after a
    JPEG's end, such as a motion photo's video, is not truncation), for files that cannot be
    read (permissions), and for images over :func:`max_pixels` or whose size cannot be read
    (checked in the header, before anything is decoded).
    Warns, naming the file, for an animated image (only its first frame is read) and for a
    JPEG whose last block is flat grey (what libjpeg makes of data cut short).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image: {path}")
    raw = _read_bytes(path)
    if not raw:
        raise ImageReadError(f"{path}: empty file")
    if _looks_truncated(raw):
        raise ImageReadError(f"{path}: truncated file (the end-of-image marker is missing)")
    head = _header(raw, path)
    _check_size(path, head.size)
    try:
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:  # e.g. a header over OpenCV's own limit, or a broken decoder state
        raise ImageReadError(f"{path}: not a readable image ({str(err).strip().splitlines()[-1]})") from None
    if img is None or img.size == 0:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported pixel type {img.dtype} (expected 8 or 16 bit)")
    if img.ndim == 3 and img.shape[2] == 4 and _png_colour_type(raw) == 4:
        img = img[..., [0, 3]]  # gray + alpha: OpenCV expands it to BGRA with B = G = R
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    if head.frames > 1:
        warnings.warn(f"{path}: animated, {head.frames} frames: only the first frame is used", stacklevel=2)
    if head.format == "JPEG" and img.dtype == np.uint8 and np.all(img[-8:, -8:] == 128):
        warnings.warn(
            f"{path}: its last 8x8 block is flat grey, as libjpeg fills a JPEG cut short: "
            "the file may be truncated (download or copy it again)",
            stacklevel=2,
        )
    if head.orientation in _ORIENT:
        img = np.ascontiguousarray(_ORIENT[head.orientation](img))
    return img


def _check_size(path: Path, size: tuple[int, int]) -> None:
    cap = max_pixels()
    if size[0] * size[1] > cap:
        raise ImageReadError(
            f"{path}: {size[1]}x{size[0]} pixels is over the limit of {cap:,} (a damaged file or a "
            "decompression bomb?); if the image is real, set SRLAB_MAX_PIXELS to a larger number"
        )


def _png_colour_type(data: bytes) -> int | None:
    """A PNG's colour type from its IHDR chunk (0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA)."""
    return data[25] if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" else None


def _looks_truncated(data: bytes) -> bool:
    """PNG and JPEG files end with a marker; a download cut short lacks it.

    Both may carry bytes after their marker: padding added by a tool or a transfer, or the video
    of a phone's "motion photo" (an MP4 after the JPEG's end). A JPEG's end marker is therefore
    looked for anywhere after its first scan, where only the real one can be (the coded data
    holds no FF D9; an EXIF thumbnail's end marker comes before the scan)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-1024:]
    if data[:2] == b"\xff\xd8":
        scan = _jpeg_frame(data)[1]
        return b"\xff\xd9" not in data[-1024:] and (scan is None or data.find(b"\xff\xd9", scan) < 0)
    return False


_DEEP_FORMATS = (".png", ".tif", ".tiff")  # the formats OpenCV writes 16 bits per channel to


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write an (H, W[, 2|3|4]) uint8/uint16 gray[+alpha] or RGB[A] array; the folder is created
    if needed (16-bit gray + alpha, and gray + alpha to formats other than PNG, as RGBA).

    uint16 needs a 16-bit format (.png, .tif, .tiff); other arrays, or an extension OpenCV has no
    writer for, are a ValueError (OpenCV would clip uint16 to 255 in a JPEG without a word)."""
    path = Path(path)
    img = np.asarray(img)
    suffix = (path.suffix or ".png").lower()
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"write_image takes uint8 or uint16 arrays, got {img.dtype}: scale a float image in [0, 1] "
            "first, e.g. (img * 255).round().astype(np.uint8) (to_image does it for tensors)"
        )
    check_depth(path, img.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3 and img.shape[2] == 2:
        buf = _gray_alpha_bytes(img, suffix)
        if buf is not None:
            return atomic_write(path, lambda tmp: tmp.write_bytes(buf))
        img = img[..., [0, 0, 0, 1]]  # as RGBA with equal colours: OpenCV writes no 2-channel image
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    try:
        ok, buf = cv2.imencode(suffix, img)
    except cv2.error as err:  # no writer for the extension, a channel count the format lacks, ...
        raise ValueError(
            f"cannot write {path} ({str(err).strip().splitlines()[-1]}): use one of {', '.join(IMAGE_EXTENSIONS)}"
        ) from None
    if not ok:
        raise ValueError(f"could not encode an image of shape {img.shape} and type {img.dtype} as {path.suffix}")
    return atomic_write(path, buf.tofile)


def check_depth(path: str | os.PathLike, dtype) -> None:
    """ValueError when ``path``'s format cannot hold ``dtype`` pixels: OpenCV would clip uint16
    to 255 in a JPEG without a word. :func:`write_image` checks it; a batch can check it before
    it spends time on an image."""
    suffix = (Path(path).suffix or ".png").lower()
    if np.dtype(dtype) == np.uint16 and suffix not in _DEEP_FORMATS:
        raise ValueError(
            f"{path}: {suffix} cannot hold 16-bit pixels: write .png or .tiff, "
            "or reduce the image to 8 bits first ((img / 257).round().astype(np.uint8))"
        )


def _gray_alpha_bytes(img: np.ndarray, suffix: str) -> bytes | None:
    """An (H, W, 2) uint8 gray + alpha image as an LA PNG, written by Pillow (OpenCV cannot);
    None for other formats and 16 bits (Pillow writes no 16-bit LA), which go out as RGBA."""
    from PIL import Image

    if suffix != ".png" or img.dtype != np.uint8:
        return None
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img), mode="LA").save(out, format="PNG")
    return out.getvalue()


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name (bytes) the file system of ``folder`` allows, or of its nearest existing
    parent when it is not made yet; 255 (the usual limit) where unknown (Windows has no pathconf)."""
    folder = Path(os.path.abspath(folder))
    while not _exists(folder) and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # its name is too long to look at
        return False


def atomic_write(path: str | os.PathLike, write) -> Path:
    """``write(tmp)`` to a uniquely named temporary file beside ``path``, then rename it onto
    ``path``: a write cut off (a killed process, a full disk) leaves the old file, or none, never
    half of one, and no temporary file. Images, patch-store JSON and shards, pooled votes."""
    path = Path(path)
    tag = uuid.uuid4().hex[:8]  # two writers never share a temporary file
    tmp = path.with_name(f"{path.name}.{tag}.tmp")
    if len(tmp.name.encode()) > name_max(path.parent):  # a name that fits needs a temporary that does
        tmp = path.with_name(f".srlab-{tag}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)  # never leave a half-written image behind
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves no temporary file
    return path


def drop_alpha(img: np.ndarray) -> np.ndarray:
    """RGBA -> RGB, gray + alpha -> gray, by dropping alpha (metrics compare colour only); other
    images unchanged."""
    if img.ndim == 3 and img.shape[2] == 2:
        return img[..., 0]
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
