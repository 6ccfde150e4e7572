"""Autograding that cannot be gamed: every row of the issue's table, graded in ONE batch beside correct answers.

The hostile submissions are generated from the committed release and the source's solutions
(grading/coursegrader/hostile.py): each attacks the first graded function of hw1 (the input
transformer the last one). Each must earn exactly its expected score, be flagged where the table
says so, and leave the gradebook, the solutions and the other students untouched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from coursegrader import feedback, nbutil, samples
from coursegrader.autograde import grade_submissions
from coursegrader.settings import Course

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

if shutil.which("bwrap") is None or os.geteuid() != 0:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI=true but bubblewrap is missing (or not root): the hostile tests cannot run")
    pytest.skip("bubblewrap (bwrap) missing or not root: apt-get install -y bubblewrap", allow_module_level=True)

REAL = Course.default()
AID = "hw1_matrix_gradients"
# correct answers graded in the same batch as the attacks (their kernels must be unharmed). Not the torch
# assignments (hw3, hw5): a cold `import torch` under heavy load can outlast this batch's 10 s cell timeout.
NEIGHBOURS = ("hw1_matrix_gradients", "hw2_backprop", "hw4_low_rank", "hw6_randomized_low_rank")
FLAGGED = {
    "hostile_patch_checker": "tampering suspected",
    "hostile_input_transformer": "tampering suspected",
    "hostile_os_exit": "kernel died",
    "hostile_loop_in_function": "CallTimeout",
    "hostile_loop_top_level": "timed out",
    "hostile_print_flood": "OutputFlood",
    "hostile_fork_bomb": ("fork bomb", "process budget", "CallTimeout"),  # (the bomb or its deadline first)
    "hostile_test_cells": "restored and run",
    "hostile_sigint_ignored": "timed out",
    "hostile_trickle_reply": "CallTimeout",
    "hostile_disk_fill": "disk budget",
    "hostile_huge_reply": "refused",
    "hostile_huge_messages": "output too large",
    "hostile_huge_error": "output too large",
    "hostile_huge_display_in_call": "output too large",
    # the cell's output limit (characters kept) or the bound on messages per cell: either cuts it first
    "hostile_message_flood": ("output too large", "printed too much"),
    # which budget stops these first depends on the machine's speed: any is a secure verdict
    "hostile_memory_fanout": ("memory budget of the kernel", "CallTimeout"),
    "hostile_memory_bomb": ("MemoryError", "CallTimeout"),  # (its 1-core quota makes 3 GiB slow)
    "hostile_cpu_fanout": ("processes left running", "CallTimeout", "fork bomb"),
}
# the sandbox's limits for this batch (nbgrader_config.py's c.Sandbox): small, so the rows are cheap
# (the time budget per submission is tested alone: tests/test_grading_machinery.py)
SANDBOX = {"home_size": 128 * 2**20, "message_bytes": 2**20}


def _course(tmp_path_factory, name: str, timeout: int) -> Course:
    root = tmp_path_factory.mktemp(name)
    (root / "solutions").symlink_to(REAL.source, target_is_directory=True)
    shutil.copytree(REAL.release, root / "assignments")
    course = Course.at(root, timeout=timeout)
    for key, value in SANDBOX.items():
        course.config.Sandbox[key] = value
    return course


def _grade(course: Course, built: list, correct_of: tuple, source: dict) -> dict:
    """Grade the rows beside the correct answers of ``correct_of`` in one batch, make the feedback."""
    correct = [s for aid in correct_of for s in samples.build_course(course, assignments=[aid]) if s.name == "solution"]
    expected = samples.write(built + correct, course.submitted)
    results = grade_submissions(course, course.submissions(), progress=False, engine="sandbox", jobs=2)
    fb = feedback.generate(course, [(r.assignment, r.student) for r in results], progress=False)
    return dict(
        course=course,
        expected=expected,
        results={r.key: r for r in results},
        feedback={f"{f.assignment}/{f.student}": f for f in fb},
        source=source,
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from coursegrader import hostile

    course = _course(tmp_path_factory, "hostile", 10)
    source = nbutil.read_nb(REAL.source / AID / f"{AID}.ipynb")
    rel = nbutil.read_nb(REAL.release / AID / f"{AID}.ipynb")
    built = hostile.build(
        AID,
        source,
        rel,
        f"{AID}.ipynb",
        db_path=str(course.db_path),
        solutions_path=str((REAL.source / AID / f"{AID}.ipynb").resolve()),
    )
    for aid in hostile.RULE_ATTACKS:  # the assignments' own rules, attacked in the kernel
        built += hostile.rule_rows(
            aid,
            nbutil.read_nb(REAL.source / aid / f"{aid}.ipynb"),
            nbutil.read_nb(REAL.release / aid / f"{aid}.ipynb"),
            f"{aid}.ipynb",
        )
    return _grade(course, built, NEIGHBOURS, source)


def test_every_row_is_generated():
    from coursegrader import hostile

    names = set(hostile._attacks("f", "db", "sol"))
    assert {
        "patch_checker",
        "patch_allclose",
        "input_transformer",
        "swallow_errors",
        "write_gradebook",
        "read_secrets",
        "os_exit",
        "loop_in_function",
        "loop_top_level",
        "sigint_ignored",
        "memory_bomb",
        "fork_bomb",
        "print_flood",
        "trickle_reply",
        "memory_fanout",
        "cpu_fanout",
        "disk_fill",
        "huge_reply",
        "huge_messages",
        "huge_error",
        "message_flood",
        "huge_display_in_call",
    } <= names


def _why(batch, key: str) -> dict:
    """A mismatched score explained: the cells that lost points they should not have, and what they showed."""
    r, e = batch["results"].get(key), batch["expected"][key]
    if r is None:
        return {"expected": e["expected"], "graded": False}
    aid, student = r.assignment, r.student
    lost = sorted(g for g, (s, p) in r.cells.items() if s != p and g not in e["breaks"])
    kept = sorted(g for g in e["breaks"] if g in r.cells and r.cells[g][0] == r.cells[g][1])
    path = batch["course"].autograded / student / aid / f"{aid}.ipynb"
    shown = {}
    if path.exists():
        for c in nbutil.read_nb(path)["cells"]:
            if nbutil.grade_id(c) in lost:
                shown[nbutil.grade_id(c)] = json.dumps(c.get("outputs", []))[-600:]
    return {
        "score": r.score,
        "expected": e["expected"],
        "lost": lost,
        "kept": kept,
        "shown": shown,
        "problem": r.problem,
    }


def test_each_submission_earns_exactly_its_expected_score(batch):
    got = {k: r.score for k, r in batch["results"].items()}
    want = {k: e["expected"] for k, e in batch["expected"].items()}
    assert got == want, {k: _why(batch, k) for k in want if got.get(k) != want[k]}


def test_rule_rows_lose_exactly_the_points_of_the_rule(batch):
    """hw2's derive-by-hand (torch absent from the grading kernel) and no-overflow (warnings are errors
    in the kernel during graded calls, the checks themselves out of the student's reach) rules, each
    attacked several ways: only the rule's test fails, with the rule's own message."""
    from coursegrader import hostile

    for aid, rows in hostile.RULE_ATTACKS.items():
        for name, (_, breaks, _note) in rows.items():
            r = batch["results"][f"{aid}/sample-{name}"]
            assert r.ok and set(breaks) == {g for g, (s, p) in r.cells.items() if s != p}, (name, r.cells)
            nb = nbutil.read_nb(batch["course"].autograded / f"sample-{name}" / aid / f"{aid}.ipynb")
            shown = json.dumps([c.get("outputs", []) for c in nb["cells"] if nbutil.grade_id(c) in breaks])
            # the rule's message, or (torch imported at cell level) the cell that defined the answer failed
            assert not breaks or any(
                w in shown
                for w in (
                    "not available in this assignment",
                    "without overflow",
                    "is not defined",
                    "the grader's checks",
                )
            ), (name, shown[:400])


def test_correct_answers_keep_full_marks_beside_the_attacks(batch):
    for key, r in batch["results"].items():
        if key.endswith("sample-solution"):
            assert r.ok and r.score == r.max_score > 0 and not r.problem, (key, r.problem)


def test_anomalies_are_flagged(batch):
    for name, words in FLAGGED.items():
        r = batch["results"][f"{AID}/sample-{name}"]
        assert r.ok, (name, r.problem)
        assert any(w in r.problem for w in ((words,) if isinstance(words, str) else words)), (name, r.problem)


def test_the_gradebook_was_out_of_reach(batch):
    with batch["course"].gradebook() as gb:
        for sub in gb.assignment_submissions(AID):
            for nb in sub.notebooks:
                for g in nb.grades:
                    assert g.manual_score is None, (sub.student.id, g.name)
    out = _outputs(batch, "hostile_write_gradebook")
    assert "wrote" not in out and "cannot write" in out


def test_solutions_and_hidden_tests_never_reach_the_student(batch):
    out = _outputs(batch, "hostile_read_secrets")
    assert "cannot read" in out and "BEGIN SOLUTION" not in out and "BEGIN HIDDEN TESTS" not in out
    for key, f in batch["feedback"].items():  # generate() scans every page for hidden/solution lines
        assert f.ok, (key, f.problem)  # (other than the student's own) and deletes a leaking one
        text = nbutil.html_text(Path(f.pages[0]).read_text())
        assert "HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text, key


def _outputs(batch, name, aid=AID):
    nb = nbutil.read_nb(batch["course"].autograded / f"sample-{name}" / aid / f"{aid}.ipynb")
    return json.dumps([c.get("outputs", []) for c in nb["cells"]])


# ---------------------------------------------------------------------------------------------------
# hw3 (torch kernels, in their own batch with a longer cell timeout): instructor functions stay in the
# grader, and the no-Hessian rule is checked by the evaluations the grader counts.
HW3 = "hw3_autodiff"


@pytest.fixture(scope="module")
def hw3_batch(tmp_path_factory):
    from coursegrader import hostile

    course = _course(tmp_path_factory, "hostile_hw3", 120)
    source = nbutil.read_nb(REAL.source / HW3 / f"{HW3}.ipynb")
    built = hostile.rule_rows(HW3, source, nbutil.read_nb(REAL.release / HW3 / f"{HW3}.ipynb"), f"{HW3}.ipynb")
    return _grade(course, built, (HW3,), source)


def test_hw3_rows_earn_exactly_their_expected_score(hw3_batch):
    """The correct answers keep full marks; each way of forming the Hessian loses exactly t10's points,
    with the rule's message (or torch.func's refusal of the grader's counted function)."""
    from coursegrader import hostile

    got = {k: r.score for k, r in hw3_batch["results"].items()}
    assert got == {k: e["expected"] for k, e in hw3_batch["expected"].items()}
    for name, (_, breaks, _note) in hostile.SLOW_RULE_ATTACKS[HW3].items():
        r = hw3_batch["results"][f"{HW3}/sample-{name}"]
        assert r.ok and set(breaks) == {g for g, (s, p) in r.cells.items() if s != p}, (name, r.cells)
        shown = _outputs(hw3_batch, name, HW3)
        assert not breaks or any(w in shown for w in ("must not form the Hessian", "functorch")), (name, shown[:600])


def test_hw3_instructor_code_never_reaches_the_kernel(hw3_batch):
    """grad and hvp that search the function they are handed, their callers' frames, the agent and the
    heap for instructor code find nothing (they would return a wrong answer): full marks; what they
    printed during graded calls is nowhere in the autograded notebook or the feedback."""
    name = "hw3_spy_callers"
    r = hw3_batch["results"][f"{HW3}/sample-{name}"]
    assert r.ok and r.score == r.max_score, (r.cells, r.problem)
    printed = _outputs(hw3_batch, name, HW3)
    assert "SPY []" in printed and "FOUND" not in printed, printed[:600]
    hidden = [h for h in nbutil.secret_lines(hw3_batch["source"])["hidden"] if "lambda" in h]
    assert hidden
    f = hw3_batch["feedback"][f"{HW3}/sample-{name}"]
    assert f.ok, f.problem
    text = nbutil.html_text(Path(f.pages[0]).read_text())
    for line in hidden:
        assert line.split("=", 1)[-1].strip() not in text, line  # (whole: a prefix may be a visible line's)
