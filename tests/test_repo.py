"""The repository's promises: README commands, CI running them, pins, notebook hygiene."""

import re

import pytest
import tomllib
from conftest import REPO

README = (REPO / "README.md").read_text()


def readme_commands() -> list[str]:
    """Shell lines of the README's first code block (the fresh-machine commands)."""
    block = re.search(r"```(?:bash|sh)\n(.*?)```", README, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_the_two_fresh_machine_commands():
    main_job, tests = readme_commands()
    for cmd in (main_job, tests):
        assert cmd.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt")
    assert main_job.endswith("python -m srlab run-notebooks")
    assert tests.endswith("python -m pytest && SRLAB_PRESET=smoke python -m pytest --nbmake notebooks/")
    # "opens with": the block comes before the first section heading
    assert README.index("```") < README.index("\n## ")


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()
    assert "set -euo pipefail" in ci  # a failing test fails CI


# .ci/run's steps in order; "colab-" ones run in the Colab-versions venv (requirements-colab.txt)
CI_STEPS = ["pip", "pytest", "nbmake", "ruff", "ruff", "colab-pip", "colab-pytest", "colab-nbmake"]


@pytest.mark.parametrize("failing", ["pip", "pytest", "nbmake", "ruff", "python3.13", *CI_STEPS[5:], None])
def test_ci_fails_when_any_step_fails(tmp_path, failing):
    """.ci/run with stand-ins for python3, python3.13, pip, python and ruff on PATH, one of them failing
    (python3.13: missing): CI must exit non-zero. (`set -e` alone let a failing `python -m pytest`
    inside the && line through.)"""
    import os
    import shutil
    import subprocess

    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ran = tmp_path / "ran.txt"
    log = f'step="${{STANDIN_VENV:-}}$step"\necho "$step" >> {ran}\n[ "$step" != "{failing}" ]'
    stand_ins = {
        "python3": "mkdir -p .venv/bin && touch .venv/bin/activate",
        # the Colab venv's activate marks the steps run in it
        "python3.13": '[ "$1" != -m ] || { mkdir -p "$3/bin" && echo "export STANDIN_VENV=colab-" >$3/bin/activate; }',
        "pip": f"step=pip\n{log}",
        "chromium": "true",
        "python": f'case "$*" in *--nbmake*) step=nbmake;; *pytest*) step=pytest;; *) step=other;; esac\n{log}',
        "ruff": f"step=ruff\n{log}",
    }
    if failing == "python3.13":
        del stand_ins["python3.13"]
    for name, body in stand_ins.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    # no pyenv: the stand-in is the only Python 3.13 that .ci/run can find
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "PYENV_ROOT": str(tmp_path / "no-pyenv")}
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True)
    assert (result.returncode != 0) == (failing is not None), result.stderr
    # nothing runs after the failing step (ruff: `ruff check`, the first of the two)
    done = {"ruff": 4, "python3.13": 5, None: len(CI_STEPS)}.get(failing) or CI_STEPS.index(failing) + 1
    assert ran.read_text().split() == CI_STEPS[:done]
    if failing is None:
        assert "ci: the Colab-versions step took" in result.stdout


def test_requirements_pin_local_torch_but_package_does_not():
    req = (REPO / "requirements.txt").read_text().splitlines()
    assert "torch==2.14.1" in req and "torchvision==0.29.1" in req
    names = {re.split("[=<>]", line)[0].lower() for line in req if line and not line.startswith(("#", "-"))}
    for needed in (
        "matplotlib",
        "ipywidgets",
        "scikit-image",
        "opencv-python",
        "wandb",
        "nbmake",
        "jupytext",
        "ipykernel",
        "tqdm",
        "pytest",
        "spandrel",
    ):
        assert needed in names, needed
    assert "opencv-python-headless" not in names  # both at once break cv2
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_dep = next(d for d in deps if d.startswith("torch") and not d.startswith("torchvision"))
    assert "==" not in torch_dep and "<" not in torch_dep  # Colab's torch must satisfy it


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_all_six_course_notebooks_exist():
    from srlab.notebook import NOTEBOOKS as COURSE

    assert [p.stem for p in NOTEBOOKS] == list(COURSE)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_paired_in_sync_and_stripped(notebook):
    jupytext = pytest.importorskip("jupytext")
    script = notebook.with_suffix(".py")
    assert script.exists(), f"{notebook.name} has no jupytext py:percent pair"
    nb, py = jupytext.read(notebook), jupytext.read(script)
    as_pairs = lambda n: [(c.cell_type, c.source.strip()) for c in n.cells]
    assert as_pairs(nb) == as_pairs(py), f"{notebook.name} and {script.name} differ: run jupytext --sync"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{notebook.name} has outputs"
    from srlab.notebook import colab_badge

    assert colab_badge(notebook.stem) in nb.cells[0].source  # the badge opens this very notebook
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)  # papermill/nbmake parameters


def test_ruff_finds_nothing_to_fix():
    """The formatter and linter configured in pyproject.toml (run by .ci/run too)."""
    import shutil
    import subprocess

    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (requirements.txt pins it)")
    for cmd in ([ruff, "check", "--quiet"], [ruff, "format", "--check", "--quiet"]):
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stage", ["srresnet", "srgan", "rrdb", "esrgan"])
def test_readme_preset_dumps_are_what_the_command_prints(stage):
    """The README's `python -m srlab presets STAGE` blocks went stale once (no quick column, old step
    counts): they must be the command's output for the presets as they are now."""
    from srlab.presets import presets_table

    head = f"<details><summary><code>python -m srlab presets {stage}</code></summary>\n\n"
    start = README.index(head) + len(head)
    assert README[start : README.index("\n\n</details>", start)] == presets_table(stage).strip()


def test_every_training_call_in_a_notebook_resumes_so_a_rerun_does_not_fail():
    """train() refuses a run folder that holds a run unless told to resume or overwrite: a
    notebook run twice (Colab: after a disconnect, or just again) must say which."""
    import ast

    calls = []
    for path in sorted((REPO / "notebooks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "train":
                calls.append((path.name, node.lineno, {k.arg for k in node.keywords}))
    assert len(calls) >= 7  # 02: SRCNN, autoencoder; 03; 04: SRGAN, collapse; 05: RRDB, ESRGAN
    assert [(name, line) for name, line, keywords in calls if "resume" not in keywords] == []
