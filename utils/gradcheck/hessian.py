"""Hessians and Hessian-vector products against second differences.

For random pairs (v, w) the student's wᵀ H v is compared with the directional derivative along v
of the directional derivative along w of ``f`` (or of ``grad`` when given: more accurate), and the
student's operator must be symmetric: vᵀ H w = wᵀ H v.
"""

from __future__ import annotations

import numpy as np

from . import numerical as num
from ._base import ATTENUATION, C2, TINY, leaf_scales, norm, rms
from ._common import HESSIAN_RTOL, check_callable, directions, nonfinite, read_like_x, real_array, tolerance
from ._eval import Evaluator
from ._frames import asserting, student_facing
from ._tree import Leaf, copy_tree, flatten, spec_of, unflatten
from .diagnose import diagnose, sentence, shape_message, worst_entries
from .result import CheckResult


class _Mixed:
    """x0 + t ↦ D_w f(x0 + t): a directional derivative seen as a function, for wᵀ H v."""

    def __init__(self, ev: Evaluator, w: np.ndarray, inner: str):
        self.ev, self.w, self.inner = ev, w, inner
        self.real_dtype = np.dtype(np.float64)
        # the inner derivative's relative accuracy plays the part of ε for the outer difference
        self.eps = 1e-15 if inner == "complex" else 4 * np.finfo(np.float64).eps ** (2 / 3)

    @property
    def n_evals(self):
        return self.ev.n_evals

    def __call__(self, t=None, complex_step=False):
        base = self.ev.x0
        shifted = Evaluator(self.ev.f, self.ev.spec, base if t is None else base + t, scalar=True)
        est = num.directional(shifted, self.w, "complex" if self.inner == "complex" else "central")
        self.ev.n_evals += shifted.n_evals
        return float(np.real(est.value))


def _hessian_core(f, x, user_Hv, user_full, grad, rtol, n_pairs, seed, method, max_localize, kind):
    """Compare wᵀ H v (student) with numerical second derivatives for random pairs (v, w)."""
    spec, x0, ev = num.prepare(f, copy_tree(x), scalar=True)
    f0 = ev()
    f_scale = abs(complex(f0))
    tol = tolerance(spec, rtol, HESSIAN_RTOL)
    s, dirs = directions(x0, spec, 2 * n_pairs, seed)
    vs, ws = dirs[:n_pairs], dirs[n_pairs:]
    yours_Hv = []
    for v in vs:
        hv, failed = user_Hv(v)
        if failed is not None:
            failed.n_evals = ev.n_evals
            return failed
        yours_Hv.append(hv)
    # symmetry: vᵀ H w = wᵀ H v for the student's own operator
    hw, failed = user_Hv(ws[0])
    if failed is not None:
        return failed
    scale = np.sqrt(C2) * max(norm(s * yours_Hv[0]), norm(s * hw), TINY)
    asym = abs(vs[0] @ hw - ws[0] @ yours_Hv[0]) / scale
    if grad is not None:
        gspec_ev = Evaluator(grad, spec, x0, scalar=False, name="grad")
        chosen, est0, _ = num.choose_method(gspec_ev, vs[0], method, 0.0)
        ests = [est0] + [num.directional(gspec_ev, v, chosen, 0.0) for v in vs[1:]]
        ev.n_evals += gspec_ev.n_evals
        num_b = np.array([w @ np.real(np.ravel(e.value)) for w, e in zip(ws, ests)])
        err_b = np.array([norm(w) * e.err for w, e in zip(ws, ests)])
        how = "directional derivatives of grad"
    else:
        inner, _, _ = num.choose_method(ev, ws[0], "auto" if method == "auto" else method, f_scale)
        num_b, err_b = [], []
        for v, w in zip(vs, ws):
            mixed = _Mixed(ev, w, inner)
            est = num.directional(mixed, v, "richardson")
            num_b.append(est.value)
            err_b.append(est.err)
        num_b, err_b = np.array(num_b, dtype=float), np.array(err_b)
        chosen, how = f"{inner}+richardson", "second differences of f"
    yours_b = np.array([w @ hv for w, hv in zip(ws, yours_Hv)])
    # E[(wᵀ H v)²] = C2 · ‖s ∘ (H v)‖² for random w: the scale of a correct bilinear form
    denom = max(np.sqrt(C2) * rms([norm(s * hv) for hv in yours_Hv]), rms(num_b), TINY)
    err = rms(yours_b - num_b) / denom
    tol_eff = max(tol, 10 * rms(err_b) / denom)
    symmetric = asym <= max(10 * tol_eff, 1e-10)
    details = dict(n_evals=ev.n_evals, method=chosen, kind=kind, resolution=tol_eff / ATTENUATION**2)
    if err <= tol_eff and symmetric:
        return CheckResult.success(
            err, tol_eff, f"your {kind} matches {how} for {n_pairs} random pairs (v, w) and is symmetric", **details
        )
    N = x0.size
    if N <= max_localize:
        Hn = _numerical_hessian(ev, x0, spec, grad, method, f_scale)
        details["n_evals"] = ev.n_evals
        Hu = user_full()
        leaf = Leaf("H", "array", (N, N), np.dtype(np.float64))
        full_err = norm(Hu - Hn) / max(norm(Hn), TINY)
        worst = worst_entries(Hu.reshape(-1), Hn.reshape(-1), [leaf])
        if not symmetric:
            if norm((Hu + Hu.T) / 2 - Hn) <= max(10 * tol_eff, 1e-6) * max(norm(Hn), TINY):
                return CheckResult.failure(
                    "symmetric_part",
                    full_err,
                    tol_eff,
                    f"your {kind} is not symmetric, but its symmetric part "
                    "(H + Hᵀ)/2 is right: the Hessian of a smooth f is symmetric — did you write 2A where A + Aᵀ is "
                    "needed?",
                    worst=worst,
                    **details,
                )
            return CheckResult.failure(
                "not_symmetric",
                full_err,
                tol_eff,
                f"your {kind} is not symmetric (vᵀHw ≠ wᵀHv), and the Hessian of a smooth f is; it is also wrong",
                worst=worst,
                **details,
            )
        code, msg = diagnose(Hu.reshape(-1), Hn.reshape(-1), [leaf], tol_eff, what=kind, hessian=True)
        return CheckResult.failure(code, full_err, tol_eff, msg, worst=worst, **details)
    if not symmetric:
        return CheckResult.failure(
            "not_symmetric", err, tol_eff, f"your {kind} is not symmetric: vᵀHw ≠ wᵀHv", **details
        )
    c = float(yours_b @ num_b / max(num_b @ num_b, TINY))
    code, msg = (
        ("sign", sentence("sign", kind))
        if abs(c + 1) < 1e-6
        else ("mismatch", f"your {kind} differs from {how}; x has {N} entries, more than max_localize={max_localize}")
    )
    return CheckResult.failure(code, err, tol_eff, msg, **details)


def _numerical_hessian(ev, x0, spec, grad, method, f_scale):
    N = x0.size
    if grad is not None:
        gev = Evaluator(grad, spec, x0, scalar=False, name="grad")
        chosen = num.pick_method(gev, x0, spec, method)
        H, _, _ = num.full_jacobian(gev, x0, spec, chosen, 0.0)
        ev.n_evals += gev.n_evals
        return (H + H.T) / 2
    inner = num.pick_method(ev, x0, spec, method)
    s = leaf_scales(x0, spec)
    H = np.empty((N, N))
    for i in range(N):
        ei = np.zeros(N)
        ei[i] = s[i]
        mixed = _Mixed(ev, ei, inner)
        for j in range(i, N):
            ej = np.zeros(N)
            ej[j] = s[j]
            H[i, j] = H[j, i] = num.directional(mixed, ej, "richardson").value / (s[i] * s[j])
    return H


def _square(Hraw, spec, kind):
    H = real_array(Hraw, "hess")
    N = spec.size
    shape = tuple(spec.leaves[0].shape) if spec.single_array else (N,)
    want = shape + shape
    if H.shape not in (want, (N, N)):
        msg = shape_message(Leaf("H", "array", want, np.dtype(np.float64)), H.shape, kind)
        return None, CheckResult.wrong_shape(msg.replace("(the shape of H)", "(= x.shape + x.shape, or (n, n))"), kind)
    H = H.astype(np.float64).reshape(N, N)
    bad = nonfinite(H.reshape(-1), [Leaf("H", "array", (N, N), np.dtype(np.float64))], "hess", kind)
    return (None, bad) if bad is not None else (H, None)


@student_facing
def check_hessian(
    f, hess, x, *, grad=None, rtol=None, n_pairs=3, seed=0, method="auto", max_localize=60
) -> CheckResult:
    """Check ``hess(x)`` (shape ``x.shape + x.shape``, or ``(n, n)``) against second differences of ``f``.

    For random pairs (v, w), wᵀ H v is compared with the directional derivative along v of
    the directional derivative along w of ``f`` (or of ``grad`` when given: more accurate);
    the student's H must also be symmetric, vᵀ H w = wᵀ H v.
    """
    f = check_callable(f, "f")
    hess = check_callable(hess, "hess")
    if grad is not None:
        grad = check_callable(grad, "grad")
    spec = spec_of(copy_tree(x))
    H, failed = _square(hess(copy_tree(x)), spec, "Hessian")
    if failed is not None:
        return failed
    return _hessian_core(
        f, x, lambda v: (H @ v, None), lambda: H, grad, rtol, n_pairs, seed, method, max_localize, "Hessian"
    )


@student_facing
def check_hvp(f, hvp, x, *, grad=None, rtol=None, n_pairs=3, seed=0, method="auto", max_localize=60) -> CheckResult:
    """Check a Hessian-vector product ``hvp(x, v) = ∇²f(x) v`` (shaped like ``x``).

    Compared through wᵀ (H v) for random v, w with second differences of ``f`` (or directional
    derivatives of ``grad`` when given), plus the symmetry vᵀ H w = wᵀ H v.
    """
    f = check_callable(f, "f")
    hvp = check_callable(hvp, "hvp")
    if grad is not None:
        grad = check_callable(grad, "grad")
    spec = spec_of(copy_tree(x))
    x0 = flatten(copy_tree(x), spec)

    def user_Hv(v):
        return read_like_x(hvp(unflatten(x0, spec), unflatten(v, spec)), spec, "hvp", "HVP")

    def user_full():
        cols = []
        for j in range(x0.size):
            e = np.zeros_like(x0)
            e[j] = 1.0
            cols.append(user_Hv(e)[0])
        return np.stack(cols, axis=1)

    return _hessian_core(f, x, user_Hv, user_full, grad, rtol, n_pairs, seed, method, max_localize, "HVP")


assert_hessian = asserting(check_hessian)
assert_hvp = asserting(check_hvp)
