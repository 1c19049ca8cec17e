import math

import pytest
import torch

from helpers.course.checks import (
    CheckFailed,
    check_at_least,
    check_at_most,
    check_close,
    check_decreasing,
    check_finite,
    check_range,
    check_shape,
    check_true,
)


def test_check_shape_passes_and_reports_mismatch(capsys):
    check_shape(torch.zeros(2, 3), (2, None), "x")
    assert "✓ x: shape (2, 3)" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match=r"expected \(2, 4\), got \(2, 3\) \(dimension 1 differ"):
        check_shape(torch.zeros(2, 3), (2, 4), "x")
    with pytest.raises(CheckFailed, match="3 dimensions instead of 2"):
        check_shape(torch.zeros(2, 3, 1), (2, 3), "x")
    with pytest.raises(CheckFailed, match="missing transpose"):
        check_shape(torch.zeros(3, 2), (2, 3), "x")


def test_check_close_reports_max_error_and_location():
    a = torch.zeros(3, 4)
    b = a.clone()
    b[1, 2] = 0.5
    assert check_close(a, a, verbose=False) == 0.0
    with pytest.raises(CheckFailed) as info:
        check_close(b, a, atol=1e-5, name="attention")
    text = str(info.value)
    assert "attention: max abs error 0.5" in text and "worst at index (1, 2)" in text
    assert "1 of 12 values off" in text
    with pytest.raises(CheckFailed, match="shape mismatch"):
        check_close(torch.zeros(2), torch.zeros(3))
    with pytest.raises(CheckFailed, match="NaN/inf"):
        check_close(torch.tensor([math.nan]), torch.tensor([0.0]))


def test_check_close_hint_is_shown():
    with pytest.raises(CheckFailed, match="Hint: divide by sqrt"):
        check_close(torch.ones(1), torch.zeros(1), hint="divide by sqrt(d_k)")


def test_check_range_and_finite():
    check_range(torch.tensor([-1.0, 1.0]), -1, 1, verbose=False)
    with pytest.raises(CheckFailed, match=r"values span \[-1, 2\]"):
        check_range(torch.tensor([-1.0, 2.0]), -1, 1)
    with pytest.raises(CheckFailed, match="1 of 2 values are NaN or inf"):
        check_finite(torch.tensor([1.0, math.inf]))


def test_check_decreasing():
    drop = check_decreasing([4, 3, 2, 1, 0.5], min_drop=0.5, verbose=False)
    assert drop > 0.5
    with pytest.raises(CheckFailed, match="did not fall enough"):
        check_decreasing([1, 1, 1, 1, 1])
    with pytest.raises(CheckFailed, match="at least 2 values"):
        check_decreasing([1])
    with pytest.raises(CheckFailed, match="NaN"):
        check_decreasing([1, math.nan])


def test_thresholds_and_true():
    check_at_least(0.9, 0.5, verbose=False)
    check_at_most(0.1, 0.5, verbose=False)
    with pytest.raises(CheckFailed, match="below the required 0.5"):
        check_at_least(0.1, 0.5, "accuracy")
    with pytest.raises(CheckFailed, match="above the allowed"):
        check_at_most(1.0, 0.5)
    with pytest.raises(CheckFailed, match="cond: it broke"):
        check_true(False, "cond", "it broke")
    assert issubclass(CheckFailed, AssertionError)


def test_paper_vs_run_table(capsys):
    from helpers.course.compare import markdown, paper_vs_run

    rows = paper_vs_run([("BLEU", "27.3 (Table 2)", "25.0 | Multi30k", "data"),
                         {"what": "steps", "paper": "100,000 (§5.2)", "this run": "250"}])
    assert rows[1] == {"what": "steps", "paper": "100,000 (§5.2)", "this run": "250", "what differs": ""}
    printed = capsys.readouterr().out
    assert "Paper vs. this run" in printed and "this run: 25.0 | Multi30k" in printed
    table = markdown(rows)
    assert "| what | paper | this run | what differs |" in table and "25.0 \\| Multi30k" in table
    with pytest.raises(ValueError, match="'paper' is empty"):
        paper_vs_run([("BLEU", "", "25.0")], show=False)
    with pytest.raises(ValueError, match="give 3 or 4 fields"):
        paper_vs_run([("BLEU", "27.3")], show=False)
    with pytest.raises(ValueError, match="no rows"):
        paper_vs_run([], show=False)


def test_a_run_stopped_early_is_not_judged_and_says_how_to_continue(capsys):
    stopped = {"steps_done": 12, "steps_planned": 250, "stopped_early": "time limit"}
    # each result check: a value that would fail is not judged, and the run record keeps its name
    check_at_least(3.0, 80.0, "BLEU", run=stopped)
    check_at_most(9.0, 1.0, "loss", run=stopped)
    check_true(False, "G beats untrained G", "no", run=stopped)
    check_decreasing([1.0, 2.0], "training loss", run=stopped)
    check_close(torch.ones(2), torch.zeros(2), name="weights", run=stopped)
    check_range(torch.tensor([5.0]), -1, 1, "samples", run=stopped)
    out = capsys.readouterr().out
    assert out.count("not judged") == 6, out
    assert "BLEU (3, needs at least 80): training stopped after 12 of 250 steps (time limit)" in out
    assert "run the notebook again to continue" in out
    assert stopped["not_judged"] == ["BLEU", "loss", "G beats untrained G", "training loss", "weights", "samples"]
    check_true(False, "BLEU", "no", run=stopped)  # named once however often it is not judged
    assert stopped["not_judged"].count("BLEU") == 1


def test_a_finished_run_is_judged_as_usual():
    finished = {"steps_done": 250, "steps_planned": 250, "stopped_early": None}
    with pytest.raises(CheckFailed, match="below the required 80"):
        check_at_least(3.0, 80.0, "BLEU", run=finished)
    with pytest.raises(CheckFailed):
        check_true(False, "G beats untrained G", "no", run=finished)
    assert "not_judged" not in finished


def test_a_paired_claim_needs_two_pairs_and_every_pair_on_its_side():
    from helpers.course.compare import paired_verdict

    # one pair: no estimate of its own noise, however large (week 4d's smoke rows)
    assert paired_verdict([0.30], min_change=0.02) == "inconclusive"
    assert paired_verdict([-0.30], min_change=0.02) == "inconclusive"
    assert paired_verdict([0.05, 0.04], min_change=0.02) == "holds"
    assert paired_verdict([0.08, -0.001], min_change=0.02) == "not shown"  # one pair the other way
    assert paired_verdict([0.015, 0.012], min_change=0.02) == "not shown"  # too small on average
    assert paired_verdict([0.0, 0.0], min_change=0.0) == "not shown"  # no threshold equal to "no change"
