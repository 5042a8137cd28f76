"""How long a training stage takes on a GPU, from its FLOP count: ``python -m srlab.bench plan``.

No GPU is needed to plan: one training step of the stage (generator step and discriminator
step, with the losses the config names) runs on PyTorch's ``meta`` device under
``torch.utils.flop_counter.FlopCounterMode``, which counts the multiply-adds of every
convolution and matrix product (forward and backward) without computing anything. The time is

    minutes = steps x FLOPs per step / (peak FLOP/s of the GPU at srlab's precision x UTILIZATION) / 60

The peaks are the vendors' datasheet figures (dense, no sparsity); UTILIZATION is an assumption,
not a measurement: small convolution nets on 24-32 px LR patches keep the tensor cores far from
their peak (ResNet-50 training, a well-tuned case, reaches roughly 10-25% of these peaks). On a
real GPU, ``python -m srlab.bench train --preset colab`` measures the seconds per step instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import NamedTuple

import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.flop_counter import FlopCounterMode

from .adversaries import build_adversary
from .checkpoint import generator_from_config
from .presets import SESSION_BUDGETS, STAGES, TrainConfig, make_config
from .train import Trainer, parse_duration


class GPU(NamedTuple):
    name: str
    capability: tuple[int, int]
    precision: str  # what srlab.train.choose_precision picks there with amp="auto"
    peak_tflops: float  # dense tensor-core peak at that precision
    source: str


GPUS = {
    "t4": GPU("Tesla T4", (7, 5), "fp16", 65.0, "NVIDIA T4 datasheet: 65 TFLOPS FP16 mixed precision (tensor cores)"),
    "l4": GPU("L4", (8, 9), "bf16", 121.0, "NVIDIA L4 datasheet: 242 TFLOPS BF16 with sparsity, 121 dense"),
    "a100": GPU("A100", (8, 0), "bf16", 312.0, "NVIDIA A100 datasheet: 312 TFLOPS BF16 tensor core, dense"),
}
UTILIZATION = 0.15  # fraction of the peak a step attains: srlab's assumption (module docstring)
SESSION_MINUTES = parse_duration(SESSION_BUDGETS["colab"]) / 60  # the budget a notebook sets per Colab session


def _meta_trainer(cfg: TrainConfig) -> Trainer:
    """A :class:`srlab.train.Trainer` of ``cfg`` on the meta device, without data or a run folder:
    only what ``train_step`` touches. A random VGG stands in for ImageNet's (same FLOPs) and
    autocast is off (a FLOP count does not depend on the dtype)."""
    cfg = dataclasses.replace(cfg, vgg_weights=None, init_from=None)
    meta = torch.device("meta")
    trainer = Trainer.__new__(Trainer)
    trainer.cfg, trainer.device, trainer.step = cfg, meta, 0
    trainer.memory_format, trainer.amp_dtype = torch.contiguous_format, None
    trainer.autocast, trainer.all_finite = contextlib.nullcontext, lambda loss: True
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=False)
    trainer.say = lambda message: None
    with meta:
        trainer.G = generator_from_config(cfg)
        trainer.adversary = build_adversary(cfg, meta)
        trainer.perceptual = trainer._perceptual_loss(cfg)
    if trainer.perceptual is not None:
        trainer.perceptual = trainer.perceptual.to(meta)
    trainer.ema = AveragedModel(trainer.G)
    trainer.opt_g = torch.optim.Adam(trainer.G.parameters(), lr=cfg.lr_g)
    trainer._weigh_losses(cfg)
    return trainer


def step_flops(cfg: TrainConfig) -> int:
    """FLOPs of one training step of ``cfg`` (batch ``cfg.batch_size``): the generator step and the
    discriminator step of :meth:`srlab.train.Trainer.train_step` itself, counted on the meta device."""
    if cfg.adversarial == "wgan-gp":  # autograd.grad of the gradient penalty fails inside FlopCounterMode
        raise ValueError(
            "step_flops cannot count a wgan-gp step: torch's FLOP counter cannot run the gradient "
            "penalty's autograd.grad (and a step with n_critic > 1 is mostly critic steps); count bce instead"
        )
    trainer = _meta_trainer(cfg)
    lr_size = cfg.hr_size // cfg.scale
    lr = torch.empty(cfg.batch_size, 3, lr_size, lr_size, device="meta")
    hr = torch.empty(cfg.batch_size, 3, cfg.hr_size, cfg.hr_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(lr, hr)
    return int(counter.get_total_flops())


def checkpoint_bytes(cfg: TrainConfig) -> int:
    """About the size of one ``last.pt`` of ``cfg``: fp32 generator weights, their EMA and Adam's two
    moments (4 copies), the discriminator's weights and moments (3 copies), their buffers."""
    trainer = _meta_trainer(cfg)
    count = lambda tensors: sum(t.numel() for t in tensors)
    g, d = trainer.G, trainer.adversary.net if trainer.adversary else None
    values = 4 * count(g.parameters()) + 2 * count(g.buffers())
    if d is not None:
        values += 3 * count(d.parameters()) + count(d.buffers())
    return 4 * values


def stage_minutes(flops_per_step: float, steps: int, gpu: str = "t4", utilization: float = UTILIZATION) -> float:
    """Minutes of ``steps`` steps of ``flops_per_step`` each on ``gpu`` (a key of :data:`GPUS`)."""
    spec = GPUS[gpu]
    return steps * flops_per_step / (spec.peak_tflops * 1e12 * utilization) / 60


def steps_per_second(cfg: TrainConfig, gpu: str = "t4", utilization: float = UTILIZATION) -> float:
    """Training steps per second of ``cfg`` on ``gpu`` by FLOP count: the rate its data must arrive at."""
    return GPUS[gpu].peak_tflops * 1e12 * utilization / step_flops(cfg)


def plan(presets=("colab",), gpu: str = "t4", utilization: float = UTILIZATION) -> list[dict]:
    """One row per (preset, stage): GFLOPs per step, steps, minutes on ``gpu`` and the number of
    :data:`SESSION_MINUTES` budgets that makes."""
    rows = []
    for preset in presets:
        for stage in STAGES:
            cfg = make_config(stage, preset, sizes=None)
            flops = step_flops(cfg)
            ckpt_mb = checkpoint_bytes(cfg) / 1e6
            minutes = stage_minutes(flops, cfg.steps, gpu, utilization)
            rows.append(
                dict(
                    preset=preset,
                    stage=stage,
                    gflops_per_step=flops / 1e9,
                    batch_size=cfg.batch_size,
                    hr_size=cfg.hr_size,
                    steps=cfg.steps,
                    minutes=minutes,
                    sessions=math.ceil(minutes / SESSION_MINUTES - 1e-9),
                    checkpoint_mb=ckpt_mb,
                    ckpt_every=cfg.ckpt_every,
                )
            )
    return rows


def plan_table(rows: list[dict], gpu: str = "t4", utilization: float = UTILIZATION) -> str:
    spec = GPUS[gpu]
    lines = [
        f"{spec.name} ({gpu}), {spec.precision}: {spec.peak_tflops:g} TFLOPS peak x {utilization:g} utilization "
        f"= {spec.peak_tflops * utilization:.1f} TFLOPS ({spec.source}; the utilization is an assumption)",
        f"{'preset':<7} {'stage':<9} {'batch':>5} {'HR':>4} {'GFLOP/step':>11} {'steps':>8} {'minutes':>8}  "
        f"{SESSION_MINUTES:g}-min sessions  last.pt",
    ]
    for r in rows:
        lines.append(
            f"{r['preset']:<7} {r['stage']:<9} {r['batch_size']:>5} {r['hr_size']:>4} {r['gflops_per_step']:>11.1f} "
            f"{r['steps']:>8} {r['minutes']:>8.1f}  {r['sessions']:>15}  "
            f"{r['checkpoint_mb']:.0f} MB every {r['ckpt_every']} steps"
        )
    return "\n".join(lines)


def colab_duration(stage: str, gpu: str = "t4") -> str:
    """What a training notebook prints about its stage under the ``colab`` preset: minutes on
    ``gpu`` by FLOP count, and the checkpoint it writes."""
    cfg = make_config(stage, "colab", sizes=None)  # the real colab sizes, also under SRLAB_SIZES
    minutes = stage_minutes(step_flops(cfg), cfg.steps, gpu)
    spec = GPUS[gpu]
    return (
        f"colab preset, {stage}: {cfg.steps} steps, about {minutes:.0f} minutes on a {spec.name} in {spec.precision} "
        f"(an estimate from its FLOP count at {UTILIZATION:.0%} of the peak: `python -m srlab.bench plan`); "
        f"last.pt about {checkpoint_bytes(cfg) / 1e6:.0f} MB, rewritten every {cfg.ckpt_every} steps "
        f"(only last.pt and best.pt are kept)"
    )
