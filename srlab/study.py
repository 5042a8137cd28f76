"""A blind preference study: measure what PSNR cannot.

PSNR ranks the GAN models below bicubic, yet people prefer ESRGAN. :class:`BlindStudy` lets a
class measure that preference with a widget of core ipywidgets (images, buttons, a label:
keyboard-free, works in Colab). It shows the same crop from two methods side by side, method
names hidden, in the random order with balanced sides of :func:`balanced_schedule`; the rater
clicks the better one (or "same"), optionally after rating each crop 1-5 (the SRGAN paper's
Mean Opinion Score protocol). Every vote goes to a CSV the moment it is cast
(:mod:`srlab.votes`); :mod:`srlab.preference` turns the votes into win rates, Bradley-Terry
scores and tables. :func:`simulate_votes` clicks through a study for smoke runs and tests.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .preference import results_table
from .votes import CHOICES, SIMULATED_RATER, BadVoteRow, Vote, append_vote, is_simulated, one_line, read_votes

__all__ = ["Trial", "balanced_schedule", "BlindStudy", "simulate_votes"]

# ---------------------------------------------------------------- the order of the comparisons


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
    if len(set(methods)) != len(methods):  # else a method would be shown against itself
        twice = sorted({m for m in methods if methods.count(m) > 1})
        raise ValueError(f"methods named more than once: {', '.join(twice)}")
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


# ---------------------------------------------------------------- the blind comparison widget


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

    def __init__(
        self,
        images: dict[str, dict[str, np.ndarray]],
        path: str | Path,
        rater: str,
        methods: list[str] | None = None,
        crop: int = 128,
        zoom: int = 2,
        ratings: bool = False,
        repeats: int = 1,
        seed=None,
        resume: bool = True,
    ):
        import ipywidgets as w

        from .viz import detail_box

        if not images:
            raise ValueError("no images to compare")
        self.images, self.path, self.rater = images, Path(path), one_line(rater)
        if not self.rater:
            raise ValueError("rater id is empty")
        self.methods = list(methods or [m for m in next(iter(images.values())) if m != "LR"])
        for name, panels in images.items():
            missing = [m for m in self.methods if m not in panels]
            if missing:
                raise ValueError(f"image {name!r} has no output for {missing}")
            if len({panels[m].shape[:2] for m in self.methods}) > 1:
                raise ValueError(f"image {name!r}: the methods' images differ in size")
        self.boxes = {
            name: detail_box(panels.get("HR", panels[self.methods[0]]), crop) for name, panels in images.items()
        }
        self.zoom, self.ratings = zoom, ratings
        self.trials = balanced_schedule(self.methods, list(images), repeats, seed)
        self.total = len(self.trials)  # the whole session, counting the votes of an earlier one
        if resume and self.path.is_file():
            self.trials = self._not_yet_done(self.trials)
        self.done_before = self.total - len(self.trials)  # cast before a disconnect: "5 of 45", not "1 of 41"
        self.index, self.votes = 0, []

        self.prompt = w.HTML(
            "<b>Which crop looks better?</b> Click the better one, or <i>same</i> "
            "when you cannot tell. Take your time; look at textures and edges."
        )
        self.progress = w.Label()
        self.views = {side: w.Image(format="png") for side in ("left", "right")}
        self.rating_buttons = {
            side: w.ToggleButtons(options=["1", "2", "3", "4", "5"], value=None, style={"button_width": "34px"})
            for side in ("left", "right")
        }
        self.buttons = {
            "left": w.Button(description="◀ left is better", button_style="info"),
            "same": w.Button(description="same / can't tell"),
            "right": w.Button(description="right is better ▶", button_style="info"),
        }
        for choice, button in self.buttons.items():
            button.on_click(lambda _button, choice=choice: self._click(choice))
        self.status = w.HTML()
        columns = []
        for side in ("left", "right"):
            parts = [self.views[side]]
            if ratings:
                parts += [w.Label("rate it: 1 = bad … 5 = excellent"), self.rating_buttons[side]]
            columns.append(w.VBox(parts))
        self.widget = w.VBox(
            [self.prompt, self.progress, w.HBox(columns), w.HBox(list(self.buttons.values())), self.status]
        )
        self._show()

    def _not_yet_done(self, trials: list[Trial]) -> list[Trial]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BadVoteRow)
            done = Counter(
                (v.image, frozenset((v.method_left, v.method_right)))
                for v in read_votes(self.path)
                if v.rater == self.rater
            )
        left = []
        for t in trials:
            key = (one_line(t.image), frozenset((one_line(t.left), one_line(t.right))))  # as saved
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
            rating_left, rating_right = (
                g if g is not None else (int(b.value) if b.value else None)
                for g, b in zip(given, self.rating_buttons.values())
            )
            if rating_left is None or rating_right is None:
                raise ValueError("rate both crops (1-5) before choosing")
        top, left, size = self.boxes[trial.image]
        vote = Vote(
            self.rater,
            one_line(trial.image),
            f"{top}:{left}:{size}",
            one_line(trial.left),
            one_line(trial.right),
            choice,
            rating_left,
            rating_right,
            datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )
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
        self.progress.value = f"comparison {self.done_before + self.index + 1} of {self.total}"
        for side, method in (("left", trial.left), ("right", trial.right)):
            self.views[side].value = _crop_png(self.images[trial.image][method], self.boxes[trial.image], self.zoom)
        self.status.value = ""

    def _show_results(self) -> None:
        import html

        for widget in (*self.buttons.values(), *self.rating_buttons.values()):
            widget.disabled = True
        for view in self.views.values():
            view.layout.display = "none"
        resumed = f" ({len(self.votes)} in this session)" if self.done_before else ""
        self.progress.value = f"done: {self.total} comparisons{resumed}"
        table = results_table(self.votes) if self.votes else "(no new votes in this session)"
        self.status.value = (
            f"<b>Thank you!</b> Your votes are saved in <code>{html.escape(str(self.path))}</code>."
            f"<br>Your results (the methods revealed):<pre>{html.escape(table)}</pre>"
        )


def simulate_votes(
    study: BlindStudy,
    quality: dict[str, float] | Callable[[str, str], float],
    noise: float = 1.0,
    tie: float = 0.0,
    seed=None,
) -> list[Vote]:
    """Finish ``study`` with a simulated rater, through the same callbacks as a click.

    The rater prefers the left crop with probability ``1 / (1 + exp(-(q_left - q_right) / noise))``
    (a Bradley-Terry rater), says "same" with probability ``tie``, and with ``noise=0`` always
    picks the higher quality ("same" when equal). ``quality`` is ``method -> q`` or a function
    ``(image, method) -> q`` (it may look at ``study.crop_of(image, method)``, e.g. its
    sharpness). When the study asks for ratings, each crop gets ``round(3 + q + normal(0, noise))``
    clipped to 1-5.

    The study's rater id must start with :data:`~srlab.votes.SIMULATED_RATER` ("simulated"): it
    is written into every row, and it is how every table and plot made from these votes knows to
    say they are not people's.
    """
    if not is_simulated(study.rater):
        raise ValueError(f"a simulated rater's id must start with {SIMULATED_RATER!r}, got {study.rater!r}")
    rng = np.random.default_rng(seed)
    score = quality if callable(quality) else None
    start = len(study.votes)
    while not study.finished:
        t = study.current_trial()
        q = {side: score(t.image, m) if score else quality[m] for side, m in (("left", t.left), ("right", t.right))}
        diff = q["left"] - q["right"]
        if rng.random() < tie or (noise == 0 and diff == 0):
            choice = "same"
        elif noise == 0:
            choice = "left" if diff > 0 else "right"
        else:
            p_left = 0.5 * (1 + math.tanh(diff / (2 * noise)))  # the logistic, without exp's overflow
            choice = "left" if rng.random() < p_left else "right"
        if study.ratings:
            for side, buttons in study.rating_buttons.items():
                buttons.value = str(int(np.clip(round(3 + q[side] + rng.normal(0, noise)), 1, 5)))
        study.buttons[choice].click()
    return study.votes[start:]
