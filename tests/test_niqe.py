import hashlib
import re
import warnings
from importlib import resources

import cv2
import numpy as np
import pytest
from conftest import benchmark_dir
from scipy import ndimage, optimize, special, stats
from skimage import data
from skimage.color import rgb2ycbcr

from srlab import metrics
from srlab.images import read_image
from srlab.metrics import aggd_fit, niqe, niqe_blocks
from srlab.resize import imresize

# The official MATLAB NIQE (R2021a) on Set14 baboon.png, whole image, as published in the
# docstring of BasicSR's calculate_niqe ("MATLAB R2021a result for tests/data/baboon.png").
MATLAB_BABOON = 5.72957338


def test_baboon_matches_the_matlab_release():
    img = read_image(benchmark_dir("Set14", "HR") / "baboon.png")
    assert img.shape == (480, 500, 3) and img.dtype == np.uint8
    assert niqe(img, crop_border=0) == pytest.approx(MATLAB_BABOON, abs=1e-3)


def test_shipped_model_is_the_file_sources_md_names():
    assets = resources.files("srlab").joinpath("assets")
    digest = hashlib.sha256(assets.joinpath("niqe_pris_params.npz").read_bytes()).hexdigest()
    sources = assets.joinpath("SOURCES.md").read_text()
    assert digest in sources and "Mittal" in sources and "University of Texas" in sources
    with assets.joinpath("niqe_pris_params.npz").open("rb") as f:
        model = np.load(f)
        assert model["mu_pris_param"].shape == (1, 36) and model["cov_pris_param"].shape == (36, 36)
        # the window is MATLAB's fspecial('gaussian', 7, 7/6), normalised
        g = cv2.getGaussianKernel(7, 7 / 6, ktype=cv2.CV_64F)
        np.testing.assert_allclose(model["gaussian_window"], g @ g.T, atol=1e-12)


def _aggd_samples(rng, shape, left, right, n):
    """Draws of an asymmetric generalized Gaussian: each side a half of scipy's gennorm."""
    side_right = rng.random(n) < right / (left + right)  # each side's mass is proportional to its scale
    magnitude = np.abs(stats.gennorm.rvs(shape, size=n, random_state=rng))
    return np.where(side_right, magnitude * right, -magnitude * left)


@pytest.mark.parametrize(("shape", "left", "right"), [(2.0, 1.0, 1.0), (0.8, 0.3, 0.6), (1.4, 2.0, 0.7)])
def test_aggd_fit_recovers_the_parameters_of_known_samples(shape, left, right):
    rng = np.random.default_rng(0)
    samples = _aggd_samples(rng, shape, left, right, 400_000)
    got_shape, got_left, got_right = aggd_fit(samples[None, :])
    assert got_shape[0] == pytest.approx(shape, rel=0.03)
    assert got_left[0] == pytest.approx(left, rel=0.02)
    assert got_right[0] == pytest.approx(right, rel=0.02)


def test_aggd_fit_of_a_one_sided_row_is_matlabs():
    # no negative value: MATLAB's leftstd is NaN, min() over an all-NaN vector returns index 1 (shape 0.2),
    # and the right scale is the right std times sqrt(gamma(1/0.2) / gamma(3/0.2)) = sqrt(4! / 14!)
    shape, left, right = aggd_fit(np.array([[0.5, 1.0, 2.0, 0.0]]))
    assert shape[0] == 0.2 and np.isnan(left[0])
    assert right[0] == pytest.approx(np.sqrt((0.25 + 1 + 4) / 3) * np.sqrt(24 / 87178291200), rel=1e-9)


# by hand: [-1, 1, 2, -2, 0 x 4]: left std = right std = sqrt(5/2); E|x| = 6/8, E[x^2] = 10/8, so
# r = 0.45 and, with gamma_hat = 1, r_norm = r. [-1, -1, 2, 2, 0 x 6]: left std 1, right std 2,
# gamma_hat = 1/2, r = 0.6^2 / 1 = 0.36, r_norm = 0.36 * (1/8 + 1) * (3/2) / (5/4)^2 = 0.3888
@pytest.mark.parametrize(
    ("row", "left_std", "right_std", "r_norm"),
    [([-1, 1, 2, -2, 0, 0, 0, 0], 2.5**0.5, 2.5**0.5, 0.45), ([-1, -1, 2, 2, 0, 0, 0, 0, 0, 0], 1.0, 2.0, 0.3888)],
)
def test_aggd_fit_of_a_tiny_row_by_hand(row, left_std, right_std, r_norm):
    shape, left, right = aggd_fit(np.array([row], dtype=np.float64))
    # the shape solves gamma(2/a)^2 / (gamma(1/a) gamma(3/a)) = r_norm; scipy's root, then MATLAB's 0.001 grid
    ratio = lambda a: special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a))
    root = optimize.brentq(lambda a: ratio(a) - r_norm, 0.2, 10, xtol=1e-12)
    assert abs(shape[0] - root) <= 0.0005 + 1e-9
    assert abs(ratio(shape[0]) - r_norm) <= min(abs(ratio(shape[0] + d) - r_norm) for d in (-0.001, 0.001))
    to_scale = np.sqrt(special.gamma(1 / shape[0]) / special.gamma(3 / shape[0]))
    assert left[0] == pytest.approx(left_std * to_scale, rel=1e-12)
    assert right[0] == pytest.approx(right_std * to_scale, rel=1e-12)


def test_mscn_coefficients_match_scipy_filters():
    # Eq. 1 of the paper with scipy's correlate (edges replicated, as MATLAB imfilter 'replicate')
    rng = np.random.default_rng(1)
    y = rng.integers(16, 236, size=(23, 31)).astype(np.float64)
    window = metrics._niqe_model()[2]
    mu = ndimage.correlate(y, window, mode="nearest")
    sigma = np.sqrt(np.abs(ndimage.correlate(y * y, window, mode="nearest") - mu * mu))
    np.testing.assert_allclose(metrics._mscn(y, window), (y - mu) / (sigma + 1), atol=1e-10)
    np.testing.assert_allclose(metrics._mscn(np.full((9, 9), 77.0), window), 0, atol=1e-12)  # flat: no contrast


def test_half_size_mirrors_the_edges_as_matlab_r2021a():
    # first output pixel of imresize(x, 0.5) sits at input 1.5; its 8 taps k = -2..5 weigh
    # cubic((1.5 - k) / 2) / 2: cubic(1.75, 1.25, 0.75, 0.25) = -0.0234375, -0.0703125, 0.2265625,
    # 0.8671875 (a = -0.5), summing to 2 over both sides. Mirrored (k = -2, -1, 0 read pixels 3, 2, 1) a
    # ramp 1, 2, 3, ... gives (-0.0703125 - 0.140625 + 0.2265625 + 0.8671875 + 1.734375 + 0.6796875
    # - 0.28125 - 0.1171875) / 2 = 1.44921875, where the replicated edge would give 1.5078125.
    ramp = np.tile(np.arange(1, 97, dtype=np.float64), (96, 1))  # (96, 96), value = 1-based column
    half = metrics._half_size(ramp)  # (48, 48)
    assert half.shape == (48, 48)
    np.testing.assert_allclose(half[:, 0], 1.44921875, atol=1e-12)
    np.testing.assert_allclose(half[:, -1], 97 - 1.44921875, atol=1e-12)  # the same, mirrored
    np.testing.assert_allclose(half[:, 3:-3], np.tile(2 * np.arange(4, 46) - 0.5, (48, 1)), atol=1e-12)


def test_block_count():
    assert niqe_blocks(480, 500) == 5 * 5
    assert niqe_blocks(200, 300, crop_border=4) == 2 * 3  # 192 x 292
    assert niqe_blocks(199, 300, crop_border=4) == 1 * 3  # 191 x 292
    assert niqe_blocks(90, 90) == 0 and niqe_blocks(6, 6, crop_border=4) == 0


def test_half_scale_resize_on_float_input_is_exact_in_the_interior():
    # MATLAB's x0.5 bicubic: output pixel j (1-based) sits at input 2j - 0.5; a cubic kernel that sums
    # to 1 and is symmetric reproduces a linear ramp there exactly, once the edges are out of reach
    ramp = np.tile(np.arange(1, 97, dtype=np.float64), (8, 1))  # (8, 96), value = 1-based column
    half = imresize(ramp, 0.5)  # (4, 48)
    j = np.arange(1, 49)
    np.testing.assert_allclose(half[0, 3:-3], (2 * j - 0.5)[3:-3], atol=1e-12)


def test_gray_input_is_taken_as_y():
    rgb = data.chelsea()  # 300x451: 12 blocks
    r, g, b = (rgb[..., c].astype(np.int64) for c in range(3))
    assert not np.any((65481 * r + 128553 * g + 24966 * b) % 255000 == 127500), "no exact .5 Y ties to round"
    y = np.round(rgb2ycbcr(rgb)[..., 0]).astype(np.uint8)  # skimage's MATLAB-style Y, as uint8
    assert niqe(rgb) == pytest.approx(niqe(y), abs=1e-12)
    assert niqe(y[..., None]) == pytest.approx(niqe(y), abs=1e-12)
    assert niqe(y.astype(np.uint16) * 257) == pytest.approx(niqe(y), abs=1e-12)  # data range from the dtype
    assert niqe(y / 255.0) == pytest.approx(niqe(y), abs=1e-12)


def test_blurring_raises_niqe():
    img = data.astronaut()
    sharp = niqe(img)
    blurred = [niqe(cv2.GaussianBlur(img, (0, 0), sigma)) for sigma in (1.0, 2.0, 3.0)]
    assert blurred[0] > sharp + 1.5  # measured: 3.10 -> 5.50, 7.32, 8.82
    assert blurred[0] < blurred[1] < blurred[2]


def test_crop_border_is_applied_first():
    img = data.astronaut()
    assert niqe(img, crop_border=4) == pytest.approx(niqe(img[4:-4, 4:-4]), abs=1e-12)
    assert niqe(img, crop_border=4) != pytest.approx(niqe(img), abs=1e-6)


def test_too_small_or_flat_images_are_clear_errors():
    img = data.astronaut()
    with pytest.raises(ValueError, match=re.escape("at least one whole 96x96 block, got a 95x512 image")):
        niqe(img[:95])
    with pytest.raises(ValueError, match="after crop_border=4"):
        niqe(img[:100], crop_border=4)
    with pytest.raises(ValueError, match="flat image"):
        niqe(np.full((192, 192), 128, np.uint8))
    with pytest.raises(ValueError, match="gray or"):
        niqe(np.zeros((192, 192, 4), np.uint8))


def test_fewer_than_four_blocks_warns():
    img = data.astronaut()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        niqe(img[:192, :192])  # 2 x 2 blocks: no warning
    with pytest.warns(UserWarning, match=r"only 3 block\(s\) of 96x96 per scale \(fewer than 4\)"):
        value = niqe(img[:100, :300])
    assert np.isfinite(value)
