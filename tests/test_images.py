import numpy as np
import pytest
import torch
from PIL import Image

from srlab.images import ImageReadError, drop_alpha, list_images, read_image, to_image, to_tensor, write_image


def test_rgb_png_read_matches_pil(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "a.png")
    got = read_image(tmp_path / "a.png")
    assert got.dtype == np.uint8 and np.array_equal(got, np.asarray(Image.open(tmp_path / "a.png")))


def test_write_then_read_keeps_mode_and_depth(tmp_path, photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 200, np.uint8)])
    gray = photo[..., 0]
    deep = photo.astype(np.uint16) * 257
    for name, img in [("rgba.png", rgba), ("gray.png", gray), ("deep.png", deep), ("rgb.png", photo)]:
        back = read_image(write_image(tmp_path / name, img))
        assert back.dtype == img.dtype and np.array_equal(back, img), name
    # RGB order, not OpenCV's BGR: PIL agrees on the red channel of the RGBA file
    assert np.array_equal(np.asarray(Image.open(tmp_path / "rgba.png"))[..., 0], photo[..., 0])


def test_corrupt_truncated_and_empty_files_raise_clear_errors(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(2000))
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.fromarray(photo).save(tmp_path / "good.jpg", quality=90)
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "good.jpg").read_bytes()[:-600])
    for name, words in [
        ("truncated.png", "truncated"),
        ("noise.png", "not a readable image"),
        ("empty.jpg", "empty"),
        ("cut.jpg", "truncated"),
    ]:
        with pytest.raises(ImageReadError, match=words):
            read_image(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_list_images_is_sorted_and_filters_extensions(tmp_path):
    for name in ["b.png", "a.JPG", "c.txt", "d.tif"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "d.tif"]


def test_tensor_roundtrip_and_alpha(photo):
    x = to_tensor(photo)
    assert x.shape == (1, 3, 96, 128) and x.dtype == torch.float32
    assert x.max() <= 1 and abs(x[0, 0, 0, 0].item() - photo[0, 0, 0] / 255) < 1e-7
    assert np.array_equal(to_image(x), photo)
    assert to_tensor(photo[..., 0]).shape == (1, 1, 96, 128)
    assert drop_alpha(np.zeros((4, 4, 4))).shape == (4, 4, 3)
