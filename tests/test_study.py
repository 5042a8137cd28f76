"""The blind study itself: the balanced schedule, the widget's clicks and rows, resuming, simulated raters."""

import csv
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from srlab import study
from srlab.preference import mean_opinion_scores, summarize
from srlab.votes import COLUMNS, Vote, read_votes

# ---------------------------------------------------------------- schedule and widget


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("n_images", [1, 2, 3])
def test_schedule_covers_every_pair_with_balanced_sides(k, n_images):
    methods, images = [f"m{i}" for i in range(k)], [f"i{j}" for j in range(n_images)]
    for seed in range(5):
        trials = study.balanced_schedule(methods, images, seed=seed)
        pairs = Counter((t.image, frozenset((t.left, t.right))) for t in trials)
        assert pairs == {(i, frozenset(p)): 1 for i in images for p in combinations(methods, 2)}
        lefts = Counter((t.left, t.right) for t in trials)
        for a, b in combinations(methods, 2):
            assert abs(lefts[(a, b)] - lefts[(b, a)]) <= 1
        sides = Counter((m, side) for t in trials for m, side in ((t.left, "L"), (t.right, "R")))
        assert all(abs(sides[(m, "L")] - sides[(m, "R")]) <= 1 for m in methods), sides


METHODS = ["bicubic", "ESRGAN", "SRResNet", "secret_method"]


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return {name: {m: rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for m in METHODS} for name in ("cat", "dog")}


def _texts(widget):
    """Every string, and the bytes of every image, any widget in the tree holds or shows."""
    import ipywidgets as w

    found = []

    def walk(value):
        if isinstance(value, w.Widget):
            for key in value.keys:
                walk(getattr(value, key))
        elif isinstance(value, (str, bytes)):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(widget)
    return found


def _revealed(widget):
    return {
        m
        for m in METHODS
        for t in _texts(widget)
        if (m.lower() in t.lower() if isinstance(t, str) else m.encode() in t)
    }


def _shown(view, zoom):
    import cv2

    img = cv2.imdecode(np.frombuffer(view.value, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    return img[::zoom, ::zoom]


def test_widget_clicks_write_the_rows_shown_and_reveal_no_method_before_the_end(images, tmp_path):
    path = tmp_path / "votes.csv"
    s = study.BlindStudy(images, path, rater="ann", crop=16, zoom=2, seed=1)
    assert len(s.trials) == 2 * 6  # 2 images x 6 pairs
    expected, choices = [], ["left", "right", "same"]
    for i in range(len(s.trials)):
        assert _revealed(s.widget) == set()  # blind before every vote
        t = s.current_trial()
        top, left, size = s.boxes[t.image]
        for side, method in (("left", t.left), ("right", t.right)):  # the sides show what the row will say
            np.testing.assert_array_equal(
                _shown(s.views[side], 2), images[t.image][method][top : top + size, left : left + size]
            )
        s.buttons[choices[i % 3]].click()
        expected.append(["ann", t.image, f"{top}:{left}:{size}", t.left, t.right, choices[i % 3], "", ""])
        assert len(path.read_text().splitlines()) == i + 2  # written at the click: header + i + 1 votes
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(COLUMNS)
    assert [r[:-1] for r in rows[1:]] == expected
    assert all(r[-1].endswith("+00:00") for r in rows[1:])  # ISO time, UTC
    sides = Counter((r[3], "L") for r in rows[1:]) + Counter((r[4], "R") for r in rows[1:])
    assert all(abs(sides[(m, "L")] - sides[(m, "R")]) <= 1 for m in METHODS)
    # the end: thank you, buttons off, and now the methods are named
    assert s.finished and "Thank you" in s.status.value and all(b.disabled for b in s.buttons.values())
    assert _revealed(s.widget) == set(METHODS)
    with pytest.raises(RuntimeError, match="finished"):
        s.vote("left")


def test_ratings_are_required_then_recorded(images, tmp_path):
    path = tmp_path / "votes.csv"
    s = study.BlindStudy(images, path, rater="ann", crop=16, ratings=True, seed=2)
    t = s.current_trial()
    s.buttons["right"].click()  # no ratings yet: nothing recorded, the rater is told
    assert not path.exists() and "rate both" in s.status.value and s.current_trial() == t
    s.rating_buttons["left"].value, s.rating_buttons["right"].value = "2", "5"
    assert _revealed(s.widget) == set()
    s.buttons["right"].click()
    assert read_votes(path) == [
        Vote("ann", t.image, read_votes(path)[0].crop, t.left, t.right, "right", 2, 5, read_votes(path)[0].time)
    ]
    assert s.rating_buttons["left"].value is None  # reset for the next comparison


def test_a_resumed_session_skips_what_the_rater_already_did(images, tmp_path):
    path = tmp_path / "votes.csv"
    first = study.BlindStudy(images, path, rater="ann", crop=16, seed=3)
    for _ in range(5):
        first.buttons["left"].click()
    done = [(v.image, frozenset((v.method_left, v.method_right))) for v in read_votes(path)]
    assert len(done) == 5
    other = study.BlindStudy(images, path, rater="bob", crop=16, seed=4)  # another rater starts from scratch
    assert len(other.trials) == 12
    again = study.BlindStudy(images, path, rater="ann", crop=16, seed=5)
    remaining = [(t.image, frozenset((t.left, t.right))) for t in again.trials]
    assert len(remaining) == 7 and Counter(remaining + done) == Counter(
        (i, frozenset(p)) for i in images for p in combinations(METHODS, 2)
    )
    # the count goes on from the votes already cast: the 6th of 12, not "1 of 7"
    assert first.progress.value == "comparison 6 of 12" and other.progress.value == "comparison 1 of 12"
    assert again.progress.value == "comparison 6 of 12"
    again.buttons["same"].click()
    assert again.progress.value == "comparison 7 of 12"
    while not again.finished:
        again.buttons["right"].click()
    assert again.progress.value == "done: 12 comparisons (7 in this session)"
    assert len(read_votes(path)) == 12


def test_simulated_rater_who_always_prefers_one_method_ranks_it_first(images, tmp_path):
    s = study.BlindStudy(images, tmp_path / "votes.csv", rater="simulated", crop=16, repeats=2, seed=0)
    votes = study.simulate_votes(s, {"secret_method": 1.0, "bicubic": 0.0, "ESRGAN": 0.0, "SRResNet": 0.0}, noise=0)
    assert len(votes) == 24 and s.finished
    assert all(v.winner == "secret_method" for v in votes if "secret_method" in (v.method_left, v.method_right))
    summary = summarize(read_votes(tmp_path / "votes.csv"))
    assert summary[0]["method"] == "secret_method" and summary[0]["rate"] == 1.0
    assert summary[0]["bt"] > max(r["bt"] for r in summary[1:]) + 1


def test_a_noisy_simulated_rater_is_recovered_in_order(images, tmp_path):
    s = study.BlindStudy(images, tmp_path / "votes.csv", rater="simulated", crop=16, repeats=25, ratings=True, seed=0)
    quality = {"secret_method": 1.5, "ESRGAN": 0.5, "SRResNet": -0.5, "bicubic": -1.5}
    study.simulate_votes(s, quality, noise=1.0, tie=0.1, seed=1)
    summary = summarize(s.votes)
    assert [r["method"] for r in summary] == sorted(quality, key=quality.get, reverse=True)
    mos = mean_opinion_scores(s.votes)
    assert mos["secret_method"]["mos"] > mos["bicubic"]["mos"] + 1


def test_a_simulated_rater_can_judge_the_crops_it_is_shown(tmp_path):
    # four flat grey "methods": the rater likes brightness, q = mean / 50 = 1, 2, 3, 4
    grey = {f"g{v}": np.full((24, 24, 3), v, np.uint8) for v in (50, 100, 150, 200)}
    s = study.BlindStudy(
        {"flat": grey, "flat2": grey}, tmp_path / "votes.csv", rater="simulated", crop=8, ratings=True, seed=0
    )
    votes = study.simulate_votes(s, lambda image, method: float(s.crop_of(image, method).mean()) / 50, noise=0)
    assert all(v.winner == max(v.method_left, v.method_right, key=lambda m: int(m[1:])) for v in votes)
    assert [r["method"] for r in summarize(votes)] == ["g200", "g150", "g100", "g50"]
    # ratings round(3 + q) clipped to 1-5: g50 -> 4, the others -> 5, every time (so SE 0)
    mos = mean_opinion_scores(votes)
    assert {m: (r["mos"], r["se"]) for m, r in mos.items()} == {
        "g50": (4, 0),
        "g100": (5, 0),
        "g150": (5, 0),
        "g200": (5, 0),
    }


def test_only_a_simulated_rater_id_may_simulate_and_its_results_say_so(images, tmp_path):
    person = study.BlindStudy(images, tmp_path / "ann.csv", rater="ann", crop=16, seed=0)
    with pytest.raises(ValueError, match="must start with 'simulated'"):
        study.simulate_votes(person, {m: 0.0 for m in METHODS})
    assert not (tmp_path / "ann.csv").exists()  # nothing was cast in a person's name
    s = study.BlindStudy(images, tmp_path / "sim.csv", rater="simulated-sharpness", crop=16, seed=0)
    votes = study.simulate_votes(s, {m: float(i) for i, m in enumerate(METHODS)}, noise=0)
    assert all(v.rater == "simulated-sharpness" for v in read_votes(tmp_path / "sim.csv"))
    assert "Simulated votes (all)" in s.status.value and "simulated rater rank" in s.status.value
    assert len(votes) == 12


def test_a_method_named_twice_is_refused_not_shown_against_itself():
    with pytest.raises(ValueError, match="methods named more than once: HR"):
        study.balanced_schedule(["HR", "esrgan", "HR"], ["baboon"], seed=0)


def test_a_study_resumes_as_finished_when_names_hold_spaces_that_the_file_folds(tmp_path):
    """Votes store one_line(name) ("my  photo" -> "my photo"); resume matched the raw names, so
    such comparisons were shown again on every resume."""
    rng = np.random.default_rng(0)
    images = {"my  photo": {m: rng.random((64, 64, 3)).astype(np.float32) for m in ("HR", "bicubic", "esrgan")}}
    first = study.BlindStudy(images, tmp_path / "v.csv", "simulated", crop=32, seed=0)
    study.simulate_votes(first, {"HR": 1, "bicubic": 0, "esrgan": 0.5}, seed=0)
    again = study.BlindStudy(images, tmp_path / "v.csv", "simulated", crop=32, seed=0)
    assert (again.done_before, len(again.trials)) == (3, 0)


def test_a_nearly_certain_simulated_rater_does_not_overflow(tmp_path):
    """exp(-diff / noise) overflowed (OverflowError) once diff / noise passed about 709."""
    rng = np.random.default_rng(0)
    images = {"a": {m: rng.random((64, 64, 3)).astype(np.float32) for m in ("HR", "bicubic")}}
    s = study.BlindStudy(images, tmp_path / "v.csv", "simulated", crop=32, seed=0)
    votes = study.simulate_votes(s, {"HR": 1.0, "bicubic": 0.0}, noise=1e-3, seed=0)
    assert [v.winner for v in votes] == ["HR"]  # P(HR) = 1 - 1e-434: certain
