"""`python -m srlab.bench pipeline`: the data side's batches/s against the rates T4 and A100 consume."""

import json

import pytest

from srlab.bench import PIPELINE_TARGETS, consumer_rates, main
from srlab.plan import GPUS, UTILIZATION, step_flops
from srlab.presets import make_config


def test_consumer_rates_are_the_flop_count_at_the_gpus_peak():
    rates = consumer_rates(96)
    flops = step_flops(make_config("srresnet", "colab", hr_size=96, batch_size=16))
    assert rates["srresnet"]["a100"] == pytest.approx(312e12 * UTILIZATION / flops)
    assert rates["rrdb"]["t4"] / rates["rrdb"]["a100"] == pytest.approx(65 / 312)
    # A fully convolutional step costs in proportion to the pixels: twice the side, a quarter the rate.
    assert consumer_rates(192)["srresnet"]["t4"] == pytest.approx(rates["srresnet"]["t4"] / 4, rel=0.01)
    assert GPUS["a100"].peak_tflops == 312 and GPUS["t4"].peak_tflops == 65  # the datasheets'


def test_pipeline_writes_every_row_with_its_verdict(tmp_path):
    out = tmp_path / "pipeline.json"
    assert main(["pipeline", "--sizes", "32", "--batches", "2", "--wait-steps", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {(r["degradation"], r["where"]): r for r in result["rows"]}
    assert set(rows) == {(d, w) for d in ("bicubic", "realesrgan") for w in ("data", "device")}
    for (degradation, where), row in rows.items():
        gpu, factor = PIPELINE_TARGETS[degradation]
        strictest = max(row["needs"][stage][gpu] for stage in row["needs"])
        assert row["target"] == {"gpu": gpu, "factor": factor, "steps_per_s": pytest.approx(strictest)}
        assert row["meets_target"] == (row["batches_per_s"] >= factor * strictest) and row["batches_per_s"] > 0
        assert ("degrade_ms_on_this_cpu" in row) == (where == "device")
    waits = {(r["degradation"], r["workers"]) for r in result["data_wait"]}
    assert waits == {(d, w) for d in ("bicubic", "realesrgan") for w in (0, 2)}
    assert all(0 <= r["data_wait"] < 1 for r in result["data_wait"])
