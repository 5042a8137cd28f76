"""Generators and discriminators for GAN super-resolution.

Every generator has the same contract: it takes a low-resolution batch
``(N, C, h, w)`` with values roughly in [0, 1] and returns the high-resolution
batch ``(N, C, h * scale, w * scale)``. Every discriminator takes an HR patch
of a fixed size and returns one raw score per image, shape ``(N, 1)``: the last layer
is linear, with no sigmoid, so the same network serves as a logit for a BCE or
relativistic loss and as the unbounded critic of a Wasserstein GAN. Both
discriminators take ``batch_norm=False`` for WGAN-GP (see :class:`SRGANDiscriminator`).

Shape comments use ``F`` for ``num_feat``, ``G`` for ``num_grow_ch`` and
``s`` for ``scale``.

Contents:

* :class:`SRResNet` - the SRGAN generator (Ledig et al. 2017).
* :class:`RRDBNet` - the ESRGAN / Real-ESRGAN generator (Wang et al. 2018),
  with BasicSR's parameter names so the official weights load unchanged.
* :class:`SRCNN` - the first CNN super-resolver (Dong et al. 2014), a baseline.
* :class:`SRGANDiscriminator` - the discriminator of Ledig et al. 2017.
* :class:`VGGStyleDiscriminator` - ESRGAN's discriminator, BasicSR's names.
* :func:`build_generator`, :func:`count_parameters` - small helpers.
"""

from __future__ import annotations

import inspect
import numbers
import reprlib

import torch
import torch.nn.functional as F
from torch import nn

from .resize import imresize_torch

__all__ = [
    "ResidualBlock",
    "UpsampleBlock",
    "SRResNet",
    "ResidualDenseBlock",
    "RRDB",
    "RRDBNet",
    "SRCNN",
    "ConvAutoencoder",
    "SRGANDiscriminator",
    "VGGStyleDiscriminator",
    "GENERATORS",
    "build_generator",
    "count_parameters",
    "MAX_BLOCKS",
    "MAX_CHANNELS",
]

MAX_BLOCKS = 128
"""The most blocks a generator is built with: 5x ESRGAN's 23. A typo or a crafted checkpoint (10**6) is
refused at once instead of building for minutes into gigabytes."""
MAX_CHANNELS = 1024
"""The widest layer srlab builds (the papers use 64): 4096 channels make a 604 MB convolution."""


def _whole(value) -> bool:
    """An int (or numpy integer), not a bool, float or tensor: what the size of a layer is."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_sizes(model_name: str, blocks: dict[str, object] | None = None, **channels) -> None:
    """Fail before any layer is made: a negative ``num_block`` would quietly build no blocks, a tensor or
    float an obscure error deep in ``nn.Conv2d``, and 10**6 blocks or 10**5 channels gigabytes.
    ``blocks``: depth arguments (0 to :data:`MAX_BLOCKS`); ``channels``: widths (1 to :data:`MAX_CHANNELS`)."""
    ranges = [(name, value, 0, MAX_BLOCKS) for name, value in (blocks or {}).items()]
    ranges += [(name, value, 1, MAX_CHANNELS) for name, value in channels.items()]
    for name, value, low, high in ranges:
        if not _whole(value) or not low <= value <= high:
            got = reprlib.repr(value)
            raise ValueError(f"{model_name}: {name} must be a whole number from {low} to {high}, got {got}")


def _check_flags(model_name: str, **flags) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{model_name}: {name} must be true or false, got {reprlib.repr(value)}")


def _check_scale(model_name: str, scale: int, supported: tuple[int, ...]) -> None:
    """Fail at construction time, not deep inside the first forward pass."""
    if not _whole(scale) or scale not in supported:
        raise ValueError(f"{model_name} supports scale in {list(supported)}, got scale={reprlib.repr(scale)}")


def _check_input_size(model_name: str, x: torch.Tensor, input_size: int) -> None:
    """Discriminators end in a Linear layer, so the patch size is baked in."""
    h, w = x.shape[-2:]
    if h == input_size and w == input_size:
        return
    hint = f"crop HR patches to {input_size}"
    if h == w:
        hint += f" or build it with input_size={h}"
    raise ValueError(
        f"{model_name} expects {input_size}x{input_size} inputs (input_size={input_size}), got {h}x{w}: {hint}"
    )


def _zero_init(conv: nn.Conv2d) -> None:
    """A zero last layer makes a residual branch start as 'add nothing'."""
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)


def _bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB bicubic upsampling for the residual path, kept in float32 under autocast.

    MATLAB's kernel (not PyTorch's a = -0.75) so an untrained net scores exactly the
    bicubic baseline; float32 because bf16 would round the base image to ~3 digits.
    """
    if scale == 1:
        return x
    if not torch.amp.is_autocast_available(x.device.type):  # "meta": counting FLOPs (srlab.bench plan)
        return imresize_torch(x.float(), scale)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return imresize_torch(x.float(), scale)


# ---------------------------------------------------------------------------
# SRResNet (the SRGAN generator)
# ---------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """SRResNet residual block: conv3x3-BN-PReLU-conv3x3-BN plus identity skip.

    Args:
        num_feat: Channels in and out.
        batch_norm: Keep the two BN layers. ``False`` gives the EDSR-style block
            (Lim et al. 2017), which found BN hurts SR because it normalises
            away the range information the output needs.
    """

    def __init__(self, num_feat: int = 64, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(num_feat) if batch_norm else nn.Identity()
        # One shared slope, as in the paper (not one per channel).
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(num_feat) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))  # (N, F, h, w)
        out = self.bn2(self.conv2(out))  # (N, F, h, w)
        # The block only has to learn a correction, which keeps deep stacks trainable.
        return x + out  # (N, F, h, w)


class UpsampleBlock(nn.Module):
    """Sub-pixel upsampling stage: conv3x3 to ``F * r * r`` channels, PixelShuffle(r), PReLU.

    Sub-pixel convolution (Shi et al. 2016) learns the upsampling filter and
    does all its work at low resolution.

    Args:
        num_feat: Channels in and out.
        factor: Upsampling factor ``r`` of this stage.
    """

    def __init__(self, num_feat: int = 64, factor: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_feat, num_feat * factor * factor, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(factor)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (N, F*r*r, h, w)
        x = self.shuffle(x)  # (N, F, h*r, w*r): channels become sub-pixel positions
        return self.act(x)  # (N, F, h*r, w*r)


class SRResNet(nn.Module):
    """SRResNet, the generator of SRGAN.

    Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a
    Generative Adversarial Network", CVPR 2017 (arXiv:1609.04802).

    Layout: 9x9 conv + PReLU head; ``num_block`` residual blocks; conv3x3-BN and
    a global skip from the head; sub-pixel upsampling stages; 9x9 output conv.
    With the defaults it has 1,549,462 parameters.

    Args:
        num_in_ch: Channels of the LR input.
        num_out_ch: Channels of the HR output.
        num_feat: Width of the feature maps.
        num_block: Number of residual blocks (16 in the paper).
        scale: Upsampling factor, one of 2, 3, 4, 8.
        batch_norm: ``False`` drops every BN layer (an EDSR-like variant).
        bicubic_residual: Add a bicubic upsampling of the input to the output and
            start the tail conv at zero, so the untrained net *is* bicubic and
            learns only the missing detail. Not in the paper; it makes short
            runs (a CPU course, a smoke test) beat bicubic within a few hundred
            steps. Same parameters and state-dict keys either way.
    """

    # scale -> factors of the successive sub-pixel stages
    _STAGES = {2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 16,
        scale: int = 4,
        batch_norm: bool = True,
        bicubic_residual: bool = False,
    ) -> None:
        super().__init__()
        _check_scale("SRResNet", scale, tuple(self._STAGES))
        widths = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat)
        _check_sizes("SRResNet", {"num_block": num_block}, **widths)
        _check_flags("SRResNet", batch_norm=batch_norm, bicubic_residual=bicubic_residual)
        self.scale = scale
        self.bicubic_residual = bicubic_residual
        # A large receptive field on the raw pixels, as in the paper.
        self.conv_head = nn.Conv2d(num_in_ch, num_feat, 9, 1, 4)
        self.act_head = nn.PReLU()
        self.body = nn.Sequential(*[ResidualBlock(num_feat, batch_norm) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn_body = nn.BatchNorm2d(num_feat) if batch_norm else nn.Identity()
        self.upsample = nn.Sequential(*[UpsampleBlock(num_feat, r) for r in self._STAGES[scale]])
        self.conv_tail = nn.Conv2d(num_feat, num_out_ch, 9, 1, 4)
        if bicubic_residual:
            _zero_init(self.conv_tail)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._forward_net(x)  # (N, C_out, h*s, w*s)
        return out + _bicubic(x, self.scale) if self.bicubic_residual else out

    def _forward_net(self, x: torch.Tensor) -> torch.Tensor:
        head = self.act_head(self.conv_head(x))  # (N, F, h, w)
        feat = self.bn_body(self.conv_body(self.body(head)))  # (N, F, h, w)
        # Global skip: the low-frequency content reaches the upsampler directly.
        feat = feat + head  # (N, F, h, w)
        feat = self.upsample(feat)  # (N, F, h*s, w*s)
        return self.conv_tail(feat)  # (N, C_out, h*s, w*s)


# ---------------------------------------------------------------------------
# RRDBNet (the ESRGAN / Real-ESRGAN generator)
# ---------------------------------------------------------------------------


class ResidualDenseBlock(nn.Module):
    """Residual dense block: five densely connected 3x3 convs, scaled residual.

    Each conv sees the block input and all earlier outputs (channel concat).
    Parameter names (``conv1`` .. ``conv5``) follow BasicSR.

    Args:
        num_feat: Channels in and out.
        num_grow_ch: Channels added by each of conv1-conv4 ("growth rate").
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        f, g = num_feat, num_grow_ch
        self.conv1 = nn.Conv2d(f, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(f + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(f + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(f + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(f + 4 * g, f, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        # ESRGAN's "smaller initialisation": with residual scaling this makes
        # every block start close to the identity, so a 23-block net without BN
        # trains stably.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))  # (N, G, h, w)
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))  # (N, G, h, w)
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))  # (N, G, h, w)
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))  # (N, G, h, w)
        # No activation on conv5: its output is a residual, it may be negative.
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))  # (N, F, h, w)
        # Residual scaling 0.2 keeps the sum from blowing up across many blocks.
        return x5 * 0.2 + x  # (N, F, h, w)


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs inside one more scaled skip.

    Args:
        num_feat: Channels in and out.
        num_grow_ch: Growth rate of the inner dense blocks.
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))  # (N, F, h, w)
        return out * 0.2 + x  # (N, F, h, w)


class RRDBNet(nn.Module):
    """RRDBNet, the generator of ESRGAN and Real-ESRGAN.

    Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial
    Networks", ECCV Workshops 2018 (arXiv:1809.00219); Wang et al.,
    "Real-ESRGAN", ICCV Workshops 2021 (arXiv:2107.10833).

    Parameter names match BasicSR's ``RRDBNet`` exactly (``conv_first``,
    ``body.N.rdbK.convM``, ``conv_body``, ``conv_up1``, ``conv_up2``,
    ``conv_hr``, ``conv_last``), so official ESRGAN / Real-ESRGAN ``.pth``
    files load with ``load_state_dict``. No BN anywhere (ESRGAN removes it).
    With the defaults it has 16,697,987 parameters.

    The trunk always upsamples x4 (two nearest-neighbour x2 + conv stages).
    Scales 2 and 1 follow Real-ESRGAN: the input is first folded with
    ``pixel_unshuffle`` (factor 2 or 4), which trades resolution for
    channels, so ``conv_first`` takes ``num_in_ch * 4`` or ``* 16`` channels.
    Inputs whose size is not a multiple of that factor are reflect-padded and
    the output is cropped back.

    Args:
        num_in_ch: Channels of the LR input.
        num_out_ch: Channels of the HR output.
        num_feat: Width of the trunk.
        num_block: Number of RRDBs (23 in ESRGAN, 6 in Real-ESRGAN's anime model).
        num_grow_ch: Growth rate of the dense blocks.
        scale: Upsampling factor, one of 1, 2, 4.
        bicubic_residual: As in :class:`SRResNet`: output = net(x) + bicubic(x),
            with ``conv_last`` starting at zero. Off for the paper's model and
            for official weights.
    """

    _UNSHUFFLE = {1: 4, 2: 2, 4: 1}  # scale -> pixel_unshuffle factor

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        scale: int = 4,
        bicubic_residual: bool = False,
    ) -> None:
        super().__init__()
        _check_scale("RRDBNet", scale, tuple(sorted(self._UNSHUFFLE)))
        _check_sizes(
            "RRDBNet",
            {"num_block": num_block},
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            num_feat=num_feat,
            num_grow_ch=num_grow_ch,
        )
        _check_flags("RRDBNet", bicubic_residual=bicubic_residual)
        self.scale = scale
        self.bicubic_residual = bicubic_residual
        self.unshuffle = self._UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        # Nearest-neighbour + conv instead of sub-pixel conv: same cost, and it
        # avoids the checkerboard artefacts a GAN loss tends to amplify.
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        if bicubic_residual:
            _zero_init(self.conv_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._forward_net(x)  # (N, C_out, h*s, w*s)
        return out + _bicubic(x, self.scale) if self.bicubic_residual else out

    def _forward_net(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        u = self.unshuffle
        if u > 1:
            # pixel_unshuffle needs sizes divisible by u; reflect like spandrel does.
            pad_h, pad_w = (-h) % u, (-w) % u
            if pad_h or pad_w:
                # reflect needs more rows/columns than it adds; a tile 1-3 px wide has not
                mode = "reflect" if pad_h < h and pad_w < w else "replicate"
                x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)  # (N, C, h', w')
            x = F.pixel_unshuffle(x, u)  # (N, C*u*u, h'/u, w'/u)
        feat = self.conv_first(x)  # (N, F, h/u, w/u)
        # Long skip around the whole trunk, as in the shallower SRResNet.
        feat = feat + self.conv_body(self.body(feat))  # (N, F, h/u, w/u)
        feat = F.interpolate(feat, scale_factor=2, mode="nearest")  # (N, F, 2h/u, 2w/u)
        feat = self.lrelu(self.conv_up1(feat))  # (N, F, 2h/u, 2w/u)
        feat = F.interpolate(feat, scale_factor=2, mode="nearest")  # (N, F, 4h/u, 4w/u)
        feat = self.lrelu(self.conv_up2(feat))  # (N, F, 4h/u, 4w/u) == (N, F, h*s, w*s)
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))  # (N, C_out, h*s, w*s)
        # Drop the rows/columns that came from the reflect padding.
        return out[..., : h * self.scale, : w * self.scale]  # (N, C_out, h*s, w*s)


# ---------------------------------------------------------------------------
# SRCNN (baseline)
# ---------------------------------------------------------------------------


class SRCNN(nn.Module):
    """SRCNN, the 9-5-5 variant with 64 and 32 filters.

    Dong et al., "Learning a Deep Convolutional Network for Image
    Super-Resolution", ECCV 2014 (and TPAMI 2016, arXiv:1501.00092).

    SRCNN refines a bicubic-upsampled image. The bicubic step happens inside
    ``forward`` so SRCNN keeps the srlab generator contract: LR in, HR out.

    Args:
        num_channels: Channels in and out.
        scale: Upsampling factor of the bicubic pre-interpolation (any integer >= 1).
    """

    def __init__(self, num_channels: int = 3, scale: int = 4) -> None:
        super().__init__()
        if not _whole(scale) or scale < 1:
            raise ValueError(f"SRCNN supports any integer scale >= 1, got scale={reprlib.repr(scale)}")
        _check_sizes("SRCNN", num_channels=num_channels)
        self.scale = scale
        # Patch extraction, non-linear mapping, reconstruction (the paper's three stages).
        self.conv1 = nn.Conv2d(num_channels, 64, 9, 1, 4)
        self.conv2 = nn.Conv2d(64, 32, 5, 1, 2)
        self.conv3 = nn.Conv2d(32, num_channels, 5, 1, 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)  # (N, C, h*s, w*s)
        x = self.relu(self.conv1(x))  # (N, 64, h*s, w*s)
        x = self.relu(self.conv2(x))  # (N, 32, h*s, w*s)
        return self.conv3(x)  # (N, C, h*s, w*s)


class ConvAutoencoder(nn.Module):
    """A small convolutional autoencoder on the bicubic-upsampled image (student project B).

    Encoder: two stride-2 convs (64, 128 channels); decoder: two transposed convs back to
    full size. Trained with MSE it learns the *average* of the plausible HR images, which is
    blurry: the teaching point that motivates perceptual and adversarial losses.

    Args:
        num_channels: Channels in and out.
        num_feat: Channels of the first encoder layer (the second has twice as many).
        scale: Upsampling factor of the bicubic pre-interpolation.
    """

    def __init__(self, num_channels: int = 3, num_feat: int = 64, scale: int = 4) -> None:
        super().__init__()
        if not _whole(scale) or scale < 1:
            raise ValueError(f"ConvAutoencoder supports any integer scale >= 1, got scale={reprlib.repr(scale)}")
        _check_sizes("ConvAutoencoder", num_channels=num_channels, num_feat=num_feat)
        self.scale = scale
        f = num_feat
        self.encoder = nn.Sequential(
            nn.Conv2d(num_channels, f, 3, 2, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(f, 2 * f, 3, 2, 1),
            nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * f, f, 4, 2, 1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(f, num_channels, 4, 2, 1),
        )
        _zero_init(self.decoder[-1])  # starts as bicubic; training adds the correction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = _bicubic(x, self.scale)  # (N, C, h*s, w*s)
        H, W = up.shape[-2:]
        # the two stride-2 layers come back to a multiple of 4: pad to one, crop back after
        pad_h, pad_w = (-H) % 4, (-W) % 4
        padded = F.pad(up, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else up
        code = self.encoder(padded)  # (N, 2F, H'/4, W'/4): a bottleneck 4x smaller per side
        return self.decoder(code)[..., :H, :W] + up  # (N, C, h*s, w*s): learns a correction of bicubic


# ---------------------------------------------------------------------------
# Discriminators
# ---------------------------------------------------------------------------


def _norm_layer(channels: int, batch_norm: bool) -> nn.Module:
    """BN, or nothing: an ``nn.Identity`` has no parameters, so it adds no state-dict keys."""
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class SRGANDiscriminator(nn.Module):
    """The SRGAN discriminator.

    Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a
    Generative Adversarial Network", CVPR 2017 (arXiv:1609.04802), Fig. 4.

    Eight conv3x3 layers (64, 64, 128, 128, 256, 256, 512, 512 channels; stride
    2 on every second one), BN after all but the first, LeakyReLU(0.2); then
    Dense(1024), LeakyReLU(0.2), Dense(1).

    Returns a raw score ``(N, 1)`` from the last Linear layer, not a
    probability: the paper's final sigmoid is left to the loss, which uses
    BCE-with-logits because ``log(sigmoid(z))`` computed in one step is
    numerically stable where ``log`` of a saturated sigmoid is not. A raw score
    is also what a WGAN critic must output (Arjovsky et al. 2017).

    Args:
        num_in_ch: Channels of the HR input.
        num_feat: Channels of the first conv; later ones are 2x, 4x, 8x this.
        input_size: Side of the square HR patch; must be divisible by 16
            (four stride-2 convs), since the Linear layer's size depends on it.
        batch_norm: ``False`` drops the seven BN layers, for a WGAN-GP critic
            (Gulrajani et al. 2017): the gradient penalty is taken per sample,
            and BN makes each sample's score depend on the rest of the batch.
            The paper suggests layer norm instead; no norm at all is the
            simplest choice that keeps the penalty valid. The convs keep their
            biases either way, so only the BN keys leave the state dict.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 96, batch_norm: bool = True) -> None:
        super().__init__()
        _check_sizes("SRGANDiscriminator", num_in_ch=num_in_ch, num_feat=num_feat)
        if not _whole(input_size) or input_size <= 0 or input_size % 16 != 0:
            raise ValueError(
                f"SRGANDiscriminator needs input_size divisible by 16 "
                f"(four stride-2 convs), got input_size={input_size}"
            )
        self.input_size = input_size
        widths = [
            num_feat,
            num_feat,
            2 * num_feat,
            2 * num_feat,
            4 * num_feat,
            4 * num_feat,
            8 * num_feat,
            8 * num_feat,
        ]
        layers: list[nn.Module] = []
        in_ch = num_in_ch
        for i, out_ch in enumerate(widths):
            stride = 2 if i % 2 == 1 else 1
            layers.append(nn.Conv2d(in_ch, out_ch, 3, stride, 1))
            # No BN on the first layer: it would normalise away the raw pixel statistics.
            if i > 0 and batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        side = input_size // 16
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * num_feat * side * side, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The score ``(N, 1)`` and the output of each of the four stride-2 blocks (after its
        activation): (N, F, S/2, S/2), (N, 2F, S/4, S/4), (N, 4F, S/8, S/8), (N, 8F, S/16, S/16),
        which feature matching (:func:`srlab.losses.feature_matching_loss`) compares."""
        _check_input_size("SRGANDiscriminator", x, self.input_size)
        blocks, stride = [], 1
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.Conv2d):
                stride = layer.stride[0]
            elif isinstance(layer, nn.LeakyReLU) and stride == 2:
                blocks.append(x)
        return self.classifier(x), blocks  # x: (N, 8F, S/16, S/16)


VGG_DISCRIMINATOR_STAGES = {64: 4, 128: 5, 256: 6}  # input side -> stride-2 stages (to 4x4 maps)


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator, with BasicSR's parameter names.

    Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial
    Networks", ECCV Workshops 2018 (arXiv:1809.00219).

    Pairs of (3x3 stride-1, 4x4 stride-2) convs halve the size five times
    (six for ``input_size=256``, four for srlab's small 64) down to 4x4, then linear1 (-> 100) and
    linear2 (-> 1). Convs followed by BN have no bias (BN's shift replaces it).
    Returns a raw score ``(N, 1)`` from linear2, with no sigmoid; apply it in
    the loss (BCE-with-logits, or the relativistic loss of ESRGAN), or use the
    score as is as a WGAN critic.

    Args:
        num_in_ch: Channels of the HR input.
        num_feat: Channels of the first stage; later stages use 2x, 4x, 8x.
        input_size: Side of the square HR patch: 128 or 256 (BasicSR's), or 64 (one stage
            fewer, for short CPU runs on small patches).
        batch_norm: ``False`` for a WGAN-GP critic (see :class:`SRGANDiscriminator`):
            every ``bnX_Y`` becomes an identity with no parameters and the conv
            before it gets its bias back. ``True`` keeps BasicSR's state dict.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128, batch_norm: bool = True) -> None:
        super().__init__()
        _check_sizes("VGGStyleDiscriminator", num_in_ch=num_in_ch, num_feat=num_feat)
        if not _whole(input_size) or input_size not in VGG_DISCRIMINATOR_STAGES:
            raise ValueError(
                f"VGGStyleDiscriminator supports input_size in {sorted(VGG_DISCRIMINATOR_STAGES)}, got {input_size}"
            )
        self.input_size = input_size
        self.num_stages = VGG_DISCRIMINATOR_STAGES[input_size]  # each halves the size, down to 4x4
        nf = num_feat
        bias = not batch_norm  # a conv followed by BN needs no bias: BN's shift replaces it
        widths = [nf, nf * 2, nf * 4, nf * 8, nf * 8, nf * 8][: self.num_stages]  # stage i's channels
        self.conv0_0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1, bias=True)
        for i, width in enumerate(widths):
            if i > 0:  # stage 0 starts with conv0_0 (no BN); the others with a stride-1 conv + BN
                setattr(self, f"conv{i}_0", nn.Conv2d(widths[i - 1], width, 3, 1, 1, bias=bias))
                setattr(self, f"bn{i}_0", _norm_layer(width, batch_norm))
            setattr(self, f"conv{i}_1", nn.Conv2d(width, width, 4, 2, 1, bias=bias))  # stride 2
            setattr(self, f"bn{i}_1", _norm_layer(width, batch_norm))

        self.linear1 = nn.Linear(widths[-1] * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The score ``(N, 1)`` and the output of each stride-2 stage (``convX_1``, after its
        activation; four for 64 px, five for 128, six for 256), which feature matching compares."""
        _check_input_size("VGGStyleDiscriminator", x, self.input_size)
        # S = input_size; no BN on the first conv, as in the SRGAN discriminator.
        feat = self.lrelu(self.conv0_0(x))  # (N, F, S, S)
        blocks = []
        for i in range(self.num_stages):
            if i > 0:
                feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))  # stride 1
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))  # stride 2
            blocks.append(feat)  # (N, F, S/2, S/2), (N, 2F, S/4, S/4), ..., (N, 8F, 4, 4)
        feat = self.lrelu(self.linear1(feat.flatten(1)))  # (N, 100)
        return self.linear2(feat), blocks  # (N, 1)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

GENERATORS: dict[str, type[nn.Module]] = {
    "srresnet": SRResNet,
    "rrdbnet": RRDBNet,
    "srcnn": SRCNN,
    "autoencoder": ConvAutoencoder,
}


def build_generator(name: str, **kwargs) -> nn.Module:
    """Build a generator by name, so configs and notebooks can pick one with a string.

    Args:
        name: ``"srresnet"``, ``"rrdbnet"``, ``"srcnn"`` or ``"autoencoder"`` (case-insensitive).
        **kwargs: Passed to the class, e.g. ``scale=4, num_block=16``.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in GENERATORS:
        raise ValueError(f"unknown generator {reprlib.repr(name)}; known names: {sorted(GENERATORS)}")
    cls = GENERATORS[key]
    known = inspect.signature(cls).parameters
    unknown = [reprlib.repr(k) for k in kwargs if k not in known]
    if unknown:
        raise ValueError(f"{cls.__name__} has no argument {', '.join(unknown)}; its arguments: {', '.join(known)}")
    return cls(**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all of them, or only those with ``requires_grad``).

    Args:
        model: Any module.
        trainable_only: Count only parameters that the optimiser would update.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
