"""The perception-distortion plot: what it draws is the data it was given, and ties are named."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from srlab.viz import perception_distortion_plot, tied_groups

POINTS = {
    "bicubic": (28.42, 7.10),
    "SRResNet": (30.05, 6.40),
    "ESRGAN": (28.11, 3.20),
    "Real-ESRGAN x4plus (published weights)": (27.30, 3.90),
    "HR": (math.inf, 2.95),
}


def _lines(fig):
    return {line.get_label(): line for line in fig.axes[0].get_lines()}


def test_plotted_points_are_the_input_with_niqe_on_x_and_psnr_on_y():
    fig = perception_distortion_plot(POINTS)
    lines = _lines(fig)
    for label, (psnr_y, niqe) in POINTS.items():
        if math.isfinite(psnr_y):
            assert list(lines[label].get_xdata()) == [niqe] and list(lines[label].get_ydata()) == [psnr_y]
    # HR, PSNR infinite: a vertical line at its NIQE, not a point
    assert list(lines["HR (PSNR ∞)"].get_xdata()) == [2.95, 2.95]
    ax = fig.axes[0]
    assert "lower = more natural" in ax.get_xlabel() and "PSNR-Y" in ax.get_ylabel()
    assert {t.get_text() for t in ax.texts} >= {"bicubic", "ESRGAN", "HR (PSNR ∞)"}  # annotated
    # references styled apart: bicubic a grey square, the models circles
    assert lines["bicubic"].get_marker() == "s" and lines["ESRGAN"].get_marker() == "o"
    assert lines["bicubic"].get_color() != lines["ESRGAN"].get_color()
    assert not fig.texts  # no two points tie here: no note
    plt.close(fig)


def test_nearly_equal_psnrs_get_plain_tick_labels(tmp_path):
    fig = perception_distortion_plot({"a": (30.6912, 5.0), "b": (30.6914, 5.3)}, tmp_path / "pd.png")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.yaxis.get_offset_text().get_text() == "" and ax.xaxis.get_offset_text().get_text() == ""
    labels = [t.get_text().replace("\u2212", "-") for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(30.68 <= float(t) <= 30.71 for t in labels)
    assert (tmp_path / "pd.png").read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)


def test_tied_points_are_named_in_a_note():
    points = {"bicubic": (28.420, 7.10), "SRGAN": (28.449, 7.14), "ESRGAN": (28.43, 7.13), "RRDB": (29.0, 7.1)}
    fig = perception_distortion_plot(points)
    (note,) = fig.texts
    assert "bicubic, SRGAN, ESRGAN" in note.get_text() and "RRDB" not in note.get_text()
    assert "cannot order" in note.get_text()
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert "bicubic = SRGAN = ESRGAN" in labels and "SRGAN" not in labels  # one label, not three overprinted
    plt.close(fig)


def test_tied_groups_chain_and_need_both_coordinates_close():
    # a-b: 0.04 dB, 0.04 NIQE (tie); b-c: 0.04 dB, 0.04 (tie); a-c: 0.08 dB (no direct tie): one group by chaining
    points = {"a": (30.00, 5.00), "b": (30.04, 5.04), "c": (30.08, 5.08), "d": (30.01, 6.0), "e": (25.0, 6.0)}
    assert tied_groups(points) == [["a", "b", "c"]]  # d: same PSNR as a, far in NIQE; e: far in PSNR
    assert tied_groups({"HR": (math.inf, 3.0), "HR copy": (math.inf, 3.01)}) == [["HR", "HR copy"]]
    assert tied_groups({"a": (30.0, 5.0), "b": (30.06, 5.0)}) == []  # 0.06 dB apart: told apart
    assert tied_groups(points, psnr_db=2.0, niqe=2.0) == [["a", "b", "c", "d"]]


@pytest.mark.parametrize("n", [1, 2])
def test_a_plot_of_only_the_reference_or_one_model_still_draws(n):
    points = dict(list({"HR": (math.inf, 3.0), "bicubic": (28.0, 7.0)}.items())[:n])
    fig = perception_distortion_plot(points)
    assert len(_lines(fig)) == n
    plt.close(fig)


def test_gray_and_alpha_images_are_shown_and_encoded_as_gray():
    """read_image returns (H, W, 2) for an LA PNG; imshow and the PNG encoder refused it."""
    import io

    import numpy as np
    from PIL import Image

    from srlab.viz import png_bytes, show_image

    la = np.random.default_rng(0).integers(0, 256, (8, 6, 2), dtype=np.uint8)
    shown = np.asarray(Image.open(io.BytesIO(png_bytes(la))))
    np.testing.assert_array_equal(shown, la[..., 0])
    fig, ax = plt.subplots()
    show_image(ax, la, "LA")
    np.testing.assert_allclose(ax.images[0].get_array(), la[..., 0] / 255, atol=1e-6)
    plt.close(fig)
