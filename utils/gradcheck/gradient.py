"""Gradients and VJPs (a VJP is the gradient of x ↦ ⟨w, f(x)⟩) against finite differences.

How a check works: draw a few random directions d_k (random signs times magnitudes in
[0.5, 1.5], scaled to the data), compare the student's ⟨g, d_k⟩ with the numerical directional
derivative D_k f — O(1) evaluations whatever the size of x — and form the normwise relative error

    err = rms_k(⟨g, d_k⟩ − D_k f) / (c · ‖g‖_s),     c² = E[u²] = 13/12,

which estimates ‖g − ∇f‖ / ‖∇f‖. Because every |u_j| ≥ 1/2, a mistake in one single entry
shows up in every direction. On failure the check localises: it computes the whole numerical
derivative (up to ``max_localize`` entries) and names the mistake (:mod:`gradcheck.diagnose`).
"""

from __future__ import annotations

import numpy as np

from . import numerical as num
from ._base import ATTENUATION, C2, TINY, direction_stream, norm, rms
from ._common import (
    DEFAULT_RTOL,
    MAX_EXTRA_DIRS,
    THIN,
    check_callable,
    dtype_of,
    precision_hint,
    read_like_x,
    tolerance,
)
from ._eval import Evaluator, _flatten_out, output_like
from ._frames import asserting, student_facing
from ._tree import copy_tree
from .diagnose import diagnose, sentence, worst_entries
from .result import CheckResult


def _gradient_core(f, grad, x, *, rtol, n_dirs, seed, method, max_localize, kind, who, scalar_ev=None):
    spec, x0, ev = num.prepare(f, copy_tree(x), scalar=True) if scalar_ev is None else scalar_ev
    f0 = ev()
    f_scale = abs(complex(f0))
    tol = tolerance(spec, rtol, DEFAULT_RTOL)
    raw = grad(copy_tree(x))
    raw_dtype = dtype_of(raw)
    g, failed = read_like_x(raw, spec, who, kind)
    if failed is not None:
        failed.n_evals = ev.n_evals
        return failed
    s, draw = direction_stream(x0, spec, seed)
    dirs = [draw()]

    def compare(dirs, ests):
        yours = np.array([g @ d for d in dirs])
        D = np.array([float(np.real(e.value)) for e in ests])
        denom = max(np.sqrt(C2) * norm(s * g), rms(D), TINY)
        return yours, D, denom, rms(yours - D) / denom, max(tol, 10 * rms([e.err for e in ests]) / denom)

    def matches(err, tol_eff, chosen):
        return CheckResult.success(
            err,
            tol_eff,
            f"your {kind} matches the numerical one along {len(dirs)} random directions",
            n_evals=ev.n_evals,
            method=chosen,
            kind=kind,
            resolution=tol_eff / ATTENUATION,
        )

    if method == "auto" and n_dirs is None and not num.complex_affordable(ev):
        # A large x and a costly f: two central differences (4 evaluations) settle a clear pass;
        # anything less clear is decided by Richardson differences along the same directions.
        dirs.append(draw())
        # Central differences at Richardson's long step: least round-off, and their evaluations
        # are the first half of the Richardson estimates that settle a doubtful case.
        ests = [num.directional(ev, d, "central", f_scale, h=num.richardson_step(ev)) for d in dirs]
        yours, D, denom, err, tol_eff = compare(dirs, ests)
        if err <= tol_eff / THIN and tol_eff <= tol:
            return matches(err, tol_eff, "central")
        chosen, kink = "richardson", False
        ests = [num.directional(ev, d, chosen, f_scale, reuse=e) for d, e in zip(dirs, ests)]
    else:
        chosen, est0, kink = num.choose_method(ev, dirs[0], method, f_scale)
        # the complex step costs 1 evaluation a direction, Richardson 4: keep a check within 10
        k = (3 if chosen == "complex" else 2) if n_dirs is None else n_dirs
        dirs += [draw() for _ in range(k - 1)]
        ests = [est0] + [num.directional(ev, d, chosen, f_scale) for d in dirs[1:]]
    extra = 0
    while True:
        kink = kink or any(e.kink for e in ests)
        yours, D, denom, err, tol_eff = compare(dirs, ests)
        # A thin margin (the error within a factor THIN of the tolerance) is decided on more
        # data: up to MAX_EXTRA_DIRS more directions, so that a mistake near the tolerance is
        # not passed on the luck of a few draws.
        if n_dirs is not None or extra >= MAX_EXTRA_DIRS or not (tol_eff / THIN < err <= tol_eff) or kink:
            break
        dirs.append(draw())
        ests.append(num.directional(ev, dirs[-1], chosen, f_scale))
        extra += 1
    resolution = tol_eff / ATTENUATION
    if err <= tol_eff and not (kink and chosen != "complex"):
        return matches(err, tol_eff, chosen)
    hint = precision_hint(raw_dtype, spec)
    if x0.size > max_localize:
        if kink and chosen != "complex":
            return CheckResult.unreliable(
                err, tol_eff, n_evals=ev.n_evals, method=chosen, kind=kind, resolution=resolution
            )
        code, msg = _directional_diagnosis(ev, spec, g, dirs, yours, D, denom, tol_eff, chosen, f_scale, kind)
        if code == "mismatch":
            msg += (
                f"; x has {x0.size} entries, more than max_localize={max_localize}, so the wrong entries are not named"
            )
        return CheckResult.failure(
            code, err, tol_eff, msg + hint, n_evals=ev.n_evals, method=chosen, kind=kind, resolution=resolution
        )
    J, kinks, errs = num.full_jacobian(ev, x0, spec, chosen, f_scale)
    G = J[0]
    mask = ~kinks
    # relative to the true gradient; where that is exactly zero, relative to yours
    full_denom = max(norm(G[mask]), norm(g[mask]) if not norm(G[mask]) else 0.0, TINY)
    full_err = norm((g - G)[mask]) / full_denom
    tol_full = max(tol, 10 * norm(errs[mask]) / full_denom)
    skipped = [w["index"] for w in worst_entries(np.where(kinks, 1.0, 0.0), np.zeros_like(G), spec.leaves, k=5)]
    note = (
        f" Entries {', '.join(skipped)} are next to a kink of f (finite differences disagree) and were not checked."
        if kinks.any()
        else ""
    )
    if full_err <= tol_full:
        return CheckResult.success(
            full_err,
            tol_full,
            f"your {kind} matches the numerical one in every entry.{note}",
            diagnosis="kink" if kinks.any() else "ok",
            n_evals=ev.n_evals,
            method=chosen,
            kind=kind,
            resolution=tol_full,
        )
    code, msg = diagnose(np.where(mask, g, 0), np.where(mask, G, 0), spec.leaves, tol_full, what=kind)
    worst = worst_entries(np.where(mask, g, 0), np.where(mask, G, 0), spec.leaves)
    return CheckResult.failure(
        code,
        full_err,
        tol_full,
        msg + note + hint,
        worst=worst,
        n_evals=ev.n_evals,
        method=chosen,
        kind=kind,
        resolution=tol_full,
    )


def _directional_diagnosis(ev, spec, g, dirs, yours, D, denom, tol_eff, chosen, f_scale, kind):
    """Name a mistake from directional data alone (x too large to compute the whole gradient).

    yours_k = ⟨g, d_k⟩ against D_k = ⟨∇f, d_k⟩: a constant ratio means a sign or a factor. For a
    square matrix x, ⟨g, d⟩ = ⟨∇f, dᵀ⟩ for all d means g = ∇fᵀ (transposed), and
    ⟨g, sym d⟩ = ⟨∇f, sym d⟩ means only the symmetric part is right; D_{dᵀ} costs one more
    evaluation per direction, and D_{sym d} = (D_d + D_{dᵀ})/2 by linearity.
    """
    close = max(10 * tol_eff, 1e-6)
    c = float(yours @ D / max(D @ D, TINY))
    resid = rms(yours - c * D) / denom
    # a constant ratio must explain the error, not merely leave a residual below the tolerance
    # (a tiny single-entry error along two or three directions is nearly proportional too)
    explained = resid <= close and resid <= 0.01 * rms(yours - D) / denom
    if explained and abs(c + 1) <= close:
        return "sign", sentence("sign", kind)
    if explained and abs(c - 1) > close and c != 0:
        return "factor", f"off by a constant factor: your {kind} is ≈ {c:.4g} × the true one"
    leaf = spec.leaves[0] if spec.single_array else None
    if leaf is not None and len(leaf.shape) == 2 and leaf.shape[0] == leaf.shape[1] > 1:
        n = leaf.shape[0]
        flipped = [d.reshape(n, n).T.reshape(-1) for d in dirs]
        Dt = np.array([float(np.real(num.directional(ev, d, chosen, f_scale).value)) for d in flipped])
        if rms(yours - Dt) / denom <= close:
            return "transposed", sentence("transposed", kind)
        yours_sym = np.array([g @ ((d + t) / 2) for d, t in zip(dirs, flipped)])
        if rms(yours_sym - (D + Dt) / 2) / denom <= close:
            return "symmetric_part", sentence("symmetric_part", kind)
    return "mismatch", f"your {kind} differs from the numerical one"


@student_facing
def check_gradient(f, grad, x, *, rtol=None, n_dirs=None, seed=0, method="auto", max_localize=2000) -> CheckResult:
    """Check ``grad`` against finite differences of the scalar function ``f`` at ``x``.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar``. Accepting complex input lets the check use the complex step.
    grad : callable
        ``grad(x)`` returning ∇f(x) in the structure of ``x`` (same shapes).
    x : float, ndarray, torch.Tensor, or tuple / list / dict of those
        The point; never modified.
    rtol : float, optional
        Relative tolerance on ‖grad − ∇f‖ / ‖∇f‖; default from the dtype of ``x``
        (1e-9 for float64, 1e-4 for float32), raised to 10 × the estimated FD error.
    n_dirs : int, optional
        Random directions (default 3 with the complex step, 2 with Richardson).
    seed : int
        Seed of the random directions.
    method : {"auto", "complex", "richardson", "central", "forward"}
    max_localize : int
        Largest size of ``x`` for which a failure computes the whole numerical gradient
        to name the wrong entries.

    Returns
    -------
    CheckResult
    """
    f = check_callable(f, "f")
    grad = check_callable(grad, "grad")
    return _gradient_core(
        f,
        grad,
        x,
        rtol=rtol,
        n_dirs=n_dirs,
        seed=seed,
        method=method,
        max_localize=max_localize,
        kind="gradient",
        who="grad",
    )


@student_facing
def check_vjp(f, vjp, x, *, rtol=None, n_dirs=None, seed=0, method="auto", max_localize=2000) -> CheckResult:
    """Check a vector-Jacobian product ``vjp(x, v) = vᵀ J(x)`` (shaped like ``x``).

    Uses ``vᵀ J = ∇_x ⟨v, f(x)⟩``: with a random cotangent ``v`` shaped like ``f(x)``, the
    VJP is checked as the gradient of the scalar ``x ↦ ⟨v, f(x)⟩``.
    """
    f = check_callable(f, "f")
    vjp = check_callable(vjp, "vjp")
    return vjp_core(
        f, vjp, x, rtol=rtol, n_dirs=n_dirs, seed=seed, method=method, max_localize=max_localize, kind="VJP", who="vjp"
    )


def vjp_core(f, vjp, x, *, rtol, n_dirs, seed, method, max_localize, kind, who):
    """:func:`check_vjp` for callables already checked (also :func:`gradcheck.check_function`'s backward)."""
    spec, x0, ev = num.prepare(f, copy_tree(x), scalar=False)
    y0 = ev()
    rng = np.random.default_rng(seed + 7919)
    w = rng.standard_normal(np.size(y0))
    w_obj = output_like(w, ev)

    def phi(xx):
        return w @ _flatten_out(f(xx), ev.out_spec, "f")

    scalar_ev = (spec, x0, Evaluator(phi, spec, x0, scalar=True))
    return _gradient_core(
        phi,
        lambda xx: vjp(xx, copy_tree(w_obj)),
        x,
        rtol=rtol,
        n_dirs=n_dirs,
        seed=seed,
        method=method,
        max_localize=max_localize,
        kind=kind,
        who=who,
        scalar_ev=scalar_ev,
    )


assert_gradient = asserting(check_gradient)
assert_vjp = asserting(check_vjp)
