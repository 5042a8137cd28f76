"""The Colab path without a GPU: what the setup cell says, what the notebooks ask Colab for."""

import json
import sys
from pathlib import Path
from unittest import mock

from srlab import notebook as nb

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


def test_the_training_notebooks_ask_colab_for_a_gpu():
    for name in ("03_srgan_pretrain", "04_srgan_adversarial", "05_esrgan", "06_evaluation_gallery"):
        metadata = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["metadata"]
        assert metadata["accelerator"] == "GPU" and metadata["colab"]["gpuType"] == "T4", name
