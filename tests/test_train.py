import json

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from srlab import losses
from srlab.adversaries import CollapseDetector
from srlab.checkpoint import interpolate_networks, load_generator
from srlab.cli import main
from srlab.data import RandomPatches
from srlab.presets import STAGES, make_config
from srlab.resize import imresize
from srlab.train import Trainer, TrainingDiverged, lr_factor, parse_duration, pick_amp, read_history, train


def smoke(stage, **overrides):
    return make_config(stage, "smoke", **{"init_from": "none", **overrides})


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_runs_end_to_end_in_the_smoke_preset(stage, tmp_path, capsys):
    summary = train(smoke(stage), tmp_path / stage, progress=False)
    assert summary["step"] == 6 and summary["stopped"] == "finished"
    ckpt = torch.load(tmp_path / stage / "last.pt", weights_only=True)  # plain dict, no pickled code
    assert ckpt["step"] == 6 and ckpt["config"]["stage"] == stage
    model, info = load_generator(tmp_path / stage / "best.pt")
    assert info["config"]["generator"]["name"] == ("rrdbnet" if stage in ("rrdb", "esrgan") else "srresnet")
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    history = read_history(tmp_path / stage / "history.jsonl")
    assert [r["step"] for r in history if "val_psnr" in r] == [3, 6]
    assert len(list((tmp_path / stage / "samples").glob("*.png"))) == 2
    if stage in ("srgan", "esrgan"):
        assert ckpt["discriminator"] is not None and all("loss_d" in r for r in history if "loss_g" in r)
        assert "RANDOM VGG-19" in capsys.readouterr().out  # the smoke preset says it uses random weights


def test_untrained_bicubic_residual_model_validates_at_the_bicubic_psnr(tmp_path):
    trainer = Trainer(smoke("srresnet"), tmp_path, progress=False)
    got = trainer.validate(trainer.G)["val_psnr"]
    psnrs = []
    for lr, hr in trainer.val_pairs:  # independent: numpy MATLAB bicubic, skimage's Y and PSNR
        to_np = lambda t: t[0].permute(1, 2, 0).double().numpy()
        sr = np.clip(imresize(to_np(lr), 4), 0, 1)
        y = lambda img: rgb2ycbcr(img)[4:-4, 4:-4, 0]
        psnrs.append(peak_signal_noise_ratio(y(to_np(hr)), y(sr), data_range=255))
    assert got == pytest.approx(np.mean(psnrs), abs=0.01)


def _weights(path):
    ckpt = torch.load(path, weights_only=True)
    return {part: ckpt[part] for part in ("generator", "generator_ema", "discriminator", "opt_g")}


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a.float(), b.float(), atol=1e-6, rtol=0)
    else:
        assert a == b


@pytest.mark.parametrize("amp, amx", [("off", None), ("auto", "1")], ids=["fp32", "bf16"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(amp, amx, tmp_path, monkeypatch, capsys):
    """Resuming in the same process is the same arithmetic in the same order, so it matches to
    rounding in fp32 and, with bf16 autocast (forced on with SRLAB_CPU_AMX=1, on any CPU), too: the
    checkpoint holds the fp32 master weights and Adam state, and the bf16 casts are repeated exactly."""
    if amx is not None:
        monkeypatch.setenv("SRLAB_CPU_AMX", amx)
    cfg = smoke("srgan", steps=8, val_every=100, ckpt_every=100, amp=amp)
    train(cfg, tmp_path / "straight", progress=False)
    assert f"precision: {'fp32' if amp == 'off' else 'bf16'}" in capsys.readouterr().out
    train(cfg, tmp_path / "cut", progress=False, stop_at=4)  # a Colab session ends at step 4
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["step"] == 4
    train(cfg, tmp_path / "cut", progress=False, resume=True)
    _assert_same(_weights(tmp_path / "straight" / "last.pt"), _weights(tmp_path / "cut" / "last.pt"))
    steps = [r["step"] for r in read_history(tmp_path / "cut" / "history.jsonl") if "loss_g" in r]
    assert steps == list(range(1, 9))  # history continues without gaps or repeats


def test_time_budget_pauses_with_a_checkpoint_and_resumes_to_the_same_weights(tmp_path, capsys):
    """A budget of 1 ms is spent by the first step, so each call trains one step and pauses:
    three sessions of one step, then one without a budget, end where an uninterrupted run ends
    (fp32). The pause writes last.pt, a sample and a history event; best.pt only while there is
    none, without a best score, so the first scheduled validation replaces it as in an
    uninterrupted run."""
    cfg = smoke("srresnet", steps=6, val_every=100, ckpt_every=100, amp="off")
    train(cfg, tmp_path / "straight", progress=False)
    cut = tmp_path / "cut"
    for session in (1, 2, 3):
        summary = train(cfg, cut, resume=True, progress=False, time_budget="0.001s")
        assert (summary["step"], summary["stopped"]) == (session, "time_budget")
        assert torch.load(cut / "last.pt", weights_only=True)["step"] == session
    out = capsys.readouterr().out
    assert out.count("srresnet: time budget 0s reached at step 3 of 6;") == 1 and "--resume" in out
    assert torch.load(cut / "best.pt", weights_only=True)["step"] == 1  # the first session's, kept
    assert sorted(p.name for p in (cut / "samples").iterdir()) == [f"step_{k:07d}.png" for k in (1, 2, 3)]
    events = [r["step"] for r in read_history(cut / "history.jsonl") if r.get("event") == "time_budget"]
    assert events == [1, 2, 3] and all("val_psnr" in r for r in read_history(cut / "history.jsonl") if "event" in r)
    assert train(cfg, cut, resume=True, progress=False)["stopped"] == "finished"
    for name in ("last.pt", "best.pt"):
        _assert_same(_weights(tmp_path / "straight" / name), _weights(cut / name))
    steps = [r["step"] for r in read_history(cut / "history.jsonl") if "loss_g" in r]
    assert steps == list(range(1, 7))


@pytest.mark.parametrize(
    "text, seconds", [("50m", 3000), ("1h30m", 5400), ("2h", 7200), ("90s", 90), ("3000", 3000), (2.5, 2.5)]
)
def test_parse_duration_reads_what_a_student_types(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-5m", "0", "m", 0, -1.0, float("nan")])
def test_parse_duration_refuses_nonsense(text):
    with pytest.raises(ValueError, match="time budget"):
        parse_duration(text)


def test_cli_time_budget_pauses_and_a_bad_one_fails_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "srresnet", "--preset", "smoke", "--time-budget", "5x", "--out", str(out)]) == 2
    assert "time budget '5x'" in capsys.readouterr().err and not out.exists()
    assert main(["train", "srresnet", "--preset", "smoke", "--time-budget", "0.001", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "time budget 0s reached at step 1 of" in printed and "(time_budget)" in printed
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


def test_a_second_run_into_a_used_folder_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    """Rerunning the README command without --resume used to replace last.pt/best.pt and
    delete history.jsonl: an hour of cpu training lost. Now it is refused, nothing touched."""
    out = tmp_path / "run"
    cfg = smoke("srresnet", steps=2, amp="off")
    train(cfg, out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(FileExistsError, match="--resume .* --overwrite"):
        train(cfg, out, progress=False)
    assert main(["train", "srresnet", "--preset", "smoke", "--steps", "2", "--out", str(out)]) == 2
    assert "already holds a srresnet run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert train(cfg, out, progress=False, overwrite=True)["step"] == 2
    assert [r["step"] for r in read_history(out / "history.jsonl") if "loss_g" in r] == [1, 2]  # a fresh history


def test_ema_is_the_exponential_average_of_the_generator(tmp_path):
    trainer = Trainer(smoke("srresnet", ema_decay=0.9), tmp_path, progress=False)
    snapshots = []
    for step in range(3):
        trainer.train_step(*trainer.patches.batch(step))
        snapshots.append({k: v.clone() for k, v in trainer.G.state_dict().items()})
    # AveragedModel copies the first update, then ema = 0.9 * ema + 0.1 * current
    name = "conv_head.weight"
    expected = 0.9 * (0.9 * snapshots[0][name] + 0.1 * snapshots[1][name]) + 0.1 * snapshots[2][name]
    torch.testing.assert_close(trainer.ema.module.state_dict()[name], expected, atol=1e-7, rtol=1e-6)
    assert not torch.allclose(trainer.ema.module.state_dict()[name], snapshots[2][name])


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = losses.pixel_loss
    calls = {"n": 0}

    def poisoned(sr, hr, kind="l1"):
        calls["n"] += 1
        return real(sr, hr, kind) * (float("nan") if calls["n"] == 5 else 1.0)

    monkeypatch.setattr(losses, "pixel_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="step 5"):
        train(smoke("srresnet"), tmp_path, progress=False)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 3  # saved at step 3, untouched


def test_collapse_detector_by_hand():
    det = CollapseDetector(threshold=0.05, patience=3, momentum=0.0)  # momentum 0: the raw loss
    fired = [det.update(v) for v in [0.7, 0.01, 0.02, 0.5, 0.01, 0.01, 0.01, 0.01, 0.01]]
    assert fired == [False, False, False, False, False, False, True, False, False]
    slow = CollapseDetector(threshold=0.05, patience=1, momentum=0.5)  # running mean 0.2, 0.1, 0.05, 0.025
    assert [slow.update(v) for v in [0.2, 0.0, 0.0, 0.0]] == [False, False, False, True]


def test_collapse_is_reported_with_advice_during_training(tmp_path):
    cfg = smoke("srgan", collapse_threshold=1e9, collapse_patience=2)  # every D loss counts as "collapsed"
    with pytest.warns(UserWarning, match="discriminator collapse.*1e-3 to 5e-2"):
        train(cfg, tmp_path, progress=False)
    events = [r for r in read_history(tmp_path / "history.jsonl") if r.get("event")]
    assert events == [{"step": 2, "event": "discriminator_collapse"}]


def test_early_stopping_on_validation_psnr(tmp_path, monkeypatch):
    scores = iter([30.0, 29.0, 28.0, 27.0])
    monkeypatch.setattr(Trainer, "validate", lambda self, model=None: {"val_psnr": next(scores), "val_ssim": 0.5})
    cfg = smoke("srresnet", steps=20, val_every=2, early_stop_patience=2)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["stopped"] == "early_stop" and summary["step"] == 6  # best at 2, worse at 4 and 6
    assert torch.load(tmp_path / "best.pt", weights_only=True)["step"] == 2


def test_schedule_warmup_and_halving_by_hand():
    cfg = make_config("rrdb", "smoke", warmup_steps=4, milestones=(10, 20))
    assert [lr_factor(cfg, s) for s in (0, 1, 3, 9, 10, 19, 20, 25)] == [0.25, 0.5, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_network_interpolation_by_hand():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([1.0, 4.0]), "n": torch.tensor(5)}
    torch.testing.assert_close(interpolate_networks(a, b, 0.25)["w"], torch.tensor([0.25, 2.5]))
    torch.testing.assert_close(interpolate_networks(a, b, 0.0)["w"], a["w"])
    with pytest.raises(ValueError):
        interpolate_networks(a, {"w": b["w"]}, 0.5)


def test_amp_choice():
    assert pick_amp(torch.device("cpu"), "off") == (None, False)
    assert pick_amp(torch.device("cpu"), "bf16") == (torch.bfloat16, False)
    with pytest.raises(ValueError, match="CUDA"):
        pick_amp(torch.device("cpu"), "fp16")


def test_wandb_offline_writes_a_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    train(smoke("srresnet", steps=2, val_every=2, wandb="offline"), tmp_path, progress=False)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_random_patches_are_reproducible_and_lr_is_matlab_bicubic():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)]
    patches = RandomPatches(images, hr_size=32, scale=4, batch_size=3, seed=7)
    assert patches.skipped_small == 1  # the 20x20 image cannot give a 32 px patch
    lr, hr = patches.batch(5)
    assert lr.shape == (3, 3, 8, 8) and hr.shape == (3, 3, 32, 32)
    lr2, hr2 = patches.batch(5)
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2) and not torch.equal(hr, patches.batch(6)[1])
    hr_np = (hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal((lr[0].permute(1, 2, 0).numpy() * 255).round(), imresize(hr_np, 1 / 4))
    with pytest.raises(ValueError, match="at least 96x96"):
        RandomPatches(images, hr_size=96, scale=4, batch_size=1)


def test_cli_trains_and_evaluates_a_checkpoint(tmp_path, capsys, photo):
    from srlab.images import write_image

    out = tmp_path / "run"
    assert main(["train", "srresnet", "--preset", "smoke", "--steps", "2", "--out", str(out)]) == 0
    assert "2 steps" in capsys.readouterr().out
    write_image(tmp_path / "hr" / "a.png", photo)
    report = tmp_path / "r.json"
    assert main(["evaluate", "--hr", str(tmp_path / "hr"), "--model", str(out / "last.pt"), "--json", str(report)]) == 0
    model_psnr = json.loads(report.read_text())["mean"]["psnr_y"]
    assert main(["evaluate", "--hr", str(tmp_path / "hr"), "--model", "bicubic", "--json", str(report)]) == 0
    bicubic_psnr = json.loads(report.read_text())["mean"]["psnr_y"]
    assert abs(model_psnr - bicubic_psnr) < 1.0  # 2 steps from a bicubic start: still close to bicubic
    assert main(["evaluate", "--hr", str(tmp_path / "hr"), "--model", str(out / "last.pt"), "--scale", "2"]) == 2
    assert "x4 model" in capsys.readouterr().err


def test_load_generator_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an srlab checkpoint"):
        load_generator(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_generator(tmp_path / "junk.pt")


def test_gan_stage_without_pretrained_generator_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="train srresnet"):
        train(make_config("srgan", "smoke"), tmp_path / "srgan", progress=False)


def test_history_plot_shows_the_logged_values(tmp_path):
    from srlab.viz import plot_history

    train(smoke("srgan"), tmp_path, progress=False)
    records = read_history(tmp_path / "history.jsonl")
    fig = plot_history(tmp_path / "history.jsonl", tmp_path / "curves.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["generator", "discriminator", "validation PSNR-Y (dB)"]
    val_line = fig.axes[2].get_lines()[0]
    assert list(val_line.get_ydata()) == [r["val_psnr"] for r in records if "val_psnr" in r]
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_training_on_a_folder_holds_out_the_last_image_and_skips_bad_files(tmp_path, photo):
    from srlab.images import write_image

    data = tmp_path / "hr"
    for i, crop in enumerate([photo, photo[:, ::-1], photo[::-1]]):
        write_image(data / f"img{i}.png", crop)
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.warns(UserWarning, match="skipped 1 unreadable images: broken.png"):
        trainer = Trainer(smoke("srresnet", data=str(data), val_crop=64), tmp_path / "run", progress=False)
    assert len(trainer.patches.images) == 2 and len(trainer.val_pairs) == 1
    _, val_hr = trainer.val_pairs[0]
    expected = torch.from_numpy(photo[::-1][16:80, 32:96].copy()).permute(2, 0, 1).float() / 255  # centre 64
    torch.testing.assert_close(val_hr[0], expected)
