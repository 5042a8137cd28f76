"""The Colab path as Colab runs it: Drive by default, each runtime builds its own data, one plan.

The whole course under a simulated Colab (fresh runtime per notebook, a disconnect) is
tests/test_colab_sim.py; these are its parts, each against a hand-made reference.
"""

import hashlib
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

from srlab import notebook as nb
from srlab.colab_sim import make_stand_in_data, serve
from srlab.data import PatchStore
from srlab.download import DATASETS
from srlab.plan import checkpoint_bytes
from srlab.presets import check_training_data, make_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """A stand-in google.colab whose drive.mount links MyDrive to tmp_path/drive, and /content in tmp_path."""
    drive_dir = tmp_path / "drive"
    drive_dir.mkdir()
    mounted = []

    def mount(mountpoint, force_remount=False):
        Path(mountpoint).mkdir(parents=True, exist_ok=True)
        (Path(mountpoint) / "MyDrive").symlink_to(drive_dir)
        mounted.append(mountpoint)

    google, colab_module, drive = ModuleType("google"), ModuleType("google.colab"), ModuleType("google.colab.drive")
    drive.mount = mount
    colab_module.drive = drive
    google.colab = colab_module
    for var in ("SRLAB_RUNS", "SRLAB_DATA", "SRLAB_ARCHIVES", "SRLAB_SIZES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SRLAB_COLAB_CONTENT", str(tmp_path / "content"))
    with mock.patch.dict(sys.modules, {"google": google, "google.colab": colab_module, "google.colab.drive": drive}):
        yield drive_dir, mounted


def test_on_colab_runs_and_archives_go_to_drive_by_default(colab, tmp_path, capsys):
    drive_dir, mounted = colab
    runs = nb.use_google_drive("colab")
    assert mounted == [str(tmp_path / "content" / "drive")]
    assert runs.resolve() == (drive_dir / "srlab" / "runs").resolve() == nb.runs_dir().resolve()
    assert nb.archive_dir().resolve() == (drive_dir / "srlab" / "archives").resolve()
    assert nb.data_dir() == tmp_path / "content" / "data"  # the runtime's own disk, not Drive
    out = capsys.readouterr().out
    need = re.search(r"keeps about ([\d.]+) GB there", out)
    assert need and float(need[1]) == pytest.approx(nb.course_drive_bytes("colab") / 1e9, abs=0.05)


def test_opting_out_of_drive_keeps_runs_on_the_runtime_with_a_warning(colab, tmp_path, capsys):
    _, mounted = colab
    assert nb.use_google_drive("colab", enabled=False) == tmp_path / "content" / "runs"
    assert not mounted
    out = capsys.readouterr().out
    assert out.startswith("WARNING") and "next notebook" in out and "USE_DRIVE = True" in out


def _hand_store_windows(h, w, size, stride, scale=4):
    """BasicSR's corners, written out independently: every stride, plus one flush with the end."""

    def starts(n):
        last = (n - size) // scale * scale
        out = list(range(0, last + 1, stride))
        return out if out[-1] == last else [*out, last]

    return len(starts(h)) * len(starts(w))


def test_a_fresh_runtime_builds_its_training_data_from_the_drive_archive(tmp_path, monkeypatch, capsys):
    """Runtime 1 downloads DIV2K into the archives folder (Drive) and cuts the store; runtime 2 (a new
    data folder, the same archives) builds its own store without downloading again."""
    server, served = serve(tmp_path / "server")
    try:
        table = make_stand_in_data(tmp_path / "server", f"http://127.0.0.1:{server.server_address[1]}", train=2)
        monkeypatch.setitem(DATASETS, "div2k", table["div2k"])
        archives = tmp_path / "drive" / "archives"
        monkeypatch.setenv("SRLAB_ARCHIVES", str(archives))
        first = nb.training_data(tmp_path / "runtime1", "colab", verbose=False)
        second = nb.training_data(tmp_path / "runtime2", "colab", verbose=False)
    finally:
        server.shutdown()
    zip_bytes = (tmp_path / "server" / "DIV2K_train_HR.zip").read_bytes()
    assert served["DIV2K_train_HR.zip"] == len(zip_bytes)  # sent once, in full
    assert (
        hashlib.sha256((archives / "DIV2K_train_HR.zip").read_bytes()).hexdigest()
        == hashlib.sha256(zip_bytes).hexdigest()
    )
    assert (first, second) == (str(tmp_path / "runtime1/colab/patches"), str(tmp_path / "runtime2/colab/patches"))
    for store in (first, second):
        assert len(PatchStore(store)) == 2 * _hand_store_windows(1356, 2040, 480, 240)  # 2 photos, 480 / 240


def test_a_store_already_in_this_runtime_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "div2k", {"archives": []})  # nothing to download: it must not try
    store = tmp_path / "colab" / "patches"
    store.mkdir(parents=True)
    (store / "index.json").write_text("{}")
    assert nb.training_data(tmp_path, "colab", verbose=False) == str(store)


def test_smoke_sizes_keep_the_colab_data_flow(monkeypatch):
    monkeypatch.setenv("SRLAB_SIZES", "smoke")
    cfg, smoke = make_config("srresnet", "colab"), make_config("srresnet", "smoke")
    assert (cfg.generator, cfg.steps, cfg.hr_size) == (smoke.generator, smoke.steps, smoke.hr_size)
    with pytest.raises(ValueError, match="DIV2K"):
        check_training_data("colab", None)  # still the colab preset's data
    real = make_config("srresnet", "colab", sizes=None)
    assert (real.generator["num_block"], real.steps) == (16, 100_000)  # the paper's SRResNet, colab's length
    assert nb.size_preset("colab") == "smoke"
    monkeypatch.setenv("SRLAB_SIZES", "huge")
    with pytest.raises(ValueError, match="SRLAB_SIZES"):
        make_config("srresnet", "colab")


def test_the_course_drive_space_is_the_archives_and_two_checkpoints_per_run():
    # the official archive sizes, typed from DIV2K's table (TensorFlow Datasets' checksums) and the
    # EDSR authors' "250MB" for benchmark.tar
    archives = 3_530_603_713 + 448_993_893 + 250_000_000
    runs = {
        "srcnn": make_config("srresnet", "colab", sizes=None, generator={"name": "srcnn"}, init_from=None),
        "autoencoder": make_config("srresnet", "colab", sizes=None, generator={"name": "autoencoder"}, init_from=None),
        "srresnet": make_config("srresnet", "colab", sizes=None),
        "srgan": make_config("srgan", "colab", sizes=None),
        "srgan_collapse": make_config("srgan", "colab", sizes=None),
        "rrdb": make_config("rrdb", "colab", sizes=None),
        "esrgan": make_config("esrgan", "colab", sizes=None),
    }
    expected = archives + sum(2 * checkpoint_bytes(cfg) for cfg in runs.values())
    assert nb.course_drive_bytes("colab") == expected
    assert expected < 15e9  # a free Drive


def test_the_data_step_minutes_follow_the_stated_rates():
    rates = nb.DATA_RATES
    # notebook 03: DIV2K's two HR zips and benchmark.tar (Set5), each read twice (checked, extracted),
    # 800 + 100 + 5 images decoded once, 800 cut into the store
    mb = (3_530_603_713 + 448_993_893 + 250_000_000) / 1e6
    seconds = 2 * mb / rates["drive_read_mb_s"] + 905 * rates["decode_s_per_image"] + 800 * rates["store_s_per_image"]
    each = seconds / 60
    assert nb.data_minutes("03_srgan_pretrain") == pytest.approx((each, mb / rates["download_mb_s"] / 60))


def test_the_readme_states_the_colab_plan_the_code_computes():
    readme = (ROOT / "README.md").read_text()
    assert nb.colab_plan_table() in readme


def test_every_notebook_prints_its_colab_plan_before_it_works():
    for name in nb.NOTEBOOKS:
        source = (NOTEBOOKS / f"{name}.py").read_text()
        plan_at = source.index(f'print(nb.colab_plan("{name}"))')
        first_work = min(
            source.index(marker)
            for marker in ("download_dataset(", "training_data(", "nb.require(", "load_generator(")
            if marker in source
        )
        assert plan_at < first_work, name


def test_every_notebook_asks_colab_for_a_gpu_and_installs_srlab_once():
    for name in nb.NOTEBOOKS:
        notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        assert notebook["metadata"]["accelerator"] == "GPU" and notebook["metadata"]["colab"]["gpuType"] == "T4"
        setup = "".join(notebook["cells"][1]["source"])
        assert 'importlib.util.find_spec("srlab") is None' in setup and "pip" in setup, name


def test_the_colab_plan_names_what_each_notebook_keeps(capsys):
    text = nb.colab_plan("05_esrgan")
    for run in ("rrdb", "esrgan"):
        cfg = make_config(run, "colab", sizes=None)
        assert f"runs/colab/{run} ({2 * checkpoint_bytes(cfg) / 1e6:,.0f} MB)" in text
    assert "archives/DIV2K_train_HR.zip (3,531 MB)" in text
    minutes = float(re.search(r"takes about (\d+) min", text)[1])
    assert 80 <= minutes <= 110  # RRDB 45 + ESRGAN 46 minutes by plan's FLOP count, plus the data step


def test_every_preset_keeps_its_runs_on_drive_on_colab(colab, tmp_path):
    drive_dir, _ = colab
    nb.use_google_drive("quick")  # a CPU runtime picks quick: its runs outlive the runtime too
    assert nb.runs_dir().resolve() == (drive_dir / "srlab" / "runs").resolve()


def test_a_simulation_refuses_a_folder_that_is_not_empty(tmp_path):
    from srlab.colab_sim import simulate

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not an empty folder: name a new one"):
        simulate(tmp_path, Path("notebooks"), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # refused before anything was written


def test_each_simulation_marks_its_runtimes_as_its_own(tmp_path):
    """kill_runtime kills what carries the mark: two simulations on one machine share runtime names,
    so the mark holds the simulating process's id, and one never kills the other's kernels."""
    import os

    from srlab.colab_sim import RUNTIME_MARK, new_runtime

    _, env = new_runtime(tmp_path, "runtime1_01_data_prep", tmp_path / "standin", tmp_path / "datasets.json")
    assert env[RUNTIME_MARK] == f"{os.getpid()}/runtime1_01_data_prep"
