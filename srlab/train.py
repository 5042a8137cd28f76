"""The training loop of every stage: SRResNet, SRGAN, RRDBNet, ESRGAN.

A stage is a :class:`~srlab.presets.TrainConfig` (``srlab.presets`` has the recipes as
tables); this module trains it. One step reads like the papers:

* **generator step** (:meth:`Trainer.g_step`): SR = G(LR); the loss is a weighted sum of
  terms, each present only when its weight is: pixel (MSE or L1), perceptual (VGG-19
  features; or, with ``perceptual="discriminator"``, feature matching on D's blocks), adversarial
  (from the adversary, D frozen). One Adam update of G, then its EMA.
* **discriminator step** (:meth:`Trainer.d_step`, GAN stages): the adversary
  (``srlab.adversaries``: ``bce``, ``ragan``, ``wgan-gp``) scores HR against the detached SR;
  one Adam update of D. With ``n_critic > 1`` (WGAN-GP) the generator step runs only every
  ``n_critic``-th step, so the critic is trained more than G.

Around the step: mixed precision where the device has it, validation PSNR/SSIM on Y (of
the EMA), atomic ``last.pt`` / ``best.pt`` checkpoints that resume bit-exactly
(``srlab.checkpoint``), early stopping, a guard against NaN losses, discriminator-collapse
detection, a JSONL history, W&B if asked. Several GPUs: ``srlab.distributed`` subclasses
:class:`Trainer`; nothing in this file knows about ranks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from . import losses as L
from .adversaries import COLLAPSE_ADVICE, CollapseDetector, build_adversary
from .checkpoint import (
    WriteError,
    atomic_save,
    check_training_state,
    disk_full,
    generator_from_config,
    load_generator,
    nonfinite,
    read_checkpoint,
    remove_partial_saves,
    restore_training,
    resume_changes,
    training_state,
    write_error,
)
from .data import (
    HR_ONLY,
    RandomPatches,
    StorePatches,
    center_crops,
    embedded_images,
    is_patch_store,
    load_training_images,
)
from .degrade_batch import BATCH_DEGRADATIONS, degrade_batch
from .metrics import batch_psnr, batch_ssim
from .pipeline import WaitClock, auto_workers, batch_stream, steps_per_item
from .presets import PERCEPTUAL_KINDS, PRETRAIN_STAGE, STAGES, VALIDATION_IMAGE, TrainConfig, make_config
from .runfolder import check_folder_name, check_reuse, remove_run, run_outputs
from .runlock import run_lock
from .weights import load_state

__all__ = [
    "STAGES",
    "TrainConfig",
    "make_config",
    "Trainer",
    "train",
    "TrainingDiverged",
    "CollapseDetector",
    "read_history",
    "pick_amp",
    "choose_precision",
    "Precision",
    "cpu_has_amx",
    "lr_factor",
    "training_batches",
]


class TrainingDiverged(RuntimeError):
    """A loss or a weight became NaN or infinite; the checkpoints saved before are kept."""


class Precision(NamedTuple):
    """What :func:`choose_precision` picked: the autocast dtype (None = fp32), whether the
    gradients need a GradScaler (fp16 only), and why, in words."""

    dtype: torch.dtype | None
    grad_scaler: bool
    reason: str


def cpu_has_amx() -> tuple[bool, str]:
    """(AMX tiles present, how that was decided). ``SRLAB_CPU_AMX=0`` / ``=1`` forces no /
    yes (to try both CPU paths on one machine); otherwise ``torch.cpu._is_amx_tile_supported``."""
    forced = os.environ.get("SRLAB_CPU_AMX", "").strip()
    if forced in ("0", "1"):
        return forced == "1", f"SRLAB_CPU_AMX={forced}"
    if forced:
        raise ValueError(f"SRLAB_CPU_AMX={forced!r}: use 0 (no AMX), 1 (AMX) or leave it unset (detect)")
    try:
        return bool(torch.cpu._is_amx_tile_supported()), "detected"
    except (AttributeError, RuntimeError):
        return False, "not detectable in this PyTorch"


def choose_precision(device: torch.device, amp: str = "auto") -> Precision:
    """The training precision for ``device``: ``amp`` is "auto", "bf16", "fp16" or "off".

    auto, by what the hardware runs natively (not what ``torch.cuda.is_bf16_supported()``
    says: it is True on a T4 too, through emulation, at fp32 speed or worse):

    * CUDA, compute capability >= 8.0 (A100, L4, H100, RTX 30xx+): bf16, no scaler (the
      range of fp32, so gradients need no scaling);
    * CUDA 7.x (V100, T4, RTX 20xx): fp16 + GradScaler (tensor cores; no native bf16);
    * CUDA below 7.0 (P100, K80): fp32 (no tensor cores);
    * a CPU with AMX tiles (Sapphire Rapids and later Xeons): bf16 (2-3x faster convolutions);
    * any other CPU: fp32 (with only AVX512-BF16, bf16 autocast measured 10-30% *slower* than
      fp32 for SRResNet: ``python -m srlab.bench train``). ``SRLAB_CPU_AMX=0`` / ``=1`` forces
      the no-AMX / AMX decision (:func:`cpu_has_amx`).

    An explicit "bf16" or "fp16" is kept as asked ("bf16" on a GPU below 8.0 warns that it is
    emulated); "fp16" on a CPU is an error (slow or missing kernels); "off" is fp32 everywhere.
    """
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"unknown amp={amp!r}; choose auto, bf16, fp16 or off")
    if amp == "off":
        return Precision(None, False, "fp32: amp='off'")
    if device.type == "cuda":
        return _cuda_precision(device, amp)
    if amp == "fp16":
        raise ValueError("fp16 autocast is for CUDA; use amp='bf16' or 'off' on a CPU")
    amx, how = cpu_has_amx()
    if amp == "bf16":
        return Precision(torch.bfloat16, False, f"bf16: amp='bf16' (CPU {'with' if amx else 'without'} AMX, {how})")
    if amx:
        return Precision(torch.bfloat16, False, f"bf16: CPU with AMX tiles ({how})")
    return Precision(None, False, f"fp32: CPU without AMX ({how}); bf16 autocast there measured no faster than fp32")


def _cuda_precision(device: torch.device, amp: str) -> Precision:
    major, minor = torch.cuda.get_device_capability(device)
    gpu = f"{torch.cuda.get_device_name(device)} is compute capability {major}.{minor}"
    if amp == "fp16":
        return Precision(torch.float16, True, f"fp16 + GradScaler: amp='fp16' ({gpu})")
    if amp == "bf16":
        if major < 8:
            warnings.warn(
                f"amp='bf16' on {gpu}: bf16 is emulated below 8.0 (no tensor cores, fp32 speed or worse); "
                "amp='auto' picks fp16 + GradScaler here",
                stacklevel=3,
            )
            return Precision(torch.bfloat16, False, f"bf16: amp='bf16' ({gpu}, bf16 emulated below 8.0)")
        return Precision(torch.bfloat16, False, f"bf16: amp='bf16' ({gpu})")
    if major >= 8:
        return Precision(torch.bfloat16, False, f"bf16: {gpu} (>= 8.0: native bf16 tensor cores)")
    if major == 7:
        return Precision(torch.float16, True, f"fp16 + GradScaler: {gpu} (7.x: bf16 would be emulated)")
    return Precision(None, False, f"fp32: {gpu} (< 7.0: no tensor cores)")


def pick_amp(device: torch.device, amp: str = "auto") -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a grad scaler): :func:`choose_precision` without the reason."""
    dtype, grad_scaler, _ = choose_precision(device, amp)
    return dtype, grad_scaler


def pin_before_copy(x: Tensor, device: torch.device) -> bool:
    """Page-lock ``x`` before copying it to ``device``? Only host tensors bound for CUDA: a
    ``non_blocking`` copy from pinned memory runs asynchronously (the host goes on to the next
    step); from pageable memory CUDA stages it through a buffer and the host waits."""
    return device.type == "cuda" and x.device.type == "cpu" and not x.is_pinned()


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The learning rate at ``step``, as a fraction of ``lr_g`` / ``lr_d``: a linear warm-up,
    then a multiplication by ``lr_gamma`` at each milestone (0.5: ESRGAN's halving; 0.1: SRGAN's drop)."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    return warm * cfg.lr_gamma ** sum(step >= m for m in cfg.milestones)


DEGRADE_ON = ("auto", "data", "device")


def degrade_where(cfg: TrainConfig, device: torch.device) -> str:
    """Where this run makes LR from HR: "data" (per image, where batches are built: a loader worker
    or the loop) or "device" (the whole batch at once on the training device, ``srlab.degrade_batch``,
    as Real-ESRGAN does on its GPU). ``degrade_on="auto"``: "device" on a GPU when the degradation has
    a batched form, so that Colab's two CPU cores only crop; "data" elsewhere."""
    if cfg.degrade_on not in DEGRADE_ON:
        raise ValueError(f"degrade_on={cfg.degrade_on!r}; choose one of {', '.join(DEGRADE_ON)}")
    batched = cfg.degradation in BATCH_DEGRADATIONS
    if cfg.degrade_on == "auto":
        return "device" if device.type == "cuda" and batched else "data"
    if cfg.degrade_on == "device" and not batched:
        raise ValueError(
            f"degrade_on='device': {cfg.degradation!r} has no batched form; "
            f"use one of {', '.join(BATCH_DEGRADATIONS)}, or degrade_on='data'"
        )
    return cfg.degrade_on


def training_batches(cfg: TrainConfig, hr_only: bool = False):
    """(batch source, validation images). Training: ``cfg.data`` (a patch store or a folder),
    else the embedded photos; with ``hr_only`` its batches carry no LR (``data.HR_ONLY``: the
    loop degrades on the device). Validation: ``val_data``, else the embedded photo held out of
    training (embedded data or a patch store), else a folder's last image; as ``{name: image}``,
    so that a message about a validation image names its file."""
    val_images = load_training_images(cfg.val_data) if cfg.val_data else None
    held_out = lambda: embedded_images((VALIDATION_IMAGE,))  # noqa: E731
    options = dict(
        hr_size=cfg.hr_size,
        scale=cfg.scale,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        degradation=HR_ONLY if hr_only else cfg.degradation,
        usm_target=cfg.usm_target,
    )
    if is_patch_store(cfg.data):
        return StorePatches(cfg.data, **options), val_images or held_out()
    train_images = load_training_images(cfg.data, exclude=(VALIDATION_IMAGE,) if cfg.data is None else ())
    if val_images is None and cfg.data is None:
        val_images = held_out()
    elif val_images is None:
        *train_names, val_name = sorted(train_images)
        if not train_names:
            raise ValueError(f"{cfg.data} has one image: pass val_data, or add images")
        val_images = {val_name: train_images.pop(val_name)}
    return RandomPatches(train_images.values(), **options), val_images


class LossMeter:
    """Sums logged values as tensors on the device; :meth:`means` moves them to the host once
    per log line, so the loop never waits for the device to log a number."""

    def __init__(self):
        self.sums, self.counts = {}, defaultdict(int)

    def add(self, logs: dict[str, Tensor]) -> None:
        for key, value in logs.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] += 1

    def means(self) -> dict[str, float]:
        keys = sorted(self.sums)
        if not keys:
            return {}
        values = torch.stack([self.sums[k] for k in keys]).tolist()  # the one device sync
        means = {k: v / self.counts[k] for k, v in zip(keys, values)}
        self.sums, self.counts = {}, defaultdict(int)
        return means


# ---------------------------------------------------------------- the trainer


class Trainer:
    """Owns models, optimisers and data for one run in ``out_dir``; ``fit()`` trains it.

    Args:
        cfg: the run's configuration.
        out_dir: run folder: ``last.pt``, ``best.pt``, ``history.jsonl``, ``samples/``.
        device: "cuda", "cpu", ... (default: CUDA when available).
        progress: show a tqdm progress bar.
    """

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, device: str | None = None, progress: bool = True):
        self.cfg, self.out_dir, self.progress = cfg, Path(out_dir), progress
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(cfg.seed)
        precision = choose_precision(self.device, cfg.amp)
        self.amp_dtype = precision.dtype
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision.grad_scaler)
        self.say(f"precision: {precision.reason}")
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

        self.G = generator_from_config(cfg).to(self.device, memory_format=self.memory_format)
        self.ema = AveragedModel(self.G, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=tuple(cfg.betas))
        self.adversary = build_adversary(cfg, self.device, self.memory_format)
        self.perceptual = self._perceptual_loss(cfg)
        self._weigh_losses(cfg)

        self.degrade_on = degrade_where(cfg, self.device)
        self.patches, val_images = training_batches(cfg, hr_only=self.degrade_on == "device")
        self.val_pairs = center_crops(val_images, cfg.val_crop, cfg.scale)
        self.step, self.best_psnr, self.bad_validations = 0, -math.inf, 0
        self.saved: dict[str, int | None] = {}  # checkpoint name -> the step this run saved it at
        self.meter = LossMeter()
        self.history_path = self.out_dir / "history.jsonl"
        self.wandb_run = None

    def _perceptual_loss(self, cfg: TrainConfig) -> nn.Module | None:
        """The VGG loss module, or None: no perceptual term, or feature matching (the adversary's)."""
        if cfg.perceptual not in PERCEPTUAL_KINDS:
            raise ValueError(f"unknown perceptual={cfg.perceptual!r}; choose one of {', '.join(PERCEPTUAL_KINDS)}")
        if not cfg.perceptual_weight:
            return None
        if cfg.perceptual == "discriminator":
            if self.adversary is None:
                raise ValueError("perceptual='discriminator' matches the discriminator's features: a GAN stage only")
            self.say(
                "note: perceptual loss = feature matching on the discriminator's blocks (--perceptual discriminator, "
                "pix2pixHD): an offline substitute for the VGG loss, not the paper's"
            )
            return None
        if cfg.vgg_weights is None:
            self.say(
                "note: perceptual loss uses a RANDOM VGG-19 (vgg_weights=None): smoke test only, "
                "not a perceptual metric"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # said above, in words
            loss = L.PerceptualLoss(cfg.perceptual_layer, cfg.vgg_weights, cfg.perceptual_criterion)
        return loss.to(self.device)

    def _weigh_losses(self, cfg: TrainConfig) -> None:
        """The weight of each loss term, and whether the perceptual term is feature matching (decided once)."""
        self.feature_matching = bool(cfg.perceptual_weight) and cfg.perceptual == "discriminator"
        self.loss_weights = {
            "pixel": cfg.pixel_weight,
            "perceptual": cfg.perceptual_weight,
            "adv": cfg.adversarial_weight,
        }

    @property
    def generator(self) -> nn.Module:
        """G itself (``self.G`` may be a wrapper around it, e.g. DistributedDataParallel)."""
        return getattr(self.G, "module", self.G)

    # ------------------------------------------------------------ one step

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def train_step(self, lr: Tensor, hr: Tensor, hr_sharp: Tensor | None = None) -> dict[str, Tensor]:
        """One step on a batch: LR (N, 3, h, w), HR (N, 3, sh, sw), and the sharpened HR that
        pixel and perceptual losses aim at (``usm_target``). Returns the losses as tensors."""
        self.set_learning_rates(self.step)
        self.G.train()  # also for the critic-only forward: SR as the generator makes it in training
        hr = self.to_device(hr)
        target = hr if hr_sharp is None else self.to_device(hr_sharp)
        lr = self.degrade(target) if lr is None else self.to_device(lr)  # LR from the sharpened HR, as Real-ESRGAN
        sr, logs = None, {}
        if self.adversary is None or self.adversary.generator_turn(self.step):
            sr, logs = self.g_step(lr, hr, target)
        if self.adversary is not None:
            if sr is None:  # a critic-only step (n_critic > 1)
                with torch.no_grad(), self.autocast():
                    sr = self.G(lr).float()
            logs.update(self.d_step(sr, hr))
        self.scaler.update()
        return logs

    def g_step(self, lr: Tensor, hr: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """GENERATOR UPDATE: minimise the weighted sum of the loss terms; returns SR (detached)."""
        cfg = self.cfg
        with self.autocast():
            sr = self.G(lr).float()  # (N, 3, H, W); losses in fp32
            terms = {}
            if cfg.pixel_weight:
                terms["pixel"] = L.pixel_loss(sr, target, cfg.pixel_loss)
            if self.perceptual is not None:
                terms["perceptual"] = self.perceptual(sr, target)
            if self.adversary is not None:
                terms["adv"], feature_matching = self.adversary.generator_losses(sr, hr, self.feature_matching)
                if self.feature_matching:  # against HR, the images D calls real
                    terms["perceptual"] = feature_matching
            loss = sum(self.loss_weights[name] * term for name, term in terms.items())
        self.update(self.opt_g, loss, self.G)
        self.ema.update_parameters(self.G)
        return sr.detach(), {**{f"loss_{name}": term for name, term in terms.items()}, "loss_g": loss}

    def d_step(self, sr: Tensor, hr: Tensor) -> dict[str, Tensor]:
        """DISCRIMINATOR UPDATE: the adversary's loss on real HR and the generator's SR."""
        adversary = self.adversary
        with self.autocast():
            loss, stats = adversary.discriminator_loss(sr, hr)
        self.update(adversary.opt, loss, adversary.critic)
        return {"loss_d": loss, **stats}

    def update(self, opt: torch.optim.Optimizer, loss: Tensor, model: nn.Module) -> None:
        """Backward and one optimiser step, unless the loss is not finite (then stop the run)."""
        if not self.all_finite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at step {self.step + 1}; {self.divergence_advice()}")
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
        self.scaler.step(opt)

    def check_weights(self) -> None:
        """Stop the run when a weight of G, its EMA or D is NaN or inf: called before every save,
        so a finite checkpoint is never replaced by a broken one. (An update can overshoot from a
        finite loss: at a huge learning rate the loss is still finite when its gradients overflow.)"""
        states = {"generator": self.generator.state_dict(), "generator_ema": self.ema.module.state_dict()}
        if self.adversary is not None:
            states["discriminator"] = self.adversary.net.state_dict()
        tensors = [v for state in states.values() for v in state.values() if v.is_floating_point()]
        finite = torch.stack([v.isfinite().all() for v in tensors]).all()  # one device sync, below
        if self.all_finite(torch.where(finite, 0.0, math.nan)):  # under torchrun: every rank decides together
            return
        raise TrainingDiverged(
            f"weights became NaN or inf at step {self.step} ({nonfinite(states)}), though the loss was finite: "
            f"the update overshot. Not saved; {self.divergence_advice()}"
        )

    def divergence_advice(self) -> str:
        """What was kept of this run, and the settings to change, as the CLI's flags."""
        kept = " and ".join(
            f"{self.out_dir / name}" + (f" (step {step})" if step is not None else "")
            for name, step in self.saved.items()
        )
        lower = f"--set lr_g={self.cfg.lr_g / 10:g}" + (f" --set lr_d={self.cfg.lr_d / 10:g}" if self.adversary else "")
        if "last.pt" in self.saved:
            again = "--resume and "
        else:
            again = "--overwrite and " if (self.out_dir / "last.pt").exists() else ""
        return (
            f"{'kept, finite: ' + kept if kept else 'no checkpoint of this run was saved'}. Run again with {again}"
            f"a lower learning rate ({lower}), gradient clipping (--set grad_clip=1.0) or fp32 (--set amp=off)"
        )

    def set_learning_rates(self, step: int) -> None:
        factor = lr_factor(self.cfg, step)
        pairs = [(self.opt_g, self.cfg.lr_g)] + ([(self.adversary.opt, self.cfg.lr_d)] if self.adversary else [])
        for opt, base in pairs:
            for group in opt.param_groups:
                group["lr"] = base * factor

    def degrade(self, hr: Tensor) -> Tensor:
        """LR of an HR batch already on the device (``degrade_on="device"``), seeded by (seed, step, rank)
        like the batch itself, so a resumed run makes the same LR."""
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        with torch.no_grad():
            lr = degrade_batch(self.cfg.degradation, hr, self.cfg.scale, generator=[self.cfg.seed, self.step, 3, rank])
        return lr.contiguous(memory_format=self.memory_format)

    def to_device(self, x: Tensor) -> Tensor:
        """A batch tensor on the training device; uint8 (``data.hr_batch``) becomes float in [0, 1] there."""
        if pin_before_copy(x, self.device):
            x = x.pin_memory()
        x = x.to(self.device, memory_format=self.memory_format, non_blocking=True)
        return x.float().div_(255) if x.dtype == torch.uint8 else x

    # ------------------------------------------------------------ hooks (srlab.distributed overrides them)

    def batch_source(self) -> Callable[[int], tuple[Tensor, ...]]:
        """step -> batch ``step``: a pure function of (seed, step), so a resumed run sees the same
        data, and loader workers (:mod:`srlab.pipeline`) build exactly the batches this loop would."""
        return self.patches.batch

    def next_batch(self, step: int) -> tuple[Tensor, ...]:
        return self.batch_source()(step)

    def all_finite(self, loss: Tensor) -> bool:
        return bool(torch.isfinite(loss.detach()).all())

    def reduce_logs(self, logs: dict[str, float]) -> dict[str, float]:
        return logs

    def say(self, message: str) -> None:
        print(message)

    # ------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self, model: nn.Module | None = None) -> dict[str, float]:
        """Mean PSNR/SSIM on Y (crop_border=scale) of the EMA generator, in fp32."""
        model = (model or self.ema.module).eval()
        psnrs, ssims = [], []
        for lr, hr in self.val_pairs:
            sr = model(lr.to(self.device)).float().clamp(0, 1).cpu()  # (1, 3, H, W)
            psnrs.append(batch_psnr(sr, hr, crop_border=self.cfg.scale).item())
            ssims.append(batch_ssim(sr, hr, crop_border=self.cfg.scale).item())
        return {"val_psnr": float(np.mean(psnrs)), "val_ssim": float(np.mean(ssims))}

    def save_samples(self) -> Path:
        """The first validation crop: LR (nearest), EMA output, HR, side by side, as a PNG."""
        from .images import to_image, write_image

        lr, hr = self.val_pairs[0]
        with torch.no_grad():
            sr = self.ema.module.eval()(lr.to(self.device)).float().cpu().clamp(0, 1)
        up = torch.nn.functional.interpolate(lr, scale_factor=self.cfg.scale, mode="nearest")
        row = torch.cat([up, sr, hr], dim=3)  # (1, 3, H, 3W)
        path = self.out_dir / "samples" / f"step_{self.step:07d}.png"
        try:
            return write_image(path, to_image(row))
        except OSError as err:  # numpy's writer: an OSError without errno, which train() could not place
            raise write_error(err, path) from None

    def validate_and_checkpoint(self) -> bool:
        """Validate, save best/last and a sample; True when early stopping says stop."""
        metrics = self.validate()
        self.log({"step": self.step, **metrics})
        self.save_samples()
        if metrics["val_psnr"] > self.best_psnr:
            self.best_psnr, self.bad_validations = metrics["val_psnr"], 0
            self.save("best.pt")
        else:
            self.bad_validations += 1
        self.save("last.pt")
        return self.patience_exhausted()

    def patience_exhausted(self) -> bool:
        """Early stopping's verdict: ``early_stop_patience`` validations in a row without a better PSNR.
        Only for pixel stages: GAN stages trade PSNR for texture on purpose."""
        patience = self.cfg.early_stop_patience
        return bool(patience) and self.adversary is None and self.bad_validations >= patience

    # ------------------------------------------------------------ checkpoints

    def save(self, name: str = "last.pt") -> Path:
        """Write a checkpoint atomically (``srlab.checkpoint`` has the format)."""
        path = atomic_save(training_state(self), self.out_dir / name)
        self.saved[name] = self.step
        return path

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save`: of this stage and architecture, readable,
        whole and finite, or a ValueError saying what is wrong and what to do. A setting changed since
        (batch size, learning rate, ...) is a warning: the run will differ from an uninterrupted one."""
        path = Path(path)
        try:
            ckpt = read_checkpoint(path, self.device)
            check_training_state(ckpt, path)
        except ValueError as err:
            raise cannot_resume(err, path) from None
        changed = resume_changes(ckpt, self.cfg, path)
        if changed:
            self.warn(
                f"resuming {path} with settings it was not trained with ({', '.join(changed)}): the run "
                f"will not be the one it would have been uninterrupted"
            )
        try:
            restore_training(self, ckpt, str(path))
        except ValueError as err:  # entries of the right types that still do not fit (another optimiser, ...)
            raise cannot_resume(err, path) from None

    def init_generator(self, path: str | Path) -> None:
        """Start G (and its EMA) from another run's weights (the pixel-pretrained model), or from any
        generator file :func:`~srlab.checkpoint.load_generator` reads (a BasicSR ``.pth``, ...)."""
        model, info = load_generator(path)
        arch = f"{info['architecture']} x{info['scale']}, {info['layout']} layout"
        expected = f"{self.cfg.generator} x{self.cfg.scale}"
        if info["scale"] != self.cfg.scale:
            raise ValueError(f"--init {path} is a x{info['scale']} model ({arch}); this stage trains {expected}")
        residual = getattr(model, "bicubic_residual", False)  # BasicSR's RRDBNet: False
        if residual != getattr(self.generator, "bicubic_residual", False):
            raise ValueError(
                f"--init {path} ({arch}) {'adds' if residual else 'does not add'} a bicubic upsampling to its "
                f"output and this stage's generator {'does not' if residual else 'does'}: the same weights would "
                f"make other images. --set generator.bicubic_residual={str(residual).lower()} makes them agree"
            )
        hint = f": this stage trains {expected}; --init a generator of that architecture, or --init none"
        load_state(self.generator, model.state_dict(), f"the weights of --init {path} ({arch})", hint)
        self.ema.module.load_state_dict(self.generator.state_dict())

    def begin(self, resume: bool = False, init: Path | None = None) -> None:
        """Continue from ``last.pt`` (``resume`` and it exists), else start a fresh history,
        from the ``init`` generator when given."""
        last = self.out_dir / "last.pt"
        if resume and last.exists():
            self.load(last)
            self.saved = {"last.pt": self.step, **({"best.pt": None} if (self.out_dir / "best.pt").exists() else {})}
            self.trim_history()
            self.say(f"resuming {self.cfg.stage} from step {self.step} ({last})")
            return
        if resume:
            self.say(f"no checkpoint at {last}: starting a new {self.cfg.stage} run")
        self.clear_history()
        if init is not None:
            self.init_generator(init)
            self.say(f"generator initialised from {init}")

    # ------------------------------------------------------------ logging

    def log(self, record: dict) -> None:
        with open(self.history_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def log_losses(self, window: int, elapsed: float, bar) -> None:
        """One history line with the mean of each loss over the last ``window`` steps."""
        logs = self.reduce_logs(self.meter.means())
        self.log({"step": self.step, "lr_g": self.opt_g.param_groups[0]["lr"], "time": round(elapsed, 3), **logs})
        bar.set_postfix({k.removeprefix("loss_"): f"{v:.4g}" for k, v in logs.items() if k.startswith("loss")})
        if "loss_d" in logs and self.adversary.collapsed(logs["loss_d"], window):
            advice = COLLAPSE_ADVICE.format(threshold=self.cfg.collapse_threshold, patience=self.cfg.collapse_patience)
            self.warn(f"step {self.step}: {advice}")
            self.log({"step": self.step, "event": "discriminator_collapse"})

    def warn(self, message: str) -> None:
        warnings.warn(message, stacklevel=3)

    def clear_history(self) -> None:
        self.history_path.unlink(missing_ok=True)  # a fresh run starts a fresh history

    def trim_history(self) -> None:
        """After a resume, drop records newer than the checkpoint (they will be redone)."""
        if self.history_path.exists():
            keep = [r for r in read_history(self.history_path) if r["step"] <= self.step]
            self.history_path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def start_wandb(self) -> None:
        if self.cfg.wandb == "disabled":
            return
        import wandb

        run_id = hashlib.sha1(str(self.out_dir.resolve()).encode()).hexdigest()[:12]  # resumes the same W&B run
        self.wandb_run = wandb.init(
            project=self.cfg.wandb_project,
            mode=self.cfg.wandb,
            dir=str(self.out_dir),
            config=asdict(self.cfg),
            name=f"{self.cfg.stage}-{self.out_dir.name}",
            resume="allow",
            id=run_id,
        )

    # ------------------------------------------------------------ the loop

    def out_of_time(self, deadline: float) -> bool:
        return time.perf_counter() >= deadline

    def pause(self, why: str) -> None:
        """Stop between two scheduled validations (``stop_at``, the time budget): validate, log,
        save the sample figure and ``last.pt``, but leave the best score and early stopping
        alone, so the resumed run makes exactly the decisions an uninterrupted one makes. Only
        when this run has no ``best.pt`` yet is one written (the next notebook needs a model); the
        next scheduled validation replaces it, as the best score is still unset."""
        self.log({"step": self.step, **self.validate(), "event": why})
        self.save_samples()
        if "best.pt" not in self.saved:  # this run's (begin() counts a resumed one's), not one another run left
            self.save("best.pt")
        self.save("last.pt")

    def fit(self, stop_at: int | None = None, time_budget: float | None = None) -> dict:
        """Train until ``cfg.steps``, early stopping or divergence, or a pause: at ``stop_at`` or
        when ``time_budget`` seconds of this call's loop have passed (a Colab session's length).
        A pause leaves ``last.pt`` to resume from. Returns a summary dict."""
        cfg = self.cfg
        if self.patience_exhausted():  # resumed after early stopping: an uninterrupted run would not go on
            bad = f"{self.bad_validations} validation{'s' * (self.bad_validations != 1)}"
            self.say(
                f"{cfg.stage}: stopped early at step {self.step} ({bad} without a better PSNR, "
                f"early_stop_patience={cfg.early_stop_patience}); not trained again. A higher "
                f"--set early_stop_patience=N with --resume trains on"
            )
            return self.summary("early_stop")
        end = min(cfg.steps, stop_at or cfg.steps)
        self.start_wandb()
        reason, last_log, t0 = "finished", self.step, time.perf_counter()
        deadline = t0 + time_budget if time_budget is not None else math.inf
        bar = tqdm(total=cfg.steps, initial=self.step, desc=cfg.stage, disable=not self.progress, dynamic_ncols=True)
        workers = auto_workers(self.device, cfg.loader_workers)
        batches = batch_stream(
            self.batch_source(),
            self.step,
            end,
            workers,
            pin_memory=self.device.type == "cuda",
            chunk=steps_per_item(hr_only=self.degrade_on == "device"),
        )
        clock = WaitClock()
        try:
            while self.step < end:
                self.meter.add(self.train_step(*clock.next(batches)))
                self.step += 1
                bar.update(1)
                last = self.step == cfg.steps
                paused = not last and (self.step == end or (deadline < math.inf and self.out_of_time(deadline)))
                if self.step % cfg.log_every == 0 or last or paused:
                    self.log_losses(self.step - last_log, time.perf_counter() - t0, bar)
                    last_log = self.step
                if self.step % cfg.val_every == 0 or last or paused or self.step % cfg.ckpt_every == 0:
                    self.check_weights()  # a save follows
                if self.step % cfg.val_every == 0 or last:
                    if self.validate_and_checkpoint():
                        reason = "early_stop"
                        break
                elif paused:
                    self.pause("stop_at" if self.step == end else "time_budget")
                elif self.step % cfg.ckpt_every == 0:
                    self.save("last.pt")
                if paused:
                    reason = "stop_at" if self.step == end else "time_budget"
                    break
        finally:
            batches.close()  # stops the loader's workers
            bar.close()
            if self.wandb_run is not None:
                self.wandb_run.finish()
                self.wandb_run = None
        return self.summary(reason, clock.fraction())

    def summary(self, reason: str, data_wait: float = 0.0) -> dict:
        """What :meth:`fit` returns; ``data_wait``: the fraction of its loop time spent waiting for batches."""
        return {
            "step": self.step,
            "best_psnr": self.best_psnr,
            "stopped": reason,
            "out_dir": str(self.out_dir),
            "data_wait": round(data_wait, 4),
        }


def cannot_resume(err: ValueError, path: Path) -> ValueError:
    """The one-line error for a ``last.pt`` that cannot be resumed: what is wrong, and what to do instead."""
    best = path.with_name("best.pt")
    instead = f"resume from {best} (cp {best} {path}) or " if best.is_file() and best != path else ""
    return ValueError(f"cannot resume: {err}. Instead: {instead}start over with --overwrite")


def read_history(path: str | Path) -> list[dict]:
    """The records of a ``history.jsonl``; a line cut off by a crash is ignored."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    stop_at: int | None = None,
    time_budget: float | str | None = None,
    overwrite: bool = False,
) -> dict:
    """Train ``cfg`` in ``out_dir``; ``resume=True`` continues from ``out_dir/last.pt``.

    ``time_budget`` (seconds, or ``"50m"``, ``"1h30m"``, ``"90s"``) pauses the run cleanly once
    that much training time has passed: ``last.pt``, a validation sample and a line saying how
    to continue; resuming gives the weights an uninterrupted run would have. ``stop_at`` pauses
    at a step instead. A folder that already holds a run (``last.pt``) is refused unless
    ``resume`` (continue it) or ``overwrite`` (start over, replacing its checkpoints and history);
    so is one whose ``best.pt`` a new run would replace (``last.pt`` deleted), even with ``resume``,
    and ``overwrite`` deletes only what an srlab run wrote (:mod:`srlab.runfolder`). A failed write
    into ``out_dir`` (a full disk, a read-only folder, ``ulimit -f``) is one :class:`WriteError`
    saying what was kept and how to go on.

    Started by ``torchrun``, every process runs this and :mod:`srlab.distributed` splits the
    work (``cfg.batch_size`` is then the global batch); a checkpoint resumes with any number
    of processes.
    """
    from . import distributed

    out_dir = Path(out_dir)
    budget = parse_duration(time_budget)  # a bad value fails before anything is built
    check_folder_name(out_dir)
    main = distributed.rank() == 0 and os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 alone locks
    try:
        resuming = resume and (out_dir / "last.pt").exists()
        if not resuming:  # a new run: refused where it would replace a run's files without being told to
            check_reuse(out_dir, cfg.stage, resume, overwrite)
        init = None if resuming else resolve_init(cfg, out_dir)  # fail before building anything
        with (
            run_lock(out_dir) if main else contextlib.nullcontext(),
            distributed.process_group(device) as (trainer_class, device),
        ):
            trainer = trainer_class(cfg, out_dir, device=device, progress=progress)
            if main:  # under the lock (a live run's files stay), once built (a bad config deletes nothing)
                tidy_run_folder(trainer, fresh=overwrite and not resuming)
            trainer.begin(resume, init)
            summary = trainer.fit(stop_at=stop_at, time_budget=budget)
            if summary["stopped"] == "time_budget":
                trainer.say(
                    f"{cfg.stage}: time budget {format_duration(budget)} reached at step "
                    f"{summary['step']} of {cfg.steps}; {out_dir / 'last.pt'} saved. Continue with "
                    f"resume=True (CLI: the same command with --resume), another session if need be."
                )
            return summary
    except OSError as err:  # a full disk, a read-only folder, ...: one line saying so, and how to go on
        if not writing_failed(err, out_dir):
            raise
        where = err.filename if err.filename and _inside(err.filename, out_dir) else out_dir
        raise write_error(err, where, write_advice(err, out_dir)) from None


# why a write into the run folder fails, other than a full disk (checkpoint.disk_full)
READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
WRITE_ERRNOS = READ_ONLY | {errno.EFBIG, getattr(errno, "EDQUOT", errno.EFBIG)}  # EDQUOT: a quota, not POSIX


def writing_failed(err: OSError, out_dir: Path) -> bool:
    """Whether ``err`` is a failed write into the run folder (not, say, an unreadable training image)."""
    if isinstance(err, WriteError) or disk_full(err, out_dir):
        return True
    return err.errno in WRITE_ERRNOS and (not err.filename or _inside(err.filename, out_dir))


def _inside(name: str | bytes, folder: Path) -> bool:
    return Path(os.path.abspath(os.fsdecode(name))).is_relative_to(os.path.abspath(folder))


def write_advice(err: OSError, out_dir: Path) -> str:
    """What to do after a failed write into ``out_dir`` (added to :func:`write_error`'s message)."""
    if (out_dir / "last.pt").is_file():
        again = "--resume (resume=True) continues from last.pt"
    elif run_outputs(out_dir):
        again = "--overwrite (overwrite=True) starts the run again"
    else:
        again = "run the same command again"
    if err.errno in READ_ONLY:
        return f". Train into a folder you can write to (--out), or make {out_dir} writable, then {again}"
    if err.errno == errno.EFBIG:
        return f". Raise the limit on file sizes (ulimit -f unlimited), then {again}"
    return f". Free some space, then {again}"


def tidy_run_folder(trainer: Trainer, fresh: bool) -> None:
    """Remove what saves cut off by a killed process left (``*.pt.XXXXXXXX.tmp``); with ``fresh``
    (``overwrite``) also the previous run's checkpoints, history and samples, so that a new run
    stopped before its first checkpoint leaves nothing of the old one to resume or to use as its model."""
    out_dir = trainer.out_dir
    removed = remove_partial_saves(out_dir)
    if removed:
        trainer.say(f"removed {', '.join(p.name for p in removed)} from {out_dir}: left by saves that were cut off")
    if fresh:
        remove_run(out_dir)  # only what an srlab run wrote, by name: check_reuse refused any other folder


def parse_duration(value: float | str | None) -> float | None:
    """Seconds from ``3000``, ``"3000"``, ``"90s"``, ``"50m"``, ``"2h"`` or ``"1h30m"``; None stays None.
    A bare number after a unit (``"1h30"``: minutes or seconds?) is a ValueError."""
    if value is None or isinstance(value, (int, float)):
        seconds = value
    else:
        text = value.strip().lower()
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text)
        if not text or parts is None:
            raise ValueError(f"time budget {value!r}: expected seconds or a duration like 50m, 2h, 1h30m, 90s")
        if parts.group(3) and (parts.group(1) or parts.group(2)) and not text.endswith("s"):  # "1h30"
            raise ValueError(
                f"time budget {value!r}: a number after a unit needs its own unit (minutes or seconds?): "
                f"write 1h30m, 90m or 5400 (seconds) for an hour and a half"
            )
        h, m, sec = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + sec
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"time budget {value!r}: must be a positive duration")
    return None if seconds is None else float(seconds)


def format_duration(seconds: float) -> str:
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (sec, "s")) if v) or "0s"


def resolve_init(cfg: TrainConfig, out_dir: Path) -> Path | None:
    """The checkpoint a GAN stage starts its generator from: ``init_from``, or with ``"auto"``
    this preset's pixel stage beside ``out_dir``; None for scratch."""
    if cfg.init_from in (None, "none"):
        return None
    if cfg.init_from != "auto":
        path = Path(cfg.init_from)
        if not path.exists():
            raise FileNotFoundError(f"init_from={cfg.init_from}: no such checkpoint")
        return path
    pre = PRETRAIN_STAGE.get(cfg.stage)
    path = out_dir.parent / pre / "best.pt" if pre else None
    if path is None or not path.exists():
        raise FileNotFoundError(
            f"stage {cfg.stage} starts from a pretrained {pre} generator, expected at {path}. "
            f"Run `python -m srlab train {pre}` with the same preset and --out parent first, "
            f"pass --init CKPT, or --init none to start from scratch."
        )
    return path
