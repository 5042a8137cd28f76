"""Nothing a student trained is lost from a run folder (issue 28): a ``best.pt`` whose ``last.pt``
was deleted, ``--resume`` in such a folder, ``--overwrite`` in a folder of the user's own; a damaged
``last.pt``; a read-only folder, ``ulimit -f`` and a name too long for the filesystem; two runs taking
over one stale lock at once; settings out of range.

Each case checks the one-line message and what is on disk after it, byte for byte. Training uses the
``smoke`` preset in fp32 (``amp="off"``).
"""

import errno
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

import srlab.train as train_module
from srlab import runfolder, runlock
from srlab.cli import main
from srlab.presets import make_config
from srlab.train import train

SMOKE = ["--preset", "smoke", "--set", "amp=off"]


def smoke(**overrides):
    return make_config("srresnet", "smoke", **{"init_from": "none", "amp": "off", **overrides})


def tree(folder):
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 3-step smoke srresnet run: best.pt and last.pt at step 3, its history and a sample."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(smoke(steps=3), out, progress=False)
    return out


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if train() gets as far as locking the folder (and then building a trainer)."""

    def locked(folder):
        raise AssertionError(f"train() went on to lock {folder}")

    monkeypatch.setattr(train_module, "run_lock", locked)


def best_only(finished, tmp_path):
    """The finished run with its last.pt deleted (to save Drive space)."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "last.pt").unlink()
    return out


def best_without_last(out, resume=False):
    best, last = out / "best.pt", out / "last.pt"
    return (
        f"{'cannot resume: ' if resume else ''}{out} holds a trained model, best.pt, but no last.pt (deleted to "
        f"save space?), and a new run would replace it. cp {best} {last}, then --resume (resume=True), trains on "
        f"from it; another --out with --init {best} starts a new run from its weights; --overwrite "
        f"(overwrite=True) replaces it"
    )


# ---------------------------------------------------------------- data loss 1: best.pt without last.pt


def test_a_folder_with_best_pt_but_no_last_pt_is_refused(finished, tmp_path, no_build):
    """It used to start a new run: best.pt replaced by a 3-step model, history.jsonl wiped."""
    out = best_only(finished, tmp_path)
    before = tree(out)
    with pytest.raises(FileExistsError) as caught:
        train(smoke(steps=3), out, progress=False)
    assert str(caught.value) == best_without_last(out)
    assert tree(out) == before


def test_the_cli_says_so_in_one_line(finished, tmp_path, capsys, no_build):
    out = best_only(finished, tmp_path)
    before = tree(out)
    assert main(["train", "srresnet", *SMOKE, "--steps", "3", "--out", str(out)]) == 2
    assert one_line_error(capsys) == f"error: {best_without_last(out)}"
    assert tree(out) == before


def test_a_history_without_checkpoints_is_refused_without_a_flag(finished, tmp_path, no_build):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    for name in ("last.pt", "best.pt"):
        (out / name).unlink()
    before = tree(out)
    with pytest.raises(FileExistsError) as caught:
        train(smoke(steps=3), out, progress=False)
    assert str(caught.value) == (
        f"{out} holds the history of an earlier run (history.jsonl, samples/) but no checkpoint: a new run would "
        f"replace it. --overwrite (overwrite=True) starts over there, --resume (resume=True) trains that run again "
        f"from the start; or train into another --out"
    )
    assert tree(out) == before


# ---------------------------------------------------------------- data loss 2: --resume there


def test_resume_with_a_time_budget_does_not_replace_best_pt(finished, tmp_path, capsys, no_build):
    """It printed "no checkpoint ... starting a new run", then the pause wrote best.pt over the model."""
    out = best_only(finished, tmp_path)
    before = tree(out)
    argv = ["train", "srresnet", *SMOKE, "--steps", "3", "--out", str(out), "--resume", "--time-budget", "1s"]
    assert main(argv) == 2
    assert one_line_error(capsys) == f"error: {best_without_last(out, resume=True)}"
    assert tree(out) == before


def test_the_advice_to_resume_from_best_pt_works(finished, tmp_path, capsys):
    out = best_only(finished, tmp_path)
    shutil.copy(out / "best.pt", out / "last.pt")
    before = tree(out)
    assert train(smoke(steps=3), out, progress=False, resume=True)["step"] == 3  # finished: nothing to train
    assert f"resuming srresnet from step 3 ({out / 'last.pt'})" in capsys.readouterr().out
    assert tree(out) == before


def test_resume_in_a_missing_folder_still_starts_a_run(tmp_path, capsys):
    """What the notebooks do on their first run (RESUME = True)."""
    out = tmp_path / "new"
    summary = train(smoke(steps=2, val_every=2, ckpt_every=2), out, progress=False, resume=True, stop_at=1)
    assert f"no checkpoint at {out / 'last.pt'}: starting a new srresnet run" in capsys.readouterr().out
    assert summary["step"] == 1 and torch.load(out / "best.pt", weights_only=True)["step"] == 1


# ---------------------------------------------------------------- data loss 3: --overwrite


def users_folder(tmp_path):
    """A folder of the user's own, with a history.jsonl and a samples/ of their own."""
    out = tmp_path / "mine"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "holiday.jpg").write_bytes(b"\xff\xd8 my photo")
    (out / "history.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')
    (out / "notes.txt").write_text("mine")
    return out


def test_overwrite_in_a_folder_without_an_srlab_run_deletes_nothing(tmp_path, no_build):
    """tidy_run_folder used to rmtree samples/ and delete history.jsonl here."""
    out = users_folder(tmp_path)
    before = tree(out)
    with pytest.raises(FileExistsError) as caught:
        train(smoke(steps=3), out, progress=False, overwrite=True)
    assert str(caught.value) == (
        f"{out} holds history.jsonl, samples/ but no srlab run (no srlab checkpoint, history or sample): "
        f"--overwrite deletes only what a run of srlab wrote, so nothing was touched. Is --out the folder you "
        f"meant? Train into another --out, or move them away first"
    )
    assert tree(out) == before


def test_overwrite_deletes_only_the_files_srlab_wrote(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "samples" / "my_crop.png").write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")
    train(smoke(steps=2, val_every=2, ckpt_every=2), out, progress=False, overwrite=True)
    after = tree(out)
    assert sorted(after) == [
        "best.pt",
        "history.jsonl",
        "last.pt",
        "notes.txt",
        "samples/my_crop.png",
        "samples/step_0000002.png",
    ]  # the old step_0000003.png is gone, the user's files are not
    assert after["samples/my_crop.png"] == b"mine" and after["notes.txt"] == b"mine"
    assert torch.load(out / "best.pt", weights_only=True)["step"] == 2


def test_an_srlab_checkpoint_is_recognised_without_reading_its_tensors(finished, tmp_path, monkeypatch):
    """A 441 MB ESRGAN last.pt: its pickle is read, its tensors memory-mapped (mmap=True), never loaded."""
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("mmap"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(finished / "best.pt", out / "best.pt")
    assert runfolder.holds_srlab_run(out) and calls == [True]
    torch.save({"params_ema": {"w": torch.zeros(2)}}, out / "best.pt")  # a BasicSR file: not a run of srlab
    assert not runfolder.holds_srlab_run(out)


# ---------------------------------------------------------------- a damaged last.pt


def _edit(path, change):
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda c: c.update(opt_g=None), "its opt_g is None, not an optimiser state"),
        (lambda c: c.update(opt_g=[1, 2]), "its opt_g is [1, 2] (list), not an optimiser state"),
        (lambda c: c.update(rng={"torch": "seed"}), "its rng is {'torch': 'seed'} (dict), not the random states"),
        (lambda c: c["rng"].update(python="(3, (1, 2"), "its rng does not fit this run ("),
        (lambda c: c.update(step="7"), "its step is '7' (str), not a step number (an integer >= 0)"),
        (lambda c: c.update(step=-1), "its step is -1 (int), not a step number (an integer >= 0)"),
        (lambda c: c.update(ema_n_averaged=torch.ones(3)), "its ema_n_averaged is a (3,) float32 tensor, not a count"),
        (lambda c: c.update(opt_g={"state": {}, "param_groups": []}), "its opt_g does not fit this run ("),
        # 100 KB of signs ran ast.literal_eval out of memory (a MemoryError traceback)
        (lambda c: c["rng"].update(python="-" * 100_000 + "1"), "its rng is a dict, not the random states"),
    ],
    ids=[
        *("opt-none", "opt-list", "rng-dict", "rng-python", "step-str", "step-negative", "ema-tensor", "opt-groups"),
        "rng-python-huge",
    ],
)
def test_a_damaged_training_state_is_one_cannot_resume_line(change, problem, finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    last, best = out / "last.pt", out / "best.pt"
    _edit(last, change)
    before = tree(out)
    assert main(["train", "srresnet", *SMOKE, "--steps", "6", "--out", str(out), "--resume"]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"error: cannot resume: {last}") and problem in err, err
    assert err.endswith(f"Instead: resume from {best} (cp {best} {last}) or start over with --overwrite")
    assert tree(out) == before


# ---------------------------------------------------------------- a read-only folder, ulimit -f


CHILD = textwrap.dedent(
    """
    import json, os, resource, sys
    from srlab.cli import main
    import srlab.train, srlab.distributed, srlab.presets, srlab.images  # imported before any limit

    for job in json.loads(sys.argv[1]):
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (job.get("fsize", hard), hard))  # soft: raised again below
        if job.get("nobody") and os.geteuid() == 0:  # root writes into a read-only folder: be someone else
            os.setgid(65534)
            os.setuid(65534)
        code = main(job["argv"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        print(json.dumps(code), flush=True)
    """
)


def run_child(jobs):
    """Run the CLI ``jobs`` in one child process (limits and users set there); (exit codes, error lines)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(jobs)], capture_output=True, text=True, env=env, timeout=120
    )
    codes = [json.loads(line) for line in done.stdout.splitlines() if line.strip().lstrip("-").isdigit()]
    errors = [line for line in done.stderr.splitlines() if line.startswith(("error:", "Traceback"))]
    assert len(codes) == len(jobs), done.stderr[-3000:]
    return codes, errors


@pytest.mark.skipif(sys.platform == "win32", reason="ulimit -f and read-only folders are POSIX")
def test_a_file_size_limit_and_a_read_only_folder_are_one_line_each_and_keep_the_run(finished, tmp_path):
    """ulimit -f: torch's zip writer turned EFBIG into a RuntimeError ("unexpected pos"), numpy's image
    writer into a bare OSError: tracebacks. A read-only --out: a PermissionError traceback."""
    top = Path(tempfile.mkdtemp())  # not under pytest's 0700 folders: the read-only run is another user's
    run, locked = top / "run", top / "read-only"
    try:
        top.chmod(0o755)
        for folder in (run, locked):
            shutil.copytree(finished, folder)
        before = tree(run)
        for folder in (locked / "samples", locked):
            folder.chmod(0o555)
        argv = ["train", "srresnet", *SMOKE, "--steps", "6", "--resume", "--out"]
        limit, small = 400 * 1024, 8 * 1024  # below a checkpoint (about 690 KB) / below a sample (about 12 KB)
        jobs = [
            dict(argv=[*argv, str(run)], fsize=limit),
            dict(argv=[*argv, str(run)], fsize=small),
            dict(argv=[*argv, str(locked)], nobody=True),  # the last: it cannot become root again
        ]
        codes, errors = run_child(jobs)
        again = ", then --resume (resume=True) continues from last.pt"
        assert codes == [2, 2, 2] and errors == [
            f"error: could not write {run / 'best.pt'}: it would pass this process's limit on file sizes of "
            f"{limit} bytes (ulimit -f 400); the partial file was removed and best.pt is as it was. Raise the "
            f"limit on file sizes (ulimit -f unlimited){again}",
            f"error: could not write {run / 'samples' / 'step_0000006.png'}: it would pass this process's limit on "
            f"file sizes of {small} bytes (ulimit -f 8). Raise the limit on file sizes (ulimit -f unlimited){again}",
            f"error: could not write {locked / 'train.lock'}: Permission denied. Train into a folder you can write "
            f"to (--out), or make {locked} writable{again}",
        ]
        after = tree(run)
        kept = ("last.pt", "best.pt", "samples/step_0000003.png")
        assert {k: after[k] for k in kept} == {k: before[k] for k in kept}  # byte for byte
        assert after["history.jsonl"].startswith(before["history.jsonl"])
        assert sorted(set(after) - set(before)) == ["samples/step_0000006.png"]  # no partial or temporary file
        assert tree(locked) == before
    finally:
        for folder in (locked, locked / "samples"):
            if folder.exists():
                folder.chmod(0o755)
        shutil.rmtree(top)


def test_a_read_only_file_system_during_training_is_one_line(finished, tmp_path, monkeypatch, capsys):
    """The filesystem turns read-only mid-run (a Drive unmounted, a quota): EROFS at the next save."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = tree(out)

    def read_only(obj, f):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(torch, "save", read_only)
    assert main(["train", "srresnet", *SMOKE, "--steps", "6", "--out", str(out), "--resume"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: could not write {out / 'best.pt'}: Read-only file system; the partial file was removed and "
        f"best.pt is as it was. Train into a folder you can write to (--out), or make {out} writable, then "
        f"--resume (resume=True) continues from last.pt"
    )
    after = tree(out)
    assert {k: after[k] for k in before if k != "history.jsonl"} == {
        k: v for k, v in before.items() if k != "history.jsonl"
    }


# ---------------------------------------------------------------- a name too long


def test_an_out_name_longer_than_the_filesystem_allows_is_one_line(tmp_path, capsys):
    """ENAMETOOLONG was a traceback, at the first look at the folder (Path.exists raises it)."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    name = "r" * (limit + 1)
    out = tmp_path / name / "run"
    message = (
        f"--out {str(out)[:40]}...{str(out)[-40:]}: the folder name {name[:40]}...{name[-40:]} is {limit + 1} bytes "
        f"long, and this filesystem allows {limit} (File name too long): choose a shorter --out"
    )
    assert main(["train", "srresnet", *SMOKE, "--steps", "1", "--out", str(out)]) == 2
    assert one_line_error(capsys) == f"error: {message}"
    with pytest.raises(ValueError) as caught:
        train(smoke(steps=1), out, progress=False)
    assert str(caught.value) == message
    assert sorted(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- a stale lock taken over at once


def _contend(folders, barrier, wins):
    warnings.simplefilter("ignore")  # "took over the lock ..."
    for i, folder in enumerate(folders):
        barrier.wait()
        try:
            runlock._acquire(Path(folder) / runlock.LOCK_NAME)
        except runlock.RunLocked:
            continue
        with wins.get_lock():  # and holds it: this process lives on, so its lock stays live
            wins[i] += 1
    barrier.wait()


def _stale_lock(folder):
    """The lock of a run on another host that ended an hour ago."""
    lock = folder / runlock.LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": "a-colab-session-that-ended", "started": "earlier"}))
    os.utime(lock, (time.time() - 3600,) * 2)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="forks the contenders")
def test_two_runs_taking_over_a_stale_lock_at_the_same_instant_never_both_get_it(tmp_path, monkeypatch):
    """Both used to unlink the stale lock and create their own: 9 of 40 trials had two winners. The
    contenders pause 2 ms after judging the lock stale (as a slow disk would), so they overlap every time."""
    judge = runlock._stale

    def slow_judge(owner, path):
        why = judge(owner, path)
        time.sleep(0.002)
        return why

    monkeypatch.setattr(runlock, "_stale", slow_judge)  # before the fork: the contenders inherit it
    trials, contenders = 150, 4
    folders = [tmp_path / str(i) for i in range(trials)]
    for folder in folders:
        folder.mkdir()
        _stale_lock(folder)
    context = multiprocessing.get_context("fork")
    barrier, wins = context.Barrier(contenders), context.Array("i", trials)
    processes = [
        context.Process(target=_contend, args=([str(f) for f in folders], barrier, wins)) for _ in range(contenders)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * contenders
    doubles = sum(n > 1 for n in wins)
    assert list(wins) == [1] * trials, f"{doubles} of {trials} trials had several winners"
    assert all(not list(f.glob("*.takeover*")) for f in folders)  # no guard left behind


def test_a_guard_left_by_a_run_killed_while_taking_over_is_cleared(tmp_path):
    _stale_lock(tmp_path)
    guard = tmp_path / f"{runlock.LOCK_NAME}.takeover"
    guard.write_text(json.dumps({"pid": 1, "host": "gone", "started": "earlier", "token": "x"}))
    os.utime(guard, (time.time() - runlock.GUARD_STALE - 1,) * 2)
    start = time.monotonic()
    with pytest.warns(UserWarning, match="took over the lock"):
        me = runlock._acquire(tmp_path / runlock.LOCK_NAME)
    assert time.monotonic() - start < 1
    assert json.loads((tmp_path / runlock.LOCK_NAME).read_text()) == me and me["pid"] == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == [runlock.LOCK_NAME]


# ---------------------------------------------------------------- settings out of range


@pytest.mark.parametrize(
    "setting, message",
    [
        ("generator.num_block=-1", "generator.num_block=-1: must be at least 1 (e.g. --set generator.num_block=1)"),
        ("generator.num_block=0", "generator.num_block=0: must be at least 1 (e.g. --set generator.num_block=1)"),
        ("generator.num_feat=2.5", "generator.num_feat=2.5: must be at least 1 (e.g. --set generator.num_feat=1)"),
        ("grad_clip=-1", "grad_clip=-1: must be a finite number >= 0 (0 or none: off)"),
        ("pixel_weight=-1", "pixel_weight=-1.0: must be a finite number >= 0"),
        ("lr_g=0", "lr_g=0.0: must be a finite number > 0"),
        ("lr_g=1e999", "lr_g=inf: must be a finite number > 0"),
        ("seed=-1", "seed=-1: must be a whole number >= 0"),
        ("warmup_steps=-5", "warmup_steps=-5: must be a whole number >= 0"),
        ("ema_decay=1.5", "ema_decay=1.5: must be in [0, 1] (0.999: the EMA moves a thousandth of the way per step)"),
        ("betas=(0.9,1.0)", "betas=(0.9, 1.0): must be two numbers in [0, 1), Adam's (e.g. --set betas=(0.9,0.999))"),
    ],
)
def test_settings_out_of_range_are_refused_before_anything_is_built(setting, message, tmp_path, capsys):
    """num_block=-1 built a generator without blocks, grad_clip=-1 flipped every gradient (clip_grad_norm_
    scales them by max_norm / norm): both trained without a word."""
    out = tmp_path / "run"
    assert main(["train", "srresnet", *SMOKE, "--steps", "1", "--out", str(out), "--set", setting]) == 2
    assert one_line_error(capsys) == f"error: {message}"
    assert not out.exists()


def test_a_value_nested_too_deep_to_print_is_named_by_its_type(finished):
    """repr of a list nested 100,000 deep (a 200 KB pickle) raised RecursionError: a traceback."""
    from srlab.checkpoint import check_training_state

    ckpt = torch.load(finished / "last.pt", weights_only=True)
    nested = []
    for _ in range(100_000):
        nested = [nested]
    ckpt["step"] = nested
    with pytest.raises(ValueError, match=r"its step is a list, not a step number"):
        check_training_state(ckpt, finished / "last.pt")


def test_a_checkpoint_that_would_inflate_is_not_taken_for_a_run_nor_loaded(finished, tmp_path, monkeypatch):
    """mmap spares the tensors but not the pickle: a deflated last.pt declaring 100 MB went to torch.load."""
    import zipfile

    out = tmp_path / "run"
    out.mkdir()
    with zipfile.ZipFile(finished / "last.pt") as src, zipfile.ZipFile(out / "last.pt", "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("archive/padding", b"\0" * 100_000_000, compress_type=zipfile.ZIP_DEFLATED)
    assert zipfile.ZipFile(out / "last.pt").infolist()[-1].file_size > 10 * (out / "last.pt").stat().st_size
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or pytest.fail("torch.load was called"))
    assert not runfolder.holds_srlab_run(out) and loads == []


def test_a_dangling_symlink_lock_is_a_lock_not_a_spin(tmp_path):
    """O_EXCL sees the link; stat() followed it and failed, and the taker spun for 15 s of CPU."""
    (tmp_path / "train.lock").symlink_to(tmp_path / "nowhere")
    start = time.perf_counter()
    with pytest.raises(runlock.RunLocked, match="still empty or unreadable"):
        with runlock.run_lock(tmp_path):
            pass
    assert time.perf_counter() - start < 5


def test_an_ema_decay_of_none_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^ema_decay=None: must be in \[0, 1\]"):
        make_config("srresnet", "smoke", sizes=None, ema_decay=None)
