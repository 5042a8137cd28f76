import numpy as np
import pytest
import torch
from conftest import benchmark_dir

from srlab.images import read_image
from srlab.metrics import psnr
from srlab.resize import cubic_kernel, imresize, imresize_torch, modcrop, resize_matrix


def test_cubic_kernel_matches_keys_formula_by_hand():
    # Keys (1981) with a = -0.5: k(0)=1, k(1)=k(2)=0, k(0.5)=0.5625, k(1.5)=-0.0625.
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5, -1.5])
    expected = np.array([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625, -0.0625])
    np.testing.assert_allclose(cubic_kernel(x), expected, atol=1e-12)


@pytest.mark.parametrize("in_len,out_len", [(16, 4), (10, 40), (7, 4), (5, 20)])
def test_resize_matrix_rows_sum_to_one(in_len, out_len):
    m = resize_matrix(in_len, out_len, out_len / in_len)
    assert m.shape == (out_len, in_len)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)


def test_output_size_is_ceil_of_scaled_size_like_matlab():
    img = np.zeros((7, 9, 3), np.uint8)
    assert imresize(img, 1 / 2).shape == (4, 5, 3)
    assert imresize(img, 3).shape == (21, 27, 3)
    assert imresize(img, size=(5, 6)).shape == (5, 6, 3)


def test_constant_image_stays_constant():
    img = np.full((20, 24, 3), 137, np.uint8)
    assert np.all(imresize(img, 1 / 4) == 137)
    assert np.all(imresize(img, 4) == 137)


def test_upscaling_reproduces_a_linear_ramp_exactly_inside():
    # Cubic convolution with a=-0.5 reproduces polynomials up to degree 2, so upscaling the
    # ramp f(i) = i must give f at the mapped coordinate u = x / s + (1 - 1/s) / 2, 1-based.
    n, s = 32, 4
    ramp = np.tile(np.arange(1, n + 1, dtype=np.float64), (4, 1))  # (4, 32)
    out = imresize(ramp, size=(4, n * s))[0]
    x = np.arange(1, n * s + 1)
    u = x / s + 0.5 * (1 - 1 / s)
    inside = (u > 3) & (u < n - 2)  # away from the replicated border
    np.testing.assert_allclose(out[inside], u[inside], atol=1e-9)


def test_downscaling_is_antialiased():
    # A one-pixel checkerboard has only the Nyquist frequency: an antialiased x4 shrink
    # (kernel stretched to 16 taps) must flatten it to mid grey, point sampling would not.
    yy, xx = np.mgrid[:64, :64]
    board = ((yy + xx) % 2 * 255).astype(np.uint8)
    small = imresize(board, 1 / 4)
    assert small[2:-2, 2:-2].min() >= 126 and small[2:-2, 2:-2].max() <= 129


def test_dtypes_are_kept_and_16_bit_is_not_clipped_to_8():
    img16 = (np.random.default_rng(0).random((16, 16, 3)) * 65535).astype(np.uint16)
    out = imresize(img16, 1 / 2)
    assert out.dtype == np.uint16 and out.max() > 255
    assert imresize(img16.astype(np.float32) / 65535, 2).dtype == np.float32


def test_torch_twin_matches_numpy_on_float_images(photo):
    img = photo.astype(np.float64) / 255
    expected = imresize(img, 1 / 4)  # (24, 32, 3)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]  # (1, 3, 96, 128)
    got = imresize_torch(x, 1 / 4)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    up = imresize_torch(x.float(), 4)
    assert up.shape == (1, 3, 384, 512) and up.dtype == torch.float32


def test_modcrop():
    img = np.zeros((10, 13, 3))
    assert modcrop(img, 4).shape == (8, 12, 3)
    assert modcrop(img[..., 0], 3).shape == (9, 12)
    with pytest.raises(ValueError):
        modcrop(np.zeros((2, 2)), 4)


@pytest.mark.parametrize("benchmark", ["Set5", "Set14"])
def test_lr_images_match_the_matlab_made_ones(benchmark):
    hr_dir, lr_dir = benchmark_dir(benchmark, "HR"), benchmark_dir(benchmark, "LRx4")
    hr_paths, lr_paths = sorted(hr_dir.glob("*.png")), sorted(lr_dir.glob("*.png"))
    assert len(hr_paths) == len(lr_paths) > 0
    for hr_path, lr_path in zip(hr_paths, lr_paths):
        ours = imresize(modcrop(read_image(hr_path), 4), 1 / 4)
        matlab = read_image(lr_path)
        assert ours.shape == matlab.shape, hr_path.name
        # The issue asks for >= 55 dB; the port reproduces MATLAB's bytes, so demand more.
        assert psnr(ours, matlab, crop_border=0, y_channel=False) >= 55, hr_path.name
        assert np.mean(ours == matlab) >= 0.999, hr_path.name
