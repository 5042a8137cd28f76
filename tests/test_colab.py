"""The Colab path without a GPU: what the setup cell says, what the notebooks ask Colab for."""

import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np

from srlab import notebook as nb
from srlab.cli import main
from srlab.data import extract_patches
from srlab.images import write_image

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_colab_without_a_gpu_says_so_with_the_menu_path():
    with (
        mock.patch.dict(sys.modules, {"google.colab": mock.MagicMock()}),
        mock.patch("torch.cuda.is_available", return_value=False),
    ):
        line = nb.device_summary()
    assert "NO GPU" in line and "Runtime > Change runtime type" in line and "T4 GPU" in line


def test_a_cpu_outside_colab_is_stated_plainly():
    with (
        mock.patch.dict(sys.modules, {"google.colab": None}),
        mock.patch("torch.cuda.is_available", return_value=False),
    ):
        sys.modules.pop("google.colab")
        assert nb.device_summary().startswith("no GPU: ")


def test_every_notebook_asks_colab_for_a_gpu():
    for name in nb.NOTEBOOKS:  # all six: they agree on the preset (colab) and so on its folders
        metadata = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["metadata"]
        assert metadata["accelerator"] == "GPU" and metadata["colab"]["gpuType"] == "T4", name


def test_data_dir_is_the_local_disk_on_colab_and_srlab_data_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("SRLAB_DATA", raising=False)
    with mock.patch.dict(sys.modules, {"google.colab": mock.MagicMock()}), mock.patch("pathlib.Path.mkdir"):
        assert nb.data_dir() == Path("/content/data")
    monkeypatch.setenv("SRLAB_DATA", str(tmp_path / "fast"))
    monkeypatch.setenv("SRLAB_RUNS", str(tmp_path / "drive"))
    assert nb.data_dir() == tmp_path / "fast" and nb.runs_dir() == tmp_path / "drive"


def test_the_cpu_presets_fall_back_on_the_embedded_photos(tmp_path):
    # (colab never does: it builds DIV2K's store, tests/test_colab_runtime.py)
    assert nb.training_data(tmp_path, "quick", verbose=False) is None


def test_colab_trains_from_notebook_01s_store_under_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    hr = tmp_path / "hr"
    write_image(hr / "a.png", rng.integers(0, 256, (140, 150, 3), dtype=np.uint8))
    store = extract_patches(hr, tmp_path / "colab" / "patches", size=128, stride=64, workers=1)
    assert nb.training_data(tmp_path, "colab", verbose=False) == str(store)


def test_the_cli_refuses_colab_training_without_data_in_one_line(tmp_path, capsys):
    assert main(["train", "srresnet", "--preset", "colab", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "01_data_prep" in err[0] and "--data" in err[0]
    assert not (tmp_path / "run").exists()
