"""hw4 Task 5 teaches lecture 2's index choice, and its tests can tell it from the independent choice.

Lecture 2 §3: rows I = maxvol(U_r), then columns GIVEN those rows, J = maxvol(A[I, :].T). Choosing
J = maxvol(V_r) independently of I can make the core A[I, J] singular. These tests run the Task 5 test cell
of the source notebook (its hidden part separately) with both methods and with two maxvol variants a
student may write (LU start as in the lecture, QR-with-pivoting start as in the solution): the lecture's
method passes, the independent method fails the hidden tests and the visible "random points" case.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from course import ROOT, read_nb

SOURCE = ROOT / "solutions" / "hw4_low_rank" / "hw4_low_rank.ipynb"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def cell(grade_id: str) -> str:
    for c in read_nb(SOURCE)["cells"]:
        if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            s = c["source"]
            return "".join(s) if isinstance(s, list) else s
    raise KeyError(grade_id)


def maxvol_lu(A, tol=1.05, max_iters=1000):
    """maxvol started from the pivots of LU with partial pivoting (lecture 2's start)."""
    n, r = A.shape
    p = scipy.linalg.lu(A, p_indices=True)[0]
    rows = np.argsort(p)[:r].copy()
    for _ in range(max_iters):
        B = np.linalg.solve(A[rows].T, A.T).T
        i, j = np.unravel_index(np.argmax(np.abs(B)), B.shape)
        if abs(B[i, j]) <= tol:
            break
        rows[j] = i
    return rows.astype(int)


def maxvol_solution():
    """The solution's own maxvol (QR with column pivoting start), taken from the notebook."""
    ns = {"np": np, "scipy": scipy}
    exec(cell("t3-sol"), ns)
    return ns["maxvol"]


def independent(maxvol):
    def cur_indices(A, r):
        U, s, Vt = np.linalg.svd(A, full_matrices=False)
        return maxvol(U[:, :r]), maxvol(Vt[:r].T)

    return cur_indices


def rows_then_columns(maxvol):
    def cur_indices(A, r):
        rows = maxvol(np.linalg.svd(A, full_matrices=False)[0][:, :r])
        return rows, maxvol(A[rows, :].T)

    return cur_indices


def run(part: str, cur_indices) -> None:
    """Run the Task 5 test cell's check_cur definition plus `part` ('visible' or 'hidden')."""
    test = cell("t5-test")
    head, rest = test.split(HIDDEN_BEGIN)
    hidden, _ = rest.split(HIDDEN_END)
    preamble, visible = head.split("\n\n\nx, y", 1)
    code = preamble + "\n" + ("x, y" + visible if part == "visible" else hidden)
    with np.errstate(all="ignore"):
        exec(code, {"np": np, "cur_indices": cur_indices})


MAXVOLS = {"lu-start": lambda: maxvol_lu, "solution-qr-start": maxvol_solution}


@pytest.mark.parametrize("variant", MAXVOLS)
@pytest.mark.parametrize("part", ["visible", "hidden"])
def test_lecture_method_passes(variant, part):
    run(part, rows_then_columns(MAXVOLS[variant]()))


@pytest.mark.parametrize("variant", MAXVOLS)
@pytest.mark.parametrize("part", ["visible", "hidden"])
def test_independent_choice_loses_the_points(variant, part):
    with pytest.raises(AssertionError, match="independently of the rows"):
        run(part, independent(MAXVOLS[variant]()))


def test_solution_teaches_columns_given_rows():
    sol = cell("t5-sol")
    assert "maxvol(A[np.asarray(rows), :].T)" in sol and "Vt" not in sol
    md = cell("t5-md")
    # the link names the section in words: a heading anchor differs between JupyterLab and the site
    assert "(../../lectures/02_low_rank_skeleton_cur.ipynb)" in md and "Rows and columns must fit together" in md
