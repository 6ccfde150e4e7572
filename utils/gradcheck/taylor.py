"""The Taylor test: how the remainder of the first-order expansion shrinks with the step.

For a direction v and steps h,

    r0(h) = |f(x + h v) − f(x)|                  = O(h)   (slope 1 on a log-log plot)
    r1(h) = |f(x + h v) − f(x) − h ⟨∇f(x), v⟩|   = O(h²)  (slope 2) iff the gradient is right.

With a wrong gradient r1 is O(h) too: the slope breaks down to 1. When f is linear along v,
r1 is round-off at every h and no slope can be observed (``order1`` is nan then).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import check_callable, read_like_x
from ._frames import student_facing
from ._tree import copy_tree, flatten, spec_of, unflatten


@dataclass
class TaylorResult:
    steps: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    order0: float
    order1: float
    passed: bool
    message: str

    def __bool__(self):
        return bool(self.passed)

    def __str__(self):
        return (
            f"Taylor test {'passed' if self.passed else 'FAILED'}: {self.message} "
            f"(observed orders: zeroth remainder {self.order0:.2f}, first remainder {self.order1:.2f})"
        )

    def plot(self, ax=None, label=None):
        """Log-log plot of both remainders with reference slopes 1 and 2."""
        import matplotlib.pyplot as plt  # noqa: PLC0415 - optional, imported on use

        if ax is None:
            ax = plt.gca()
        tag = f" ({label})" if label else ""
        ax.loglog(self.steps, self.r0, "o-", label=f"|f(x+hv) − f(x)|{tag}")
        ax.loglog(self.steps, self.r1, "s-", label=f"|f(x+hv) − f(x) − h⟨g, v⟩|{tag}")
        h = self.steps
        for slope, style in ((1, ":"), (2, "--")):
            ref = self.r0[0] * (h / h[0]) ** slope
            ax.loglog(h, ref, "k" + style, lw=0.8, label=f"slope {slope}")
        ax.set_xlabel("step h")
        ax.set_ylabel("remainder")
        ax.legend(fontsize=8)
        return ax


def _slope(h, r, noise):
    """Least-squares slope of log r against log h over the points above round-off."""
    ok = r > noise
    if ok.sum() < 3:
        return float("nan")
    return float(np.polyfit(np.log(h[ok]), np.log(r[ok]), 1)[0])


@student_facing
def taylor_test(f, grad, x, direction=None, steps=None, seed=0) -> TaylorResult:
    """Run the Taylor test of ``grad`` for the scalar ``f`` at ``x``.

    Parameters
    ----------
    f, grad : callables as in :func:`gradcheck.check_gradient`.
    x : point (any structure ``check_gradient`` accepts).
    direction : like ``x``, optional; random (seeded) by default.
    steps : 1-D array of decreasing positive steps; default 10⁻¹ … 10⁻⁶ (11 steps),
        scaled by the size of ``x``.

    Returns
    -------
    TaylorResult with ``steps``, ``r0``, ``r1``, ``order0``, ``order1``, ``passed``.
    """
    f = check_callable(f, "f")
    grad = check_callable(grad, "grad")
    spec = spec_of(copy_tree(x))
    x0 = flatten(x, spec)
    if direction is None:
        v = np.random.default_rng(seed).standard_normal(x0.size)
    else:
        v = flatten(direction, spec_of(direction, what="direction"))
        if v.size != x0.size:
            raise ValueError(f"direction has {v.size} entries, x has {x0.size}")
    scale = max(float(np.sqrt(np.mean(x0**2))), 1.0)
    v = v * scale / max(float(np.sqrt(np.mean(v**2))), 1e-300)
    h = np.logspace(-1, -6, 11) if steps is None else np.asarray(steps, dtype=float)
    if h.ndim != 1 or h.size < 3 or np.any(h <= 0):
        raise ValueError("steps must be a 1-D array of at least 3 positive numbers")
    g, failed = read_like_x(grad(copy_tree(x)), spec, "grad", "gradient")
    if failed is not None:
        raise ValueError(f"taylor_test: {failed.message}")
    f0 = float(np.real(f(unflatten(x0, spec))))
    slope = float(g @ v)
    fh = np.array([float(np.real(f(unflatten(x0 + hk * v, spec)))) for hk in h])
    r0 = np.abs(fh - f0)
    r1 = np.abs(fh - f0 - h * slope)
    # round-off in evaluating f: remainders below it carry no slope
    noise = 64 * np.finfo(float).eps * (abs(f0) + np.abs(fh) + h * abs(slope))
    order0, order1 = _slope(h, r0, noise), _slope(h, r1, noise)
    if np.isnan(order1):
        passed = bool(np.all(r1 <= noise))
        msg = (
            "f is linear along v: the first-order remainder is round-off at every step"
            if passed
            else "the first-order remainder does not decrease"
        )
    else:
        passed = order1 > 1.8
        msg = (
            "the first-order remainder decreases like h², as it must with the right gradient"
            if passed
            else f"the first-order remainder decreases like h^{order1:.1f}, not h²: the gradient is wrong"
        )
    return TaylorResult(h, r0, r1, order0, order1, passed, msg)
