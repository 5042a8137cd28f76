"""The generator step, the discriminator step and the three adversaries, checked by hand."""

import numpy as np
import pytest
import torch

from srlab import losses
from srlab.adversaries import WGANGPAdversary
from srlab.presets import make_config
from srlab.train import LossMeter, Trainer, lr_factor, read_history, train


def smoke(stage, **overrides):
    return make_config(stage, "smoke", **{"init_from": "none", "amp": "off", **overrides})


def test_wgan_gp_trains_and_drives_the_interpolate_gradient_norm_towards_one(tmp_path):
    cfg = smoke(
        "esrgan",
        adversarial="wgan-gp",
        steps=40,
        val_every=1000,
        ckpt_every=1000,
        perceptual_weight=0.0,
        generator={**make_config("esrgan", "smoke").generator},
    )
    summary = train(cfg, tmp_path, progress=False)
    assert summary["step"] == 40
    history = [r for r in read_history(tmp_path / "history.jsonl") if "grad_norm" in r]
    norms = np.array([r["grad_norm"] for r in history])
    assert len(norms) == 40  # the critic is updated every step
    first, last = abs(norms[:5].mean() - 1), abs(norms[-10:].mean() - 1)
    assert last < first / 2 and last < 0.3, (norms[:5], norms[-10:])
    # n_critic = 5: the generator is updated on every 5th step only
    assert [r["step"] for r in history if "loss_g" in r] == [5, 10, 15, 20, 25, 30, 35, 40]
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert not any("running_mean" in k for k in ckpt["discriminator"])  # a critic without batch norm


def test_the_critic_step_is_the_wgan_gp_loss_by_hand():
    torch.manual_seed(0)
    trainer = Trainer(smoke("esrgan", adversarial="wgan-gp"), "/tmp/srlab-test-unused", progress=False)
    adversary = trainer.adversary
    assert isinstance(adversary, WGANGPAdversary)
    hr, sr = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)
    torch.manual_seed(1)
    loss, stats = adversary.discriminator_loss(sr, hr)
    torch.manual_seed(1)  # the same interpolation weights eps
    critic = adversary.net
    expected = critic(sr).mean() - critic(hr).mean() + losses.gradient_penalty(critic, hr, sr, weight=10.0)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["wasserstein"], critic(hr).mean() - critic(sr).mean(), rtol=1e-5, atol=1e-6)


def test_the_generator_step_leaves_the_discriminator_alone_and_sums_its_weighted_terms(tmp_path):
    trainer = Trainer(smoke("srgan", pixel_weight=0.5), tmp_path, progress=False)
    d_before = {k: v.clone() for k, v in trainer.adversary.net.named_parameters()}  # BN statistics do move
    lr, hr = trainer.next_batch(0)
    sr, logs = trainer.g_step(lr, hr, hr)
    assert all(p.grad is None for p in trainer.adversary.net.parameters())  # frozen: no gradient reached D
    assert all(torch.equal(v, dict(trainer.adversary.net.named_parameters())[k]) for k, v in d_before.items())
    assert all(p.requires_grad for p in trainer.adversary.net.parameters())  # unfrozen after
    assert set(logs) == {"loss_pixel", "loss_perceptual", "loss_adv", "loss_g"}
    total = 0.5 * logs["loss_pixel"] + 1.0 * logs["loss_perceptual"] + 1e-3 * logs["loss_adv"]
    torch.testing.assert_close(logs["loss_g"], total)


def test_history_logs_only_the_terms_a_stage_has(tmp_path):
    train(smoke("srgan"), tmp_path, progress=False)  # SRGAN: no pixel term
    records = [r for r in read_history(tmp_path / "history.jsonl") if "loss_g" in r]
    assert records and all("loss_pixel" not in r for r in records)
    for r in records:  # log_every=1: the logged total is the weighted sum of the logged terms
        assert r["loss_g"] == pytest.approx(r["loss_perceptual"] + 1e-3 * r["loss_adv"], rel=1e-5)
        assert 0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1


def test_loss_meter_averages_each_key_over_its_own_count():
    meter = LossMeter()
    meter.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)})
    meter.add({"a": torch.tensor(3.0)})
    assert meter.means() == {"a": 2.0, "b": 4.0}
    assert meter.means() == {}  # reset after reading


def test_the_pixel_loss_aims_at_the_sharpened_target_when_given(tmp_path):
    trainer = Trainer(smoke("rrdb"), tmp_path, progress=False)
    lr, hr = trainer.next_batch(0)
    sharp = (hr * 1.1).clamp(0, 1)
    with torch.no_grad():
        expected = (trainer.G(lr) - sharp).abs().mean()  # RRDBNet has no BN: train and eval agree
    logs = trainer.train_step(lr, hr, sharp)
    torch.testing.assert_close(logs["loss_pixel"], expected, rtol=1e-5, atol=1e-6)


def test_the_learning_rate_follows_the_schedule_with_srgans_tenfold_drop(tmp_path):
    cfg = smoke("srgan", milestones=(3,), lr_gamma=0.1, lr_g=1e-4, lr_d=2e-4)
    assert [lr_factor(cfg, s) for s in (0, 2, 3, 10)] == [1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1)]
    trainer = Trainer(cfg, tmp_path, progress=False)
    for step in range(4):
        trainer.train_step(*trainer.next_batch(step))
        trainer.step += 1
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(1e-5)  # step 3 ran at 1e-4 x 0.1
    assert trainer.adversary.opt.param_groups[0]["lr"] == pytest.approx(2e-5)


# ---------------------------------------------------------------- feature matching (--perceptual discriminator)


def test_feature_matching_loss_is_the_sum_of_mean_absolute_differences_by_hand():
    fake = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([0.0, -2.0, 5.0])]
    real = [torch.tensor([[1.0, 0.0], [0.0, 4.0]]), torch.tensor([1.0, 1.0, 1.0])]
    # block 1: |0| + |2| + |3| + |0| over 4 = 1.25; block 2: (1 + 3 + 4) / 3 = 8/3
    assert losses.feature_matching_loss(fake, real).item() == pytest.approx(1.25 + 8 / 3)
    fake_leaf = fake[1].clone().requires_grad_()
    real_leaf = real[1].clone().requires_grad_()
    losses.feature_matching_loss([fake_leaf], [real_leaf]).backward()
    assert fake_leaf.grad.tolist() == pytest.approx([-1 / 3, -1 / 3, 1 / 3])  # sign(fake - real) / N
    assert real_leaf.grad is None  # HR's features are constants
    with pytest.raises(ValueError, match="same blocks"):
        losses.feature_matching_loss(fake, real[:1])


@pytest.mark.parametrize(
    ("spec", "shapes"),
    [
        ({"name": "srgan", "input_size": 32, "num_feat": 4}, [(4, 16), (8, 8), (16, 4), (32, 2)]),
        ({"name": "vgg", "input_size": 128, "num_feat": 4}, [(4, 64), (8, 32), (16, 16), (32, 8), (32, 4)]),
    ],
)
def test_discriminators_expose_their_stride_two_blocks_and_the_same_score(spec, shapes):
    from srlab.adversaries import build_discriminator

    torch.manual_seed(0)
    net = build_discriminator(spec).eval()
    x = torch.rand(2, 3, spec["input_size"], spec["input_size"])
    score, blocks = net.forward_features(x)
    assert [(b.shape[1], b.shape[2]) for b in blocks] == shapes and all(b.shape[2] == b.shape[3] for b in blocks)
    torch.testing.assert_close(score, net(x))
    # the last block is what the head scores: the blocks are the activations forward uses
    last = blocks[-1]
    if spec["name"] == "srgan":
        head = net.classifier(last)
    else:
        head = net.linear2(torch.nn.functional.leaky_relu(net.linear1(last.flatten(1)), 0.2))
    torch.testing.assert_close(head, score)


def test_generator_step_with_feature_matching_uses_d_features_and_no_vgg(tmp_path, capsys):
    cfg = smoke("srgan", perceptual="discriminator", vgg_weights="imagenet", pixel_weight=0.0)
    trainer = Trainer(cfg, tmp_path, progress=False)  # offline: would fail if it loaded ImageNet VGG
    assert trainer.perceptual is None
    assert "feature matching on the discriminator's blocks" in capsys.readouterr().out
    torch.manual_seed(0)
    lr, hr = trainer.next_batch(0)
    state = {k: v.clone() for k, v in trainer.adversary.net.state_dict().items()}
    torch.manual_seed(0)
    sr, logs = trainer.g_step(lr, hr, hr)
    # the same D (BN statistics as before the step) on the same SR gives the logged term
    d = trainer.adversary.net
    d.load_state_dict(state)
    with torch.no_grad():
        _, fake_blocks = d.forward_features(sr)
        _, real_blocks = d.forward_features(hr)
    torch.testing.assert_close(logs["loss_perceptual"], losses.feature_matching_loss(fake_blocks, real_blocks))
    weights = {"perceptual": cfg.perceptual_weight, "adv": cfg.adversarial_weight}
    total = sum(w * logs[f"loss_{k}"] for k, w in weights.items())
    torch.testing.assert_close(logs["loss_g"], total)


def test_feature_matching_needs_a_gan_stage_and_a_known_name(tmp_path):
    with pytest.raises(ValueError, match="GAN stage only"):
        Trainer(smoke("srresnet", perceptual="discriminator", perceptual_weight=1.0), tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown perceptual"):
        Trainer(smoke("srgan", perceptual="lpips"), tmp_path, progress=False)


def test_cli_perceptual_discriminator_is_printed_and_saved_in_the_checkpoint(tmp_path, capsys):
    from srlab.cli import main

    pixel, gan = tmp_path / "srresnet", tmp_path / "srgan"
    assert main(["train", "srresnet", "--preset", "smoke", "--out", str(pixel)]) == 0
    args = ["train", "srgan", "--preset", "smoke", "--perceptual", "discriminator", "--set", "vgg_weights=imagenet"]
    assert main([*args, "--init", str(pixel / "best.pt"), "--out", str(gan)]) == 0
    assert "feature matching on the discriminator's blocks" in capsys.readouterr().out
    config = torch.load(gan / "last.pt", weights_only=False)["config"]
    assert config["perceptual"] == "discriminator" and config["vgg_weights"] == "imagenet"
    history = [r for r in read_history(gan / "history.jsonl") if "loss_perceptual" in r]
    assert len(history) == 6 and all(r["loss_perceptual"] > 0 for r in history)
