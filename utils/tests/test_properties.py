"""Property tests (hypothesis): correct gradients always pass, perturbed ones always fail."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradcheck as gc

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 30)


def perturbed(g, x, rel, seed):
    """g plus a random perturbation of relative size `rel` (normwise)."""
    e = np.random.default_rng(seed).standard_normal(np.shape(x))
    g0 = g(x)
    scale = rel * np.linalg.norm(g0) / np.linalg.norm(e) if np.linalg.norm(g0) > 0 else rel
    return lambda x_: g(x_) + scale * e


@SETTINGS
@given(seed=seeds, n=sizes, rel=st.sampled_from([1e-5, 1e-3, 1e-1, 1.0]))
def test_random_quadratic(seed, n, rel):
    rng = np.random.default_rng(seed)
    A, c = rng.standard_normal((n, n)), rng.standard_normal(n)
    f = lambda x: x @ A @ x + c @ x
    g = lambda x: (A + A.T) @ x + c
    x = rng.standard_normal(n)
    assert gc.check_gradient(f, g, x).passed
    assert not gc.check_gradient(f, perturbed(g, x, rel, seed), x).passed


@SETTINGS
@given(seed=seeds, n=sizes, m=sizes, lam=st.floats(0, 10), rel=st.sampled_from([1e-5, 1e-2, 1.0]))
def test_ridge_least_squares(seed, n, m, lam, rel):
    rng = np.random.default_rng(seed)
    A, b = rng.standard_normal((m, n)), rng.standard_normal(m)
    f = lambda x: 0.5 * np.sum((A @ x - b) ** 2) + lam / 2 * x @ x
    g = lambda x: A.T @ (A @ x - b) + lam * x
    x = rng.standard_normal(n)
    assert gc.check_gradient(f, g, x).passed
    assert not gc.check_gradient(f, perturbed(g, x, rel, seed), x).passed


@SETTINGS
@given(seed=seeds, n=sizes, rel=st.sampled_from([1e-5, 1e-2, 1.0]), real_only=st.booleans())
def test_logistic_loss(seed, n, rel, real_only):
    rng = np.random.default_rng(seed)
    X, t = rng.standard_normal((20, n)), (rng.random(20) > 0.5).astype(float)
    sig = lambda z: 1 / (1 + np.exp(-z))

    def f(w):
        if real_only and np.iscomplexobj(w):
            raise TypeError("real only")
        z = X @ w
        return np.sum(np.log1p(np.exp(z)) - t * z)

    g = lambda w: X.T @ (sig(X @ w) - t)
    w = rng.standard_normal(n)
    assert gc.check_gradient(f, g, w).passed
    assert not gc.check_gradient(f, perturbed(g, w, rel, seed), w).passed


@SETTINGS
@given(seed=seeds, m=st.integers(1, 6), n=st.integers(1, 6), p=st.integers(1, 6), rel=st.sampled_from([1e-4, 1.0]))
def test_trace_AXB(seed, m, n, p, rel):
    rng = np.random.default_rng(seed)
    A, B, X = rng.standard_normal((p, m)), rng.standard_normal((n, p)), rng.standard_normal((m, n))
    f = lambda X: np.trace(A @ X @ B)
    g = lambda X: A.T @ B.T
    assert gc.check_gradient(f, g, X).passed
    assert not gc.check_gradient(f, perturbed(g, X, rel, seed), X).passed


@SETTINGS
@given(seed=seeds, n=st.integers(1, 7), rel=st.sampled_from([1e-4, 1e-1]))
def test_logdet(seed, n, rel):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    X = M @ M.T + n * np.eye(n) + 0.3 * rng.standard_normal((n, n))
    f = lambda X: np.log(np.linalg.det(X))
    g = lambda X: np.linalg.inv(X).T
    assert gc.check_gradient(f, g, X).passed
    assert not gc.check_gradient(f, perturbed(g, X, rel, seed), X).passed
