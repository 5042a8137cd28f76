"""srlab.plan: FLOPs per training step against a hand count, minutes per stage, the Colab sizing."""

import json
from unittest import mock

import pytest
import torch

from srlab import bench
from srlab.plan import GPUS, SESSION_MINUTES, UTILIZATION, checkpoint_bytes, plan, stage_minutes, step_flops
from srlab.presets import make_config
from srlab.train import Trainer, choose_precision


def conv_flops(c_in: int, c_out: int, k: int, pixels: int) -> int:
    return 2 * c_in * c_out * k * k * pixels  # one multiply and one add per weight per output pixel


def test_a_pixel_step_of_srresnet_counts_what_a_hand_count_gives():
    """The paper's SRResNet (16 blocks, 64 channels, x4) on LR 8x8 patches, batch 2: forward = the
    convolutions layer by layer; backward = a weight gradient for every conv and an input gradient
    for every conv but the first (the LR batch needs none): 3 x forward - the head conv."""
    cfg = make_config("srresnet", "colab", batch_size=2, hr_size=32)
    n = 2 * 8 * 8  # LR pixels in the batch
    head = conv_flops(3, 64, 9, n)
    forward = (
        head
        + 16 * 2 * conv_flops(64, 64, 3, n)  # the residual blocks
        + conv_flops(64, 64, 3, n)  # conv_body
        + conv_flops(64, 256, 3, n)  # upsampling x2, at LR size
        + conv_flops(64, 256, 3, 4 * n)  # upsampling x2, at 2x
        + conv_flops(64, 3, 9, 16 * n)  # conv_tail at HR size
    )
    assert step_flops(cfg) == 3 * forward - head


def test_minutes_are_steps_times_flops_over_the_gpus_attained_rate():
    # 10^4 steps of 10^12 FLOPs = 10^16 FLOPs; a T4 at 65 TFLOPS x 0.2 = 1.3e13 FLOP/s: 769.2 s
    assert stage_minutes(1e12, 10_000, "t4", utilization=0.2) == pytest.approx(1e16 / 1.3e13 / 60)
    assert stage_minutes(1e12, 10_000, "a100", utilization=0.2) == pytest.approx(1e16 / (312e12 * 0.2) / 60)


@pytest.mark.parametrize("gpu", sorted(GPUS))
def test_each_gpus_precision_is_what_training_picks_there(gpu):
    """The plan's precision for a GPU is choose_precision's on that GPU (its capability simulated)."""
    spec = GPUS[gpu]
    with (
        mock.patch("torch.cuda.get_device_capability", return_value=spec.capability),
        mock.patch("torch.cuda.get_device_name", return_value=spec.name),
    ):
        picked = choose_precision(torch.device("cuda"), "auto").dtype
    assert {torch.float16: "fp16", torch.bfloat16: "bf16", None: "fp32"}[picked] == spec.precision


def test_the_colab_preset_fits_free_sessions_on_a_t4():
    """The issue's sizing: 03 (srresnet) and 04 (srgan + its collapse demo, 3000 steps of the same
    config) each within one 50-minute budget on a T4; 05 (rrdb, then esrgan) within two."""
    rows = {r["stage"]: r for r in plan(("colab",), "t4")}
    srgan_per_step = rows["srgan"]["minutes"] / rows["srgan"]["steps"]
    assert rows["srresnet"]["minutes"] <= SESSION_MINUTES
    assert rows["srgan"]["minutes"] + 3000 * srgan_per_step <= SESSION_MINUTES
    assert rows["rrdb"]["minutes"] <= SESSION_MINUTES and rows["esrgan"]["minutes"] <= SESSION_MINUTES


def test_bench_plan_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert bench.main(["plan", "--presets", "smoke", "--gpu", "l4", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["gpu"], report["precision"], report["utilization"]) == ("l4", "bf16", UTILIZATION)
    first = report["stages"][0]
    cfg = make_config(first["stage"], "smoke")
    assert first["steps"] == cfg.steps and first["gflops_per_step"] == pytest.approx(step_flops(cfg) / 1e9)
    assert "L4 (l4), bf16: 121 TFLOPS peak" in capsys.readouterr().out


def test_bench_plan_refuses_a_utilization_outside_0_1():
    with pytest.raises(SystemExit, match="--utilization 1.5"):
        bench.main(["plan", "--presets", "smoke", "--utilization", "1.5"])


def test_the_checkpoint_size_estimate_matches_a_saved_last_pt(tmp_path):
    """After one step (Adam's moments exist), a smoke ESRGAN last.pt weighs what checkpoint_bytes says,
    within the few kB of random states and config the estimate leaves out."""
    cfg = make_config("esrgan", "smoke", amp="off")
    trainer = Trainer(cfg, tmp_path, progress=False)
    trainer.train_step(*trainer.patches.batch(0))
    size = trainer.save("last.pt").stat().st_size
    assert checkpoint_bytes(cfg) == pytest.approx(size, rel=0.05)
    assert checkpoint_bytes(make_config("esrgan", "colab")) == pytest.approx(440e6, rel=0.02)  # the 440 MB


def test_a_wgan_gp_step_is_refused_with_the_reason_not_a_torch_error():
    cfg = make_config("srgan", "smoke", adversarial="wgan-gp")
    with pytest.raises(ValueError, match="step_flops cannot count a wgan-gp step"):
        step_flops(cfg)
