import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srlab.metrics import batch_psnr, batch_ssim, psnr, rgb_to_y, ssim
from srlab.resize import imresize


@pytest.fixture
def pair(photo):
    """An HR photo and its x4 bicubic reconstruction: a realistic SR error."""
    return imresize(imresize(photo, 1 / 4), 4), photo


def skimage_y(img_uint8):
    return rgb2ycbcr(img_uint8.astype(np.float64) / 255)[..., 0]  # Y in [16, 235], float


def test_y_channel_matches_skimage_rgb2ycbcr(photo):
    np.testing.assert_allclose(rgb_to_y(photo / 255.0) * 255, skimage_y(photo), atol=1e-9)


def test_psnr_by_hand():
    a = np.full((20, 20), 100, np.uint8)
    b = a + 5  # MSE = 25 -> 10 log10(255^2 / 25) = 20 log10(51)
    assert psnr(a, b, crop_border=0) == pytest.approx(20 * math.log10(51), abs=1e-9)
    assert psnr(a, a) == math.inf


def test_psnr_rgb_matches_skimage(pair):
    sr, hr = pair
    assert psnr(sr, hr, crop_border=0, y_channel=False) == pytest.approx(
        peak_signal_noise_ratio(hr, sr, data_range=255), abs=1e-9
    )


def test_psnr_y_with_border_crop_matches_skimage(pair):
    sr, hr = pair
    ref = peak_signal_noise_ratio(skimage_y(hr)[4:-4, 4:-4], skimage_y(sr)[4:-4, 4:-4], data_range=255)
    assert psnr(sr, hr, scale=4) == pytest.approx(ref, abs=1e-9)  # crop_border defaults to scale
    assert psnr(sr, hr, crop_border=4, y_channel=True) == pytest.approx(ref, abs=1e-9)
    assert psnr(sr, hr, crop_border=0) != pytest.approx(ref, abs=1e-3)  # the crop matters


def test_ssim_y_matches_skimage_gaussian_ssim(pair):
    sr, hr = pair
    ys, yh = skimage_y(sr)[4:-4, 4:-4], skimage_y(hr)[4:-4, 4:-4]
    ref = structural_similarity(yh, ys, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(sr, hr, crop_border=4, y_channel=True) == pytest.approx(ref, abs=1e-7)


def test_ssim_rgb_is_mean_over_channels_like_skimage(pair):
    sr, hr = pair
    ref = structural_similarity(
        hr, sr, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1
    )
    assert ssim(sr, hr, crop_border=0, y_channel=False) == pytest.approx(ref, abs=1e-7)
    assert ssim(hr, hr) == pytest.approx(1.0)


def test_single_channel_images_are_used_as_y(pair):
    sr, hr = pair
    g_sr, g_hr = sr[..., 1], hr[..., 1]
    ref = peak_signal_noise_ratio(g_hr[4:-4, 4:-4], g_sr[4:-4, 4:-4], data_range=255)
    assert psnr(g_sr, g_hr, crop_border=4, y_channel=True) == pytest.approx(ref, abs=1e-9)
    assert psnr(g_sr[..., None], g_hr[..., None], crop_border=4) == pytest.approx(ref, abs=1e-9)


def test_data_range_follows_dtype(pair):
    sr, hr = pair
    as16 = psnr(sr.astype(np.uint16) * 257, hr.astype(np.uint16) * 257)  # same image, 16 bit
    as_float = psnr(sr / 255.0, hr / 255.0)
    assert as16 == pytest.approx(psnr(sr, hr), abs=1e-9)
    assert as_float == pytest.approx(psnr(sr, hr), abs=1e-9)


def test_bad_inputs_are_clear_errors(pair):
    sr, hr = pair
    with pytest.raises(ValueError, match="shape"):
        psnr(sr[:-1], hr)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(sr[:8, :8], hr[:8, :8], crop_border=4)


def test_batched_torch_metrics_agree_with_numpy(pair, photo):
    sr, hr = pair
    noisy = np.clip(photo + np.random.default_rng(1).normal(0, 8, photo.shape), 0, 255).round().astype(np.uint8)
    srs, hrs = np.stack([sr, noisy]), np.stack([hr, photo])
    t_sr = torch.from_numpy(srs).permute(0, 3, 1, 2).float() / 255  # (2, 3, H, W)
    t_hr = torch.from_numpy(hrs).permute(0, 3, 1, 2).float() / 255
    p, s = batch_psnr(t_sr, t_hr, crop_border=4), batch_ssim(t_sr, t_hr, crop_border=4)
    for i in range(2):
        assert p[i].item() == pytest.approx(psnr(srs[i], hrs[i], crop_border=4), abs=0.01)
        assert s[i].item() == pytest.approx(ssim(srs[i], hrs[i], crop_border=4), abs=1e-4)
    rgb = batch_psnr(t_sr, t_hr, crop_border=4, y_channel=False)
    assert rgb[0].item() == pytest.approx(psnr(sr, hr, crop_border=4, y_channel=False), abs=0.01)


def test_an_image_and_a_reference_of_different_ranges_are_refused():
    """A float SR in [0, 1] against a uint8 HR was scored against white = 255: 6.6 dB, silently."""
    hr = data.astronaut()[:64, :64]
    sr = imresize(imresize(hr, 0.25), 4)
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match=r"image is float64 and reference uint8: their white differs \(1 vs 255\)"):
            metric(sr / 255.0, hr)
    # the same values in one range score the same; float32 against float64 is one range
    assert psnr(sr / 255.0, hr / 255.0) == pytest.approx(psnr(sr, hr))
    assert psnr((sr / 255.0).astype(np.float32), hr / 255.0) == pytest.approx(psnr(sr, hr), abs=1e-4)
