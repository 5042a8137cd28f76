"""A blind preference study: measure what PSNR cannot.

PSNR ranks the GAN models below bicubic, yet people prefer ESRGAN. This module lets a class
measure that preference:

- :class:`BlindStudy`, a widget of core ipywidgets (images, buttons, a label: keyboard-free,
  works in Colab). It shows the same crop from two methods side by side, method names hidden,
  in random order with balanced sides; the rater clicks the better one (or "same"), optionally
  after rating each crop 1-5 (the SRGAN paper's Mean Opinion Score protocol).
- Every vote is appended to a CSV as it is cast (flushed and fsynced: a crash loses at most the
  current vote). One row per comparison, columns :data:`COLUMNS`:
  ``rater, image, crop ("top:left:size" in pixels), method_left, method_right,
  choice (left/right/same), rating_left, rating_right (1-5 or empty), time (ISO 8601, UTC)``.
- :func:`read_votes` reads and merges any number of such files (one per student); a malformed
  or truncated row is reported with its file and line number (:class:`BadVoteRow` warning) and
  skipped.
- Statistics: :func:`win_rates` with Wilson 95 % intervals, :func:`bradley_terry` scores from
  the pairwise votes, :func:`mean_opinion_scores` with standard errors; :func:`results_table`
  puts them next to PSNR/SSIM, :func:`plot_study` draws them.
- ``python -m srlab study report a.csv b.csv ...`` (:func:`main`) prints the same table.

Convention for ties ("same"): a tie counts as half a win for each side, in the win rates and
in the Bradley-Terry fit alike.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import warnings
from collections import Counter
from dataclasses import astuple, dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np

__all__ = ["COLUMNS", "CHOICES", "Vote", "BadVoteRow", "append_vote", "read_votes", "write_votes",
           "wilson_interval", "win_rates", "pairwise_wins", "bradley_terry", "mean_opinion_scores", "summarize",
           "results_table", "pairwise_table", "plot_study", "balanced_schedule", "Trial", "BlindStudy",
           "simulate_votes", "main"]

COLUMNS = ("rater", "image", "crop", "method_left", "method_right", "choice", "rating_left", "rating_right", "time")
CHOICES = ("left", "right", "same")
Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


class BadVoteRow(UserWarning):
    """A CSV row that was skipped; the message names its file and line number."""


# ---------------------------------------------------------------- votes and their CSV


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


def _parse_row(fields: list[str]) -> Vote:
    """A Vote from one CSV row, or ValueError saying what is wrong with it."""
    if len(fields) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} fields, found {len(fields)} (truncated row?)")
    rec = dict(zip(COLUMNS, (f.strip() for f in fields)))
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
    ratings = []
    for key in ("rating_left", "rating_right"):
        if rec[key] and rec[key] not in {"1", "2", "3", "4", "5"}:
            raise ValueError(f"{key} {rec[key]!r} is not an integer from 1 to 5")
        ratings.append(int(rec[key]) if rec[key] else None)
    try:
        datetime.fromisoformat(rec["time"])
    except ValueError:
        raise ValueError(f"time {rec['time']!r} is not an ISO 8601 date-time (truncated row?)") from None
    return Vote(rec["rater"], rec["image"], rec["crop"], rec["method_left"], rec["method_right"], rec["choice"],
                ratings[0], ratings[1], rec["time"])


def _one_line(text: str) -> str:
    """Names go into a line-oriented CSV: no line breaks inside a field."""
    return " ".join(str(text).split())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def append_vote(path: str | Path, vote: Vote) -> None:
    """Append one vote to ``path`` (header first if the file is new), then flush and fsync,
    so a crash or a Colab disconnect loses at most the vote being cast. A last line torn by an
    earlier crash is closed first, so it stays a single (skipped) bad row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        if not new and not _ends_with_newline(path):
            f.write("\n")
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(COLUMNS)
        writer.writerow([_one_line(v) for v in vote.row()])
        f.flush()
        os.fsync(f.fileno())


def write_votes(path: str | Path, votes: Iterable[Vote]) -> Path:
    """Write ``votes`` to a new CSV (e.g. a class's pooled votes), replacing ``path``."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for vote in votes:
        append_vote(path, vote)
    return path


def _read_one(path: Path) -> list[Vote]:
    votes, header = [], ",".join(COLUMNS)
    # line by line, so a torn or unbalanced quote cannot swallow the rows after it
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.strip() == header:  # blank, or the header (again, after `cat`)
                continue
            try:
                votes.append(_parse_row(next(csv.reader([line]))))
            except (ValueError, csv.Error) as err:
                warnings.warn(f"{path}:{lineno}: skipped a bad row: {err}: {line[:80]!r}", BadVoteRow, stacklevel=3)
    return votes


def read_votes(paths: str | Path | Iterable[str | Path]) -> list[Vote]:
    """All valid votes of one or several CSV files (one per rater, or pooled), in order.

    Merging raters is just reading their files together. Bad rows are skipped with a
    :class:`BadVoteRow` warning naming the file and line; a missing file raises FileNotFoundError.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    votes = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"no vote file {path}")
        votes += _read_one(path)
    return votes


# ---------------------------------------------------------------- statistics


def _methods(votes: Iterable[Vote]) -> list[str]:
    return sorted({m for v in votes for m in (v.method_left, v.method_right)})


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n`` (95 % by default).

    Unlike the textbook ``p ± z sqrt(p(1-p)/n)`` it stays inside [0, 1] and is not empty at
    0/n or n/n, which matters for the handful of votes a class collects. ``(0, 1)`` for n = 0.
    """
    if n <= 0:
        return 0.0, 1.0
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def win_rates(votes: Iterable[Vote], z: float = Z95) -> dict[str, dict]:
    """Per method: ``wins, ties, losses, n`` (comparisons it took part in), ``rate`` =
    (wins + ties/2) / n and its Wilson interval ``low, high``."""
    counts = {}
    for v in votes:
        for side, method in (("left", v.method_left), ("right", v.method_right)):
            c = counts.setdefault(method, Counter())
            c["ties" if v.choice == "same" else "wins" if v.choice == side else "losses"] += 1
    out = {}
    for method in sorted(counts):
        c = counts[method]
        n = c["wins"] + c["ties"] + c["losses"]
        score = c["wins"] + c["ties"] / 2
        low, high = wilson_interval(score, n, z)
        out[method] = {"wins": c["wins"], "ties": c["ties"], "losses": c["losses"], "n": n,
                       "rate": score / n, "low": low, "high": high}
    return out


def pairwise_wins(votes: Iterable[Vote], methods: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """``(methods, W)`` with ``W[i, j]`` = times method i was preferred over j, a tie adding
    half to each of ``W[i, j]`` and ``W[j, i]``."""
    votes = list(votes)
    methods = methods or _methods(votes)
    index = {m: i for i, m in enumerate(methods)}
    wins = np.zeros((len(methods), len(methods)))
    for v in votes:
        a, b = index[v.method_left], index[v.method_right]
        if v.choice == "same":
            wins[a, b] += 0.5
            wins[b, a] += 0.5
        else:
            wins[(a, b) if v.choice == "left" else (b, a)] += 1
    return methods, wins


def _strongly_connected(wins: np.ndarray) -> bool:
    """Every method beat, directly or through others, every other one (Hunter's condition for
    a finite Bradley-Terry maximum-likelihood estimate)."""
    k = len(wins)
    for graph in (wins > 0, (wins > 0).T):
        seen, todo = {0}, [0]
        while todo:
            i = todo.pop()
            for j in np.flatnonzero(graph[i]):
                if j not in seen:
                    seen.add(int(j))
                    todo.append(int(j))
        if len(seen) < k:
            return False
    return True


def bradley_terry(votes: Iterable[Vote], prior: float = 1.0, tol: float = 1e-10,
                  max_iter: int = 100_000) -> dict[str, float]:
    """Bradley-Terry scores: ``P(i preferred over j) = 1 / (1 + exp(s_j - s_i))``.

    Fitted by maximum likelihood with the MM algorithm of Hunter (2004):
    ``p_i <- W_i / sum_j n_ij / (p_i + p_j)``, with ``W_i`` the wins of i (a tie = half a win
    each way) and ``n_ij`` the comparisons of i and j. Returns ``s_i = log p_i``, centred to
    mean 0.

    ``prior``: every pair of methods starts with ``prior`` virtual tied comparisons (half a
    win each way), a weak pull towards "all equal". Without it a method never preferred would
    get ``s = -inf`` and one always preferred ``+inf`` (the likelihood has no maximum); with it
    the fit is finite and the pull fades as real votes accumulate. ``prior=0`` gives the plain
    maximum-likelihood estimate and raises ValueError when that does not exist.
    """
    methods, wins = pairwise_wins(votes)
    if len(methods) < 2:
        raise ValueError(f"Bradley-Terry needs votes on at least two methods, got {methods}")
    wins = wins + prior / 2 * (1 - np.eye(len(methods)))
    if prior <= 0 and not _strongly_connected(wins):
        raise ValueError("no finite Bradley-Terry fit: some method never beat the others (directly or "
                         "through others); use prior > 0")
    games, total = wins + wins.T, wins.sum(axis=1)
    p = np.ones(len(methods))
    for _ in range(max_iter):
        new = total / (games / (p[:, None] + p[None, :])).sum(axis=1)
        new /= np.exp(np.log(new).mean())
        done = np.max(np.abs(np.log(new) - np.log(p))) < tol
        p = new
        if done:
            break
    else:
        warnings.warn(f"Bradley-Terry did not converge in {max_iter} iterations", RuntimeWarning, stacklevel=2)
    return dict(zip(methods, np.log(p).tolist()))


def mean_opinion_scores(votes: Iterable[Vote]) -> dict[str, dict]:
    """Per rated method: ``mos`` (mean 1-5 rating), ``se`` (standard error: sample standard
    deviation / sqrt(n); nan for a single rating) and ``n``."""
    ratings = {}
    for v in votes:
        for method, r in v.ratings():
            ratings.setdefault(method, []).append(r)
    out = {}
    for method in sorted(ratings):
        r = np.asarray(ratings[method], float)
        se = float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("nan")
        out[method] = {"mos": float(r.mean()), "se": se, "n": len(r)}
    return out


def summarize(votes: Iterable[Vote], prior: float = 1.0) -> list[dict]:
    """One dict per method, best Bradley-Terry score first: the win-rate fields, ``bt``,
    ``rank`` (1 = preferred; equal scores at two decimals share a rank) and ``mos``/``se``/``mos_n``
    when ratings exist."""
    votes = list(votes)
    rates, bt, mos = win_rates(votes), bradley_terry(votes, prior=prior), mean_opinion_scores(votes)
    rows = [{"method": m, **rates[m], "bt": bt[m]} for m in sorted(bt, key=bt.get, reverse=True)]
    ranks = _ranks(bt, decimals=2)
    for row in rows:
        row["rank"] = ranks[row["method"]]
        if row["method"] in mos:
            m = mos[row["method"]]
            row.update(mos=m["mos"], se=m["se"], mos_n=m["n"])
    return rows


def _ranks(values: dict[str, float], decimals: int) -> dict[str, int]:
    """1 + the number of strictly higher values at the precision shown (equal values share a rank)."""
    shown = {m: round(v, decimals) if math.isfinite(v) else v for m, v in values.items()}
    return {m: 1 + sum(other > v for other in shown.values()) for m, v in shown.items()}


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None else "∞" if value == math.inf else fmt.format(value)


def results_table(votes: Iterable[Vote], metrics: dict[str, dict] | None = None, prior: float = 1.0) -> str:
    """Markdown table, best-liked method first: comparisons, won/tied/lost, win rate with its
    95 % Wilson interval, Bradley-Terry score and rank, MOS ± standard error (when rated) and,
    given ``metrics`` (``method -> {"psnr_y", "ssim_y"}``), PSNR-Y, SSIM-Y and the PSNR rank,
    so the rows where people and PSNR disagree stand out."""
    rows = summarize(votes, prior)
    has_mos = any("mos" in r for r in rows)
    head = ["method", "compared", "won / tied / lost", "win rate (95% CI)", "BT score", "people rank"]
    head += ["MOS ± SE"] if has_mos else []
    psnr_rank = _ranks({m: v["psnr_y"] for m, v in (metrics or {}).items() if "psnr_y" in v}, decimals=2)  # HR: inf
    head += ["PSNR-Y (dB)", "SSIM-Y", "PSNR rank"] if metrics else []
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        cells = [r["method"], str(r["n"]), f"{r['wins']} / {r['ties']} / {r['losses']}",
                 f"{r['rate']:.2f} [{r['low']:.2f}, {r['high']:.2f}]", f"{r['bt']:+.2f}", str(r["rank"])]
        if has_mos:
            cells.append(f"{r['mos']:.2f} ± {r['se']:.2f} (n={r['mos_n']})" if "mos" in r else "–")
        if metrics:
            m = metrics.get(r["method"], {})
            cells += [_number(m.get("psnr_y"), "{:.2f}"), _number(m.get("ssim_y"), "{:.4f}"),
                      str(psnr_rank.get(r["method"], "–"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pairwise_table(votes: Iterable[Vote]) -> str:
    """Markdown matrix: the share of votes preferring the row method over the column method
    (ties as half), with the number of comparisons."""
    methods, wins = pairwise_wins(votes)
    games = wins + wins.T
    lines = ["| preferred over → | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for i, m in enumerate(methods):
        cells = [f"{wins[i, j] / games[i, j]:.2f} (n={games[i, j]:g})" if games[i, j] else "–"
                 for j in range(len(methods))]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_study(votes: Iterable[Vote], metrics: dict[str, dict] | None = None, path: str | Path | None = None,
               prior: float = 1.0):
    """Win rates with their 95 % Wilson intervals (best-liked on top); with ``metrics``, also
    PSNR-Y against the Bradley-Terry score, one point per method; MOS ± SE when rated."""
    import matplotlib.pyplot as plt

    votes = list(votes)
    rows = summarize(votes, prior)[::-1]  # best on top of a horizontal bar chart
    rated = [r for r in rows if "mos" in r]
    psnr = {m: v["psnr_y"] for m, v in (metrics or {}).items() if "psnr_y" in v}
    scatter = [r for r in rows if math.isfinite(psnr.get(r["method"], math.nan))]
    n_axes = 1 + bool(scatter) + bool(rated)
    fig, axes = plt.subplots(1, n_axes, figsize=(4.3 * n_axes, 0.9 + 0.45 * len(rows)), squeeze=False)
    ax, y = axes[0][0], np.arange(len(rows))
    rate = np.array([r["rate"] for r in rows])
    ax.barh(y, rate, color="#7aa6d6")
    ax.errorbar(rate, y, xerr=[rate - [r["low"] for r in rows], [r["high"] for r in rows] - rate], fmt="none",
                ecolor="black", capsize=3)
    ax.axvline(0.5, color="grey", ls="--", lw=1)  # a coin flip
    ax.set_yticks(y, [r["method"] for r in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate (ties = ½), 95% Wilson CI")
    ax.set_title(f"preferred by people ({len(votes)} votes)", fontsize=10)
    col = 1
    if scatter:
        ax = axes[0][col]
        col += 1
        xs, ys = [psnr[r["method"]] for r in scatter], [r["bt"] for r in scatter]
        ax.scatter(xs, ys, color="#d6604d")
        for r, x_, y_ in zip(scatter, xs, ys):
            ax.annotate(r["method"], (x_, y_), textcoords="offset points", xytext=(4, 4), fontsize=8)
        for r in rows:  # the reference itself (HR: PSNR infinite) as a line at its score
            if psnr.get(r["method"]) == math.inf:
                ax.axhline(r["bt"], color="grey", ls=":", lw=1)
                ax.annotate(f"{r['method']} (PSNR ∞)", (0.02, r["bt"]), xycoords=("axes fraction", "data"),
                            textcoords="offset points", xytext=(0, 3), fontsize=8, color="grey")
        ax.ticklabel_format(axis="x", useOffset=False)
        if max(xs) - min(xs) < 0.5:  # nearly equal PSNRs: show them as such, not blown up
            ax.set_xlim((max(xs) + min(xs)) / 2 - 0.5, (max(xs) + min(xs)) / 2 + 0.5)
        ax.set_xlabel("PSNR-Y (dB): what the metric says")
        ax.set_ylabel("Bradley-Terry score: what people say")
        ax.margins(y=0.15)
        ax.grid(alpha=0.3)
        ax.set_title("metric vs people", fontsize=10)
    if rated:
        ax = axes[0][col]
        yr = np.arange(len(rated))
        ax.errorbar([r["mos"] for r in rated], yr, xerr=[np.nan_to_num(r["se"]) for r in rated], fmt="o", capsize=3)
        ax.set_yticks(yr, [r["method"] for r in rated])
        ax.set_xlim(1, 5)
        ax.set_xlabel("MOS (1-5) ± standard error")
        ax.set_title("absolute ratings", fontsize=10)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


# ---------------------------------------------------------------- the blind comparison widget


class Trial(NamedTuple):
    image: str
    left: str
    right: str


def balanced_schedule(methods: list[str], images: list[str], repeats: int = 1, seed=None) -> list[Trial]:
    """Every pair of methods on every image (``repeats`` times), in random order, with sides
    balanced: for each pair, each method is on the left within one of its right count; and
    for each method over the whole session, also within one.

    The leftover comparison of a pair seen an odd number of times goes to the side given by a
    circular tournament on a random cyclic order of the methods (i left of j when j follows i
    within half a turn), which leaves every method with at most one extra left or right.
    """
    if len(set(methods)) < 2:
        raise ValueError(f"a comparison needs at least two methods, got {methods}")
    rng = np.random.default_rng(seed)
    k = len(methods)
    pos = {m: i for i, m in enumerate(rng.permutation(methods).tolist())}
    trials = []
    for a, b in combinations(methods, 2):
        step = (pos[b] - pos[a]) % k
        a_left = step < k / 2 or (step == k / 2 and pos[a] < pos[b])
        shown = list(images) * repeats
        sides = [True, False] * (len(shown) // 2) + ([a_left] if len(shown) % 2 else [])
        rng.shuffle(sides)
        trials += [Trial(img, a, b) if left else Trial(img, b, a) for img, left in zip(shown, sides)]
    return [trials[i] for i in rng.permutation(len(trials))]


def _crop_png(img: np.ndarray, box: tuple[int, int, int], zoom: int) -> bytes:
    from .viz import png_bytes

    top, left, size = box
    crop = img[top : top + size, left : left + size]
    crop = np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1)  # nearest: the rater sees real pixels
    return png_bytes(crop)


class BlindStudy:
    """Blind pairwise comparison of SR methods, built from core ipywidgets (Image, Button,
    ToggleButtons, HTML, Label; no Output area), so it runs in Colab and under nbclient.

    Args:
        images: ``image name -> {method: SR image}``, all of one image the same size (HR may
            be one of the methods: a hidden reference; "LR" is left out, being smaller).
        path: the CSV the votes are appended to (one row per vote, written at the click).
        rater: an id for the person voting (goes into every row).
        methods: which methods to compare (default: every key but "LR").
        crop: side of the square shown, in SR pixels, placed on the most textured region of
            the image ("HR" when present, else the first method); ``zoom``: display magnification.
        ratings: also ask for an absolute 1-5 rating of each crop (MOS) before the choice.
        repeats: how many times each (pair, image) is shown.
        resume: skip the comparisons this rater already has in ``path`` (after a disconnect).

    Drive it from Python exactly as a click does: ``study.buttons["left"].click()`` (after
    setting ``study.rating_buttons["left"/"right"].value`` when rating), or ``study.vote(...)``.
    Nothing a widget shows names a method until the last vote is cast.
    """

    def __init__(self, images: dict[str, dict[str, np.ndarray]], path: str | Path, rater: str,
                 methods: list[str] | None = None, crop: int = 128, zoom: int = 2, ratings: bool = False,
                 repeats: int = 1, seed=None, resume: bool = True):
        import ipywidgets as w

        from .viz import detail_box

        if not images:
            raise ValueError("no images to compare")
        self.images, self.path, self.rater = images, Path(path), _one_line(rater)
        if not self.rater:
            raise ValueError("rater id is empty")
        self.methods = list(methods or [m for m in next(iter(images.values())) if m != "LR"])
        for name, panels in images.items():
            missing = [m for m in self.methods if m not in panels]
            if missing:
                raise ValueError(f"image {name!r} has no output for {missing}")
            if len({panels[m].shape[:2] for m in self.methods}) > 1:
                raise ValueError(f"image {name!r}: the methods' images differ in size")
        self.boxes = {name: detail_box(panels.get("HR", panels[self.methods[0]]), crop)
                      for name, panels in images.items()}
        self.zoom, self.ratings = zoom, ratings
        self.trials = balanced_schedule(self.methods, list(images), repeats, seed)
        if resume and self.path.is_file():
            self.trials = self._not_yet_done(self.trials)
        self.index, self.votes = 0, []

        self.prompt = w.HTML("<b>Which crop looks better?</b> Click the better one, or <i>same</i> "
                             "when you cannot tell. Take your time; look at textures and edges.")
        self.progress = w.Label()
        self.views = {side: w.Image(format="png") for side in ("left", "right")}
        self.rating_buttons = {side: w.ToggleButtons(options=["1", "2", "3", "4", "5"], value=None,
                                                     style={"button_width": "34px"}) for side in ("left", "right")}
        self.buttons = {"left": w.Button(description="◀ left is better", button_style="info"),
                        "same": w.Button(description="same / can't tell"),
                        "right": w.Button(description="right is better ▶", button_style="info")}
        for choice, button in self.buttons.items():
            button.on_click(lambda _button, choice=choice: self._click(choice))
        self.status = w.HTML()
        columns = []
        for side in ("left", "right"):
            parts = [self.views[side]]
            if ratings:
                parts += [w.Label("rate it: 1 = bad … 5 = excellent"), self.rating_buttons[side]]
            columns.append(w.VBox(parts))
        self.widget = w.VBox([self.prompt, self.progress, w.HBox(columns), w.HBox(list(self.buttons.values())),
                              self.status])
        self._show()

    def _not_yet_done(self, trials: list[Trial]) -> list[Trial]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BadVoteRow)
            done = Counter((v.image, frozenset((v.method_left, v.method_right)))
                           for v in read_votes(self.path) if v.rater == self.rater)
        left = []
        for t in trials:
            key = (t.image, frozenset((t.left, t.right)))
            if done[key] > 0:
                done[key] -= 1
            else:
                left.append(t)
        return left

    @property
    def finished(self) -> bool:
        return self.index >= len(self.trials)

    def current_trial(self) -> Trial:
        """The comparison on screen, names included: for simulations and tests, never shown."""
        if self.finished:
            raise RuntimeError("the study is finished")
        return self.trials[self.index]

    def crop_of(self, image: str, method: str) -> np.ndarray:
        """The crop of ``method``'s output of ``image`` that the rater sees (before zoom)."""
        top, left, size = self.boxes[image]
        return self.images[image][method][top : top + size, left : left + size]

    def vote(self, choice: str, rating_left: int | None = None, rating_right: int | None = None) -> Vote:
        """Record a vote on the comparison on screen (what a click does) and show the next."""
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        trial = self.current_trial()
        if self.ratings:
            given = (rating_left, rating_right)
            rating_left, rating_right = (g if g is not None else (int(b.value) if b.value else None)
                                         for g, b in zip(given, self.rating_buttons.values()))
            if rating_left is None or rating_right is None:
                raise ValueError("rate both crops (1-5) before choosing")
        top, left, size = self.boxes[trial.image]
        vote = Vote(self.rater, _one_line(trial.image), f"{top}:{left}:{size}", _one_line(trial.left),
                    _one_line(trial.right), choice, rating_left, rating_right,
                    datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        append_vote(self.path, vote)
        self.votes.append(vote)
        self.index += 1
        self._show()
        return vote

    def _click(self, choice: str) -> None:
        try:
            self.vote(choice)
        except ValueError as err:  # e.g. a rating missing: say so, record nothing
            self.status.value = f"<span style='color:#b00'>{err}</span>"

    def _show(self) -> None:
        for buttons in self.rating_buttons.values():
            buttons.value = None
        if self.finished:
            self._show_results()
            return
        trial = self.trials[self.index]
        self.progress.value = f"comparison {self.index + 1} of {len(self.trials)}"
        for side, method in (("left", trial.left), ("right", trial.right)):
            self.views[side].value = _crop_png(self.images[trial.image][method], self.boxes[trial.image], self.zoom)
        self.status.value = ""

    def _show_results(self) -> None:
        import html

        for widget in (*self.buttons.values(), *self.rating_buttons.values()):
            widget.disabled = True
        for view in self.views.values():
            view.layout.display = "none"
        self.progress.value = f"done: {len(self.trials)} comparisons"
        table = results_table(self.votes) if self.votes else "(no new votes in this session)"
        self.status.value = (f"<b>Thank you!</b> Your votes are saved in <code>{html.escape(str(self.path))}</code>."
                             f"<br>Your results (the methods revealed):<pre>{html.escape(table)}</pre>")


def simulate_votes(study: BlindStudy, quality: dict[str, float] | Callable[[str, str], float],
                   noise: float = 1.0, tie: float = 0.0, seed=None) -> list[Vote]:
    """Finish ``study`` with a simulated rater, through the same callbacks as a click.

    The rater prefers the left crop with probability ``1 / (1 + exp(-(q_left - q_right) / noise))``
    (a Bradley-Terry rater), says "same" with probability ``tie``, and with ``noise=0`` always
    picks the higher quality ("same" when equal). ``quality`` is ``method -> q`` or a function
    ``(image, method) -> q`` (it may look at ``study.crop_of(image, method)``, e.g. its
    sharpness). When the study asks for ratings, each crop gets ``round(3 + q + normal(0, noise))``
    clipped to 1-5.
    """
    rng = np.random.default_rng(seed)
    score = quality if callable(quality) else None
    start = len(study.votes)
    while not study.finished:
        t = study.current_trial()
        q = {side: score(t.image, m) if score else quality[m]
             for side, m in (("left", t.left), ("right", t.right))}
        diff = q["left"] - q["right"]
        if rng.random() < tie or (noise == 0 and diff == 0):
            choice = "same"
        elif noise == 0:
            choice = "left" if diff > 0 else "right"
        else:
            choice = "left" if rng.random() < 1 / (1 + math.exp(-diff / noise)) else "right"
        if study.ratings:
            for side, buttons in study.rating_buttons.items():
                buttons.value = str(int(np.clip(round(3 + q[side] + rng.normal(0, noise)), 1, 5)))
        study.buttons[choice].click()
    return study.votes[start:]


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m srlab study report VOTES.csv...``: the results table of one or more vote files."""
    parser = argparse.ArgumentParser(prog="python -m srlab study",
                                     description="blind preference study: pool vote files and report")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="win rates, Wilson intervals, Bradley-Terry scores and MOS of vote CSVs")
    rep.add_argument("votes", nargs="+", metavar="VOTES.csv", help="one CSV per rater, or pooled ones")
    rep.add_argument("--prior", type=float, default=1.0,
                     help="virtual tied comparisons per pair in the Bradley-Terry fit (default: 1)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already explained
        return int(exit_.code or 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            votes = read_votes(args.votes)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if not votes:
        print(f"error: no valid votes in {', '.join(args.votes)}", file=sys.stderr)
        return 1
    if len(_methods(votes)) < 2:
        print(f"error: the votes name a single method ({_methods(votes)[0]})", file=sys.stderr)
        return 1
    raters = sorted({v.rater for v in votes})
    print(f"{len(votes)} votes from {len(raters)} rater(s) ({', '.join(raters)}) in {len(args.votes)} file(s); "
          f"a tie counts as half a win; Bradley-Terry prior {args.prior:g}\n")
    print(results_table(votes, prior=args.prior))
    print("\nPairwise preferences (row preferred over column):\n")
    print(pairwise_table(votes))
    return 0
