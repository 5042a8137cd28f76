"""Training engine for every stage of the course: SRResNet, SRGAN, RRDBNet, ESRGAN.

One loop trains them all; a stage is just a :class:`TrainConfig`:

=========  ======================================================================
stage      losses (paper defaults)
=========  ======================================================================
srresnet   MSE pixel loss; Adam 1e-4
srgan      VGG relu5_4 content (MSE) + 1e-3 x BCE adversarial; Adam 1e-4; from srresnet
rrdb       L1 pixel loss; Adam 2e-4, halved every 200k steps
esrgan     1e-2 x L1 + 1.0 x VGG conv5_4 (L1) + 5e-3 x relativistic GAN; Adam 1e-4; from rrdb
=========  ======================================================================

Presets (``colab``, ``cpu``, ``smoke``, ``seed``) are values of the same dataclass.
What the loop does besides the losses: mixed precision where the device has it, an EMA of
the generator (used for validation and saved), validation PSNR/SSIM on Y, atomic
``last.pt`` / ``best.pt`` checkpoints that resume bit-exactly, early stopping, a guard
against NaN losses, a discriminator-collapse detector, a JSONL history, W&B if asked.

Several GPUs: ``torchrun --nproc_per_node=N -m srlab train STAGE ...`` runs one process per
device; :func:`train` sees torchrun's environment and joins its process group itself, and the
Trainer wraps G and D in DistributedDataParallel (``srlab.distributed`` explains the split).
``batch_size`` is always the global batch; checkpoints are process-count independent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from . import distributed
from . import losses as L
from .data import RandomPatches, StorePatches, center_crops, is_patch_store, load_training_images, rank_slice
from .metrics import batch_psnr, batch_ssim
from .models import SRGANDiscriminator, VGGStyleDiscriminator, build_generator

__all__ = ["STAGES", "PRESETS", "TrainConfig", "make_config", "Trainer", "train", "TrainingDiverged",
           "CollapseDetector", "load_generator", "generator_from_checkpoint", "interpolate_networks", "read_history", "pick_amp"]

STAGES = ("srresnet", "srgan", "rrdb", "esrgan")
PRESETS = ("colab", "cpu", "smoke", "seed")
# A GAN stage starts from the generator its pixel stage trained.
PRETRAIN_STAGE = {"srgan": "srresnet", "esrgan": "rrdb"}
VALIDATION_IMAGE = "coffee"  # the embedded photo held out of training for validation


@dataclass
class TrainConfig:
    """Everything a run needs; defaults are the papers'. Saved inside every checkpoint."""

    stage: str = "srresnet"
    generator: dict = field(default_factory=lambda: {"name": "srresnet", "num_block": 16})
    discriminator: dict | None = None  # {"name": "srgan" | "vgg", "input_size": ..., "num_feat": ...}
    scale: int = 4
    # data
    data: str | None = None  # folder of HR images or a patch store; None = the embedded photos
    degradation: str = "bicubic"  # how LR is made: bicubic | blur_bicubic | realesrgan
    val_data: str | None = None  # folder of validation HR images; None = held-out embedded photo
    hr_size: int = 96
    batch_size: int = 16
    val_crop: int = 192
    # losses
    pixel_loss: str = "mse"
    pixel_weight: float = 1.0
    perceptual_layer: str | None = None
    perceptual_criterion: str = "l1"
    perceptual_weight: float = 0.0
    vgg_weights: str | None = "imagenet"  # None = random VGG: smoke tests only
    adversarial: str | None = None  # "bce" (SRGAN) or "ragan" (ESRGAN)
    adversarial_weight: float = 0.0
    # optimisation
    steps: int = 100_000
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 0
    milestones: tuple = ()  # learning rates halve at these steps
    grad_clip: float | None = None
    ema_decay: float = 0.999
    init_from: str | None = None  # checkpoint to start G from; "auto" = this preset's pixel stage
    # engine
    amp: str = "auto"  # "auto" | "bf16" | "fp16" | "off"
    channels_last: bool = True
    seed: int = 0
    log_every: int = 10
    val_every: int = 500
    ckpt_every: int = 500
    early_stop_patience: int | None = None  # validations without improvement (pixel stages)
    collapse_threshold: float = 0.05  # D loss (running mean) below this ...
    collapse_patience: int = 200  # ... for this many steps = collapse
    wandb: str = "disabled"  # "online" | "offline" | "disabled"
    wandb_project: str = "srlab"
    # several processes (torchrun): BatchNorm statistics over the global batch, not each
    # process's slice (SRResNet, SRGAN's and ESRGAN's discriminators have BN)
    sync_bn: bool = True


def _stage_defaults(stage: str) -> TrainConfig:
    if stage == "srresnet":
        return TrainConfig(stage=stage, early_stop_patience=10)
    if stage == "srgan":
        return TrainConfig(stage=stage, pixel_weight=0.0, perceptual_layer="relu5_4", perceptual_criterion="mse",
                           perceptual_weight=1.0, adversarial="bce", adversarial_weight=1e-3,
                           discriminator={"name": "srgan", "input_size": 96}, init_from="auto")
    if stage == "rrdb":
        return TrainConfig(stage=stage, generator={"name": "rrdbnet", "num_block": 23}, pixel_loss="l1",
                           lr_g=2e-4, hr_size=128, milestones=(200_000, 400_000, 600_000, 800_000),
                           early_stop_patience=10)
    if stage == "esrgan":
        return TrainConfig(stage=stage, generator={"name": "rrdbnet", "num_block": 23}, pixel_loss="l1",
                           pixel_weight=1e-2, perceptual_layer="conv5_4", perceptual_weight=1.0,
                           adversarial="ragan", adversarial_weight=5e-3, hr_size=128,
                           discriminator={"name": "vgg", "input_size": 128},
                           milestones=(50_000, 100_000, 200_000, 300_000), init_from="auto")
    raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")


def make_config(stage: str, preset: str = "colab", **overrides) -> TrainConfig:
    """The config of ``stage`` under ``preset``, with keyword overrides on top.

    Presets:
        colab: the papers' models and losses, lengths that fit Colab sessions (resume across them).
        cpu: a laptop without GPU: small fast models with a bicubic residual; the whole
             course in about an hour, still clearly better than bicubic.
        smoke: tiny models, a few steps, random VGG weights: seconds, for CI.
        seed: the primary student project's choices (8 residual blocks, 12 RRDBs,
              relu3_4 / conv3_4, adversarial weight 5e-2, 256 px HR patches).
    """
    cfg = _stage_defaults(stage)
    gan = stage in PRETRAIN_STAGE
    rrdb = stage in ("rrdb", "esrgan")
    if preset == "colab":
        steps = {"srresnet": 100_000, "srgan": 50_000, "rrdb": 100_000, "esrgan": 50_000}[stage]
        cfg = dataclasses.replace(cfg, steps=steps, val_every=1000, ckpt_every=500,
                                  milestones=tuple(m // 4 for m in cfg.milestones) if rrdb else cfg.milestones)
    elif preset == "cpu":
        gen = ({"name": "rrdbnet", "num_block": 4, "num_feat": 32, "bicubic_residual": True} if rrdb
               else {"name": "srresnet", "num_block": 8, "bicubic_residual": True})
        # Measured here (2 cores, fp32): about 13 + 12 + 10 + 20 minutes for the four stages.
        steps = {"srresnet": 1000, "srgan": 400, "rrdb": 1000, "esrgan": 300}[stage]
        cfg = dataclasses.replace(cfg, generator=gen, steps=steps, hr_size=96 if not gan else cfg.hr_size,
                                  batch_size=16 if not gan else 8, lr_g=1e-4 if gan else 5e-4, warmup_steps=0 if gan else 100,
                                  pixel_loss="l1", milestones=() if gan else (700,), val_every=100 if gan else 250,
                                  ckpt_every=100 if gan else 250, ema_decay=0.99)
    elif preset == "smoke":
        gen = ({"name": "rrdbnet", "num_block": 1, "num_feat": 16, "num_grow_ch": 8, "bicubic_residual": True} if rrdb
               else {"name": "srresnet", "num_block": 2, "num_feat": 16, "bicubic_residual": True})
        disc = None
        if gan:
            disc = ({"name": "vgg", "input_size": 128, "num_feat": 8} if rrdb
                    else {"name": "srgan", "input_size": 32, "num_feat": 8})
        cfg = dataclasses.replace(cfg, generator=gen, discriminator=disc, steps=6, batch_size=2,
                                  hr_size=128 if (gan and rrdb) else 32, val_crop=64, vgg_weights=None,
                                  val_every=3, ckpt_every=3, log_every=1, ema_decay=0.9, collapse_patience=3)
    elif preset == "seed":
        gen = {"name": "rrdbnet", "num_block": 12} if rrdb else {"name": "srresnet", "num_block": 8}
        disc = {"name": "vgg", "input_size": 256} if stage == "esrgan" else (
            {"name": "srgan", "input_size": 256} if stage == "srgan" else None)
        layer = {"srgan": "relu3_4", "esrgan": "conv3_4"}.get(stage)
        cfg = dataclasses.replace(cfg, generator=gen, discriminator=disc, hr_size=256,
                                  perceptual_layer=layer or cfg.perceptual_layer,
                                  adversarial_weight=5e-2 if gan else 0.0,
                                  steps={"srresnet": 25_000, "srgan": 45_000, "rrdb": 5_000, "esrgan": 9_000}[stage])
    else:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(cfg, **overrides)


# ---------------------------------------------------------------- helpers


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class CollapseDetector:
    """Flags a discriminator that wins every time: its loss (running mean) stays near zero.

    Then D(real) -> 1 and D(fake) -> 0, the generator's adversarial gradient vanishes and
    it stops learning from D: the failure the primary student project hit within 7 epochs.
    """

    def __init__(self, threshold: float = 0.05, patience: int = 200, momentum: float = 0.9):
        self.threshold, self.patience, self.momentum = threshold, patience, momentum
        self.running, self.low_steps, self.reported = None, 0, False

    def update(self, d_loss: float) -> bool:
        """Feed one D loss; True exactly once, when collapse is first detected."""
        m = self.momentum
        self.running = d_loss if self.running is None else m * self.running + (1 - m) * d_loss
        self.low_steps = self.low_steps + 1 if self.running < self.threshold else 0
        if self.low_steps >= self.patience and not self.reported:
            self.reported = True
            return True
        return False


COLLAPSE_ADVICE = (
    "discriminator collapse: D loss has stayed below {threshold} for {patience} steps, so D "
    "separates real from fake perfectly and the generator's adversarial gradient vanishes. "
    "Try: raise adversarial_weight (the primary student project went from 1e-3 to 5e-2), "
    "lower lr_d, start from a better pretrained generator, or use the relativistic loss (stage esrgan)."
)


def pick_amp(device: torch.device, amp: str = "auto") -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a grad scaler) for this device.

    auto: bf16 on CUDA GPUs that have it, else fp16 with a grad scaler; bf16 on CPUs with
    AMX (2-3x faster convolutions); fp32 elsewhere (on a CPU with only AVX512-BF16, bf16
    autocast measured 10-30% *slower* than fp32 for SRResNet: see ``python -m srlab.bench train``).
    """
    if amp == "off":
        return None, False
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if amp == "fp16" or (amp == "auto" and not bf16):
            return torch.float16, True
        return torch.bfloat16, False
    if amp == "fp16":
        raise ValueError("fp16 autocast is for CUDA; use amp='bf16' or 'off' on a CPU")
    if amp == "bf16":
        return torch.bfloat16, False
    try:  # AVX512-BF16 alone measured no faster than fp32 here; AMX tiles are what pay off
        native = bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        native = False
    return (torch.bfloat16 if native else None), False


def _build_discriminator(spec: dict) -> nn.Module:
    spec = dict(spec)
    name = spec.pop("name")
    classes = {"srgan": SRGANDiscriminator, "vgg": VGGStyleDiscriminator}
    if name not in classes:
        raise ValueError(f"unknown discriminator {name!r}; choose one of {sorted(classes)}")
    return classes[name](**spec)


def _build_generator(spec: dict, scale: int) -> nn.Module:
    spec = dict(spec)
    return build_generator(spec.pop("name"), scale=scale, **spec)


def _atomic_save(obj, path: Path) -> None:
    """Write to a temporary file, then rename: a run cut off mid-write keeps the old file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _schedule(cfg: TrainConfig):
    """Learning-rate factor at a step: linear warm-up, then halving at each milestone."""
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        return warm * 0.5 ** sum(step >= m for m in cfg.milestones)
    return factor


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "python": repr(random.getstate())}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    import ast

    random.setstate(ast.literal_eval(state["python"]))


# ---------------------------------------------------------------- the trainer


class Trainer:
    """Owns models, optimisers and data for one run in ``out_dir``; ``fit()`` trains it.

    Args:
        cfg: the run's configuration.
        out_dir: run folder: ``last.pt``, ``best.pt``, ``history.jsonl``, ``samples/``.
        device: "cuda", "cpu", ... (default: CUDA when available; ``cuda:LOCAL_RANK`` under torchrun).
        progress: show a tqdm progress bar.

    In a process group (see :func:`train`), each rank trains on its slice of the global batch
    with G and D in DistributedDataParallel (``self.G_train``, ``self.D_train``); ``self.G`` and
    ``self.D`` stay the plain modules, so checkpoints have no ``module.`` prefix. Only rank 0
    (``self.main``) updates the EMA, validates, logs and saves.
    """

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, device: str | None = None, progress: bool = True):
        if cfg.stage not in STAGES:
            raise ValueError(f"unknown stage {cfg.stage!r}; choose one of {', '.join(STAGES)}")
        self.cfg, self.out_dir, self.progress = cfg, Path(out_dir), progress
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0
        rank_slice(cfg.batch_size, self.rank, self.world)  # fails early when the global batch does not split
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(distributed.device_for_rank(device))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(cfg.seed)
        self.amp_dtype, use_scaler = pick_amp(self.device, cfg.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

        self.G = _build_generator(cfg.generator, cfg.scale).to(self.device, memory_format=self.memory_format)
        self.ema = AveragedModel(self.G, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.G = self._sync_bn(self.G)  # after the EMA copy: the EMA only ever runs in eval mode
        self.D = None
        if cfg.adversarial:
            if not cfg.discriminator:
                raise ValueError(f"stage {cfg.stage} uses an adversarial loss but has no discriminator")
            self.D = _build_discriminator(cfg.discriminator).to(self.device, memory_format=self.memory_format)
            if self.D.input_size != cfg.hr_size:
                raise ValueError(f"discriminator input_size {self.D.input_size} != hr_size {cfg.hr_size}")
            self.D = self._sync_bn(self.D)
        self.perceptual = None
        if cfg.perceptual_weight:
            if cfg.vgg_weights is None and self.main:
                print("note: perceptual loss uses a RANDOM VGG-19 (vgg_weights=None): smoke test only, "
                      "not a perceptual metric")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # said above, in words
                self.perceptual = L.PerceptualLoss(cfg.perceptual_layer, cfg.vgg_weights,
                                                   cfg.perceptual_criterion).to(self.device)

        opt = lambda params, lr: torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas))
        self.opt_g = opt(self.G.parameters(), cfg.lr_g)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, _schedule(cfg))
        self.opt_d = opt(self.D.parameters(), cfg.lr_d) if self.D else None
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, _schedule(cfg)) if self.D else None

        self.patches, val_images = self._training_data(cfg)
        self.val_pairs = center_crops(val_images, cfg.val_crop, cfg.scale)

        self.step, self.best_psnr, self.bad_validations = 0, -math.inf, 0
        self.collapse = CollapseDetector(cfg.collapse_threshold, cfg.collapse_patience)
        self.history_path = self.out_dir / "history.jsonl"
        self.wandb_run = None
        # DDP broadcasts rank 0's weights here; loading a checkpoint later is fine, as every rank loads the same one.
        self.G_train = distributed.wrap(self.G, self.device)
        self.D_train = distributed.wrap(self.D, self.device) if self.D is not None else None

    def _sync_bn(self, model: nn.Module) -> nn.Module:
        return distributed.sync_batchnorm(model, self.device) if self.cfg.sync_bn else model

    @staticmethod
    def _training_data(cfg: TrainConfig):
        """(batch source, validation images). Validation: ``val_data``, else the embedded
        photo held out of training (embedded data or a patch store), else a folder's last image."""
        from .data import embedded_images

        val_images = list(load_training_images(cfg.val_data).values()) if cfg.val_data else None
        if is_patch_store(cfg.data):
            patches = StorePatches(cfg.data, cfg.hr_size, cfg.scale, cfg.batch_size, cfg.seed, cfg.degradation)
            return patches, val_images or [embedded_images((VALIDATION_IMAGE,))[VALIDATION_IMAGE]]
        train_images = load_training_images(cfg.data, exclude=(VALIDATION_IMAGE,) if cfg.data is None else ())
        if val_images is None and cfg.data is None:
            val_images = [embedded_images((VALIDATION_IMAGE,))[VALIDATION_IMAGE]]
        elif val_images is None:  # a folder without a validation folder: hold out its last image
            *train_names, val_name = sorted(train_images)
            if not train_names:
                raise ValueError(f"{cfg.data} has one image: pass val_data, or add images")
            val_images = [train_images.pop(val_name)]
        patches = RandomPatches(train_images.values(), cfg.hr_size, cfg.scale, cfg.batch_size, cfg.seed,
                                cfg.degradation)
        return patches, val_images

    # ------------------------------------------------------------ one step

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        """One generator update (and one discriminator update for GAN stages) on this rank's
        slice of the batch; returns losses (averaged over ranks).

        Distributed, G's forward goes through DDP (its gradients are averaged) and so does D's
        own step; in G's step D is called unwrapped, with its parameters frozen: D gets no
        gradient there, and a DDP D would wait for gradients that never come.
        """
        cfg, G, D = self.cfg, self.G_train, self.D
        lr = lr.to(self.device, memory_format=self.memory_format)  # (N, 3, h, w)
        hr = hr.to(self.device, memory_format=self.memory_format)  # (N, 3, h*s, w*s)
        G.train()
        logs = {}
        if D is not None:
            D.requires_grad_(False)  # G's step must not accumulate gradients in D
        with self._autocast():
            sr = G(lr).float()  # (N, 3, h*s, w*s); losses in fp32
            loss = cfg.pixel_weight * L.pixel_loss(sr, hr, cfg.pixel_loss) if cfg.pixel_weight else sr.new_zeros(())
            logs["loss_pixel"] = loss.item()
            if self.perceptual is not None:
                perceptual = self.perceptual(sr, hr)
                loss = loss + cfg.perceptual_weight * perceptual
                logs["loss_perceptual"] = perceptual.item()
            if D is not None:
                fake_logits = distributed.gather_batch(D(sr).float())  # (B, 1): the global batch's
                if cfg.adversarial == "ragan":
                    real_logits = distributed.gather_batch(D(hr).float().detach())  # (B, 1)
                    adv = L.relativistic_generator_loss(real_logits, fake_logits)
                else:
                    adv = L.generator_bce_loss(fake_logits)
                loss = loss + cfg.adversarial_weight * adv
                logs["loss_adv"] = adv.item()
        self._backward_and_step(loss, self.opt_g, G)
        logs["loss_g"] = loss.item()

        if D is not None:
            D.requires_grad_(True)
            with self._autocast():
                # (B, 1) each: the relativistic loss compares with the global batch's mean logit
                real_logits = distributed.gather_batch(self.D_train(hr).float())
                fake_logits = distributed.gather_batch(self.D_train(sr.detach()).float())
                if cfg.adversarial == "ragan":
                    d_loss = L.relativistic_discriminator_loss(real_logits, fake_logits)
                else:
                    d_loss = L.discriminator_bce_loss(real_logits, fake_logits)
            self._backward_and_step(d_loss, self.opt_d, D)
            logs.update(loss_d=d_loss.item(), d_real=torch.sigmoid(real_logits).mean().item(),
                        d_fake=torch.sigmoid(fake_logits).mean().item())
        self.scaler.update()
        self.sched_g.step()
        if self.sched_d:
            self.sched_d.step()
        if self.main:  # only rank 0 validates and saves the EMA; every rank's G is the same
            self.ema.update_parameters(self.G)
        return distributed.mean_over_ranks(logs, self.device)

    def _backward_and_step(self, loss: torch.Tensor, opt, model: nn.Module) -> None:
        if not distributed.all_finite(loss):  # every rank stops together, or the others would hang
            raise TrainingDiverged(
                f"loss became {loss.item()} at step {self.step + 1}; nothing was saved after the last good "
                f"checkpoint ({self.out_dir / 'last.pt'}). Lower the learning rate, set grad_clip, or use amp='off'.")
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
        self.scaler.step(opt)

    # ------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self, model: nn.Module | None = None) -> dict[str, float]:
        """Mean PSNR/SSIM on Y (crop_border=scale) of the EMA generator, in fp32."""
        model = (model or self.ema.module).eval()
        psnrs, ssims = [], []
        for lr, hr in self.val_pairs:
            sr = model(lr.to(self.device)).float().clamp(0, 1)  # (1, 3, H, W)
            psnrs.append(batch_psnr(sr.cpu(), hr, crop_border=self.cfg.scale).item())
            ssims.append(batch_ssim(sr.cpu(), hr, crop_border=self.cfg.scale).item())
        return {"val_psnr": float(np.mean(psnrs)), "val_ssim": float(np.mean(ssims))}

    def save_samples(self) -> Path:
        """The first validation crop: LR (nearest), EMA output, HR, side by side, as a PNG."""
        from .images import to_image, write_image

        lr, hr = self.val_pairs[0]
        with torch.no_grad():
            sr = self.ema.module.eval()(lr.to(self.device)).float().cpu().clamp(0, 1)
        up = torch.nn.functional.interpolate(lr, scale_factor=self.cfg.scale, mode="nearest")
        row = torch.cat([up, sr, hr], dim=3)  # (1, 3, H, 3W)
        return write_image(self.out_dir / "samples" / f"step_{self.step:07d}.png", to_image(row))

    # ------------------------------------------------------------ checkpoints

    def state(self) -> dict:
        """Plain dict of tensors and numbers: loads with ``torch.load(weights_only=True)``."""
        ema = {k.removeprefix("module."): v for k, v in self.ema.state_dict().items() if k.startswith("module.")}
        return {
            "generator": self.G.state_dict(),
            "generator_ema": ema,
            "ema_n_averaged": int(self.ema.n_averaged),
            "discriminator": self.D.state_dict() if self.D else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict() if self.sched_d else None,
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "best_psnr": self.best_psnr,
            "bad_validations": self.bad_validations,
            "rng": _rng_state(),
            "config": asdict(self.cfg),
        }

    def save(self, name: str = "last.pt") -> Path:
        """Write a checkpoint atomically; distributed, rank 0 writes it and the others do nothing."""
        path = self.out_dir / name
        if self.main:
            _atomic_save(self.state(), path)
        return path

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save` (same architecture)."""
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        self.G.load_state_dict(ckpt["generator"])
        self.ema.module.load_state_dict(ckpt["generator_ema"])
        self.ema.n_averaged.fill_(ckpt["ema_n_averaged"])
        if self.D is not None:
            self.D.load_state_dict(ckpt["discriminator"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            self.sched_d.load_state_dict(ckpt["sched_d"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.sched_g.load_state_dict(ckpt["sched_g"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.best_psnr = ckpt["step"], ckpt["best_psnr"]
        self.bad_validations = ckpt["bad_validations"]
        _set_rng_state(ckpt["rng"])

    def init_generator(self, path: str | Path) -> None:
        """Start G (and its EMA) from another run's weights: the pixel-pretrained model."""
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        weights = ckpt.get("generator_ema") or ckpt["generator"]
        self.G.load_state_dict(weights)
        self.ema.module.load_state_dict(weights)

    # ------------------------------------------------------------ logging

    def _log(self, record: dict) -> None:
        if not self.main:
            return
        with open(self.history_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def _trim_history(self) -> None:
        """After a resume, drop records newer than the checkpoint (they will be redone)."""
        if self.history_path.exists():
            keep = [r for r in read_history(self.history_path) if r["step"] <= self.step]
            self.history_path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def _start_wandb(self) -> None:
        if self.cfg.wandb == "disabled" or not self.main:
            return
        import wandb

        self.wandb_run = wandb.init(project=self.cfg.wandb_project, mode=self.cfg.wandb, dir=str(self.out_dir),
                                    config=asdict(self.cfg), name=f"{self.cfg.stage}-{self.out_dir.name}",
                                    resume="allow", id=_wandb_id(self.out_dir))

    # ------------------------------------------------------------ the loop

    def fit(self, stop_at: int | None = None) -> dict:
        """Train until ``cfg.steps`` (or ``stop_at``, e.g. to split a run across sessions),
        early stopping, or divergence. Returns a summary dict."""
        cfg = self.cfg
        end = min(cfg.steps, stop_at or cfg.steps)
        self._start_wandb()
        reason = "finished"
        bar = tqdm(total=cfg.steps, initial=self.step, desc=cfg.stage, disable=not (self.progress and self.main),
                   dynamic_ncols=True)
        t0 = time.perf_counter()
        try:
            while self.step < end:
                lr, hr = self.patches.batch(self.step, self.rank, self.world)  # this rank's slice
                logs = self.train_step(lr, hr)
                self.step += 1
                bar.update(1)
                if "loss_d" in logs and self.collapse.update(logs["loss_d"]) and self.main:
                    msg = COLLAPSE_ADVICE.format(threshold=cfg.collapse_threshold, patience=cfg.collapse_patience)
                    warnings.warn(f"step {self.step}: {msg}", stacklevel=2)
                    self._log({"step": self.step, "event": "discriminator_collapse"})
                if self.step % cfg.log_every == 0 or self.step == end:
                    self._log({"step": self.step, "lr_g": self.sched_g.get_last_lr()[0],
                               "time": round(time.perf_counter() - t0, 3), **logs})
                    bar.set_postfix({k.removeprefix("loss_"): f"{v:.4g}" for k, v in logs.items() if k.startswith("loss")})
                if self.step % cfg.val_every == 0 or self.step == end:
                    if self._validate_and_checkpoint():
                        reason = "early_stop"
                        break
                elif self.step % cfg.ckpt_every == 0:
                    self.save("last.pt")
        finally:
            bar.close()
            if self.wandb_run is not None:
                self.wandb_run.finish()
                self.wandb_run = None
        best = distributed.from_main(self.best_psnr, self.device)  # only rank 0 validated
        return {"step": self.step, "best_psnr": best, "stopped": reason, "out_dir": str(self.out_dir)}

    def _validate_and_checkpoint(self) -> bool:
        """Validate, save best/last, sample (rank 0); True on every rank when early stopping says stop."""
        stop = self._validate_and_save() if self.main else False
        return bool(distributed.from_main(float(stop), self.device))  # the others wait here for rank 0

    def _validate_and_save(self) -> bool:
        metrics = self.validate()
        self._log({"step": self.step, **metrics})
        self.save_samples()
        improved = metrics["val_psnr"] > self.best_psnr
        if improved:
            self.best_psnr, self.bad_validations = metrics["val_psnr"], 0
        else:
            self.bad_validations += 1
        if improved:
            self.save("best.pt")
        self.save("last.pt")
        patience = self.cfg.early_stop_patience
        # Early stopping only for pixel stages: GAN stages trade PSNR for texture on purpose.
        return bool(patience) and self.cfg.adversarial is None and self.bad_validations >= patience


def _wandb_id(out_dir: Path) -> str:
    """A stable W&B run id per run folder, so a resumed run continues the same W&B run."""
    import hashlib

    return hashlib.sha1(str(out_dir.resolve()).encode()).hexdigest()[:12]


def read_history(path: str | Path) -> list[dict]:
    """The records of a ``history.jsonl``; a line cut off by a crash is ignored."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, device: str | None = None,
          progress: bool = True, stop_at: int | None = None) -> dict:
    """Train ``cfg`` in ``out_dir``; ``resume=True`` continues from ``out_dir/last.pt``.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), this process joins the
    process group (NCCL on GPUs, Gloo on CPUs), trains its share and leaves the group at
    the end; ``cfg.batch_size`` is the global batch. A checkpoint resumes with any number
    of processes.
    """
    device = distributed.device_for_rank(device)
    started = distributed.start(device)
    try:
        summary = _train(cfg, Path(out_dir), resume, device, progress, stop_at)
    except BaseException:
        distributed.finish(started, wait=False)  # no barrier: the other ranks may never get there
        raise
    distributed.finish(started)
    return summary


def _train(cfg: TrainConfig, out_dir: Path, resume: bool, device: str, progress: bool, stop_at: int | None) -> dict:
    say = print if distributed.is_main() else (lambda *a, **k: None)
    last = out_dir / "last.pt"
    resuming = resume and last.exists()
    if resume and not resuming:
        say(f"no checkpoint at {last}: starting a new {cfg.stage} run")
    init = None if resuming or not cfg.init_from else _resolve_init(cfg, out_dir)  # fail before building
    trainer = Trainer(cfg, out_dir, device=device, progress=progress)
    if resuming:
        trainer.load(last)
        if trainer.main:
            trainer._trim_history()
        say(f"resuming {cfg.stage} from step {trainer.step} ({last})"
            + (f" with {trainer.world} processes" if trainer.world > 1 else ""))
    else:
        if trainer.main:
            trainer.history_path.unlink(missing_ok=True)  # a fresh run starts a fresh history
        if init is not None:
            trainer.init_generator(init)
            say(f"generator initialised from {init}")
    return trainer.fit(stop_at=stop_at)


def _resolve_init(cfg: TrainConfig, out_dir: Path) -> Path | None:
    if cfg.init_from == "none":
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
            f"pass --init CKPT, or --init none to start from scratch.")
    return path


# ---------------------------------------------------------------- using trained weights


def load_generator(path: str | Path, ema: bool = True, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the generator of an srlab checkpoint; returns ``(model in eval mode, config dict)``.

    Uses the EMA weights when the checkpoint has them (they validate better), unless ``ema=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable srlab checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or "config" not in ckpt or "generator" not in ckpt:
        raise ValueError(f"{path} is not an srlab checkpoint (no 'config'/'generator' entries)")
    return generator_from_checkpoint(ckpt, ema, device)


def generator_from_checkpoint(ckpt: dict, ema: bool = True, device: str = "cpu") -> tuple[nn.Module, dict]:
    """:func:`load_generator` for a checkpoint dict already read (``torch.load(weights_only=True)``)."""
    cfg = ckpt["config"]
    model = _build_generator(cfg["generator"], cfg["scale"])
    weights = ckpt.get("generator_ema") if ema and ckpt.get("generator_ema") else ckpt["generator"]
    model.load_state_dict(weights)
    return model.to(device).eval(), cfg


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
