"""The vote CSV of the blind study: bad and torn rows, appending after a crash, merging raters.

``vote``, ``T`` and ``TABLE`` are shared with test_preference.py and test_study.py.
"""

import pytest

from srlab.votes import COLUMNS, BadVoteRow, Vote, append_vote, read_votes, write_votes

T = "2025-01-01T10:00:00+00:00"


def vote(left, right, choice, rater="r1", image="img", rl=None, rr=None):
    return Vote(rater, image, "0:0:8", left, right, choice, rl, rr, T)


# A beats B twice, B beats A once, one tie; A beats C twice (once from each side); B beats C once.
# C is never chosen.
TABLE = [
    vote("A", "B", "left"),
    vote("A", "B", "left"),
    vote("A", "B", "right"),
    vote("B", "A", "same"),
    vote("A", "C", "left"),
    vote("C", "A", "right"),
    vote("C", "B", "right"),
]


# ---------------------------------------------------------------- the CSV


def _write_csv(path, lines):
    path.write_text("\n".join(lines) + "\n")


def test_bad_and_truncated_rows_are_reported_with_their_line_and_skipped(tmp_path):
    header = ",".join(COLUMNS)
    good = f"ann,img,0:0:8,A,B,left,,,{T}"
    path = tmp_path / "votes.csv"
    _write_csv(
        path,
        [
            header,
            good,
            "ann,img,0:0:8,A,B,left,,,2025-01-0",  # 3: time cut off
            "ann,img,0:0:8,A,B",  # 4: truncated
            f"ann,img,0:0:8,A,B,maybe,,,{T}",  # 5: unknown choice
            f'ann,"img,0:0:8,A,B,left,,,{T}',  # 6: unbalanced quote must not swallow line 7
            f"ann,img,0:0:8,A,B,right,7,,{T}",  # 7: rating out of 1-5
            "",
            header,  # a blank line and a repeated header (files joined with cat): not errors
            good.replace("left", "same"),
        ],
    )
    with pytest.warns(BadVoteRow) as caught:
        votes = read_votes(path)
    assert [v.choice for v in votes] == ["left", "same"]
    messages = [str(w.message) for w in caught]
    assert [m.split(": ")[0] for m in messages] == [f"{path}:{n}" for n in (3, 4, 5, 6, 7)]
    assert "ISO 8601" in messages[0] and "found 5" in messages[1] and "'maybe'" in messages[2]
    assert "rating_left '7'" in messages[4]


def test_appending_after_a_torn_last_line_keeps_the_new_vote(tmp_path):
    path = tmp_path / "votes.csv"
    append_vote(path, vote("A", "B", "left"))
    with open(path, "a") as f:
        f.write("r1,img,0:0:8,A,B,ri")  # a crash in the middle of a write
    append_vote(path, vote("A", "B", "right"))
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 4  # header written once
    with pytest.warns(BadVoteRow, match=":3: "):
        votes = read_votes(path)
    assert [v.choice for v in votes] == ["left", "right"]


def test_several_raters_files_merge_and_round_trip(tmp_path):
    a, b = tmp_path / "ann.csv", tmp_path / "bob.csv"
    for v in TABLE[:4]:
        append_vote(a, v)
    for v in TABLE[4:]:
        append_vote(b, Vote("bob", *[getattr(v, f) for f in COLUMNS[1:]]))
    merged = read_votes([a, b])
    assert [(v.rater, v.method_left, v.method_right, v.choice) for v in merged] == [
        ("r1", v.method_left, v.method_right, v.choice) for v in TABLE[:4]
    ] + [("bob", v.method_left, v.method_right, v.choice) for v in TABLE[4:]]
    pooled = write_votes(tmp_path / "class.csv", merged)
    assert read_votes(pooled) == merged
    with pytest.raises(FileNotFoundError, match="nobody.csv"):
        read_votes([a, tmp_path / "nobody.csv"])


def test_a_simulated_rater_is_known_by_its_id():
    from srlab.votes import is_simulated

    assert is_simulated("simulated") and is_simulated("Simulated-sharpness")
    assert is_simulated(vote("A", "B", "left", rater="simulated"))
    assert not is_simulated("ann") and not is_simulated("sim") and not is_simulated(vote("A", "B", "left"))


def test_a_vote_without_a_time_is_stamped_and_read_back(tmp_path):
    """Vote's time defaults to "", which read_votes skips as a bad row: the vote was lost."""
    from datetime import datetime, timezone

    append_vote(tmp_path / "v.csv", Vote("ann", "baboon.png", "0:0:64", "esrgan", "bicubic", "left"))
    (back,) = read_votes(tmp_path / "v.csv")
    assert (back.rater, back.winner) == ("ann", "esrgan")
    age = datetime.now(timezone.utc) - datetime.fromisoformat(back.time)
    assert abs(age.total_seconds()) < 60


def test_write_votes_replaces_the_file_at_once_and_writes_a_header_for_no_votes(tmp_path, monkeypatch):
    """It deleted the file, then appended row by row: a write cut off midway lost the old votes."""
    from srlab import votes as votes_module

    path = tmp_path / "pooled.csv"
    old = [vote("a", "b", "left", rater=f"r{k}") for k in range(5)]
    write_votes(path, old)
    calls = {"n": 0}
    real = votes_module._cells

    def cut_off(v):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(v)

    monkeypatch.setattr(votes_module, "_cells", cut_off)
    with pytest.raises(KeyboardInterrupt):
        write_votes(path, old + [vote("a", "b", "right", rater="r9")])
    assert [v.rater for v in read_votes(path)] == [f"r{k}" for k in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pooled.csv"]  # no temporary file left
    monkeypatch.undo()
    empty = write_votes(tmp_path / "empty.csv", [])
    assert empty.read_text().splitlines() == [",".join(COLUMNS)] and read_votes(empty) == []
