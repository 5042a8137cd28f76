"""Tests for srlab.losses, each against an independent reference (hand computation,
torch.nn.functional, numpy, or torchvision's own VGG-19)."""

from __future__ import annotations

import math
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from srlab import losses
from srlab.losses import (
    VGG19_LAYERS,
    PerceptualLoss,
    discriminator_bce_loss,
    gan_bce_loss,
    generator_bce_loss,
    gradient_penalty,
    pixel_loss,
    relativistic_discriminator_loss,
    relativistic_generator_loss,
    total_variation_loss,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def random_perceptual_loss(**kwargs) -> PerceptualLoss:
    with pytest.warns(UserWarning, match="smoke tests only"):
        return PerceptualLoss(weights=None, **kwargs)


@pytest.fixture(scope="module")
def torchvision_vgg19() -> nn.Module:
    """A plain, randomly initialised torchvision vgg19 (built once: ~3 s on CPU)."""
    torch.manual_seed(0)
    return torchvision.models.vgg19(weights=None).eval()


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)


# ----------------------------------------------------------------------------- VGG19_LAYERS


def test_vgg19_layers_match_torchvision_module_types(torchvision_vgg19):
    features = torchvision_vgg19.features
    assert len(VGG19_LAYERS) == len(features) == 37
    assert list(VGG19_LAYERS.values()) == list(range(37))
    expected_type = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, index in VGG19_LAYERS.items():
        kind = name[:4]
        assert isinstance(features[index], expected_type[kind]), name


def test_vgg19_layers_known_indices():
    assert VGG19_LAYERS["conv1_1"] == 0
    assert VGG19_LAYERS["relu1_1"] == 1
    assert VGG19_LAYERS["pool1"] == 4
    assert VGG19_LAYERS["conv2_1"] == 5
    assert VGG19_LAYERS["conv3_4"] == 16
    assert VGG19_LAYERS["relu3_4"] == 17
    assert VGG19_LAYERS["pool3"] == 18
    assert VGG19_LAYERS["conv5_4"] == 34
    assert VGG19_LAYERS["relu5_4"] == 35
    assert VGG19_LAYERS["pool5"] == 36


@pytest.mark.parametrize("layer, n_layers", [("relu3_4", 18), ("conv3_4", 17), ("relu5_4", 36), ("conv5_4", 35)])
def test_perceptual_loss_keeps_layers_up_to_the_chosen_one(layer, n_layers):
    loss = random_perceptual_loss(layer=layer)
    assert len(loss.vgg) == n_layers


# ----------------------------------------------------------------------------- PerceptualLoss


def test_features_equal_torchvision_vgg19_on_normalised_input(torchvision_vgg19, images):
    x, _ = images
    loss = random_perceptual_loss(layer={"conv3_4": 1.0, "relu3_4": 1.0})
    reference = torchvision.models.vgg19(weights=None)
    reference.features.load_state_dict(loss.vgg.state_dict(), strict=False)
    reference.eval()

    x_normalised = (x - MEAN) / STD
    with torch.no_grad():
        expected_conv = reference.features[:17](x_normalised.clone())
        features = loss.features(x)

    torch.testing.assert_close(features["conv3_4"], expected_conv, rtol=0, atol=1e-5)
    torch.testing.assert_close(features["relu3_4"], expected_conv.clamp_min(0), rtol=0, atol=1e-5)
    assert (features["relu3_4"] >= 0).all()
    assert (features["conv3_4"] < 0).any()  # read before the ReLU, not overwritten in place


def test_inplace_relus_replaced():
    loss = random_perceptual_loss(layer="relu5_4")
    relus = [m for m in loss.vgg if isinstance(m, nn.ReLU)]
    assert len(relus) == 16
    assert not any(m.inplace for m in relus)


def test_loss_of_identical_images_is_zero(images):
    x, _ = images
    loss = random_perceptual_loss(layer="relu3_4")
    assert loss(x, x).item() == 0.0


def test_loss_is_l1_or_mse_of_features(images):
    sr, hr = images
    l1 = random_perceptual_loss(layer="conv3_4", criterion="l1")
    with torch.no_grad():
        f_sr, f_hr = l1.features(sr)["conv3_4"], l1.features(hr)["conv3_4"]
        expected_l1 = (f_sr - f_hr).abs().mean()
        torch.testing.assert_close(l1(sr, hr), expected_l1)

    mse = random_perceptual_loss(layer="conv3_4", criterion="mse")
    mse.vgg.load_state_dict(l1.vgg.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(mse(sr, hr), ((f_sr - f_hr) ** 2).mean())


def test_multi_layer_loss_is_weighted_sum(images):
    sr, hr = images
    loss = random_perceptual_loss(layer={"relu2_2": 0.5, "conv3_4": 2.0})
    assert len(loss.vgg) == 17
    with torch.no_grad():
        f_sr, f_hr = loss.features(sr), loss.features(hr)
        assert set(f_sr) == {"relu2_2", "conv3_4"}
        expected = 0.5 * F.l1_loss(f_sr["relu2_2"], f_hr["relu2_2"]) + 2.0 * F.l1_loss(f_sr["conv3_4"], f_hr["conv3_4"])
        torch.testing.assert_close(loss(sr, hr), expected)


def test_weights_none_warns_not_perceptual():
    with pytest.warns(UserWarning, match="not perceptual"):
        PerceptualLoss(layer="conv1_2", weights=None)


def test_unknown_layer_and_criterion_raise():
    with pytest.raises(ValueError, match="relu5_4"):  # the message lists valid names
        PerceptualLoss(layer="relu6_1", weights=None)
    with pytest.raises(ValueError):
        PerceptualLoss(layer={"conv3_4": 1.0, "bogus": 1.0}, weights=None)
    with pytest.raises(ValueError):
        PerceptualLoss(layer="conv3_4", weights=None, criterion="huber")


@pytest.fixture
def empty_hub_dir(tmp_path, monkeypatch):
    """Point TORCH_HOME and the torch hub dir at an empty folder; restore afterwards."""
    old_hub_dir = torch.hub.get_dir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old_hub_dir)


def test_imagenet_weights_offline_raises_helpful_error(empty_hub_dir, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError) as excinfo:
        PerceptualLoss(layer="conv3_4", weights="imagenet")
    message = str(excinfo.value)
    assert "weights=None" in message
    assert "vgg19" in message.lower()
    assert "vgg19-dcbb9e9d.pth" in message  # torchvision's published file name
    assert str(empty_hub_dir / "checkpoints") in message
    assert "no network" in message
    assert isinstance(excinfo.value.__cause__, urllib.error.URLError)


def test_imagenet_weights_come_from_torch_hub(empty_hub_dir, monkeypatch, torchvision_vgg19, images):
    """Offline stand-in for the download: the hub returns a known vgg19 state dict."""
    requested = []

    def fake_hub(url, *args, **kwargs):
        requested.append(url)
        return torchvision_vgg19.state_dict()

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_hub)
    loss = PerceptualLoss(layer="conv3_4", weights="imagenet")
    assert requested == ["https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"]
    x, _ = images
    with torch.no_grad():
        expected = torchvision_vgg19.features[:17]((x - MEAN) / STD)
        torch.testing.assert_close(loss.features(x)["conv3_4"], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("features_only", [False, True])
def test_weights_from_path(tmp_path, torchvision_vgg19, images, features_only):
    model = torchvision_vgg19
    state = model.features.state_dict() if features_only else model.state_dict()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)

    loss = PerceptualLoss(layer="relu3_4", weights=path)
    loss_from_str = PerceptualLoss(layer="relu3_4", weights=str(path))
    x, _ = images
    with torch.no_grad():
        expected = model.features[:18]((x - MEAN) / STD)
        torch.testing.assert_close(loss.features(x)["relu3_4"], expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(loss_from_str.features(x)["relu3_4"], expected, rtol=0, atol=1e-5)


def test_frozen_eval_but_differentiable_wrt_input(images):
    class Trainer(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = nn.Conv2d(3, 3, 3, padding=1)
            self.perceptual = random_perceptual_loss(layer="conv2_2")

    trainer = Trainer()
    assert not any(p.requires_grad for p in trainer.perceptual.parameters())
    trainer.train()
    assert trainer.training and trainer.perceptual.training
    assert not trainer.perceptual.vgg.training
    assert not any(m.training for m in trainer.perceptual.vgg.modules())

    sr, hr = images
    sr = sr.clone().requires_grad_(True)
    trainer.perceptual(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in trainer.perceptual.parameters())


def test_normalisation_buffers_follow_the_module():
    loss = random_perceptual_loss(layer="conv1_1")
    buffers = dict(loss.named_buffers())
    torch.testing.assert_close(buffers["mean"], MEAN)
    torch.testing.assert_close(buffers["std"], STD)
    loss = loss.double()
    assert loss.mean.dtype == torch.float64


# ----------------------------------------------------------------------------- BCE GAN losses


def log_sigmoid(z: float) -> float:
    return -math.log1p(math.exp(-z))


LOGITS = [0.0, 2.0, -1.0]


def test_gan_bce_loss_by_hand():
    z = torch.tensor(LOGITS)
    expected_real = -sum(log_sigmoid(v) for v in LOGITS) / 3
    expected_fake = -sum(math.log(1 - 1 / (1 + math.exp(-v))) for v in LOGITS) / 3
    assert gan_bce_loss(z, True).item() == pytest.approx(expected_real, rel=1e-6)
    assert gan_bce_loss(z, False).item() == pytest.approx(expected_fake, rel=1e-6)
    # a logit of 0 is a 50/50 guess: log 2 either way
    assert gan_bce_loss(torch.zeros(4), True).item() == pytest.approx(math.log(2))


def test_gan_bce_loss_is_finite_for_saturated_logits():
    z = torch.tensor([-200.0, 200.0])
    assert torch.isfinite(gan_bce_loss(z, True))
    assert gan_bce_loss(z, True).item() == pytest.approx(100.0)  # -log sigmoid(-200) ~ 200


def test_discriminator_and_generator_bce_by_hand():
    real = torch.tensor([3.0, 1.0])
    fake = torch.tensor([-2.0, 0.5])
    d_expected = -np.mean([log_sigmoid(3.0), log_sigmoid(1.0)]) - np.mean(
        [log_sigmoid(2.0), log_sigmoid(-0.5)]  # log(1 - sigmoid(z)) = log sigmoid(-z)
    )
    g_expected = -np.mean([log_sigmoid(-2.0), log_sigmoid(0.5)])
    assert discriminator_bce_loss(real, fake).item() == pytest.approx(d_expected, rel=1e-6)
    assert generator_bce_loss(fake).item() == pytest.approx(g_expected, rel=1e-6)


# ----------------------------------------------------------------------------- relativistic average GAN


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def relativistic_by_hand(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    d_real_vs_fake = np_sigmoid(real - fake.mean())
    d_fake_vs_real = np_sigmoid(fake - real.mean())
    d_loss = (-np.mean(np.log(d_real_vs_fake)) - np.mean(np.log(1 - d_fake_vs_real))) / 2
    g_loss = (-np.mean(np.log(1 - d_real_vs_fake)) - np.mean(np.log(d_fake_vs_real))) / 2
    return float(d_loss), float(g_loss)


def test_relativistic_losses_by_hand():
    real = np.array([1.5, -0.5, 0.25, 2.0])
    fake = np.array([-1.0, 0.3, 0.0, -0.7])
    d_expected, g_expected = relativistic_by_hand(real, fake)
    real_t, fake_t = torch.tensor(real), torch.tensor(fake)
    assert relativistic_discriminator_loss(real_t, fake_t).item() == pytest.approx(d_expected, rel=1e-9)
    assert relativistic_generator_loss(real_t, fake_t).item() == pytest.approx(g_expected, rel=1e-9)


def test_relativistic_losses_when_discriminator_wins():
    real = torch.full((8,), 10.0)
    fake = torch.full((8,), -10.0)
    assert relativistic_discriminator_loss(real, fake).item() < 1e-6
    # relative logit 20: G loss = (softplus(20) + softplus(20)) / 2 ~ 20
    assert relativistic_generator_loss(real, fake).item() == pytest.approx(20.0, rel=1e-6)


def test_relativistic_losses_equal_log2_when_undecided():
    same = torch.full((3,), 0.7)  # every relative logit C(a) - E[C(b)] is 0
    assert relativistic_discriminator_loss(same, same).item() == pytest.approx(math.log(2))
    assert relativistic_generator_loss(same, same).item() == pytest.approx(math.log(2))


def test_relativistic_generator_gradient_reaches_fakes_only_when_real_detached():
    real = torch.tensor([1.0, 2.0], requires_grad=True)
    fake = torch.tensor([0.0, -1.0], requires_grad=True)
    relativistic_generator_loss(real.detach(), fake).backward()
    assert real.grad is None
    assert fake.grad is not None and fake.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- WGAN-GP


def test_wasserstein_losses_by_hand():
    real = torch.tensor([1.0, 3.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    assert wasserstein_critic_loss(real, fake).item() == pytest.approx((-1 / 3) - 2.0)
    assert wasserstein_generator_loss(fake).item() == pytest.approx(1 / 3)


class LinearCritic(nn.Module):
    """C(x) = sum(w * x): its gradient w.r.t. x is w, whatever x is."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return (x * self.w).flatten(1).sum(dim=1)


def test_gradient_penalty_of_linear_critic():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(4, 3, 8, 8, generator=g)
    fake = torch.rand(4, 3, 8, 8, generator=g)
    w = torch.randn(1, 3, 8, 8, generator=g)
    norm = w.norm().item()
    gp = gradient_penalty(LinearCritic(w), real, fake, weight=10.0, generator=g)
    assert gp.item() == pytest.approx(10.0 * (norm - 1) ** 2, rel=1e-5)

    unit = LinearCritic(w / w.norm())
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-9)


def test_gradient_penalty_trains_the_critic():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    critic = LinearCritic(2 * torch.ones(1, 3, 4, 4))
    gp = gradient_penalty(critic, real, fake, weight=1.0)
    gp.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    w = critic.w.detach()
    expected = 2 * (w.norm() - 1) * w / w.norm()
    assert critic.w.grad is not None
    torch.testing.assert_close(critic.w.grad, expected, rtol=1e-5, atol=1e-6)


def test_gradient_penalty_reproducible_with_generator():
    torch.manual_seed(3)
    critic = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    real, fake = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    gp1 = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    gp2 = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    assert gp1.item() == gp2.item()


# ----------------------------------------------------------------------------- pixel losses


def test_pixel_loss_against_numpy():
    g = torch.Generator().manual_seed(2)
    sr, hr = torch.rand(2, 3, 5, 4, generator=g), torch.rand(2, 3, 5, 4, generator=g)
    diff = sr.numpy() - hr.numpy()
    assert pixel_loss(sr, hr, "l1").item() == pytest.approx(np.abs(diff).mean(), rel=1e-6)
    assert pixel_loss(sr, hr, "mse").item() == pytest.approx((diff**2).mean(), rel=1e-6)
    assert pixel_loss(sr, hr).item() == pytest.approx(np.abs(diff).mean(), rel=1e-6)
    with pytest.raises(ValueError):
        pixel_loss(sr, hr, "l2")


def test_total_variation_by_hand():
    img = torch.tensor([[[[1.0, 4.0, 2.0], [0.0, 4.0, 5.0]]]])  # (1, 1, 2, 3)
    vertical = (abs(0 - 1) + abs(4 - 4) + abs(5 - 2)) / 3  # 3 differences down the rows
    horizontal = (abs(4 - 1) + abs(2 - 4) + abs(4 - 0) + abs(5 - 4)) / 4  # 4 across columns
    assert total_variation_loss(img).item() == pytest.approx(vertical + horizontal)
    assert total_variation_loss(torch.full((2, 3, 6, 7), 0.4)).item() == 0.0


def test_public_names_exported():
    for name in losses.__all__:
        assert hasattr(losses, name)


def test_a_perceptual_weight_on_a_pixel_stage_says_which_setting_is_missing(tmp_path):
    """`--set perceptual_weight=0.1` on SRResNet (whose perceptual_layer is None) failed with a
    bare TypeError from deep inside the first training step."""
    from srlab.presets import make_config
    from srlab.train import train

    message = r"perceptual_layer is None: set one, e.g. --set perceptual_layer=relu5_4"
    with pytest.raises(ValueError, match=message):
        PerceptualLoss(layer=None, weights=None)
    cfg = make_config("srresnet", "smoke", perceptual_weight=0.1, vgg_weights=None, amp="off")
    with pytest.raises(ValueError, match=message):
        train(cfg, tmp_path / "run", progress=False)
