"""What a training run is: :class:`TrainConfig`, and the recipes of every stage and preset as tables.

A config is built in three layers, each a plain table you can read here or print with
``python -m srlab presets [STAGE]``:

1. :data:`PAPERS`: the recipe of each stage as its paper (and the authors' reference code,
   BasicSR) gives it. The ``colab`` preset is these recipes, shortened.
2. :data:`ADVERSARIES`: what choosing an adversarial loss changes (``wgan-gp`` needs a critic
   without batch norm, its own Adam betas, several critic updates per generator update), and
   :data:`FEATURE_MATCHING`: what the offline perceptual substitute changes
   (``perceptual="discriminator"``), under the preset's own values.
3. :data:`PRESETS`: per preset and stage, the values that differ from the paper, and why.

Any field can then be overridden: ``make_config(stage, preset, steps=10)`` in Python,
``--set steps=10`` (or ``--set generator.num_block=8``) on the command line.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field, fields

__all__ = [
    "STAGES",
    "PRESET_NAMES",
    "PRETRAIN_STAGE",
    "PERCEPTUAL_KINDS",
    "EMBEDDED_PRESETS",
    "VALIDATION_IMAGE",
    "TrainConfig",
    "PAPERS",
    "ADVERSARIES",
    "FEATURE_MATCHING",
    "PRESETS",
    "make_config",
    "settings_overrides",
    "parse_setting",
    "presets_table",
]

STAGES = ("srresnet", "srgan", "rrdb", "esrgan")
PRETRAIN_STAGE = {"srgan": "srresnet", "esrgan": "rrdb"}  # a GAN stage starts from its pixel stage's generator
PERCEPTUAL_KINDS = ("vgg", "discriminator")  # TrainConfig.perceptual
# presets that train and evaluate on the photos scikit-image ships (nothing downloaded)
EMBEDDED_PRESETS = ("quick", "smoke")
DOWNLOADED_DATA_PRESETS = ("colab",)  # the papers' runs: DIV2K, never the embedded photos


def check_training_data(preset: str, data: str | None) -> None:
    """Refuse to train a :data:`DOWNLOADED_DATA_PRESETS` preset on the embedded photos (``data=None``):
    hours of GPU time on 6 small photos would only overfit them."""
    if data is None and preset in DOWNLOADED_DATA_PRESETS:
        raise ValueError(
            f"the {preset} preset trains on DIV2K, not on the 6 embedded photos: run notebook 01_data_prep "
            f"first (it downloads DIV2K and builds the patch store), or pass --data FOLDER_OR_PATCH_STORE"
        )


VALIDATION_IMAGE = "coffee"  # the embedded photo held out of training for validation
# A training call of a notebook pauses after this long (last.pt, a sample; rerun to continue):
# a free Colab session lasts a few hours and drops an idle or long one, so each gets its own result.
SESSION_BUDGETS = {"colab": "50m"}


@dataclass
class TrainConfig:
    """Everything a run needs; saved inside every checkpoint. The defaults here are only the
    fallback of the tables below: every stage's values come from :data:`PAPERS`."""

    stage: str = "srresnet"
    generator: dict = field(default_factory=lambda: {"name": "srresnet", "num_block": 16})
    discriminator: dict | None = (
        None  # {"name": "srgan" | "vgg", "input_size": ..., "num_feat": ..., "batch_norm": ...}
    )
    scale: int = 4
    # data
    data: str | None = None  # folder of HR images or a patch store; None = the embedded photos
    degradation: str = "bicubic"  # how LR is made: bicubic | blur_bicubic | realesrgan
    usm_target: bool = False  # Real-ESRGAN: pixel and perceptual losses against the USM-sharpened HR
    val_data: str | None = None  # folder of validation HR images; None = held-out embedded photo
    hr_size: int = 96
    batch_size: int = 16
    val_crop: int = 192
    # losses: total = pixel_weight * pixel + perceptual_weight * perceptual + adversarial_weight * adversarial
    pixel_loss: str = "mse"
    pixel_weight: float = 1.0
    perceptual_layer: str | None = None
    perceptual_criterion: str = "l1"
    perceptual_weight: float = 0.0
    vgg_weights: str | None = "imagenet"  # None = random VGG: smoke tests only
    # what the perceptual term compares: "vgg" (VGG-19 features, the papers') or "discriminator"
    # (feature matching on D's own blocks, pix2pixHD: the offline substitute, GAN stages only)
    perceptual: str = "vgg"
    adversarial: str | None = None  # "bce" (SRGAN), "ragan" (ESRGAN) or "wgan-gp"
    adversarial_weight: float = 0.0
    n_critic: int = 1  # discriminator updates per generator update
    gp_weight: float = 10.0  # wgan-gp: gradient penalty weight lambda
    # optimisation
    steps: int = 100_000  # batches; with n_critic > 1 the generator is updated every n_critic-th
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple = (0.9, 0.999)  # Adam, generator
    betas_d: tuple | None = None  # Adam, discriminator; None = betas
    warmup_steps: int = 0
    milestones: tuple = ()  # the learning rates are multiplied by lr_gamma at each of these steps
    lr_gamma: float = 0.5
    grad_clip: float | None = None
    ema_decay: float = 0.999  # srlab's choice for every stage (BasicSR's); the SRGAN paper has no EMA
    init_from: str | None = None  # checkpoint to start G from; "auto" = this preset's pixel stage
    # engine
    amp: str = "auto"  # "auto" | "bf16" | "fp16" | "off"
    channels_last: bool = True
    loader_workers: int | None = None  # processes building batches ahead (srlab.pipeline); None: 2 on a GPU, 0 on a CPU
    # where LR is made from HR: "data" (per image, in the batch builder), "device" (the whole batch
    # on the training device, srlab.degrade_batch), "auto": "device" on a GPU for bicubic and realesrgan
    degrade_on: str = "auto"
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


# ---------------------------------------------------------------- 1. the papers' recipes

SRRESNET_16 = {"name": "srresnet", "num_block": 16}
RRDBNET_23 = {"name": "rrdbnet", "num_block": 23}

PAPERS: dict[str, dict] = {
    # Ledig et al. 2017, sec. 3.2: MSE, Adam 1e-4, 10^6 updates on batches of 16 HR 96x96 crops.
    "srresnet": dict(
        generator=SRRESNET_16,
        pixel_loss="mse",
        pixel_weight=1.0,
        steps=1_000_000,
        batch_size=16,
        hr_size=96,
        lr_g=1e-4,
        early_stop_patience=10,  # srlab's: stop a pixel stage when validation stops improving
    ),
    # SRGAN: VGG54 content loss (MSE) + 1e-3 BCE; 10^5 updates at 1e-4, then 10^5 at 1e-5.
    "srgan": dict(
        generator=SRRESNET_16,
        discriminator={"name": "srgan", "input_size": 96},
        pixel_weight=0.0,
        perceptual_layer="relu5_4",
        perceptual_criterion="mse",
        perceptual_weight=1.0,
        adversarial="bce",
        adversarial_weight=1e-3,
        steps=200_000,
        batch_size=16,
        hr_size=96,
        lr_g=1e-4,
        lr_d=1e-4,
        milestones=(100_000,),
        lr_gamma=0.1,
        init_from="auto",
    ),
    # Wang et al. 2018 (ESRGAN), PSNR-oriented RRDBNet: L1, Adam 2e-4 halved every 2x10^5 updates,
    # batches of 16 HR 128 crops; 10^6 updates in total (BasicSR's train_RRDBNet_PSNR_x4).
    "rrdb": dict(
        generator=RRDBNET_23,
        pixel_loss="l1",
        pixel_weight=1.0,
        steps=1_000_000,
        batch_size=16,
        hr_size=128,
        lr_g=2e-4,
        milestones=(200_000, 400_000, 600_000, 800_000),
        lr_gamma=0.5,
        early_stop_patience=10,  # srlab's
    ),
    # ESRGAN: 1e-2 L1 + 1.0 VGG conv5_4 (before activation, L1) + 5e-3 RaGAN; Adam 1e-4 halved at
    # 50k, 100k, 200k, 300k; 4x10^5 updates (BasicSR's train_ESRGAN_x4).
    "esrgan": dict(
        generator=RRDBNET_23,
        discriminator={"name": "vgg", "input_size": 128},
        pixel_loss="l1",
        pixel_weight=1e-2,
        perceptual_layer="conv5_4",
        perceptual_criterion="l1",
        perceptual_weight=1.0,
        adversarial="ragan",
        adversarial_weight=5e-3,
        steps=400_000,
        batch_size=16,
        hr_size=128,
        lr_g=1e-4,
        lr_d=1e-4,
        milestones=(50_000, 100_000, 200_000, 300_000),
        lr_gamma=0.5,
        init_from="auto",
    ),
}

# ---------------------------------------------------------------- 2. what an adversarial loss brings

ADVERSARIES: dict[str, dict] = {
    "bce": dict(n_critic=1, betas_d=None),  # SRGAN: -log D(G(x)), D a real/fake classifier
    "ragan": dict(n_critic=1, betas_d=None),  # ESRGAN: relativistic average, D(real) vs mean D(fake)
    # Gulrajani et al. 2017, Algorithm 1: lambda = 10, n_critic = 5, Adam betas (0, 0.9); the critic
    # has no batch norm (the penalty is per sample) and outputs a raw score.
    "wgan-gp": dict(n_critic=5, betas_d=(0.0, 0.9), gp_weight=10.0, discriminator={"batch_norm": False}),
}

# With feature matching on D's blocks in place of the VGG loss (``--perceptual discriminator``):
# D's features know nothing of colour or exact position, so an L1 pixel term anchors the output
# (ESRGAN's 1e-2 next to its perceptual term); the adversarial term, which the papers weight
# 1e-3 / 5e-3 next to a VGG loss that already carries ImageNet's texture statistics, has to teach
# the texture here: 5e-2 (the primary student project's value), with twice the papers' learning
# rates so a short run moves. Measured on the quick preset's SRResNet (Set14, 300 steps): 1e-3 ... 1e-2
# lowered NIQE by 0.75-0.79, 5e-2 at 2e-4 by 1.23, for 0.4 dB of PSNR-Y. A preset's values come on top.
FEATURE_MATCHING = dict(
    perceptual_weight=1.0, pixel_loss="l1", pixel_weight=1e-2, adversarial_weight=5e-2, lr_g=2e-4, lr_d=2e-4
)

# ---------------------------------------------------------------- 3. the presets

CPU_SRRESNET = {"name": "srresnet", "num_block": 8, "bicubic_residual": True}
CPU_RRDBNET = {"name": "rrdbnet", "num_block": 4, "num_feat": 32, "bicubic_residual": True}
QUICK_SRRESNET = {"name": "srresnet", "num_block": 6, "num_feat": 32, "bicubic_residual": True}
QUICK_RRDBNET = {"name": "rrdbnet", "num_block": 2, "num_feat": 32, "num_grow_ch": 16, "bicubic_residual": True}
# 1600 steps: measured on the whole held-out coffee (fp32, PSNR-Y over bicubic's 27.29 dB): SRResNet
# +0.91 / +1.01 / +1.08 dB after 600 / 1200 / 1600 steps (lr 2e-3: +0.98 after 1200), RRDB +0.91 / +1.10
# after 600 / 1200; on the validation crop both were already 1.8 dB above bicubic after 600.
QUICK_PIXEL = dict(
    pixel_loss="l1",
    steps=1600,
    batch_size=8,
    hr_size=64,
    lr_g=1e-3,
    warmup_steps=50,
    milestones=(1200,),
    val_every=200,
    ckpt_every=200,
    ema_decay=0.99,
    early_stop_patience=None,
)
QUICK_GAN = dict(  # the losses and learning rates: FEATURE_MATCHING; 600 steps (measured: see "quick")
    perceptual="discriminator",
    steps=600,
    batch_size=8,
    hr_size=64,
    milestones=(),
    val_every=150,
    ckpt_every=150,
    ema_decay=0.99,
)
SMOKE_SRRESNET = {"name": "srresnet", "num_block": 2, "num_feat": 16, "bicubic_residual": True}
SMOKE_RRDBNET = {"name": "rrdbnet", "num_block": 1, "num_feat": 16, "num_grow_ch": 8, "bicubic_residual": True}

PRESETS: dict[str, dict[str, dict]] = {
    # The papers' models and losses, sized for free Colab sessions by FLOP count (srlab.plan,
    # `python -m srlab.bench plan`: a T4 in fp16 at 15% of its peak): notebooks 03 and 04 each fit
    # one 50-minute budget (21 and 43 + 4 minutes), 05 two (RRDB 45, ESRGAN 46 minutes). A slower
    # GPU pauses at the budget with a checkpoint; rerunning continues. More steps: --set steps=N.
    "colab": {
        "srresnet": dict(steps=100_000, val_every=1000),
        "srgan": dict(steps=36_000, milestones=(18_000,), val_every=1000),  # the paper's 10x drop, at half
        "rrdb": dict(steps=15_000, milestones=(10_000,), val_every=1000),
        "esrgan": dict(steps=9_000, milestones=(4_500,), val_every=1000),
    },
    # A laptop without a GPU: small models with a bicubic residual (the untrained net is
    # bicubic), L1, a higher learning rate, still clearly better than bicubic. The four stages
    # on 2 cores: 13 minutes with AMX bf16 (measured: 3.4 + 3.2 + 3.0 + 3.1), about an hour in
    # fp32 (measured 13 + 12 + 10 + 20 minutes when ESRGAN had 300 steps and a 64-channel D).
    "cpu": {
        "srresnet": dict(
            generator=CPU_SRRESNET,
            pixel_loss="l1",
            steps=1000,
            lr_g=5e-4,
            warmup_steps=100,
            milestones=(700,),
            val_every=250,
            ckpt_every=250,
            ema_decay=0.99,
        ),
        "srgan": dict(
            generator=CPU_SRRESNET,
            pixel_loss="l1",
            steps=400,
            batch_size=8,
            milestones=(),
            val_every=100,
            ckpt_every=100,
            ema_decay=0.99,
        ),
        "rrdb": dict(
            generator=CPU_RRDBNET,
            steps=1000,
            hr_size=96,
            lr_g=5e-4,
            warmup_steps=100,
            milestones=(700,),
            val_every=250,
            ckpt_every=250,
            ema_decay=0.99,
        ),
        # A 32-channel discriminator for the 32-channel RRDBNet: ESRGAN's 64-channel one did not learn
        # in 300 steps with feature matching (D's logits equal on SR and HR, NIQE -0.3); this one does.
        "esrgan": dict(
            generator=CPU_RRDBNET,
            discriminator={"name": "vgg", "input_size": 128, "num_feat": 32},
            steps=500,
            batch_size=8,
            milestones=(),
            val_every=100,
            ckpt_every=100,
            ema_decay=0.99,
        ),
    },
    # The README's main command on a CPU: all six notebooks in under 15 minutes on 2 cores, on
    # the embedded photos, offline (feature matching on the discriminator, no ImageNet VGG).
    # Small models with a bicubic residual, 64 px patches; enough for the pixel models to beat
    # bicubic by over 1 dB and for the GAN stages to change the texture (NIQE) visibly.
    "quick": {
        "srresnet": dict(generator=QUICK_SRRESNET, **QUICK_PIXEL),
        # 1200 steps: measured on the whole held-out coffee from the 1600-step SRResNet (fp32, seeds 0, 1),
        # NIQE 1.53 / 1.65 below its 6.94 for -0.37 / -0.34 dB; from the 600-step one (fp32 seeds 0-3,
        # bf16 seeds 0, 1) 1.53 to 1.99 below; at 600 GAN steps seed 2 was only 0.18 below (noise).
        "srgan": dict(
            generator=QUICK_SRRESNET,
            discriminator={"name": "srgan", "input_size": 64, "num_feat": 32},
            **{**QUICK_GAN, "steps": 1200},
        ),
        "rrdb": dict(generator=QUICK_RRDBNET, **QUICK_PIXEL),
        # The standard GAN loss, not ESRGAN's relativistic one: measured on the whole held-out coffee from
        # the 600-step RRDB, seeds 0-3, fp32 and bf16 (SRLAB_CPU_AMX=1), NIQE change against the RRDB
        # model: BCE -0.63 to -1.19 (8 of 8 below, -0.36 to -0.77 dB); RaGAN +0.25 to -0.84 (lr_d 2e-4),
        # +0.96 to -1.31 (lr_d 1e-4): on a 2-block RRDBNet with batch 8 the relativistic loss moves either
        # way. From the 1600-step RRDB (NIQE 7.20): BCE -1.27 / -1.83 (fp32 seeds 0, 1), -1.22 (bf16 seed 2).
        "esrgan": dict(
            generator=QUICK_RRDBNET,
            discriminator={"name": "vgg", "input_size": 64, "num_feat": 32},
            adversarial="bce",
            **QUICK_GAN,
        ),
    },
    # Seconds, for CI: tiny models and discriminators, a random VGG (not a perceptual metric).
    "smoke": {
        stage: dict(
            generator=SMOKE_RRDBNET if stage in ("rrdb", "esrgan") else SMOKE_SRRESNET,
            discriminator={
                "srgan": {"name": "srgan", "input_size": 32, "num_feat": 8},
                "esrgan": {"name": "vgg", "input_size": 128, "num_feat": 8},
            }.get(stage),
            steps=6,
            batch_size=2,
            hr_size=128 if stage == "esrgan" else 32,
            val_crop=64,
            vgg_weights=None,
            log_every=1,
            val_every=3,
            ckpt_every=3,
            ema_decay=0.9,
            collapse_patience=3,
        )
        for stage in STAGES
    },
    # The primary student project's choices: 8 residual blocks, 12 RRDBs, relu3_4 / conv3_4,
    # adversarial weight 5e-2 (raised from the papers' after D collapsed), 256 px HR patches.
    "seed": {
        "srresnet": dict(generator={"name": "srresnet", "num_block": 8}, hr_size=256, steps=25_000),
        "srgan": dict(
            generator={"name": "srresnet", "num_block": 8},
            discriminator={"name": "srgan", "input_size": 256},
            hr_size=256,
            perceptual_layer="relu3_4",
            adversarial_weight=5e-2,
            steps=45_000,
        ),
        "rrdb": dict(generator={"name": "rrdbnet", "num_block": 12}, hr_size=256, steps=5_000),
        "esrgan": dict(
            generator={"name": "rrdbnet", "num_block": 12},
            discriminator={"name": "vgg", "input_size": 256},
            hr_size=256,
            perceptual_layer="conv3_4",
            adversarial_weight=5e-2,
            steps=9_000,
        ),
    },
}
PRESET_NAMES = tuple(PRESETS)


def _merge(base: dict, layer: dict) -> dict:
    """``base`` updated by ``layer``; a dict value (generator, discriminator) is merged key by key."""
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = {**out[key], **value}
        out[key] = value
    return out


# Another preset whose models, patch sizes and step counts replace the chosen preset's, while the
# chosen preset's data flow and folders stay: SRLAB_SIZES=smoke with SRLAB_PRESET=colab runs the
# Colab course's downloads, Drive folders and runs/colab/ layout with seconds-long tiny models
# (the Colab simulation, srlab.colab_sim, does exactly that).
SIZES_ENV = "SRLAB_SIZES"


FROM_ENV = "$SRLAB_SIZES"  # make_config's default ``sizes``: whatever the variable says


def sizes_layer(stage: str, sizes: str | None = FROM_ENV) -> dict:
    """The table of preset ``sizes`` (default ``$SRLAB_SIZES``) for ``stage``, laid over the chosen
    preset's; {} when there is none."""
    if sizes == FROM_ENV:
        sizes = os.environ.get(SIZES_ENV) or None
    if sizes is None:
        return {}
    if sizes not in PRESETS:
        raise ValueError(f"{SIZES_ENV}={sizes!r} is not a preset; choose one of {', '.join(PRESETS)}")
    return PRESETS[sizes][stage]


def make_config(stage: str, preset: str = "colab", *, sizes: str | None = FROM_ENV, **overrides) -> TrainConfig:
    """The config of ``stage`` under ``preset``: paper recipe, then the preset's table (dict values
    merged key by key; with ``sizes``, that preset's table over it: :func:`sizes_layer`; ``None``
    ignores ``$SRLAB_SIZES``), then the adversary's needs, then ``overrides`` (each replaces its value:
    ``generator={"name": "srcnn"}`` is the whole generator spec)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    table = _merge(PRESETS[preset][stage], sizes_layer(stage, sizes))
    values = _merge(PAPERS[stage], table)
    if values.get("adversarial") and overrides.get("perceptual", values.get("perceptual")) == "discriminator":
        values = _merge(_merge(PAPERS[stage], FEATURE_MATCHING), table)  # under the preset
    adversary = overrides.get("adversarial", values.get("adversarial"))
    if adversary is not None:
        if adversary not in ADVERSARIES:
            raise ValueError(f"unknown adversarial loss {adversary!r}; choose one of {', '.join(ADVERSARIES)}")
        if not values.get("discriminator"):
            raise ValueError(
                f"stage {stage} trains no discriminator: an adversarial loss needs a GAN stage "
                f"({', '.join(PRETRAIN_STAGE)})"
            )
        values = _merge(values, ADVERSARIES[adversary])
    return check_counts(TrainConfig(stage=stage, **{**values, **overrides}))  # an override replaces a whole value


# Counts below 1 fail deep inside training (a division by zero, an empty batch) or loop forever.
COUNTS = (
    "steps",
    "batch_size",
    "hr_size",
    "val_crop",
    "log_every",
    "val_every",
    "ckpt_every",
    "n_critic",
    "scale",
    "collapse_patience",
)
# Below 0 these turn training around (a negative loss weight or clipping norm climbs the loss: clip_grad_norm_
# scales the gradients by max_norm / norm) or fail late; 0 (or None, where the field takes it) means off.
NON_NEGATIVE = ("pixel_weight", "perceptual_weight", "adversarial_weight", "gp_weight", "grad_clip")
NON_NEGATIVE_COUNTS = ("warmup_steps", "early_stop_patience", "loader_workers", "seed")
POSITIVE = ("lr_g", "lr_d", "lr_gamma")  # a learning rate (or its factor) <= 0 does not descend
# the entries of a generator or discriminator spec that are sizes: whole numbers >= 1 (num_block=-1 built no block)
MODEL_SIZES = ("num_block", "num_feat", "num_grow_ch", "input_size", "num_in_ch", "num_out_ch", "num_channels")


def check_counts(cfg: TrainConfig) -> TrainConfig:
    """``cfg``, or a one-line ValueError naming the first setting out of its range: a count below 1
    (``--set steps=0``, ``--set generator.num_block=-1``), a negative weight, clipping norm, seed,
    ..., a learning rate that is not positive, Adam betas outside [0, 1), an EMA decay above 1."""
    for name, value, need in _out_of_range(cfg):
        example = f" (e.g. --set {name}=1)" if need == "at least 1" else ""
        raise ValueError(f"{name}={value!r}: must be {need}{example}")
    return cfg


def _out_of_range(cfg: TrainConfig):
    """(setting, its value, what it must be) for each setting of ``cfg`` out of its range, in field order."""
    for name in COUNTS:
        if not _whole(getattr(cfg, name), 1):
            yield name, getattr(cfg, name), "at least 1"
    for part in ("generator", "discriminator"):
        for key, value in (getattr(cfg, part) or {}).items():
            if key in MODEL_SIZES and not _whole(value, 1):
                yield f"{part}.{key}", value, "at least 1"
    for name in NON_NEGATIVE_COUNTS:
        value = getattr(cfg, name)
        if value is not None and not _whole(value, 0):
            yield name, value, "a whole number >= 0" + (" (or none: off)" if _may_be_none(name) else "")
    for name in NON_NEGATIVE:
        value = getattr(cfg, name)
        if value is not None and not (_finite(value) and value >= 0):
            yield name, value, "a finite number >= 0" + (" (0 or none: off)" if _may_be_none(name) else "")
    if not (_finite(cfg.ema_decay) and 0 <= cfg.ema_decay <= 1):
        yield "ema_decay", cfg.ema_decay, "in [0, 1] (0.999: the EMA moves a thousandth of the way per step)"
    for name in POSITIVE:
        if not (_finite(getattr(cfg, name)) and getattr(cfg, name) > 0):
            yield name, getattr(cfg, name), "a finite number > 0"
    for name in ("betas", "betas_d"):
        value = getattr(cfg, name)
        if value is not None and not (_pair(value) and all(_finite(b) and 0 <= b < 1 for b in value)):
            yield name, value, "two numbers in [0, 1), Adam's (e.g. --set " + name + "=(0.9,0.999))"


def _finite(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _whole(value, least: int) -> bool:
    return type(value) is int and value >= least


# ---------------------------------------------------------------- --set key=value

_FIELDS = {f.name: f for f in fields(TrainConfig)}


def parse_setting(text: str) -> tuple[str, object]:
    """``"key=value"`` -> (key, value). The value is read as a Python literal (numbers, tuples,
    dicts, True/False/None; ``none``, ``true``, ``false`` also work), else kept as a string."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected key=value, e.g. --set steps=2000")
    lowered = {"none": "None", "null": "None", "true": "True", "false": "False"}.get(raw.lower(), raw)
    try:
        value = ast.literal_eval(lowered)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def _check_type(key: str, value, default) -> object:
    """``value`` for field ``key`` with the type its default has; a clear error otherwise."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"--set {key}: expected true or false, got {value!r}")
    elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(default, tuple) and isinstance(value, (int, float)):
        value = (value,)
    elif isinstance(default, tuple) and isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, type(default)) or (isinstance(value, bool) and not isinstance(default, bool)):
        raise ValueError(f"--set {key}: expected a {type(default).__name__}, got {value!r}")
    return value


def settings_overrides(settings: list[str], base: TrainConfig) -> dict:
    """``--set`` strings as keyword overrides for :func:`make_config`: ``key=value`` for any field,
    ``generator.num_feat=32`` for one entry of a dict field (the rest of ``base``'s dict kept)."""
    changes: dict = {}
    for text in settings:
        key, value = parse_setting(text)
        name, _, sub = key.partition(".")
        if name not in _FIELDS or name == "stage":
            close = difflib.get_close_matches(name, _FIELDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(
                f"--set {key}: TrainConfig has no field {name!r}{hint}; `python -m srlab presets` lists them"
            )
        current = changes.get(name, getattr(base, name))
        if sub:
            if not isinstance(current, dict):
                raise ValueError(f"--set {key}: {name} is not a dict field")
            changes[name] = {**current, sub: value}
        elif value is None and not _may_be_none(name):
            raise ValueError(f"--set {key}=none: {name} cannot be none (now {current!r})")
        else:
            changes[name] = _check_type(name, value, _default_of(name, current))
    return changes


def _may_be_none(name: str) -> bool:
    """Whether TrainConfig's field ``name`` takes None: its default is None or its type says so."""
    f = _FIELDS[name]
    return f.default is None or "None" in str(f.type) or "Optional" in str(f.type)


def _default_of(name: str, current):
    f = _FIELDS[name]
    if f.default is not dataclasses.MISSING and f.default is not None:
        return f.default
    return current


# ---------------------------------------------------------------- printing


def presets_table(stage: str) -> str:
    """Every field of ``stage``'s config under each preset, one row per field (Markdown)."""
    configs = {p: dataclasses.asdict(make_config(stage, p, sizes=None)) for p in PRESETS}
    header = f"| {stage} | " + " | ".join(PRESETS) + " |"
    rows = [header, "|---" * (len(PRESETS) + 1) + "|"]
    for name in _FIELDS:
        if name == "stage":
            continue
        cells = [_cell(configs[p][name]) for p in PRESETS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cell(value) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000:
        return f"{value:_}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_cell(v) for v in value) + ")" if value else "()"
    return str(value)
