"""hw1 Task 12 and hw4 Task 3 forbid a big matrix, and their tests catch the methods that form it.

hw1 Task 12 (the HVP of log det) must not build the n^2 x n^2 Hessian; hw4 Task 3 (maxvol) must not build an
n x n matrix. Their test cells measure the function's peak memory with tracemalloc (visible: at most 50 n x n
matrices at n = 40 for hw1, 50 copies of a 3000 x 4 matrix for hw4, where the forbidden matrix is 1600 and 750 of
them) and, hidden, call it where the forbidden matrix takes about 200 GB. Here methods a student may write run
against the source's test cell: the right ones pass both parts; the heavy ones fail the visible part (in this
process) and the hidden part, and the hidden size alone, in a child process with the grading kernel's
address-space limit (sandboxgrader's ``Limits.address_space``), runs out of memory.

That a test in the grader sees the peak of a function running in the sandboxed kernel is
tests/test_sandbox.py's; the samples ``hessian_kron`` and ``lu_dense_P`` (grading/mutations.toml) are graded in
the sandbox by ``make test-grading`` and lose exactly these tests' points.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tomllib

import numpy as np
import pytest
import scipy.linalg

from course import ROOT, read_nb
from sandboxgrader.kernel import Limits

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MUTATIONS = tomllib.loads((ROOT / "grading" / "mutations.toml").read_text())

TASKS = {  # assignment, answer cell, test cell, the hidden test at the size no one can form the big matrix
    "hw1": ("hw1_matrix_gradients", "t12-sol", "t12-test", "check_memory(400, 1205)"),
    "hw4": ("hw4_low_rank", "t3-sol", "t3-test", "check_maxvol_memory(150_000, 4, 8)"),
}


def cell(task: str, grade_id: str) -> str:
    aid = TASKS[task][0]
    for c in read_nb(ROOT / "solutions" / aid / f"{aid}.ipynb")["cells"]:
        if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            s = c["source"]
            return "".join(s) if isinstance(s, list) else s
    raise KeyError(grade_id)


def mutated(task: str, sample: str) -> str:
    """The answer cell as the grading sample of that name has it (one source for the sample and this test)."""
    aid, sol = TASKS[task][:2]
    spec = next(s for s in MUTATIONS[aid]["sample"] if s["name"] == sample)
    assert spec["cell"] == sol and spec["kind"] == "replace"
    return cell(task, sol).replace(spec["old"], spec["new"])


HW1 = {
    "solution": lambda: cell("hw1", "t12-sol"),
    "two_solves": lambda: (
        "def hvp_logdet(X, V):\n"
        "    Y = np.linalg.solve(X, V)                  # X^-1 V\n"
        "    return -np.linalg.solve(X.T, Y.T)          # -(X^-1 V X^-1)^T = -X^-T (X^-1 V)^T\n"
    ),
    "hessian_kron": lambda: mutated("hw1", "hessian_kron"),
    "hessian_einsum_4d": lambda: (
        "def hvp_logdet(X, V):\n"
        "    X_inv = np.linalg.inv(X)\n"
        "    H = -np.einsum('jk,li->ijkl', X_inv, X_inv)   # d2f = sum H[i,j,k,l] V[k,l] dX[i,j]: n^4 numbers\n"
        "    return np.tensordot(H, V, axes=2)\n"
    ),
}
HW4 = {
    "solution": lambda: cell("hw4", "t3-sol"),
    "lecture_lu_sherman_morrison": lambda: (  # lecture 2's maxvol: LU pivots as indices, rank-1 updates of B
        "def maxvol(A, tol=1.05, max_iters=1000):\n"
        "    n, r = A.shape\n"
        "    p = scipy.linalg.lu(A, p_indices=True)[0]\n"
        "    rows = np.argsort(p)[:r].copy()\n"
        "    B = np.linalg.solve(A[rows].T, A.T).T\n"
        "    for _ in range(max_iters):\n"
        "        i, j = np.unravel_index(np.argmax(np.abs(B)), B.shape)\n"
        "        if abs(B[i, j]) <= tol:\n"
        "            break\n"
        "        rows[j] = i\n"
        "        b, c = B[:, j].copy(), B[i, :].copy()\n"
        "        c[j] -= 1.0\n"
        "        B -= np.outer(b, c / B[i, j])\n"
        "    return rows\n"
    ),
    "lu_dense_P": lambda: mutated("hw4", "lu_dense_P"),
    "permutation_matrix": lambda: (  # the row order kept as an n x n permutation matrix
        "def maxvol(A, tol=1.05, max_iters=1000):\n"
        "    n, r = A.shape\n"
        "    P = np.eye(n)[scipy.linalg.qr(A.T, pivoting=True)[2]]\n"
        "    for _ in range(max_iters):\n"
        "        PA = P @ A\n"
        "        B = np.linalg.solve(PA[:r].T, PA.T).T\n"
        "        i, j = np.unravel_index(np.argmax(np.abs(B)), B.shape)\n"
        "        if abs(B[i, j]) <= tol:\n"
        "            break\n"
        "        P[[i, j]] = P[[j, i]]\n"
        "    return np.argmax(P[:r], axis=1)\n"
    ),
}
METHODS = {"hw1": HW1, "hw4": HW4}
HEAVY = {("hw1", "hessian_kron"), ("hw1", "hessian_einsum_4d"), ("hw4", "lu_dense_P"), ("hw4", "permutation_matrix")}
CASES = [(task, name) for task in METHODS for name in METHODS[task]]


def parts(task: str) -> tuple[str, str]:
    test = cell(task, TASKS[task][2])
    visible, rest = test.split(HIDDEN_BEGIN)
    return visible, rest.split(HIDDEN_END)[0]


def namespace(task: str, answer: str) -> dict:
    ns = {"np": np, "scipy": scipy}
    exec(cell(task, "imports"), ns)
    exec(answer, ns)
    return ns


# The hidden part runs where the grader has them: after the visible part, with its names (here: the
# visible part with the solution, then the method under test), in a process limited like the grading kernel.
CHILD = r"""
import json, sys
import numpy as np, scipy, scipy.linalg
job = json.load(sys.stdin)
ns = {"np": np, "scipy": scipy}
exec(job["imports"], ns)
exec(job["solution"], ns)
exec(job["visible"], ns)
exec(job["method"], ns)
out = {}
for part in ("hidden", "capability"):
    try:
        exec(job[part], dict(ns))
        out[part] = ""
    except BaseException as e:
        out[part] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def limited_like_the_grading_kernel():
    limit = Limits().address_space
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_hidden_limited(task: str, method: str) -> dict:
    visible, hidden = parts(task)
    job = {
        "imports": cell(task, "imports"),
        "solution": METHODS[task]["solution"](),
        "visible": visible,
        "method": method,
        "hidden": hidden,
        "capability": TASKS[task][3],
    }
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        preexec_fn=limited_like_the_grading_kernel,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("task,name", CASES)
def test_visible_memory_test(task, name):
    ns = namespace(task, METHODS[task][name]())
    visible, _ = parts(task)
    if (task, name) in HEAVY:
        with pytest.raises(AssertionError, match=r"allocated .* MiB .*more than 50"):
            exec(visible, ns)
    else:
        exec(visible, ns)


@pytest.mark.parametrize("task,name", [c for c in CASES if c not in HEAVY])
def test_right_methods_pass_the_hidden_tests(task, name):
    ns = namespace(task, METHODS[task]["solution"]())
    visible, hidden = parts(task)
    exec(visible, ns)
    exec(METHODS[task][name](), ns)
    exec(hidden, ns)


@pytest.mark.parametrize("task,name", sorted(HEAVY))
def test_heavy_methods_fail_the_hidden_tests_and_cannot_run_at_the_hidden_size(task, name):
    got = run_hidden_limited(task, METHODS[task][name]())
    assert got["hidden"].startswith("AssertionError") and (
        "allocated" in got["hidden"] or "ran out of memory" in got["hidden"]
    ), got
    # the size alone: the forbidden matrix exceeds the kernel's address space, whatever a memory figure says
    assert got["capability"].startswith("AssertionError") and "ran out of memory" in got["capability"], got


def test_heavy_methods_are_right_in_value():
    """They lose the points for their memory alone: on small inputs they agree with the solution."""
    rng = np.random.default_rng(0)
    X, V = rng.standard_normal((5, 5)) + 5 * np.eye(5), rng.standard_normal((5, 5))
    want = namespace("hw1", HW1["solution"]())["hvp_logdet"](X, V)
    for name in ("hessian_kron", "hessian_einsum_4d"):
        np.testing.assert_allclose(namespace("hw1", HW1[name]())["hvp_logdet"](X, V), want, rtol=1e-12, err_msg=name)
    A = rng.standard_normal((60, 4))
    want = sorted(namespace("hw4", HW4["solution"]())["maxvol"](A).tolist())
    for name in ("lu_dense_P", "permutation_matrix"):
        rows = np.asarray(namespace("hw4", HW4[name]())["maxvol"](A))
        B = np.linalg.solve(A[rows].T, A.T).T
        assert np.abs(B).max() <= 1.05 + 1e-9 and len(set(rows.tolist())) == 4, name
    assert len(want) == 4
