"""A tiny throwaway course (one assignment, 'toy') for testing the grading machinery in a temp dir.

The toy source mirrors what the real assignments do: answer cells with solution regions, visible and
hidden tests with points, a locked markdown cell, a manually graded written answer (1 point).
Auto-graded points: test_grad 2, test_grad_hidden 3, test_hess 1.
"""

from __future__ import annotations

import json
from pathlib import Path

TOY = "toy"
TOY_POINTS = {"test_grad": 2.0, "test_grad_hidden": 3.0, "test_hess": 1.0}
HIDDEN_MARK = "hidden_expected_value_42"  # text that appears only in a hidden test


def _cell(kind, source, cid, nbg=None, tags=None):
    cell = {"cell_type": kind, "id": cid, "metadata": {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    if nbg is not None:
        base = {"grade": False, "locked": False, "solution": False, "schema_version": 3}
        base.update(nbg)
        cell["metadata"]["nbgrader"] = base
        if base.get("locked") or (base.get("grade") and not base.get("solution")):
            cell["metadata"].update(deletable=False, editable=False)
    if tags:
        cell["metadata"]["tags"] = tags
    return cell


def toy_source() -> dict:
    cells = [
        _cell(
            "markdown",
            "# Toy assignment\nGradient of $f(x) = x^T A x$ is $(A + A^T) x$.",
            "intro",
            {"grade_id": "intro", "locked": True},
        ),
        _cell("code", "import numpy as np\nrng = np.random.default_rng(0)", "imports"),
        _cell(
            "code",
            "def grad_f(A, x):\n    ### BEGIN SOLUTION\n    return (A + A.T) @ x\n    ### END SOLUTION",
            "answer-grad",
            {"grade_id": "answer_grad", "solution": True},
        ),
        _cell(
            "code",
            "A = rng.standard_normal((3, 3)); x = rng.standard_normal(3)\n"
            "g = grad_f(A, x)\nassert g.shape == (3,), g.shape\n"
            "assert np.allclose(g, (A + A.T) @ x)\nprint('visible test passed')",
            "test-grad",
            {"grade_id": "test_grad", "grade": True, "locked": True, "points": 2},
        ),
        _cell(
            "code",
            "x0 = np.arange(3.0)\n### BEGIN HIDDEN TESTS\n"
            f"{HIDDEN_MARK} = np.eye(3)\n"
            f"assert np.allclose(grad_f({HIDDEN_MARK}, x0), 2 * x0)\n"
            "assert np.allclose(grad_f(np.triu(np.ones((3, 3))), x0), (np.triu(np.ones((3, 3))) + "
            "np.tril(np.ones((3, 3)))) @ x0)\n### END HIDDEN TESTS",
            "test-grad-hidden",
            {"grade_id": "test_grad_hidden", "grade": True, "locked": True, "points": 3},
        ),
        _cell(
            "code",
            "def hess_f(A):\n    ### BEGIN SOLUTION\n    return A + A.T\n    ### END SOLUTION",
            "answer-hess",
            {"grade_id": "answer_hess", "solution": True},
        ),
        _cell(
            "code",
            "assert np.allclose(hess_f(np.eye(2)), 2 * np.eye(2))",
            "test-hess",
            {"grade_id": "test_hess", "grade": True, "locked": True, "points": 1},
        ),
        _cell(
            "markdown",
            "Why is the Hessian symmetric? Because $d^2 f$ is a symmetric bilinear form.",
            "answer-why",
            {"grade_id": "answer_why", "grade": True, "solution": True, "points": 1},
        ),
    ]
    return {
        "cells": cells,
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
    }


TOY_MUTATIONS = """
[[toy.sample]]
name = "wrong_sign"
cell = "answer_grad"
kind = "wrong_sign"
expr = "(A + A.T) @ x"
breaks = ["test_grad", "test_grad_hidden"]

[[toy.sample]]
name = "missing_term"
cell = "answer_grad"
kind = "missing_term"
term = " + A.T"
breaks = ["test_grad", "test_grad_hidden"]

[[toy.sample]]
name = "transposed_hess"
cell = "answer_hess"
kind = "replace"
old = "A + A.T"
new = "A.T"
breaks = ["test_hess"]
"""


def make_toy_course(root: Path) -> Path:
    """<root>/solutions/toy/toy.ipynb + a data file; returns root."""
    src = root / "solutions" / TOY
    src.mkdir(parents=True)
    (src / "toy.ipynb").write_text(json.dumps(toy_source(), indent=1, sort_keys=True) + "\n")
    (src / "data.txt").write_text("1 2 3\n")
    (root / "grading").mkdir(exist_ok=True)
    (root / "grading" / "mutations.toml").write_text(TOY_MUTATIONS)
    return root
