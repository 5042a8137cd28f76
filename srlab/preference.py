"""What a blind preference study's votes say: statistics, tables, a plot and the report.

- :func:`win_rates` with Wilson 95 % intervals, :func:`bradley_terry` scores from the pairwise
  votes, :func:`mean_opinion_scores` with standard errors; :func:`summarize` gathers them per
  method.
- :func:`results_table` puts them next to PSNR/SSIM, :func:`pairwise_table` shows who beat
  whom, :func:`plot_study` draws them, :func:`people_vs_psnr` puts the two orders side by side,
  and :func:`report` is what ``python -m srlab study report a.csv b.csv ...`` prints for a
  class's pooled vote files.

Never a conclusion from noise: votes of a simulated rater (:func:`srlab.votes.is_simulated`) are
called "simulated" in every table, plot and report made from them; and when the methods' PSNRs
tie (all within :data:`PSNR_TIE_DB`), there is no PSNR order to compare people with, so the
comparison is replaced by one sentence that says so (:func:`psnr_tie_note`).

Convention for ties ("same"): a tie counts as half a win for each side, in the win rates and
in the Bradley-Terry fit alike.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .reports import check_report_path, is_matplotlib_png, markdown_cell
from .votes import Vote, is_simulated, neutralise, one_line, read_votes

__all__ = [
    "wilson_interval",
    "win_rates",
    "pairwise_wins",
    "bradley_terry",
    "mean_opinion_scores",
    "summarize",
    "results_table",
    "pairwise_table",
    "plot_study",
    "psnr_tie_note",
    "people_vs_psnr",
    "report",
    "PSNR_TIE_DB",
    "NIQE_TIE",
    "MAX_METHODS",
]

Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal
# PSNR-Y values closer than this tie: a model six steps from its bicubic start differs from bicubic by
# less, and two images' worth of crops cannot tell such differences from noise.
PSNR_TIE_DB = 0.05
# NIQE values closer than this tie (they run from about 2, photo-like, to 10+, heavily degraded). Measured:
# the six-step smoke models, 0.1-0.3 grey levels from bicubic on average, move NIQE by up to 0.12 on the
# embedded crops, so smaller gaps say nothing about the models.
NIQE_TIE = 0.2

# ---------------------------------------------------------------- statistics


def _name(name: str) -> str:
    """A rater's or method's name as a report shows it: on one line, and never a spreadsheet
    formula (:func:`srlab.votes.neutralise`), since reports get pasted into spreadsheets."""
    return neutralise(one_line(name))


def _cell(name: str) -> str:
    """A name as a Markdown table cell shows it: :func:`_name`, with ``|`` (and ``\\``) escaped
    (:func:`srlab.reports.markdown_cell`), so a ``|`` in a method's name stays in its column."""
    return markdown_cell(_name(name))


# The most methods one analysis compares. A study compares a handful; the pairwise matrix and the
# Bradley-Terry fit grow with the square of their number (20,000 names in a 1.2 MB file asked for
# 11.9 GiB), so more names than this mean a wrong file and are refused in one line.
MAX_METHODS = 50


def _methods(votes: Iterable[Vote]) -> list[str]:
    """The methods the votes name, sorted; ValueError when they are more than :data:`MAX_METHODS`."""
    return _at_most_max(sorted({m for v in votes for m in (v.method_left, v.method_right)}))


def _at_most_max(methods: list[str]) -> list[str]:
    """``methods``, or ValueError (one line) when they are more than :data:`MAX_METHODS`."""
    if len(methods) > MAX_METHODS:
        raise ValueError(
            f"the votes name {len(methods)} methods, more than the {MAX_METHODS} a study report compares "
            "(its pairwise matrix grows with the square): check that these are the vote files of one study"
        )
    return methods


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
        out[method] = {
            "wins": c["wins"],
            "ties": c["ties"],
            "losses": c["losses"],
            "n": n,
            "rate": score / n,
            "low": low,
            "high": high,
        }
    return out


def pairwise_wins(votes: Iterable[Vote], methods: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """``(methods, W)`` with ``W[i, j]`` = times method i was preferred over j, a tie adding
    half to each of ``W[i, j]`` and ``W[j, i]``."""
    votes = list(votes)
    methods = _at_most_max(list(methods)) if methods else _methods(votes)
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


def bradley_terry(
    votes: Iterable[Vote], prior: float = 1.0, tol: float = 1e-10, max_iter: int = 100_000
) -> dict[str, float]:
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
    if not (math.isfinite(prior) and prior >= 0):  # NaN and inf would give NaN scores, a negative prior nonsense
        raise ValueError(f"the Bradley-Terry prior must be a finite number >= 0, got {prior}")
    methods, wins = pairwise_wins(votes)
    if len(methods) < 2:
        raise ValueError(f"Bradley-Terry needs votes on at least two methods, got {methods}")
    wins = wins + prior / 2 * (1 - np.eye(len(methods)))
    if prior <= 0 and not _strongly_connected(wins):
        raise ValueError(
            "no finite Bradley-Terry fit: some method never beat the others (directly or through others); use prior > 0"
        )
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


# ---------------------------------------------------------------- tables, plot and report


def _psnr_ranks(metrics: dict[str, dict], tol: float = PSNR_TIE_DB) -> dict[str, int]:
    """1 + the number of methods with a PSNR-Y higher by more than ``tol``: a tie shares a rank
    (HR, infinite, ranks first)."""
    psnr = {m: v["psnr_y"] for m, v in metrics.items() if "psnr_y" in v}
    return {m: 1 + sum(other > p + tol for other in psnr.values()) for m, p in psnr.items()}


def psnr_tie_note(metrics: dict[str, dict] | None, methods: Iterable[str] | None = None) -> str | None:
    """The sentence that replaces the people-vs-PSNR comparison when the PSNRs tie, else None.

    The finite PSNR-Y values of ``methods`` (default: all in ``metrics``; HR's infinite one is
    left out) tie when they all lie within :data:`PSNR_TIE_DB` of each other: PSNR then puts
    them in no order, and a rank of "people vs PSNR" would compare a ranking with noise.
    """
    asked = set(methods) if methods is not None else None
    names = [m for m in metrics or {} if asked is None or m in asked]  # in the order of metrics
    psnr = {m: metrics[m]["psnr_y"] for m in names if "psnr_y" in metrics[m]}
    psnr = {m: p for m, p in psnr.items() if math.isfinite(p)}
    if len(psnr) < 2 or max(psnr.values()) - min(psnr.values()) >= PSNR_TIE_DB:
        return None
    return (
        f"No people-vs-PSNR comparison: the PSNR-Y of {', '.join(psnr)} ties "
        f"({min(psnr.values()):.2f}-{max(psnr.values()):.2f} dB, all within {PSNR_TIE_DB} dB), "
        "so PSNR ranks none of them above another."
    )


def _simulated_note(votes: list[Vote]) -> str | None:
    """What to say when some or all of ``votes`` come from a simulated rater, else None."""
    n = sum(map(is_simulated, votes))
    if not n:
        return None
    who = "all" if n == len(votes) else f"{n} of {len(votes)}"
    return f"Simulated votes ({who}): a program voted, not people; these numbers show that the pipeline works."


def _judge(votes: list[Vote]) -> str:
    """Who voted, for column headers and axis labels: people, or the simulated rater."""
    return "simulated rater" if votes and all(map(is_simulated, votes)) else "people"


def results_table(votes: Iterable[Vote], metrics: dict[str, dict] | None = None, prior: float = 1.0) -> str:
    """Markdown table, best-liked method first: comparisons, won/tied/lost, win rate with its
    95 % Wilson interval, Bradley-Terry score and rank, MOS ± standard error (when rated) and,
    given ``metrics`` (``method -> {"psnr_y", "ssim_y"}``), PSNR-Y, SSIM-Y and the PSNR rank,
    so the rows where people and PSNR disagree stand out.

    Simulated votes get a line above the table saying so, and a "simulated rater rank" column
    instead of "people rank". When the PSNRs tie (:func:`psnr_tie_note`) the PSNR rank column is
    left out and the note's sentence follows the table.
    """
    votes = list(votes)
    rows = summarize(votes, prior)
    tie = psnr_tie_note(metrics, [r["method"] for r in rows]) if metrics else None
    has_mos = any("mos" in r for r in rows)
    head = ["method", "compared", "won / tied / lost", "win rate (95% CI)", "BT score", f"{_judge(votes)} rank"]
    head += ["MOS ± SE"] if has_mos else []
    psnr_rank = _psnr_ranks(metrics or {})
    head += ["PSNR-Y (dB)", "SSIM-Y"] + ([] if tie else ["PSNR rank"]) if metrics else []
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        cells = [
            _cell(r["method"]),
            str(r["n"]),
            f"{r['wins']} / {r['ties']} / {r['losses']}",
            f"{r['rate']:.2f} [{r['low']:.2f}, {r['high']:.2f}]",
            f"{r['bt']:+.2f}",
            str(r["rank"]),
        ]
        if has_mos:
            cells.append(f"{r['mos']:.2f} ± {r['se']:.2f} (n={r['mos_n']})" if "mos" in r else "–")
        if metrics:
            m = metrics.get(r["method"], {})
            cells += [_number(m.get("psnr_y"), "{:.2f}"), _number(m.get("ssim_y"), "{:.4f}")]
            cells += [] if tie else [str(psnr_rank.get(r["method"], "–"))]
        lines.append("| " + " | ".join(cells) + " |")
    simulated = _simulated_note(votes)
    return "\n".join(([f"*{simulated}*", ""] if simulated else []) + lines + (["", f"*{tie}*"] if tie else []))


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None else "∞" if value == math.inf else fmt.format(value)


def pairwise_table(votes: Iterable[Vote]) -> str:
    """Markdown matrix: the share of votes preferring the row method over the column method
    (ties as half), with the number of comparisons; the corner says when the votes are simulated."""
    votes = list(votes)
    methods, wins = pairwise_wins(votes)
    games = wins + wins.T
    corner = "preferred over →" + (" (simulated votes)" if any(map(is_simulated, votes)) else "")
    lines = [f"| {corner} | " + " | ".join(map(_cell, methods)) + " |", "|---" * (len(methods) + 1) + "|"]
    for i, m in enumerate(methods):
        cells = [
            f"{wins[i, j] / games[i, j]:.2f} (n={games[i, j]:g})" if games[i, j] else "–" for j in range(len(methods))
        ]
        lines.append(f"| {_cell(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ordering(ranks: dict[str, int]) -> str:
    """``{"A": 1, "B": 2, "C": 2}`` -> ``"A > B = C"``."""
    order = sorted(ranks, key=ranks.get)
    text = order[0] if order else ""
    for prev, m in zip(order, order[1:]):
        text += (" = " if ranks[m] == ranks[prev] else " > ") + m
    return text


def people_vs_psnr(votes: Iterable[Vote], metrics: dict[str, dict], prior: float = 1.0) -> str:
    """The two orders one above the other (``people: A > B = C`` / ``PSNR: ...``), or, when the
    PSNRs tie, the one sentence of :func:`psnr_tie_note` instead; simulated votes say so."""
    votes = list(votes)
    rows = summarize(votes, prior)
    tie = psnr_tie_note(metrics, [r["method"] for r in rows])
    if tie:
        return tie
    people = _ordering({r["method"]: r["rank"] for r in rows})
    psnr = _ordering({m: k for m, k in _psnr_ranks(metrics).items() if m in {r["method"] for r in rows}})
    judge = _judge(votes)
    text = f"{judge + ':':<17} {people}\n{'PSNR:':<17} {psnr}"
    close = _not_told_apart(rows)
    if close:
        text += f"\n{'not told apart:':<17} {close} (each one's 95 % interval overlaps the next one's)"
    return text


def _not_told_apart(rows: list[dict]) -> str | None:
    """Neighbours in ``rows``' order whose win-rate intervals overlap, as chains ("A ~ B; C ~ D"):
    the votes do not settle their order, whatever the ">" above says."""
    chains, chain = [], [r["method"] for r in rows[:1]]
    for above, row in zip(rows, rows[1:]):
        if row["low"] <= above["high"] and above["low"] <= row["high"]:
            chain.append(row["method"])
        else:
            chains, chain = chains + [chain], [row["method"]]
    chains.append(chain)
    return "; ".join(" ~ ".join(c) for c in chains if len(c) > 1) or None


def plot_study(
    votes: Iterable[Vote], metrics: dict[str, dict] | None = None, path: str | Path | None = None, prior: float = 1.0
):
    """Win rates with their 95 % Wilson intervals (best-liked on top); with ``metrics``, also
    PSNR-Y against the Bradley-Terry score, one point per method (or, when the PSNRs tie, the
    sentence that says why there is no such comparison); MOS ± SE when rated. Simulated votes
    are called so in the titles, and a line above the panels says it again. ``path`` may replace a
    figure drawn before (a matplotlib PNG), never another file (FileExistsError, before drawing)."""
    _check_figure_path(path)
    import matplotlib.pyplot as plt

    votes = list(votes)
    judge = _judge(votes)
    rows = summarize(votes, prior)[::-1]  # best on top of a horizontal bar chart
    rated = [r for r in rows if "mos" in r]
    psnr = {m: v["psnr_y"] for m, v in (metrics or {}).items() if "psnr_y" in v}
    scatter = [r for r in rows if math.isfinite(psnr.get(r["method"], math.nan))]
    tie = psnr_tie_note(metrics, [r["method"] for r in rows]) if scatter else None
    n_axes = 1 + bool(scatter) + bool(rated)
    fig, axes = plt.subplots(1, n_axes, figsize=(4.3 * n_axes, 0.9 + 0.45 * len(rows)), squeeze=False)
    ax, y = axes[0][0], np.arange(len(rows))
    rate = np.array([r["rate"] for r in rows])
    ax.barh(y, rate, color="#7aa6d6")
    ax.errorbar(
        rate,
        y,
        xerr=[rate - [r["low"] for r in rows], [r["high"] for r in rows] - rate],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    ax.axvline(0.5, color="grey", ls="--", lw=1)  # a coin flip
    ax.set_yticks(y, [r["method"] for r in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate (ties = ½), 95% Wilson CI")
    ax.set_title(f"preferred by the {judge} ({len(votes)} votes)", fontsize=10)
    col = 1
    if scatter and tie:
        ax = axes[0][col]
        col += 1
        ax.set_axis_off()
        ax.text(0.0, 0.5, tie, wrap=True, fontsize=9, va="center", transform=ax.transAxes)
        ax.set_title(f"metric vs {judge}", fontsize=10)
    elif scatter:
        ax = axes[0][col]
        col += 1
        xs, ys = [psnr[r["method"]] for r in scatter], [r["bt"] for r in scatter]
        ax.scatter(xs, ys, color="#d6604d")
        for r, x_, y_ in zip(scatter, xs, ys):
            ax.annotate(r["method"], (x_, y_), textcoords="offset points", xytext=(4, 4), fontsize=8)
        for r in rows:  # the reference itself (HR: PSNR infinite) as a line at its score
            if psnr.get(r["method"]) == math.inf:
                ax.axhline(r["bt"], color="grey", ls=":", lw=1)
                ax.annotate(
                    f"{r['method']} (PSNR ∞)",
                    (0.02, r["bt"]),
                    xycoords=("axes fraction", "data"),
                    textcoords="offset points",
                    xytext=(0, 3),
                    fontsize=8,
                    color="grey",
                )
        ax.ticklabel_format(axis="x", useOffset=False)
        if max(xs) - min(xs) < 0.5:  # nearly equal PSNRs: show them as such, not blown up
            ax.set_xlim((max(xs) + min(xs)) / 2 - 0.5, (max(xs) + min(xs)) / 2 + 0.5)
        ax.set_xlabel("PSNR-Y (dB): what the metric says")
        ax.set_ylabel(f"Bradley-Terry score:\nwhat the {judge} says")
        ax.margins(x=0.25, y=0.15)  # room for the labels of the points at the edges
        ax.grid(alpha=0.3)
        ax.set_title(f"metric vs {judge}", fontsize=10)
    if rated:
        ax = axes[0][col]
        yr = np.arange(len(rated))
        ax.errorbar([r["mos"] for r in rated], yr, xerr=[np.nan_to_num(r["se"]) for r in rated], fmt="o", capsize=3)
        ax.set_yticks(yr, [r["method"] for r in rated])
        ax.set_xlim(1, 5)
        ax.set_xlabel("MOS (1-5) ± standard error")
        ax.set_title(f"absolute ratings ({judge})", fontsize=10)
    simulated = _simulated_note(votes)
    if simulated:
        fig.suptitle(simulated, fontsize=9, color="#b00")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def _check_figure_path(path: str | Path | None) -> None:
    """Before drawing: ``path`` may replace a figure srlab drew (a matplotlib PNG), never another file."""
    if path is not None:
        check_report_path(path, flag="", own=is_matplotlib_png)


def report(paths: str | Path | Iterable[str | Path], prior: float = 1.0) -> str:
    """What ``python -m srlab study report`` prints: who voted, then the results table and
    the pairwise matrix of the votes in ``paths`` (one file per rater, or pooled ones).

    Bad rows are skipped with :class:`~srlab.votes.BadVoteRow` warnings; a missing file raises
    FileNotFoundError; no valid votes at all, votes on a single method or on more than
    :data:`MAX_METHODS`, or a file whose header lacks a column, ValueError. Memory and output grow
    with the number of votes, and with the square of the methods only up to that cap.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    votes = read_votes(paths)
    if not votes:
        raise ValueError(f"no valid votes in {', '.join(map(str, paths))}")
    try:  # before anything grows with the square of their number
        methods = _methods(votes)
    except ValueError as err:
        raise ValueError(f"{', '.join(map(str, paths))}: {err}") from None
    if len(methods) < 2:
        raise ValueError(f"the votes name a single method ({methods[0]})")
    raters = sorted({_name(v.rater) for v in votes})
    who = (
        f"{len(votes)} votes from {len(raters)} rater(s) ({', '.join(raters)}) in {len(paths)} file(s); "
        f"a tie counts as half a win; Bradley-Terry prior {prior:g}"
    )
    return "\n\n".join(
        [
            who,
            results_table(votes, prior=prior),
            "Pairwise preferences (row preferred over column):",
            pairwise_table(votes),
        ]
    )
