"""Awkward inputs where images are read: huge headers, EXIF orientation, animations, JPEGs cut
short, LR folders that do not belong to their HR, validation images too small to score.

Files are crafted in tmp_path; a header that claims billions of pixels is a few dozen bytes and
is refused before anything is decoded, so no test allocates more than a few kilobytes of pixels.
"""

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from srlab.data import (
    ImageFolderDataset,
    PatchStore,
    center_crops,
    extract_patches,
    load_training_images,
    min_validation_size,
)
from srlab.evaluate import evaluate_folder
from srlab.images import MAX_PIXELS, ImageReadError, image_size, read_image, write_image
from srlab.infer import upscale_files
from srlab.models import RRDBNet


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid-looking 8-bit RGB PNG header claiming ``width`` x ``height``, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(bytes(8))) + _chunk(b"IEND", b"")
    )


def _jpeg_claiming(photo: np.ndarray, width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 marker is rewritten to claim ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=90)
    raw = bytearray(buf.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def _no_warnings_like(caught, text: str) -> bool:
    return not [w for w in caught if text in str(w.message)]


# ---------------------------------------------------------------- (6) huge headers, decoder errors


def test_huge_png_and_jpeg_headers_are_refused_before_decoding(tmp_path, photo):
    (tmp_path / "huge.png").write_bytes(_png_claiming(50000, 50000))
    (tmp_path / "huge.jpg").write_bytes(_jpeg_claiming(photo, 60000, 40000))
    for name, size in [("huge.png", "50000x50000"), ("huge.jpg", "60000x40000")]:
        for read in (read_image, image_size):  # image_size: the header alone, as extract_patches uses it
            with pytest.raises(
                ImageReadError, match=rf"{name}: {size} pixels is over the limit of 100,000,000.*SRLAB_"
            ):
                read(tmp_path / name)
    assert MAX_PIXELS == 100_000_000


def test_pixel_cap_is_overridden_by_srlab_max_pixels(tmp_path, photo, monkeypatch):
    path = write_image(tmp_path / "a.png", photo)  # 96 x 128 = 12288 pixels
    monkeypatch.setenv("SRLAB_MAX_PIXELS", "12287")
    with pytest.raises(ImageReadError, match=r"a.png: 128x96 pixels is over the limit of 12,287"):
        read_image(path)
    monkeypatch.setenv("SRLAB_MAX_PIXELS", "12_288")
    assert np.array_equal(read_image(path), photo)
    monkeypatch.setenv("SRLAB_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="SRLAB_MAX_PIXELS='lots' is not a whole number"):
        read_image(path)


def test_an_opencv_decoder_error_becomes_an_image_read_error(tmp_path, monkeypatch):
    """Past the cap (raised here), OpenCV's own limit raises cv2.error: it is one clear ImageReadError."""
    monkeypatch.setenv("SRLAB_MAX_PIXELS", str(4 * 10**9))
    (tmp_path / "big.png").write_bytes(_png_claiming(40000, 40000))  # 1.6e9 > OpenCV's 2**30
    with pytest.raises(ImageReadError, match=r"big.png: not a readable image \(.*CV_IO_MAX_IMAGE_PIXELS"):
        read_image(tmp_path / "big.png")


@pytest.fixture
def folder_with_a_bomb(tmp_path, photo):
    folder = tmp_path / "in"
    write_image(folder / "a.png", photo)
    (folder / "b_huge.png").write_bytes(_png_claiming(50000, 50000))
    write_image(folder / "c.png", photo[::-1])
    return folder


def test_evaluate_skips_a_huge_header_and_scores_the_others(folder_with_a_bomb):
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 images: b_huge.png \(.*50000x50000 pixels is over"):
        report = evaluate_folder(folder_with_a_bomb, scale=4, progress=False)
    assert [r["name"] for r in report["images"]] == ["a.png", "c.png"]
    assert [s["name"] for s in report["skipped"]] == ["b_huge.png"]


def test_upscale_and_training_data_skip_a_huge_header(folder_with_a_bomb, tmp_path, capsys, photo):
    torch.manual_seed(0)
    model = RRDBNet(num_feat=8, num_block=1).eval()
    report = upscale_files([folder_with_a_bomb], tmp_path / "out", model, progress=False, device="cpu")
    assert [p.name for p in report["written"]] == ["a.png", "c.png"]
    assert [(p.name, "50000x50000" in why) for p, why in report["failed"]] == [("b_huge.png", True)]
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("failed")]
    assert len(said) == 1 and said[0].count("b_huge.png") == 1  # the file is named once, not twice
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable images: b_huge.png \(.*over the limit"):
        images = load_training_images(folder_with_a_bomb)
    assert sorted(images) == ["a.png", "c.png"]
    with pytest.warns(UserWarning, match=r"skipped 1 images: b_huge.png \(.*50000x50000 pixels is over"):
        store = extract_patches(folder_with_a_bomb, tmp_path / "store", size=64, stride=64, workers=1, progress=False)
    # the two images stored whole, once each, none of the bomb; 2 images x 2 x 2 patches
    stored = np.load(store / "shard_00000.npy")
    assert np.array_equal(stored, np.concatenate([photo.ravel(), photo[::-1].ravel()]))
    assert len(PatchStore(store)) == 8


# ---------------------------------------------------------------- (7) orientation, animation, cut JPEGs


def _with_orientation(img: np.ndarray, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(fmt, {})  # lossless: exact pixels
    Image.fromarray(img).save(buf, fmt, exif=exif.tobytes(), **options)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, fmt):
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.{fmt.lower()}"
        path.write_bytes(_with_orientation(img, orientation, fmt))
        upright = np.asarray(ImageOps.exif_transpose(Image.open(path)))
        got = read_image(path)
        assert got.shape == upright.shape and np.array_equal(got, upright), (fmt, orientation)
        assert image_size(path) == upright.shape[:2], (fmt, orientation)


def test_portrait_jpeg_comes_out_upright(tmp_path, photo):
    """A phone photo stored landscape with orientation 6 (rotate 90 degrees clockwise)."""
    (tmp_path / "portrait.jpg").write_bytes(_with_orientation(photo, 6, "JPEG"))
    got = read_image(tmp_path / "portrait.jpg")
    assert got.shape == (128, 96, 3)
    assert np.abs(got.astype(int) - np.rot90(photo, -1)).mean() < 3  # JPEG: close, not equal


def test_extract_patches_cuts_oriented_images_upright(tmp_path):
    """Patch positions come from the header: they must use the upright size, as the pixels do."""
    img = np.random.default_rng(1).integers(0, 256, (40, 100, 3), dtype=np.uint8)
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "tall.png").write_bytes(_with_orientation(img, 8, "PNG"))  # upright: 100 x 40
    store = extract_patches(tmp_path / "hr", tmp_path / "store", size=40, stride=20, workers=1, progress=False)
    upright = np.rot90(img, 1)
    assert np.array_equal(np.load(store / "shard_00000.npy"), upright.ravel())  # stored whole, upright
    patches = PatchStore(store)
    assert len(patches) == 4
    assert all(np.array_equal(patches.hr(k), upright[t : t + 40]) for k, t in enumerate((0, 20, 40, 60)))


def test_animated_gif_warns_that_only_the_first_frame_is_used(tmp_path):
    frames = [Image.fromarray(np.full((12, 16, 3), v, np.uint8)) for v in (10, 120, 250)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match=r"anim.gif: animated, 3 frames: only the first frame is used"):
        img = read_image(tmp_path / "anim.gif")
    assert img.shape[:2] == (12, 16) and np.all(img[..., :3] == 10)
    frames[0].save(tmp_path / "still.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "still.gif")


def test_jpeg_cut_short_with_an_end_marker_warns(tmp_path, photo):
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=90)
    raw = buf.getvalue()
    (tmp_path / "good.jpg").write_bytes(raw)
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 2] + b"\xff\xd9")
    with pytest.warns(UserWarning, match=r"cut.jpg: its last 8x8 block is flat grey.*may be truncated"):
        img = read_image(tmp_path / "cut.jpg")
    assert np.all(img[-8:] == 128)  # what libjpeg fills in: the warning is about real grey pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "good.jpg")


# ---------------------------------------------------------------- (8) LR/HR name correspondence


def _pair_folders(tmp_path, photo, hr_names, lr_names):
    for name in hr_names:
        write_image(tmp_path / "hr" / name, photo)
    for name in lr_names:
        write_image(tmp_path / "lr" / name, photo[::4, ::4])
    return tmp_path / "hr", tmp_path / "lr"


def test_lr_folder_with_other_names_warns(tmp_path, photo):
    hr, lr = _pair_folders(tmp_path, photo, ["baby.png", "bird.png"], ["cat_x4.png", "dog_x4.png"])
    with pytest.warns(UserWarning, match=r"names do not correspond in 2 of 2 pairs.*baby.png with cat_x4.png"):
        report = evaluate_folder(hr, lr, scale=4, progress=False)
    assert len(report["images"]) == 2  # still evaluated: the warning says what to check
    (lr / "cat_x4.png").rename(lr / "baby_x4.png")
    with pytest.warns(UserWarning, match=r"in 1 of 2 pairs .*: bird.png with dog_x4.png: check that"):
        ImageFolderDataset(hr, scale=4, lr_dir=lr)  # training and benchmark data pair the same way


@pytest.mark.parametrize(
    "lr_names",
    [
        ["baby_LRBI_x4.png", "bird_LRBI_x4.png"],  # RCAN / RDN
        ["babyx4.png", "birdx4.png"],  # DIV2K style
        ["baby.png", "bird.png"],
        ["img_001_SRF_4_LR.png", "img_002_SRF_4_LR.png"],  # SelfExSR: numbered in HR order
    ],
)
def test_standard_benchmark_lr_names_do_not_warn(tmp_path, photo, lr_names):
    hr, lr = _pair_folders(tmp_path, photo, ["baby.png", "bird.png"], lr_names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate_folder(hr, lr, scale=4, progress=False)
    assert _no_warnings_like(caught, "do not correspond")


# ---------------------------------------------------------------- (9) validation images too small


def test_a_too_small_validation_image_is_named_and_skipped(photo):
    tiny = photo[:3, :3]
    assert min_validation_size(4) == 20 and min_validation_size(2) == 16
    with pytest.warns(UserWarning, match=r"skipped 1 of 2 validation images smaller than 20x20.*tiny.png \(3x3\)"):
        pairs = center_crops({"tiny.png": tiny, "ok.png": photo}, 192, 4)
    assert [tuple(hr.shape) for _, hr in pairs] == [(1, 3, 96, 96)]
    with pytest.raises(ValueError, match=r"every validation image is smaller than 20x20 .*tiny.png \(3x3\)"):
        center_crops({"tiny.png": tiny}, 192, 4)
    with pytest.raises(ValueError, match=r"validation image 1 \(8x8\)"):  # a list: named by position
        center_crops([photo[:8, :8]], 192, 4)


def test_train_with_a_too_small_validation_image_stops_before_training(tmp_path, capsys):
    from srlab.cli import main

    write_image(tmp_path / "val" / "tiny.png", np.zeros((3, 3, 3), np.uint8))
    out = tmp_path / "run"
    argv = ["train", "srresnet", "--preset", "smoke", "--steps", "2", "--val-data", str(tmp_path / "val")]
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: every validation image is smaller than 20x20 pixels" in err and "tiny" in err and "(3x3)" in err
    assert not (out / "last.pt").exists()


def test_write_image_uses_a_unique_temporary_name_and_leaves_none_on_failure(tmp_path, monkeypatch):
    """Two writers of one output never share a temporary file; a write that fails (here: the rename,
    as on a full disk) leaves the old image and no temporary file behind."""
    import os

    photo = np.zeros((8, 8, 3), np.uint8)
    sources, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (sources.append(Path(src).name), real_replace(src, dst)))
    write_image(tmp_path / "a.png", photo)
    write_image(tmp_path / "a.png", photo + 1)
    assert len(set(sources)) == 2 and all(name.startswith("a.png.") for name in sources)

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        write_image(tmp_path / "a.png", photo + 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    assert read_image(tmp_path / "a.png").max() == 1
