"""srlab.presets: the recipes as tables, --set overrides, what an adversary brings."""

import dataclasses

import pytest

from srlab.cli import main
from srlab.presets import (
    ADVERSARIES,
    PAPERS,
    PRESETS,
    STAGES,
    TrainConfig,
    make_config,
    parse_setting,
    presets_table,
    settings_overrides,
)


def test_paper_recipes_carry_the_published_numbers():
    srgan, esrgan, rrdb = (make_config(s, "colab") for s in ("srgan", "esrgan", "rrdb"))
    # SRGAN (Ledig et al. 2017): VGG54, 1e-3 BCE, 10^5 steps at 1e-4 then 10^5 at 1e-5
    paper_srgan = TrainConfig(stage="srgan", **PAPERS["srgan"])
    assert (paper_srgan.steps, paper_srgan.milestones, paper_srgan.lr_gamma) == (200_000, (100_000,), 0.1)
    assert (srgan.perceptual_layer, srgan.perceptual_criterion, srgan.adversarial_weight) == ("relu5_4", "mse", 1e-3)
    # ESRGAN: 1e-2 L1 + VGG conv5_4 + 5e-3 RaGAN; lr 1e-4 halved at 50k, 100k, 200k, 300k of 400k
    paper_esrgan = TrainConfig(stage="esrgan", **PAPERS["esrgan"])
    assert paper_esrgan.milestones == (50_000, 100_000, 200_000, 300_000) and paper_esrgan.steps == 400_000
    assert (esrgan.pixel_weight, esrgan.perceptual_layer, esrgan.adversarial, esrgan.adversarial_weight) == (
        1e-2,
        "conv5_4",
        "ragan",
        5e-3,
    )
    assert (rrdb.lr_g, rrdb.hr_size, rrdb.generator["num_block"]) == (2e-4, 128, 23)


def test_presets_carry_the_documented_choices():
    seed_srgan, seed_esrgan = make_config("srgan", "seed"), make_config("esrgan", "seed")
    assert seed_srgan.generator["num_block"] == 8 and seed_esrgan.generator["num_block"] == 12
    assert (seed_srgan.perceptual_layer, seed_esrgan.perceptual_layer) == ("relu3_4", "conv3_4")
    assert seed_srgan.adversarial_weight == seed_esrgan.adversarial_weight == 5e-2
    assert seed_srgan.hr_size == 256
    assert make_config("srresnet", "smoke").vgg_weights is None is make_config("esrgan", "smoke").vgg_weights
    cpu_esrgan = make_config("esrgan", "cpu")  # the cpu recipe, read off its table
    assert (cpu_esrgan.generator["num_block"], cpu_esrgan.steps, cpu_esrgan.batch_size, cpu_esrgan.hr_size) == (
        4,
        500,
        8,
        128,
    )
    assert cpu_esrgan.discriminator == {"name": "vgg", "input_size": 128, "num_feat": 32}
    with pytest.raises(ValueError, match="preset"):
        make_config("srresnet", "turbo")
    with pytest.raises(ValueError, match="stage"):
        make_config("edsr", "cpu")


def test_every_preset_has_every_stage_and_only_real_fields():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for table in (*PAPERS.values(), *ADVERSARIES.values(), *(t for p in PRESETS.values() for t in p.values())):
        assert set(table) <= names
    assert all(set(PRESETS[p]) == set(STAGES) for p in PRESETS)


def test_choosing_wgan_gp_brings_its_critic_and_optimiser():
    cfg = make_config("esrgan", "cpu", adversarial="wgan-gp")
    assert cfg.discriminator == {"name": "vgg", "input_size": 128, "num_feat": 32, "batch_norm": False}
    assert (cfg.n_critic, cfg.betas_d, cfg.gp_weight) == (5, (0.0, 0.9), 10.0)
    assert make_config("esrgan", "cpu", adversarial="wgan-gp", n_critic=2).n_critic == 2  # overrides win
    assert make_config("esrgan", "cpu").betas_d is None and make_config("esrgan", "cpu").n_critic == 1
    with pytest.raises(ValueError, match="trains no discriminator"):
        make_config("srresnet", "cpu", adversarial="bce")
    with pytest.raises(ValueError, match="unknown adversarial"):
        make_config("esrgan", "cpu", adversarial="hinge")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("steps=2000", ("steps", 2000)),
        ("lr_g=2e-4", ("lr_g", 2e-4)),
        ("milestones=(10, 20)", ("milestones", (10, 20))),
        ("data=/tmp/my photos", ("data", "/tmp/my photos")),
        ("init_from=none", ("init_from", None)),
        ("channels_last=false", ("channels_last", False)),
        ("adversarial=wgan-gp", ("adversarial", "wgan-gp")),
    ],
)
def test_parse_setting(text, expected):
    assert parse_setting(text) == expected


def test_settings_become_typed_overrides():
    base = make_config("rrdb", "cpu")
    got = settings_overrides(["generator.num_block=2", "milestones=700", "lr_gamma=1", "steps=5"], base)
    assert got == {"generator": {**base.generator, "num_block": 2}, "milestones": (700,), "lr_gamma": 1.0, "steps": 5}
    with pytest.raises(ValueError, match="did you mean steps"):
        settings_overrides(["stepz=3"], base)
    with pytest.raises(ValueError, match="expected a int"):
        settings_overrides(["steps=1.5"], base)
    with pytest.raises(ValueError, match="expected true or false"):
        settings_overrides(["channels_last=3"], base)
    with pytest.raises(ValueError, match="key=value"):
        settings_overrides(["steps"], base)


def test_presets_table_lists_every_field_of_every_preset(capsys):
    table = presets_table("esrgan").splitlines()
    assert table[0] == "| esrgan | colab | cpu | quick | smoke | seed |"
    rows = {line.split(" | ")[0].removeprefix("| "): line.split(" | ")[1:] for line in table[2:]}
    assert set(rows) == {f.name for f in dataclasses.fields(TrainConfig)} - {"stage"}
    assert rows["steps"] == ["9000", "500", str(make_config("esrgan", "quick").steps), "6", "9000 |"]
    assert rows["perceptual"] == ["vgg", "vgg", "discriminator", "vgg", "vgg |"]  # only quick is offline
    assert main(["presets", "srgan"]) == 0
    out = capsys.readouterr().out
    assert "| srgan | colab | cpu | quick | smoke | seed |" in out
    assert "| lr_gamma | 0.1 | 0.1 | 0.1 | 0.1 | 0.1 |" in out


def test_cli_set_reaches_the_config(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(
        "srlab.train.train",
        lambda cfg, out, **kw: seen.update(cfg=cfg) or {"step": 0, "best_psnr": 0.0, "stopped": "finished"},
    )
    assert (
        main(
            [
                "train",
                "esrgan",
                "--preset",
                "smoke",
                "--adversarial",
                "wgan-gp",
                "--set",
                "n_critic=3",
                "--set",
                "generator.num_feat=8",
                "--usm-target",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    cfg = seen["cfg"]
    assert (cfg.adversarial, cfg.n_critic, cfg.betas_d, cfg.generator["num_feat"], cfg.usm_target) == (
        "wgan-gp",
        3,
        (0.0, 0.9),
        8,
        True,
    )
    assert cfg.generator["num_block"] == 1  # the rest of the smoke generator kept
    assert main(["train", "srresnet", "--preset", "smoke", "--set", "nope=1", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("stage", ["srgan", "esrgan"])
def test_wgan_gp_builds_a_batch_norm_free_critic_of_the_right_size_on_every_preset(stage, preset):
    import torch
    from torch import nn

    from srlab.adversaries import WGANGPAdversary, build_adversary

    cfg = make_config(stage, preset, adversarial="wgan-gp")
    adversary = build_adversary(cfg, torch.device("cpu"))
    assert isinstance(adversary, WGANGPAdversary) and adversary.n_critic == 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in adversary.net.modules())
    assert adversary.net.input_size == cfg.hr_size
    assert adversary.opt.param_groups[0]["betas"] == (0.0, 0.9)


def test_a_keyword_override_replaces_the_whole_value():
    cfg = make_config("srresnet", "smoke", generator={"name": "srcnn"})
    assert cfg.generator == {"name": "srcnn"}


def test_feature_matching_layer_sits_between_the_paper_and_the_preset(monkeypatch):
    from srlab import presets

    vgg = make_config("srgan", "cpu")
    assert (vgg.perceptual, vgg.pixel_weight, vgg.adversarial_weight, vgg.lr_g) == ("vgg", 0.0, 1e-3, 1e-4)  # Ledig
    fm = make_config("srgan", "cpu", perceptual="discriminator")
    for key, value in presets.FEATURE_MATCHING.items():
        assert getattr(fm, key) == value
    assert (fm.steps, fm.batch_size, fm.hr_size) == (vgg.steps, vgg.batch_size, vgg.hr_size)  # the preset's own
    assert make_config("srgan", "cpu", perceptual="discriminator", adversarial_weight=1e-3).adversarial_weight == 1e-3
    # a preset's value wins over the layer's
    patched = {**presets.PRESETS["cpu"], "srgan": {**presets.PRESETS["cpu"]["srgan"], "pixel_weight": 0.5}}
    monkeypatch.setitem(presets.PRESETS, "cpu", patched)
    assert make_config("srgan", "cpu", perceptual="discriminator").pixel_weight == 0.5
    # pixel stages have no discriminator to match: the layer does not apply
    assert make_config("srresnet", "cpu", perceptual="discriminator").pixel_weight == 1.0
    quick = make_config("esrgan", "quick")
    assert (
        quick.perceptual == "discriminator"
        and quick.adversarial_weight == presets.FEATURE_MATCHING["adversarial_weight"]
    )
