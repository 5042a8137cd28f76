"""Checkpoints and weight files when things go wrong (issue 15): diverged weights, damaged or
foreign files, two runs in one folder, changed settings on resume, a full disk.

Every failure is checked for its one-line message (what file, what is wrong, what to do) and
for what it leaves on disk: the checkpoint before it, byte for byte, and no temporary files.
Training uses the ``smoke`` preset in fp32 (``amp="off"``) wherever numbers are compared exactly.
"""

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import time
import warnings

import numpy as np
import pytest
import torch

from srlab import checkpoint, images, runlock
from srlab.checkpoint import WriteError, atomic_save, load_generator
from srlab.cli import main
from srlab.images import read_image, write_image
from srlab.infer import upscale
from srlab.models import RRDBNet
from srlab.presets import make_config
from srlab.train import Trainer, TrainingDiverged, train

SMOKE = ["--preset", "smoke", "--set", "amp=off"]


def smoke(stage="srresnet", **overrides):
    return make_config(stage, "smoke", **{"init_from": "none", "amp": "off", **overrides})


def files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def finite(path):
    ckpt = torch.load(path, weights_only=True)
    return all(v.isfinite().all() for part in ("generator", "generator_ema") for v in ckpt[part].values())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 3-step smoke srresnet run: best.pt and last.pt at step 3."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(smoke(steps=3), out, progress=False)
    return out


def copy_run(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


# ---------------------------------------------------------------- (1) weights that became NaN


def test_weights_that_became_nan_are_never_saved_and_the_advice_names_real_flags(tmp_path, capsys):
    """At lr_g=1e12 step 3's loss is finite but its gradients overflow: the weights become NaN.
    That step used to be saved as last.pt (and called good), so --resume diverged at once."""
    out = tmp_path / "run"
    cfg = smoke(steps=6, lr_g=1e12, ckpt_every=1, val_every=100)
    with pytest.raises(TrainingDiverged) as caught:
        train(cfg, out, progress=False)
    message = str(caught.value)
    assert message.startswith("weights became NaN or inf at step 3 (generator: ")
    assert f"kept, finite: {out / 'last.pt'} (step 2)" in message
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2 and finite(out / "last.pt")
    assert not list(out.glob("*.tmp"))
    # the advice is the CLI's own flags: run them, and the run continues from step 2 and finishes
    flags = re.findall(r"--set \S+=[^\s),]+", message)
    assert flags == ["--set lr_g=1e+11", "--set grad_clip=1.0", "--set amp=off"] and "--resume" in message
    settings = [f.split()[1] for f in flags if "lr_g" not in f] + ["lr_g=1e-4"]
    argv = ["train", "srresnet", *SMOKE, "--init", "none", "--out", str(out), "--resume"]
    with pytest.warns(UserWarning, match="with settings it was not trained with"):
        assert main(argv + [f"--set={s}" for s in settings]) == 0
    assert "resuming srresnet from step 2" in capsys.readouterr().out
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 6 and finite(out / "last.pt")


def test_a_nan_loss_names_the_kept_checkpoint_and_the_flags(tmp_path, monkeypatch):
    from srlab import losses

    real, calls = losses.pixel_loss, {"n": 0}

    def poisoned(sr, hr, kind="l1"):
        calls["n"] += 1
        return real(sr, hr, kind) * (float("nan") if calls["n"] == 5 else 1.0)

    monkeypatch.setattr(losses, "pixel_loss", poisoned)
    with pytest.raises(TrainingDiverged) as caught:
        train(smoke(), tmp_path, progress=False)
    assert str(caught.value) == (
        f"loss became nan at step 5; kept, finite: {tmp_path / 'best.pt'} (step 3) and {tmp_path / 'last.pt'} "
        f"(step 3). Run again with --resume and a lower learning rate (--set lr_g=1e-05), gradient clipping "
        f"(--set grad_clip=1.0) or fp32 (--set amp=off)"
    )


# ---------------------------------------------------------------- (10) a damaged last.pt


def _truncated(data):
    return data[: len(data) // 2]


def _nan_weights(path):
    ckpt = torch.load(path, weights_only=True)
    ckpt["generator"]["conv_head.weight"].fill_(float("nan"))
    torch.save(ckpt, path)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (
            lambda p: p.write_bytes(_truncated(p.read_bytes())),
            "it is cut off or damaged (its zip archive is incomplete",
        ),
        (lambda p: p.write_bytes(b""), "it is empty (0 bytes"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(3000)), "which is neither PyTorch's zip nor a pickle"),
        (_nan_weights, "holds NaN or inf weights (generator: conv_head.weight)"),
    ],
    ids=["truncated", "empty", "random", "nan"],
)
def test_a_damaged_last_pt_is_named_with_what_to_do(damage, problem, finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    last, best = out / "last.pt", out / "best.pt"
    damage(last)
    before = files(out)
    argv = ["train", "srresnet", *SMOKE, "--steps", "3", "--out", str(out), "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume: {last} ") and problem in err, err
    assert err.rstrip().endswith(f"Instead: resume from {best} (cp {best} {last}) or start over with --overwrite")
    assert files(out) == before  # nothing touched
    best.unlink()
    assert main(argv) == 2
    assert capsys.readouterr().err.rstrip().endswith("Instead: start over with --overwrite")


def test_the_offered_best_pt_resumes(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    (out / "last.pt").write_bytes(b"")
    shutil.copy(out / "best.pt", out / "last.pt")  # what the message says to do
    assert train(smoke(steps=6), out, resume=True, progress=False)["step"] == 6


# ---------------------------------------------------------------- (11) two runs in one folder


def _lock(out, **owner):
    out.mkdir(parents=True, exist_ok=True)
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2025-01-01 10:00:00", **owner}
    (out / runlock.LOCK_NAME).write_text(json.dumps(owner))
    return out / runlock.LOCK_NAME


def test_a_second_run_into_a_folder_in_use_is_refused(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    lock = _lock(out)  # a live process on this host: this one
    before = files(out)
    with pytest.raises(FileExistsError, match=f"in use by another training run \\(process {os.getpid()} on"):
        train(smoke(steps=6), out, resume=True, progress=False)
    assert main(["train", "srresnet", *SMOKE, "--steps", "6", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"lock file {lock}). Wait for it to end or use another --out; if that run is gone, delete {lock}" in err
    assert files(out) == before  # the other run's checkpoints, history and lock untouched


def test_the_lock_is_held_while_training_and_removed_after(tmp_path, monkeypatch):
    seen = []
    real = Trainer.begin
    monkeypatch.setattr(Trainer, "begin", lambda self, *a: seen.append(json.loads(lock.read_text())) or real(self, *a))
    lock = tmp_path / "run" / runlock.LOCK_NAME
    train(smoke(steps=2), tmp_path / "run", progress=False)
    assert seen[0]["pid"] == os.getpid() and seen[0]["host"] == socket.gethostname()
    assert not lock.exists()


def test_a_stale_lock_is_taken_over_with_a_note(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    ended = subprocess.Popen(["true"])
    ended.wait()  # a PID that no longer runs: a killed run's
    _lock(out, pid=ended.pid)
    with pytest.warns(UserWarning, match=f"took over the lock .* process {ended.pid} on this host has ended"):
        assert train(smoke(steps=6), out, resume=True, progress=False)["step"] == 6
    assert not (out / runlock.LOCK_NAME).exists()


def test_a_lock_from_another_host_is_live_until_it_goes_unrefreshed(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    lock = _lock(out, host="colab-vm-1", pid=1)
    with pytest.raises(FileExistsError, match="process 1 on colab-vm-1"):
        train(smoke(steps=6), out, resume=True, progress=False)
    old = time.time() - runlock.STALE_AFTER - 60
    os.utime(lock, (old, old))  # that session ended 6 minutes ago
    with pytest.warns(UserWarning, match="not refreshed for 6 min"):
        assert train(smoke(steps=6), out, resume=True, progress=False)["step"] == 6


def test_only_rank_0_takes_the_lock(finished, tmp_path, monkeypatch):
    """Under torchrun every rank runs train(); the others must not lock (or refuse) the folder."""
    out = copy_run(finished, tmp_path)
    lock = _lock(out)
    monkeypatch.setenv("RANK", "1")  # no WORLD_SIZE: one process that believes it is rank 1
    assert train(smoke(steps=4), out, resume=True, progress=False)["step"] == 4
    assert lock.exists() and json.loads(lock.read_text())["pid"] == os.getpid()  # left alone


def test_checkpoint_writes_use_unique_temporary_names(tmp_path, monkeypatch):
    names, real = [], torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: names.append(f.name) or real(obj, f))
    atomic_save({"a": torch.zeros(1)}, tmp_path / "last.pt")
    atomic_save({"a": torch.ones(1)}, tmp_path / "last.pt")
    assert len(set(names)) == 2 and all(re.fullmatch(r".*/last\.pt\.[0-9a-f]{8}\.tmp", n) for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# ---------------------------------------------------------------- (12) files that do not fit


def test_resume_with_another_stage_or_preset_is_one_clear_error(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    last = out / "last.pt"
    before = files(out)
    assert main(["train", "srgan", *SMOKE, "--init", "none", "--out", str(out), "--resume"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {last} is a srresnet run, not srgan: resume it with `train srresnet`, or train srgan into "
        f"another --out (--init {last} starts its generator from this one)"
    )
    assert main(["train", "srresnet", "--preset", "quick", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {last} was trained with another model: generator {{'name': 'srresnet', 'num_block': 2"
    )
    assert "(this run: {'name': 'srresnet', 'num_block': 6" in err
    assert err.rstrip().endswith(
        "Resume it with the --preset and --set it was trained with, or start over with --overwrite"
    )
    assert files(out) == before


def test_a_checkpoint_missing_entries_or_keys_is_named(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    del ckpt["opt_g"], ckpt["rng"]
    torch.save(ckpt, out / "last.pt")
    assert main(["train", "srresnet", *SMOKE, "--steps", "6", "--out", str(out), "--resume"]) == 2
    assert f"cannot resume: {out / 'last.pt'} has no opt_g, rng: not a whole srlab training checkpoint" in (
        capsys.readouterr().err
    )
    best = torch.load(out / "best.pt", weights_only=True)
    del best["generator_ema"]["conv_head.weight"]
    torch.save(best, out / "best.pt")
    with pytest.raises(ValueError) as caught:
        load_generator(out / "best.pt")
    assert str(caught.value).startswith(
        f"{out / 'best.pt'}: the generator weights do not fit the SRResNet (1 missing: conv_head.weight)"
    )


def test_a_config_that_disagrees_with_its_weights_is_named(finished, tmp_path):
    ckpt = torch.load(finished / "best.pt", weights_only=True)
    ckpt["config"]["generator"]["num_block"] = 4  # the weights have 2 blocks
    torch.save(ckpt, tmp_path / "edited.pt")
    with pytest.raises(ValueError) as caught:
        load_generator(tmp_path / "edited.pt")
    assert str(caught.value) == (
        f"{tmp_path / 'edited.pt'}: the generator weights do not fit the SRResNet (30 missing: body.2.conv1.weight, "
        f"body.2.conv1.bias, body.2.bn1.weight, ...): its config describes {ckpt['config']['generator']} x4 "
        f"(edited, or put together from two runs?)"
    )


def test_a_basicsr_file_of_wrong_shapes_is_named(tmp_path, capsys):
    state = RRDBNet(num_feat=8, num_block=1).state_dict()
    state["conv_body.weight"] = torch.zeros(8, 8, 1, 1)
    del state["conv_last.bias"]
    torch.save({"params_ema": state}, tmp_path / "w.pth")
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert (
        main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "w.pth")]) == 2
    )
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'w.pth'} is not an srlab checkpoint, and this RRDBNet state dict's weights do not fit "
        f"the RRDBNet (1 missing: conv_last.bias; 1 of another shape: conv_body.weight (8, 8, 1, 1) "
        f"(the model's: (8, 8, 3, 3)))"
    )


def _basicsr_file(path, residual=False, **arch):
    torch.manual_seed(5)
    model = RRDBNet(**{"num_feat": 16, "num_block": 1, "num_grow_ch": 8, **arch})
    torch.save({"params_ema": model.state_dict()}, path)
    return model


def test_a_basicsr_generator_is_accepted_by_init(tmp_path, capsys):
    """upscale reads BasicSR files; --init reads them too (with load_generator), where they fit."""
    model = _basicsr_file(tmp_path / "basicsr.pth")
    plain = {**make_config("rrdb", "smoke").generator, "bicubic_residual": False}
    trainer = Trainer(smoke("rrdb", generator=plain), tmp_path / "run", progress=False)
    trainer.begin(init=tmp_path / "basicsr.pth")
    for name, value in model.state_dict().items():
        assert torch.equal(trainer.generator.state_dict()[name], value), name
        assert torch.equal(trainer.ema.module.state_dict()[name], value), name
    argv = ["train", "rrdb", *SMOKE, "--steps", "1", "--init", str(tmp_path / "basicsr.pth")]
    assert main([*argv, "--set", "generator.bicubic_residual=false", "--out", str(tmp_path / "cli")]) == 0
    assert f"generator initialised from {tmp_path / 'basicsr.pth'}" in capsys.readouterr().out
    # the smoke preset's RRDBNet adds bicubic upsampling: the same weights would compute other images
    assert main([*argv, "--out", str(tmp_path / "residual")]) == 2
    assert "--set generator.bicubic_residual=false makes them agree" in capsys.readouterr().err
    _basicsr_file(tmp_path / "wide.pth", num_feat=32)
    with pytest.raises(ValueError) as caught:
        Trainer(smoke("rrdb", generator=plain), tmp_path / "run2", progress=False).begin(init=tmp_path / "wide.pth")
    assert str(caught.value).startswith(
        f"the weights of --init {tmp_path / 'wide.pth'} ({{'name': 'rrdbnet', 'num_block': 1, 'num_feat': 32}} x4, "
        f"basicsr layout) do not fit the RRDBNet ("
    )
    assert str(caught.value).endswith(
        f": this stage trains {plain} x4; --init a generator of that architecture, or --init none"
    )


# ---------------------------------------------------------------- (13) safetensors


def test_safetensors_files_load_for_upscale_and_init(tmp_path, capsys):
    from safetensors.torch import save_file

    torch.manual_seed(2)
    model = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8).eval()
    path = tmp_path / "RealESRGAN_like.safetensors"
    save_file(model.state_dict(), path)
    loaded, info = load_generator(path)
    assert info["layout"] == "basicsr" and info["scale"] == 4
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    img = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    write_image(tmp_path / "in" / "a.png", img)
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in"),
                "-o",
                str(tmp_path / "out"),
                "--weights",
                str(path),
                "--device",
                "cpu",
                "--fp32",
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.png"), upscale(img, model, device="cpu"))
    plain = {**make_config("rrdb", "smoke").generator, "bicubic_residual": False}
    trainer = Trainer(smoke("rrdb", generator=plain), tmp_path / "run", progress=False)
    trainer.init_generator(path)
    assert torch.equal(trainer.generator.conv_first.weight, model.conv_first.weight)
    path.write_bytes(path.read_bytes()[:-100])  # cut off
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is a cut-off or damaged safetensors file"):
        load_generator(path)


# ---------------------------------------------------------------- (14) NaN weights make black images


def test_upscale_refuses_nan_weights(tmp_path, capsys):
    model = RRDBNet(num_feat=8, num_block=1)
    state = model.state_dict()
    state["conv_hr.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"params_ema": state}, tmp_path / "diverged.pth")
    write_image(tmp_path / "a.png", np.full((8, 8, 3), 128, np.uint8))
    out = tmp_path / "o"
    argv = ["upscale", str(tmp_path / "a.png"), "-o", str(out), "--weights", str(tmp_path / "diverged.pth")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'diverged.pth'} holds NaN or inf weights (generator: conv_hr.weight): it was "
        f"saved after its training diverged, and would make black images. Use a checkpoint from before (its "
        f"run's best.pt, say)"
    )
    assert not out.exists()
    model.load_state_dict(state)  # the same model handed to upscale() directly
    with pytest.raises(ValueError, match="the model's output holds NaN or inf values: NaN weights"):
        upscale(np.zeros((8, 8, 3), np.uint8), model, device="cpu")


# ---------------------------------------------------------------- (15) changed settings on resume


def test_resume_with_a_changed_batch_size_warns_once(tmp_path):
    out = tmp_path / "run"
    train(smoke(steps=6), out, progress=False, stop_at=3)
    with pytest.warns(UserWarning) as caught:
        train(smoke(steps=6, batch_size=4, lr_g=2e-4), out, resume=True, progress=False)
    messages = [str(w.message) for w in caught]
    assert messages == [
        f"resuming {out / 'last.pt'} with settings it was not trained with (batch_size 2 -> 4, lr_g 0.0001 -> "
        f"0.0002): the run will not be the one it would have been uninterrupted"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as last saved, with more steps and other logging: no warning
        train(smoke(steps=8, batch_size=4, lr_g=2e-4, log_every=2, val_every=4), out, resume=True, progress=False)


# ---------------------------------------------------------------- (16) a full disk


def _disk_full_at_step(monkeypatch, step):
    """torch.save writes half a checkpoint, then fails as on a full disk, once ``step`` is reached."""
    real = torch.save

    def save(obj, f):
        if obj.get("step", 0) >= step:
            f.write(b"PK\x03\x04" + bytes(1000))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f)

    monkeypatch.setattr(torch, "save", save)


def test_a_full_disk_keeps_the_last_checkpoint_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    cfg = smoke(steps=6)
    train(cfg, tmp_path / "straight", progress=False)
    out = tmp_path / "run"
    _disk_full_at_step(monkeypatch, 6)
    assert main(["train", "srresnet", *SMOKE, "--init", "none", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    failed = re.fullmatch(
        rf"error: no space left on device writing {re.escape(str(out))}/(best|last)\.pt \(\d+\.\d MiB free there\); "
        r"the partial file was removed and (best|last)\.pt is as it was. Free some space, then --resume "
        r"\(resume=True\) continues from last.pt",
        err,
    )
    assert failed and failed[1] == failed[2], err
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.jsonl", "last.pt", "samples"]  # no .tmp
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3
    monkeypatch.undo()  # space freed
    assert train(cfg, out, resume=True, progress=False)["step"] == 6
    for part in ("generator", "generator_ema", "opt_g"):
        a, b = (torch.load(d / "last.pt", weights_only=True)[part] for d in (tmp_path / "straight", out))
        assert str(a) == str(b), part  # the same numbers as a run that never met a full disk


def test_a_full_disk_while_logging_is_one_clear_error(tmp_path, monkeypatch):
    real = Trainer.log

    def log(self, record):
        if record["step"] == 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, record)

    monkeypatch.setattr(Trainer, "log", log)
    with pytest.raises(WriteError) as caught:
        train(smoke(steps=6), tmp_path / "run", progress=False)
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, ValueError)  # the CLI prints ValueErrors
    assert str(caught.value).startswith(f"no space left on device writing {tmp_path / 'run'} (")
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 3
    assert not (tmp_path / "run" / runlock.LOCK_NAME).exists()


class _FullDisk:
    """What cv2.imencode returns, whose tofile writes part of the file and fails as numpy does on a
    full disk (an OSError without errno)."""

    def tofile(self, path):
        with open(path, "wb") as f:
            f.write(b"\x89PNG" + bytes(100))
        raise OSError("4096 requested and 104 written")


def test_upscale_onto_a_full_disk_removes_the_partial_file_and_reports_the_rest(tmp_path, monkeypatch, capsys):
    _basicsr_file(tmp_path / "w.pth", num_feat=8)
    for name in ("a", "b", "c"):
        write_image(tmp_path / "in" / f"{name}.png", np.full((8, 8, 3), 100, np.uint8))
    real, calls = images.cv2.imencode, {"n": 0}

    def imencode(ext, img):
        calls["n"] += 1
        return (True, _FullDisk()) if calls["n"] == 2 else real(ext, img)

    monkeypatch.setattr(images.cv2, "imencode", imencode)
    disk = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: disk._replace(free=0))  # the disk is full
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "in"), "-o", str(out), "--weights", str(tmp_path / "w.pth")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (  # after the progress bar
        f"error: no space left on device writing {out / 'b.png'} (0.0 MiB free there); the partial file was "
        f"removed. Written before it: 1; not upscaled: 1 (c.png). Free some space and run the same command "
        f"again: the outputs already there are skipped"
    )
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
