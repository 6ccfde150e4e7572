"""The assignments' shared test machinery (coursetests/): the checks pass the solution, catch the
typical mistakes with a message naming them, and use a reference when the hidden tests pass one.
The test cells of hw2 only call them (no helper is defined in a notebook a student reads)."""

import re

import numpy as np
import pytest

import stamp_badges
from course import ROOT, read_nb, src
from coursetests import hw2_backprop as hw2

HW2 = ROOT / "solutions" / "hw2_backprop" / "hw2_backprop.ipynb"


def _grade_id(cell):
    return (cell["metadata"].get("nbgrader") or {}).get("grade_id")


@pytest.fixture(scope="module")
def solution():
    """The solution's functions, from the source notebook's answer cells (markers are comments)."""
    ns = {"np": np}
    for cell in read_nb(HW2)["cells"]:
        if (cell["metadata"].get("nbgrader") or {}).get("solution") and cell["cell_type"] == "code":
            exec(src(cell), ns)
    return ns


def test_the_checks_pass_the_solution(solution):
    s = solution
    hw2.check_forward(s["forward_univariate"], 0.8, -0.3, 1.5, 1.0, 0.1)
    hw2.check_adjoints(s["backward_univariate"], 0.8, -0.3, 1.5, 1.0, 0.1)
    rng = np.random.default_rng(0)
    X, w, t = rng.standard_normal((8, 3)), rng.standard_normal(3), rng.integers(0, 2, 8).astype(float)
    hw2.check_logreg_loss(s["logreg_loss"], w, 0.2, 1000 * X, t, 0.1, "with logits of size ~1000")
    hw2.check_logreg_grad(s["logreg_grad"], w, 0.2, 1000 * X, t, 0.1, "with logits of size ~1000")
    hw2.check_logreg_grad_numerically(s["logreg_grad"], w, 0.2, X, t, 0.1)
    hw2.check_mlp_loss(s["mlp_loss"], 1, N=6, D=4, H=5, K=3, scale=1000.0)
    hw2.check_mlp_backward(s["mlp_backward"], 0, N=6, D=4, H=5, K=3)
    hw2.check_mlp_backward_large_scores(s["mlp_backward"], 0, N=5, D=3, H=4, K=3, scale=1000.0)


def test_a_forgotten_path_of_the_graph_is_named(solution):
    def without_regularizer(w, b, x, t, lam):  # w feeds z and R: only the first path kept
        bars = dict(solution["backward_univariate"](w, b, x, t, lam))
        bars["w_bar"] -= lam * w
        return bars

    with pytest.raises(AssertionError, match=r"w_bar = .*expected"):
        hw2.check_adjoints(without_regularizer, 0.8, -0.3, 1.5, 1.0, 0.1)
    with pytest.raises(AssertionError, match="no key 'loss'"):
        hw2.check_forward(
            lambda *a: {k: v for k, v in solution["forward_univariate"](*a).items() if k != "loss"},
            0.8,
            -0.3,
            1.5,
            1.0,
            0.1,
        )
    with pytest.raises(AssertionError, match="must return a dict"):
        hw2.check_forward(lambda *a: 1.0, 0.8, -0.3, 1.5, 1.0, 0.1)


def test_overflow_is_reported_with_what_to_do():
    def naive_loss(w, b, X, t, lam):
        z = X @ w + b
        return float(np.mean(np.log(1 + np.exp(z)) - t * z) + 0.5 * lam * w @ w)

    def naive_grad(w, b, X, t, lam):
        y = 1 / (1 + np.exp(-(X @ w + b)))
        return X.T @ (y - t) / len(t) + lam * w, float(np.mean(y - t))

    rng = np.random.default_rng(0)
    X, w, t = rng.standard_normal((8, 3)), rng.standard_normal(3), rng.integers(0, 2, 8).astype(float)
    with pytest.raises(AssertionError, match=r"logreg_loss warns .* use np\.logaddexp"):
        hw2.check_logreg_loss(naive_loss, w, 0.2, 1000 * X, t, 0.1, "with logits of size ~1000")
    with pytest.raises(AssertionError, match=r"logreg_grad warns .*without overflow"):
        hw2.check_logreg_grad(naive_grad, w, 0.2, 1000 * X, t, 0.1, "with logits of size ~1000")


def test_an_unshifted_softmax_fails_the_large_score_check(solution):
    def unshifted(W1, b1, W2, b2, X, y):
        A = np.tanh(X @ W1 + b1)
        P = np.exp(A @ W2 + b2)
        P /= P.sum(axis=1, keepdims=True)
        P[np.arange(len(y)), y] -= 1
        P /= len(y)
        Z_bar = (P @ W2.T) * (1 - A**2)
        return X.T @ Z_bar, Z_bar.sum(0), A.T @ P, P.sum(0)

    hw2.check_mlp_backward(unshifted, 0, N=6, D=4, H=5, K=3)  # right for moderate scores
    with pytest.raises(AssertionError, match="subtract the row maximum|not finite"):
        hw2.check_mlp_backward_large_scores(unshifted, 2604, 20, 6, 8, 5, scale=3000.0)


def test_a_reference_passed_by_the_hidden_tests_is_used(solution):
    def off(params, X, y):
        return [p + 1.0 for p in solution["mlp_backward"](*params, X, y)]

    with pytest.raises(AssertionError, match="dW1 for N, D, H, K"):
        hw2.check_mlp_backward(solution["mlp_backward"], 0, 6, 4, 5, 3, reference=off, with_gradcheck=False)
    with pytest.raises(AssertionError, match=r"forward_univariate.*: z = "):
        hw2.check_forward(
            solution["forward_univariate"],
            0.8,
            -0.3,
            1.5,
            1.0,
            0.1,
            reference=lambda *a: {**hw2.reference_forward(*a), "z": 7.0},
        )
    with pytest.raises(AssertionError, match="y_bar"):  # a tighter tolerance than finite differences allow
        hw2.check_adjoints(
            lambda *a: {**solution["backward_univariate"](*a), "y_bar": 0.0}, 0.8, -0.3, 1.5, 1.0, 0.1, rtol=1e-9
        )


def test_hw2_test_cells_call_the_checks_and_define_nothing():
    """A student reads short test cells: one import, calls; the visible part defines no helper."""
    cells = [
        c
        for c in read_nb(HW2)["cells"]
        if (c["metadata"].get("nbgrader") or {}).get("grade") and not c["metadata"]["nbgrader"].get("solution")
    ]
    assert len(cells) == 7
    for cell in cells:
        visible = src(cell).split("### BEGIN HIDDEN TESTS")[0]
        assert "from coursetests.hw2_backprop import check_" in visible, _grade_id(cell)
        assert not re.search(r"^\s*def ", visible, re.M), f"{_grade_id(cell)} defines a helper in the notebook"
        assert len(visible.strip().splitlines()) <= 10, _grade_id(cell)


def test_the_setup_cell_installs_coursetests_where_a_notebook_imports_it():
    hw2_nb = read_nb(HW2)
    assert stamp_badges.uses_coursetests(hw2_nb)
    setup = stamp_badges.setup_source(hw2_nb)
    assert "COURSETESTS_PIP_SPEC" in setup and "#subdirectory=coursetests" in setup
    assert len(re.findall(r"pip.*install", setup)) == 1
    lecture = read_nb(ROOT / "lectures" / "01_rank_and_regularization.ipynb")
    assert not stamp_badges.uses_coursetests(lecture)
    assert stamp_badges.setup_source(lecture) == stamp_badges.setup_source()


def test_coursetests_imports_nothing_of_the_grader():
    """Test cells import it in the student's kernel and in the grader: it may use gradcheck, never the
    workflow or the engine (the import rule of ARCHITECTURE.md)."""
    from test_architecture import upward_imports

    modules = sorted((ROOT / "coursetests").glob("*.py"))
    assert len(modules) >= 2
    for path in modules:
        assert not upward_imports(path.read_text(), "coursetests", {"coursegrader", "sandboxgrader"}), path
