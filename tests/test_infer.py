"""srlab.infer: tiled upscaling agrees with untiled, every image mode round-trips, the command works.

References: scikit-image's PSNR for tiled vs untiled, the model run by hand on a tensor for
the colour modes, and MATLAB bicubic (srlab.resize, checked byte for byte against MATLAB's
files in test_resize) for alpha.
"""

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from srlab.cli import main
from srlab.images import read_image, write_image
from srlab.infer import tile_windows, upscale
from srlab.models import RRDBNet, SRResNet
from srlab.resize import imresize


@pytest.fixture(scope="module")
def lr_photo() -> np.ndarray:
    """176 x 170 LR photo: with tile 128 and overlap 32 it splits into 2 x 2 real windows."""
    return np.ascontiguousarray(imresize(data.astronaut(), 0.5)[20:196, 30:200])


def _model(kind: str, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return (SRResNet(**kwargs) if kind == "srresnet" else RRDBNet(**kwargs)).eval()


@torch.no_grad()
def _by_hand(model, img: np.ndarray) -> np.ndarray:
    """The model applied to the whole uint8 RGB image, written out with plain torch."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    y = model(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    return np.round(y * 255).astype(np.uint8)


@pytest.mark.filterwarnings("ignore:divide by zero")  # identical outputs have an infinite PSNR
@pytest.mark.parametrize("kind", ["srresnet", "rrdbnet"])
def test_tiles_with_overlap_match_the_untiled_output(lr_photo, kind):
    # Full-size models: 16 SRResNet blocks, 23 RRDBs (the widest receptive field). RRDBNet is
    # costly on a CPU, so it gets a strip two tiles high: its seam crosses the whole width.
    img = lr_photo if kind == "srresnet" else lr_photo[:, :48]
    model = _model(kind)
    whole = upscale(img, model, tile=None, device="cpu")
    np.testing.assert_array_equal(whole, _by_hand(model, img))
    tiled = upscale(img, model, tile=128, tile_overlap=32, device="cpu")
    assert tiled.shape == whole.shape == (4 * img.shape[0], 4 * img.shape[1], 3) and tiled.dtype == np.uint8
    assert peak_signal_noise_ratio(whole, tiled, data_range=255) >= 45
    if kind == "rrdbnet":  # the check can fail: without context the seams show
        seams = upscale(img, model, tile=128, tile_overlap=0, device="cpu")
        assert peak_signal_noise_ratio(whole, seams, data_range=255) < 40


def test_pixel_unshuffle_models_tile_on_their_grid(lr_photo):
    """RRDBNet x2 folds 2 x 2 pixels into channels: tiles must start on even pixels."""
    model = _model("rrdbnet", num_feat=32, num_block=4, scale=2)
    img = lr_photo[:75, :61]  # odd sizes: the right/bottom windows are padded like the whole image
    whole = upscale(img, model, device="cpu")
    tiled = upscale(img, model, tile=25, tile_overlap=7, device="cpu")  # rounded up to 26 and 8
    assert whole.shape == (150, 122, 3)
    assert peak_signal_noise_ratio(whole, tiled, data_range=255) >= 45


def test_tile_windows_partition_the_axis():
    for length, tile, overlap in [(1, 8, 4), (100, 32, 8), (128, 128, 32), (129, 64, 100)]:
        wins = tile_windows(length, tile, overlap)
        kept = [i for k0, k1, _, _ in wins for i in range(k0, k1)]
        assert kept == list(range(length))
        for k0, k1, w0, w1 in wins:
            assert 0 <= w0 <= k0 < k1 <= w1 <= length
            assert w0 == max(0, k0 - overlap) and w1 == min(length, k1 + overlap)


@pytest.fixture(scope="module")
def small_model():
    return _model("rrdbnet", seed=3, num_feat=16, num_block=2)


def test_grayscale_goes_through_the_rgb_model_and_comes_back_gray(lr_photo, small_model):
    gray = lr_photo[:40, :30, 1]
    out = upscale(gray, small_model, tile=16, tile_overlap=8, device="cpu")
    assert out.shape == (160, 120) and out.dtype == np.uint8
    with torch.no_grad():
        x = torch.from_numpy(gray).float()[None, None].expand(1, 3, -1, -1) / 255
        ref = small_model(x).mean(dim=1)[0].clamp(0, 1).numpy()
    assert np.abs(out.astype(float) - ref * 255).max() <= 1.0  # rounding, and tiling at 45+ dB
    assert upscale(gray[..., None], small_model, device="cpu").shape == (160, 120, 1)


def test_rgba_upscales_alpha_with_bicubic_and_colour_with_the_model(lr_photo, small_model):
    rgb = lr_photo[:32, :36]
    alpha = np.zeros((32, 36), np.uint8)
    alpha[8:24, 10:30] = 255  # an opaque rectangle on a transparent background
    out = upscale(np.dstack([rgb, alpha]), small_model, device="cpu")
    assert out.shape == (128, 144, 4)
    np.testing.assert_array_equal(out[..., :3], _by_hand(small_model, rgb))
    np.testing.assert_array_equal(out[..., 3], imresize(alpha, 4))
    assert (out[40:88, 48:112, 3] == 255).all() and (out[:20, :, 3] == 0).all()  # far from the edges


def test_sixteen_bit_stays_sixteen_bit(lr_photo, small_model):
    img8 = lr_photo[:24, :20]
    img16 = img8.astype(np.uint16) * 257  # the same values in [0, 1]: 255 * 257 = 65535
    out8, out16 = upscale(img8, small_model, device="cpu"), upscale(img16, small_model, device="cpu")
    assert out16.dtype == np.uint16 and out16.shape == out8.shape
    assert np.abs(out16 / 257.0 - out8).max() <= 0.51  # the same result, rounded to 16 instead of 8 bits
    assert out16.max() > 255  # really 16-bit values, not 8-bit ones in a 16-bit array


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_half_precision_stays_close_to_fp32(lr_photo, small_model):
    img = lr_photo[:32, :32]
    seen = []
    hook = small_model.conv_first.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        full, half = upscale(img, small_model, device="cpu"), upscale(img, small_model, device="cpu", half=True)
    finally:
        hook.remove()
    assert seen == [torch.float32, torch.bfloat16]  # the convolutions really ran in bf16 on the CPU
    assert half.dtype == np.uint8 and half.shape == full.shape
    assert peak_signal_noise_ratio(full, half, data_range=255) >= 30


def test_bad_arguments_are_explained(small_model):
    with pytest.raises(ValueError, match="image"):
        upscale(np.zeros((4, 4, 5), np.uint8), small_model)
    with pytest.raises(ValueError, match="pixel type"):
        upscale(np.zeros((4, 4, 3), np.int32), small_model)
    with pytest.raises(ValueError, match="tile must be"):
        upscale(np.zeros((4, 4, 3), np.uint8), small_model, tile=4)
    with pytest.raises(ValueError, match="tile_overlap"):
        upscale(np.zeros((4, 4, 3), np.uint8), small_model, tile_overlap=-1)


# ---------------------------------------------------------------- the command


def test_upscale_command_on_a_folder_of_mixed_images(tmp_path, lr_photo, small_model, capsys):
    weights = tmp_path / "tiny.pth"
    torch.save({"params_ema": small_model.state_dict()}, weights)
    src = tmp_path / "in"
    rgb = lr_photo[:30, :26]
    write_image(src / "rgb.png", rgb)
    write_image(src / "gray.png", rgb[..., 0])
    write_image(src / "rgba.png", np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]))
    write_image(src / "deep.png", rgb.astype(np.uint16) * 257)
    write_image(src / "photo.jpg", rgb)
    (src / "broken.png").write_bytes(write_image(tmp_path / "x.png", rgb).read_bytes()[:60])  # cut short
    (src / "notes.txt").write_text("not an image, not listed")
    single = write_image(tmp_path / "single.png", rgb[:20, :20])
    out = tmp_path / "out"

    argv = [
        "upscale",
        str(src),
        str(single),
        "-o",
        str(out),
        "--weights",
        str(weights),
        "--tile",
        "16",
        "--device",
        "cpu",
        "--fp32",  # compared exactly with upscale()'s fp32 below, on any CPU
    ]
    assert main(argv) == 1  # one input failed
    text = capsys.readouterr()
    assert "broken.png" in text.out + text.err and "5 written" not in text.out
    expected = {
        "rgb.png": (120, 104, 3),
        "gray.png": (120, 104),
        "rgba.png": (120, 104, 4),
        "deep.png": (120, 104, 3),
        "photo.jpg": (120, 104, 3),
        "single.png": (80, 80, 3),
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, shape in expected.items():
        img = read_image(out / name)
        assert img.shape == shape, name
        assert img.dtype == (np.uint16 if name == "deep.png" else np.uint8), name
    np.testing.assert_array_equal(read_image(out / "rgb.png"), upscale(rgb, small_model, tile=16, device="cpu"))
    assert (read_image(out / "rgba.png")[..., 3] == 200).all()

    before = (out / "rgb.png").stat().st_mtime_ns
    (out / "rgb.png").write_bytes(b"keep me")
    assert main(argv) == 1
    assert (out / "rgb.png").read_bytes() == b"keep me" and "--force" in capsys.readouterr().out
    assert main(argv + ["--force"]) == 1
    assert read_image(out / "rgb.png").shape == (120, 104, 3) and (out / "rgb.png").stat().st_mtime_ns >= before


def test_upscale_command_reports_missing_weights_and_inputs(tmp_path, capsys):
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert (
        main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "none.pth")])
        == 2
    )
    assert "not a known name" in capsys.readouterr().err
    torch.save({"params": RRDBNet(num_feat=8, num_block=1).state_dict()}, tmp_path / "w.pth")
    assert (
        main(
            ["upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "w.pth")]
        )
        == 2
    )
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize("scale", [2, 1])
def test_unshuffling_rrdbnets_take_tiles_and_images_narrower_than_their_fold(scale):
    """x2 / x1 RRDBNet fold the input by 2 / 4; a window 1-3 px wide (tile 16, no overlap, on
    33 px) could not be reflect-padded to that and crashed. It is replicate-padded instead."""
    torch.manual_seed(0)
    model = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=scale).eval()
    image = np.random.default_rng(0).integers(0, 256, (20, 33, 3), dtype=np.uint8)
    assert upscale(image, model, tile=16, tile_overlap=0, device="cpu").shape == (20 * scale, 33 * scale, 3)
    tiny = image[:1, :2].astype(np.float32) / 255  # float in, float out: compared before rounding
    x = torch.from_numpy(tiny).permute(2, 0, 1)[None]
    fold = {2: 2, 1: 4}[scale]
    padded = torch.nn.functional.pad(x, (0, fold - 2, 0, fold - 1), mode="replicate")
    with torch.no_grad():
        by_hand = model(padded)[0, :, :scale, : 2 * scale].clamp(0, 1).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(upscale(tiny, model, device="cpu"), by_hand, atol=1e-5)


def test_a_rerun_into_the_input_folder_does_not_upscale_its_own_outputs(tmp_path, capsys):
    """-o = the input folder with --suffix _x4: the second run took cat_x4.png for an input."""
    torch.save(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).state_dict(), tmp_path / "m.pth")
    write_image(tmp_path / "photos" / "cat.png", np.zeros((8, 8, 3), np.uint8))
    argv = ["upscale", str(tmp_path / "photos"), "-o", str(tmp_path / "photos"), "--weights", str(tmp_path / "m.pth")]
    for _ in range(2):
        assert main([*argv, "--suffix", "_x4", "--fp32"]) == 0
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["cat.png", "cat_x4.png"]
    out = capsys.readouterr()
    assert "left out 1 file(s) that are this command's own outputs: cat_x4.png" in out.out + out.err
    assert "0 written to" in out.out and "1 skipped (exist)" in out.out


def test_a_gray_and_alpha_png_comes_back_gray_and_alpha(tmp_path):
    """OpenCV reads an LA PNG as BGRA: it went through the model as colour and came back RGBA,
    with unequal channels. Now gray + alpha stays that: gray by the gray path, alpha bicubic."""
    from PIL import Image

    torch.manual_seed(0)
    model = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()
    with torch.no_grad():
        model.conv_last.bias.copy_(torch.tensor([0.5, 0.4, 0.6]))  # R, G and B outputs differ
    torch.save(model.state_dict(), tmp_path / "m.pth")
    la = np.random.default_rng(0).integers(0, 256, (16, 12, 2), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(la, "LA").save(tmp_path / "in" / "icon.png")
    np.testing.assert_array_equal(read_image(tmp_path / "in" / "icon.png"), la)
    argv = ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "m.pth")]
    assert main([*argv, "--fp32"]) == 0
    out = Image.open(tmp_path / "out" / "icon.png")
    assert out.mode == "LA"
    got = np.asarray(out)
    np.testing.assert_array_equal(got[..., 0], upscale(la[..., 0], model, device="cpu"))
    np.testing.assert_array_equal(got[..., 1], imresize(la[..., 1], 4))


def test_sixteen_bit_gray_and_alpha_is_written_as_rgba_with_equal_colours(tmp_path):
    """Neither OpenCV nor Pillow writes a 16-bit LA PNG: the pixels are kept, as RGBA."""
    la = np.random.default_rng(1).integers(0, 65536, (6, 5, 2), dtype=np.uint16)
    back = read_image(write_image(tmp_path / "a.png", la))
    assert back.dtype == np.uint16 and back.shape == (6, 5, 4)
    for channel in range(3):
        np.testing.assert_array_equal(back[..., channel], la[..., 0])
    np.testing.assert_array_equal(back[..., 3], la[..., 1])
