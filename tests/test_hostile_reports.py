"""Issue 28, reports: what a careless or hostile user can do to the files srlab's commands write and read.

- data loss: ``evaluate --hr in/ --json in/a.png`` replaced the HR image with the report; a report
  never replaces an input, nor an existing file srlab did not write (bench, figures, votes alike);
- a read-only or full disk under ``evaluate --json``: one line, the old report kept;
- ``study report`` was quadratic in method names (1.2 MB of votes asked for 11.9 GiB);
- a vote file with its columns in another order credited every vote to the other method;
- a ``|`` in a name broke the Markdown tables;
- ``--metrics lpips`` without the lpips package printed an empty table and exited 0.
"""

import errno
import json
import pathlib
import subprocess
import sys
import textwrap
import types
import urllib.error

import numpy as np
import pytest
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from srlab import bench, preference
from srlab import cli as srlab_cli
from srlab.cli import main
from srlab.evaluate import evaluate_folder, format_table, metrics_table
from srlab.images import write_image
from srlab.resize import imresize
from srlab.votes import COLUMNS, Vote, append_vote, read_votes, write_votes

T = "2025-01-01T10:00:00+00:00"
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def hr_folder(tmp_path):
    """Two 64x64 HR crops of the astronaut, and the PSNR-Y of bicubic x4 on each, by scikit-image."""
    folder = tmp_path / "in"
    img = data.astronaut()
    crops = {"a.png": img[100:164, 150:214], "b.png": img[200:264, 250:314]}
    psnr = {}
    for name, hr in crops.items():
        write_image(folder / name, hr)
        sr = imresize(imresize(hr, 1 / 4), 4)
        y = lambda im: rgb2ycbcr(im)[4:-4, 4:-4, 0]  # noqa: E731
        psnr[name] = peak_signal_noise_ratio(y(hr), y(sr), data_range=255)
    return folder, psnr


def _never(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} ran: the refusal came after the work")

    return fail


def _error_line(capsys) -> str:
    """The one error line the command printed (progress bars aside)."""
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    return line


# ---------------------------------------------------------------- data loss 4: a report never replaces an input


@pytest.mark.parametrize("source", ["--hr", "--sr"])
def test_evaluate_json_never_replaces_an_input_image(hr_folder, capsys, source):
    """The issue's data loss: the HR image a.png was replaced by the JSON report."""
    folder, _ = hr_folder
    before = (folder / "a.png").read_bytes()
    assert main(["evaluate", source, str(folder), "--json", str(folder / "a.png")]) == 2
    assert (folder / "a.png").read_bytes() == before  # the HR image, byte for byte
    line = _error_line(capsys)
    assert line == (
        f"error: --json {folder / 'a.png'} is an image of the input folder {folder}; "
        "the report would replace it: name another file"
    )


def test_evaluate_json_is_refused_before_any_work(hr_folder, capsys, monkeypatch):
    folder, _ = hr_folder
    for work in ("evaluate_folder", "score_images", "_evaluate_upscaler"):
        monkeypatch.setattr(srlab_cli, work, _never(work))
    # a new image-named file in the input folder would be read as an input next time: refused as well
    for source in ("--hr", "--sr"):
        assert main(["evaluate", source, str(folder), "--json", str(folder / "new.png")]) == 2
        assert not (folder / "new.png").exists() and "image of the input folder" in _error_line(capsys)


def test_evaluate_json_never_replaces_the_model_or_the_lr_folder(hr_folder, tmp_path, capsys, monkeypatch):
    folder, _ = hr_folder
    monkeypatch.setattr(srlab_cli, "evaluate_folder", _never("evaluate_folder"))
    weights = tmp_path / "model.pth"
    weights.write_bytes(b"weights")
    assert main(["evaluate", "--hr", str(folder), "--model", str(weights), "--json", str(weights)]) == 2
    assert weights.read_bytes() == b"weights" and f"is the input {weights}" in _error_line(capsys)
    lr = tmp_path / "lr"
    write_image(lr / "a.png", np.zeros((16, 16, 3), np.uint8))
    assert main(["evaluate", "--hr", str(folder), "--lr", str(lr), "--json", str(lr / "a.png")]) == 2
    assert (lr / "a.png").stat().st_size > 0 and "an image of the input folder" in _error_line(capsys)


def test_evaluate_json_refuses_a_foreign_file_and_replaces_its_own_report(hr_folder, tmp_path, capsys):
    folder, psnr = hr_folder
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}')
    assert main(["evaluate", "--hr", str(folder), "--json", str(notes)]) == 2
    assert notes.read_text() == '{"my": "notes"}'
    assert _error_line(capsys) == (
        f"error: --json {notes} exists and is not a report srlab wrote: give another name, or delete it first"
    )
    out = tmp_path / "r.json"
    for _ in range(2):  # the second run replaces the first one's report: srlab wrote it
        assert main(["evaluate", "--hr", str(folder), "--json", str(out)]) == 0
        report = json.loads(out.read_text())
        assert next(iter(report)) == "srlab_report" and report["srlab_report"] == "evaluate"
        assert {r["name"]: r["psnr_y"] for r in report["images"]} == pytest.approx(psnr, abs=0.02)
    capsys.readouterr()
    assert main(["evaluate", "--hr", str(folder), "--json", str(tmp_path)]) == 2
    assert "is a folder" in _error_line(capsys)


def test_bench_json_and_figure_refuse_inputs_and_foreign_files_before_any_work(
    hr_folder, tmp_path, capsys, monkeypatch
):
    folder, _ = hr_folder
    before = (folder / "a.png").read_bytes()
    monkeypatch.setattr(bench, "bench_quality", _never("bench quality"))
    monkeypatch.setattr(bench, "bench_perception", _never("bench perception"))
    assert bench.main(["quality", "--hr", str(folder), "--json", str(folder / "a.png")]) == 2
    assert (folder / "a.png").read_bytes() == before and "image of the input folder" in _error_line(capsys)
    photo = tmp_path / "crops.png"
    write_image(photo, data.astronaut()[:32, :32])  # a photo of the user's, not a figure srlab drew
    kept = photo.read_bytes()
    assert bench.main(["perception", "--hr", str(folder), "--figure", str(photo)]) == 2
    assert photo.read_bytes() == kept
    assert _error_line(capsys).startswith(f"error: --figure {photo} exists and is not a report srlab wrote")
    mine = tmp_path / "plan.json"
    mine.write_text("[1, 2, 3]")
    assert bench.main(["plan", "--json", str(mine)]) == 2 and mine.read_text() == "[1, 2, 3]"
    capsys.readouterr()
    out = tmp_path / "plan_t4.json"
    for _ in range(2):  # its own report, replaced by the second run
        assert bench.main(["plan", "--presets", "quick", "--json", str(out)]) == 0
        report = json.loads(out.read_text())
        assert report["srlab_report"] == "bench plan" and report["gpu"] == "t4"


def test_colab_sim_json_refuses_a_foreign_file_before_the_notebooks_run(tmp_path, capsys, monkeypatch):
    from srlab import colab_sim

    monkeypatch.setattr(colab_sim, "simulate", _never("the simulation"))
    mine = tmp_path / "checks.json"
    mine.write_text('{"mine": 1}')
    assert main(["colab-sim", "--json", str(mine)]) == 2 and mine.read_text() == '{"mine": 1}'
    assert _error_line(capsys).startswith(f"error: --json {mine} exists and is not a report srlab wrote")


def test_votes_and_study_figures_replace_only_their_own_files(tmp_path):
    votes = [
        Vote("ann", "img", "0:0:8", "A", "B", "left", time=T),
        Vote("ann", "img", "0:0:8", "B", "A", "same", time=T),
    ]
    photo = tmp_path / "holiday.png"
    write_image(photo, data.astronaut()[:32, :32])
    kept = photo.read_bytes()
    with pytest.raises(FileExistsError, match="holiday.png exists and is not a report srlab wrote"):
        write_votes(photo, votes)
    with pytest.raises(ValueError, match="holiday.png is not a vote file"):
        append_vote(photo, votes[0])
    with pytest.raises(FileExistsError, match="holiday.png exists and is not a report srlab wrote"):
        preference.plot_study(votes, path=photo)
    assert photo.read_bytes() == kept
    pooled = write_votes(tmp_path / "pooled.csv", votes)
    assert read_votes(write_votes(pooled, votes[:1])) == votes[:1]  # a vote file: replaced
    figure = tmp_path / "study.png"
    for _ in range(2):  # a figure it drew before: replaced
        preference.plot_study(votes, path=figure)
    assert figure.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- a read-only or full disk under evaluate --json


@pytest.mark.parametrize(
    "code, said",
    [
        (errno.EROFS, "could not write {out}: Read-only file system; r.json is as it was"),
        (errno.ENOSPC, "no space left on device writing {out} ("),
    ],
)
def test_evaluate_json_on_a_read_only_or_full_disk_is_one_line(hr_folder, tmp_path, capsys, monkeypatch, code, said):
    folder, _ = hr_folder
    out = tmp_path / "r.json"
    assert main(["evaluate", "--hr", str(folder), "--json", str(out)]) == 0
    old = out.read_bytes()
    capsys.readouterr()
    real = pathlib.Path.write_text

    def refused(self, *args, **kwargs):  # CI runs as root, where chmod does not deny writes
        if self.name.startswith("r.json"):  # the report, or a temporary file beside it
            raise OSError(code, {errno.EROFS: "Read-only file system", errno.ENOSPC: "No space left on device"}[code])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", refused)
    assert main(["evaluate", "--hr", str(folder), "--json", str(out)]) == 2
    captured = capsys.readouterr()
    (line,) = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert line.startswith("error: " + said.format(out=out)) and line.endswith("(--json)")
    assert "| a.png |" in captured.out  # the table was printed before the write failed
    assert out.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.json"]


# ---------------------------------------------------------------- study report: bounded in method names


def _votes_file(path, n_names: int) -> pathlib.Path:
    """A chain of votes m0 > m1 > ... : ``n_names`` method names, one vote per neighbouring pair."""
    rows = [",".join(COLUMNS)] + [f"ann,img,0:0:8,m{i},m{i + 1},left,,,{T}" for i in range(n_names - 1)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_study_report_of_20000_names_is_refused_in_bounded_memory(tmp_path):
    votes = _votes_file(tmp_path / "votes.csv", 20_000)
    assert 1.0e6 < votes.stat().st_size < 1.4e6  # the 1.2 MB file
    child = textwrap.dedent(
        f"""
        import json, resource, sys, time
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # the old code asked for 11.9 GiB
        from srlab.preference import report
        start = time.perf_counter()
        try:
            report({str(votes)!r})
            said = None
        except ValueError as err:
            said = str(err)
        status = open("/proc/self/status").read()  # VmHWM: this process's peak (ru_maxrss keeps the parent's)
        peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
        print(json.dumps({{"said": said, "peak_mib": peak, "seconds": time.perf_counter() - start}}))
        """
    )
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["said"] == (
        f"{votes}: the votes name 20000 methods, more than the {preference.MAX_METHODS} a study report compares "
        "(its pairwise matrix grows with the square): check that these are the vote files of one study"
    )
    assert result["peak_mib"] < 300 and result["seconds"] < 20


def test_study_report_output_is_bounded_at_the_cap_and_refused_above_it(tmp_path, capsys):
    at_cap = _votes_file(tmp_path / "cap.csv", preference.MAX_METHODS)
    assert main(["study", "report", str(at_cap)]) == 0
    text = capsys.readouterr().out
    assert len(text.encode()) < 64_000  # 50 methods: a 50 x 50 matrix, not megabytes
    results = text.split("Pairwise")[0]  # the results table, one row per method
    rows = {line.split(" | ")[0].lstrip("| "): line for line in results.splitlines() if line.startswith("| m")}
    # by hand: m0 took part in one comparison (with m1) and won it; m49 lost its only one
    assert " | 1 | 1 / 0 / 0 | " in rows["m0"] and " | 1 | 0 / 0 / 1 | " in rows["m49"]
    above = _votes_file(tmp_path / "above.csv", 1_400)  # 85 KB: it printed 54 MB
    assert 80e3 < above.stat().st_size < 90e3
    assert main(["study", "report", str(above)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: {above}: the votes name 1400 methods, more than the 50")


# ---------------------------------------------------------------- vote files read by their header


@pytest.mark.parametrize(
    "order",
    [
        ["rater", "image", "crop", "method_right", "method_left", "choice", "rating_left", "rating_right", "time"],
        ["time", "choice", "method_right", "rater", "method_left", "image", "crop"],  # no rating columns
    ],
)
def test_votes_are_read_by_the_header_names_in_any_order(tmp_path, order):
    """The first order (method columns swapped) credited every vote to the other method."""
    path = tmp_path / "resaved.csv"
    rows = [
        # (method_left, method_right, choice)
        ("esrgan", "bicubic", "left"),
        ("esrgan", "bicubic", "left"),
        ("bicubic", "esrgan", "right"),
        ("bicubic", "esrgan", "left"),
        ("esrgan", "bicubic", "same"),
    ]
    lines = [",".join(order)]
    for left, right, choice in rows:
        rec = dict(rater="ann", image="img", crop="0:0:8", method_left=left, method_right=right, choice=choice, time=T)
        lines.append(",".join(rec.get(c, "") for c in order))
    path.write_text("\n".join(lines) + "\n")
    votes = read_votes(path)
    # by hand: esrgan won rows 1, 2, 3; bicubic won row 4; row 5 is a tie
    assert [v.winner for v in votes] == ["esrgan", "esrgan", "esrgan", "bicubic", None]
    rates = preference.win_rates(votes)
    assert (rates["esrgan"]["wins"], rates["esrgan"]["ties"], rates["esrgan"]["losses"]) == (3, 1, 1)
    assert (rates["bicubic"]["wins"], rates["bicubic"]["ties"], rates["bicubic"]["losses"]) == (1, 1, 3)
    # a vote appended goes into the file's own order, and reads back as cast
    bob = Vote("bob", "img", "0:0:8", "bicubic", "esrgan", "right", time=T)
    append_vote(path, bob)
    cells = dict(rater="bob", image="img", crop="0:0:8", method_left="bicubic", method_right="esrgan", choice="right")
    assert path.read_text().splitlines()[-1] == ",".join({**cells, "time": T}.get(c, "") for c in order)
    assert read_votes(path)[-1] == bob
    if "rating_left" not in order:  # ratings would be dropped: refused, nothing appended
        with pytest.raises(ValueError, match=f"^{path} has no rating_left, rating_right column for this vote"):
            append_vote(path, Vote("eve", "img", "0:0:8", "bicubic", "esrgan", "left", 4, 2, time=T))
        assert read_votes(path)[-1] == bob


def test_a_header_that_lacks_a_column_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "cut.csv"
    path.write_text(f"rater,image,crop,method_left,method_right,time\nann,img,0:0:8,A,B,{T}\n")
    with pytest.raises(ValueError) as refused:
        read_votes(path)
    assert str(refused.value) == (
        f"{path}: the first row is not a header of vote columns (it lacks choice): a vote file starts with a "
        f"row naming its columns, in any order: {','.join(COLUMNS)}"
    )
    assert main(["study", "report", str(path)]) == 1
    assert capsys.readouterr().err == f"error: {refused.value}\n"


# ---------------------------------------------------------------- a | in a name stays in its cell


def _table(text: str) -> list[list[str]]:
    """The cells of the first Markdown table in ``text``, as a GFM renderer (markdown-it) reads them."""
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(text)
    rows, row = [], None
    for token in tokens:
        if token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append(token.content.replace("\\\\", "\\"))
        elif token.type == "tr_close":
            rows.append(row)
            row = None
        elif token.type == "table_close":
            break
    return rows


def test_a_pipe_in_a_method_name_stays_in_its_cell():
    votes = [vote for _ in range(2) for vote in (Vote("ann", "i", "0:0:8", "esr|gan", "bi\\", "left", time=T),)]
    votes.append(Vote("ann", "i", "0:0:8", "bi\\", "esr|gan", "same", time=T))
    table = _table(preference.results_table(votes))
    assert [len(r) for r in table] == [6, 6, 6]
    assert [r[0] for r in table[1:]] == ["esr|gan", "bi\\"] and table[1][2] == "2 / 1 / 0"
    matrix = _table(preference.pairwise_table(votes))
    assert matrix[0][1:] == ["bi\\", "esr|gan"] and matrix[2] == ["esr|gan", "0.83 (n=3)", "–"]  # (2 + .5) / 3


def test_a_pipe_in_an_image_or_set_name_stays_in_its_cell(tmp_path):
    hr = data.astronaut()[100:164, 150:214]
    write_image(tmp_path / "a|b.png", hr)
    report = evaluate_folder(tmp_path, progress=False)
    table = _table(format_table(report))
    assert table[0] == ["image", "PSNR-Y (dB)", "SSIM-Y", "PSNR-RGB (dB)"]
    assert table[1][0] == "a|b.png" and len(table[1]) == 4
    assert float(table[1][1]) == pytest.approx(report["images"][0]["psnr_y"], abs=0.005)
    grouped = _table(metrics_table({"m|1": {"Set|5": {"psnr_y": 30.0}}}, ("psnr_y",), label="x4", groups=["Set|5"]))
    assert grouped == [["x4, PSNR-Y (dB)", "Set|5"], ["m|1", "**30.00**"]]


# ---------------------------------------------------------------- an optional metric without its package


def test_lpips_without_the_package_is_refused_before_any_work(hr_folder, tmp_path, capsys, monkeypatch):
    folder, _ = hr_folder
    monkeypatch.setitem(sys.modules, "lpips", None)  # `import lpips` raises ImportError, as without the package
    for work in ("evaluate_folder", "_evaluate_upscaler"):
        monkeypatch.setattr(srlab_cli, work, _never(work))
    out = tmp_path / "r.json"
    assert main(["evaluate", "--hr", str(folder), "--metrics", "lpips", "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err == (
        "error: metric lpips needs the lpips package, which is not installed: pip install lpips; it needs "
        "internet once, to download its AlexNet backbone; or leave lpips out of the metrics\n"
    )


def test_an_lpips_backbone_that_cannot_load_is_refused_before_any_image(hr_folder, monkeypatch):
    from srlab import evaluate as evaluate_module

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    module = types.ModuleType("lpips")
    module.LPIPS = offline
    monkeypatch.setitem(sys.modules, "lpips", module)
    monkeypatch.setattr(evaluate_module, "read_image", _never("read_image"))
    with pytest.raises(ValueError, match=r"^lpips could not load its AlexNet backbone \(it needs internet once\)"):
        evaluate_folder(hr_folder[0], metrics=("psnr", "lpips"), progress=False)
