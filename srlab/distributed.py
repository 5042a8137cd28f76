"""Training on several devices: one process per device under ``torchrun``, with PyTorch's
DistributedDataParallel (DDP). With one process every function here is a no-op.

:class:`DistributedTrainer` is :class:`srlab.train.Trainer` with the few methods that
differ when several processes train together; :func:`process_group` picks it under torchrun.
The teaching loop in ``srlab.train`` stays free of ranks. How a run is split over N
processes ("ranks"):

* ``batch_size`` is the *global* batch. Batch ``step`` is a pure function of
  ``(seed, step)`` (``RandomPatches``, ``StorePatches``), so every rank knows the same global
  batch and trains on its own contiguous slice of ``batch_size / N`` samples: N processes
  see exactly the samples one process sees, and resuming with another N changes nothing.
* DDP averages the gradients over ranks. Each rank's loss is the mean over its slice, and
  the slices are equal, so the average is the gradient of the global batch's mean loss.
* BatchNorm normalises with the statistics of the batch it sees; SyncBatchNorm makes that
  the global batch (``sync_bn``), so BN models also train as with one process.
* Rank 0 alone validates, writes samples, checkpoints, ``history.jsonl`` and W&B, and
  shows the progress bar; the others wait for its decisions (early stop) at a collective.
"""

from __future__ import annotations

import functools
import os
import weakref
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

from .data import rank_slice
from .train import Trainer

__all__ = [
    "rank",
    "world_size",
    "start",
    "finish",
    "device_for_rank",
    "wrap",
    "process_group",
    "DistributedTrainer",
    "sync_batchnorm",
    "CPUSyncBatchNorm",
    "gather_batch",
    "all_finite",
    "mean_over_ranks",
    "from_main",
]


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of training processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def device_for_rank(device: str | None) -> str:
    """The device this process trains on: under torchrun, ``cuda`` means ``cuda:LOCAL_RANK``."""
    wanted = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if wanted.type == "cuda" and "LOCAL_RANK" in os.environ:
        if wanted.index is None:
            wanted = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        elif int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:  # else NCCL fails on a duplicate GPU
            raise ValueError(
                f"--device {device} under torchrun puts all {os.environ['LOCAL_WORLD_SIZE']} processes of this "
                "machine on one GPU: pass --device cuda (each process takes cuda:LOCAL_RANK)"
            )
    return str(wanted)


def start(device: str) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL for GPUs, Gloo for CPUs.

    Returns True when this call started the group (then :func:`finish` ends it); False for a
    single process (no torchrun, or ``--nproc_per_node=1``) or a group the caller started.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dist.init_process_group("gloo")
    return True


def finish(started: bool, wait: bool = True) -> None:
    """End the process group if :func:`start` started it; ``wait``: first wait until every
    rank got here (so none leaves while rank 0 still writes the last checkpoint)."""
    if started and dist.is_initialized():
        try:
            if wait:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when distributed, else ``model`` itself. DDP
    broadcasts rank 0's weights at construction, so every rank starts identical."""
    if not _active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


# ---------------------------------------------------------------- the trainer, distributed


@contextmanager
def process_group(device: str | None):
    """``(trainer class, this process's device)`` for the body; under torchrun the process
    group is joined before and left after (without waiting for the others on an error:
    they may never get there)."""
    device = device_for_rank(device)
    started = start(device)
    try:
        yield (DistributedTrainer if _active() else Trainer), device
    except BaseException:
        _unwrap_trainers()
        finish(started, wait=False)
        raise
    _unwrap_trainers()
    finish(started)


_TRAINERS = weakref.WeakSet()  # this process's DistributedTrainers, unwrapped before their group ends


def _unwrap_trainers() -> None:
    """Drop every DistributedDataParallel wrapper while the process group still exists. A DDP
    that outlived :func:`finish` ended the group from its Reducer with the GIL held, waiting for
    a Gloo thread that needed the GIL to free a finished collective's tensors: rank 1 hung at
    exit (torch 2.11, Colab's: 2 of 12 two-process runs on a loaded CPU; 0 of 12 with 2.14)."""
    for trainer in list(_TRAINERS):
        trainer.unwrap()


def _on_main(method):
    """``method`` on rank 0 only: files, prints and W&B are written once."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        return method(self, *args, **kwargs) if self.rank == 0 else None

    return run


class DistributedTrainer(Trainer):
    """:class:`srlab.train.Trainer` for one of N processes.

    G and the critic run in DistributedDataParallel (gradients averaged over ranks); in G's
    step D is called unwrapped and frozen, since a DDP D would wait for gradients that never
    come. Each rank trains on its slice of the global batch; the relativistic loss gathers
    the global batch's logits; BatchNorm uses global statistics (``sync_bn``). Rank 0 alone
    validates, writes and prints; the others wait for its decisions at a collective.
    """

    def __init__(self, cfg, out_dir, device=None, progress=True):
        self.rank, self.world = rank(), world_size()
        rank_slice(cfg.batch_size, self.rank, self.world)  # fails early when the batch does not split
        if cfg.adversarial == "wgan-gp":
            raise ValueError(
                "wgan-gp under torchrun is not supported: DistributedDataParallel cannot "
                "differentiate the gradient penalty twice; train it in one process"
            )
        super().__init__(cfg, out_dir, device=device, progress=progress and self.rank == 0)
        self.G = wrap(self._sync_bn(self.G), self.device)  # the EMA was copied before: eval-mode BN
        if self.adversary is not None:
            self.adversary.net = self._sync_bn(self.adversary.net)
            self.adversary.critic = wrap(self.adversary.net, self.device)
            self.adversary.gather = gather_batch
        _TRAINERS.add(self)

    def unwrap(self) -> None:
        """G and the critic without their DistributedDataParallel wrappers (training is over)."""
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(self.G, DistributedDataParallel):
            self.G = self.G.module
        if self.adversary is not None and isinstance(self.adversary.critic, DistributedDataParallel):
            self.adversary.critic = self.adversary.net

    def _sync_bn(self, model):
        return sync_batchnorm(model, self.device) if self.cfg.sync_bn else model

    def batch_source(self):
        return functools.partial(self.patches.batch, rank=self.rank, world=self.world)  # this rank's slice

    def all_finite(self, loss):
        return all_finite(loss)  # every rank stops together, or the others would hang

    def reduce_logs(self, logs):
        return mean_over_ranks(logs, self.device)

    def validate_and_checkpoint(self):
        stop = super().validate_and_checkpoint() if self.rank == 0 else False
        return bool(from_main(float(stop), self.device))  # the others wait here for rank 0

    def out_of_time(self, deadline):
        return bool(from_main(float(super().out_of_time(deadline)), self.device))  # rank 0's clock decides for all

    def pause(self, why):
        if self.rank == 0:
            super().pause(why)

    def fit(self, stop_at=None, time_budget=None):
        summary = super().fit(stop_at, time_budget)
        summary["best_psnr"] = from_main(self.best_psnr, self.device)  # only rank 0 validated
        return summary

    say = _on_main(Trainer.say)
    warn = _on_main(Trainer.warn)
    log = _on_main(Trainer.log)
    save = _on_main(Trainer.save)
    save_samples = _on_main(Trainer.save_samples)
    clear_history = _on_main(Trainer.clear_history)
    trim_history = _on_main(Trainer.trim_history)
    start_wandb = _on_main(Trainer.start_wandb)


# ---------------------------------------------------------------- SyncBatchNorm


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm of ``model`` normalise with global-batch statistics when distributed.

    GPUs get PyTorch's ``nn.SyncBatchNorm``. PyTorch has no CPU kernels for it (its
    ``batch_norm_stats`` is CUDA-only), so CPU processes get :class:`CPUSyncBatchNorm`. The
    parameters and buffers are the same objects (optimisers built before still hold them)
    and the state_dict keys are unchanged, so checkpoints stay plain single-process ones.
    """
    if not _active() or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CPUSyncBatchNorm):
        new = CPUSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        return new.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, for CPU (Gloo) ranks.

    Mean and variance come from per-channel sums all-reduced by an autograd function whose
    backward all-reduces the incoming gradients, so the backward pass is that of BN over the
    global batch as well. In eval mode, or in one process, it is plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _active()):
            return super().forward(x)
        dims, shape = [0, 2, 3], (1, -1, 1, 1)
        xf = x.float()  # (N, C, H, W); statistics in fp32 under autocast too
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        dist.all_reduce(count)  # samples x pixels over all ranks
        mean = _all_reduce_sum(xf.sum(dims)) / count  # (C,)
        centred = xf - mean.view(shape)
        var = _all_reduce_sum(centred.square().sum(dims)) / count  # (C,) biased, as BN normalises
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * count / max(count.item() - 1, 1))
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        self.running_mean.mul_(1 - momentum).add_(momentum * mean)
        self.running_var.mul_(1 - momentum).add_(momentum * unbiased_var)


# ---------------------------------------------------------------- agreeing across ranks


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """The global batch of ``x`` (each rank's slice, in rank order) on every rank, with gradient.

    For losses that are not a mean of per-sample terms, like the relativistic GAN loss
    (each logit is compared with the batch *average* of the others): every rank then computes
    the global batch's loss. The backward of the all-reduce sums the gradients of all ranks'
    (identical) losses, N times the gradient of one, which DDP's averaging divides by N again.
    Built as an all-reduce of zero-padded slices: every backend has all-reduce, and its
    backward is an all-reduce too.
    """
    if not _active():
        return x
    world, me, n = dist.get_world_size(), dist.get_rank(), x.shape[0]
    zeros = lambda k: x.new_zeros((k * n, *x.shape[1:]))  # noqa: E731
    return _all_reduce_sum(torch.cat([zeros(me), x, zeros(world - me - 1)]))


class _AllReduceSum(torch.autograd.Function):
    """y = sum of x over ranks, on every rank. Each rank's loss depends on every x_k through y,
    so dL/dx_k = sum over ranks r of dL_r/dy: the backward is an all-reduce as well."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


def all_finite(value: torch.Tensor) -> bool:
    """True when ``value`` is finite on every rank. A NaN on one rank must stop all of them:
    a rank that stopped alone would leave the others waiting in the next all-reduce forever."""
    ok = torch.isfinite(value.detach()).all().to(torch.int32).reshape(1)
    if _active():
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def mean_over_ranks(logs: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average logged numbers over ranks: with equal slices, a mean over the global batch."""
    if not _active() or not logs:
        return logs
    keys = sorted(logs)
    values = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return dict(zip(keys, (values / dist.get_world_size()).tolist()))


def from_main(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (e.g. the early-stopping decision of its validation);
    also a synchronisation point, so the others wait while rank 0 validates and saves."""
    if not _active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.item()
