"""Hostile and awkward image files (issue 28): the pixel cap holds for every format OpenCV decodes,
whatever the file is named, and batches (upscale, evaluate, train --data) skip a bad file, name
it, and go on.

References are independent of srlab's header reader: the shape OpenCV (libjpeg, libpng, ...)
actually decodes for small files, Pillow's pixels, and sizes written into the crafted headers
here. "Refused before decoding" is checked with a spy on OpenCV's decoders, so no test decodes
a hostile file: the 30000x30000 JPEG below would take 2.7 GB.
"""

import io
import os
import struct
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, features

from srlab.cli import main
from srlab.data import PatchStore, extract_patches, load_training_images
from srlab.evaluate import evaluate_folder
from srlab.images import ImageReadError, image_size, read_image, write_image
from srlab.infer import upscale, upscale_files
from srlab.models import RRDBNet


@pytest.fixture
def no_decoding(monkeypatch):
    """OpenCV's decoders replaced by a spy that fails the test if anything is decoded."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a file was decoded")

    monkeypatch.setattr(cv2, "imdecode", spy)
    monkeypatch.setattr(cv2, "imread", spy)
    return calls


def _decoded_shape(raw: bytes) -> tuple[int, int]:
    """(H, W) as OpenCV itself decodes the bytes: the reference for small files."""
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    return img.shape[:2]


def _jpeg(photo: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _sof(height: int, width: int) -> bytes:
    """A baseline SOF0 segment for a 3-component 4:2:0 image."""
    return b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", height, width) + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"


def _jpeg_with_fake_sof(photo: np.ndarray, real: tuple[int, int], fake=(64, 64), extra: bytes = b"") -> bytes:
    """A real JPEG whose SOF claims ``real`` (H, W), with the pair FF 00 after SOI followed by two
    bytes that, read as a segment length, jump past the end marker to a fake SOF claiming ``fake``.
    libjpeg skips FF 00 (stuffed data) and those two bytes, and decodes at the real size."""
    raw = bytearray(_jpeg(photo))
    at = raw.index(b"\xff\xc0")
    raw[at + 5 : at + 9] = struct.pack(">HH", *real)
    body = extra + bytes(raw[2:])
    jump = len(body) + 2  # from the length bytes to just past the end marker
    assert 0xFF not in jump.to_bytes(2, "big")
    return b"\xff\xd8\xff\x00" + struct.pack(">H", jump) + body + _sof(*fake)


# ---------------------------------------------------------------- JPEG: libjpeg's walk, not a guess


def test_a_jpeg_with_a_fake_frame_header_is_refused_at_its_real_size_before_decoding(tmp_path, photo, no_decoding):
    """The issue's file: under 1 KB, libjpeg decodes 30000x30000 (2.7 GB); srlab's header walk
    read FF 00 as a segment and reported the fake 64x64 behind the end marker."""
    path = tmp_path / "bomb.jpg"
    path.write_bytes(_jpeg_with_fake_sof(photo[:16, :16], real=(30000, 30000)))
    assert path.stat().st_size < 1000
    for read in (image_size, read_image):
        with pytest.raises(ImageReadError, match=r"bomb.jpg: 30000x30000 pixels is over the limit of 100,000,000"):
            read(path)
    # the same in every command: upscale, evaluate, train --data (in memory, and as a patch store)
    report = upscale_files([path], tmp_path / "out", RRDBNet(num_feat=8, num_block=1), progress=False, device="cpu")
    assert [(p.name, "30000x30000" in why) for p, why in report["failed"]] == [("bomb.jpg", True)]
    with pytest.warns(UserWarning, match="30000x30000"), pytest.raises(ValueError, match="no usable image pair"):
        evaluate_folder(tmp_path, scale=4, progress=False)
    with pytest.warns(UserWarning, match="30000x30000"), pytest.raises(ValueError, match="no usable training image"):
        load_training_images(tmp_path)
    with pytest.raises(ValueError, match=r"no usable image in .*bomb.jpg \(.*30000x30000"):
        extract_patches(tmp_path, tmp_path / "store", size=32, stride=32, workers=1, progress=False)
    assert no_decoding == []


@pytest.mark.parametrize(
    "extra",
    [
        b"",  # the fake-SOF jump alone
        b"\xff\xff\xff",  # fill bytes before the next marker
        b"\xff\xd3\xff\x01",  # RST3 and TEM: markers without a length
        b"junk\x00\x01",  # bytes outside any segment, which libjpeg skips with a warning
        b"\xff\x00\xff\x00",  # more stuffed pairs
    ],
    ids=["jump", "fill", "rst-tem", "junk", "stuffed"],
)
def test_the_jpeg_size_is_the_one_libjpeg_decodes(tmp_path, photo, extra):
    raw = _jpeg_with_fake_sof(photo, real=(40, 56), fake=(64, 64), extra=extra)
    assert _decoded_shape(raw) == (40, 56)  # libjpeg's own answer, not the fake 64x64
    path = tmp_path / "a.jpg"
    path.write_bytes(raw)
    assert image_size(path) == (40, 56)
    assert read_image(path).shape == (40, 56, 3)


def test_a_jpeg_whose_frame_header_comes_after_its_scan_is_refused(tmp_path, photo, no_decoding):
    """libjpeg's header read ends at the first SOS and needs the SOF before it."""
    raw = _jpeg(photo)
    sof_at, sos_at = raw.index(b"\xff\xc0"), raw.index(b"\xff\xda")
    length = struct.unpack(">H", raw[sof_at + 2 : sof_at + 4])[0]
    sof = raw[sof_at : sof_at + 2 + length]
    assert sos_at > sof_at
    moved = raw[:sof_at] + raw[sof_at + 2 + length :] + sof  # the SOF after the end marker
    (tmp_path / "late.jpg").write_bytes(moved)
    with pytest.raises(ImageReadError, match=r"late.jpg: a JPEG file whose size cannot be read before decoding"):
        read_image(tmp_path / "late.jpg")
    assert no_decoding == []


# ---------------------------------------------------------------- every format, by content


def _encoded(fmt: str, img: np.ndarray) -> bytes:
    """``img`` as ``fmt`` bytes, written by OpenCV or, where OpenCV writes none, Pillow."""
    if fmt in ("jp2", "avif"):
        if not features.check({"jp2": "jpg_2000", "avif": "avif"}[fmt]):
            pytest.skip(f"this Pillow writes no {fmt}")
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, {"jp2": "JPEG2000", "avif": "AVIF"}[fmt])
        return buf.getvalue()
    ok, buf = cv2.imencode(f".{fmt}", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("fmt", ["png", "jpg", "bmp", "tif", "webp", "gif", "ppm", "ras", "jp2", "avif"])
def test_every_format_is_sized_by_content_and_capped_before_decoding(tmp_path, photo, fmt, monkeypatch):
    """Each format OpenCV decodes, under a name that says another format: the size read first is
    the size OpenCV decodes, and one pixel over the cap stops it before any decoding."""
    img = np.ascontiguousarray(photo[:40, :56])
    raw = _encoded(fmt, img)
    path = tmp_path / ("image.jpg" if fmt == "png" else "image.png")  # the name lies
    path.write_bytes(raw)
    assert image_size(path) == _decoded_shape(raw) == (40, 56)
    assert read_image(path).shape[:2] == (40, 56)
    monkeypatch.setenv("SRLAB_MAX_PIXELS", str(40 * 56 - 1))
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    with pytest.raises(ImageReadError, match=r"image\.(png|jpg): 56x40 pixels is over the limit of 2,239"):
        read_image(path)
    assert decoded == []


@pytest.mark.parametrize(
    "name, raw, words",
    [
        # the case: 144 Mpx of float pixels (1.7 GB) from a few KB, named .png
        ("sky.png", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 12000 +X 12000\n" + bytes(4000), "Radiance HDR"),
        ("depth.png", b"PF\n12000 12000\n-1\n" + bytes(4000), "PFM image holds floating-point"),
        ("x.png", b"P7\nWIDTH 12000\nHEIGHT 12000\nDEPTH 3\nMAXVAL 255\nENDHDR\n" + bytes(99), "PAM image"),
        ("noise.png", bytes(range(256)) * 8, "not a readable image"),
    ],
)
def test_formats_srlab_does_not_read_are_refused_before_decoding(tmp_path, name, raw, words, no_decoding):
    (tmp_path / name).write_bytes(raw)
    for read in (image_size, read_image):
        with pytest.raises(ImageReadError, match=rf"{name}: .*{words}"):
            read(tmp_path / name)
    assert no_decoding == []


def test_a_huge_header_in_a_misnamed_file_is_refused_before_decoding(tmp_path, no_decoding):
    """A PPM named .jpg claims 15000x10000: Pillow's lazy header read gives it, and the cap holds."""
    (tmp_path / "p.jpg").write_bytes(b"P6\n15000 10000\n255\n" + bytes(300))
    with pytest.raises(ImageReadError, match=r"p.jpg: 15000x10000 pixels is over the limit"):
        read_image(tmp_path / "p.jpg")
    assert no_decoding == []


# ---------------------------------------------------------------- motion photos, truncation


def test_a_motion_photo_is_read_and_a_truncated_jpeg_is_still_refused(tmp_path, photo):
    """A phone's motion photo: a JPEG with an MP4 after its end marker (no FF in the video here,
    so no end marker appears in the file's last kilobytes)."""
    raw = _jpeg(photo)
    video = b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).integers(0, 255, 200_000, np.uint8).tobytes()
    (tmp_path / "motion.jpg").write_bytes(raw + video)
    (tmp_path / "plain.jpg").write_bytes(raw)
    reference = np.asarray(Image.open(tmp_path / "plain.jpg"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        motion = read_image(tmp_path / "motion.jpg")
    assert np.array_equal(motion, read_image(tmp_path / "plain.jpg"))
    assert np.abs(motion.astype(int) - reference).max() <= 2  # Pillow's libjpeg, another IDCT
    # cut in its data, with an end marker only in an APP segment before the scan (as an EXIF thumbnail has)
    thumb = b"\xff\xe1\x00\x08\xff\xd8\xff\xd9"
    (tmp_path / "cut.jpg").write_bytes(raw[:2] + thumb + raw[2 : len(raw) // 2])
    with pytest.raises(ImageReadError, match=r"cut.jpg: truncated file"):
        read_image(tmp_path / "cut.jpg")


# ---------------------------------------------------------------- batches go on


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return RRDBNet(num_feat=8, num_block=1).eval()


def _count_upscales(monkeypatch) -> list:
    """Record each image srlab.infer upscales (to show a skipped file costs no model run)."""
    import srlab.infer

    seen = []
    real = srlab.infer.upscale

    def counted(image, *args, **kwargs):
        seen.append(image.shape)
        return real(image, *args, **kwargs)

    monkeypatch.setattr(srlab.infer, "upscale", counted)
    return seen


def test_sixteen_bit_pixels_in_a_jpg_skip_that_file_and_the_batch_goes_on(
    tmp_path, photo, tiny_model, monkeypatch, capsys
):
    src = tmp_path / "in"
    write_image(src / "a.png", photo[:24, :24])
    (src / "b.jpg").write_bytes(
        write_image(tmp_path / "deep.png", photo[:24, :24].astype(np.uint16) * 257).read_bytes()
    )
    write_image(src / "c.png", photo[:20, :20])
    seen = _count_upscales(monkeypatch)
    report = upscale_files([src], tmp_path / "out", tiny_model, progress=False, device="cpu")
    assert [p.name for p in report["written"]] == ["a.png", "c.png"]
    assert [p.name for p, _ in report["failed"]] == ["b.jpg"]
    assert seen == [(24, 24, 3), (20, 20, 3)]  # b.jpg was not upscaled only to be thrown away
    said = [line for line in capsys.readouterr().out.splitlines() if "b.jpg" in line]
    assert len(said) == 1 and "16-bit" in said[0] and ".jpg cannot hold" in said[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]


def test_an_output_name_too_long_for_the_file_system_is_skipped(tmp_path, photo, tiny_model, capsys):
    """NAME_MAX is 255 bytes: with --suffix _x4, a 249-byte input name makes a 252-byte output
    (written: its temporary file needs a shorter name) and a 253-byte one a 256-byte output."""
    src = tmp_path / "in"
    fits, too_long = "f" * 245 + ".png", "t" * 249 + ".png"
    for name in (fits, too_long, "z.png"):
        write_image(src / name, photo[:16, :16])
    report = upscale_files([src], tmp_path / "out", tiny_model, suffix="_x4", progress=False, device="cpu")
    assert sorted(p.name for p in report["written"]) == sorted(["f" * 245 + "_x4.png", "z_x4.png"])
    assert [(p.name, "256 bytes, more than the 255" in why) for p, why in report["failed"]] == [(too_long, True)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(["f" * 245 + "_x4.png", "z_x4.png"])
    assert sum(too_long in line for line in capsys.readouterr().out.splitlines()) == 1


# ---------------------------------------------------------------- unreadable files


@pytest.fixture(params=["simulated", "chmod"])
def unreadable(request, tmp_path, photo, monkeypatch):
    """A folder a.png, b.png, c.png where b.png cannot be read. As root, chmod 000 does not stop a
    read, so the "chmod" case runs only for other users; "simulated" (CI) makes opening it fail."""
    folder = tmp_path / "in"
    for k, name in enumerate(["a.png", "b.png", "c.png"]):
        write_image(folder / name, np.ascontiguousarray(np.roll(photo, 9 * k, axis=1)))
    bad = folder / "b.png"
    if request.param == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root reads a file whatever its permissions (the simulated case covers it)")
        bad.chmod(0)
        yield bad
        bad.chmod(0o644)
        return
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if Path(self).name == "b.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    yield bad


def test_an_unreadable_image_is_one_clear_error(unreadable):
    for read in (read_image, image_size):
        with pytest.raises(ImageReadError, match=r"b.png: permission denied: make it readable \(chmod u\+r\)"):
            read(unreadable)


def test_evaluate_and_training_data_skip_an_unreadable_image(unreadable, tmp_path):
    folder = unreadable.parent
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 images: b.png \(.*permission denied"):
        report = evaluate_folder(folder, scale=4, progress=False)
    assert [r["name"] for r in report["images"]] == ["a.png", "c.png"]
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable images: b.png \(.*permission denied"):
        assert sorted(load_training_images(folder)) == ["a.png", "c.png"]
    with pytest.warns(UserWarning, match=r"skipped 1 images: b.png \(.*permission denied"):
        store = extract_patches(folder, tmp_path / "store", size=32, stride=32, workers=1, progress=False)
    assert len(PatchStore(store)) == 2 * (96 // 32) * (128 // 32)  # a.png's and c.png's windows


def test_upscale_skips_an_unreadable_image_and_goes_on(unreadable, tmp_path, tiny_model, capsys):
    report = upscale_files([unreadable.parent], tmp_path / "out", tiny_model, progress=False, device="cpu")
    assert [p.name for p in report["written"]] == ["a.png", "c.png"]
    assert [p.name for p, _ in report["failed"]] == ["b.png"]
    said = [line for line in capsys.readouterr().out.splitlines() if "b.png" in line]
    assert len(said) == 1 and said[0].startswith("failed") and "permission denied" in said[0]


# ---------------------------------------------------------------- GIFs are read, in every command


def test_gifs_in_a_folder_are_read_by_upscale_evaluate_and_training(tmp_path, photo, tiny_model, capsys):
    folder = tmp_path / "in"
    write_image(folder / "a.png", photo)
    Image.fromarray(photo[::-1]).save(folder / "b.gif")  # 256 colours: compare with Pillow's own pixels
    gif = np.asarray(Image.open(folder / "b.gif").convert("RGB"))
    assert np.array_equal(read_image(folder / "b.gif"), gif)

    report = evaluate_folder(folder, scale=4, progress=False)
    assert [r["name"] for r in report["images"]] == ["a.png", "b.gif"]
    assert np.array_equal(load_training_images(folder)["b.gif"], gif)

    weights = tmp_path / "tiny.pth"
    torch.save({"params_ema": tiny_model.state_dict()}, weights)
    argv = ["upscale", str(folder), "-o", str(tmp_path / "out"), "--weights", str(weights), "--device", "cpu", "--fp32"]
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]  # a GIF's output is a PNG
    expected = upscale(gif, tiny_model, tile=256, device="cpu", half=False)
    assert np.array_equal(read_image(tmp_path / "out" / "b.png"), expected)


def test_a_long_run_of_fill_bytes_is_walked_in_linear_time(tmp_path):
    """FF fill bytes up to the file's end: the marker search once backtracked over the whole run at
    every position it tried (quadratic: 25 s for 80 KB); a 100 KB run is refused at once now."""
    path = tmp_path / "fill.jpg"
    path.write_bytes(b"\xff\xd8" + b"\xff" * 100_000)  # no end marker: a truncated JPEG
    start = time.perf_counter()
    with pytest.raises(ImageReadError, match=r"fill.jpg: truncated file"):
        read_image(path)
    assert time.perf_counter() - start < 5  # linear: milliseconds; the quadratic walk took minutes
