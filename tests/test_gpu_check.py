"""`python -m srlab.bench gpu-check` on this CPU at smoke sizes, and its GPU logic on simulated GPUs.

The check's claims are held against facts computed here independently: the FLOP count of
``srlab.plan`` over a peak x UTILIZATION worked out in the test, the models' parameter counts,
the precision rule's documented choices per compute capability, and failures injected on
purpose (a NaN loss, a resume that moves a weight), which must turn ``ok`` False and the exit
code non-zero. The GPUs are simulated as in tests/test_amp.py.
"""

import json
import math
import os
import urllib.error
import warnings

import pytest
import torch

import srlab.losses
import srlab.train
from srlab import bench, gpucheck
from srlab.checkpoint import generator_from_config
from srlab.plan import GPUS, UTILIZATION, step_flops
from srlab.presets import STAGES, make_config

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
T4, A100, H100, GTX1080 = (
    ("Tesla T4", (7, 5)),
    ("NVIDIA A100-SXM4-40GB", (8, 0)),
    ("NVIDIA H100 80GB HBM3", (9, 0)),
    ("NVIDIA GeForce GTX 1080", (6, 1)),
)
SMOKE = ["gpu-check", "--sizes", "smoke", "--device", "cpu", "--steps", "2", "--upscale-size", "32"]


def simulate_gpu(monkeypatch, gpu):
    name, capability = gpu
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def run_check(tmp_path, extra):
    """bench's exit code and the JSON it wrote."""
    out = tmp_path / "check.json"
    code = bench.main([*SMOKE, "--json", str(out), *extra])
    return code, json.loads(out.read_text())


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """SRResNet and SRGAN (a discriminator and its optimiser to resume too) with SRLAB_CPU_AMX=1: the
    rule then trains in bf16 on any CPU, so the mixed-precision path of the loop is the one run."""
    tmp = tmp_path_factory.mktemp("gpucheck")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SRLAB_CPU_AMX", "1")
        return run_check(tmp, ["--stages", "srresnet", "srgan"])


def test_smoke_run_passes_and_its_rows_hold_what_the_runs_did(smoke_run):
    code, result = smoke_run
    assert code == 0 and result["ok"] is True and result["failures"] == []
    assert (result["device_type"], result["capability"], result["torch"]) == ("cpu", None, torch.__version__)
    assert (result["degrade_on"], result["loader_workers"], result["vgg_weights"]) == ("device", 2, None)
    ran = [r for r in result["rows"] if "skipped" not in r]
    assert [(r["stage"], r["precision"]) for r in ran] == [("srresnet", "bf16"), ("srgan", "bf16")]
    for row in ran:
        cfg = make_config(row["stage"], "smoke")
        assert (row["batch_size"], row["hr_size"], row["generator"]) == (cfg.batch_size, cfg.hr_size, cfg.generator)
        assert row["trainer_precision"] == "bf16: amp='bf16' (CPU with AMX, SRLAB_CPU_AMX=1)"  # its own words
        assert row["grad_scaler"] is False  # bf16 needs no scaler: none was saved
        assert (row["steps"], row["paused_at"], row["finite"]) == (2, 1, True)
        assert row["resume_exact"] is True and row["max_abs_diff"] == 0.0
        assert row["timed_steps"] == 1 and row["timed_steps"] / row["steps_per_s"] < row["seconds"]


def test_skipped_precisions_say_why(smoke_run):
    _, result = smoke_run
    skipped = {(r["stage"], r["precision"]): r["skipped"] for r in result["rows"] if "skipped" in r}
    assert set(skipped) == {(s, p) for s in ("srresnet", "srgan") for p in ("fp16", "fp32")}
    assert "fp16 autocast is for CUDA" in skipped["srresnet", "fp16"]
    assert "never trains in fp32 here" in skipped["srresnet", "fp32"]


def test_assumed_rate_is_plans_flops_over_the_t4_peak_times_utilization(smoke_run):
    _, result = smoke_run
    assert result["plan"]["gpu"] == "t4" and result["plan"]["utilization"] == UTILIZATION
    for row in (r for r in result["rows"] if "skipped" not in r):
        flops = step_flops(make_config(row["stage"], "smoke", init_from=None))
        expected = 65e12 * 0.15 / flops  # the T4 datasheet's fp16 tensor peak, plan's 15%
        assert row["flops_per_step"] == flops
        assert row["assumed_steps_per_s"] == pytest.approx(expected, rel=1e-12)
        assert row["ratio"] == pytest.approx(row["steps_per_s"] / expected, rel=1e-12)


def test_upscale_rows_time_the_smoke_generators_at_4x(smoke_run):
    _, result = smoke_run
    for row in result["upscale"]:
        cfg = make_config({"rrdbnet": "rrdb", "srresnet": "srresnet"}[row["model"]], "smoke")
        assert row["parameters"] == sum(p.numel() for p in generator_from_config(cfg).parameters())
        assert (row["input"], row["output"], row["ok"]) == ([32, 32], [128, 128], True)
        assert 0 < row["seconds"] < 60


def test_a_nan_loss_fails_the_check_and_the_exit_code(tmp_path, monkeypatch):
    monkeypatch.setenv("SRLAB_CPU_AMX", "0")
    monkeypatch.setattr(srlab.losses, "pixel_loss", lambda sr, hr, kind="l1": (sr - hr).abs().mean() * math.nan)
    code, result = run_check(tmp_path, ["--stages", "srresnet"])
    (row,) = [r for r in result["rows"] if "skipped" not in r]
    assert code == 1 and result["ok"] is False and row["precision"] == "fp32"
    assert row["finite"] is False and row["error"].startswith("TrainingDiverged: loss became nan at step 1")
    assert any(f.startswith("srresnet fp32: a logged loss was not finite") for f in result["failures"])


def test_a_resume_that_moves_a_weight_fails_the_check(tmp_path, monkeypatch):
    monkeypatch.setenv("SRLAB_CPU_AMX", "0")
    restore = srlab.train.restore_training

    def perturbed(trainer, ckpt, source="the checkpoint"):
        restore(trainer, ckpt, source)
        next(trainer.generator.parameters()).data[0, 0, 0, 0] += 1e-3

    monkeypatch.setattr(srlab.train, "restore_training", perturbed)
    code, result = run_check(tmp_path, ["--stages", "srresnet"])
    (row,) = [r for r in result["rows"] if "skipped" not in r]
    assert code == 1 and result["ok"] is False and row["finite"] is True
    assert row["resume_exact"] is False and 5e-4 < row["max_abs_diff"] < 2e-3  # 1e-3, moved by one Adam step
    assert any("resume not exact" in f for f in result["failures"])


# ---------------------------------------------------------------- GPU logic, simulated


@pytest.mark.parametrize(
    "gpu, runs",
    [
        (T4, {"fp16": ("float16", True)}),  # bf16 only emulated on 7.5
        (A100, {"fp16": ("float16", True), "bf16": ("bfloat16", False)}),
        (H100, {"fp16": ("float16", True), "bf16": ("bfloat16", False)}),
        (GTX1080, {"fp32": ("float32", False)}),  # no tensor cores: the rule trains in fp32
    ],
    ids=["T4", "A100", "H100", "GTX1080"],
)
def test_precisions_on_simulated_gpus_follow_the_rule(monkeypatch, gpu, runs):
    simulate_gpu(monkeypatch, gpu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no emulated bf16 asked for: choose_precision would warn
        entries = {e["precision"]: e for e in gpucheck.precision_plan(CUDA)}
    assert {p for p, e in entries.items() if e["run"]} == set(runs)
    for name, (dtype, scaler) in runs.items():
        assert (entries[name]["dtype"], entries[name]["grad_scaler"]) == (dtype, scaler)
        cfg = gpucheck.stage_config("esrgan", "real", name, 40, None)
        assert cfg.amp == {"fp16": "fp16", "bf16": "bf16", "fp32": "off"}[name]
    if gpu == T4:
        assert "emulated below compute capability 8.0 (this is 7.5)" in entries["bf16"]["reason"]


def test_fp32_on_a_gpu_runs_only_when_asked(monkeypatch):
    simulate_gpu(monkeypatch, H100)
    entries = {e["precision"]: e for e in gpucheck.precision_plan(CUDA, ["fp32", "bf16"])}
    assert entries["fp32"]["run"] and entries["bf16"]["run"] and "fp16" not in entries


@pytest.mark.parametrize("stage", STAGES)
def test_real_sizes_are_the_colab_models_with_device_degradation_and_workers(stage, monkeypatch):
    monkeypatch.delenv("SRLAB_SIZES", raising=False)
    colab = make_config(stage, "colab")
    monkeypatch.setenv("SRLAB_SIZES", "smoke")  # a simulation's tiny models must not become the "real" ones
    cfg = gpucheck.stage_config(stage, "real", "bf16", 40, None)
    assert cfg.generator["num_block"] == (23 if stage in ("rrdb", "esrgan") else 16)  # the papers' depths
    assert os.environ["SRLAB_SIZES"] == "smoke"  # put back
    same = ("generator", "discriminator", "batch_size", "hr_size", "scale", "pixel_loss", "perceptual_layer")
    assert all(getattr(cfg, k) == getattr(colab, k) for k in same)
    assert (cfg.steps, cfg.log_every, cfg.degrade_on, cfg.loader_workers) == (40, 10, "device", 2)
    assert (cfg.vgg_weights, cfg.init_from, cfg.amp) == (None, None, "bf16")


@pytest.mark.parametrize(
    "name, key, peak",
    [
        ("Tesla T4", "t4", GPUS["t4"].peak_tflops),
        ("NVIDIA L4", "l4", GPUS["l4"].peak_tflops),
        ("NVIDIA A100-SXM4-40GB", "a100", GPUS["a100"].peak_tflops),
        ("NVIDIA H100 80GB HBM3", "h100", 989.0),
        ("NVIDIA H100 PCIe", "h100-pcie", 756.0),
        ("NVIDIA H200", "h200", 989.0),
        ("Quadro P5000", None, None),
    ],
)
def test_the_assumed_peak_is_matched_from_the_device_name(monkeypatch, name, key, peak):
    simulate_gpu(monkeypatch, (name, (8, 0)))
    spec = gpucheck.plan_peak(CUDA)
    assert (spec["gpu"], spec["peak_tflops"]) == (key, peak)
    flops = 2.0e12
    expected = None if peak is None else peak * 1e12 * UTILIZATION / flops
    assert gpucheck.assumed_steps_per_s(flops, spec) == expected


def test_without_a_network_the_real_sizes_use_a_random_vgg_and_say_why(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    weights, note = gpucheck.vgg_weights("real")
    assert weights is None and "random VGG-19" in note and "Could not load the ImageNet VGG-19" in note
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: {})
    assert gpucheck.vgg_weights("real")[0] == "imagenet"


def test_deterministic_sets_and_restores_the_flags_and_lists_nondeterministic_ops():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
    with gpucheck.deterministic(CUDA) as ops:  # only torch's global flags: no GPU needed
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic
        warnings.warn(
            "scatter_add_cuda_kernel does not have a deterministic implementation, but you set ...", stacklevel=1
        )
    assert ops == ["scatter_add_cuda_kernel does not have a deterministic implementation, but you set ..."]
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic) == before


def test_history_checks_read_nan_and_time_windows(tmp_path):
    lines = [
        {"step": 1, "time": 2.0, "loss_g": 0.5},
        {"step": 2, "val_psnr": 30.0},
        {"step": 4, "time": 3.5, "loss_g": 0.25},
    ]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert gpucheck.history_finite(tmp_path) and gpucheck.measured_rate(tmp_path) == (2.0, 3)
    lines.append({"step": 5, "time": 4.0, "loss_g": 0.1, "loss_d": math.nan})
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert not gpucheck.history_finite(tmp_path)


def test_max_abs_diff_sees_values_shapes_and_structure():
    a = {"w": torch.zeros(2, 3), "opt": {"state": {0: {"step": torch.tensor(3.0)}}}, "step": 4}
    assert gpucheck.max_abs_diff(a, a) == 0.0
    b = {"w": torch.tensor([[0.0, 0.0, 0.25], [0.0, 0.0, 0.0]]), "opt": a["opt"], "step": 4}
    assert gpucheck.max_abs_diff(a, b) == 0.25
    assert gpucheck.max_abs_diff(a, {**a, "w": torch.zeros(3, 2)}) == math.inf
    assert gpucheck.max_abs_diff(a, {**a, "step": 5}) == 1.0
    assert math.isnan(gpucheck.max_abs_diff(a, {**a, "w": torch.full((2, 3), math.nan)}))
