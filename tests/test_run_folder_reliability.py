"""A run folder over several sessions: ``--overwrite``, resuming an early-stopped run or on
another GPU, time budgets as typed, a lock caught while being written, checkpoint writes that
survive a crash.

Training uses the ``smoke`` preset in fp32 (``amp="off"``), so that weights compare exactly.
"""

import errno
import json
import os
import socket
import stat

import pytest
import torch

import srlab.train as train_module
from srlab import runlock
from srlab.checkpoint import WriteError, atomic_save
from srlab.presets import make_config
from srlab.train import Precision, Trainer, parse_duration, read_history, train


def smoke(stage="srresnet", **overrides):
    return make_config(stage, "smoke", **{"init_from": "none", "amp": "off", **overrides})


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def weights(path):
    return torch.load(path, weights_only=True)["generator"]


# ---------------------------------------------------------------- (1, 2) --overwrite starts over


SMALL = {"name": "srresnet", "num_block": 1, "num_feat": 8, "bicubic_residual": True}


def test_overwrite_replaces_the_old_runs_checkpoints_samples_and_history(tmp_path):
    """A new run paused before its first validation used to keep the old run's best.pt (pause
    writes one only when there is none), another architecture even."""
    out = tmp_path / "run"
    train(smoke(steps=6), out, progress=False)  # run A: best.pt and last.pt at step 6, samples at 3 and 6
    summary = train(smoke(steps=6, generator=SMALL), out, progress=False, overwrite=True, stop_at=1)
    assert (summary["step"], summary["stopped"]) == (1, "stop_at")
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(out / name, weights_only=True)
        assert (ckpt["step"], ckpt["config"]["generator"]) == (1, SMALL)
    assert listing(out / "samples") == ["step_0000001.png"]
    assert [(r["step"], r.get("event")) for r in read_history(out / "history.jsonl")] == [(1, None), (1, "stop_at")]


def test_an_overwriting_run_cut_off_before_its_first_checkpoint_resumes_as_a_new_run(tmp_path, monkeypatch, capsys):
    """The old run's last.pt used to survive --overwrite: --resume then continued the OLD run."""
    out, straight = tmp_path / "run", tmp_path / "straight"
    train(smoke(steps=6, seed=0), out, progress=False)
    real = Trainer.train_step

    def cut(self, *batch):
        if self.step == 2:
            raise KeyboardInterrupt("the session ended")
        return real(self, *batch)

    monkeypatch.setattr(Trainer, "train_step", cut)
    with pytest.raises(KeyboardInterrupt):
        train(smoke(steps=6, seed=1), out, progress=False, overwrite=True)
    assert listing(out) == ["history.jsonl"]  # nothing of run A left; the new run's two logged steps
    monkeypatch.setattr(Trainer, "train_step", real)
    capsys.readouterr()
    assert train(smoke(steps=6, seed=1), out, progress=False, resume=True)["step"] == 6
    assert f"no checkpoint at {out / 'last.pt'}: starting a new srresnet run" in capsys.readouterr().out
    assert [r["step"] for r in read_history(out / "history.jsonl") if "loss_g" in r] == [1, 2, 3, 4, 5, 6]
    train(smoke(steps=6, seed=1), straight, progress=False)
    for name in ("last.pt", "best.pt"):
        a, b = weights(straight / name), weights(out / name)
        assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- (3) an early-stopped run, resumed


def test_an_early_stopped_run_is_not_trained_again_on_resume(tmp_path, monkeypatch, capsys):
    scores = iter([30.0, 29.0, 28.0, 27.0, 26.0, 25.0])  # a 7th validation would raise StopIteration
    monkeypatch.setattr(Trainer, "validate", lambda self, model=None: {"val_psnr": next(scores), "val_ssim": 0.5})
    out = tmp_path / "run"
    cfg = smoke(steps=8, val_every=1, ckpt_every=1, early_stop_patience=2)
    first = train(cfg, out, progress=False)
    assert (first["stopped"], first["step"], first["best_psnr"]) == ("early_stop", 3, 30.0)
    before = files(out)
    capsys.readouterr()
    again = train(cfg, out, progress=False, resume=True)
    assert (again["stopped"], again["step"], again["best_psnr"]) == ("early_stop", 3, 30.0)
    assert (
        "srresnet: stopped early at step 3 (2 validations without a better PSNR, early_stop_patience=2); "
        "not trained again. A higher --set early_stop_patience=N with --resume trains on"
    ) in capsys.readouterr().out
    assert files(out) == before
    # a higher patience (a setting a resume may change) trains on, until it too runs out
    later = train(smoke(steps=8, val_every=1, ckpt_every=1, early_stop_patience=5), out, progress=False, resume=True)
    assert (later["stopped"], later["step"]) == ("early_stop", 6)


# ---------------------------------------------------------------- (5) resumed on another GPU


@pytest.mark.parametrize("before, after", [(False, True), (True, False)])
def test_a_run_resumes_where_the_device_does_or_does_not_use_a_grad_scaler(before, after, tmp_path, monkeypatch):
    """Saved on a CPU or an A100 (no scaler), resumed on a T4 (fp16 + GradScaler), and the reverse;
    simulated on the CPU: the scaler on or off, fp32 math. ``load_state_dict({})`` used to raise."""
    out = tmp_path / "run"

    def scaler(on):
        monkeypatch.setattr(train_module, "choose_precision", lambda device, amp="auto": Precision(None, on, "test"))

    scaler(before)
    train(smoke(steps=6), out, progress=False, stop_at=3)
    assert bool(torch.load(out / "last.pt", weights_only=True)["scaler"]) is before
    scaler(after)
    assert train(smoke(steps=6), out, progress=False, resume=True)["step"] == 6
    saved = torch.load(out / "last.pt", weights_only=True)
    fresh = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000}
    assert saved["step"] == 6 and saved["scaler"] == ({**fresh, "_growth_tracker": 3} if after else {})  # 3 steps here


# ---------------------------------------------------------------- (8) time budgets as typed


@pytest.mark.parametrize("text", ["1h30", "2h15", "1m30", "1h30m15", "1.5h30"])
def test_a_bare_number_after_a_unit_is_refused(text):
    """'1h30' used to be 1 h 0 min 30 s: a 60-minute budget for someone who meant 90."""
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f"time budget {text!r}: a number after a unit needs its own unit (minutes or seconds?): "
        f"write 1h30m, 90m or 5400 (seconds) for an hour and a half"
    )


@pytest.mark.parametrize(
    "text, seconds",
    [("1h30m", 5400), ("90m", 5400), ("5400", 5400), ("1h30m15s", 5415), ("1h15s", 3615), ("1.5h", 5400), ("90s", 90)],
)
def test_every_form_with_its_units_still_parses(text, seconds):
    assert parse_duration(text) == seconds


# ---------------------------------------------------------------- (9) a lock caught while being written


def test_an_empty_lock_is_a_run_starting_until_it_goes_unrefreshed(tmp_path):
    """An empty lock is what a run leaves for a moment between creating it and writing to it (longer
    on Google Drive); it used to be taken over at once, so two live runs shared the folder."""
    out = tmp_path / "run"
    out.mkdir()
    lock = out / runlock.LOCK_NAME
    lock.write_bytes(b"")
    with pytest.raises(runlock.RunLocked) as caught:
        train(smoke(steps=3), out, progress=False)
    assert str(caught.value) == (
        f"{out} is being taken by another training run: its lock file {lock} is still empty or unreadable, "
        f"as while that run writes it. Wait for it to end or use another --out; if no run is starting there, "
        f"delete {lock} (it is taken over after {runlock.UNREADABLE_GRACE:.0f} s without a refresh)"
    )
    assert listing(out) == [runlock.LOCK_NAME] and lock.read_bytes() == b""
    old = os.path.getmtime(lock) - runlock.UNREADABLE_GRACE - 5
    os.utime(lock, (old, old))  # a run cut off while writing it, a while ago
    with pytest.warns(UserWarning, match="took over the lock .* it does not say who holds it, and was not refreshed"):
        assert train(smoke(steps=3), out, progress=False)["step"] == 3
    assert not lock.exists()


# ---------------------------------------------------------------- (10) checkpoint writes and a crash


def test_a_checkpoint_is_fsynced_before_its_rename_and_its_folder_after(tmp_path, monkeypatch):
    """Without the fsync an OS crash or a lost VM can keep the rename and lose the data: an empty last.pt."""
    events, real_fsync, real_replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.fstat(fd))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", None)) or real_replace(a, b))
    path = atomic_save({"a": torch.ones(3)}, tmp_path / "last.pt")
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].st_ino == path.stat().st_ino  # the file itself, then its folder
    assert stat.S_ISDIR(events[2][1].st_mode) and events[2][1].st_ino == tmp_path.stat().st_ino

    def no_folder_fsync(fd):  # some filesystems refuse to fsync a folder: the save still counts
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", no_folder_fsync)
    atomic_save({"a": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["a"].tolist() == [0.0, 0.0, 0.0] and listing(tmp_path) == ["last.pt"]


def test_a_failed_fsync_keeps_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    path = atomic_save({"a": torch.ones(3)}, tmp_path / "last.pt")
    before = path.read_bytes()

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(WriteError) as caught:
        atomic_save({"a": torch.zeros(3)}, path)
    assert str(caught.value) == (
        f"could not write {path}: Input/output error; the partial file was removed and last.pt is as it was"
    )
    assert listing(tmp_path) == ["last.pt"] and path.read_bytes() == before


def test_temporary_files_of_cut_off_saves_are_removed_when_the_next_run_takes_the_folder(tmp_path):
    """A process killed while saving leaves NAME.pt.XXXXXXXX.tmp, a whole checkpoint's size; no run
    removed them, so each Colab disconnect mid-save used to leak one on Drive."""
    out = tmp_path / "run"
    train(smoke(steps=6), out, progress=False, stop_at=3)
    leftovers = ["last.pt.0123abcd.tmp", "best.pt.deadbeef.tmp"]
    for name in leftovers + ["notes.tmp", "last.pt.bak"]:
        (out / name).write_bytes(b"x" * 100)
    lock = out / runlock.LOCK_NAME
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    with pytest.raises(runlock.RunLocked):  # a live run's saves in progress are not touched
        train(smoke(steps=6), out, progress=False, resume=True)
    assert set(leftovers) <= set(listing(out))
    lock.unlink()
    assert train(smoke(steps=6), out, progress=False, resume=True)["step"] == 6
    assert listing(out) == ["best.pt", "history.jsonl", "last.pt", "last.pt.bak", "notes.tmp", "samples"]


def test_the_gpu_generator_is_saved_and_put_back_on_a_gpu(monkeypatch):
    """WGAN-GP's interpolation weights are drawn on the GPU; its generator was not in the
    checkpoint, so a resumed GPU run drew other weights than an uninterrupted one. Simulated:
    torch.cuda's state getter and setter are patched (no GPU here)."""
    import torch

    from srlab.checkpoint import rng_state, set_rng_state

    gpu = torch.device("cuda", 0)
    saved_state = torch.arange(16, dtype=torch.uint8)
    put_back = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": saved_state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": put_back.append((state, device)))
    state = rng_state(gpu)
    assert torch.equal(state["cuda"], saved_state)
    set_rng_state(state, gpu)
    assert len(put_back) == 1 and torch.equal(put_back[0][0], saved_state) and put_back[0][1] == gpu
    set_rng_state(state, torch.device("cpu"))  # resumed on a CPU: nothing to put it on
    old = {k: v for k, v in rng_state().items() if k != "cuda"}  # a checkpoint from before
    set_rng_state(old, gpu)
    assert len(put_back) == 1 and rng_state()["cuda"] is None
