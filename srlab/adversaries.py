"""The adversary of a GAN stage: its discriminator and everything about training it.

One object per run holds the network, its optimiser, its loss pair (what the generator
minimises against it, what it minimises itself) and its collapse check. The training loop
only calls :meth:`Adversary.generator_losses` in its generator step and
:meth:`Adversary.discriminator_loss` in its discriminator step. Three are registered:

=========  ==================================================================================
name       losses (``srlab.losses`` has each equation)
=========  ==================================================================================
bce        SRGAN (Ledig et al. 2017): D classifies real/fake; G: -log D(G(x)) (non-saturating)
ragan      ESRGAN (Wang et al. 2018): relativistic average D, "real is more realistic than the
           average fake"; G gets gradient through both terms
wgan-gp    Gulrajani et al. 2017: a critic's Wasserstein estimate E[C(real)] - E[C(fake)],
           gradient penalty lambda = 10 on interpolates, n_critic critic updates per G update
=========  ==================================================================================
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

from . import losses as L
from .models import SRGANDiscriminator, VGGStyleDiscriminator

__all__ = [
    "ADVERSARY_CLASSES",
    "Adversary",
    "BCEAdversary",
    "RaGANAdversary",
    "WGANGPAdversary",
    "CollapseDetector",
    "COLLAPSE_ADVICE",
    "build_discriminator",
    "build_adversary",
]

DISCRIMINATORS = {"srgan": SRGANDiscriminator, "vgg": VGGStyleDiscriminator}


def build_discriminator(spec: dict) -> nn.Module:
    spec = dict(spec)
    name = spec.pop("name")
    if name not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {name!r}; choose one of {sorted(DISCRIMINATORS)}")
    return DISCRIMINATORS[name](**spec)


@contextmanager
def frozen(net: nn.Module):
    """``net``'s parameters take no gradient inside: the generator step must not train D."""
    net.requires_grad_(False)
    try:
        yield
    finally:
        net.requires_grad_(True)


class CollapseDetector:
    """Flags a discriminator that wins every time: its loss (running mean) stays near zero."""

    def __init__(self, threshold: float = 0.05, patience: int = 200, momentum: float = 0.9):
        self.threshold, self.patience, self.momentum = threshold, patience, momentum
        self.running, self.low_steps, self.reported = None, 0, False

    def update(self, d_loss: float, steps: int = 1) -> bool:
        """Feed the mean D loss of the last ``steps`` steps; True exactly once, when collapse is
        first detected."""
        m = self.momentum
        self.running = d_loss if self.running is None else m * self.running + (1 - m) * d_loss
        self.low_steps = self.low_steps + steps if self.running < self.threshold else 0
        if self.low_steps >= self.patience and not self.reported:
            self.reported = True
            return True
        return False


COLLAPSE_ADVICE = (
    "discriminator collapse: D loss has stayed below {threshold} for {patience} steps, so D "
    "separates real from fake perfectly. The generator still gets a gradient (with the "
    "non-saturating loss, dL/dlogit is about -1 at D(G(x)) = 0.01), but it carries no information "
    "about how to look more real: it only pushes across a decision boundary that D can move at "
    "will. Try: raise adversarial_weight (the primary student project went from 1e-3 to 5e-2), "
    "lower lr_d, start from a better pretrained generator, or use --adversarial ragan or wgan-gp."
)


class Adversary:
    """A discriminator with its optimiser and loss pair; subclasses define the losses.

    ``net`` is the plain module (checkpoints, the generator step); ``critic`` is what the
    discriminator step calls (``net`` itself, or ``net`` in DistributedDataParallel).
    ``gather`` turns this process's logits into the global batch's (identity in one process).
    """

    n_critic = 1  # discriminator updates per generator update

    def __init__(self, net: nn.Module, cfg):
        self.net = self.critic = net
        self.gather = lambda logits: logits
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas_d or cfg.betas))
        self.collapse = CollapseDetector(cfg.collapse_threshold, cfg.collapse_patience)

    def generator_turn(self, step: int) -> bool:
        """Whether the generator is updated at ``step`` (every step, unless n_critic > 1)."""
        return (step + 1) % self.n_critic == 0

    needs_real = False  # whether the generator's adversarial term looks at D(hr)

    def generator_loss(self, sr: Tensor, hr: Tensor) -> Tensor:
        """The adversarial term of the generator's loss (unweighted), D frozen."""
        return self.generator_losses(sr, hr)[0]

    def generator_losses(self, sr: Tensor, hr: Tensor, feature_matching: bool = False) -> tuple[Tensor, Tensor | None]:
        """The adversarial term and, when asked, feature matching (:func:`srlab.losses.feature_matching_loss`),
        from one pass of D over SR (and one over HR, without gradient), D frozen."""
        with frozen(self.net):
            fake, fake_blocks = self.net.forward_features(sr)
            real, real_blocks = None, None
            if feature_matching or self.needs_real:
                with torch.no_grad():
                    real, real_blocks = self.net.forward_features(hr)
                real = real.float()
            adv = self._generator_loss(fake.float(), real)
            return adv, (L.feature_matching_loss(fake_blocks, real_blocks) if feature_matching else None)

    def _generator_loss(self, fake: Tensor, real: Tensor | None) -> Tensor:
        """From D's logits on SR (with gradient) and on HR (constant, None unless ``needs_real``)."""
        raise NotImplementedError

    def discriminator_loss(self, sr: Tensor, hr: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """D's loss on real ``hr`` and detached ``sr``, and statistics to log."""
        raise NotImplementedError

    def collapsed(self, mean_d_loss: float, steps: int) -> bool:
        return self.collapse.update(mean_d_loss, steps)


class BCEAdversary(Adversary):
    """SRGAN: D(x) = sigmoid(logit) is the probability that x is real."""

    def _generator_loss(self, fake, real):
        return L.generator_bce_loss(fake)

    def discriminator_loss(self, sr, hr):
        real, fake = self.critic(hr).float(), self.critic(sr.detach()).float()  # (N, 1) logits each
        return L.discriminator_bce_loss(real, fake), _probabilities(real, fake)


class RaGANAdversary(Adversary):
    """ESRGAN: each logit is compared with the batch mean of the other kind's, so the whole
    (global) batch's logits are needed: ``gather``."""

    needs_real = True

    def _generator_loss(self, fake, real):
        return L.relativistic_generator_loss(self.gather(real), self.gather(fake))  # (B, 1) each; real constant

    def discriminator_loss(self, sr, hr):
        real = self.gather(self.critic(hr).float())  # (B, 1)
        fake = self.gather(self.critic(sr.detach()).float())
        return L.relativistic_discriminator_loss(real, fake), _probabilities(real, fake)


class WGANGPAdversary(Adversary):
    """A critic C with unbounded scores; its loss E[C(fake)] - E[C(real)] + lambda * GP is the
    negated Wasserstein estimate plus the penalty that keeps C 1-Lipschitz. BCE-style collapse
    does not exist here (the critic loss is not bounded below by 0), so it is never reported."""

    def __init__(self, net: nn.Module, cfg):
        super().__init__(net, cfg)
        self.n_critic, self.gp_weight = cfg.n_critic, cfg.gp_weight

    def _generator_loss(self, fake, real):
        return L.wasserstein_generator_loss(fake)

    def discriminator_loss(self, sr, hr):
        sr = sr.detach()
        real, fake = self.critic(hr).float(), self.critic(sr).float()  # (N, 1) scores
        norms = L.interpolate_gradient_norms(self.critic, hr, sr)  # (N,)
        penalty = ((norms - 1) ** 2).mean()
        loss = L.wasserstein_critic_loss(real, fake) + self.gp_weight * penalty
        stats = {
            "wasserstein": (real.mean() - fake.mean()).detach(),
            "gp": penalty.detach(),
            "grad_norm": norms.mean().detach(),
        }
        return loss, stats

    def collapsed(self, mean_d_loss: float, steps: int) -> bool:
        return False


def _probabilities(real: Tensor, fake: Tensor) -> dict[str, Tensor]:
    """Mean D(real) and D(fake): near 1 and 0 when D wins, both near 0.5 at equilibrium."""
    return {"d_real": torch.sigmoid(real).mean().detach(), "d_fake": torch.sigmoid(fake).mean().detach()}


ADVERSARY_CLASSES = {"bce": BCEAdversary, "ragan": RaGANAdversary, "wgan-gp": WGANGPAdversary}


def build_adversary(cfg, device: torch.device, memory_format=torch.contiguous_format) -> Adversary | None:
    """The adversary ``cfg.adversarial`` names (None for pixel stages), its network on ``device``."""
    if cfg.adversarial is None:
        return None
    if cfg.adversarial not in ADVERSARY_CLASSES:
        raise ValueError(f"unknown adversarial loss {cfg.adversarial!r}; choose one of {', '.join(ADVERSARY_CLASSES)}")
    if not cfg.discriminator:
        raise ValueError(f"adversarial={cfg.adversarial!r} needs a discriminator in the config")
    net = build_discriminator(cfg.discriminator).to(device, memory_format=memory_format)
    if net.input_size != cfg.hr_size:
        raise ValueError(f"discriminator input_size {net.input_size} != hr_size {cfg.hr_size}")
    return ADVERSARY_CLASSES[cfg.adversarial](net, cfg)
