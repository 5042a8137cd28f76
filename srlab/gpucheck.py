"""A short check of a lent GPU: ``python -m srlab.bench gpu-check --json OUT``.

A GPU is lent for minutes, so what has only been simulated on a CPU (``tests/test_amp.py``
patches the capability queries) gets checked in one run there, in under five minutes:

* every training stage of the ``colab`` preset at its real model sizes, for ``--steps`` steps,
  under each precision :func:`srlab.train.choose_precision` can pick on a GPU that this device
  runs natively (fp16 + GradScaler, as a T4 gets; bf16, as Ampere and later get), LR made on
  the device (``degrade_on="device"``) and batches built by 2 loader workers, as on Colab;
* that every logged loss stays finite (a NaN loss also stops the run: ``TrainingDiverged``);
* that resume is exact: ``steps`` steps straight against ``steps // 2``, a pause (``last.pt``),
  and a resume to ``steps`` must give the same weights and optimiser state, bit for bit. On a
  GPU these two runs use deterministic algorithms (:func:`deterministic`), since cuDNN's
  fastest kernels may sum in any order, and a first run with training's own settings is timed
  (on a CPU, whose kernels are deterministic anyway, the straight run is timed);
* steps per second against what ``python -m srlab.bench plan`` assumes (FLOPs per step over the
  peak x ``UTILIZATION``), so that the plan's 15% is measured once;
* ``upscale`` of a 512 px photo with the ``colab`` RRDBNet and SRResNet generators.

On a CPU, ``--sizes smoke`` runs the same checks with the ``smoke`` preset's tiny models
(``tests/test_gpu_check.py``). The result is a JSON dict whose ``ok`` is False when any check
failed; the table printed says the same in words.
"""

from __future__ import annotations

import contextlib
import gc
import io
import math
import os
import platform
import re
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path

import torch

from .checkpoint import generator_from_config
from .plan import GPUS, UTILIZATION, step_flops
from .presets import STAGES, make_config
from .train import TrainingDiverged, choose_precision, read_history, train

__all__ = ["PRECISIONS", "SIZES", "precision_plan", "stage_config", "plan_peak", "run_gpu_check", "check_table"]

PRECISIONS = {"fp16": "fp16", "bf16": "bf16", "fp32": "off"}  # name -> TrainConfig.amp
SIZES = {"real": "colab", "smoke": "smoke"}  # --sizes -> the preset whose models and batches are run
DEFAULT_STEPS = {"real": 40, "smoke": 4}
UPSCALE_SIZE = {"real": 512, "smoke": 64}  # px of the square photo upscaled
UPSCALE_MODELS = {"rrdbnet": "rrdb", "srresnet": "srresnet"}  # generator -> the stage whose config sizes it
LOADER_WORKERS = 2  # Colab's two cores
RESUME_TOLERANCE = 0.0  # max |straight - resumed|: bit-exact (the runs are deterministic, see `deterministic`)
CUBLAS_DETERMINISTIC = ":4096:8"  # CUBLAS_WORKSPACE_CONFIG that makes cuBLAS deterministic
# GPUs that srlab.plan.GPUS does not list: datasheet dense fp16/bf16 tensor-core peaks (half the sparse figures)
EXTRA_PEAKS = {
    "h100": (989.0, "NVIDIA H100 SXM datasheet: 1979 TFLOPS BF16/FP16 with sparsity, 989 dense"),
    "h100-pcie": (756.0, "NVIDIA H100 PCIe datasheet: 1513 TFLOPS BF16/FP16 with sparsity, 756 dense"),
    "h200": (989.0, "NVIDIA H200 SXM datasheet: 1979 TFLOPS BF16/FP16 with sparsity, 989 dense"),
}


# ---------------------------------------------------------------- which precisions run here


def precision_plan(device: torch.device, asked: list[str] | None = None) -> list[dict]:
    """One entry per precision: whether it runs on ``device`` and why (not), with the autocast
    dtype and GradScaler :func:`choose_precision` gives it. fp16 and bf16 run only where the
    hardware has them natively, as the rule's ``auto`` reasoning says (a T4's bf16 is emulated:
    timing it would time the emulation); fp32 runs where ``auto`` picks it, or when ``asked``."""
    entries = []
    for name in asked or list(PRECISIONS):
        if name not in PRECISIONS:
            raise ValueError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
        skip = _skip_reason(device, name, explicit=asked is not None)
        entry = {"precision": name, "amp": PRECISIONS[name], "run": skip is None}
        if skip is None:
            choice = choose_precision(device, PRECISIONS[name])
            dtype = str(choice.dtype).removeprefix("torch.") if choice.dtype else "float32"
            entry.update(dtype=dtype, grad_scaler=choice.grad_scaler, reason=choice.reason)
        else:
            entry["reason"] = skip
        entries.append(entry)
    return entries


def _skip_reason(device: torch.device, name: str, explicit: bool) -> str | None:
    """Why ``name`` does not run on ``device`` (None: it runs)."""
    auto = choose_precision(device, "auto")
    if name == "fp32":
        if auto.dtype is None or explicit:
            return None
        return f"the rule never trains in fp32 here ({auto.reason}); --precisions fp32 runs it anyway"
    if device.type != "cuda":
        if name == "fp16":
            return "fp16 autocast is for CUDA: choose_precision refuses amp='fp16' on a CPU"
        return None if auto.dtype == torch.bfloat16 else f"bf16 is not native here: {auto.reason}"
    major, minor = torch.cuda.get_device_capability(device)
    if name == "fp16" and major < 7:
        return f"compute capability {major}.{minor} has no tensor cores: {auto.reason}"
    if name == "bf16" and major < 8:
        return f"bf16 is emulated below compute capability 8.0 (this is {major}.{minor}): {auto.reason}"
    return None


# ---------------------------------------------------------------- what is run


def stage_config(stage: str, sizes: str, precision: str, steps: int, vgg_weights: str | None):
    """The config of one check run: ``sizes``'s preset (its models, batch and HR size unchanged),
    ``steps`` steps, LR made on the device by 2 loader workers' HR crops, from scratch (a GAN stage
    has no pretrained generator here: the same FLOPs), no validation or save before the end, and
    losses logged 4 times (the first window, with the loader's start and cuDNN's tuning, is not timed)."""
    return make_config(
        stage,
        SIZES[sizes],
        sizes=None,  # --sizes real is colab's real models, whatever $SRLAB_SIZES says
        steps=steps,
        amp=PRECISIONS[precision],
        degrade_on="device",
        loader_workers=LOADER_WORKERS,
        vgg_weights=vgg_weights,
        init_from=None,
        log_every=max(1, steps // 4),
        val_every=10**9,
        ckpt_every=10**9,
        wandb="disabled",
    )


def vgg_weights(sizes: str) -> tuple[str | None, str]:
    """("imagenet" or None, why). The smoke preset's random VGG stays; the real sizes use ImageNet's
    VGG-19 from the torch hub cache, downloaded when absent (a 15 s socket timeout), else a random VGG-19 of
    the same FLOPs: a lent GPU machine may reach no network, and the check times and checks the
    arithmetic, not the perceptual quality."""
    if make_config("srgan", SIZES[sizes], sizes=None).vgg_weights is None:
        return None, f"the {SIZES[sizes]} preset's random VGG-19 (vgg_weights=None)"
    from . import losses

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)  # a machine without a network may drop packets rather than refuse them
    try:
        losses._load_imagenet_vgg19_state()
    except RuntimeError as err:
        why = str(err).split(". ")[0]
        return None, f"vgg_weights=None (a random VGG-19, the same FLOPs): {why}"
    finally:
        socket.setdefaulttimeout(previous)
    return "imagenet", "ImageNet VGG-19 (torchvision IMAGENET1K_V1, from the torch hub cache)"


# ---------------------------------------------------------------- the assumed rate


def plan_peak(device: torch.device, gpu: str | None = None) -> dict:
    """The GPU ``bench plan`` would plan ``device`` as, and its peak: ``gpu`` (a key of
    ``srlab.plan.GPUS`` or :data:`EXTRA_PEAKS`), else matched from the device's name; a CPU is
    compared with plan's default GPU, the T4 (for the arithmetic only)."""
    if gpu is None and device.type != "cuda":
        gpu, note = "t4", "no GPU here: compared with plan's default GPU (t4), for the arithmetic only"
    elif gpu is None:
        gpu, note = _gpu_key(torch.cuda.get_device_name(device)), "matched from the device name"
    else:
        note = "--plan-gpu"
    if gpu in GPUS:
        spec = GPUS[gpu]
        return dict(gpu=gpu, name=spec.name, peak_tflops=spec.peak_tflops, source=spec.source, note=note)
    if gpu in EXTRA_PEAKS:
        peak, source = EXTRA_PEAKS[gpu]
        note += "; plan.GPUS has no such GPU: its formula with this datasheet peak"
        return dict(gpu=gpu, name=gpu.upper(), peak_tflops=peak, source=source, note=note)
    return dict(gpu=None, name=None, peak_tflops=None, source=None, note=f"{note}: no peak known for this GPU")


def _gpu_key(name: str) -> str | None:
    """The plan key of a CUDA device name ("NVIDIA H100 80GB HBM3" -> "h100"), or None."""
    lower = name.lower()
    for key, pattern in (("h200", r"h200"), ("h100", r"h100"), ("a100", r"a100"), ("l4", r"\bl4\b"), ("t4", r"\bt4\b")):
        if re.search(pattern, lower):
            return f"{key}-pcie" if key == "h100" and "pcie" in lower else key
    return None


def assumed_steps_per_s(flops: int, peak: dict) -> float | None:
    """Steps/s by ``bench plan``'s formula: peak x UTILIZATION / FLOPs per step."""
    if peak["peak_tflops"] is None:
        return None
    return peak["peak_tflops"] * 1e12 * UTILIZATION / flops


# ---------------------------------------------------------------- one stage x precision


@contextlib.contextmanager
def deterministic(device: torch.device):
    """Deterministic kernels for the resume comparison on a GPU: cuDNN's deterministic algorithms
    (its benchmark then picks among those) and ``torch.use_deterministic_algorithms(warn_only=True)``,
    whose warnings name any op without a deterministic form; yields that list. A CPU's kernels are
    already deterministic run to run: nothing is changed there."""
    ops: list[str] = []
    if device.type != "cuda":
        yield ops
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = torch.backends.cudnn.deterministic
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield ops
        ops.extend(sorted({str(w.message).split("\n")[0] for w in caught if "determinis" in str(w.message)}))
        for w in caught:
            if "determinis" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic = cudnn


def quiet_train(cfg, out_dir: Path, device: torch.device, **kwargs) -> tuple[dict, str]:
    """``srlab.train.train`` with its printing captured: (summary, what it printed)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        summary = train(cfg, out_dir, device=str(device), progress=False, **kwargs)
    return summary, buffer.getvalue()


def loss_records(run_dir: Path) -> list[dict]:
    return [r for r in read_history(run_dir / "history.jsonl") if any(k.startswith("loss") for k in r)]


def history_finite(run_dir: Path) -> bool:
    """Every number on every loss line of the run's history is finite (and there is a loss line)."""
    records = loss_records(run_dir)
    numbers = [v for r in records for v in r.values() if isinstance(v, (int, float))]
    return bool(records) and all(math.isfinite(v) for v in numbers)


def measured_rate(run_dir: Path) -> tuple[float | None, int]:
    """(steps/s, steps timed) from the history's loss lines, the first window left out: it holds the
    loader's start and cuDNN's tuning. Each line's time is taken after a device sync."""
    records = loss_records(run_dir)
    if len(records) < 2:
        return None, 0
    first, last = records[0], records[-1]
    steps = last["step"] - first["step"]
    return steps / (last["time"] - first["time"]), steps


COMPARED = ("generator", "generator_ema", "ema_n_averaged", "discriminator", "opt_g", "opt_d", "scaler", "step")


def max_abs_diff(a, b) -> float:
    """The largest |a - b| over nested dicts/lists of tensors and numbers; inf where they do not match
    in structure, shape or a non-number; nan where a value is nan."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return math.inf
        return max((max_abs_diff(a[k], b[k]) for k in a), default=0.0, key=_nan_first)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return math.inf
        return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0, key=_nan_first)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return math.inf
        if a.numel() == 0:
            return 0.0
        return (a.double() - b.double()).abs().max().item()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b))
    return 0.0 if a == b else math.inf


def _nan_first(x: float) -> float:
    return math.inf if math.isnan(x) else x


def resume_diff(straight: Path, cut: Path) -> float:
    """Max |difference| of the weights, EMA, optimiser and scaler states of two runs' ``last.pt``."""
    a, b = (torch.load(p / "last.pt", map_location="cpu", weights_only=True) for p in (straight, cut))
    return max_abs_diff({k: a[k] for k in COMPARED}, {k: b[k] for k in COMPARED})


def check_stage(cfg, precision: dict, device: torch.device, folder: Path) -> dict:
    """One stage x precision: straight and paused + resumed runs (deterministic on a GPU): finite
    losses, exact resume; steps/s from a run with training's own settings: on a GPU a separate
    first run, on a CPU the straight run (nothing is changed there). An error is recorded, not raised."""
    row = dict(stage=cfg.stage, precision=precision["precision"], steps=cfg.steps, resume_cut=cfg.steps // 2)
    row.update(batch_size=cfg.batch_size, hr_size=cfg.hr_size, generator=cfg.generator, finite=None)
    row.update(resume_exact=False, max_abs_diff=None, steps_per_s=None)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":
                _record_run(cfg, folder / "timed", *quiet_train(cfg, folder / "timed", device), row)
            _resume_runs(cfg, device, folder, row)
        row["warnings"] = sorted({str(w.message).split("\n")[0][:200] for w in caught})
    except TrainingDiverged as err:
        row.update(finite=False, error=f"TrainingDiverged: {str(err)[:300]}")
    except Exception as err:  # recorded: the other stages are still checked
        row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
    row["seconds"] = time.perf_counter() - start
    row["ok"] = row["finite"] is True and row["resume_exact"] is True and "error" not in row
    return row


def _record_run(cfg, run_dir: Path, summary: dict, printed: str, row: dict) -> None:
    """What the timed run says: the precision the trainer printed, whether a GradScaler's state was saved
    (only an enabled one has any), steps/s, the loop's time waiting for data, finite losses."""
    row["trainer_precision"] = _printed_precision(printed)
    last = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    row["grad_scaler"] = bool(last["scaler"])
    row["steps_per_s"], row["timed_steps"] = measured_rate(run_dir)
    row["data_wait"] = summary["data_wait"]
    row["finite"] = row["finite"] is not False and history_finite(run_dir) and summary["step"] == cfg.steps


def _resume_runs(cfg, device: torch.device, folder: Path, row: dict) -> None:
    straight, cut, half = folder / "straight", folder / "cut", cfg.steps // 2
    with deterministic(device) as ops:
        done = quiet_train(cfg, straight, device)
        quiet_train(cfg, cut, device, stop_at=half)
        paused = torch.load(cut / "last.pt", map_location="cpu", weights_only=True)["step"]
        quiet_train(cfg, cut, device, resume=True)
    if device.type == "cuda":
        row["nondeterministic_ops"] = ops
        row["steps_per_s_deterministic"] = measured_rate(straight)[0]
    else:
        _record_run(cfg, straight, *done, row)
    row["finite"] = row["finite"] is not False and history_finite(straight) and history_finite(cut)
    diff = resume_diff(straight, cut)
    row["paused_at"], row["max_abs_diff"] = paused, diff
    row["resume_exact"] = paused == half and diff <= RESUME_TOLERANCE  # nan compares False


def _printed_precision(printed: str) -> str | None:
    """The trainer's own "precision: ..." line: what it really trained in."""
    found = re.search(r"^precision: (.*)$", printed, re.MULTILINE)
    return found.group(1) if found else None


# ---------------------------------------------------------------- upscale


def square_photo(size: int):
    """An embedded photo (the astronaut), centre-cropped square and resized to ``size`` px."""
    from .data import embedded_images
    from .resize import imresize

    photo = embedded_images(("astronaut",))["astronaut"]
    side = min(photo.shape[:2])
    top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
    square = photo[top : top + side, left : left + side]
    return square if side == size else imresize(square, size=(size, size))


def time_upscale(model: str, sizes: str, size: int, device: torch.device) -> dict:
    """Seconds of ``srlab.infer.upscale`` of a ``size`` px photo with ``sizes``'s generator (random
    weights: the same arithmetic), as ``srlab upscale`` runs by default (its tile size, automatic
    precision); the second of two calls, so that cuDNN's tuning is not timed."""
    from .cli import UPSCALE_TILE
    from .infer import inference_precision, upscale

    cfg = make_config(UPSCALE_MODELS[model], SIZES[sizes], sizes=None)
    torch.manual_seed(0)
    net = generator_from_config(cfg).eval()
    photo = square_photo(size)
    row = dict(model=model, generator=cfg.generator, parameters=sum(p.numel() for p in net.parameters()))
    row.update(input=list(photo.shape[:2]), tile=UPSCALE_TILE, precision=inference_precision(device, None)[1])
    try:
        upscale(photo, net, tile=UPSCALE_TILE, device=device, half=None)
        _sync(device)
        start = time.perf_counter()
        out = upscale(photo, net, tile=UPSCALE_TILE, device=device, half=None)
        row["seconds"] = time.perf_counter() - start
        row["output"] = list(out.shape[:2])
        row["ok"] = row["output"] == [4 * size, 4 * size]
    except Exception as err:  # upscale refuses NaN outputs, ...
        row.update(ok=False, error=f"{type(err).__name__}: {str(err)[:300]}")
    return row


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the whole check


def device_facts(device: torch.device) -> dict:
    """Name, compute capability, versions: what the numbers were measured on."""
    facts = dict(device_type=device.type, torch=torch.__version__, cuda=torch.version.cuda)
    if device.type == "cuda":
        facts.update(
            device=torch.cuda.get_device_name(device), capability=list(torch.cuda.get_device_capability(device))
        )
    else:
        facts.update(device=_cpu_name(), capability=None)
    return facts


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def run_gpu_check(
    device: str | None = None,
    sizes: str = "real",
    steps: int | None = None,
    stages=STAGES,
    precisions: list[str] | None = None,
    upscale_size: int | None = None,
    plan_gpu: str | None = None,
    out: str | Path | None = None,
) -> dict:
    """The whole check (module docstring); returns the JSON dict, ``ok`` False when a check failed."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":  # before cuBLAS starts: its deterministic workspace (deterministic())
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    steps = steps or DEFAULT_STEPS[sizes]
    if steps < 2:
        raise ValueError(f"--steps {steps}: at least 2 (the resume check pauses at steps // 2)")
    start = time.perf_counter()
    weights, vgg_note = vgg_weights(sizes)
    result = dict(device_facts(device), sizes=sizes, preset=SIZES[sizes], steps=steps, resume_cut=steps // 2)
    result.update(degrade_on="device", loader_workers=LOADER_WORKERS, vgg_weights=weights, vgg_note=vgg_note)
    result.update(settings_notes(device), plan=dict(plan_peak(device, plan_gpu), utilization=UTILIZATION))
    result["precisions"] = precision_plan(device, precisions)
    result["rows"] = _stage_rows(device, sizes, steps, stages, result, weights, out)
    size = upscale_size or UPSCALE_SIZE[sizes]
    result["upscale"] = [time_upscale(model, sizes, size, device) for model in UPSCALE_MODELS]
    result["failures"] = failures(result)
    result["ok"] = not result["failures"]
    result["seconds"] = time.perf_counter() - start
    return result


def settings_notes(device: torch.device) -> dict:
    """What the JSON says about the settings that a reader could otherwise only guess."""
    det = (
        "resume runs: torch.use_deterministic_algorithms(True, warn_only=True), cudnn.deterministic=True, "
        f"CUBLAS_WORKSPACE_CONFIG={os.environ.get('CUBLAS_WORKSPACE_CONFIG')}; the timed run keeps training's "
        "settings (cudnn.benchmark, any algorithm)"
        if device.type == "cuda"
        else "CPU kernels are deterministic run to run: nothing changed; the straight run is the timed run"
    )
    return dict(
        deterministic=det,
        resume_tolerance=RESUME_TOLERANCE,
        resume_compared=list(COMPARED),
        init_from="none: GAN stages start from scratch (no pretrained generator; the same FLOPs)",
        data="the embedded photos (no DIV2K on a lent machine); batches and patch sizes are the preset's",
    )


def _stage_rows(device, sizes, steps, stages, result, weights, out) -> list[dict]:
    rows = []
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for stage in stages:
            for entry in result["precisions"]:
                if not entry["run"]:
                    rows.append(dict(stage=stage, precision=entry["precision"], skipped=entry["reason"]))
                    continue
                cfg = stage_config(stage, sizes, entry["precision"], steps, weights)
                folder = Path(tmp) / f"{stage}-{entry['precision']}"
                row = check_stage(cfg, entry, device, folder)
                shutil.rmtree(folder, ignore_errors=True)  # colab's ESRGAN leaves 8 checkpoints of 0.44 GB
                flops = step_flops(cfg)
                assumed = assumed_steps_per_s(flops, result["plan"])
                row.update(flops_per_step=flops, assumed_steps_per_s=assumed)
                row["ratio"] = row["steps_per_s"] / assumed if assumed and row["steps_per_s"] else None
                rows.append(row)
                print(row_line(row), flush=True)
                _free(device)
    return rows


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def failures(result: dict) -> list[str]:
    """Each failed check, in words; empty when all passed. A check that ran nothing fails."""
    found = []
    ran = [r for r in result["rows"] if "skipped" not in r]
    if not ran:
        found.append("no stage x precision ran on this device")
    for r in ran:
        what = f"{r['stage']} {r['precision']}"
        if "error" in r:
            found.append(f"{what}: {r['error']}")
        if r["finite"] is False:
            found.append(f"{what}: a logged loss was not finite")
        if not r["resume_exact"]:
            found.append(f"{what}: resume not exact (max abs diff {r['max_abs_diff']}, tolerance {RESUME_TOLERANCE})")
    for u in result["upscale"]:
        if not u["ok"]:
            found.append(f"upscale {u['model']}: {u.get('error', 'output ' + str(u.get('output')))}")
    return found


# ---------------------------------------------------------------- printing


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = (
    f"{'stage':<9} {'prec':<5} {'steps':>5} {'finite':>6} {'resume':>7} {'max diff':>9} {'steps/s':>8} "
    f"{'assumed':>8} {'ratio':>6} {'seconds':>7}"
)


def row_line(r: dict) -> str:
    if "skipped" in r:
        return f"{r['stage']:<9} {r['precision']:<5} skipped: {r['skipped']}"
    resume = "exact" if r["resume_exact"] else "DIFFERS"
    return (
        f"{r['stage']:<9} {r['precision']:<5} {r['steps']:>5} {'yes' if r['finite'] else 'NO':>6} "
        f"{resume:>7} {_fmt(r['max_abs_diff'], '9.2g')} {_fmt(r['steps_per_s'], '8.2f')} "
        f"{_fmt(r.get('assumed_steps_per_s'), '8.2f')} {_fmt(r.get('ratio'), '6.2f')} {r['seconds']:7.1f}"
        + (f"  {r['error']}" if "error" in r else "")
    )


def check_table(result: dict) -> str:
    """The JSON, readable: one line per stage x precision, one per upscale, the verdict."""
    cap = result["capability"]
    plan = result["plan"]
    lines = [
        f"gpu-check on {result['device']}"
        + (f" (compute capability {cap[0]}.{cap[1]})" if cap else "")
        + f", torch {result['torch']}, {result['preset']} sizes, {result['steps']} steps, resume cut at "
        f"{result['resume_cut']}; VGG: {result['vgg_note']}",
        f"assumed = plan's FLOPs per step / ({plan['name']} {_fmt(plan['peak_tflops'], 'g')} TFLOPS x "
        f"{plan['utilization']:g}) ({plan['note']})",
        HEADER,
    ]
    lines += [row_line(r) for r in result["rows"]]
    for u in result["upscale"]:
        size = "x".join(map(str, u["input"]))
        took = f"{u['seconds']:.3f} s" if "seconds" in u else u.get("error", "")
        lines.append(f"upscale {u['model']:<8} {size} px -> {u.get('output')}: {took} ({u['precision']})")
    verdict = "ok" if result["ok"] else "FAILED: " + "; ".join(result["failures"])
    lines.append(f"{verdict} ({result['seconds']:.0f} s)")
    return "\n".join(lines)


def bench_gpu_check(args) -> dict:
    """``python -m srlab.bench gpu-check``: run, print the table, return the JSON dict."""
    result = run_gpu_check(
        device=args.device,
        sizes=args.sizes,
        steps=args.steps,
        stages=args.stages,
        precisions=args.precisions,
        upscale_size=args.upscale_size,
        plan_gpu=args.plan_gpu,
        out=args.out,
    )
    print(check_table(result), flush=True)
    return result


def add_arguments(parser) -> None:
    """The ``gpu-check`` subcommand's options (``srlab.bench`` adds the subparser)."""
    parser.add_argument("--sizes", default="real", choices=sorted(SIZES), help="real: colab's models; smoke: tiny")
    parser.add_argument("--steps", type=int, help="steps per run (default: 40 real, 4 smoke); resume cut at half")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), help="default: those the rule runs here")
    parser.add_argument("--upscale-size", type=int, help="px of the upscaled photo (default: 512 real, 64 smoke)")
    parser.add_argument("--plan-gpu", choices=sorted({*GPUS, *EXTRA_PEAKS}), help="default: from the device name")
    parser.add_argument("--out", help="folder for the runs' temporary folders (default: the system's)")
    parser.add_argument("--device")
    parser.add_argument("--json")
