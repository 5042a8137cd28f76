import pytest

from srlab import notebook as nb


def test_preset_choice(monkeypatch, capsys):
    monkeypatch.setenv("SRLAB_PRESET", "cpu")
    assert nb.choose_preset() == "cpu" and "set by SRLAB_PRESET" in capsys.readouterr().out
    monkeypatch.setenv("SRLAB_PRESET", "turbo")
    with pytest.raises(ValueError, match="not a preset"):
        nb.choose_preset()
    monkeypatch.delenv("SRLAB_PRESET")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert nb.choose_preset() == "smoke" and "no GPU" in capsys.readouterr().out


def test_runs_dir_and_require(monkeypatch, tmp_path):
    monkeypatch.setenv("SRLAB_RUNS", str(tmp_path / "r"))
    assert nb.runs_dir() == tmp_path / "r" and (tmp_path / "r").is_dir()
    with pytest.raises(FileNotFoundError, match="run notebook 03_srgan_pretrain first"):
        nb.require(tmp_path / "r" / "smoke" / "srresnet" / "best.pt", "03_srgan_pretrain")


def test_badge_points_at_the_notebook_on_colab():
    badge = nb.colab_badge("05_esrgan", "https://github.com/a/b")
    assert badge == ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                     "(https://colab.research.google.com/github/a/b/blob/main/notebooks/05_esrgan.ipynb)")


def test_rewrite_repo_url_changes_badges_setup_cells_and_readme(tmp_path):
    old = nb.REPO_URL.removeprefix("https://github.com/")
    (tmp_path / "srlab").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "srlab" / "notebook.py").write_text(f'REPO_URL = "https://github.com/{old}"\n')
    (tmp_path / "README.md").write_text(nb.colab_badge("01_data_prep") + "\n")
    (tmp_path / "notebooks" / "01_data_prep.py").write_text(f'pip install git+https://github.com/{old}\n')
    (tmp_path / "notebooks" / "untouched.py").write_text("nothing here\n")
    changed = nb.rewrite_repo_url("https://github.com/me/fork.git", root=tmp_path)
    assert sorted(p.name for p in changed) == ["01_data_prep.py", "README.md", "notebook.py"]
    assert "git+https://github.com/me/fork\n" in (tmp_path / "notebooks" / "01_data_prep.py").read_text()
    assert "github/me/fork/blob/main/notebooks/01_data_prep.ipynb" in (tmp_path / "README.md").read_text()
    assert old not in (tmp_path / "srlab" / "notebook.py").read_text()
