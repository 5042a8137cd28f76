"""Degradation models, each checked against an independent reference (MATLAB's LR files,
PIL, scipy, OpenCV, closed-form statistics), never against values the code printed."""

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import benchmark_dir
from scipy import ndimage

import srlab.degradations as dg
from srlab.degradations import (
    DEGRADATIONS,
    RealESRGANOptions,
    StageOptions,
    add_gaussian_noise,
    add_poisson_noise,
    bicubic,
    blur_bicubic,
    degrade,
    gaussian_blur,
    gaussian_kernel,
    generalized_gaussian_kernel,
    jpeg_compress,
    plateau_kernel,
    random_kernel,
    random_resize,
    realesrgan,
    sinc_kernel,
    usm_sharpen,
)
from srlab.images import read_image
from srlab.metrics import psnr
from srlab.resize import imresize, modcrop


def high_freq_energy(img):
    """Mean squared Laplacian: large for sharp, small for smooth images."""
    x = img.astype(np.float64)
    return float(np.mean(ndimage.laplace(x, mode="reflect") ** 2))


# --------------------------------------------------------------------------- bicubic


def test_bicubic_is_matlab_imresize(photo):
    np.testing.assert_array_equal(bicubic(photo), imresize(photo, 1 / 4))
    assert bicubic(photo).shape == (24, 32, 3) and bicubic(photo).dtype == np.uint8
    lr2 = bicubic(photo, scale=2)
    np.testing.assert_array_equal(lr2, imresize(photo, 1 / 2))


def test_bicubic_float_in_float32_out(photo):
    x = photo.astype(np.float64) / 255
    out = bicubic(x)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out, np.clip(imresize(x, 1 / 4), 0, 1), atol=1e-6)


def test_bicubic_reproduces_the_matlab_set5_lr_files():
    hr_dir, lr_dir = benchmark_dir("Set5", "HR"), benchmark_dir("Set5", "LRx4")
    # Sorted names pair up: baby, bird, butterfly, head, woman <-> img_001..img_005.
    hr_paths, lr_paths = sorted(hr_dir.glob("*.png")), sorted(lr_dir.glob("*.png"))
    assert len(hr_paths) == len(lr_paths) == 5
    for hr_path, lr_path in zip(hr_paths, lr_paths):
        ours = bicubic(modcrop(read_image(hr_path), 4))
        np.testing.assert_array_equal(ours, read_image(lr_path), err_msg=hr_path.name)


def test_bicubic_rejects_sizes_not_multiple_of_scale(photo):
    with pytest.raises(ValueError, match="modcrop"):
        bicubic(photo[:95])
    with pytest.raises(ValueError, match="modcrop"):
        blur_bicubic(photo[:, :127])
    with pytest.raises(ValueError, match="modcrop"):
        realesrgan(photo[:94], rng=0)


# --------------------------------------------------------------------------- blur + bicubic


def test_gaussian_blur_is_scipy_gaussian_with_3_sigma_support(photo):
    # scipy: radius int(3 * 1.5 + 0.5) = 5 taps each side, half-sample mirror border.
    ref = ndimage.gaussian_filter(photo.astype(np.float64), sigma=(1.5, 1.5, 0), truncate=3.0, mode="reflect")
    x = photo.astype(np.float32) / 255
    np.testing.assert_allclose(gaussian_blur(x, 1.5), ref / 255, atol=1e-6)
    # uint8: the same values rounded; an exact .5 in one implementation can come out as
    # .4999999999 in the other, so allow rare one-level differences at such ties only.
    diff = np.abs(gaussian_blur(photo, 1.5).astype(np.int16) - np.clip(np.rint(ref), 0, 255))
    assert diff.max() <= 1 and np.all(np.abs(ref[diff > 0] % 1 - 0.5) < 1e-9)


def test_gaussian_blur_matches_pil_gaussianblur_radius_1_5(photo):
    from PIL import Image, ImageFilter

    pil = np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(radius=1.5)))
    diff = np.abs(pil.astype(np.int16) - gaussian_blur(photo, 1.5).astype(np.int16))
    inner = diff[8:-8, 8:-8]  # PIL replicates edges, we mirror: compare away from the border
    # PIL approximates the Gaussian with three box blurs of fractional width (same variance,
    # slightly different shape) and rounds each pass to 8 bits, so pixels disagree by 0-2
    # levels; measured mean 0.31 on this crop (0.27 on the full astronaut). If "radius" were
    # not sigma (e.g. sigma = radius / 2 or a 1.5-pixel half-width) the mean would be several
    # levels on this textured crop.
    assert inner.mean() < 0.5
    assert np.percentile(inner, 99) <= 2
    # And sigma = 1.5 is the best fit: neighbouring sigmas disagree several times more
    # (measured 4.0, 1.6, 1.5 levels for 0.75, 1.2, 1.8).
    for sigma in (0.75, 1.2, 1.8):
        wrong = np.abs(pil.astype(np.int16) - gaussian_blur(photo, sigma).astype(np.int16))
        assert wrong[8:-8, 8:-8].mean() > 3 * inner.mean()


def test_blur_bicubic_is_bicubic_of_the_blurred_image(photo):
    ref_blur = np.clip(
        np.rint(ndimage.gaussian_filter(photo.astype(np.float64), sigma=(1.5, 1.5, 0), truncate=3.0, mode="reflect")),
        0,
        255,
    )
    out = blur_bicubic(photo)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, imresize(ref_blur.astype(np.uint8), 1 / 4))
    outf = blur_bicubic(photo.astype(np.float32) / 255)
    assert outf.dtype == np.float32
    np.testing.assert_allclose(outf, np.clip(imresize(ref_blur / 255, 1 / 4), 0, 1), atol=3 / 255)


def test_blur_bicubic_is_smoother_than_bicubic(photo):
    assert high_freq_energy(blur_bicubic(photo)) < 0.8 * high_freq_energy(bicubic(photo))


# --------------------------------------------------------------------------- USM sharpening


USM_SIGMA = 8.0  # OpenCV's sigma for a 51-tap kernel: 0.3 * ((51 - 1) / 2 - 1) + 0.8


def usm_by_hand(x, blur, weight=0.5, threshold=10):
    """BasicSR's usm_sharp written out for a float64 image and a given blur."""
    residual = x - blur(x)
    soft_mask = blur((np.abs(residual) * 255 > threshold).astype(np.float64))
    sharp = np.clip(x + weight * residual, 0, 1)
    return soft_mask * sharp + (1 - soft_mask) * x


def cv2_blur_51(a):
    return cv2.GaussianBlur(a, (51, 51), USM_SIGMA, borderType=cv2.BORDER_REFLECT_101)


def test_usm_kernel_is_opencvs_default_sigma_for_51_taps():
    # sigma=0 in the reference means "derive it from the width": a Gaussian of sigma 8.
    taps = np.arange(51) - 25
    gauss = np.exp(-(taps**2) / (2 * USM_SIGMA**2))
    np.testing.assert_allclose(cv2.getGaussianKernel(51, 0, cv2.CV_64F).ravel(), gauss / gauss.sum(), atol=1e-15)


def test_usm_sharpen_float_is_the_hand_computation(photo):
    x = photo.astype(np.float64) / 255
    mask = np.abs(x - cv2_blur_51(x)) * 255 > 10
    assert 0.1 < mask.mean() < 0.9  # the photo has both sharpened and untouched pixels
    out = usm_sharpen(photo.astype(np.float32) / 255)
    assert out.dtype == np.float32 and out.shape == photo.shape
    np.testing.assert_allclose(out, usm_by_hand(x, cv2_blur_51), atol=1e-6)
    strong = usm_sharpen(x, weight=1.0, threshold=4)
    np.testing.assert_allclose(strong, usm_by_hand(x, cv2_blur_51, weight=1.0, threshold=4), atol=1e-6)


def test_usm_sharpen_uint8_is_the_float_result_rounded(photo):
    ref = np.rint(usm_by_hand(photo.astype(np.float64) / 255, cv2_blur_51) * 255)
    out = usm_sharpen(photo)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref.astype(np.uint8))
    assert np.abs(out.astype(int) - photo).max() > 5  # and it did sharpen


def test_usm_sharpen_leaves_flat_and_gently_shaded_images_unchanged():
    flat = np.full((40, 50, 3), 0.5, np.float32)
    np.testing.assert_array_equal(usm_sharpen(flat), flat)
    np.testing.assert_array_equal(usm_sharpen(np.full((40, 50, 3), 128, np.uint8)), 128)
    # A ramp of 0.2 over 64 px: a symmetric blur keeps a line, so |residual| is 0 more than
    # 25 px from the border and at most 255 * 0.2 / 63 * 8 * sqrt(2 / pi) = 5.2 grey levels
    # at the mirrored border (where the ramp folds into a V): under the threshold of 10.
    ramp = np.tile(np.linspace(0.3, 0.5, 64, dtype=np.float32), (32, 1))
    np.testing.assert_array_equal(usm_sharpen(ramp), ramp)


def test_usm_sharpen_overshoots_an_edge_by_the_1d_hand_computation():
    # Every row is the same step, so the 2D blur is the 1D blur of a row: a 51-tap Gaussian
    # of sigma 8 with the reflect-101 border (numpy's mode="reflect"), written in numpy.
    row = np.where(np.arange(64) < 32, 0.2, 0.8)
    taps = np.arange(51) - 25
    kernel = np.exp(-(taps**2) / (2 * USM_SIGMA**2))
    kernel /= kernel.sum()

    def blur_rows(a):
        padded = np.pad(a, ((0, 0), (25, 25)), mode="reflect")
        return np.stack([np.correlate(r, kernel, mode="valid") for r in padded])

    img = np.tile(row, (16, 1))
    expected = usm_by_hand(img, blur_rows)[0]
    out = usm_sharpen(img)
    np.testing.assert_allclose(out, np.tile(expected, (16, 1)), atol=1e-6)
    # Overshoot on both sides of the edge: darker than 0.2 left of it, brighter than 0.8 right.
    # (By hand at the edge: residual = -/+0.6 * 0.475 = 0.285, weight 0.5 -> 0.14; the soft
    # mask there is about 0.9.)
    assert out[0, 31] < 0.2 - 0.1 and out[0, 32] > 0.8 + 0.1
    assert out.min() >= 0 and out.max() <= 1
    # Far from the edge (beyond the mask and its blur) the image is left as it was.
    np.testing.assert_allclose(out[:, [0, 63]], img[:, [0, 63]], atol=1e-7)


# --------------------------------------------------------------------------- kernels


def test_isotropic_gaussian_kernel_is_outer_product_of_opencv_1d_kernel():
    for size, sigma in [(7, 1.0), (21, 3.0), (11, 0.4)]:
        g = cv2.getGaussianKernel(size, sigma, cv2.CV_64F)
        k = gaussian_kernel(size, sigma)
        np.testing.assert_allclose(k, g @ g.T, atol=1e-12)
        assert k.sum() == pytest.approx(1.0, abs=1e-12)


def test_anisotropic_kernel_rotated_by_90_degrees_is_the_transpose():
    k0 = gaussian_kernel(15, 3.0, 1.0, 0.0)
    k90 = gaussian_kernel(15, 3.0, 1.0, math.pi / 2)
    np.testing.assert_allclose(k90, k0.T, atol=1e-12)
    # theta = 0: the long axis (sigma_x = 3) runs along the columns, i.e. a row is wider.
    assert k0[7, 10] > k0[10, 7]
    # Unrotated anisotropic = outer product of two 1-D Gaussians.
    gx, gy = cv2.getGaussianKernel(15, 3.0, cv2.CV_64F), cv2.getGaussianKernel(15, 1.0, cv2.CV_64F)
    np.testing.assert_allclose(k0, gy @ gx.T, atol=1e-12)


@pytest.mark.parametrize("theta", [0.0, 0.5, 2.0, -1.2])
def test_gaussian_kernel_covariance_is_rotated_diagonal(theta):
    sx, sy, size = 2.0, 4.0, 41  # +-20 px = 5 sigma: truncation is negligible
    k = gaussian_kernel(size, sx, sy, theta)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    ax = np.arange(size) - size // 2
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    coords = np.stack([xx.ravel(), yy.ravel()])  # (x = column, y = row)
    w = k.ravel()
    cov = (coords * w) @ coords.T
    r = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    expected = r @ np.diag([sx**2, sy**2]) @ r.T
    np.testing.assert_allclose(cov, expected, atol=1e-3)
    assert np.allclose((coords * w).sum(axis=1), 0, atol=1e-12)  # centred


def test_generalized_and_plateau_kernels():
    g1 = generalized_gaussian_kernel(21, 2.0, 3.0, 0.3, beta=1.0)
    np.testing.assert_allclose(g1, gaussian_kernel(21, 2.0, 3.0, 0.3), atol=1e-12)
    ax = np.arange(21) - 10
    r2 = (ax[None, :] ** 2 + ax[:, None] ** 2) / 2.0**2  # (r / sigma)^2, isotropic sigma 2
    for beta in (0.5, 4.0):
        # Closed form exp(-(r / sigma)^(2 beta) / 2), normalised.
        ref = np.exp(-0.5 * r2**beta)
        np.testing.assert_allclose(generalized_gaussian_kernel(21, 2.0, beta=beta), ref / ref.sum(), atol=1e-12)
    # beta < 1: heavier tails than the Gaussian (relative to the peak); beta > 1: lighter.
    tail = lambda k: k[10, 16] / k[10, 10]  # 3 sigma out
    gauss = gaussian_kernel(21, 2.0)
    assert tail(generalized_gaussian_kernel(21, 2.0, beta=0.5)) > 10 * tail(gauss)
    assert tail(generalized_gaussian_kernel(21, 2.0, beta=4.0)) < tail(gauss) / 10
    # Plateau: 1 / (1 + (r / sigma)^(2 beta)), normalised.
    ref = 1 / (1 + r2**1.5)
    np.testing.assert_allclose(plateau_kernel(21, 2.0, beta=1.5), ref / ref.sum(), atol=1e-12)


def test_random_kernels_are_normalised_odd_and_reproducible():
    opts = RealESRGANOptions().stage1
    for seed in range(30):
        k = random_kernel(np.random.default_rng(seed), opts)
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and 7 <= k.shape[0] <= 21
        assert k.sum() == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_array_equal(k, random_kernel(np.random.default_rng(seed), opts))


def test_sinc_kernel_is_a_normalised_symmetric_lowpass():
    size, cutoff = 21, math.pi / 2
    k = sinc_kernel(size, cutoff)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(k, k.T, atol=1e-15)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)
    # Away from the centre it follows the Airy-type profile c J1(c r) / (2 pi r), up to the
    # normalisation: check the ratio of two taps against scipy's J1.
    from scipy.special import j1

    ratio = k[10, 13] / k[10, 11]
    assert ratio == pytest.approx((j1(3 * cutoff) / 3) / j1(cutoff), rel=1e-9)
    spec = np.abs(np.fft.fft2(k, s=(256, 256)))
    f = np.fft.fftfreq(256) * 2 * np.pi
    w = np.hypot(*np.meshgrid(f, f))
    # An ideal disc lowpass of radius `cutoff`; truncating to 21 taps ripples it (Gibbs):
    # measured 0.86-1.03 (mean 0.94) inside half the cutoff, at most 0.044 beyond 1.5x it.
    assert spec[0, 0] == pytest.approx(1.0, abs=1e-12)  # DC gain = kernel sum
    assert 0.8 < spec[w < 0.5 * cutoff].min() and spec[w < 0.5 * cutoff].max() < 1.1
    assert spec[w < 0.5 * cutoff].mean() > 0.9
    assert spec[w > 1.5 * cutoff].max() < 0.1
    assert spec[w > 1.5 * cutoff].mean() < 0.02


# --------------------------------------------------------------------------- noise


def test_gaussian_noise_has_the_requested_std():
    grey = np.full((200, 200, 3), 0.5, np.float32)
    for sigma in (5.0, 20.0):  # 0.5 +- 4 sigma stays inside [0, 1]: no clipping bias
        out = add_gaussian_noise(grey, sigma, gray=False, rng=np.random.default_rng(0))
        assert out.dtype == np.float32
        assert np.std(out - grey) == pytest.approx(sigma / 255, rel=0.03)
        assert abs(np.mean(out - grey)) < 0.1 * sigma / 255


def test_gray_noise_is_shared_by_channels_colour_noise_is_not():
    grey = np.full((64, 64, 3), 0.5, np.float32)
    g = add_gaussian_noise(grey, 10, gray=True, rng=1)
    np.testing.assert_array_equal(g[..., 0], g[..., 1])
    np.testing.assert_array_equal(g[..., 0], g[..., 2])
    c = add_gaussian_noise(grey, 10, gray=False, rng=1)
    assert not np.array_equal(c[..., 0], c[..., 1])
    corr = np.corrcoef((c[..., 0] - 0.5).ravel(), (c[..., 1] - 0.5).ravel())[0, 1]
    assert abs(corr) < 0.1
    p = add_poisson_noise(grey, 2.0, gray=True, rng=1)
    np.testing.assert_array_equal(p[..., 0], p[..., 2])


def test_gaussian_noise_keeps_uint8_and_is_reproducible():
    img = np.full((32, 32, 3), 128, np.uint8)
    a = add_gaussian_noise(img, 10, rng=np.random.default_rng(3))
    b = add_gaussian_noise(img, 10, rng=np.random.default_rng(3))
    assert a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, add_gaussian_noise(img, 10, rng=np.random.default_rng(4)))


def test_poisson_noise_variance_grows_with_intensity():
    scale = 2.0
    variances = []
    for level in (0.2, 0.6):
        flat = np.full((200, 200, 3), level, np.float32)
        out = add_poisson_noise(flat, scale, gray=False, rng=np.random.default_rng(5))
        # Shot noise: level * 255 photons, variance scale^2 * level / 255 in [0, 1] units.
        var = np.var(out - flat)
        assert var == pytest.approx(scale**2 * level / 255, rel=0.05)
        variances.append(var)
    assert variances[1] / variances[0] == pytest.approx(3.0, rel=0.1)


def test_poisson_noise_is_reproducible_with_a_seed():
    flat = np.full((40, 40, 3), 0.4, np.float32)
    a = add_poisson_noise(flat, 1.0, rng=7)
    np.testing.assert_array_equal(a, add_poisson_noise(flat, 1.0, rng=7))
    assert not np.array_equal(a, add_poisson_noise(flat, 1.0, rng=8))


# --------------------------------------------------------------------------- JPEG


def reference_jpeg(rgb_u8, quality):
    bgr = np.ascontiguousarray(rgb_u8[..., ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def test_jpeg_compress_equals_an_opencv_roundtrip(photo):
    np.testing.assert_array_equal(jpeg_compress(photo, 50), reference_jpeg(photo, 50))
    out = jpeg_compress(photo.astype(np.float32) / 255, 50)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out * 255, reference_jpeg(photo, 50), atol=1e-3)


def test_lower_jpeg_quality_loses_more(photo):
    scores = [psnr(jpeg_compress(photo, q), photo, crop_border=0) for q in (95, 60, 30, 10)]
    assert scores == sorted(scores, reverse=True) and scores[0] - scores[-1] > 5


# --------------------------------------------------------------------------- resize


def test_random_resize_respects_the_direction_and_base_size():
    img = np.random.default_rng(0).random((40, 60, 3), dtype=np.float32)
    for seed in range(10):
        up = random_resize(img, np.random.default_rng(seed), probs=(1, 0, 0), scale_range=(0.5, 1.5))
        down = random_resize(img, np.random.default_rng(seed), probs=(0, 1, 0), scale_range=(0.5, 1.5))
        keep = random_resize(img, np.random.default_rng(seed), probs=(0, 0, 1))
        assert 40 <= up.shape[0] <= 60 and up.shape[1] >= 60
        assert 20 <= down.shape[0] <= 40 and down.shape[1] <= 60
        assert keep.shape == img.shape
        rel = random_resize(img, np.random.default_rng(seed), probs=(0, 0, 1), base_size=(10, 15))
        assert rel.shape == (10, 15, 3)
        assert up.min() >= 0 and up.max() <= 1


# --------------------------------------------------------------------------- Real-ESRGAN


def test_realesrgan_shape_dtype_and_range(photo):
    for seed in range(8):
        out = realesrgan(photo, rng=seed)
        assert out.shape == (24, 32, 3) and out.dtype == np.uint8
        outf = realesrgan(photo.astype(np.float32) / 255, rng=seed)
        assert outf.shape == (24, 32, 3) and outf.dtype == np.float32
        assert outf.min() >= 0 and outf.max() <= 1
        # The pipeline works in float either way, so uint8 output = float output in 8 bits.
        np.testing.assert_array_equal(out, np.rint(outf * 255).astype(np.uint8))
    assert realesrgan(photo, scale=2, rng=0).shape == (48, 64, 3)


def test_realesrgan_is_reproducible_per_seed(photo):
    a = realesrgan(photo, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(a, realesrgan(photo, rng=np.random.default_rng(11)))
    np.testing.assert_array_equal(a, realesrgan(photo, rng=11))
    assert not np.array_equal(a, realesrgan(photo, rng=12))


def test_realesrgan_degrades_more_than_bicubic():
    from skimage import data

    hr = np.ascontiguousarray(data.astronaut()[64:320, 128:384])  # 256 px, the paper's crop size
    base = psnr(imresize(bicubic(hr), 4), hr)
    ours = [psnr(imresize(realesrgan(hr, rng=s), 4), hr) for s in range(6)]
    assert np.mean(ours) < base - 1


def test_realesrgan_options_hold_the_paper_defaults():
    o = RealESRGANOptions()
    assert o.stage1.blur_sigma == (0.2, 3.0) and o.stage2.blur_sigma == (0.2, 1.5)
    assert o.stage1.noise_range == (1.0, 30.0) and o.stage2.noise_range == (1.0, 25.0)
    assert o.stage1.poisson_scale_range == (0.05, 3.0) and o.stage2.poisson_scale_range == (0.05, 2.5)
    assert o.stage1.jpeg_range == o.stage2.jpeg_range == (30.0, 95.0)
    assert o.stage1.blur_prob == 1.0 and o.stage2.blur_prob == 0.8 and o.final_sinc_prob == 0.8
    assert o.stage1.kernel_sizes == tuple(range(7, 22, 2))


def pinned_stage(jpeg_quality: float) -> StageOptions:
    """A stage whose ranges pin every draw: a 7-tap sigma-1 Gaussian, no resize, zero noise, one JPEG quality."""
    return StageOptions(
        kernel_types=("iso",),
        kernel_probs=(1.0,),
        kernel_sizes=(7,),
        blur_sigma=(1.0, 1.0),
        sinc_prob=0.0,
        resize_probs=(0, 0, 1),
        gaussian_noise_prob=1.0,
        noise_range=(0.0, 0.0),
        jpeg_range=(jpeg_quality, jpeg_quality),
    )


def test_realesrgan_without_randomness_reduces_to_blur_resize_jpeg(photo):
    # Degenerate ranges pin every draw, so the result can be rebuilt step by step by hand.
    stage = pinned_stage(90)
    opts = RealESRGANOptions(stage1=stage, stage2=replace(stage, blur_prob=0.0), final_sinc_prob=0.0)
    out = realesrgan(photo, rng=0, opts=opts)
    x = photo.astype(np.float32) / 255
    g = cv2.getGaussianKernel(7, 1.0, cv2.CV_64F)
    x = np.clip(cv2.filter2D(x, -1, (g @ g.T).astype(np.float32), borderType=cv2.BORDER_REFLECT_101), 0, 1)
    x = reference_jpeg(np.rint(x * 255).astype(np.uint8), 90)
    # Stage 2 "keeps" the LR size, so it resizes to 24x32 (interpolation drawn at random);
    # the final resize is then 24x32 -> 24x32, and the JPEG comes last in either order.
    candidates = []
    for mode in (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC):
        lr = np.clip(cv2.resize(x.astype(np.float32) / 255, (32, 24), interpolation=mode), 0, 1)
        candidates.append(reference_jpeg(np.rint(lr * 255).astype(np.uint8), 90))
    assert any(np.array_equal(out, c) for c in candidates)


# --------------------------------------------------------------------------- dispatch


def test_degrade_dispatches_by_name(photo):
    assert set(DEGRADATIONS) == {"bicubic", "blur_bicubic", "realesrgan"}
    np.testing.assert_array_equal(degrade("bicubic", photo), bicubic(photo))
    np.testing.assert_array_equal(degrade("blur_bicubic", photo, scale=2), blur_bicubic(photo, 2))
    np.testing.assert_array_equal(degrade("realesrgan", photo, rng=3), realesrgan(photo, rng=3))


def test_degrade_unknown_name_lists_the_choices(photo):
    with pytest.raises(ValueError, match="bicubic, blur_bicubic, realesrgan"):
        degrade("nearest", photo)


def test_the_resize_draw_follows_its_probabilities_and_ranges():
    """One draw for the CPU chain and the batched one (srlab.degrade_batch draws through it)."""
    rng = np.random.default_rng(0)
    draws = [dg.draw_resize(rng, (0.2, 0.7, 0.1), (0.15, 1.5)) for _ in range(4000)]
    factors = np.array([f for f, _ in draws])
    up, down, keep = (factors > 1).mean(), (factors < 1).mean(), (factors == 1).mean()
    assert abs(up - 0.2) < 0.03 and abs(down - 0.7) < 0.03 and abs(keep - 0.1) < 0.02
    assert factors.min() >= 0.15 and factors.max() <= 1.5
    modes = [m for _, m in draws]
    assert {m: round(modes.count(m) / len(modes), 1) for m in set(modes)} == {
        "area": 0.3,
        "bilinear": 0.3,
        "bicubic": 0.3,
    }
    # random_resize is that draw applied: the same seed gives the size int(h * factor)
    factor, _ = dg.draw_resize(np.random.default_rng(5), (0.2, 0.7, 0.1), (0.15, 1.5))
    out = dg.random_resize(np.zeros((100, 80, 3), np.float32), np.random.default_rng(5))
    assert out.shape[:2] == (int(100 * factor), int(80 * factor))


def test_a_zero_width_blur_is_the_identity():
    """sigma 0 became a 3x3 kernel with OpenCV choosing its own sigma: a [1/4, 1/2, 1/4] blur,
    so blur_bicubic(radius=0) was not bicubic."""
    img = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(gaussian_blur(img, 0), img)
    np.testing.assert_array_equal(blur_bicubic(img, 4, radius=0), bicubic(img, 4))
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        gaussian_blur(img, -1)


def test_one_channel_images_keep_their_shape_through_blur_sharpening_and_gray_noise():
    """(H, W, 1) came back (H, W) from gaussian_blur and blur_bicubic, and crashed usm_sharpen
    and add_poisson_noise(gray=True)."""
    rng = np.random.default_rng(0)
    img = rng.random((32, 48, 1)).astype(np.float32)
    flat = img[..., 0]
    np.testing.assert_array_equal(gaussian_blur(img, 1.5)[..., 0], gaussian_blur(flat, 1.5))
    assert blur_bicubic(img, 4).shape == bicubic(img, 4).shape == (8, 12, 1)
    np.testing.assert_array_equal(usm_sharpen(img)[..., 0], usm_sharpen(flat))
    noisy = add_poisson_noise(img, 1.0, gray=True, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(noisy[..., 0], add_poisson_noise(flat, 1.0, gray=True, rng=np.random.default_rng(1)))


def test_jpeg_refuses_an_image_with_alpha_in_words():
    with pytest.raises(ValueError, match="JPEG holds gray or RGB images, got 4 channels"):
        jpeg_compress(np.zeros((16, 16, 4), np.uint8), 50)
