"""Numerical directional derivatives, gradients and Jacobians.

Schemes for D_d f(x) = d/dt f(x + t d) at t = 0 (``h`` the step, ε the machine epsilon):

* complex step   D ≈ Im f(x + i h d) / h           error O(h²), no cancellation: h = 1e-20
* central        D ≈ (f(x + h d) − f(x − h d)) / 2h  error O(h²) + O(ε/h):     h ≈ ε^(1/3)
* richardson     R = (4 D(h/2) − D(h)) / 3          error O(h⁴) + O(ε/h):     h ≈ ε^(1/5)
* forward        D ≈ (f(x + h d) − f(x)) / h          error O(h) + O(ε/h):       h ≈ ε^(1/2)

The complex step is exact to round-off when ``f`` is built from analytic operations and takes
complex input; it also stays on the branch the code takes near a kink (ReLU, max). Whether it
applies is probed (:func:`choose_method`); otherwise Richardson-extrapolated central differences
are used, and the disagreement of D(h) and D(h/2) flags a kink between x − h d and x + h d.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._base import direction_stream, entry_name, leaf_scales, norm
from ._eval import ComplexUnsupported, Evaluator
from ._frames import student_facing
from ._tree import copy_tree, flatten, spec_of, unflatten

METHODS = ("auto", "complex", "central", "richardson", "forward")
COMPLEX_H = 1e-20
# D(h) and D(h/2) of a smooth f differ by O(h²) ≈ 1e-6 relative at our steps; a kink gives O(1).
KINK_RTOL = 1e-3
# The complex step is tried for any x of at most this many entries; beyond, only when a real
# evaluation took at most PROBE_SECONDS, and kept only when it costs at most COMPLEX_COST_RATIO
# real evaluations (measured: 1× at n = 10, 4.6× at 10³, 9× at 10⁴, 50× at 10⁵ for a least-squares f).
COMPLEX_ALWAYS_SIZE = 4096
PROBE_SECONDS = 5e-5
COMPLEX_COST_RATIO = 3.0


@dataclass
class Estimate:
    """A directional derivative, its absolute error estimate, and whether a kink was seen."""

    value: np.ndarray | float
    err: float
    kink: bool
    method: str
    pair: tuple | None = None  # central: (f(x + h d), f(x − h d), h), reusable by Richardson


def _eps(ev: Evaluator) -> float:
    # a composed evaluator (a derivative seen as a function) carries its own accuracy
    return float(getattr(ev, "eps", None) or np.finfo(ev.real_dtype).eps)


def directional(
    ev: Evaluator,
    d: np.ndarray,
    method: str,
    f_scale: float = 0.0,
    h: float | None = None,
    reuse: Estimate | None = None,
) -> Estimate:
    """Estimate the derivative of ``ev`` at its point along the (already scaled) direction ``d``.

    ``h`` overrides the step of the central scheme (default ε^(1/3)); its error estimate covers
    round-off only, so a caller choosing a long step confirms doubtful results with Richardson.
    ``reuse``: a central estimate along the same ``d`` at Richardson's step ε^(1/5), whose two
    evaluations Richardson then reuses (2 more evaluations instead of 4).
    """
    if method == "complex":
        y = ev(1j * COMPLEX_H * d, complex_step=True)
        value = np.imag(y) / COMPLEX_H
        # the complex step has no cancellation: its error is round-off in the value itself
        return Estimate(value, 4 * np.finfo(np.float64).eps * norm(value), False, "complex")
    eps = _eps(ev)
    if method == "forward":
        h = np.sqrt(eps)
        y0, y1 = ev(), ev(h * d)
        value = (y1 - y0) / h
        scale = max(norm(y0), norm(y1), f_scale)
        return Estimate(value, eps * scale / h + h * norm(value), False, "forward")
    if method not in ("central", "richardson"):
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "richardson" or h is None:
        h = eps ** (1 / 3) if method == "central" else richardson_step(ev)
    if reuse is not None and reuse.pair is not None and reuse.pair[2] == h:
        yp, ym = reuse.pair[:2]
    else:
        yp, ym = ev(h * d), ev(-h * d)
    d1 = (yp - ym) / (2 * h)
    scale = max(norm(yp), norm(ym), f_scale)
    noise = 4 * eps * scale / h
    if method == "central":
        return Estimate(d1, noise + _rounding_noise(ev, d, eps, h, d1, 0.0), False, "central", pair=(yp, ym, h))
    yp2, ym2 = ev(h / 2 * d), ev(-h / 2 * d)
    d2 = (yp2 - ym2) / h
    value = (4 * d2 - d1) / 3
    gap = norm(d1 - d2)
    # Second differences S(h) = f(x+h) - 2 f(x) + f(x-h) shrink like h² where f is smooth
    # (ratio S(h)/S(h/2) = 4) but like h across a kink (ratio 2) -- even when the kink sits
    # in the middle and the central differences agree with each other. When they are too small
    # to tell (f linear along d) or the ratio is off the scale, D(h) and D(h/2) must agree.
    y0 = ev()
    s1, s2 = norm(yp - 2 * y0 + ym), norm(yp2 - 2 * y0 + ym2)
    ratio = s1 / s2 if (s1 > 1e3 * eps * scale and s2 > 0) else None
    noise += _rounding_noise(ev, d, eps, h, d1, s1)
    if ratio is not None and ratio < 3.0:
        kink = True
    elif ratio is not None and ratio <= 6.0:
        kink = False
    else:
        kink = gap > KINK_RTOL * max(norm(d1), norm(d2)) + 100 * noise
    return Estimate(value, 10 * noise + 1e-3 * gap, kink, "richardson")


def richardson_step(ev: Evaluator) -> float:
    """Richardson's first step ε^(1/5), ε of the precision ``ev``'s function computes in."""
    return _eps(ev) ** (1 / 5)


def _rounding_noise(ev, d, eps, h, d1, s1):
    """Rounding x0 + h d moves the point by ε|x0|: f changes by about its slope there, which the
    differences estimate as |D| + S(h)/h. It matters where f itself is ~0 but x is not."""
    x0 = getattr(ev, "x0", None)
    if x0 is None or not x0.size:
        return 0.0
    rel = max(1.0, float(np.max(np.abs(x0))) / max(float(np.sqrt(np.mean(d**2))), 1e-300))
    return 4 * eps * rel * (norm(d1) + s1 / h) / h


def complex_affordable(ev: Evaluator) -> bool:
    """Whether to try the complex step at all, judged by the measured cost of a real evaluation.

    For a small x (≤ COMPLEX_ALWAYS_SIZE entries) it always is. For a larger one, a complex
    evaluation often costs 5–50 real ones (a real matrix is upcast to complex at every call):
    the probe is made only when a real evaluation took at most PROBE_SECONDS, so that a probe
    that turns out expensive costs little in absolute terms.
    """
    if ev.x0.size <= COMPLEX_ALWAYS_SIZE:
        return True
    real = ev.seconds["real"]
    return bool(real) and min(real) <= PROBE_SECONDS


def complex_cheap(ev: Evaluator) -> bool:
    """After a probe: keep the complex step when it costs at most COMPLEX_COST_RATIO real evaluations."""
    if ev.x0.size <= COMPLEX_ALWAYS_SIZE:
        return True
    real, cplx = ev.seconds["real"], ev.seconds["complex"]
    return bool(real and cplx) and min(cplx) <= COMPLEX_COST_RATIO * min(real)


def choose_method(ev: Evaluator, d: np.ndarray, requested: str, f_scale: float = 0.0):
    """Pick the scheme for ``ev`` by accuracy and measured cost; return it with the estimate along ``d``.

    ``auto`` tries the complex step where it is affordable (:func:`complex_affordable`) and
    validates it once against Richardson differences: a function that accepts complex input but
    is not analytic (``abs``, ``np.real``, a comparison on the real part) gives a wrong
    complex-step derivative, which this catches. A valid complex step is kept when it is cheap
    (:func:`complex_cheap`), or when the differences straddle a kink (the complex step stays on
    the branch the code takes); otherwise Richardson differences, whose accuracy the checks
    monitor, are used. Returns ``(method, estimate, kink_seen)``.
    """
    if requested not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {requested!r}")
    if requested != "auto":
        est = directional(ev, d, requested, f_scale)
        return requested, est, est.kink
    if not complex_affordable(ev):
        est = directional(ev, d, "richardson", f_scale)
        return "richardson", est, est.kink
    try:
        cs = directional(ev, d, "complex")
    except ComplexUnsupported:
        est = directional(ev, d, "richardson", f_scale)
        return "richardson", est, est.kink
    rich = directional(ev, d, "richardson", f_scale)
    if rich.kink:
        # Differences straddle a kink; the complex step stays on the branch the code takes.
        return "complex", cs, True
    agree = norm(cs.value - rich.value) <= 1e-6 * max(norm(cs.value), norm(rich.value)) + 100 * rich.err
    if agree and complex_cheap(ev):
        return "complex", cs, False
    return "richardson", rich, False


def full_jacobian(ev: Evaluator, x0: np.ndarray, spec, method: str, f_scale: float = 0.0):
    """Column by column: J[:, j] = D_{s_j e_j} f / s_j.

    Returns (J (M, N), kink flags (N,), absolute error estimates of the columns (N,)).
    """
    s = leaf_scales(x0, spec)
    cols, kinks, errs = [], np.zeros(x0.size, dtype=bool), np.zeros(x0.size)
    for j in range(x0.size):
        e = np.zeros_like(x0)
        e[j] = s[j]
        est = directional(ev, e, method, f_scale)
        cols.append(np.real(np.ravel(est.value)) / s[j])
        kinks[j] = est.kink
        errs[j] = est.err / s[j]
    return np.stack(cols, axis=1), kinks, errs


def prepare(f, x, scalar):
    """The structure of ``x``, ``x`` flattened, and an evaluator of ``f`` there (``x`` must be finite)."""
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    spec = spec_of(x)
    x0 = flatten(x, spec)
    if not np.all(np.isfinite(x0)):
        bad = int(np.flatnonzero(~np.isfinite(x0))[0])
        raise ValueError(f"x contains NaN or inf (first at {entry_name(spec.leaves, bad)}); checks need a finite point")
    ev = Evaluator(f, spec, x0, scalar=scalar)
    return spec, x0, ev


def pick_method(ev, x0, spec, method):
    """Resolve ``auto`` with one probe along a fixed random direction."""
    if method != "auto":
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        return method
    _, draw = direction_stream(x0, spec, 0)
    d = draw()
    chosen, _, _ = choose_method(ev, d, "auto")
    return chosen


@student_facing
def numerical_gradient(f, x, method: str = "auto"):
    """Numerical gradient of a scalar ``f`` at ``x``, returned in the structure of ``x``.

    Costs N evaluations (complex step), 2N (central), 4N (Richardson) or N + 1 (forward)
    for N entries of ``x``.
    """
    spec, x0, ev = prepare(f, copy_tree(x), scalar=True)
    f_scale = abs(complex(ev()))
    J, _, _ = full_jacobian(ev, x0, spec, pick_method(ev, x0, spec, method), f_scale)
    return unflatten(J.reshape(-1), spec)


@student_facing
def numerical_jacobian(f, x, method: str = "auto") -> np.ndarray:
    """Numerical Jacobian of ``f`` at ``x``: an array of shape ``f(x).shape + x.shape``.

    ``x`` must be a float, array or tensor (for structures use :func:`numerical_gradient`
    of ⟨w, f⟩ or ``check_vjp``).
    """
    spec, x0, ev = prepare(f, copy_tree(x), scalar=False)
    if not spec.single_array:
        raise TypeError(
            f"numerical_jacobian: x must be a float, a NumPy array or a torch tensor, not {spec.describe()}"
        )
    y0 = ev()
    if ev.out_spec[0] != "array":
        raise TypeError("numerical_jacobian: f(x) must return one array or tensor")
    J, _, _ = full_jacobian(ev, x0, spec, pick_method(ev, x0, spec, method), norm(y0))
    return J.reshape(tuple(ev.out_spec[1]) + tuple(spec.leaves[0].shape))
