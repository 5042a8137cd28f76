import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import benchmark_dir
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from srlab.cli import main
from srlab.evaluate import evaluate_folder, upscale_classical
from srlab.images import write_image
from srlab.resize import imresize

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
        "bicubic": {"psnr_y": 28.4251, "ssim_y": 0.81036, "lpips": 0.34},
        "SRGAN": {"psnr_y": 26.0, "ssim_y": 0.7, "lpips": 0.12},
        "twin": {"psnr_y": 28.4249, "ssim_y": 0.5},
    }  # equal to bicubic at 2 decimals; no LPIPS
    table = _parse_markdown(metrics_table(rows, ("psnr_y", "ssim_y", "lpips"), label="x4 method"))
    assert table[0] == ["x4 method", "PSNR-Y (dB)", "SSIM-Y", "LPIPS"]
    assert table[1] == ["bicubic", "**28.43**", "**0.8104**", "0.340"]
    assert table[2] == ["SRGAN", "26.00", "0.7000", "**0.120**"]  # LPIPS: lower is better
    assert table[3] == ["twin", "28.42", "0.5000", "–"]  # 28.4249 prints 28.42, not the best 28.43


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
