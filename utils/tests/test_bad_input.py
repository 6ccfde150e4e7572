"""Bad input: a clear TypeError / ValueError naming the argument and what was expected."""

import numpy as np
import pytest

import gradcheck as gc

f = lambda x: np.sum(x**2)
g = lambda x: 2 * x
x = np.array([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: gc.check_gradient("f", g, x), TypeError, "f must be callable"),
        (lambda: gc.check_gradient(f, None, x), TypeError, "grad must be callable"),
        (lambda: gc.check_gradient(lambda x: x**2, g, x), ValueError, "must return a scalar"),
        (lambda: gc.check_gradient(f, g, np.array([1.0, np.nan])), ValueError, "NaN or inf"),
        (lambda: gc.check_gradient(f, g, np.array([[1.0, np.inf]])), ValueError, r"first at x\[0, 1\]\)"),
        (lambda: gc.check_gradient(f, g, np.array([1, 2, 3])), TypeError, "integer"),
        (lambda: gc.check_gradient(f, g, 3), TypeError, "integer"),
        (lambda: gc.check_gradient(f, g, True), TypeError, "bool"),
        (lambda: gc.check_gradient(f, g, "abc"), TypeError, "expected a float"),
        (lambda: gc.check_gradient(f, g, np.array([1 + 2j])), TypeError, "complex"),
        (lambda: gc.check_gradient(f, g, np.array([], dtype=float)), ValueError, "no entries"),
        (lambda: gc.check_gradient(f, g, ()), ValueError, "empty"),
        (lambda: gc.check_gradient(f, g, x, rtol=-1), ValueError, "rtol"),
        (lambda: gc.check_gradient(f, g, x, method="magic"), ValueError, "method must be one of"),
        (lambda: gc.check_gradient(lambda p: f(p[0]), lambda p: (g(p[0]),), (x, x)), ValueError, "returned 1 items"),
        (lambda: gc.check_gradient(lambda p: f(p[0]), lambda p: g(p[0]), (x, x)), ValueError, "expected a tuple of 2"),
        (lambda: gc.check_gradient(lambda p: f(p["a"]), lambda p: {"b": g(p["a"])}, {"a": x}), ValueError, "keys"),
        (lambda: gc.check_gradient(f, lambda x: None, x), ValueError, "forget `return`"),
        (lambda: gc.check_gradient(f, lambda x: "grad", x), ValueError, "non-numeric"),
        (lambda: gc.check_jacobian(lambda p: p[0], lambda p: p[0], (x, x)), TypeError, "check_vjp"),
        (lambda: gc.numerical_jacobian(lambda p: p, (x,)), TypeError, "must be a float"),
        (lambda: gc.taylor_test(f, g, x, steps=[1.0]), ValueError, "steps"),
    ],
)
def test_bad_input_is_named(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_errors_do_not_come_from_deep_inside_numpy():
    with pytest.raises(TypeError) as info:
        gc.check_gradient(f, g, [1, 2])
    assert "x[0]" in str(info.value)


def test_diagnosis_codes_come_from_one_registry():
    from pathlib import Path

    from gradcheck.diagnose import DIAGNOSES

    with pytest.raises(ValueError, match="unknown diagnosis code"):
        gc.CheckResult(False, 1.0, 1e-9, "wrong_sign", "")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    undocumented = [code for code in DIAGNOSES if code != "ok" and f"`{code}`" not in readme]
    assert not undocumented, f"utils/README.md does not list {undocumented}"
    for d in DIAGNOSES.values():
        assert d.meaning and d.detected, d
