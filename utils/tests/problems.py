"""Functions with known gradients / Hessians, shared by the tests (numpy, complex-safe)."""

import numpy as np


def least_squares(rng, n=20, m=15):
    A, b = rng.standard_normal((m, n)), rng.standard_normal(m)
    f = lambda x: 0.5 * np.sum((A @ x - b) ** 2)
    g = lambda x: A.T @ (A @ x - b)
    H = lambda x: A.T @ A
    return f, g, H, rng.standard_normal(n)


def bench(rng, n=100):
    """The benchmark function ½‖Ax − b‖² + 0.1 Σ log(1 + eˣ)."""
    A, b = rng.standard_normal((50, n)), rng.standard_normal(50)
    f = lambda x: 0.5 * np.sum((A @ x - b) ** 2) + 0.1 * np.sum(np.log1p(np.exp(x)))
    g = lambda x: A.T @ (A @ x - b) + 0.1 / (1 + np.exp(-x))
    return f, g, rng.standard_normal(n)


def quadratic(rng, n=6):
    A = rng.standard_normal((n, n))  # non-symmetric on purpose
    f = lambda x: x @ A @ x
    g = lambda x: (A + A.T) @ x
    H = lambda x: A + A.T
    return f, g, H, rng.standard_normal(n), A


def logistic(rng, m=30, n=5, lam=0.1):
    X, t = rng.standard_normal((m, n)), (rng.random(m) > 0.5).astype(float)
    sig = lambda z: 1 / (1 + np.exp(-z))
    f = lambda w: -np.sum(t * np.log(sig(X @ w)) + (1 - t) * np.log(1 - sig(X @ w))) + lam / 2 * w @ w
    g = lambda w: X.T @ (sig(X @ w) - t) + lam * w
    H = lambda w: X.T @ (X * (sig(X @ w) * (1 - sig(X @ w)))[:, None]) + lam * np.eye(n)
    return f, g, H, rng.standard_normal(n)


def trace_AXB(rng, m=4, n=3):
    A, B = rng.standard_normal((n, m)), rng.standard_normal((n, n))
    f = lambda X: np.trace(A @ X @ B)  # X is m×n
    g = lambda X: A.T @ B.T
    return f, g, rng.standard_normal((m, n))


def logdet(rng, n=5):
    M = rng.standard_normal((n, n))
    X0 = M @ M.T + n * np.eye(n) + 0.5 * rng.standard_normal((n, n))  # non-symmetric, det > 0
    f = lambda X: np.log(np.linalg.det(X))
    g = lambda X: np.linalg.inv(X).T
    return f, g, X0


def frobenius(rng, m=3, n=4):
    return (lambda X: np.sum(X * X)), (lambda X: 2 * X), rng.standard_normal((m, n))


def a_Xinv_b(rng, n=4):
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    f = lambda X: a @ np.linalg.solve(X, b)
    g = lambda X: -np.linalg.inv(X).T @ np.outer(a, b) @ np.linalg.inv(X).T
    return f, g, rng.standard_normal((n, n)) + n * np.eye(n)
