import json

import pytest
import torch

from srlab.bench import MODES, _stage_config, main
from srlab.train import choose_precision


def test_bench_train_reports_every_mode_consistently(tmp_path):
    out = tmp_path / "train.json"
    assert (
        main(
            [
                "train",
                "--preset",
                "smoke",
                "--stages",
                "srresnet",
                "esrgan",
                "--batch-size",
                "2",
                "--hr-size",
                "32",
                "--warmup",
                "0",
                "--steps",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"srresnet", "esrgan"}
    for modes in report["results"].values():
        assert set(modes) == set(MODES)
        for r in modes.values():
            assert r["samples_per_s"] == pytest.approx(2 * r["steps_per_s"])
            assert r["steps_per_s"] == pytest.approx(1 / r["s_per_step"])
        assert modes["fp32"]["dtype"] == "fp32" and modes["bf16+channels_last"]["dtype"] == "bfloat16"
        # "amp" is what amp="auto" picks: bf16 on a CPU with AMX, fp32 without (SRLAB_CPU_AMX forces either)
        auto = choose_precision(torch.device(modes["amp+channels_last"]["device"]), "auto").dtype
        assert modes["amp+channels_last"]["dtype"] == ("bfloat16" if auto == torch.bfloat16 else "fp32")
    assert report["results"]["esrgan"]["fp32"]["hr_size"] == 128  # ESRGAN's D takes 128 or 256 only


def test_bench_stage_config_matches_discriminator_to_patch_size():
    cfg = _stage_config("srgan", "cpu", batch_size=4, hr_size=64, amp="off", channels_last=False)
    assert cfg.hr_size == cfg.discriminator["input_size"] == 64 and cfg.vgg_weights is None


def test_bench_data_reports_both_loaders_and_their_ratio(tmp_path):
    import numpy as np

    from srlab.images import write_image

    rng = np.random.default_rng(0)
    for k in range(2):
        write_image(tmp_path / "hr" / f"{k}.png", rng.integers(0, 256, (500, 520, 3), dtype=np.uint8))
    out = tmp_path / "data.json"
    assert (
        main(
            [
                "data",
                "--hr",
                str(tmp_path / "hr"),
                "--sizes",
                "32",
                "--batches",
                "2",
                "--naive-batches",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    fast, naive = report["patches_per_s"]["32"], report["naive_patches_per_s"]["32"]
    assert fast > 0 and naive > 0 and report["speedup"]["32"] == pytest.approx(fast / naive)


def test_bench_infer_reports_time_per_megapixel_and_peak_memory(tmp_path):
    out = tmp_path / "infer.json"
    assert (
        main(
            [
                "infer",
                "--model",
                "srresnet",
                "--blocks",
                "1",
                "--sizes",
                "96",
                "128",
                "--tile",
                "16",
                "--overlap",
                "4",
                "--device",
                "cpu",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    for size in (96, 128):
        row = report["results"][str(size)]
        for mode in ("untiled", "tiled"):
            r = row[mode]
            megapixels = (4 * size) ** 2 / 1e6  # x4 output of a size x size input
            assert r["s_per_output_mp"] == pytest.approx(r["seconds"] / megapixels)
            assert r["peak_mib"] >= 0
        assert row["time_ratio"] == pytest.approx(row["tiled"]["seconds"] / row["untiled"]["seconds"])
        # 64 feature maps of 512 x 512 floats (64 MiB) untiled, against 96 x 96 ones per tile
        assert row["untiled"]["peak_mib"] > 32 > row["tiled"]["peak_mib"]
    growth = report["peak_growth"]["untiled"]
    assert growth == pytest.approx(
        report["results"]["128"]["untiled"]["peak_mib"] / report["results"]["96"]["untiled"]["peak_mib"]
    )


# ---------------------------------------------------------------- perception


@pytest.fixture
def small_test_set(tmp_path):
    """Two 200 px crops of embedded photos (2x2 NIQE blocks after the x4 border): a stand-in Set14."""
    from skimage import data

    from srlab.images import write_image

    folder = tmp_path / "Tiny" / "HR"
    write_image(folder / "astronaut.png", data.astronaut()[40:240, 100:300])
    write_image(folder / "chelsea.png", data.chelsea()[50:250, 100:300])
    return folder


def test_bench_perception_trains_scores_and_reuses_its_runs(tmp_path, small_test_set, capsys):
    import numpy as np
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio

    from srlab.images import read_image
    from srlab.metrics import niqe
    from srlab.resize import imresize

    out, runs = tmp_path / "perception.json", tmp_path / "runs"
    args = ["perception", "--preset", "smoke", "--out", str(runs), "--hr", str(small_test_set), "--json", str(out)]
    assert main([*args, "--figure", str(tmp_path / "crops.png"), "--figure-image", "astronaut"]) == 0
    report = json.loads(out.read_text())["Tiny"]
    trained = {"SRResNet", "SRGAN", "RRDB", "ESRGAN"}
    assert trained | {"bicubic", "HR"} <= set(report) and report["HR"].keys() == {"niqe"}
    for name in set(report) - {"HR"}:
        assert report[name].keys() == {"psnr_y", "ssim_y", "niqe"}
    # bicubic by an independent route: scikit-image's Y and PSNR, the x4 border cropped
    hrs = [read_image(p) for p in sorted(small_test_set.glob("*.png"))]
    y = lambda img: rgb2ycbcr(img)[4:-4, 4:-4, 0]  # noqa: E731
    psnrs = [peak_signal_noise_ratio(y(hr), y(imresize(imresize(hr, 1 / 4), 4)), data_range=255) for hr in hrs]
    assert report["bicubic"]["psnr_y"] == pytest.approx(np.mean(psnrs), abs=0.02)  # skimage's Y is not rounded
    assert report["HR"]["niqe"] == pytest.approx(np.mean([niqe(hr, crop_border=4) for hr in hrs]), abs=1e-9)
    # the GAN stages were trained offline: feature matching, no VGG
    config = torch.load(runs / "esrgan" / "last.pt", weights_only=False)["config"]
    assert config["perceptual"] == "discriminator"
    assert (tmp_path / "crops.png").stat().st_size > 10_000
    # a second call reuses the finished runs (no step trained again)
    stamp = (runs / "srgan" / "last.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert (runs / "srgan" / "last.pt").stat().st_mtime_ns == stamp
    assert json.loads(out.read_text())["Tiny"] == report


def test_perception_targets_by_hand():
    from srlab.bench import perception_targets

    results = {
        "Set14": {
            "SRResNet": {"psnr_y": 27.0, "niqe": 7.0},
            "SRGAN": {"psnr_y": 25.5, "niqe": 5.9},  # NIQE -1.1, PSNR -1.5: met
            "RRDB": {"psnr_y": 27.2, "niqe": 7.0},
            "ESRGAN": {"psnr_y": 24.9, "niqe": 5.0},  # NIQE -2.0 but PSNR -2.3: not met
        }
    }
    rows = {r["gan"]: r for r in perception_targets(results)}
    assert rows["SRGAN"]["niqe_drop"] == pytest.approx(1.1) and rows["SRGAN"]["psnr_drop"] == pytest.approx(1.5)
    assert rows["SRGAN"]["met"] and not rows["ESRGAN"]["met"]
    assert rows["ESRGAN"]["pixel"] == "RRDB"


def test_bench_store_reports_the_store_against_the_old_layout(tmp_path, capsys):
    out = tmp_path / "store.json"
    assert main(["store", "--images", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    pixels = 1356 * 2040  # one stand-in DIV2K image
    # sub-images of 480 px at stride 240, by hand: tops 0 240 480 720 876, lefts 0 240 ... 1440 1560
    assert (report["images"], report["sub_images"]) == (1, 5 * 8)
    assert 0 < report["store_bytes"] - pixels * 3 < 20_000  # the pixels once, plus the npy header and JSON
    assert report["bytes_per_pixel"] == pytest.approx(3, abs=0.01)
    assert report["old_layout_bytes"] == 40 * 480 * 480 * 3
    assert report["div2k_estimate"]["megapixels"] == pytest.approx(800 * pixels / 1e6)
    assert report["div2k_estimate"]["store_bytes"] == pytest.approx(800 * report["store_bytes"])
    assert report["div2k_estimate"]["old_layout_bytes"] == pytest.approx(800 * 40 * 480 * 480 * 3)
    assert report["div2k_estimate"]["seconds"] == pytest.approx(
        report["start_seconds"] + 800 * report["seconds_per_image"]
    )
    assert report["start_seconds"] + report["seconds_per_image"] == pytest.approx(report["seconds"])
    assert "estimated as 800 x the stand-in's mean" in capsys.readouterr().out
