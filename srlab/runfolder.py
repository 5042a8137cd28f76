"""What a training run leaves in its folder, and when :func:`srlab.train.train` may replace it.

A run writes ``last.pt`` (to resume), ``best.pt`` (the model), ``history.jsonl`` and
``samples/step_NNNNNNN.png``; nothing else of the folder is its own. A new run would replace those
files, so :func:`check_reuse` refuses a folder holding any of them unless told what to do with
it, and :func:`remove_run` (``--overwrite``) deletes only those, and only where an srlab run
wrote them: a folder of the user's own (``--out`` pointing at the wrong place) keeps every file.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import torch

from .checkpoint import is_srlab_checkpoint
from .images import name_max
from .weights import check_zip_inflation

__all__ = ["RUN_FILES", "check_folder_name", "check_reuse", "holds_srlab_run", "remove_run", "run_outputs"]

RUN_FILES = ("last.pt", "best.pt", "history.jsonl")  # besides samples/: what a run writes in its folder
SAMPLE = re.compile(r"step_\d{7}\.png")  # Trainer.save_samples's names
HISTORY_KEYS = {"lr_g", "val_psnr", "event"}  # one of them is in every record of Trainer.log


def run_outputs(out_dir: Path) -> list[str]:
    """The names of what a run would write that ``out_dir`` already holds (``samples/`` as a whole)."""
    names = [name for name in RUN_FILES if (out_dir / name).exists()]
    samples = out_dir / "samples"
    return names + (["samples/"] if samples.exists() and not (samples.is_dir() and _empty(samples)) else [])


def _empty(folder: Path) -> bool:
    return next(folder.iterdir(), None) is None


def holds_srlab_run(out_dir: Path) -> bool:
    """Whether srlab trained in ``out_dir``: an srlab checkpoint there, its history, or its samples."""
    return (
        any(_is_srlab_checkpoint_file(out_dir / name) for name in ("last.pt", "best.pt"))
        or _is_srlab_history(out_dir / "history.jsonl")
        or bool(_samples(out_dir))
    )


def _is_srlab_checkpoint_file(path: Path) -> bool:
    """An srlab checkpoint, told from its pickle alone: the tensors are memory-mapped, never read
    (a 441 MB ESRGAN ``last.pt`` costs nothing), and a file that is not torch's plain zip fails."""
    if not path.is_file():
        return False
    try:
        check_zip_inflation(path, path.stat().st_size)  # mmap spares the tensors, not an inflated pickle
        return is_srlab_checkpoint(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
    except Exception:  # anything else: not one (damaged, another format, compressed)
        return False


def _is_srlab_history(path: Path) -> bool:
    """A history ``Trainer.log`` wrote: its first line a record with a step and srlab's keys."""
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
        record = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and type(record.get("step")) is int and bool(HISTORY_KEYS & record.keys())


def _samples(out_dir: Path) -> list[Path]:
    folder = out_dir / "samples"
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if SAMPLE.fullmatch(p.name) and p.is_file() and not p.is_symlink()]


def check_reuse(out_dir: Path, stage: str, resume: bool, overwrite: bool) -> None:
    """Refuse (FileExistsError) to start a new run in ``out_dir`` where it would replace files:

    * no flag: any of a run's files (``last.pt``, ``best.pt`` without ``last.pt``: the model of a
      run whose ``last.pt`` was deleted to save space, ``history.jsonl``, ``samples/``);
    * ``resume`` without a ``last.pt``: a ``best.pt`` (the finished model a pause would replace), or
      files srlab did not write; a run cut off before its first checkpoint (its history alone)
      starts again, as the notebooks expect;
    * ``overwrite``: files that no srlab run wrote (it deletes only an srlab run's).

    Only for a new run: continuing from ``last.pt`` replaces nothing."""
    there = run_outputs(out_dir)
    if not there:
        return
    own = holds_srlab_run(out_dir)
    if overwrite and not own:
        raise FileExistsError(_not_a_run(out_dir, there, "--overwrite deletes only what a run of srlab wrote"))
    if overwrite or (resume and own and "best.pt" not in there):  # resume: a run cut off before its first save
        return
    if "last.pt" in there:
        raise FileExistsError(
            f"{out_dir} already holds a {stage} run ({out_dir / 'last.pt'}): --resume (resume=True) "
            f"continues it, --overwrite (overwrite=True) starts over and replaces its checkpoints and history"
        )
    if "best.pt" in there:
        raise FileExistsError(_best_without_last(out_dir, resume))
    if not own:
        raise FileExistsError(_not_a_run(out_dir, there, "a new run would replace them"))
    raise FileExistsError(
        f"{out_dir} holds the history of an earlier run ({', '.join(there)}) but no checkpoint: a new run "
        f"would replace it. --overwrite (overwrite=True) starts over there, --resume (resume=True) trains that "
        f"run again from the start; or train into another --out"
    )


def _best_without_last(out_dir: Path, resume: bool) -> str:
    best, last = out_dir / "best.pt", out_dir / "last.pt"
    head = "cannot resume: " if resume else ""
    return (
        f"{head}{out_dir} holds a trained model, {best.name}, but no {last.name} (deleted to save space?), and a new "
        f"run would replace it. cp {best} {last}, then --resume (resume=True), trains on from it; another --out "
        f"with --init {best} starts a new run from its weights; --overwrite (overwrite=True) replaces it"
    )


def _not_a_run(out_dir: Path, there: list[str], why: str) -> str:
    return (
        f"{out_dir} holds {', '.join(there)} but no srlab run (no srlab checkpoint, history or sample): "
        f"{why}, so nothing was touched. Is --out the folder you meant? Train into another --out, or "
        f"move them away first"
    )


def remove_run(out_dir: Path) -> list[str]:
    """Delete the previous run's files from ``out_dir`` (``--overwrite``): its checkpoints, history
    and ``samples/step_*.png``, each by name (``samples/`` itself only once empty), and only where
    :func:`holds_srlab_run`. Returns what was removed."""
    if not holds_srlab_run(out_dir):
        return []
    removed = []
    for path in [out_dir / name for name in RUN_FILES] + _samples(out_dir):
        if path.is_file():
            path.unlink()
            removed.append(str(path.relative_to(out_dir)))
    try:
        (out_dir / "samples").rmdir()
    except OSError:  # absent, or holds files that are not a run's: they stay
        pass
    return removed


def check_folder_name(out_dir: Path, flag: str = "--out") -> None:
    """A ValueError when a name in the folder ``out_dir`` (given as ``flag``) is longer than its
    filesystem allows (ENAMETOOLONG otherwise, at the first write, or even at the first look)."""
    limit = name_max(out_dir)
    for part in out_dir.parts:
        if len(os.fsencode(part)) > limit:
            raise ValueError(
                f"{flag} {_shorten(str(out_dir))}: the folder name {_shorten(part)} is {len(os.fsencode(part))} "
                f"bytes long, and this filesystem allows {limit} ({os.strerror(errno.ENAMETOOLONG)}): "
                f"choose a shorter {flag}"
            )


def _shorten(text: str, keep: int = 40) -> str:
    return text if len(text) <= 2 * keep else f"{text[:keep]}...{text[-keep:]}"
