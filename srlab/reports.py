"""The reports srlab's commands write (``evaluate --json``, ``bench ... --json``, figures, pooled votes),
written without losing anyone's file, and the one escaping rule of every Markdown table srlab prints.

A report path is checked before any work (:func:`check_report_path`): it must not be one of the
command's inputs (``evaluate --hr in/ --json in/a.png`` replaced the HR image with the report), and
an existing file there is replaced only when it is an earlier report of srlab, recognised by its
content (:func:`is_own_report`: a JSON report starts with the key :data:`REPORT_KEY`); any other
file is refused with one line saying to pick another name or delete it first. The report is then
written to a temporary file renamed onto the path (:func:`srlab.images.atomic_write`), so a full
or read-only disk leaves the old report whole, with one line saying so
(:func:`srlab.checkpoint.write_error`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "REPORT_KEY",
    "one_line",
    "markdown_cell",
    "file_head",
    "finite_or_null",
    "is_own_report",
    "is_matplotlib_png",
    "check_report_path",
    "write_json_report",
]

REPORT_KEY = "srlab_report"  # the first key of every JSON report srlab writes; its value names the command
_OWN_JSON = re.compile(rb'\A\s*\{\s*"' + REPORT_KEY.encode() + rb'"\s*:')
_HEAD_BYTES = 4096  # how much of an existing file is read to recognise it: never the whole of a big file


def one_line(text) -> str:
    """``text`` with its runs of whitespace, line breaks included, made single spaces: names
    go into a line-oriented CSV, where a line break inside a field would tear the row."""
    return " ".join(str(text).split())


def markdown_cell(text) -> str:
    """``text`` as one cell of a Markdown table: on one line, with ``\\`` and ``|`` escaped (a ``|`` in
    a method's or a file's name started a new column; GitHub and Jupyter show ``\\|`` as ``|``)."""
    return one_line(text).replace("\\", "\\\\").replace("|", "\\|")


def finite_or_null(value):
    """``value`` with every non-finite float inside it replaced by None: strict JSON has no
    infinity (the PSNR of an exact copy) nor NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def file_head(path: str | os.PathLike) -> bytes:
    """The first 4 KiB of ``path``, enough to tell what wrote it; empty when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(_HEAD_BYTES)
    except OSError:
        return b""


def is_own_report(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a JSON report that srlab wrote: its first key is :data:`REPORT_KEY`
    (only the file's first 4 KiB are read)."""
    return bool(_OWN_JSON.match(file_head(path)))


def is_matplotlib_png(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG figure drawn by matplotlib (its ``Software`` text chunk says so):
    a figure srlab drew there before, never a photo (only the first 4 KiB are read)."""
    head = file_head(path)
    return head.startswith(b"\x89PNG") and b"tEXtSoftware\x00Matplotlib" in head


def _input_it_would_replace(path: Path, inputs: Iterable) -> str | None:
    """The input that writing ``path`` would replace: that very file, or, for an input folder, an
    image of it (one named like an image, which the next run would read as one); else None."""
    from .images import IMAGE_EXTENSIONS

    target = path.resolve()
    for given in map(Path, (i for i in inputs if i is not None)):
        if given.is_dir():
            if target.parent == given.resolve() and path.suffix.lower() in IMAGE_EXTENSIONS:
                return f"an image of the input folder {given}"
        elif target == given.resolve() or (path.exists() and given.exists() and path.samefile(given)):
            return f"the input {given}"
    return None


def check_report_path(
    path: str | os.PathLike,
    inputs: Iterable = (),
    flag: str = "--json",
    own: Callable[[Path], bool] = is_own_report,
) -> Path:
    """``path`` as a Path, once it is safe to write a report there; else one-line errors, before any work
    (``flag``: the option that named the path, said in the errors; "" from Python):

    - FileExistsError when it is one of ``inputs`` (files or folders; see :func:`_input_it_would_replace`);
    - ValueError when it is a folder;
    - FileExistsError when a file is there (not empty) that ``own`` does not recognise as an earlier
      report of srlab (another name, or delete it first).
    """
    path = Path(path)
    named = f"{flag} {path}" if flag else str(path)
    replaced = _input_it_would_replace(path, inputs)
    if replaced:
        raise FileExistsError(f"{named} is {replaced}; the report would replace it: name another file")
    if path.is_dir():
        raise ValueError(f"{named} is a folder: name a file (made, or replaced if srlab wrote it)")
    if path.exists() and not (path.is_file() and (path.stat().st_size == 0 or own(path))):  # empty: nothing lost
        raise FileExistsError(f"{named} exists and is not a report srlab wrote: give another name, or delete it first")
    return path


def write_json_report(
    path: str | os.PathLike, command: str, report: dict, inputs: Iterable = (), flag: str = "--json"
) -> Path:
    """Write ``report`` as strict JSON (``inf``/``nan`` as null) to ``path``, its first key
    ``"srlab_report": command`` (how a later run knows it may replace it), after
    :func:`check_report_path`; replaced at once. A full or read-only disk is a
    :class:`~srlab.checkpoint.WriteError` (one line) and leaves an older report as it was."""
    from .checkpoint import write_error
    from .images import atomic_write

    path = check_report_path(path, inputs, flag)
    text = json.dumps(finite_or_null({REPORT_KEY: command, **report}), indent=2, allow_nan=False)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))
    except OSError as err:
        kept = f"; {path.name} is as it was" if existed else ""
        where = f" ({flag})" if flag else ""
        raise write_error(err, path, f"{kept}: name a writable place with free space{where}") from None
    return path
