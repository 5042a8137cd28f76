"""Tests for srlab.models.

Expected values are computed independently: parameter counts from the layer
formulas of the papers / BasicSR, RRDBNet outputs from spandrel's own ESRGAN
implementation, residual behaviour by hand. Small configs keep this file fast.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from srlab.models import (
    RRDB,
    SRCNN,
    ResidualDenseBlock,
    RRDBNet,
    SRGANDiscriminator,
    SRResNet,
    VGGStyleDiscriminator,
    build_generator,
    count_parameters,
)
from srlab.resize import imresize


def conv_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn_params(c: int) -> int:
    return 2 * c  # weight + bias (running stats are buffers)


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# ---------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------


def test_srresnet_default_parameter_count():
    # SRGAN paper architecture (16 blocks, 64 channels, one-parameter PReLUs).
    assert count_parameters(SRResNet()) == 1_549_462


def test_srresnet_parameter_count_matches_layer_formula():
    f, nb = 64, 16
    head = conv_params(3, f, 9) + 1  # + PReLU
    block = 2 * conv_params(f, f, 3) + 2 * bn_params(f) + 1
    body_tail = conv_params(f, f, 3) + bn_params(f)
    up_stage = conv_params(f, f * 4, 3) + 1
    tail = conv_params(f, 3, 9)
    expected = head + nb * block + body_tail + 2 * up_stage + tail
    assert expected == 1_549_462
    assert count_parameters(SRResNet()) == expected


def test_srresnet_without_batch_norm_parameter_count():
    # 33 BN layers (2 per block * 16 + 1 after the body), 2*64 params each.
    expected = 1_549_462 - 2 * 64 * (2 * 16 + 1)
    model = SRResNet(batch_norm=False)
    assert count_parameters(model) == expected == 1_545_238
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_srresnet_uses_single_parameter_prelu():
    prelus = [m for m in SRResNet(num_block=2).modules() if isinstance(m, nn.PReLU)]
    # head + one per block + one per upsampling stage (scale 4: two)
    assert len(prelus) == 1 + 2 + 2
    assert all(p.weight.numel() == 1 for p in prelus)


def test_rrdbnet_default_parameter_count():
    # BasicSR RRDBNet(num_feat=64, num_block=23, num_grow_ch=32), the ESRGAN x4 model.
    assert count_parameters(RRDBNet()) == 16_697_987


def test_rrdbnet_parameter_count_matches_layer_formula():
    f, g, nb = 64, 32, 23
    rdb = sum(conv_params(f + k * g, g, 3) for k in range(4)) + conv_params(f + 4 * g, f, 3)
    expected = (
        conv_params(3, f, 3)  # conv_first
        + nb * 3 * rdb
        + 4 * conv_params(f, f, 3)  # conv_body, conv_up1, conv_up2, conv_hr
        + conv_params(f, 3, 3)  # conv_last
    )
    assert expected == 16_697_987


def test_srcnn_parameter_count():
    expected = (9 * 9 * 3 * 64 + 64) + (5 * 5 * 64 * 32 + 32) + (5 * 5 * 32 * 3 + 3)
    assert count_parameters(SRCNN()) == expected == 69_251


def test_srgan_discriminator_parameter_count():
    f = 64
    widths = [f, f, 2 * f, 2 * f, 4 * f, 4 * f, 8 * f, 8 * f]
    ins = [3] + widths[:-1]
    convs = sum(conv_params(i, o, 3) for i, o in zip(ins, widths))
    bns = sum(bn_params(c) for c in widths[1:])
    side = 96 // 16
    dense = linear_params(8 * f * side * side, 1024) + linear_params(1024, 1)
    expected = convs + bns + dense
    assert count_parameters(SRGANDiscriminator()) == expected == 23_565_505


def test_vgg_discriminator_parameter_count():
    f = 64
    # (c_in, c_out, kernel, bias) for conv0_0 .. conv4_1
    convs = [
        (3, f, 3, True),
        (f, f, 4, False),
        (f, 2 * f, 3, False),
        (2 * f, 2 * f, 4, False),
        (2 * f, 4 * f, 3, False),
        (4 * f, 4 * f, 4, False),
        (4 * f, 8 * f, 3, False),
        (8 * f, 8 * f, 4, False),
        (8 * f, 8 * f, 3, False),
        (8 * f, 8 * f, 4, False),
    ]
    expected = (
        sum(conv_params(*c) for c in convs)
        + sum(bn_params(c[1]) for c in convs[1:])
        + linear_params(8 * f * 4 * 4, 100)
        + linear_params(100, 1)
    )
    assert count_parameters(VGGStyleDiscriminator()) == expected
    # input_size=256 adds conv5_0 (3x3), conv5_1 (4x4) and their BNs.
    extra = conv_params(8 * f, 8 * f, 3, False) + conv_params(8 * f, 8 * f, 4, False)
    extra += 2 * bn_params(8 * f)
    assert count_parameters(VGGStyleDiscriminator(input_size=256)) == expected + extra


def test_srgan_discriminator_without_batch_norm_parameter_count():
    # The seven BN layers (after conv 2..8) go, 2 parameters per channel; the convs
    # already had biases, so nothing comes back: 64+128+128+256+256+512+512 = 1856 channels.
    expected = 23_565_505 - 2 * 1856
    assert count_parameters(SRGANDiscriminator(batch_norm=False)) == expected == 23_561_793


def test_vgg_discriminator_without_batch_norm_parameter_count():
    f = 64
    # Every conv now has a bias and no BN follows it.
    convs = [
        (3, f, 3),
        (f, f, 4),
        (f, 2 * f, 3),
        (2 * f, 2 * f, 4),
        (2 * f, 4 * f, 3),
        (4 * f, 4 * f, 4),
        (4 * f, 8 * f, 3),
        (8 * f, 8 * f, 4),
        (8 * f, 8 * f, 3),
        (8 * f, 8 * f, 4),
    ]
    dense = linear_params(8 * f * 4 * 4, 100) + linear_params(100, 1)
    expected = sum(conv_params(*c) for c in convs) + dense
    # = the BN model minus 2 * 2880 BN parameters plus 2880 conv biases (conv0_1 .. conv4_1).
    assert expected == 14_499_401 - 2880
    assert count_parameters(VGGStyleDiscriminator(batch_norm=False)) == expected
    extra = conv_params(8 * f, 8 * f, 3) + conv_params(8 * f, 8 * f, 4)
    assert count_parameters(VGGStyleDiscriminator(input_size=256, batch_norm=False)) == expected + extra


def test_count_parameters_trainable_only():
    model = SRCNN()
    model.conv1.requires_grad_(False)
    frozen = 9 * 9 * 3 * 64 + 64
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - frozen


# ---------------------------------------------------------------------------
# Output shapes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_srresnet_output_shape(scale):
    model = SRResNet(num_feat=16, num_block=2, scale=scale)
    x = torch.rand(2, 3, 6, 5)
    assert model(x).shape == (2, 3, 6 * scale, 5 * scale)


def test_srresnet_channels_and_no_bn_variant():
    model = SRResNet(num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1, scale=2, batch_norm=False)
    assert model(torch.rand(1, 1, 7, 9)).shape == (1, 1, 14, 18)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_output_shape(scale):
    model = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8, scale=scale)
    x = torch.rand(2, 3, 8, 12)
    assert model(x).shape == (2, 3, 8 * scale, 12 * scale)


@pytest.mark.parametrize("scale", [1, 2])
def test_rrdbnet_unshuffle_odd_sizes_are_padded_and_cropped(scale):
    model = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8, scale=scale)
    assert model(torch.rand(1, 3, 9, 7)).shape == (1, 3, 9 * scale, 7 * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srcnn_output_shape(scale):
    model = SRCNN(num_channels=3, scale=scale)
    assert model(torch.rand(2, 3, 5, 7)).shape == (2, 3, 5 * scale, 7 * scale)


def test_srcnn_starts_from_bicubic():
    # With conv1/conv2 passing a channel through and conv3 reading it back,
    # SRCNN (on non-negative input) is the bicubic upsampler it wraps.
    model = SRCNN(num_channels=1, scale=2)
    for conv in (model.conv1, model.conv2, model.conv3):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    with torch.no_grad():
        model.conv1.weight[0, 0, 4, 4] = 1.0
        model.conv2.weight[0, 0, 2, 2] = 1.0
        model.conv3.weight[0, 0, 2, 2] = 1.0
    # A linear ramp: bicubic reproduces it in the interior and stays >= 0.
    x = torch.linspace(0.2, 0.8, 8).repeat(1, 1, 8, 1)
    bicubic = nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.all(bicubic >= 0)
    with torch.no_grad():
        assert torch.allclose(model(x), bicubic, atol=1e-6)


# ---------------------------------------------------------------------------
# RRDBNet: BasicSR names, spandrel round trip, init, residual scaling
# ---------------------------------------------------------------------------


def expected_basicsr_keys(num_block: int) -> list[str]:
    keys = ["conv_first.weight", "conv_first.bias"]
    for b in range(num_block):
        for r in (1, 2, 3):
            for c in (1, 2, 3, 4, 5):
                keys += [f"body.{b}.rdb{r}.conv{c}.weight", f"body.{b}.rdb{r}.conv{c}.bias"]
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"):
        keys += [f"{name}.weight", f"{name}.bias"]
    return keys


def test_rrdbnet_state_dict_keys_match_basicsr():
    model = RRDBNet(num_feat=16, num_block=2, num_grow_ch=8)
    assert list(model.state_dict().keys()) == expected_basicsr_keys(2)
    assert len(expected_basicsr_keys(2)) == 2 + 2 * 3 * 5 * 2 + 5 * 2


def test_rrdbnet_dense_connection_widths():
    f, g = 16, 8
    sd = RRDBNet(num_feat=f, num_block=1, num_grow_ch=g, scale=2).state_dict()
    for k in range(1, 6):
        w = sd[f"body.0.rdb2.conv{k}.weight"]
        assert w.shape == (g if k < 5 else f, f + (k - 1) * g, 3, 3)
    assert sd["conv_first.weight"].shape == (f, 3 * 4, 3, 3)  # pixel_unshuffle by 2


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdbnet_matches_spandrel_esrgan(scale):
    spandrel = pytest.importorskip("spandrel")
    torch.manual_seed(0)
    # spandrel hard-codes a growth rate of 32, so num_grow_ch must stay 32.
    model = RRDBNet(num_feat=32, num_block=2, num_grow_ch=32, scale=scale).eval()
    desc = spandrel.ModelLoader().load_from_state_dict(model.state_dict())
    assert desc.architecture.id == "ESRGAN"
    assert desc.scale == scale
    assert desc.input_channels == 3 and desc.output_channels == 3
    assert desc.model.hyperparameters["num_blocks"] == 2
    assert desc.model.hyperparameters["num_filters"] == 32
    assert desc.model.hyperparameters["shuffle_factor"] == {4: None, 2: 2, 1: 4}[scale]
    ref = desc.model.eval()
    # 16x16 needs no padding; 13x11 exercises the reflect padding for scales 1 and 2.
    for size in ((16, 16), (13, 11)):
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            ours, theirs = model(x), ref(x)
        assert ours.shape == theirs.shape == (1, 3, size[0] * scale, size[1] * scale)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_rrdb_init_is_scaled_kaiming():
    torch.manual_seed(0)
    block = ResidualDenseBlock(num_feat=64, num_grow_ch=32)
    for conv in (block.conv1, block.conv2, block.conv3, block.conv4, block.conv5):
        fan_in = conv.weight[0].numel()
        kaiming_std = math.sqrt(2.0 / fan_in)
        ratio = conv.weight.std().item() / kaiming_std
        assert 0.08 < ratio < 0.12, ratio
        assert torch.all(conv.bias == 0)


def test_rrdbnet_outer_convs_keep_default_init():
    # Only the RDB convs get the 0.1 scaling; conv_first keeps PyTorch's default,
    # whose std is 1/sqrt(3 * fan_in) (kaiming_uniform with a=sqrt(5)).
    torch.manual_seed(0)
    w = RRDBNet(num_feat=64, num_block=1).conv_body.weight
    ratio = w.std().item() / math.sqrt(1.0 / (3 * w[0].numel()))
    assert 0.9 < ratio < 1.1


def _zero_(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def test_rdb_with_zero_weights_is_identity():
    # conv5 outputs 0, so x5 * 0.2 + x = x.
    rdb = ResidualDenseBlock(num_feat=8, num_grow_ch=4)
    _zero_(rdb)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(rdb(x), x)


def test_rdb_residual_scaling_is_0_2():
    # conv1-4 give 0 (LeakyReLU(0) = 0), conv5 then outputs just its bias b,
    # so the block returns x + 0.2 * b.
    rdb = ResidualDenseBlock(num_feat=8, num_grow_ch=4)
    _zero_(rdb)
    bias = torch.arange(8, dtype=torch.float32)
    with torch.no_grad():
        rdb.conv5.bias.copy_(bias)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(rdb(x), x + 0.2 * bias.view(1, 8, 1, 1))


def test_rrdb_with_zero_weights_scales_by_1_2():
    # Each zeroed RDB is the identity, so the three-RDB chain returns x and the
    # outer scaled skip gives 0.2 * x + x = 1.2 * x: an RRDB is *not* exactly
    # the identity at zero weights, it is a fixed gain of 1.2.
    rrdb = RRDB(num_feat=8, num_grow_ch=4)
    _zero_(rrdb)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(rrdb(x), 1.2 * x)


# ---------------------------------------------------------------------------
# Discriminators
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("input_size", [32, 96])
def test_srgan_discriminator_output_shape(input_size):
    model = SRGANDiscriminator(num_feat=8, input_size=input_size)
    assert model(torch.rand(2, 3, input_size, input_size)).shape == (2, 1)


def test_srgan_discriminator_wrong_size_message():
    model = SRGANDiscriminator(num_feat=8, input_size=96)
    with pytest.raises(ValueError, match="96x96") as err:
        model(torch.rand(1, 3, 64, 80))
    assert "64x80" in str(err.value)
    with pytest.raises(ValueError, match="input_size=64"):
        model(torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize("input_size", [0, 8, 100])
def test_srgan_discriminator_bad_input_size(input_size):
    with pytest.raises(ValueError, match="16"):
        SRGANDiscriminator(input_size=input_size)


def test_srgan_discriminator_strides_and_batch_norm():
    model = SRGANDiscriminator(num_feat=8)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32, 64, 64]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 7


@pytest.mark.parametrize("input_size", [64, 128, 256])
def test_vgg_discriminator_output_shape(input_size):
    model = VGGStyleDiscriminator(num_feat=4, input_size=input_size)
    assert model(torch.rand(2, 3, input_size, input_size)).shape == (2, 1)


def test_vgg_discriminator_names():
    names = set(dict(VGGStyleDiscriminator(num_feat=4).named_parameters()))
    expected = {"conv0_0.weight", "conv0_0.bias", "bn0_1.weight", "linear1.weight", "linear2.weight"}
    assert expected <= names
    assert "conv0_1.bias" not in names  # BN follows, so no conv bias (as in BasicSR)
    assert "conv5_0.weight" not in names
    names256 = set(dict(VGGStyleDiscriminator(num_feat=4, input_size=256).named_parameters()))
    assert {"conv5_0.weight", "bn5_0.weight", "conv5_1.weight", "bn5_1.weight"} <= names256
    names64 = set(dict(VGGStyleDiscriminator(num_feat=4, input_size=64).named_parameters()))
    assert "conv3_1.weight" in names64 and "conv4_0.weight" not in names64  # four stages: 64 -> 4
    assert VGGStyleDiscriminator(num_feat=4, input_size=64).linear1.in_features == 4 * 8 * 4 * 4


def test_vgg_discriminator_wrong_size_and_bad_input_size():
    model = VGGStyleDiscriminator(num_feat=4)
    with pytest.raises(ValueError, match="128x128") as err:
        model(torch.rand(1, 3, 96, 96))
    assert "96x96" in str(err.value)
    with pytest.raises(ValueError, match="128"):
        VGGStyleDiscriminator(input_size=192)


# The three critic layouts, small enough for fast forward and backward passes.
SMALL_DISCRIMINATORS = [
    (SRGANDiscriminator, dict(num_feat=4, input_size=32)),
    (VGGStyleDiscriminator, dict(num_feat=4, input_size=128)),
    (VGGStyleDiscriminator, dict(num_feat=4, input_size=256)),
]


@pytest.mark.parametrize("cls, kwargs", SMALL_DISCRIMINATORS)
def test_discriminator_without_batch_norm_has_no_bn_and_keeps_conv_biases(cls, kwargs):
    model = cls(**kwargs, batch_norm=False)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not any("running_" in k or "bn" in k for k in model.state_dict())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is not None for c in convs)


def _batch_for(kwargs: dict, n: int) -> torch.Tensor:
    side = kwargs["input_size"]
    return torch.rand(n, 3, side, side)


def _cross_sample_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d score_0 / d x_j for the other samples j: all zero iff sample 0's score ignores them."""
    x = x.clone().requires_grad_(True)
    model(x)[0].sum().backward()
    return x.grad[1:]


@pytest.mark.parametrize("cls, kwargs", SMALL_DISCRIMINATORS)
def test_critic_without_batch_norm_scores_each_sample_on_its_own(cls, kwargs):
    # The WGAN-GP penalty is (||d D(x_i) / d x_i|| - 1)^2 for each sample i: it is only
    # that sample's gradient if D(x_i) does not depend on the other samples of the batch.
    torch.manual_seed(0)
    critic = cls(**kwargs, batch_norm=False).train()
    x = _batch_for(kwargs, 3)
    alone = critic(x[:1])
    with_others = critic(torch.cat([x[:1], _batch_for(kwargs, 2)]))[:1]
    torch.testing.assert_close(with_others, alone, atol=1e-6, rtol=1e-5)
    assert torch.count_nonzero(_cross_sample_gradient(critic, x)) == 0


@pytest.mark.parametrize("cls, kwargs", SMALL_DISCRIMINATORS)
def test_batch_norm_in_train_mode_couples_the_samples(cls, kwargs):
    # The counter-example: BN normalises with the batch's statistics, so a sample's score
    # moves when its neighbours change, and its gradient reaches them.
    torch.manual_seed(0)
    model = cls(**kwargs).train()
    x = _batch_for(kwargs, 3)
    first = model(x)[:1]
    changed = model(torch.cat([x[:1], _batch_for(kwargs, 2)]))[:1]
    assert (first - changed).abs().max() > 1e-4
    assert _cross_sample_gradient(model, x).abs().max() > 0


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("cls, kwargs", SMALL_DISCRIMINATORS)
def test_discriminator_output_is_the_last_linear_layer_with_no_sigmoid(cls, kwargs, batch_norm):
    # A zero weight leaves the last layer's bias: the output must be exactly that bias, -3
    # (a sigmoid would give 0.047, a tanh -0.995), so the score is unbounded, as a WGAN
    # critic needs, and a logit for BCE-with-logits.
    model = cls(**kwargs, batch_norm=batch_norm).eval()
    last = model.classifier[-1] if cls is SRGANDiscriminator else model.linear2
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-3.0)
        out = model(_batch_for(kwargs, 2))
    assert torch.equal(out, torch.full((2, 1), -3.0))


# ---------------------------------------------------------------------------
# Scales and the factory
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, scale, supported",
    [
        (SRResNet, 5, "[2, 3, 4, 8]"),
        (SRResNet, 1, "[2, 3, 4, 8]"),
        (RRDBNet, 3, "[1, 2, 4]"),
        (RRDBNet, 8, "[1, 2, 4]"),
    ],
)
def test_unsupported_scale_raises(cls, scale, supported):
    with pytest.raises(ValueError) as err:
        cls(num_feat=8, num_block=1, scale=scale)
    assert supported in str(err.value)


@pytest.mark.parametrize("scale", [0, -2, 2.5])
def test_srcnn_bad_scale_raises(scale):
    with pytest.raises(ValueError):
        SRCNN(scale=scale)


def test_build_generator():
    assert isinstance(build_generator("SRResNet", num_feat=8, num_block=1), SRResNet)
    model = build_generator("rrdbnet", num_feat=8, num_block=1, num_grow_ch=4, scale=2)
    assert isinstance(model, RRDBNet) and model.scale == 2
    assert isinstance(build_generator("SRCNN", scale=3), SRCNN)
    with pytest.raises(ValueError) as err:
        build_generator("edsr")
    for name in ("srresnet", "rrdbnet", "srcnn"):
        assert name in str(err.value)


@pytest.mark.parametrize("cls", [SRResNet, RRDBNet])
def test_bicubic_residual_starts_as_matlab_bicubic_and_keeps_the_state_dict(cls):
    small = dict(num_feat=16, num_block=1) if cls is SRResNet else dict(num_feat=16, num_block=1, num_grow_ch=8)
    plain, residual = cls(**small), cls(**small, bicubic_residual=True)
    assert plain.state_dict().keys() == residual.state_dict().keys()
    rng = np.random.default_rng(0)
    lr = rng.random((12, 10, 3))  # float64 HWC
    expected = imresize(lr, 4)  # MATLAB bicubic, numpy
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float()  # (1, 3, 12, 10)
    with torch.no_grad():
        out = residual.eval()(x)[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(("scale", "lr_size"), [(2, 25), (3, 25), (4, 25), (2, 13)])
def test_the_autoencoder_gives_h_times_s_for_any_size(scale, lr_size):
    """Two stride-2 layers and two transposed ones come back to a multiple of 4: at scale 2 or 3
    on 25 px (50, 75 px) the decoder's output did not match the bicubic image (RuntimeError)."""
    from srlab.models import ConvAutoencoder, _bicubic

    torch.manual_seed(0)
    model = ConvAutoencoder(num_feat=8, scale=scale).eval()
    nn.init.normal_(model.decoder[-1].weight, std=0.1)  # not the zero start: the decoder counts
    x = torch.rand(1, 3, lr_size, lr_size + 1)
    H, W = lr_size * scale, (lr_size + 1) * scale
    with torch.no_grad():
        y = model(x)
        # by hand: replicate-pad the bicubic image to a multiple of 4, run it through, crop, add
        up = _bicubic(x, scale)
        padded = torch.nn.functional.pad(up, (0, (-W) % 4, 0, (-H) % 4), mode="replicate")
        expected = model.decoder(model.encoder(padded))[..., :H, :W] + up
    assert y.shape == (1, 3, H, W)
    torch.testing.assert_close(y, expected)
