"""Method by measured cost, the quick central pass for large x, thin margins, and CheckResult.resolution."""

import time

import numpy as np
import problems as P
import pytest

import gradcheck as gc


def _slow_when_complex(rng, n, pause=0.05):
    """f = ½‖x‖² + Σ log(1 + eˣ)/10 that takes `pause` seconds whenever it is handed complex input."""

    def f(x):
        if np.iscomplexobj(x):
            time.sleep(pause)
        return 0.5 * np.sum(x**2) + 0.1 * np.sum(np.log1p(np.exp(x)))

    def grad(x):
        return x + 0.1 / (1 + np.exp(-x))

    return f, grad, rng.standard_normal(n)


def test_costly_complex_step_is_not_used_for_large_x(rng):
    f, grad, x = _slow_when_complex(rng, 5000)
    r = gc.check_gradient(f, grad, x)
    assert r.passed and r.method in ("central", "richardson") and r.n_evals <= 10, str(r)


def test_complex_step_is_kept_for_small_x_whatever_it_costs(rng):
    f, grad, x = _slow_when_complex(rng, 50, pause=0.002)
    r = gc.check_gradient(f, grad, x)
    assert r.passed and r.method == "complex", str(r)


def test_large_x_correct_gradient_passes_in_five_evaluations(rng):
    f, g, x = P.bench(rng, n=20_000)
    r = gc.check_gradient(f, g, x, method="auto")
    assert r.passed, str(r)
    # complex or the quick central pass: either way within budget
    assert r.n_evals <= 10 and r.resolution <= 1e-8, str(r)


@pytest.mark.parametrize("n", [100, 10_000])
def test_single_entry_error_of_relative_size_1e8_is_caught(rng, n):
    f, g, x = P.bench(rng, n=n)
    g0 = g(x)
    j = int(np.argmin(np.abs(np.abs(g0) - np.sqrt(np.mean(g0**2)))))  # a typical entry
    delta = 1e-8 * np.linalg.norm(g0) / abs(g0[j])  # ‖error‖ / ‖∇f‖ = 1e-8

    def bad(x):
        y = g(x).copy()
        y[j] *= 1 + delta
        return y

    r = gc.check_gradient(f, bad, x, max_localize=100)
    assert not r.passed, str(r)
    assert r.diagnosis not in ("factor", "sign"), str(r)  # never a "factor of 1.00000001"
    assert r.resolution <= 1e-8, str(r)


def test_resolution_is_reported_and_shown(rng):
    f, g, x = P.bench(rng, n=50)
    r = gc.check_gradient(f, g, x)
    assert r.tolerance < r.resolution < 10 * r.tolerance
    assert f"resolves relative errors ≥ {r.resolution:.1e}" in str(r)
    assert "resolves relative errors" in r._repr_html_()


def test_thin_margin_spends_more_directions(rng):
    f, g, x = P.bench(rng, n=50)
    clean = gc.check_gradient(f, g, x)
    # an error just under the tolerance: the check looks along more directions before deciding
    tol = clean.tolerance
    e = rng.standard_normal(x.size)
    e *= 0.6 * tol * np.linalg.norm(g(x)) / np.linalg.norm(e)
    r = gc.check_gradient(f, lambda x: g(x) + e, x)
    assert r.n_evals > clean.n_evals, (str(r), str(clean))
    assert "directions" in r.message
