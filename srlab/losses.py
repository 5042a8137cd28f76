"""Losses for GAN super-resolution: pixel, perceptual (VGG-19, or feature matching), adversarial.

Every loss takes images in [0, 1] (or discriminator logits) and returns a scalar
tensor (mean reduction). The equation each one implements is in its docstring.

Which losses each model trains with:

* SRResNet: ``pixel_loss(sr, hr, "mse")`` only.
* SRGAN (Ledig et al. 2017): ``PerceptualLoss("relu5_4")`` + 1e-3 * ``generator_bce_loss``;
  the discriminator uses ``discriminator_bce_loss``.
* ESRGAN (Wang et al. 2018): ``PerceptualLoss("conv5_4")`` + 5e-3 * ``relativistic_generator_loss``
  + 1e-2 * ``pixel_loss(sr, hr, "l1")``; the discriminator uses ``relativistic_discriminator_loss``.
* Offline, with ``--perceptual discriminator``: ``feature_matching_loss`` on the discriminator's
  own features takes the VGG loss's place (a substitute for when no ImageNet VGG can be had,
  not the papers' loss).
* WGAN-GP (Gulrajani et al. 2017): ``wasserstein_critic_loss`` + ``gradient_penalty`` for the
  critic, ``wasserstein_generator_loss`` for the generator.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Union

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

__all__ = [
    "VGG19_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PerceptualLoss",
    "feature_matching_loss",
    "gan_bce_loss",
    "discriminator_bce_loss",
    "generator_bce_loss",
    "relativistic_discriminator_loss",
    "relativistic_generator_loss",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
    "gradient_penalty",
    "interpolate_gradient_norms",
    "pixel_loss",
    "total_variation_loss",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Convolutions per block of VGG-19 (configuration "E" of Simonyan & Zisserman 2015).
_VGG19_CONVS_PER_BLOCK = (2, 2, 4, 4, 4)
_VGG19_IMAGENET_FILE = "vgg19-dcbb9e9d.pth"


def _vgg19_layer_names() -> list[str]:
    """Paper-style names of ``vgg19().features`` in order: conv1_1, relu1_1, ..., pool5."""
    names = []
    for block, n_convs in enumerate(_VGG19_CONVS_PER_BLOCK, start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


# name -> index in torchvision.models.vgg19().features; read-only so nobody edits it in place.
# "convX_Y" is the conv output before its ReLU, "reluX_Y" the same map after it.
VGG19_LAYERS: Mapping[str, int] = MappingProxyType({name: index for index, name in enumerate(_vgg19_layer_names())})


# ----------------------------------------------------------------------------- pixel losses


def _pointwise_criterion(kind: str):
    """F.l1_loss or F.mse_loss (both mean-reduced) by name."""
    criteria = {"l1": F.l1_loss, "mse": F.mse_loss}
    if kind not in criteria:
        raise ValueError(f"unknown criterion {kind!r}; expected one of {sorted(criteria)}")
    return criteria[kind]


def pixel_loss(sr: Tensor, hr: Tensor, kind: str = "l1") -> Tensor:
    r"""Pixel-wise distance between the super-resolved and the true image.

    l1:  \frac{1}{N} \sum |sr - hr|        (ESRGAN, weight 1e-2 next to the perceptual loss)
    mse: \frac{1}{N} \sum (sr - hr)^2      (SRResNet; maximises PSNR but gives blurry textures)

    N is the number of elements; ``kind`` is "l1" or "mse".
    """
    return _pointwise_criterion(kind)(sr, hr)


def total_variation_loss(img: Tensor) -> Tensor:
    r"""Anisotropic (L1) total variation, SRGAN's optional smoothness regulariser.

    TV(x) = mean_{n,c,i,j} |x_{i+1,j} - x_{i,j}| + mean_{n,c,i,j} |x_{i,j+1} - x_{i,j}|

    Each mean runs over the differences that exist (H-1 rows, resp. W-1 columns), so the
    value does not depend on image size. Anisotropic: the vertical and horizontal
    differences are penalised separately, not as sqrt(dx^2 + dy^2), which would have an
    undefined gradient on flat regions.
    """
    # img: (N, C, H, W)
    vertical = (img[:, :, 1:, :] - img[:, :, :-1, :]).abs().mean()  # (N, C, H-1, W) -> ()
    horizontal = (img[:, :, :, 1:] - img[:, :, :, :-1]).abs().mean()  # (N, C, H, W-1) -> ()
    return vertical + horizontal


# ----------------------------------------------------------------------------- perceptual loss


def _build_vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features`` with torchvision's random initialisation.

    ``torchvision.models.vgg19()`` also allocates and initialises the 120M-parameter
    classifier (about 3 s on a CPU), which a perceptual loss throws away. So build the
    model on the meta device (no memory, no work) and materialise only the conv stack.
    """
    with torch.device("meta"):
        vgg = torchvision.models.vgg19(weights=None)
    features = vgg.features.to_empty(device="cpu")
    for module in features:
        if isinstance(module, nn.Conv2d):
            # Same scheme as torchvision.models.VGG.__init__.
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return features


def _replace_inplace_relus(features: nn.Sequential) -> None:
    """Swap torchvision's ReLU(inplace=True) for ReLU().

    An in-place ReLU overwrites the output of the conv before it, so a feature read at
    "conv5_4" would silently come back already rectified.
    """
    for index, module in enumerate(features):
        if isinstance(module, nn.ReLU):
            features[index] = nn.ReLU(inplace=False)


def _features_state_dict(state: Mapping[str, Tensor], n_layers: int) -> dict[str, Tensor]:
    """The entries of a vgg19 (``features.N.*``) or vgg19.features (``N.*``) state dict
    that belong to the first ``n_layers`` layers, keyed ``N.*``; the rest is ignored."""
    if any(key.startswith("features.") for key in state):
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    return {
        key: value for key, value in state.items() if key.split(".")[0].isdigit() and int(key.split(".")[0]) < n_layers
    }


def _imagenet_checkpoint_path() -> str:
    """Where torch.hub looks for (and downloads) the ImageNet VGG-19 weights."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", _VGG19_IMAGENET_FILE)


def _load_imagenet_vgg19_state() -> dict[str, Tensor]:
    """torchvision's VGG19_Weights.IMAGENET1K_V1 state dict, from the hub cache or the web.

    This is exactly what ``vgg19(weights=VGG19_Weights.IMAGENET1K_V1)`` does inside, but
    calls ``torch.hub.load_state_dict_from_url`` through the module attribute:
    torchvision binds its own reference at import time, so going through ``torch.hub``
    keeps a single place that tests can monkeypatch to simulate being offline.
    """
    url = torchvision.models.VGG19_Weights.IMAGENET1K_V1.url
    try:
        return torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)
    except Exception as err:  # URLError, OSError, hash mismatch (RuntimeError), ...
        raise RuntimeError(
            f"Could not load the ImageNet VGG-19 weights ({type(err).__name__}: {err}). "
            "A perceptual loss is only meaningful with a VGG-19 pretrained on ImageNet. "
            f"Download {url} and put it at {_imagenet_checkpoint_path()} "
            f"(torch.hub.get_dir()/checkpoints/{_VGG19_IMAGENET_FILE}), or pass "
            "weights=PATH to a torchvision vgg19 state-dict file. "
            "weights=None gives a randomly initialised vgg19, for smoke tests only."
        ) from err


LayerSpec = str | Mapping[str, float]
WeightsSpec = Union[str, "os.PathLike[str]", None]


def _layer_weights(layer: LayerSpec) -> dict[str, float]:
    """{name: weight} in network order, from a single layer name or a dict; validated."""
    if layer is None:  # a pixel stage's config, given a perceptual_weight
        raise ValueError(
            "a perceptual loss needs a VGG-19 layer, and perceptual_layer is None: set one, e.g. "
            "--set perceptual_layer=relu5_4 (SRGAN) or conv5_4 (ESRGAN)"
        )
    weights = {layer: 1.0} if isinstance(layer, str) else dict(layer)
    if not weights:
        raise ValueError("layer must be a VGG-19 layer name or a non-empty {name: weight} dict")
    unknown = [name for name in weights if name not in VGG19_LAYERS]
    if unknown:
        raise ValueError(f"unknown VGG-19 layer(s) {unknown}; valid names: {list(VGG19_LAYERS)}")
    return {name: float(weights[name]) for name in sorted(weights, key=VGG19_LAYERS.__getitem__)}


class PerceptualLoss(nn.Module):
    r"""Distance between VGG-19 feature maps of the SR and the HR image.

    L = \sum_l w_l \cdot mean |phi_l(sr) - phi_l(hr)|      (criterion "l1")
    L = \sum_l w_l \cdot mean (phi_l(sr) - phi_l(hr))^2    (criterion "mse")

    phi_l is the output of layer l of ``torchvision.models.vgg19().features`` applied to
    the ImageNet-normalised image; only ``features[: index(l) + 1]`` is kept.

    Layer choices (names in ``VGG19_LAYERS``):

    * "relu5_4": SRGAN paper's "VGG54" (Ledig et al. 2017), after the activation; 36 layers.
    * "conv5_4": ESRGAN paper (Wang et al. 2018), *before* the activation: relu features
      are sparse (most of them 0 at deep layers, so little signal) and lose the brightness
      information of negative responses; 35 layers. The default.
    * "relu3_4": the student project's SRGAN choice; 18 layers.
    * "conv3_4": the student project's ESRGAN choice; 17 layers.

    Args:
        layer: a layer name, or a ``{name: weight}`` dict to sum several layers
            (all of them read in a single pass through the truncated network).
        weights: "imagenet" (torchvision's VGG19_Weights.IMAGENET1K_V1, from the torch hub
            cache or downloaded), a path to a torchvision vgg19 or vgg19.features state
            dict, or None for random weights (smoke tests only; warns).
        criterion: "l1" or "mse", mean-reduced over each feature map.

    The VGG is frozen (no parameter requires grad) and always in eval mode, but gradients
    flow back to ``sr``. Inputs are images in [0, 1]; normalisation happens inside.
    """

    def __init__(self, layer: LayerSpec = "conv5_4", weights: WeightsSpec = "imagenet", criterion: str = "l1") -> None:
        super().__init__()
        self.layer_weights = _layer_weights(layer)
        self.criterion = criterion
        self._distance = _pointwise_criterion(criterion)
        # index of each read-out layer; only the layers up to the deepest one are kept
        self._read_at = {VGG19_LAYERS[name]: name for name in self.layer_weights}
        n_layers = max(self._read_at) + 1

        self.vgg = _build_vgg19_features()[:n_layers]
        _replace_inplace_relus(self.vgg)
        self._load_weights(weights, n_layers)
        self.vgg.requires_grad_(False)
        self.vgg.eval()

        # persistent=False: constants, no need to land in a parent's checkpoint
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _load_weights(self, weights: WeightsSpec, n_layers: int) -> None:
        if weights is None:
            warnings.warn(
                "PerceptualLoss(weights=None): randomly initialised VGG-19, so this loss is "
                "not perceptual. Use it for smoke tests only.",
                UserWarning,
                stacklevel=3,
            )
            return
        if isinstance(weights, str) and weights == "imagenet":
            state = _load_imagenet_vgg19_state()
        else:
            state = torch.load(os.fspath(weights), map_location="cpu", weights_only=True)
        # strict: every kept conv must get its weights; classifier and deeper layers are dropped
        self.vgg.load_state_dict(_features_state_dict(state, n_layers))

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Let a parent's ``.train()`` through, but keep the VGG in eval mode."""
        super().train(mode)
        self.vgg.eval()
        return self

    def normalize(self, x: Tensor) -> Tensor:
        """[0, 1] RGB -> ImageNet statistics, the input VGG-19 was trained on."""
        return (x - self.mean) / self.std  # (N, 3, H, W)

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """{layer name: feature map} for the configured layers, from one pass."""
        # x: (N, 3, H, W) in [0, 1]
        h = self.normalize(x)
        out = {}
        for index, module in enumerate(self.vgg):
            h = module(h)  # (N, C_l, H_l, W_l)
            if index in self._read_at:
                out[self._read_at[index]] = h
        return out

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        # sr, hr: (N, 3, H, W) in [0, 1]
        sr_features = self.features(sr)
        with torch.no_grad():  # hr is the target: no graph, half the activation memory
            hr_features = self.features(hr)
        loss = sr.new_zeros(())
        for name, weight in self.layer_weights.items():
            loss = loss + weight * self._distance(sr_features[name], hr_features[name])
        return loss

    def extra_repr(self) -> str:
        return f"layers={self.layer_weights}, criterion={self.criterion!r}"


def feature_matching_loss(fake_features: list[Tensor], real_features: list[Tensor]) -> Tensor:
    r"""Feature matching on the discriminator's features (pix2pixHD: Wang et al. 2018, Eq. 4):

    L_FM = \sum_{k=1}^{T} \frac{1}{N_k} \| D^{(k)}(x_{hr}) - D^{(k)}(G(x_{lr})) \|_1

    over D's T blocks, N_k the number of elements of block k's output (so each term is a mean
    absolute difference). The generator is pulled towards HR in the feature space the
    discriminator learns for telling real from fake, the role ImageNet VGG features play in a
    perceptual loss. HR's features are constants (detached). A substitute where no pretrained VGG
    can be had (offline, CI): D's features move as D trains, and no paper reports SR with it.
    """
    if len(fake_features) != len(real_features) or not fake_features:
        n_fake, n_real = len(fake_features), len(real_features)
        raise ValueError(f"feature matching needs the same blocks of both: {n_fake} vs {n_real}")
    terms = [F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake_features, real_features)]
    return torch.stack(terms).sum()


# ----------------------------------------------------------------------------- standard GAN (SRGAN)


def gan_bce_loss(logits: Tensor, real: bool) -> Tensor:
    r"""Binary cross-entropy of discriminator logits against an all-real or all-fake target.

    real=True:  -mean log sigmoid(z)
    real=False: -mean log(1 - sigmoid(z))

    Computed from logits (log-sum-exp inside F.binary_cross_entropy_with_logits): taking
    log(sigmoid(z)) of a saturated sigmoid would give log(0) = -inf.
    """
    target = torch.full_like(logits, 1.0 if real else 0.0)
    return F.binary_cross_entropy_with_logits(logits, target)


def discriminator_bce_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""SRGAN discriminator loss, the *sum* of the real and the fake term:

    L_D = -E[log D(x_hr)] - E[log(1 - D(G(x_lr)))]

    ``fake_logits`` must come from detached fakes (``D(G(lr).detach())``), so this step
    does not train the generator.
    """
    return gan_bce_loss(real_logits, True) + gan_bce_loss(fake_logits, False)


def generator_bce_loss(fake_logits: Tensor) -> Tensor:
    r"""SRGAN adversarial generator loss, the non-saturating form:

    L_G = -E[log D(G(x_lr))]

    rather than the minimax +E[log(1 - D(G(x_lr)))]: early in training D rejects the fakes
    confidently, where log(1 - D) is flat and gives the generator almost no gradient,
    while -log D is steep there (Goodfellow et al. 2014).
    """
    return gan_bce_loss(fake_logits, True)


# ----------------------------------------------------------------------------- relativistic average GAN (ESRGAN)


def _relativistic_logits(a_logits: Tensor, b_logits: Tensor) -> Tensor:
    """C(a) - E[C(b)]: the logit of D_Ra(a, b) = sigmoid(C(a) - E[C(b)])."""
    return a_logits - b_logits.mean()


def relativistic_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""Relativistic average discriminator loss (Jolicoeur-Martineau 2018; ESRGAN).

    D_Ra(a, b) = sigmoid(C(a) - E_b[C(b)])
    L_D = ( -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))] ) / 2

    D learns that real images are *more realistic than the average fake*, rather than
    "real" in absolute terms. The two terms are averaged (divided by 2) like the official
    ESRGAN code, which is what the paper's weights were tuned with. ``fake_logits`` must
    come from detached fakes.
    """
    real_term = gan_bce_loss(_relativistic_logits(real_logits, fake_logits), True)
    fake_term = gan_bce_loss(_relativistic_logits(fake_logits, real_logits), False)
    return (real_term + fake_term) / 2


def relativistic_generator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""Relativistic average generator loss (Jolicoeur-Martineau 2018; ESRGAN).

    L_G = ( -E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)] ) / 2

    The mirror of the D loss: unlike the standard GAN, the generator also gets gradient
    through the real term, by making fakes that push real images below average. Averaged
    over the two terms like the official ESRGAN code, so the paper's weight 5e-3 applies.

    Pass ``real_logits.detach()`` (D(x_hr) is a constant for the generator step; only the
    fakes' logits should carry gradient to G) and ``fake_logits = D(G(x_lr))`` undetached.
    """
    real_term = gan_bce_loss(_relativistic_logits(real_logits, fake_logits), False)
    fake_term = gan_bce_loss(_relativistic_logits(fake_logits, real_logits), True)
    return (real_term + fake_term) / 2


# ----------------------------------------------------------------------------- Wasserstein GAN with gradient penalty


def wasserstein_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    r"""WGAN critic loss, the negated Wasserstein-1 estimate (Arjovsky et al. 2017):

    L_C = E[C(x_fake)] - E[C(x_real)]

    Scores are unbounded (no sigmoid). Without a Lipschitz constraint this diverges, so
    add ``gradient_penalty``.
    """
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: Tensor) -> Tensor:
    r"""WGAN generator loss: L_G = -E[C(G(z))]."""
    return -fake_scores.mean()


def interpolate_gradient_norms(
    critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    r"""||\nabla_{x_hat} C(x_hat)||_2 per sample, at x_hat = eps * x_real + (1 - eps) * x_fake,
    eps ~ U[0, 1] per sample: the quantity WGAN-GP drives to 1. Shape (N,).

    The norm is over all non-batch dimensions. The gradient graph is kept
    (create_graph=True) so a penalty on it can be backpropagated to the critic's parameters.
    Both images are detached: the penalty trains the critic only.
    ``generator`` (a torch.Generator on real's device) makes eps reproducible.
    """
    # real, fake: (N, C, H, W) (any shape with batch first)
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)  # (N, 1, 1, 1)
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # (N, C, H, W)
    scores = critic(x_hat)  # (N, ...) one score per sample (or per patch)
    (grads,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)  # (N, C, H, W)
    # +1e-12 inside the sqrt: d||g||/dg = g/||g|| is 0/0 where the gradient vanishes
    # (e.g. dead ReLUs), which would put NaNs into the critic's weights.
    return torch.sqrt(grads.flatten(1).pow(2).sum(dim=1) + 1e-12)  # (N,)


def gradient_penalty(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""WGAN-GP gradient penalty (Gulrajani et al. 2017), weight lambda = 10 as in the paper:

    GP = lambda * E_{x_hat}[(||\nabla_{x_hat} C(x_hat)||_2 - 1)^2]

    with x_hat and the norm as in :func:`interpolate_gradient_norms`. Avoid BatchNorm in the
    critic: it couples samples, and the penalty is defined per sample.
    """
    grad_norm = interpolate_gradient_norms(critic, real, fake, generator)  # (N,)
    return weight * ((grad_norm - 1) ** 2).mean()
