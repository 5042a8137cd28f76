"""The statistics of the blind study against hand-computed values, its tables, plot and report command."""

import math
from itertools import combinations

import numpy as np
import pytest
from test_votes import TABLE, vote

from srlab import preference
from srlab.cli import main as srlab_main
from srlab.votes import COLUMNS, append_vote

Z2 = 1.959963984540054**2  # z^2 = 3.841459 for a 95 % interval


# ---------------------------------------------------------------- Wilson intervals and win rates


def test_wilson_interval_matches_hand_computed_values():
    # 7/10: p = .7, z^2/n = .3841459, centre = (.7 + .1920730) / 1.3841459 = .6444852,
    # half = 1.959964 / 1.3841459 * sqrt(.021 + .0096036) = 1.4160106 * .1749389 = .2477071
    assert preference.wilson_interval(7, 10) == pytest.approx((0.396778, 0.892209), abs=1e-5)
    # 0/5: lower bound 0, upper z^2 / (n + z^2) = 3.841459 / 8.841459 = .434482
    assert preference.wilson_interval(0, 5) == pytest.approx((0.0, 0.434482), abs=1e-5)
    # 10/10: lower n / (n + z^2) = 10 / 13.841459 = .722467, upper 1
    assert preference.wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-5)
    assert preference.wilson_interval(0, 0) == (0.0, 1.0)  # no data: anything is possible


def test_win_rates_count_ties_as_half_and_handle_a_method_never_chosen():
    rates = preference.win_rates(TABLE)
    assert {m: (r["wins"], r["ties"], r["losses"], r["n"]) for m, r in rates.items()} == {
        "A": (4, 1, 1, 6),
        "B": (2, 1, 2, 5),
        "C": (0, 0, 3, 3),
    }
    # A: (4 + .5) / 6 = .75; Wilson: z^2/n = .6402432, centre = (.75 + .3201216) / 1.6402432 = .6524164,
    # half = 1.959964 / 1.6402432 * sqrt(.75 * .25 / 6 + 3.841459 / 144) = 1.1949224 * .2406798 = .2875939
    triple = lambda r: (r["rate"], r["low"], r["high"])
    assert triple(rates["A"]) == pytest.approx((0.75, 0.364823, 0.940010), abs=1e-5)
    # B: 2.5 / 5 = .5; centre .5, half = 1.959964 / 1.7682918 * sqrt(.05 + .0384146) = 1.1083940 * .2973459
    assert triple(rates["B"]) == pytest.approx((0.5, 0.170424, 0.829576), abs=1e-5)
    # C: 0 / 3, upper z^2 / (3 + z^2) = 3.841459 / 6.841459 = .561497
    assert triple(rates["C"]) == pytest.approx((0.0, 0.0, 0.561497), abs=1e-5)


def test_pairwise_wins_split_ties():
    methods, wins = preference.pairwise_wins(TABLE)
    assert methods == ["A", "B", "C"]
    np.testing.assert_array_equal(wins, [[0, 2.5, 2], [1.5, 0, 1], [0, 0, 0]])


# ---------------------------------------------------------------- Bradley-Terry


def test_bradley_terry_two_methods_is_the_log_odds():
    votes = [vote("A", "B", "left")] * 3 + [vote("A", "B", "right"), vote("A", "B", "same")]
    # wins: A 3 + .5 = 3.5, B 1 + .5 = 1.5; the MLE has p_A / p_B = 3.5 / 1.5, centred: s_A = -s_B = log(7/3) / 2
    assert preference.bradley_terry(votes, prior=0) == pytest.approx({"A": 0.423649, "B": -0.423649}, abs=1e-6)
    # with one virtual tie per pair: (3.5 + .5) / (1.5 + .5) = 2, s_A = log(2) / 2 = .346574
    assert preference.bradley_terry(votes, prior=1) == pytest.approx({"A": 0.346574, "B": -0.346574}, abs=1e-6)


def test_bradley_terry_of_a_perfect_cycle_is_all_equal():
    votes = [vote("A", "B", "left"), vote("B", "C", "left"), vote("C", "A", "left")]
    assert preference.bradley_terry(votes, prior=0) == pytest.approx({"A": 0, "B": 0, "C": 0}, abs=1e-8)


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
    names, wins = preference.pairwise_wins(votes)
    for prior in (0, 1):
        fitted = preference.bradley_terry(votes, prior=prior)
        expected = _scipy_bradley_terry(wins + prior / 2 * (1 - np.eye(4)))
        assert [fitted[m] for m in names] == pytest.approx(expected.tolist(), abs=1e-4)


def test_bradley_terry_never_chosen_method_is_finite_with_the_prior_and_refused_without():
    with pytest.raises(ValueError, match="prior > 0"):
        preference.bradley_terry(TABLE, prior=0)  # C never won: its MLE score is -inf
    fitted = preference.bradley_terry(TABLE, prior=1)
    assert all(math.isfinite(s) for s in fitted.values())
    assert fitted["A"] > fitted["B"] > fitted["C"]
    # the same fit by scipy on the table plus half a win each way per pair
    expected = _scipy_bradley_terry(np.array([[0, 3, 2.5], [2, 0, 1.5], [0.5, 0.5, 0]]))
    assert [fitted[m] for m in "ABC"] == pytest.approx(expected.tolist(), abs=1e-4)


# ---------------------------------------------------------------- MOS


def test_mean_opinion_score_and_standard_error():
    votes = [
        vote("A", "B", "left", rl=4, rr=2),
        vote("B", "A", "right", rl=3, rr=5),
        vote("A", "C", "left", rl=3, rr=1),
    ]
    mos = preference.mean_opinion_scores(votes)
    # A: 4, 5, 3 -> mean 4, sample sd 1, se 1/sqrt(3) = .577350; B: 2, 3 -> 2.5, sd .707107, se .5; C: one rating
    assert (mos["A"]["mos"], mos["A"]["se"], mos["A"]["n"]) == pytest.approx((4.0, 0.577350, 3), abs=1e-6)
    assert (mos["B"]["mos"], mos["B"]["se"], mos["B"]["n"]) == pytest.approx((2.5, 0.5, 2), abs=1e-6)
    assert mos["C"]["mos"] == 1 and math.isnan(mos["C"]["se"])
    assert preference.mean_opinion_scores(TABLE) == {}  # no ratings, no MOS
    assert "MOS" in preference.results_table(votes) and "MOS" not in preference.results_table(TABLE)


def test_results_table_puts_people_next_to_psnr():
    metrics = {
        "A": {"psnr_y": 24.0, "ssim_y": 0.6},
        "B": {"psnr_y": 26.5, "ssim_y": 0.7},
        "C": {"psnr_y": 25.0, "ssim_y": 0.65},
    }
    lines = preference.results_table(TABLE, metrics).splitlines()
    assert lines[0].split(" | ")[-3:] == ["PSNR-Y (dB)", "SSIM-Y", "PSNR rank |"]
    # rows in Bradley-Terry order; A: win rate .75 [.36, .94], people rank 1 but PSNR rank 3
    assert lines[2].startswith("| A | 6 | 4 / 1 / 1 | 0.75 [0.36, 0.94] |")
    assert lines[2].endswith("| 1 | 24.00 | 0.6000 | 3 |")
    assert lines[4].startswith("| C | 3 | 0 / 0 / 3 | 0.00 [0.00, 0.56] |")
    assert lines[4].endswith("| 3 | 25.00 | 0.6500 | 2 |")


def test_plot_study_draws_rates_psnr_and_mos(tmp_path):
    votes = TABLE + [vote("A", "B", "left", rl=5, rr=2)]
    fig = preference.plot_study(votes, {"A": {"psnr_y": 24.0}, "B": {"psnr_y": 26.0}}, path=tmp_path / "study.png")
    assert len(fig.axes) == 3 and (tmp_path / "study.png").stat().st_size > 1000
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["C", "B", "A"]  # best-liked on top


def test_equal_scores_share_a_rank_in_the_table():
    votes = [vote("A", "B", "left"), vote("A", "C", "left"), vote("B", "C", "same")]
    metrics = {
        "A": {"psnr_y": 25.001, "ssim_y": 0.7},
        "B": {"psnr_y": 24.998, "ssim_y": 0.7},
        "C": {"psnr_y": 26.0, "ssim_y": 0.7},
        "HR": {"psnr_y": math.inf, "ssim_y": 1.0},
    }
    lines = preference.results_table(votes, metrics).splitlines()[2:]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines}
    assert rows["B"][5] == rows["C"][5] == "2" and rows["A"][5] == "1"  # B and C are symmetric: same BT score
    assert rows["A"][-1] == rows["B"][-1] == "3 |" and rows["C"][-1] == "2 |"  # 25.00 dB twice; HR (inf) ranks 1


# ---------------------------------------------------------------- the command line


def test_report_command_prints_the_table_of_pooled_files(tmp_path, capsys):
    a, b = tmp_path / "ann.csv", tmp_path / "bob.csv"
    for v in TABLE[:4]:
        append_vote(a, v)
    for v in TABLE[4:]:
        append_vote(b, v)
    with open(b, "a") as f:
        f.write("r1,img,0:0:8,A\n")  # line 5 of bob.csv
    assert srlab_main(["study", "report", str(a), str(b)]) == 0  # python -m srlab study report ...
    out, err = capsys.readouterr()
    assert "7 votes from 1 rater(s)" in out
    assert "| A | 6 | 4 / 1 / 1 | 0.75 [0.36, 0.94] |" in out
    assert "| C | 3 | 0 / 0 / 3 | 0.00 [0.00, 0.56] |" in out
    assert f"{b}:5: skipped a bad row" in err


def test_report_command_fails_clearly(tmp_path, capsys):
    assert srlab_main(["study", "report", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(COLUMNS) + "\n")
    assert srlab_main(["study", "report", str(empty)]) == 1
    assert "no valid votes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse: at least one file
        srlab_main(["study", "report"])
    assert exit_.value.code == 2


# ---------------------------------------------------------------- no conclusions from noise


def _sim(votes):
    return [vote(v.method_left, v.method_right, v.choice, rater="simulated") for v in votes]


TIED = {  # spread 28.46 - 28.42 = 0.04 dB < 0.05: a tie (HR's infinite PSNR is left out)
    "A": {"psnr_y": 28.42, "ssim_y": 0.80},
    "B": {"psnr_y": 28.44, "ssim_y": 0.81},
    "C": {"psnr_y": 28.46, "ssim_y": 0.82},
    "HR": {"psnr_y": math.inf, "ssim_y": 1.0},
}


def test_a_psnr_tie_is_a_spread_under_five_hundredths_of_a_db():
    note = preference.psnr_tie_note(TIED)
    assert note.startswith("No people-vs-PSNR comparison") and "A, B, C" in note and "28.42-28.46 dB" in note
    apart = {**TIED, "C": {"psnr_y": 28.48}}  # spread 0.06 dB: PSNR orders them
    assert preference.psnr_tie_note(apart) is None
    assert preference.psnr_tie_note(apart, methods=["A", "B", "HR"]) is not None  # 0.02 dB among those asked
    assert preference.psnr_tie_note({"A": {"psnr_y": 28.4}, "HR": {"psnr_y": math.inf}}) is None  # nothing to tie
    assert preference.psnr_tie_note(None) is None


def test_tied_psnrs_drop_the_psnr_rank_and_say_why():
    lines = preference.results_table(TABLE, TIED).splitlines()
    assert lines[0].split(" | ")[-2:] == ["PSNR-Y (dB)", "SSIM-Y |"] and "PSNR rank" not in lines[0]
    assert lines[2].endswith("| 28.42 | 0.8000 |")  # A: still its PSNR and SSIM, no rank
    assert lines[-2] == "" and lines[-1] == f"*{preference.psnr_tie_note(TIED, ['A', 'B', 'C'])}*"
    assert preference.people_vs_psnr(TABLE, TIED) == preference.psnr_tie_note(TIED, ["A", "B", "C"])


def test_people_vs_psnr_orders_with_shared_ranks():
    metrics = {"A": {"psnr_y": 24.0}, "B": {"psnr_y": 26.50}, "C": {"psnr_y": 26.47}}  # B, C within 0.05 dB
    # TABLE: people prefer A > B > C (test_bradley_terry_never_chosen...); PSNR: B = C (tie) > A
    assert preference.people_vs_psnr(TABLE, metrics) == (
        "people:           A > B > C\nPSNR:             B = C > A\n"
        "not told apart:   A ~ B ~ C (each one's 95 % interval overlaps the next one's)"  # 6, 5 and 3 comparisons
    )
    assert preference.people_vs_psnr(_sim(TABLE), metrics).startswith("simulated rater:  A > B > C\n")


def test_simulated_votes_say_so_in_the_table_the_matrix_the_plot_and_the_report(tmp_path):
    metrics = {"A": {"psnr_y": 24.0}, "B": {"psnr_y": 26.5}, "C": {"psnr_y": 25.0}}
    people = preference.results_table(TABLE, metrics)
    assert "imulated" not in people and "| people rank |" in people.splitlines()[0]
    table = preference.results_table(_sim(TABLE), metrics).splitlines()
    assert table[0] == (
        "*Simulated votes (all): a program voted, not people; these numbers show that the pipeline works.*"
    )
    assert "| simulated rater rank |" in table[2] and "people" not in table[2]
    mixed = preference.results_table(TABLE + _sim(TABLE[:2]), metrics).splitlines()
    assert mixed[0].startswith("*Simulated votes (2 of 9)") and "| people rank |" in mixed[2]
    assert preference.pairwise_table(_sim(TABLE)).startswith("| preferred over → (simulated votes) |")
    fig = preference.plot_study(_sim(TABLE), metrics)
    assert fig.axes[0].get_title() == "preferred by the simulated rater (7 votes)"
    assert fig.axes[1].get_title() == "metric vs simulated rater" and "simulated" in fig.axes[1].get_ylabel()
    assert fig._suptitle.get_text().startswith("Simulated votes (all)")
    path = tmp_path / "votes_simulated.csv"
    for v in _sim(TABLE):
        append_vote(path, v)
    assert "Simulated votes (all)" in preference.report([path])


def test_plot_of_tied_psnrs_shows_the_sentence_not_a_scatter():
    import matplotlib.collections

    fig = preference.plot_study(TABLE, TIED)
    ax = fig.axes[1]
    assert not any(isinstance(c, matplotlib.collections.PathCollection) for c in ax.collections)
    assert [t.get_text() for t in ax.texts] == [preference.psnr_tie_note(TIED, ["A", "B", "C"])]
    assert fig._suptitle is None  # people's votes: no "simulated" banner


def test_only_neighbours_whose_intervals_overlap_are_called_not_told_apart():
    """A printed "A > B > C" from a handful of votes read as a finding; now a third line names
    the neighbours that the votes do not separate (Wilson intervals from scipy as the reference)."""
    from scipy.stats import binomtest

    votes = [vote("A", "B", "left")] * 30 + [vote("A", "C", "left")] * 30
    votes += [vote("B", "C", "left")] * 15 + [vote("B", "C", "right")] * 15
    metrics = {"A": {"psnr_y": 30.0}, "B": {"psnr_y": 29.0}, "C": {"psnr_y": 28.0}}
    a, b = binomtest(60, 60).proportion_ci(method="wilson"), binomtest(15, 45).proportion_ci(method="wilson")
    assert a.low > b.high  # A apart from B; B and C won 15 of 45 each: the same interval
    assert preference.people_vs_psnr(votes, metrics).splitlines()[2] == (
        "not told apart:   B ~ C (each one's 95 % interval overlaps the next one's)"
    )
    assert len(preference.people_vs_psnr(votes[:60] + [vote("B", "C", "left")] * 30, metrics).splitlines()) == 2
