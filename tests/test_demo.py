import json

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from srlab.data import EMBEDDED_IMAGES, embedded_images
from srlab.demo import run_demo
from srlab.resize import imresize


def test_embedded_images_are_colour_photos_shipped_with_scikit_image():
    images = embedded_images()
    assert tuple(images) == EMBEDDED_IMAGES and len(images) >= 5
    for name, img in images.items():
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, name
        assert min(img.shape[:2]) >= 256, name
    with pytest.raises(ValueError, match="unknown"):
        embedded_images(("lena",))


def test_demo_writes_table_and_figure_with_correct_numbers(tmp_path):
    result = run_demo(tmp_path, scale=4, names=("chelsea", "coffee"), progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["mean"] == result["mean"]
    # recompute bicubic PSNR-Y for chelsea independently (skimage's Y and PSNR)
    hr = embedded_images(("chelsea",))["chelsea"][:300, :448]  # 300x451 cropped to multiples of 4
    sr = imresize(imresize(hr, 1 / 4), 4)
    y = lambda img: rgb2ycbcr(img / 255.0)[4:-4, 4:-4, 0]
    expected = peak_signal_noise_ratio(y(hr), y(sr), data_range=255)
    chelsea = next(r for r in saved["images"] if r["name"] == "chelsea")
    assert chelsea["scores"]["bicubic"]["psnr_y"] == pytest.approx(expected, abs=1e-9)
    assert saved["mean"]["nearest"]["psnr_y"] < saved["mean"]["bicubic"]["psnr_y"]
    table = (tmp_path / "metrics.md").read_text()
    assert table.count("\n") == 2 + 4 and "| bicubic |" in table
    fig = Image.open(tmp_path / "comparison.png")
    assert fig.size[0] > 800 and fig.size[1] > 300  # two rows of seven panels


@pytest.mark.parametrize("name", ["metrics.json", "metrics.md", "comparison.png"])
def test_demo_refuses_to_replace_a_file_it_did_not_write_and_replaces_its_own(tmp_path, name):
    run_demo(tmp_path / "own", scale=4, names=("chelsea",), progress=False)
    run_demo(tmp_path / "own", scale=4, names=("chelsea",), progress=False)  # its own outputs: replaced
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / name).write_bytes(b"a student's notes, not a demo output\n")
    with pytest.raises(FileExistsError, match=f"{name} exists and is not a report srlab wrote"):
        run_demo(theirs, scale=4, names=("chelsea",), progress=False)
    assert (theirs / name).read_bytes() == b"a student's notes, not a demo output\n"
    assert sorted(p.name for p in theirs.iterdir()) == [name]  # refused before any work
