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
    assert nb.choose_preset() == "quick" and "no GPU" in capsys.readouterr().out


def test_runs_dir_and_require(monkeypatch, tmp_path):
    monkeypatch.setenv("SRLAB_RUNS", str(tmp_path / "r"))
    assert nb.runs_dir() == tmp_path / "r" and (tmp_path / "r").is_dir()
    with pytest.raises(FileNotFoundError, match="run notebook 03_srgan_pretrain first"):
        nb.require(tmp_path / "r" / "smoke" / "srresnet" / "best.pt", "03_srgan_pretrain")


def test_badge_points_at_the_notebook_on_colab():
    badge = nb.colab_badge("05_esrgan", "https://github.com/a/b")
    assert badge == (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/a/b/blob/main/notebooks/05_esrgan.ipynb)"
    )


def test_rewrite_repo_url_changes_badges_setup_cells_and_readme(tmp_path):
    old = nb.REPO_URL.removeprefix("https://github.com/")
    (tmp_path / "srlab").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "srlab" / "notebook.py").write_text(f'REPO_URL = "https://github.com/{old}"\n')
    (tmp_path / "README.md").write_text(nb.colab_badge("01_data_prep") + "\n")
    (tmp_path / "notebooks" / "01_data_prep.py").write_text(f"pip install git+https://github.com/{old}\n")
    (tmp_path / "notebooks" / "untouched.py").write_text("nothing here\n")
    changed = nb.rewrite_repo_url("https://github.com/me/fork.git", root=tmp_path)
    assert sorted(p.name for p in changed) == ["01_data_prep.py", "README.md", "notebook.py"]
    assert "git+https://github.com/me/fork\n" in (tmp_path / "notebooks" / "01_data_prep.py").read_text()
    assert "github/me/fork/blob/main/notebooks/01_data_prep.ipynb" in (tmp_path / "README.md").read_text()
    assert old not in (tmp_path / "srlab" / "notebook.py").read_text()


def test_training_data_prefers_the_patch_store(tmp_path, capsys, photo):
    from srlab.data import PatchStore, extract_patches
    from srlab.images import write_image

    assert nb.training_data(tmp_path, "smoke") is None
    assert "embedded photos, coffee held out" in capsys.readouterr().out
    write_image(tmp_path / "hr" / "a.png", photo)
    store = extract_patches(tmp_path / "hr", tmp_path / "smoke" / "patches", size=32, stride=32, workers=1)
    assert nb.training_data(tmp_path, "smoke") == str(tmp_path / "smoke" / "patches")
    assert "patch store" in capsys.readouterr().out
    assert len(PatchStore(store)) == (96 // 32) * (128 // 32)  # the store it points at is the real one


def test_show_markdown_prints_outside_a_notebook(capsys):
    nb.show_markdown("| a |\n|---|\n| 1 |")
    assert capsys.readouterr().out == "| a |\n|---|\n| 1 |\n"


def _skimage_psnr_y(sr, hr, border):
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio

    y = lambda img: rgb2ycbcr(img / 255.0)[..., 0]
    crop = (slice(border, -border), slice(border, -border))
    return peak_signal_noise_ratio(y(hr)[crop], y(sr)[crop], data_range=255)


def test_compare_scores_tabulates_and_captions_the_crops(tmp_path, capsys, photo):
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from srlab.resize import imresize
    from srlab.viz import compare

    hr = photo  # 96x128
    lr = imresize(hr, 1 / 4)
    outputs = {"bicubic": imresize(lr, 4), "nearest": cv2.resize(lr, (128, 96), interpolation=cv2.INTER_NEAREST)}
    scores = compare(outputs, hr, 4, lr=lr, name="astronaut", path=tmp_path / "grid.png", crop=32)
    expected = {m: _skimage_psnr_y(sr, hr, 4) for m, sr in outputs.items()}
    for m in outputs:
        assert scores[m]["psnr_y"] == pytest.approx(expected[m], abs=1e-6)
    table = capsys.readouterr().out
    assert table.splitlines()[0] == "| astronaut, x4 | PSNR-Y (dB) | SSIM-Y | PSNR-RGB (dB) |"
    assert f"| bicubic | **{expected['bicubic']:.2f}** |" in table  # bicubic beats nearest, in bold
    fig = plt.gcf()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "astronaut",
        "LR",
        f"bicubic\n{expected['bicubic']:.2f} dB",
        f"nearest\n{expected['nearest']:.2f} dB",
        "HR",
    ]
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)


def test_compare_images_draws_one_row_per_image(capsys, photo):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from srlab.resize import imresize
    from srlab.viz import compare_images

    images = {}
    for name, hr in (("a", photo[:, :64]), ("b", photo[:, 64:])):
        images[name] = {"hr": hr, "outputs": {"bicubic": imresize(imresize(hr, 1 / 4), 4)}}
    scores = compare_images(images, 4, crop=32)
    assert set(scores) == {"a", "b"}
    assert scores["b"]["bicubic"]["psnr_y"] == pytest.approx(
        _skimage_psnr_y(images["b"]["outputs"]["bicubic"], images["b"]["hr"], 4), abs=1e-6
    )
    assert capsys.readouterr().out.splitlines()[0] == "| x4, PSNR-Y (dB) / SSIM-Y | a | b |"
    assert len(plt.gcf().axes) == 2 * 3  # two rows: full HR, bicubic crop, HR crop
    plt.close("all")


def test_history_plot_has_plain_tick_labels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from srlab.viz import plot_history

    history = [{"step": s, "loss_g": 0.1 / s} for s in (1, 2, 3)]
    history += [{"step": 3, "val_psnr": 30.6912}, {"step": 6, "val_psnr": 30.6914}]  # a nearly flat curve
    fig = plot_history(history)
    fig.canvas.draw()
    val = fig.axes[-1]
    assert val.yaxis.get_offset_text().get_text() == ""  # no "1e-5+3.069e1"
    labels = [t.get_text() for t in val.get_yticklabels() if t.get_text()]
    values = [float(t.replace("\u2212", "-")) for t in labels]
    assert labels and all(30.0 <= v <= 31.4 for v in values)
    low, high = val.get_ylim()  # 0.0002 dB of noise is not drawn as a rise over the whole panel
    assert high - low >= 1.0 and low < 30.6912 and high > 30.6914
    val.axhline(27.0)  # a reference drawn afterwards (bicubic) still fits in
    assert val.get_ylim()[0] < 27.0
    steps = [t.get_text().replace("\u2212", "-") for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert steps and all(t.lstrip("-").isdigit() for t in steps), steps  # whole steps, no 2.5
    plt.close(fig)


def test_psnr_versus_says_above_below_or_level_from_the_numbers():
    assert nb.psnr_versus("SRCNN", 8.41, "bicubic", 27.29) == "SRCNN: 8.41 dB, 18.88 dB below bicubic (27.29 dB)"
    assert nb.psnr_versus("RRDB", 30.56, "SRResNet", 30.41) == "RRDB: 30.56 dB, 0.15 dB above SRResNet (30.41 dB)"
    # 0.03 dB apart: a tie, whichever way round
    level = "SRGAN: 27.32 dB, level with SRResNet (27.29 dB; within 0.05 dB)"
    assert nb.psnr_versus("SRGAN", 27.32, "SRResNet", 27.29) == level
    assert "level with" in nb.psnr_versus("a", 27.26, "b", 27.29)
    assert "0.06 dB above" in nb.psnr_versus("a", 27.35, "b", 27.29)


def test_niqe_versus_says_more_or_less_natural_from_the_numbers():
    more = "SRGAN: NIQE 5.10, 0.84 below SRResNet (5.94): more natural by NIQE"  # 5.94 - 5.10 by hand
    assert nb.niqe_versus("SRGAN", 5.10, "SRResNet", 5.94) == more
    less = "ESRGAN: NIQE 7.50, 1.25 above RRDB (6.25): less natural by NIQE"
    assert nb.niqe_versus("ESRGAN", 7.50, "RRDB", 6.25) == less
    # 0.15 apart: under the plot's tie (srlab.preference.NIQE_TIE, 0.2), whichever way round; 0.25 apart: not
    assert nb.niqe_versus("a", 6.40, "b", 6.25) == "a: NIQE 6.40, level with b (6.25; within 0.2)"
    assert "level with" in nb.niqe_versus("a", 6.10, "b", 6.25)
    assert "0.25 below" in nb.niqe_versus("a", 6.00, "b", 6.25)


def test_difference_note_measures_grey_levels_and_says_when_crops_look_the_same():
    import numpy as np

    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 148  # one value of 48 off 48 values: 1.00 grey level on average
    assert nb.difference_note("SRGAN", b, "SRResNet", a) == (
        "SRGAN and SRResNet differ by 1.00 grey levels per pixel on average (of 255)"
    )
    b[0, 0, 0] = 124  # 0.50 on average: invisible
    assert nb.difference_note("SRGAN", b, "SRResNet", a).endswith(
        "by 0.50 grey levels per pixel on average (of 255): too little to see, so their crops look the same in this run"
    )
    # 16-bit and float images are measured in the same 8-bit levels
    a16, f = a.astype(np.uint16) * 257, a / 255.0 + 2 / 255.0
    assert "by 0.00 grey levels" in nb.difference_note("x", a16, "y", a)
    assert "by 2.00 grey levels" in nb.difference_note("x", f, "y", a)


def test_load_published_says_in_one_line_when_the_weights_are_missing(monkeypatch, capsys):
    import srlab.checkpoint

    def offline(name, **kwargs):
        raise OSError(f"could not get {name}: no network.\nsecond line")

    monkeypatch.setattr(srlab.checkpoint, "load_generator", offline)
    assert nb.load_published("realesrgan-x4plus") is None
    out = capsys.readouterr().out
    assert out == (
        "Real-ESRGAN x4plus (published weights): not available, left out "
        "(OSError: could not get realesrgan-x4plus: no network.)\n"
    )


def test_load_published_real_esrgan_runs_offline_from_the_ncnn_package(capsys):
    pytest.importorskip("ncnn", reason="the ncnn reader's package is not installed")
    from srlab import weights

    if weights.installed_realesrgan("realesrgan-x4plus") is None:
        pytest.skip(f"{weights.NCNN_PACKAGE} is not installed")
    import torch

    label, model = nb.load_published("realesrgan-x4plus")
    assert label == "Real-ESRGAN x4plus (published weights)" and capsys.readouterr().out.startswith(label + ": ")
    assert sum(p.numel() for p in model.parameters()) == 16_697_987  # the paper's RRDBNet, 23 blocks
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_compare_puts_niqe_next_to_psnr_for_outputs_and_hr(capsys, photo):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage import data

    from srlab.metrics import niqe
    from srlab.resize import imresize
    from srlab.viz import compare

    hr = data.astronaut()[:208, :208]  # 200 px after the border crop: 2x2 NIQE blocks of 96
    lr = imresize(hr, 1 / 4)
    outputs = {"bicubic": imresize(lr, 4)}
    scores = compare(outputs, hr, 4, name="astronaut", crop=32)
    assert scores["bicubic"]["niqe"] == niqe(outputs["bicubic"], crop_border=4)
    assert scores["HR"] == {"niqe": niqe(hr, crop_border=4)}
    assert scores["bicubic"]["niqe"] > scores["HR"]["niqe"]  # the blur looks less natural than the photo
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| astronaut, x4 | PSNR-Y (dB) | SSIM-Y | PSNR-RGB (dB) | NIQE |"
    assert lines[-1] == f"| HR | – | – | – | **{scores['HR']['niqe']:.2f}** |"  # lower is better: HR in bold
    titles = [ax.get_title() for ax in plt.gcf().axes]
    assert titles[1] == f"bicubic\n{scores['bicubic']['psnr_y']:.2f} dB, NIQE {scores['bicubic']['niqe']:.2f}"
    assert titles[2] == f"HR\nNIQE {scores['HR']['niqe']:.2f}"
    plt.close("all")
    # switched off, or a 96x128 photo (88 px high after the crop: no whole block): no NIQE anywhere
    off = compare(outputs, hr, 4, name="a", crop=32, niqe=False)
    small = compare({"bicubic": imresize(imresize(photo, 1 / 4), 4)}, photo, 4, name="b", crop=32)
    for scores in (off, small):
        assert "niqe" not in scores["bicubic"] and "HR" not in scores
    assert "NIQE" not in capsys.readouterr().out
    plt.close("all")


def test_time_budget_is_the_presets_unless_the_environment_says_otherwise(monkeypatch, capsys):
    from srlab.notebook import time_budget

    monkeypatch.delenv("SRLAB_TIME_BUDGET", raising=False)
    assert time_budget("colab") == "50m" and "50m (the colab preset's)" in capsys.readouterr().out
    assert time_budget("quick") is None and "none (the quick preset's)" in capsys.readouterr().out
    monkeypatch.setenv("SRLAB_TIME_BUDGET", "1h30m")
    assert time_budget("quick") == "1h30m" and "1h30m (set by SRLAB_TIME_BUDGET)" in capsys.readouterr().out
    monkeypatch.setenv("SRLAB_TIME_BUDGET", "none")
    assert time_budget("colab") is None
    monkeypatch.setenv("SRLAB_TIME_BUDGET", "soon")
    with pytest.raises(ValueError, match="time budget 'soon'"):
        time_budget("colab")
