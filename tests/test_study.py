"""The blind preference study: statistics against hand-computed values, the vote CSV, the widget."""

import csv
import math
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from srlab import study
from srlab.study import Vote

T = "2025-01-01T10:00:00+00:00"
Z2 = 1.959963984540054**2  # z^2 = 3.841459 for a 95 % interval


def vote(left, right, choice, rater="r1", image="img", rl=None, rr=None):
    return Vote(rater, image, "0:0:8", left, right, choice, rl, rr, T)


# A beats B twice, B beats A once, one tie; A beats C twice (once from each side); B beats C once.
# C is never chosen.
TABLE = [vote("A", "B", "left"), vote("A", "B", "left"), vote("A", "B", "right"), vote("B", "A", "same"),
         vote("A", "C", "left"), vote("C", "A", "right"), vote("C", "B", "right")]


# ---------------------------------------------------------------- Wilson intervals and win rates


def test_wilson_interval_matches_hand_computed_values():
    # 7/10: p = .7, z^2/n = .3841459, centre = (.7 + .1920730) / 1.3841459 = .6444852,
    # half = 1.959964 / 1.3841459 * sqrt(.021 + .0096036) = 1.4160106 * .1749389 = .2477071
    assert study.wilson_interval(7, 10) == pytest.approx((0.396778, 0.892209), abs=1e-5)
    # 0/5: lower bound 0, upper z^2 / (n + z^2) = 3.841459 / 8.841459 = .434482
    assert study.wilson_interval(0, 5) == pytest.approx((0.0, 0.434482), abs=1e-5)
    # 10/10: lower n / (n + z^2) = 10 / 13.841459 = .722467, upper 1
    assert study.wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-5)
    assert study.wilson_interval(0, 0) == (0.0, 1.0)  # no data: anything is possible


def test_win_rates_count_ties_as_half_and_handle_a_method_never_chosen():
    rates = study.win_rates(TABLE)
    assert {m: (r["wins"], r["ties"], r["losses"], r["n"]) for m, r in rates.items()} == {
        "A": (4, 1, 1, 6), "B": (2, 1, 2, 5), "C": (0, 0, 3, 3)}
    # A: (4 + .5) / 6 = .75; Wilson: z^2/n = .6402432, centre = (.75 + .3201216) / 1.6402432 = .6524164,
    # half = 1.959964 / 1.6402432 * sqrt(.75 * .25 / 6 + 3.841459 / 144) = 1.1949224 * .2406798 = .2875939
    triple = lambda r: (r["rate"], r["low"], r["high"])
    assert triple(rates["A"]) == pytest.approx((0.75, 0.364823, 0.940010), abs=1e-5)
    # B: 2.5 / 5 = .5; centre .5, half = 1.959964 / 1.7682918 * sqrt(.05 + .0384146) = 1.1083940 * .2973459
    assert triple(rates["B"]) == pytest.approx((0.5, 0.170424, 0.829576), abs=1e-5)
    # C: 0 / 3, upper z^2 / (3 + z^2) = 3.841459 / 6.841459 = .561497
    assert triple(rates["C"]) == pytest.approx((0.0, 0.0, 0.561497), abs=1e-5)


def test_pairwise_wins_split_ties():
    methods, wins = study.pairwise_wins(TABLE)
    assert methods == ["A", "B", "C"]
    np.testing.assert_array_equal(wins, [[0, 2.5, 2], [1.5, 0, 1], [0, 0, 0]])


# ---------------------------------------------------------------- Bradley-Terry


def test_bradley_terry_two_methods_is_the_log_odds():
    votes = [vote("A", "B", "left")] * 3 + [vote("A", "B", "right"), vote("A", "B", "same")]
    # wins: A 3 + .5 = 3.5, B 1 + .5 = 1.5; the MLE has p_A / p_B = 3.5 / 1.5, centred: s_A = -s_B = log(7/3) / 2
    assert study.bradley_terry(votes, prior=0) == pytest.approx({"A": 0.423649, "B": -0.423649}, abs=1e-6)
    # with one virtual tie per pair: (3.5 + .5) / (1.5 + .5) = 2, s_A = log(2) / 2 = .346574
    assert study.bradley_terry(votes, prior=1) == pytest.approx({"A": 0.346574, "B": -0.346574}, abs=1e-6)


def test_bradley_terry_of_a_perfect_cycle_is_all_equal():
    votes = [vote("A", "B", "left"), vote("B", "C", "left"), vote("C", "A", "left")]
    assert study.bradley_terry(votes, prior=0) == pytest.approx({"A": 0, "B": 0, "C": 0}, abs=1e-8)


def _scipy_bradley_terry(wins: np.ndarray) -> np.ndarray:
    """Independent reference: maximise sum_ij W_ij log sigmoid(s_i - s_j) with scipy, centre."""
    from scipy.optimize import minimize

    def nll(s):
        diff = s[:, None] - s[None, :]
        return float(np.sum(wins * np.logaddexp(0, -diff)))

    s = minimize(nll, np.zeros(len(wins)), method="BFGS", options={"gtol": 1e-10}).x
    return s - s.mean()


def test_bradley_terry_matches_a_direct_likelihood_maximisation():
    rng = np.random.default_rng(3)
    methods = ["A", "B", "C", "D"]
    strength = dict(zip(methods, [1.0, 0.3, 0.0, -0.8]))
    votes = []
    for a, b in combinations(methods, 2):
        for _ in range(12):
            p = 1 / (1 + math.exp(strength[b] - strength[a]))
            u = rng.random()
            votes.append(vote(a, b, "same" if u < 0.1 else "left" if rng.random() < p else "right"))
    names, wins = study.pairwise_wins(votes)
    for prior in (0, 1):
        fitted = study.bradley_terry(votes, prior=prior)
        expected = _scipy_bradley_terry(wins + prior / 2 * (1 - np.eye(4)))
        assert [fitted[m] for m in names] == pytest.approx(expected.tolist(), abs=1e-4)


def test_bradley_terry_never_chosen_method_is_finite_with_the_prior_and_refused_without():
    with pytest.raises(ValueError, match="prior > 0"):
        study.bradley_terry(TABLE, prior=0)  # C never won: its MLE score is -inf
    fitted = study.bradley_terry(TABLE, prior=1)
    assert all(math.isfinite(s) for s in fitted.values())
    assert fitted["A"] > fitted["B"] > fitted["C"]
    # the same fit by scipy on the table plus half a win each way per pair
    expected = _scipy_bradley_terry(np.array([[0, 3, 2.5], [2, 0, 1.5], [0.5, 0.5, 0]]))
    assert [fitted[m] for m in "ABC"] == pytest.approx(expected.tolist(), abs=1e-4)


# ---------------------------------------------------------------- MOS


def test_mean_opinion_score_and_standard_error():
    votes = [vote("A", "B", "left", rl=4, rr=2), vote("B", "A", "right", rl=3, rr=5),
             vote("A", "C", "left", rl=3, rr=1)]
    mos = study.mean_opinion_scores(votes)
    # A: 4, 5, 3 -> mean 4, sample sd 1, se 1/sqrt(3) = .577350; B: 2, 3 -> 2.5, sd .707107, se .5; C: one rating
    assert (mos["A"]["mos"], mos["A"]["se"], mos["A"]["n"]) == pytest.approx((4.0, 0.577350, 3), abs=1e-6)
    assert (mos["B"]["mos"], mos["B"]["se"], mos["B"]["n"]) == pytest.approx((2.5, 0.5, 2), abs=1e-6)
    assert mos["C"]["mos"] == 1 and math.isnan(mos["C"]["se"])
    assert study.mean_opinion_scores(TABLE) == {}  # no ratings, no MOS
    assert "MOS" in study.results_table(votes) and "MOS" not in study.results_table(TABLE)


def test_results_table_puts_people_next_to_psnr():
    metrics = {"A": {"psnr_y": 24.0, "ssim_y": 0.6}, "B": {"psnr_y": 26.5, "ssim_y": 0.7},
               "C": {"psnr_y": 25.0, "ssim_y": 0.65}}
    lines = study.results_table(TABLE, metrics).splitlines()
    assert lines[0].split(" | ")[-3:] == ["PSNR-Y (dB)", "SSIM-Y", "PSNR rank |"]
    # rows in Bradley-Terry order; A: win rate .75 [.36, .94], people rank 1 but PSNR rank 3
    assert lines[2].startswith("| A | 6 | 4 / 1 / 1 | 0.75 [0.36, 0.94] |")
    assert lines[2].endswith("| 1 | 24.00 | 0.6000 | 3 |")
    assert lines[4].startswith("| C | 3 | 0 / 0 / 3 | 0.00 [0.00, 0.56] |")
    assert lines[4].endswith("| 3 | 25.00 | 0.6500 | 2 |")


# ---------------------------------------------------------------- the CSV


def _write_csv(path, lines):
    path.write_text("\n".join(lines) + "\n")


def test_bad_and_truncated_rows_are_reported_with_their_line_and_skipped(tmp_path):
    header = ",".join(study.COLUMNS)
    good = f"ann,img,0:0:8,A,B,left,,,{T}"
    path = tmp_path / "votes.csv"
    _write_csv(path, [header, good,
                      "ann,img,0:0:8,A,B,left,,,2025-01-0",  # 3: time cut off
                      "ann,img,0:0:8,A,B",  # 4: truncated
                      f"ann,img,0:0:8,A,B,maybe,,,{T}",  # 5: unknown choice
                      f'ann,"img,0:0:8,A,B,left,,,{T}',  # 6: unbalanced quote must not swallow line 7
                      f"ann,img,0:0:8,A,B,right,7,,{T}",  # 7: rating out of 1-5
                      "", header,  # a blank line and a repeated header (files joined with cat): not errors
                      good.replace("left", "same")])
    with pytest.warns(study.BadVoteRow) as caught:
        votes = study.read_votes(path)
    assert [v.choice for v in votes] == ["left", "same"]
    messages = [str(w.message) for w in caught]
    assert [m.split(": ")[0] for m in messages] == [f"{path}:{n}" for n in (3, 4, 5, 6, 7)]
    assert "ISO 8601" in messages[0] and "found 5" in messages[1] and "'maybe'" in messages[2]
    assert "rating_left '7'" in messages[4]


def test_appending_after_a_torn_last_line_keeps_the_new_vote(tmp_path):
    path = tmp_path / "votes.csv"
    study.append_vote(path, vote("A", "B", "left"))
    with open(path, "a") as f:
        f.write("r1,img,0:0:8,A,B,ri")  # a crash in the middle of a write
    study.append_vote(path, vote("A", "B", "right"))
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(study.COLUMNS) and len(lines) == 4  # header written once
    with pytest.warns(study.BadVoteRow, match=":3: "):
        votes = study.read_votes(path)
    assert [v.choice for v in votes] == ["left", "right"]


def test_several_raters_files_merge_and_round_trip(tmp_path):
    a, b = tmp_path / "ann.csv", tmp_path / "bob.csv"
    for v in TABLE[:4]:
        study.append_vote(a, v)
    for v in TABLE[4:]:
        study.append_vote(b, Vote("bob", *[getattr(v, f) for f in study.COLUMNS[1:]]))
    merged = study.read_votes([a, b])
    assert [(v.rater, v.method_left, v.method_right, v.choice) for v in merged] == \
        [("r1", v.method_left, v.method_right, v.choice) for v in TABLE[:4]] + \
        [("bob", v.method_left, v.method_right, v.choice) for v in TABLE[4:]]
    pooled = study.write_votes(tmp_path / "class.csv", merged)
    assert study.read_votes(pooled) == merged
    with pytest.raises(FileNotFoundError, match="nobody.csv"):
        study.read_votes([a, tmp_path / "nobody.csv"])


# ---------------------------------------------------------------- the command line


def test_report_command_prints_the_table_of_pooled_files(tmp_path, capsys):
    a, b = tmp_path / "ann.csv", tmp_path / "bob.csv"
    for v in TABLE[:4]:
        study.append_vote(a, v)
    for v in TABLE[4:]:
        study.append_vote(b, v)
    with open(b, "a") as f:
        f.write("r1,img,0:0:8,A\n")  # line 5 of bob.csv
    from srlab.cli import main as srlab_main

    assert srlab_main(["study", "report", str(a), str(b)]) == 0  # python -m srlab study report ...
    out, err = capsys.readouterr()
    assert "7 votes from 1 rater(s)" in out
    assert "| A | 6 | 4 / 1 / 1 | 0.75 [0.36, 0.94] |" in out
    assert "| C | 3 | 0 / 0 / 3 | 0.00 [0.00, 0.56] |" in out
    assert f"{b}:5: skipped a bad row" in err


def test_report_command_fails_clearly(tmp_path, capsys):
    assert study.main(["report", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(study.COLUMNS) + "\n")
    assert study.main(["report", str(empty)]) == 1
    assert "no valid votes" in capsys.readouterr().err
    assert study.main(["report"]) == 2  # argparse: at least one file


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
    return {m for m in METHODS for t in _texts(widget)
            if (m.lower() in t.lower() if isinstance(t, str) else m.encode() in t)}


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
            np.testing.assert_array_equal(_shown(s.views[side], 2),
                                          images[t.image][method][top : top + size, left : left + size])
        s.buttons[choices[i % 3]].click()
        expected.append(["ann", t.image, f"{top}:{left}:{size}", t.left, t.right, choices[i % 3], "", ""])
        assert len(path.read_text().splitlines()) == i + 2  # written at the click: header + i + 1 votes
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(study.COLUMNS)
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
    assert study.read_votes(path) == [Vote("ann", t.image, study.read_votes(path)[0].crop, t.left, t.right, "right",
                                           2, 5, study.read_votes(path)[0].time)]
    assert s.rating_buttons["left"].value is None  # reset for the next comparison


def test_a_resumed_session_skips_what_the_rater_already_did(images, tmp_path):
    path = tmp_path / "votes.csv"
    first = study.BlindStudy(images, path, rater="ann", crop=16, seed=3)
    for _ in range(5):
        first.buttons["left"].click()
    done = [(v.image, frozenset((v.method_left, v.method_right))) for v in study.read_votes(path)]
    assert len(done) == 5
    other = study.BlindStudy(images, path, rater="bob", crop=16, seed=4)  # another rater starts from scratch
    assert len(other.trials) == 12
    again = study.BlindStudy(images, path, rater="ann", crop=16, seed=5)
    remaining = [(t.image, frozenset((t.left, t.right))) for t in again.trials]
    assert len(remaining) == 7 and Counter(remaining + done) == Counter(
        (i, frozenset(p)) for i in images for p in combinations(METHODS, 2))


def test_simulated_rater_who_always_prefers_one_method_ranks_it_first(images, tmp_path):
    s = study.BlindStudy(images, tmp_path / "votes.csv", rater="sim", crop=16, repeats=2, seed=0)
    votes = study.simulate_votes(s, {"secret_method": 1.0, "bicubic": 0.0, "ESRGAN": 0.0, "SRResNet": 0.0}, noise=0)
    assert len(votes) == 24 and s.finished
    assert all(v.winner == "secret_method" for v in votes if "secret_method" in (v.method_left, v.method_right))
    summary = study.summarize(study.read_votes(tmp_path / "votes.csv"))
    assert summary[0]["method"] == "secret_method" and summary[0]["rate"] == 1.0
    assert summary[0]["bt"] > max(r["bt"] for r in summary[1:]) + 1


def test_a_noisy_simulated_rater_is_recovered_in_order(images, tmp_path):
    s = study.BlindStudy(images, tmp_path / "votes.csv", rater="sim", crop=16, repeats=25, ratings=True, seed=0)
    quality = {"secret_method": 1.5, "ESRGAN": 0.5, "SRResNet": -0.5, "bicubic": -1.5}
    study.simulate_votes(s, quality, noise=1.0, tie=0.1, seed=1)
    summary = study.summarize(s.votes)
    assert [r["method"] for r in summary] == sorted(quality, key=quality.get, reverse=True)
    mos = study.mean_opinion_scores(s.votes)
    assert mos["secret_method"]["mos"] > mos["bicubic"]["mos"] + 1


def test_plot_study_draws_rates_psnr_and_mos(tmp_path):
    votes = TABLE + [vote("A", "B", "left", rl=5, rr=2)]
    fig = study.plot_study(votes, {"A": {"psnr_y": 24.0}, "B": {"psnr_y": 26.0}}, path=tmp_path / "study.png")
    assert len(fig.axes) == 3 and (tmp_path / "study.png").stat().st_size > 1000
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["C", "B", "A"]  # best-liked on top


def test_a_simulated_rater_can_judge_the_crops_it_is_shown(tmp_path):
    # four flat grey "methods": the rater likes brightness, q = mean / 50 = 1, 2, 3, 4
    grey = {f"g{v}": np.full((24, 24, 3), v, np.uint8) for v in (50, 100, 150, 200)}
    s = study.BlindStudy({"flat": grey, "flat2": grey}, tmp_path / "votes.csv", rater="sim", crop=8,
                         ratings=True, seed=0)
    votes = study.simulate_votes(s, lambda image, method: float(s.crop_of(image, method).mean()) / 50, noise=0)
    assert all(v.winner == max(v.method_left, v.method_right, key=lambda m: int(m[1:])) for v in votes)
    assert [r["method"] for r in study.summarize(votes)] == ["g200", "g150", "g100", "g50"]
    # ratings round(3 + q) clipped to 1-5: g50 -> 4, the others -> 5, every time (so SE 0)
    mos = study.mean_opinion_scores(votes)
    assert {m: (r["mos"], r["se"]) for m, r in mos.items()} == {"g50": (4, 0), "g100": (5, 0), "g150": (5, 0),
                                                                "g200": (5, 0)}


def test_equal_scores_share_a_rank_in_the_table():
    votes = [vote("A", "B", "left"), vote("A", "C", "left"), vote("B", "C", "same")]
    metrics = {"A": {"psnr_y": 25.001, "ssim_y": 0.7}, "B": {"psnr_y": 24.998, "ssim_y": 0.7},
               "C": {"psnr_y": 26.0, "ssim_y": 0.7}, "HR": {"psnr_y": math.inf, "ssim_y": 1.0}}
    lines = study.results_table(votes, metrics).splitlines()[2:]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines}
    assert rows["B"][5] == rows["C"][5] == "2" and rows["A"][5] == "1"  # B and C are symmetric: same BT score
    assert rows["A"][-1] == rows["B"][-1] == "3 |" and rows["C"][-1] == "2 |"  # 25.00 dB twice; HR (inf) ranks 1
