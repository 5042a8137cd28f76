"""Mixed precision by device, every branch on simulated hardware: no GPU needed.

The GPUs are simulated by patching the queries srlab makes (compute capability, name); the
bf16 query answers True everywhere, as PyTorch's does on a T4 through emulation, so a choice
that trusted it would pick bf16 on 7.x and fail here. The CPUs by patching the AMX query.
"""

import types
import warnings

import numpy as np
import pytest
import torch

from srlab.cli import main
from srlab.images import read_image, write_image
from srlab.infer import half_dtype, inference_precision, upscale
from srlab.models import RRDBNet
from srlab.presets import make_config
from srlab.train import Trainer, choose_precision, cpu_has_amx, pick_amp

CUDA = torch.device("cuda")
CPU = torch.device("cpu")

# (name, compute capability): the public figures of each card
T4, V100, A100, L4, H100, GTX1080 = (
    ("Tesla T4", (7, 5)),
    ("Tesla V100-SXM2-16GB", (7, 0)),
    ("NVIDIA A100-SXM4-40GB", (8, 0)),
    ("NVIDIA L4", (8, 9)),
    ("NVIDIA H100 80GB HBM3", (9, 0)),
    ("NVIDIA GeForce GTX 1080", (6, 1)),
)


def simulate_gpu(monkeypatch, gpu):
    name, capability = gpu
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def simulate_cpu(monkeypatch, amx: bool):
    monkeypatch.delenv("SRLAB_CPU_AMX", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize(
    "gpu, dtype, scaler",
    [
        (T4, torch.float16, True),  # bf16 "supported" through emulation only
        (V100, torch.float16, True),
        (A100, torch.bfloat16, False),
        (L4, torch.bfloat16, False),
        (H100, torch.bfloat16, False),
        (GTX1080, None, False),  # no tensor cores
    ],
    ids=["T4", "V100", "A100", "L4", "H100", "GTX1080"],
)
def test_auto_follows_the_compute_capability_not_the_bf16_query(monkeypatch, gpu, dtype, scaler):
    simulate_gpu(monkeypatch, gpu)
    choice = choose_precision(CUDA, "auto")
    assert (choice.dtype, choice.grad_scaler) == (dtype, scaler)
    assert pick_amp(CUDA, "auto") == (dtype, scaler)  # the old contract, without the reason
    name, (major, minor) = gpu
    assert f"compute capability {major}.{minor}" in choice.reason and name in choice.reason
    words = {torch.float16: "fp16 + GradScaler", torch.bfloat16: "bf16", None: "fp32"}[dtype]
    assert choice.reason.startswith(words + ":")


def test_explicit_bf16_below_8_is_kept_but_warned_as_emulated(monkeypatch):
    simulate_gpu(monkeypatch, T4)
    with pytest.warns(UserWarning, match="emulated"):
        assert pick_amp(CUDA, "bf16") == (torch.bfloat16, False)
    simulate_gpu(monkeypatch, A100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native: no warning
        assert pick_amp(CUDA, "bf16") == (torch.bfloat16, False)


def test_explicit_fp16_on_a_gpu_gets_a_scaler_and_off_is_fp32_everywhere(monkeypatch):
    simulate_gpu(monkeypatch, A100)
    assert pick_amp(CUDA, "fp16") == (torch.float16, True)
    for gpu in (T4, A100, GTX1080):
        simulate_gpu(monkeypatch, gpu)
        assert pick_amp(CUDA, "off") == (None, False)
    simulate_cpu(monkeypatch, amx=True)
    assert pick_amp(CPU, "off") == (None, False)


def test_cpu_bf16_only_with_amx(monkeypatch):
    simulate_cpu(monkeypatch, amx=True)
    choice = choose_precision(CPU, "auto")
    assert (choice.dtype, choice.grad_scaler) == (torch.bfloat16, False) and "with AMX" in choice.reason
    simulate_cpu(monkeypatch, amx=False)
    choice = choose_precision(CPU, "auto")
    assert (choice.dtype, choice.grad_scaler) == (None, False) and "without AMX" in choice.reason
    assert pick_amp(CPU, "bf16") == (torch.bfloat16, False)  # asked for: kept
    with pytest.raises(ValueError, match="CUDA"):
        pick_amp(CPU, "fp16")
    with pytest.raises(ValueError, match="unknown amp"):
        pick_amp(CPU, "fp8")


@pytest.mark.parametrize("detected", [True, False])
def test_the_environment_switch_overrides_the_amx_query(monkeypatch, detected):
    simulate_cpu(monkeypatch, amx=detected)
    monkeypatch.setenv("SRLAB_CPU_AMX", "0")
    assert cpu_has_amx() == (False, "SRLAB_CPU_AMX=0")
    choice = choose_precision(CPU, "auto")
    assert choice.dtype is None and "SRLAB_CPU_AMX=0" in choice.reason
    monkeypatch.setenv("SRLAB_CPU_AMX", "1")
    assert choose_precision(CPU, "auto").dtype == torch.bfloat16
    monkeypatch.setenv("SRLAB_CPU_AMX", "yes")
    with pytest.raises(ValueError, match="SRLAB_CPU_AMX"):
        choose_precision(CPU, "auto")


@pytest.mark.parametrize("amx", ["0", "1"])
def test_trainer_uses_and_prints_the_choice(monkeypatch, tmp_path, capsys, amx):
    monkeypatch.setenv("SRLAB_CPU_AMX", amx)
    trainer = Trainer(make_config("srresnet", "smoke", init_from="none"), tmp_path, device="cpu", progress=False)
    out = capsys.readouterr().out
    if amx == "1":
        assert trainer.amp_dtype == torch.bfloat16 and "precision: bf16: CPU with AMX tiles" in out
    else:
        assert trainer.amp_dtype is None and "precision: fp32: CPU without AMX (SRLAB_CPU_AMX=0)" in out
    assert not trainer.scaler.is_enabled()
    assert out.count("precision:") == 1


class FakeHostTensor:
    """Records how Trainer.to_device moves it (a real pinned tensor needs a GPU)."""

    device, dtype = CPU, torch.float32

    def __init__(self, pinned=False):
        self.pinned, self.calls = pinned, []

    def is_pinned(self):
        return self.pinned

    def pin_memory(self):
        self.calls.append("pin_memory")
        return FakeHostTensor(pinned=True)

    def to(self, device, memory_format, non_blocking):
        self.calls.append(("to", device.type, memory_format, non_blocking))
        return self


def test_batches_for_cuda_are_pinned_then_copied_without_blocking():
    trainer = types.SimpleNamespace(device=CUDA, memory_format=torch.channels_last)
    batch = FakeHostTensor()
    moved = Trainer.to_device(trainer, batch)
    assert batch.calls == ["pin_memory"]  # pinned first ...
    assert moved.calls == [("to", "cuda", torch.channels_last, True)]  # ... then copied from the pinned one
    already = FakeHostTensor(pinned=True)
    Trainer.to_device(trainer, already)
    assert already.calls == [("to", "cuda", torch.channels_last, True)]  # no second pinning
    on_cpu = FakeHostTensor()
    Trainer.to_device(types.SimpleNamespace(device=CPU, memory_format=torch.contiguous_format), on_cpu)
    assert on_cpu.calls == [("to", "cpu", torch.contiguous_format, True)]  # nothing to pin for


def test_trainer_to_device_on_the_cpu_keeps_the_values():
    trainer = types.SimpleNamespace(device=CPU, memory_format=torch.channels_last)
    x = torch.arange(24.0).reshape(1, 2, 3, 4)
    y = Trainer.to_device(trainer, x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, x)
    levels = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).reshape(1, 1, 2, 2)  # an HR-only batch
    assert torch.equal(Trainer.to_device(trainer, levels), levels.float() / 255)


# ---------------------------------------------------------------- inference


@pytest.mark.parametrize(
    "gpu, dtype", [(T4, torch.float16), (V100, torch.float16), (A100, torch.float16), (GTX1080, None)]
)
def test_inference_auto_half_on_gpus(monkeypatch, gpu, dtype):
    simulate_gpu(monkeypatch, gpu)
    assert half_dtype(CUDA, None) == dtype
    assert half_dtype(CUDA, True) == torch.float16 and half_dtype(CUDA, False) is None  # explicit: as asked


def test_inference_auto_half_on_cpus(monkeypatch):
    simulate_cpu(monkeypatch, amx=True)
    assert half_dtype(CPU, None) == torch.bfloat16
    simulate_cpu(monkeypatch, amx=False)
    assert half_dtype(CPU, None) is None
    assert half_dtype(CPU, True) == torch.bfloat16


def test_upscale_auto_half_runs_bf16_only_where_amx_is(monkeypatch):
    torch.manual_seed(3)
    model = RRDBNet(num_feat=16, num_block=2).eval()
    image = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    fp32, bf16 = upscale(image, model, device="cpu"), upscale(image, model, device="cpu", half=True)
    assert not np.array_equal(fp32, bf16)  # else this test could not tell the two apart
    monkeypatch.setenv("SRLAB_CPU_AMX", "1")
    np.testing.assert_array_equal(upscale(image, model, device="cpu", half=None), bf16)
    monkeypatch.setenv("SRLAB_CPU_AMX", "0")
    np.testing.assert_array_equal(upscale(image, model, device="cpu", half=None), fp32)


@pytest.mark.parametrize(
    "gpu, said",
    [
        (T4, "fp16 (auto: Tesla T4 is compute capability 7.5; --fp32 runs fp32)"),
        (GTX1080, "fp32 (auto: NVIDIA GeForce GTX 1080 is compute capability 6.1; --half runs fp16)"),
    ],
)
def test_upscale_says_which_precision_and_why_on_gpus(monkeypatch, gpu, said):
    simulate_gpu(monkeypatch, gpu)
    assert inference_precision(CUDA, None)[1] == said
    assert inference_precision(CUDA, False) == (None, "fp32 (--fp32)")


def test_srlab_upscale_picks_bf16_on_amx_by_default_and_fp32_with_the_flag(monkeypatch, tmp_path, capsys):
    torch.manual_seed(4)
    model = RRDBNet(num_feat=16, num_block=2).eval()
    torch.save(model.state_dict(), tmp_path / "w.pth")
    image = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    write_image(tmp_path / "in" / "a.png", image)
    fp32, bf16 = upscale(image, model, device="cpu"), upscale(image, model, device="cpu", half=True)
    assert not np.array_equal(fp32, bf16)  # else this test could not tell the two apart

    def cli(amx: str, *flags) -> np.ndarray:
        monkeypatch.setenv("SRLAB_CPU_AMX", amx)
        out = tmp_path / f"out_{amx}_{'_'.join(flags)}"
        argv = [
            "upscale",
            str(tmp_path / "in"),
            "-o",
            str(out),
            "--weights",
            str(tmp_path / "w.pth"),
            "--device",
            "cpu",
        ]
        assert main(argv + list(flags)) == 0
        return read_image(out / "a.png")

    np.testing.assert_array_equal(cli("1"), bf16)
    assert "precision: bf16 (auto: a CPU with AMX tiles, SRLAB_CPU_AMX=1; --fp32 runs fp32)" in capsys.readouterr().out
    np.testing.assert_array_equal(cli("1", "--fp32"), fp32)
    assert "precision: fp32 (--fp32)" in capsys.readouterr().out
    np.testing.assert_array_equal(cli("0"), fp32)
    assert (
        "precision: fp32 (auto: a CPU without AMX tiles, SRLAB_CPU_AMX=0; --half runs bf16)" in capsys.readouterr().out
    )
    np.testing.assert_array_equal(cli("0", "--half"), bf16)
    with pytest.raises(SystemExit):
        main(["upscale", "a.png", "-o", "o", "--weights", "w.pth", "--half", "--fp32"])
