"""The command line refuses bad input in one line, and the study's files cannot carry formulas.

Formula injection (OWASP): a CSV cell that starts with = + - @ (or a tab / CR) runs as a formula
in a spreadsheet; srlab writes such names with a ``'`` in front and reads them back unchanged.
"""

import argparse
import math

import numpy as np
import pytest
import torch
from test_votes import T, vote

from srlab import notebook as nb
from srlab import preference
from srlab.cli import _parser, main
from srlab.images import write_image
from srlab.models import RRDBNet
from srlab.votes import COLUMNS, Vote, append_vote, neutralise, read_votes, write_votes

EVIL = '=HYPERLINK("http://x","y")'


# ---------------------------------------------------------------- (4) formula injection


def test_formula_names_are_neutralised_in_the_votes_file_and_read_back_unchanged(tmp_path):
    path = tmp_path / "votes.csv"
    evil = Vote(EVIL, "+img", "0:0:8", "-A", "@B", "left", 3, None, T)
    quoted = Vote("'ann", "img", "0:0:8", "A", "B", "right", None, None, T)  # a quote of its own survives
    append_vote(path, evil)
    append_vote(path, quoted)
    append_vote(path, vote("ESRGAN", "bicubic", "same", rater="ann", image="baby.png"))
    lines = path.read_text().splitlines()
    assert lines[1] == f'"\'=HYPERLINK(""http://x"",""y"")",\'+img,0:0:8,\'-A,\'@B,left,3,,{T}'
    assert lines[2] == f"''ann,img,0:0:8,A,B,right,,,{T}"
    assert lines[3] == f"ann,baby.png,0:0:8,ESRGAN,bicubic,same,,,{T}"  # normal names: verbatim
    assert read_votes(path) == [evil, quoted, vote("ESRGAN", "bicubic", "same", rater="ann", image="baby.png")]
    assert read_votes(write_votes(tmp_path / "pooled.csv", read_votes(path))) == read_votes(path)


def test_a_study_with_formula_names_writes_them_neutralised_and_resumes(tmp_path):
    from srlab import study

    rng = np.random.default_rng(0)
    images = {"=img": {m: rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for m in ("-A", "@B", "C")}}
    path = tmp_path / "votes.csv"
    first = study.BlindStudy(images, path, rater="=ann", crop=16, seed=0)
    first.buttons["left"].click()
    first.buttons["right"].click()
    fields = path.read_text().splitlines()[1].split(",")
    assert fields[0] == "'=ann" and fields[1] == "'=img" and {fields[3], fields[4]} <= {"'-A", "'@B", "C"}
    again = study.BlindStudy(images, path, rater="=ann", crop=16, seed=1)
    assert len(again.trials) == 1 and again.progress.value == "comparison 3 of 3"


@pytest.mark.parametrize("name", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'x"])
def test_every_dangerous_first_character_gets_a_quote(name):
    assert neutralise(name) == "'" + name
    assert neutralise("ESRGAN") == "ESRGAN" and neutralise("a=b") == "a=b" and neutralise("") == ""


def test_report_tables_neutralise_rater_and_method_names(tmp_path):
    votes = [
        vote("=cmd|' /C calc'!A0", "@B", "left", rater="+rater"),
        vote("@B", "=cmd|' /C calc'!A0", "right", rater="+rater"),
        vote("-C", "@B", "right", rater="+rater"),
    ]
    table = preference.results_table(votes)
    rows = [line.split(" | ")[0] for line in table.splitlines()[2:]]
    assert sorted(rows) == ["| '-C", "| '=cmd\\|' /C calc'!A0", "| '@B"]  # the | escaped: it stays in its cell
    matrix = preference.pairwise_table(votes)
    assert matrix.splitlines()[0].endswith("| '-C | '=cmd\\|' /C calc'!A0 | '@B |")
    assert {line.split(" | ")[0] for line in matrix.splitlines()[2:]} == {"| '-C", "| '=cmd\\|' /C calc'!A0", "| '@B"}
    path = write_votes(tmp_path / "v.csv", votes)
    text = preference.report([path])
    assert "1 rater(s) ('+rater)" in text and "| =" not in text and "| @" not in text and "| -C" not in text


# ---------------------------------------------------------------- (5) badges and --suffix


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A fake source checkout in tmp_path (pyproject, srlab/, notebooks/) that srlab thinks it runs from."""
    old = nb.REPO_URL
    (tmp_path / "srlab").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "srlab"\n')
    (tmp_path / "srlab" / "notebook.py").write_text(f'REPO_URL = "{old}"\n')
    (tmp_path / "notebooks" / "01_data_prep.py").write_text(f"pip install git+{old}\n")
    monkeypatch.setattr(nb, "_PACKAGE", tmp_path / "srlab", raising=False)
    monkeypatch.chdir(tmp_path / "notebooks")  # never the real checkout, whatever the code looks at
    return tmp_path


@pytest.mark.parametrize(
    "repo",
    [
        'https://github.com/a/b"; import os; os.system("x"); "',
        "https://github.com/a/b/c",
        "https://gitlab.com/a/b",
        "http://github.com/a/b",
        "https://github.com/a",
        "https://github.com/../b",
        "a/b\nimport os",
        "",
    ],
)
def test_badges_refuses_anything_but_a_github_owner_repo(checkout, capsys, repo):
    before = (checkout / "srlab" / "notebook.py").read_text()
    assert main(["badges", "--repo", repo]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --repo ") and "https://github.com/OWNER/REPO" in err and len(err.splitlines()) == 1
    assert (checkout / "srlab" / "notebook.py").read_text() == before


@pytest.mark.parametrize("repo", ["https://github.com/me/my-fork.git", "https://github.com/me/my-fork/", "me/my-fork"])
def test_badges_rewrites_the_checkout_srlab_runs_from(checkout, capsys, repo):
    assert main(["badges", "--repo", repo]) == 0
    assert (checkout / "srlab" / "notebook.py").read_text() == 'REPO_URL = "https://github.com/me/my-fork"\n'
    assert (checkout / "notebooks" / "01_data_prep.py").read_text() == "pip install git+https://github.com/me/my-fork\n"
    assert "rewrote the repository URL in 2 files" in capsys.readouterr().out


def test_badges_refuses_an_installed_package(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site-packages"
    (site / "srlab").mkdir(parents=True)
    (site / "srlab" / "notebook.py").write_text(f'REPO_URL = "{nb.REPO_URL}"\n')
    monkeypatch.setattr(nb, "_PACKAGE", site / "srlab", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["badges", "--repo", "https://github.com/me/fork"]) == 2
    err = capsys.readouterr().err
    assert "not a source checkout" in err and str(site / "srlab") in err and "git clone" in err
    assert (site / "srlab" / "notebook.py").read_text() == f'REPO_URL = "{nb.REPO_URL}"\n'


@pytest.fixture
def weights(tmp_path):
    torch.save({"params": RRDBNet(num_feat=8, num_block=1).state_dict()}, tmp_path / "w.pth")
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    return tmp_path / "w.pth"


@pytest.mark.parametrize("suffix", ["/../x", "/x", "\\x", "..", "_x/.."])
def test_upscale_refuses_a_suffix_that_leaves_the_output_folder(tmp_path, weights, capsys, suffix):
    argv = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o" / "p"), "--weights", str(weights)]
    assert main([*argv, "--suffix", suffix]) == 2
    assert capsys.readouterr().err.startswith(f"error: --suffix {suffix!r}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "w.pth"]  # nothing written anywhere
    assert main([*argv, "--suffix", "_x4"]) == 0
    assert (tmp_path / "o" / "p" / "a_x4.png").is_file()


# ---------------------------------------------------------------- (18) one-line errors, exit 2


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def _upscale_argv(tmp_path, weights, *extra) -> list[str]:
    """``upscale tmp_path/a.png -o tmp_path/o --weights WEIGHTS`` and ``extra``."""
    return ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--weights", str(weights), *extra]


@pytest.mark.parametrize(
    ("device", "words"),
    [
        ("tpu", ["--device 'tpu'", "cpu"]),
        ("cuda:99", ["--device 'cuda:99'", "--device cpu"]),
        ("nonsense:x", ["--device"]),
    ],
)
def test_train_and_upscale_refuse_a_device_that_is_not_there(tmp_path, weights, capsys, device, words):
    assert main(["train", "srresnet", "--preset", "smoke", "--out", str(tmp_path / "run"), "--device", device]) == 2
    _one_line_error(capsys, *words)
    assert main(_upscale_argv(tmp_path, weights, "--device", device)) == 2
    _one_line_error(capsys, *words)
    assert not (tmp_path / "run").exists() and not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: --device cuda is valid here")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, weights, capsys):
    assert main(["train", "srresnet", "--preset", "smoke", "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    _one_line_error(capsys, "--device 'cuda'", "no CUDA", "--device cpu")
    assert main(_upscale_argv(tmp_path, weights, "--device", "cuda")) == 2
    _one_line_error(capsys, "--device 'cuda'", "no CUDA")


@pytest.mark.parametrize(
    ("flag", "value"), [("--steps", "0"), ("--steps", "-3"), ("--batch-size", "0"), ("--batch-size", "-1")]
)
def test_train_refuses_steps_and_batch_size_under_one(tmp_path, capsys, flag, value):
    assert main(["train", "srresnet", "--preset", "smoke", "--out", str(tmp_path / "run"), flag, value]) == 2
    _one_line_error(capsys, f"{flag} {value}", "at least 1")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting", ["steps=0", "batch_size=0", "val_every=0", "hr_size=-4"])
def test_train_refuses_counts_under_one_given_with_set(tmp_path, capsys, setting):
    """--set goes around the flags' own checks; the config refuses the count itself."""
    argv = ["train", "srresnet", "--preset", "smoke", "--out", str(tmp_path / "run"), "--set", setting]
    assert main(argv) == 2
    name, value = setting.split("=")
    _one_line_error(capsys, f"{name}={value}: must be at least 1")
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_scale_zero_instead_of_using_four(tmp_path, capsys):
    (tmp_path / "hr").mkdir()
    assert main(["evaluate", "--hr", str(tmp_path / "hr"), "--scale", "0"]) == 2
    _one_line_error(capsys, "--scale 0", "at least 1")


@pytest.mark.parametrize("flag", ["--tile", "--tile-overlap"])
def test_upscale_refuses_a_negative_tile(tmp_path, weights, capsys, flag):
    argv = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--weights", str(weights)]
    assert main([*argv, flag, "-8"]) == 2
    _one_line_error(capsys, f"{flag} -8", "at least 0")
    assert not (tmp_path / "o").exists()


def test_output_folders_that_are_files_are_refused(tmp_path, weights, capsys):
    blocker = tmp_path / "taken"
    blocker.write_bytes(b"keep")
    assert main(["download", "set5", "--to", str(blocker)]) == 2
    _one_line_error(capsys, f"--to {blocker}", "is a file")
    assert main(["download", "set5", "--to", str(blocker / "sub")]) == 2  # a file on the way there
    _one_line_error(capsys, f"--to {blocker / 'sub'}", f"{blocker} is a file")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(blocker), "--weights", str(weights)]) == 2
    _one_line_error(capsys, f"-o/--out {blocker}", "is a file")
    assert main(["train", "srresnet", "--preset", "smoke", "--out", str(blocker)]) == 2
    _one_line_error(capsys, f"--out {blocker}", "is a file")
    assert main(["demo", "--out", str(blocker)]) == 2
    _one_line_error(capsys, f"--out {blocker}", "is a file")
    assert blocker.read_bytes() == b"keep"


# ---------------------------------------------------------------- (19) help, Excel, --prior


def _actions(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, (*path, name))
        else:
            yield path, action


def test_every_option_and_argument_has_help():
    missing = [(" ".join(path), a.dest) for path, a in _actions(_parser()) if not a.help]
    assert missing == []
    scale = next(a for path, a in _actions(_parser()) if path == ("demo",) and a.dest == "scale")
    assert "factor" in scale.help


def test_votes_saved_by_excel_with_a_bom_and_crlf_are_read(tmp_path, recwarn):
    rows = [",".join(COLUMNS), f"ann,img,0:0:8,A,B,left,,,{T}", f"ann,img,0:0:8,B,A,same,4,2,{T}"]
    path = tmp_path / "excel.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-8-sig"))
    assert read_votes(path) == [vote("A", "B", "left", rater="ann"), vote("B", "A", "same", rater="ann", rl=4, rr=2)]
    assert not recwarn.list  # the header is no "bad row"
    append_vote(path, vote("A", "B", "right", rater="ann"))  # a student keeps voting into the Excel copy
    assert [v.choice for v in read_votes(path)] == ["left", "same", "right"] and not recwarn.list


@pytest.mark.parametrize("prior", ["0", "-1", "nan", "inf", "-inf"])
def test_report_refuses_a_prior_that_is_not_positive_and_finite(tmp_path, capsys, prior):
    path = write_votes(tmp_path / "v.csv", [vote("A", "B", "left"), vote("B", "A", "left")])
    assert main(["study", "report", str(path), f"--prior={prior}"]) == 2  # = lets argparse take "-inf"
    _one_line_error(capsys, f"--prior {prior}", "positive")
    assert main(["study", "report", str(path), "--prior", "0.5"]) == 0


@pytest.mark.parametrize("prior", [-1.0, math.nan, math.inf])
def test_bradley_terry_refuses_a_negative_or_non_finite_prior(prior):
    with pytest.raises(ValueError, match="prior"):
        preference.bradley_terry([vote("A", "B", "left"), vote("B", "A", "left")], prior=prior)


def test_upscale_refuses_a_tile_under_eight_in_its_own_words(tmp_path, weights, capsys):
    """1-7 passed the CLI check and failed later, with a message about the Python API's None."""
    argv = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--weights", str(weights)]
    assert main([*argv, "--tile", "4"]) == 2
    _one_line_error(capsys, "--tile 4: must be 0 (the whole image at once) or at least 8 pixels")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("flag", "setting"), [("--steps", "steps=3"), ("--batch-size", "batch_size=2")])
def test_train_refuses_a_flag_and_a_set_of_the_same_field(tmp_path, capsys, flag, setting):
    """Both used to reach make_config as the same keyword twice: a TypeError traceback."""
    argv = ["train", "srresnet", "--preset", "smoke", "--out", str(tmp_path / "run"), flag, "2", "--set", setting]
    assert main(argv) == 2
    name = setting.split("=")[0]
    _one_line_error(capsys, f"--set {name}=... and a flag both set {name}: give one of them")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("setting", "now"), [("milestones=none", "()"), ("steps=none", "6"), ("lr_gamma=none", "0.5")])
def test_train_refuses_none_for_a_field_that_cannot_be_none(tmp_path, capsys, setting, now):
    """milestones=none was accepted, then failed inside the first training step."""
    argv = ["train", "srresnet", "--preset", "smoke", "--out", str(tmp_path / "run"), "--set", setting]
    assert main(argv) == 2
    name = setting.split("=")[0]
    _one_line_error(capsys, f"--set {setting}: {name} cannot be none (now {now})")
    assert not (tmp_path / "run").exists()
