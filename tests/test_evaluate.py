import json
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from conftest import benchmark_dir
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from srlab.cli import main
from srlab.evaluate import evaluate_folder, score_images, upscale_classical
from srlab.images import write_image
from srlab.metrics import niqe
from srlab.resize import imresize, modcrop

# Literature (x4, Y, border = scale): Set5 28.42 / 0.8104, Set14 26.00 / 0.7027.
PUBLISHED_RANGES = {"Set5": ((28.42, 28.44), (0.810, 0.812)), "Set14": ((25.99, 26.01), (0.702, 0.704))}


@pytest.mark.parametrize("benchmark", ["Set5", "Set14"])
def test_bicubic_x4_reproduces_published_numbers(benchmark):
    report = evaluate_folder(benchmark_dir(benchmark, "HR"), scale=4, upscaler="bicubic", progress=False)
    (p_lo, p_hi), (s_lo, s_hi) = PUBLISHED_RANGES[benchmark]
    assert p_lo <= report["mean"]["psnr_y"] <= p_hi
    assert s_lo <= report["mean"]["ssim_y"] <= s_hi
    assert report["skipped"] == []


def test_cli_with_matlab_lr_folder_writes_json(tmp_path, capsys):
    hr, lr = benchmark_dir("Set5", "HR"), benchmark_dir("Set5", "LRx4")
    out = tmp_path / "set5.json"
    assert (
        main(["evaluate", "--hr", str(hr), "--lr", str(lr), "--scale", "4", "--model", "bicubic", "--json", str(out)])
        == 0
    )
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["images"]] == ["baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"]
    assert 28.42 <= report["mean"]["psnr_y"] <= 28.44
    assert report["mean"]["psnr_y"] == pytest.approx(np.mean([r["psnr_y"] for r in report["images"]]))
    assert "mean" in capsys.readouterr().out


def _skimage_psnr_y(sr, hr, border):
    y = lambda img: rgb2ycbcr(img / 255.0)[..., 0] if img.ndim == 3 else img.astype(np.float64)
    return peak_signal_noise_ratio(
        y(hr)[border:-border, border:-border], y(sr)[border:-border, border:-border], data_range=255
    )


@pytest.fixture
def messy_folder(tmp_path, photo):
    """Good RGB, grayscale, RGBA and 16-bit images beside a corrupt, a truncated and a tiny one."""
    hr = photo[:90, :126]  # not a multiple of 4: evaluation must modcrop
    write_image(tmp_path / "a_rgb.png", hr)
    write_image(tmp_path / "b_gray.png", hr[..., 1])
    write_image(tmp_path / "c_rgba.png", np.dstack([hr, np.full(hr.shape[:2], 9, np.uint8)]))
    write_image(tmp_path / "d_deep.png", hr.astype(np.uint16) * 257)
    (tmp_path / "e_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100) + b"IEND\xaeB`\x82")
    good = (tmp_path / "a_rgb.png").read_bytes()
    (tmp_path / "f_truncated.png").write_bytes(good[: len(good) // 3])
    return tmp_path, hr


def test_messy_folder_skips_bad_files_and_evaluates_the_rest(messy_folder):
    folder, hr = messy_folder
    with pytest.warns(UserWarning, match=r"skipped 2 of 6 images: e_corrupt.png .*f_truncated.png"):
        report = evaluate_folder(folder, scale=4, progress=False)
    rows = {r["name"]: r for r in report["images"]}
    assert sorted(s["name"] for s in report["skipped"]) == ["e_corrupt.png", "f_truncated.png"]
    hr4 = hr[:88, :124]
    sr = imresize(imresize(hr4, 1 / 4), 4)
    assert rows["a_rgb.png"]["psnr_y"] == pytest.approx(_skimage_psnr_y(sr, hr4, 4), abs=1e-9)
    # RGBA: alpha is dropped, so it scores exactly like the RGB file
    assert rows["c_rgba.png"] == {**rows["a_rgb.png"], "name": "c_rgba.png"}
    # grayscale: the single channel is Y, and RGB PSNR is the same number
    gray_sr = imresize(imresize(hr4[..., 1], 1 / 4), 4)
    assert rows["b_gray.png"]["psnr_y"] == pytest.approx(_skimage_psnr_y(gray_sr, hr4[..., 1], 4), abs=1e-9)
    assert rows["b_gray.png"]["psnr_y"] == pytest.approx(rows["b_gray.png"]["psnr_rgb"])
    # 16 bit keeps 16 bits: LR is not quantised to 8 bits, so it scores close to, not equal to, 8 bit
    assert rows["d_deep.png"]["psnr_y"] == pytest.approx(rows["a_rgb.png"]["psnr_y"], abs=0.2)
    assert rows["d_deep.png"]["psnr_y"] != rows["a_rgb.png"]["psnr_y"]


def test_lr_folder_with_wrong_sizes_is_reported(tmp_path, photo):
    (tmp_path / "hr").mkdir(), (tmp_path / "lr").mkdir()
    write_image(tmp_path / "hr" / "x.png", photo)
    write_image(tmp_path / "lr" / "x.png", photo[:10, :10])
    with pytest.raises(ValueError, match="no usable image"), pytest.warns(UserWarning, match="expected"):
        evaluate_folder(tmp_path / "hr", tmp_path / "lr", scale=4, progress=False)


def test_classical_methods_rank_as_expected(photo):
    lr = imresize(photo, 1 / 4)
    scores = {m: _skimage_psnr_y(upscale_classical(lr, 4, m), photo, 4) for m in ("nearest", "bilinear", "bicubic")}
    assert scores["nearest"] < scores["bilinear"] < scores["bicubic"]
    assert upscale_classical(lr[..., 0], 4, "lanczos").shape == photo.shape[:2]


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["evaluate", "--hr", str(tmp_path), "--model", "bicubic"]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["evaluate", "--hr", str(tmp_path), "--model", "magic"]) == 2
    assert "unknown --model" in capsys.readouterr().err
    assert main(["evaluate", "--hr", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_module_entry_point_runs(messy_folder):
    folder, _ = messy_folder
    proc = subprocess.run(
        [sys.executable, "-m", "srlab", "evaluate", "--hr", str(folder), "--scale", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipped 2 of 6 images" in proc.stderr
    assert proc.stdout.count(".png") == 4


# ---------------------------------------------------------------- the one results-table formatter


def _parse_markdown(table: str) -> list[list[str]]:
    lines = table.strip().splitlines()
    assert set(lines[1].replace("|", "")) == {"-"}, "second line is the Markdown header rule"
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in (lines[0], *lines[2:])]


def test_metrics_table_formats_and_bolds_the_best_of_each_column():
    from srlab.evaluate import metrics_table

    rows = {
        "bicubic": {"psnr_y": 28.4251, "ssim_y": 0.81036, "lpips": 0.34, "niqe": 7.0},
        "SRGAN": {"psnr_y": 26.0, "ssim_y": 0.7, "lpips": 0.12, "niqe": 5.30},
        "twin": {"psnr_y": 28.3800, "ssim_y": 0.5, "niqe": 5.45},  # 0.045 dB and 0.15 NIQE from the best
        "apart": {"psnr_y": 28.3700, "ssim_y": 0.81041, "niqe": 5.51},  # 0.055 dB, 0.21: not ties
    }
    table = _parse_markdown(metrics_table(rows, ("psnr_y", "ssim_y", "lpips", "niqe"), label="x4 method"))
    assert table[0] == ["x4 method", "PSNR-Y (dB)", "SSIM-Y", "LPIPS", "NIQE"]
    assert table[1] == ["bicubic", "**28.43**", "**0.8104**", "0.340", "7.00"]
    assert table[2] == ["SRGAN", "26.00", "0.7000", "**0.120**", "**5.30**"]  # LPIPS, NIQE: lower is better
    # a PSNR within 0.05 dB (PSNR_TIE_DB) and a NIQE within 0.2 (NIQE_TIE) of the best tie with it;
    # SSIM has no tie limit: bold only when equal as printed
    assert table[3] == ["twin", "**28.38**", "0.5000", "–", "**5.45**"]
    assert table[4] == ["apart", "28.37", "**0.8104**", "–", "5.51"]


def test_metrics_table_groups_put_one_column_per_test_set():
    from srlab.evaluate import metrics_table

    rows = {
        "bicubic": {"Set5": {"psnr_y": 28.43, "ssim_y": 0.8111}, "Set14": {"psnr_y": 26.0, "ssim_y": 0.7029}},
        "RRDB": {"Set5": {"psnr_y": 30.56, "ssim_y": 0.8658}},
    }
    table = _parse_markdown(metrics_table(rows, ("psnr_y", "ssim_y"), label="x4", groups=["Set5", "Set14"], bold=False))
    assert table == [
        ["x4, PSNR-Y (dB) / SSIM-Y", "Set5", "Set14"],
        ["bicubic", "28.43 / 0.8111", "26.00 / 0.7029"],
        ["RRDB", "30.56 / 0.8658", "– / –"],
    ]


def test_format_table_is_the_markdown_table_of_a_report(photo):
    from srlab.evaluate import format_table, score_pair

    hr = photo[:96, :128]
    sr = imresize(imresize(hr, 1 / 4), 4)
    s = score_pair(sr, hr, 4)
    report = {"images": [{"name": "a.png", **s}], "mean": s}
    table = _parse_markdown(format_table(report))
    assert table[0] == ["image", "PSNR-Y (dB)", "SSIM-Y", "PSNR-RGB (dB)"]
    assert table[1][0] == "a.png" and table[2][0] == "**mean**"
    assert float(table[1][1]) == pytest.approx(_skimage_psnr_y(sr, hr, 4), abs=0.005)
    assert "**" not in "".join(table[1][1:])  # per-image rows of different images: nothing to bold


# ---------------------------------------------------------------- NIQE and LPIPS in the report


@pytest.fixture
def photos(tmp_path):
    """Three large photos, a strip with 3 NIQE blocks (after a 4 px border too) and an image under one block."""
    images = {
        "astronaut.png": data.astronaut(),  # 512x512
        "chelsea.png": data.chelsea(),  # 300x451
        "coffee.png": data.coffee(),  # 400x600
        "strip.png": data.astronaut()[:150, :300],  # 1 x 3 blocks
        "tiny.png": data.coffee()[100:180, 100:180],  # 80x80: no block
    }
    for name, img in images.items():
        write_image(tmp_path / name, img)
    return tmp_path, images


def _warnings_about(caught, text):
    return [str(w.message) for w in caught if text in str(w.message)]


def test_folder_report_niqe_is_the_niqe_of_each_bicubic_sr(photos):
    folder, images = photos
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_folder(folder, scale=4, metrics=("psnr", "ssim", "niqe"), progress=False)
    rows = {r["name"]: r for r in report["images"]}
    expected = {}
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "strip.png"):
        hr = modcrop(images[name], 4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # strip.png's 3 blocks
            expected[name] = niqe(imresize(imresize(hr, 1 / 4), 4), crop_border=4)
        assert rows[name]["niqe"] == pytest.approx(expected[name], abs=1e-12)
        assert rows[name]["psnr_y"] == pytest.approx(_skimage_psnr_y(imresize(imresize(hr, 1 / 4), 4), hr, 4))
    assert rows["tiny.png"]["niqe"] is None and rows["tiny.png"]["psnr_y"] > 0  # PSNR still scored
    assert report["mean"]["niqe"] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)
    assert list(report["mean"]) == ["psnr_y", "ssim_y", "psnr_rgb", "niqe"]
    # one warning each, naming the images, not one per image (nor NIQE's own)
    (missing,) = _warnings_about(caught, "no NIQE")
    assert "no NIQE for 1 of 5 images: tiny.png (" in missing and "72x72 image after crop_border=4" in missing
    (few,) = _warnings_about(caught, "unreliable")
    assert "strip.png (3)" in few and "1 of 5 images" in few
    assert not _warnings_about(caught, "NIQE on a")


def test_metrics_choose_the_keys(photos):
    folder, _ = photos
    default = evaluate_folder(folder, scale=4, progress=False)
    assert list(default["mean"]) == ["psnr_y", "ssim_y", "psnr_rgb"]  # as before NIQE existed
    assert all(set(r) == {"name", "psnr_y", "ssim_y", "psnr_rgb"} for r in default["images"])
    ssim_only = evaluate_folder(folder, scale=4, metrics="ssim", progress=False)
    assert list(ssim_only["mean"]) == ["ssim_y"]
    assert ssim_only["mean"]["ssim_y"] == pytest.approx(default["mean"]["ssim_y"], abs=1e-12)
    with pytest.raises(ValueError, match=r"unknown metric\(s\) 'fid'; choose from psnr, ssim, niqe, lpips"):
        evaluate_folder(folder, metrics=("psnr", "fid"), progress=False)


def test_score_images_judges_upscaled_photos_with_no_hr(photos):
    folder, images = photos
    (folder / "broken.png").write_bytes(b"not an image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = score_images(folder, progress=False)
        cropped = score_images(folder, crop_border=4, progress=False)
        expected = {n: niqe(images[n]) for n in ("astronaut.png", "chelsea.png", "coffee.png", "strip.png")}
    rows = {r["name"]: r["niqe"] for r in report["images"]}
    assert rows == {**{n: pytest.approx(v, abs=1e-12) for n, v in expected.items()}, "tiny.png": None}
    assert report["mean"] == {"niqe": pytest.approx(np.mean(list(expected.values())), abs=1e-12)}
    assert [s["name"] for s in report["skipped"]] == ["broken.png"]
    assert len(_warnings_about(caught, "no NIQE for 1 of 6 images: tiny.png")) == 2  # one per call
    assert len(_warnings_about(caught, "unreliable on 1 of 6 images")) == 2
    first = cropped["images"][0]
    assert first == {"name": "astronaut.png", "niqe": pytest.approx(niqe(images["astronaut.png"][4:-4, 4:-4]))}
    with pytest.raises(ValueError, match="no HR to compare with, so psnr and ssim cannot be scored"):
        score_images(folder, metrics="psnr,ssim,niqe")


def test_cli_sr_mode_scores_niqe_and_writes_json(photos, tmp_path, capsys):
    folder, images = photos
    out = tmp_path / "json" / "niqe.json"
    assert main(["evaluate", "--sr", str(folder), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    table = _parse_markdown(captured.out.split("\nwrote")[0])
    assert table[0] == ["image", "NIQE"]
    assert table[1] == ["astronaut.png", f"{niqe(images['astronaut.png']):.2f}"]
    assert table[-2] == ["tiny.png", "–"]
    assert captured.err.count("warning: NIQE is unreliable") == 1 and captured.err.count("tiny.png") == 1
    report = json.loads(out.read_text())
    assert report["sr_dir"] == str(folder) and report["mean"]["niqe"] == pytest.approx(float(table[-1][1]), abs=0.005)


def test_cli_hr_mode_adds_the_niqe_column(photos, capsys):
    folder, _ = photos
    assert main(["evaluate", "--hr", str(folder), "--metrics", "psnr,ssim,niqe"]) == 0
    header = _parse_markdown(capsys.readouterr().out)[0]
    assert header == ["image", "PSNR-Y (dB)", "SSIM-Y", "PSNR-RGB (dB)", "NIQE"]


def test_cli_metric_and_source_errors_are_clear(photos, capsys):
    folder = str(photos[0])
    assert main(["evaluate", "--sr", folder, "--metrics", "psnr,niqe"]) == 2
    assert "no HR to compare with, so psnr cannot be scored: give HR images (--hr)" in capsys.readouterr().err
    assert main(["evaluate", "--sr", folder, "--model", "bicubic", "--scale", "4"]) == 2
    assert "--model, --scale: only with --hr" in capsys.readouterr().err
    assert main(["evaluate", "--hr", folder, "--metrics", "psnr,sharpness"]) == 2
    assert "unknown metric(s) 'sharpness'" in capsys.readouterr().err
    for argv, message in (
        (["--metrics", "niqe"], "one of the arguments --hr --sr is required"),
        (["--hr", folder, "--sr", folder], "not allowed with argument"),
    ):
        with pytest.raises(SystemExit) as stop:
            main(["evaluate", *argv])
        assert stop.value.code == 2 and message in capsys.readouterr().err


def _fake_lpips(monkeypatch, net):
    module = types.ModuleType("lpips")
    module.LPIPS = lambda net_name="alex", **kwargs: net(net_name, **kwargs)
    monkeypatch.setitem(sys.modules, "lpips", module)


# LPIPS without its package or its backbone is refused before any work: tests/test_hostile_reports.py


class _MeanAbsoluteNet(torch.nn.Module):
    """Stands in for lpips.LPIPS: mean |a - b| of what it is given, after LPIPS's own [0, 1] -> [-1, 1]."""

    def __init__(self, net_name, **kwargs):
        super().__init__()
        self.calls = []

    def forward(self, a, b, normalize=False):
        self.calls.append((tuple(a.shape), float(a.min()), float(a.max()), normalize))
        a, b = (2 * a - 1, 2 * b - 1) if normalize else (a, b)
        return (a - b).abs().mean().reshape(1, 1, 1, 1)


def test_lpips_gets_rgb_in_unit_range_cropped_by_the_scale(photos, monkeypatch):
    folder, images = photos
    nets = []
    _fake_lpips(monkeypatch, lambda *a, **k: nets.append(_MeanAbsoluteNet(*a, **k)) or nets[-1])
    write_image(folder / "gray.png", images["chelsea.png"][..., 1])
    report = evaluate_folder(folder, scale=4, metrics=("lpips",), progress=False)
    rows = {r["name"]: r["lpips"] for r in report["images"]}
    for name, hr in (("coffee.png", images["coffee.png"]), ("gray.png", images["chelsea.png"][..., 1])):
        hr = modcrop(hr, 4)
        sr = imresize(imresize(hr, 1 / 4), 4)
        by_hand = 2 * np.mean(np.abs(sr[4:-4, 4:-4].astype(np.float64) - hr[4:-4, 4:-4])) / 255  # [-1, 1] scale
        assert rows[name] == pytest.approx(by_hand, rel=1e-5)
    shape, low, high, normalize = nets[0].calls[0]  # astronaut, first in name order
    assert shape == (1, 3, 504, 504) and 0 <= low < high <= 1 and normalize
    assert list(report["mean"]) == ["lpips"]
    assert report["mean"]["lpips"] == pytest.approx(np.mean(list(rows.values())), abs=1e-12)


def test_an_image_too_small_to_score_is_skipped_and_the_rest_evaluated(tmp_path):
    """A 16 px HR is 8 px after the x4 border crop, under SSIM's 11 x 11 window: it used to
    abort the whole run with no file named."""
    hr = data.astronaut()[:120, :120]
    write_image(tmp_path / "a_big.png", hr)
    write_image(tmp_path / "b_thumb.png", hr[:16, :16])
    with pytest.warns(UserWarning, match="b_thumb.png"):
        report = evaluate_folder(tmp_path, scale=4, progress=False)
    assert [r["name"] for r in report["images"]] == ["a_big.png"]
    assert report["skipped"] == [
        {"name": "b_thumb.png", "reason": "SSIM needs at least 11x11 pixels after cropping, got (8, 8)"}
    ]
    sr = upscale_classical(imresize(hr, 1 / 4), 4, "bicubic")
    expected = peak_signal_noise_ratio(rgb2ycbcr(hr)[4:-4, 4:-4, 0], rgb2ycbcr(sr)[4:-4, 4:-4, 0], data_range=255)
    assert report["images"][0]["psnr_y"] == pytest.approx(expected, abs=1e-6)


def test_cli_prints_why_each_image_was_skipped_when_none_is_usable(tmp_path, capsys):
    write_image(tmp_path / "hr" / "a.png", data.astronaut()[:64, :64])
    write_image(tmp_path / "lr" / "a.png", data.astronaut()[:10, :10])  # not 64 / 4
    assert main(["evaluate", "--hr", str(tmp_path / "hr"), "--lr", str(tmp_path / "lr")]) == 2
    err = capsys.readouterr().err
    assert "warning: skipped 1 of 1 images: a.png (LR a.png is (10, 10, 3), expected (16, 16, 3)" in err
    assert "error: no usable image pair" in err


def test_cli_json_is_strict_json_with_null_for_an_infinite_psnr(tmp_path, capsys):
    """At --scale 1 bicubic reproduces the HR exactly: PSNR is inf, which json.dumps wrote as
    the non-standard `Infinity`."""
    write_image(tmp_path / "hr" / "a.png", data.astronaut()[:64, :64])
    out = tmp_path / "r.json"
    assert main(["evaluate", "--hr", str(tmp_path / "hr"), "--scale", "1", "--json", str(out)]) == 0
    strict = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert strict["images"][0]["psnr_y"] is None and strict["mean"]["psnr_y"] is None
    assert strict["images"][0]["ssim_y"] == pytest.approx(1.0)
