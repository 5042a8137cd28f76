"""The vote files of the blind preference study: one CSV row per comparison.

Columns (:data:`COLUMNS`), after one header line::

    rater, image, crop ("top:left:size" in pixels), method_left, method_right,
    choice (left/right/same), rating_left, rating_right (1-5 or empty), time (ISO 8601, UTC)

A file is read by the names in its header (its first row), in any order, as a spreadsheet may
save it; the rating columns may be left out, any other missing column refuses the file in one line
(read by position, swapped columns credited every vote to the other method). Votes appended to a
file go into its own column order.

:func:`append_vote` adds one row the moment a vote is cast, flushed and fsynced, so a crash
or a Colab disconnect loses at most that vote. :func:`read_votes` reads and merges any number
of such files (one per student); a malformed or truncated row is reported with its file and
line number (a :class:`BadVoteRow` warning) and skipped, so one torn line never costs a class
its other votes. Files saved again by Excel (a UTF-8 byte order mark, CRLF line ends) read the same.

A name that starts like a spreadsheet formula (``= + - @``, a tab or CR) is written with a ``'``
in front, so opening the file in Excel or Sheets never runs it (OWASP's CSV injection advice);
a name starting with ``'`` gets one more, and reading strips one: every name reads back as cast.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable
from dataclasses import astuple, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from .reports import one_line

__all__ = [
    "COLUMNS",
    "CHOICES",
    "SIMULATED_RATER",
    "Vote",
    "BadVoteRow",
    "append_vote",
    "read_votes",
    "write_votes",
    "one_line",
    "neutralise",
    "is_simulated",
]

COLUMNS = ("rater", "image", "crop", "method_left", "method_right", "choice", "rating_left", "rating_right", "time")
OPTIONAL_COLUMNS = ("rating_left", "rating_right")  # a study without ratings needs no rating columns
REQUIRED_COLUMNS = tuple(c for c in COLUMNS if c not in OPTIONAL_COLUMNS)
_FIRST_LINE_CHARS = 65_536  # how much of an existing file is read to find its header
CHOICES = ("left", "right", "same")
# The rater id of simulated votes (any id starting with it, e.g. "simulated-sharpness", counts): the
# mark travels inside the CSV, so every table and plot made from those votes can say "simulated".
SIMULATED_RATER = "simulated"


class BadVoteRow(UserWarning):
    """A CSV row that was skipped; the message names its file and line number."""


@dataclass(frozen=True)
class Vote:
    """One comparison: which of two crops (``method_left`` shown left) the rater preferred."""

    rater: str
    image: str
    crop: str  # "top:left:size" of the square shown, in pixels of the SR image
    method_left: str
    method_right: str
    choice: str  # "left", "right" or "same"
    rating_left: int | None = None  # absolute 1-5 ratings (MOS), when the study asked for them
    rating_right: int | None = None
    time: str = ""  # ISO 8601

    @property
    def winner(self) -> str | None:
        return {"left": self.method_left, "right": self.method_right}.get(self.choice)

    def ratings(self) -> list[tuple[str, int]]:
        """``(method, rating)`` for each side that was rated."""
        pairs = [(self.method_left, self.rating_left), (self.method_right, self.rating_right)]
        return [(m, r) for m, r in pairs if r is not None]

    def row(self) -> list[str]:
        return ["" if v is None else str(v) for v in astuple(self)]


def is_simulated(rater: str | Vote) -> bool:
    """Whether a program, not a person, cast a vote: its rater id starts with :data:`SIMULATED_RATER`."""
    rater = rater.rater if isinstance(rater, Vote) else rater
    return rater.lower().startswith(SIMULATED_RATER)


# What a spreadsheet takes for the start of a formula; "'" is escaped too, so reading can undo it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(text: str) -> str:
    """``text`` with a ``'`` in front when a spreadsheet would run it as a formula (it starts with
    ``= + - @``, a tab or CR) or when it starts with ``'`` itself; else ``text`` unchanged."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _unneutralise(text: str) -> str:
    return text[1:] if text.startswith("'") else text


# ---------------------------------------------------------------- writing


def append_vote(path: str | Path, vote: Vote) -> None:
    """Append one vote to ``path`` (header first if the file is new), then flush and fsync,
    so a crash or a Colab disconnect loses at most the vote being cast. A last line torn by an
    earlier crash is closed first, so it stays a single (skipped) bad row. The cells follow the
    file's own header; a file that is not a vote file is refused (ValueError), never appended to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    columns = _header(list(COLUMNS)) if new else _file_columns(path)
    if columns is None:
        raise ValueError(f"{path} is not a vote file (its first row names no vote columns): give another path")
    cells = _cells(vote)
    lost = [name for name, cell in zip(COLUMNS, cells) if cell and name not in columns[0]]
    if lost:  # a file without rating columns: the ratings would be dropped
        raise ValueError(f"{path} has no {', '.join(lost)} column for this vote: give a new file")
    with open(path, "a", newline="", encoding="utf-8") as f:
        if not new and not _ends_with_newline(path):
            f.write("\n")
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(COLUMNS)
        writer.writerow(_in_order(cells, *columns))
        f.flush()
        os.fsync(f.fileno())


def _cells(vote: Vote) -> list[str]:
    """The CSV cells of ``vote``; a vote without a time gets now's (read_votes skips a row without one)."""
    if not vote.time:
        vote = replace(vote, time=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return [neutralise(one_line(v)) for v in vote.row()]


def _in_order(cells: list[str], positions: dict[str, int], width: int) -> list[str]:
    """``cells`` (in :data:`COLUMNS` order) placed at a file's column ``positions``; other columns empty."""
    row = [""] * width
    for name, cell in zip(COLUMNS, cells):
        if name in positions:
            row[positions[name]] = cell
    return row


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def write_votes(path: str | Path, votes: Iterable[Vote]) -> Path:
    """Write ``votes`` to a new CSV (e.g. a class's pooled votes), replacing ``path`` at once: the
    rows go to a temporary file that is renamed onto it, so a cut-off write leaves the old file.
    Only a vote file is replaced: any other file at ``path`` is refused (FileExistsError) first."""
    from .images import atomic_write
    from .reports import check_report_path

    path = check_report_path(path, flag="", own=lambda p: _file_columns(p) is not None)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(_cells(vote) for vote in votes)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


# ---------------------------------------------------------------- reading


def read_votes(paths: str | Path | Iterable[str | Path]) -> list[Vote]:
    """All valid votes of one or several CSV files (one per rater, or pooled), in order.

    Merging raters is just reading their files together. Bad rows are skipped with a
    :class:`BadVoteRow` warning naming the file and line; a missing file raises FileNotFoundError,
    and a file whose first row is not a header naming the columns (any order) ValueError.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    votes = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"no vote file {path}")
        votes += _read_one(path)
    return votes


def _fields(line: str) -> list[str]:
    """The cells of one CSV line (Excel's CRLF and byte order mark dropped, also after `cat`)."""
    return next(csv.reader([line.rstrip("\r\n").lstrip("\ufeff")]))


def _header(fields: list[str]) -> tuple[dict[str, int], int] | None:
    """``({column: position}, width)`` when ``fields`` is a header row (it names every column but
    :data:`OPTIONAL_COLUMNS`, in any order, any case), else None; ValueError for a column named twice."""
    names = [f.strip().lower() for f in fields]
    if not set(REQUIRED_COLUMNS) <= set(names):
        return None
    twice = [c for c in COLUMNS if names.count(c) > 1]
    if twice:
        raise ValueError(f"the header names the column(s) {', '.join(twice)} more than once: keep one of each")
    return {n: i for i, n in enumerate(names) if n in COLUMNS}, len(names)


def _file_columns(path: Path) -> tuple[dict[str, int], int] | None:
    """The header of the vote file ``path`` (see :func:`_header`), or None when its first row is none."""
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            return _header(_fields(f.readline(_FIRST_LINE_CHARS)))
    except (OSError, ValueError, csv.Error, StopIteration):
        return None


def _not_a_header(path: Path, fields: list[str]) -> ValueError:
    names = {f.strip().lower() for f in fields}
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    return ValueError(
        f"{path}: the first row is not a header of vote columns (it lacks {', '.join(missing)}): a vote file "
        f"starts with a row naming its columns, in any order: {','.join(COLUMNS)}"
    )


def _read_one(path: Path) -> list[Vote]:
    votes, columns = [], None  # columns: the header's (positions, width); the first row must be one
    # line by line, so a torn or unbalanced quote cannot swallow the rows after it
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip("\r\n\ufeff \t"):  # blank
                continue
            try:
                fields = _fields(line)
                header = _header(fields)  # the first row, or a header again (after `cat a.csv b.csv`)
                if header is None and columns is not None:
                    votes.append(_parse_row(fields, *columns))
            except (ValueError, csv.Error) as err:
                if columns is None:  # the header itself is unreadable
                    raise ValueError(f"{path}:{lineno}: {err}") from None
                text = line.rstrip("\r\n")[:80]
                warnings.warn(f"{path}:{lineno}: skipped a bad row: {err}: {text!r}", BadVoteRow, stacklevel=3)
                continue
            if header is not None:
                columns = header
            elif columns is None:
                raise _not_a_header(path, fields)
    return votes


def _parse_row(fields: list[str], positions: dict[str, int], width: int) -> Vote:
    """A Vote from one CSV row whose columns sit at ``positions`` (from the header), or ValueError
    saying what is wrong with it."""
    if len(fields) != width:
        raise ValueError(f"expected {width} fields, found {len(fields)} (truncated row?)")
    rec = dict.fromkeys(COLUMNS, "") | {c: _unneutralise(fields[i].strip()) for c, i in positions.items()}
    for key in ("rater", "image", "method_left", "method_right"):
        if not rec[key]:
            raise ValueError(f"empty {key}")
    if rec["method_left"] == rec["method_right"]:
        raise ValueError(f"a method compared with itself ({rec['method_left']})")
    if rec["choice"] not in CHOICES:
        raise ValueError(f"choice {rec['choice']!r} is not one of {', '.join(CHOICES)}")
    parts = rec["crop"].split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"crop {rec['crop']!r} is not top:left:size")
    ratings = [_rating(rec, key) for key in ("rating_left", "rating_right")]
    try:
        datetime.fromisoformat(rec["time"])
    except ValueError:
        raise ValueError(f"time {rec['time']!r} is not an ISO 8601 date-time (truncated row?)") from None
    return Vote(
        rec["rater"],
        rec["image"],
        rec["crop"],
        rec["method_left"],
        rec["method_right"],
        rec["choice"],
        ratings[0],
        ratings[1],
        rec["time"],
    )


def _rating(rec: dict[str, str], key: str) -> int | None:
    if rec[key] and rec[key] not in {"1", "2", "3", "4", "5"}:
        raise ValueError(f"{key} {rec[key]!r} is not an integer from 1 to 5")
    return int(rec[key]) if rec[key] else None
