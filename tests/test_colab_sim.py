"""The course as Colab runs it (python -m srlab colab-sim): every notebook on a fresh runtime, only
Drive kept, DIV2K from 127.0.0.1, and notebook 03 killed mid-training then resumed on a new runtime.

On main before this change (c300b5c) the same simulation failed (its notebooks given this setup
cell's install guard and ``/content`` read from ``$SRLAB_COLAB_CONTENT``, nothing else): notebook
01 passed, then notebook 02 on its fresh runtime stopped with "the colab preset trains on DIV2K,
not on the 6 embedded photos: run notebook 01_data_prep first": the patch store had been built on
01's runtime, and its runs folder was that runtime's disk too (Drive was a commented-out line).
"""

import hashlib
import json
import re
from pathlib import Path

import pytest

from srlab.checkpoint import load_generator
from srlab.colab_sim import DISCONNECT_STEPS, simulate
from srlab.presets import make_config

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    out = tmp_path_factory.mktemp("colab")
    return out, simulate(out, NOTEBOOKS, timeout=600, progress=False)


def test_the_course_runs_as_colab_runs_it(course):
    _, report = course
    failed = [f"{c['check']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    logs = [r["log"] for r in report["runs"] if r["rc"] != 0 and not r["killed"]]
    assert not failed, (failed, logs)


def test_drive_holds_the_archive_as_served_and_each_runtime_its_own_store(course):
    out, _ = course
    served = hashlib.sha256((out / "server" / "DIV2K_train_HR.zip").read_bytes()).hexdigest()
    kept = hashlib.sha256((out / "drive" / "srlab" / "archives" / "DIV2K_train_HR.zip").read_bytes()).hexdigest()
    assert kept == served
    runtimes = sorted((out / "runtimes").iterdir())
    assert len(runtimes) == 7  # six notebooks, 03 twice
    for runtime in runtimes:
        content = runtime / "content"
        assert not (content / "runs").exists(), runtime.name  # runs went to Drive, never the runtime
        needs_store = "_06_" not in runtime.name  # 01 teaches the store, 02-05 train from it; 06 only evaluates
        assert (content / "data" / "colab" / "patches" / "index.json").is_file() == needs_store, runtime.name


def test_the_disconnected_run_continued_to_the_end_without_starting_over(course):
    out, report = course
    cut = next(r for r in report["runs"] if r["role"] == "disconnect")
    assert cut["killed"] and cut["rc"] != 0
    lines = (out / "drive/srlab/runs/colab/srresnet/history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    steps = [r["step"] for r in history if "loss_g" in r]
    rerun = next(r for r in report["runs"] if r["role"] == "rerun")
    resumed = int(re.search(r"resuming srresnet from step (\d+)", rerun["text"])[1])
    # one record per step, in order: a run started over would log steps 1, 2, ... twice
    assert steps == list(range(1, len(steps) + 1))
    assert 0 < resumed < max(steps) <= DISCONNECT_STEPS


def test_every_model_on_drive_loads_at_the_smoke_size(course):
    out, _ = course
    runs = out / "drive" / "srlab" / "runs" / "colab"
    stages = {"srresnet": "srresnet", "srgan": "srgan", "srgan_collapse": "srgan", "rrdb": "rrdb", "esrgan": "esrgan"}
    for run, stage in stages.items():
        _, info = load_generator(runs / run / "best.pt")
        assert info["architecture"] == make_config(stage, "smoke").generator, run  # colab's folders, smoke's sizes
        assert info["config"]["stage"] == stage and info["scale"] == 4
    for run in ("srcnn", "autoencoder"):
        assert load_generator(runs / run / "best.pt")[1]["architecture"]["name"] == run
