"""Checks of hw2 (backprop by hand), called by its test cells.

Each ``check_*`` takes the student's function first, then the inputs. The default references are
NumPy ones that run anywhere (the visible tests run on Colab and in a grading kernel without torch);
the hidden tests pass torch.autograd references (``reference=``), which run in the grader only.
Every check that calls the student's code on large logits or scores turns RuntimeWarning into an
error around the call (the grader carries that into the sandboxed kernel, where the code runs).
"""

from __future__ import annotations

import warnings

import numpy as np

import gradcheck as gc


def sigmoid(z):
    """sigma(z) = (1 + tanh(z/2)) / 2: equal to 1 / (1 + e^{-z}), without overflow for large |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _calm(fn, args, what: str, hint: str):
    """fn(*args) with RuntimeWarning as an error: a warning becomes an AssertionError saying what to do."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            return fn(*args)
        except RuntimeWarning as warning:
            raise AssertionError(f"{what} warns ({warning}) {hint}") from None


# ------------------------------------------------------------------ Part A: one neuron, every adjoint


def reference_forward(w, b, x, t, lam) -> dict:
    """z = wx + b, y = sigma(z), L = (y - t)^2 / 2, R = w^2 / 2, loss = L + lam R."""
    z = w * x + b
    y = sigmoid(z)
    L, R = 0.5 * (y - t) ** 2, 0.5 * w**2
    return {"z": z, "y": y, "L": L, "R": R, "loss": L + lam * R}


def check_forward(forward_univariate, w, b, x, t, lam, reference=reference_forward) -> None:
    """forward_univariate(w, b, x, t, lam) is a dict with the forward pass's values (rtol 1e-10)."""
    got, want = forward_univariate(w, b, x, t, lam), reference(w, b, x, t, lam)
    assert isinstance(got, dict), f"forward_univariate must return a dict, got {type(got).__name__}"
    for key, value in want.items():
        assert key in got, f"forward_univariate: the dict has no key {key!r} (keys: {sorted(got)})"
        assert np.isclose(float(got[key]), value, rtol=1e-10, atol=1e-14), (
            f"forward_univariate{(w, b, x, t, lam)}: {key} = {float(got[key]):.8g}, expected {value:.8g}"
        )


def reference_adjoints(w, b, x, t, lam) -> dict:
    """Every adjoint by central differences of the loss as a function of that node alone (rtol ~1e-6)."""
    z = w * x + b
    y = sigmoid(z)
    L, R = 0.5 * (y - t) ** 2, 0.5 * w**2
    node = {
        "loss_bar": (lambda v: v, L + lam * R),
        "L_bar": (lambda v: v + lam * R, L),
        "R_bar": (lambda v: L + lam * v, R),
        "y_bar": (lambda v: 0.5 * (v - t) ** 2 + lam * R, y),
        "z_bar": (lambda v: 0.5 * (sigmoid(v) - t) ** 2 + lam * R, z),
        "w_bar": (lambda v: 0.5 * (sigmoid(v * x + b) - t) ** 2 + lam * 0.5 * v**2, w),
        "b_bar": (lambda v: 0.5 * (sigmoid(w * x + v) - t) ** 2 + lam * R, b),
        "x_bar": (lambda v: 0.5 * (sigmoid(w * v + b) - t) ** 2 + lam * R, x),
        "t_bar": (lambda v: 0.5 * (y - v) ** 2 + lam * R, t),
    }
    h = 1e-6
    return {key: (f(v + h) - f(v - h)) / (2 * h) for key, (f, v) in node.items()}


def univariate_loss(p, lam):
    """The loss of Part A as a function of p = (w, b, x, t)."""
    w, b, x, t = p
    y = 1 / (1 + np.exp(-(w * x + b)))
    return 0.5 * (y - t) ** 2 + lam * 0.5 * w**2


def check_adjoints(backward_univariate, w, b, x, t, lam, reference=reference_adjoints, rtol=1e-6) -> None:
    """Every adjoint against ``reference`` (rtol), then (w_bar, b_bar, x_bar, t_bar) by gradcheck."""
    bars = backward_univariate(w, b, x, t, lam)
    assert isinstance(bars, dict), f"backward_univariate must return a dict, got {type(bars).__name__}"
    for key, value in reference(w, b, x, t, lam).items():
        assert key in bars, f"backward_univariate: the dict has no key {key!r} (keys: {sorted(bars)})"
        assert np.isclose(float(bars[key]), float(value), rtol=rtol, atol=1e-9 * rtol), (
            f"backward_univariate{(w, b, x, t, lam)}: {key} = {float(bars[key]):.8g}, expected {float(value):.8g}"
        )
    gc.assert_gradient(
        lambda p: univariate_loss(p, lam),
        lambda p: tuple(float(backward_univariate(*p, lam)[k]) for k in ("w_bar", "b_bar", "x_bar", "t_bar")),
        (w, b, x, t),
    )


# ------------------------------------------------------------------ Part B: logistic regression


def reference_logreg_loss(w, b, X, t, lam) -> float:
    z = X @ w + b
    return float(np.mean(np.logaddexp(0.0, z) - t * z) + 0.5 * lam * w @ w)


def check_logreg_loss(logreg_loss, w, b, X, t, lam, what, reference=reference_logreg_loss) -> None:
    """logreg_loss is a float equal to ``reference`` (rtol 1e-10), without a warning."""
    got = _calm(logreg_loss, (w, b, X, t, lam), "logreg_loss", f"{what}: use np.logaddexp(0, z)")
    assert np.ndim(got) == 0, f"logreg_loss must return a float, got shape {np.shape(got)}"
    want = reference(w, b, X, t, lam)
    assert np.isclose(float(got), want, rtol=1e-10, atol=1e-12), (
        f"logreg_loss = {float(got):.10g} {what}; expected {want:.10g}"
    )


def check_logreg_grad(logreg_grad, w, b, X, t, lam, what, reference=None) -> None:
    """logreg_grad returns (grad_w, grad_b) of the right shapes without a warning; equal to
    ``reference(w, b, X, t, lam)`` (rtol 1e-9) when one is given."""
    got = _calm(logreg_grad, (w, b, X, t, lam), "logreg_grad", f"{what}: compute sigma(z) without overflow")
    assert isinstance(got, (tuple, list)) and len(got) == 2, "logreg_grad must return a tuple (grad_w, grad_b)"
    grad_w, grad_b = got
    assert np.shape(grad_w) == np.shape(w), f"grad_w must have the shape of w, {np.shape(w)}; got {np.shape(grad_w)}"
    assert np.ndim(grad_b) == 0, f"grad_b must be a float, got shape {np.shape(grad_b)}"
    if reference is None:
        return
    want_w, want_b = reference(w, b, X, t, lam)
    np.testing.assert_allclose(
        grad_w, want_w, rtol=1e-9, atol=1e-12, err_msg=f"grad_w {what} (compared with torch.autograd)"
    )
    assert np.isclose(float(grad_b), want_b, rtol=1e-9, atol=1e-12), (
        f"grad_b = {float(grad_b):.10g} {what}; torch.autograd gives {want_b:.10g}"
    )


def check_logreg_grad_numerically(logreg_grad, w, b, X, t, lam) -> None:
    """(grad_w, grad_b) against finite differences of the loss (gradcheck)."""

    def loss(p):
        z = X @ p[0] + p[1]
        return np.mean(np.logaddexp(0.0, z) - t * z) + 0.5 * lam * np.sum(p[0] ** 2)

    gc.assert_gradient(loss, lambda p: tuple(logreg_grad(p[0], p[1], X, t, lam)), (w, b))


# ------------------------------------------------------------------ Part C: a two-layer perceptron


def make_problem(seed, N, D, H, K, scale=1.0):
    """((W1, b1, W2, b2), X, y) from ``seed``; scores grow with ``scale``."""
    rng = np.random.default_rng(seed)
    params = (
        rng.standard_normal((D, H)) / np.sqrt(D),
        0.1 * rng.standard_normal(H),
        scale * rng.standard_normal((H, K)) / np.sqrt(H),
        0.1 * rng.standard_normal(K),
    )
    return params, rng.standard_normal((N, D)), rng.integers(0, K, N)


def reference_mlp_loss(W1, b1, W2, b2, X, y) -> float:
    import scipy.special

    S = np.tanh(X @ W1 + b1) @ W2 + b2
    return float(np.mean(scipy.special.logsumexp(S, axis=1) - S[np.arange(len(y)), y]))


def mlp_loss_stable(params, X, y):
    """Mean softmax cross-entropy, shifted by the row maximum: finite for any scores (np.real: the
    loss stays usable at gradcheck's complex points)."""
    W1, b1, W2, b2 = params
    S = np.tanh(X @ W1 + b1) @ W2 + b2
    m = np.max(np.real(S), axis=1, keepdims=True)
    return np.mean(m[:, 0] + np.log(np.sum(np.exp(S - m), axis=1)) - S[np.arange(len(y)), y])


def check_mlp_loss(mlp_loss, seed, N, D, H, K, scale=1.0, reference=reference_mlp_loss) -> None:
    """mlp_loss is a finite float equal to ``reference`` (rtol 1e-10) on make_problem(seed, ...)."""
    params, X, y = make_problem(seed, N, D, H, K, scale)
    got = mlp_loss(*params, X, y)
    assert np.ndim(got) == 0, f"mlp_loss must return a float, got shape {np.shape(got)}"
    want = reference(*params, X, y)
    assert np.isfinite(float(got)), f"mlp_loss is not finite (N, D, H, K = {N, D, H, K}, scores ~ {scale})"
    assert np.isclose(float(got), want, rtol=1e-10, atol=1e-12), (
        f"mlp_loss = {float(got):.10g} for N, D, H, K = {N, D, H, K}; expected {want:.10g}"
    )


def check_mlp_backward(mlp_backward, seed, N, D, H, K, reference=None, with_gradcheck=True) -> None:
    """(dW1, db1, dW2, db2) of the parameters' shapes; equal to ``reference(params, X, y)`` (rtol 1e-8)
    when given; against finite differences of the loss (gradcheck) if ``with_gradcheck``."""
    params, X, y = make_problem(seed, N, D, H, K)
    got = mlp_backward(*params, X, y)
    assert isinstance(got, (tuple, list)) and len(got) == 4, "mlp_backward must return a tuple (dW1, db1, dW2, db2)"
    wants = reference(params, X, y) if reference is not None else [None] * 4
    for name, g, p, want in zip(("dW1", "db1", "dW2", "db2"), got, params, wants):
        assert np.shape(g) == p.shape, (
            f"{name} must have shape {p.shape}, got {np.shape(g)} (N, D, H, K = {N, D, H, K})"
        )
        if want is not None:
            np.testing.assert_allclose(
                g,
                want,
                rtol=1e-8,
                atol=1e-12,
                err_msg=f"{name} for N, D, H, K = {N, D, H, K} (compared with torch.autograd)",
            )
    if with_gradcheck:
        gc.assert_gradient(lambda p: mlp_loss_stable(p, X, y), lambda p: tuple(mlp_backward(*p, X, y)), tuple(params))


def check_mlp_backward_large_scores(mlp_backward, seed, N, D, H, K, scale, reference=None, with_gradcheck=True):
    """For scores of size ~``scale``: no warning, finite gradients of the right shapes, equal to
    ``reference`` when given, and (if ``with_gradcheck``) against finite differences of the loss.

    The failure it catches: a softmax without the row-maximum shift overflows (inf / inf = nan).
    """
    params, X, y = make_problem(seed, N, D, H, K, scale)
    got = _calm(
        mlp_backward,
        (*params, X, y),
        "mlp_backward",
        f"for scores of size ~{scale}: subtract the row maximum of S before exponentiating",
    )
    assert isinstance(got, (tuple, list)) and len(got) == 4, "mlp_backward must return a tuple (dW1, db1, dW2, db2)"
    wants = reference(params, X, y) if reference is not None else [None] * 4
    for name, g, p, want in zip(("dW1", "db1", "dW2", "db2"), got, params, wants):
        assert np.shape(g) == p.shape, f"{name} must have shape {p.shape}, got {np.shape(g)}"
        assert np.all(np.isfinite(g)), f"{name} is not finite for scores of size ~{scale}: shift S by its row maximum"
        if want is not None:
            np.testing.assert_allclose(g, want, rtol=1e-8, atol=1e-12, err_msg=f"{name} for scores of size ~{scale}")
    if with_gradcheck:
        gc.assert_gradient(lambda p: mlp_loss_stable(p, X, y), lambda p: tuple(mlp_backward(*p, X, y)), tuple(params))
