import json

import pytest

from srlab.bench import MODES, _stage_config, main


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
        assert modes["fp32"]["dtype"] == "fp32"
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
