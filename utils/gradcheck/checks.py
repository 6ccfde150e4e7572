"""The checks: gradients, Jacobians, VJPs, JVPs, Hessians and HVPs against finite differences.

How a check works (gradient): draw a few random directions d_k (random signs times
magnitudes in [0.5, 1.5], scaled to the data), compare the student's ⟨g, d_k⟩ with the
numerical directional derivative D_k f — O(1) evaluations whatever the size of x — and form
the normwise relative error

    err = rms_k(⟨g, d_k⟩ − D_k f) / (c · ‖g‖_s),     c² = E[u²] = 13/12,

which estimates ‖g − ∇f‖ / ‖∇f‖. Because every |u_j| ≥ 1/2, a mistake in one single entry
shows up in every direction. On failure the check localises: it computes the whole numerical
derivative (up to ``max_localize`` entries) and names the mistake (:mod:`gradcheck.diagnose`).

Jacobians, VJPs and JVPs use the identity ⟨w, J u⟩ (a VJP is the gradient of x ↦ ⟨w, f(x)⟩);
Hessians and HVPs use the directional derivative of a directional derivative, wᵀ H v, and the
symmetry vᵀ H w = wᵀ H v.
"""
from __future__ import annotations

import numpy as np

from . import numerical as num
from ._eval import ComplexUnsupported, Evaluator, _flatten_out, accept_torch, output_like
from ._tree import Leaf, StructureError, copy_tree, leaves_like, unflatten
from .diagnose import diagnose, sentence, shape_message, worst_entries
from .result import CheckResult

C2 = 13.0 / 12.0          # second moment of the direction entries
# An error confined to one entry j shows in the directional estimate as |u_j| / √C2 ≥ this
# fraction of its true relative size: the check resolves any such error ≥ tolerance / ATTENUATION.
ATTENUATION = 0.5 / np.sqrt(C2)
THIN = 4.0                # error within tolerance / THIN … tolerance: a thin margin
MAX_EXTRA_DIRS = 2
DEFAULT_RTOL = {64: 1e-9, 32: 1e-4, 16: 1e-2}
HESSIAN_RTOL = {64: 1e-6, 32: 1e-3, 16: 3e-2}
TINY = 1e-300


def _norm(v) -> float:
    return float(np.linalg.norm(np.ravel(v)))


def _rms(v) -> float:
    v = np.ravel(np.asarray(v, dtype=float))
    return float(np.sqrt(np.mean(v ** 2))) if v.size else 0.0


def _check_callable(obj, name):
    """``obj`` ready to be called with gradcheck's data: NumPy arrays, or tensors for torch code."""
    if not callable(obj):
        raise TypeError(f"{name} must be callable (a function), got {type(obj).__name__}")
    return accept_torch(obj)


def _tolerance(spec, rtol, table):
    if rtol is None:
        return table[min(64, max(16, np.finfo(spec.dtype).bits))]
    if not isinstance(rtol, (int, float)) or not np.isfinite(rtol) or rtol <= 0:
        raise ValueError(f"rtol must be a positive number, got {rtol!r}")
    return float(rtol)


def _directions(x0, spec, k, seed):
    s, draw = num.direction_stream(x0, spec, seed)
    return s, [draw() for _ in range(k)]


def _read_like_x(y, spec, who, kind):
    """Flatten what ``who`` returned into a float vector over x's leaves, or a failed result."""
    parts = leaves_like(y, spec, who)
    problems = [m for leaf, p in zip(spec.leaves, parts) if (m := shape_message(leaf, p.shape, kind))]
    if problems:
        return None, CheckResult(False, float("inf"), 0.0, "wrong_shape", "; ".join(problems), kind=kind)
    flat = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in parts])
    bad = _nonfinite(flat, spec.leaves, who, kind)
    return (None, bad) if bad is not None else (flat, None)


def _nonfinite(flat, leaves, who, kind):
    mask = ~np.isfinite(flat)
    if not mask.any():
        return None
    where = []
    for j in np.flatnonzero(mask)[:3]:
        leaf = next(l for l in leaves if l.offset <= j < l.offset + l.size)
        idx = np.unravel_index(j - leaf.offset, leaf.shape) if leaf.shape else ()
        where.append(leaf.path + (str([int(i) for i in idx]) if idx else ""))
    return CheckResult(False, float("inf"), 0.0, "nan",
                       f"{who} returned NaN or inf in {int(mask.sum())} entr{'y' if mask.sum() == 1 else 'ies'} "
                       f"(first: {', '.join(where)}) — look for a division by zero, log of a non-positive "
                       "number or an overflow", kind=kind)


def _precision_hint(parts_dtype, spec):
    if parts_dtype is not None and parts_dtype.kind == "f" and np.finfo(parts_dtype).bits < np.finfo(spec.dtype).bits:
        return f" Note: your result is {parts_dtype} while x is {spec.dtype}: precision is lost."
    return ""


# ---------------------------------------------------------------------------------------------
# gradient (and VJP, which is the gradient of ⟨w, f⟩)

def _gradient_core(f, grad, x, *, rtol, n_dirs, seed, method, max_localize, kind, who, scalar_ev=None):
    spec, x0, ev = num._prepare(f, copy_tree(x), scalar=True) if scalar_ev is None else scalar_ev
    f0 = ev()
    f_scale = abs(complex(f0))
    tol = _tolerance(spec, rtol, DEFAULT_RTOL)
    raw = grad(copy_tree(x))
    raw_dtype = _dtype_of(raw)
    g, failed = _read_like_x(raw, spec, who, kind)
    if failed is not None:
        failed.n_evals = ev.n_evals
        return failed
    s, draw = num.direction_stream(x0, spec, seed)
    dirs = [draw()]

    def compare(dirs, ests):
        yours = np.array([g @ d for d in dirs])
        D = np.array([float(np.real(e.value)) for e in ests])
        denom = max(np.sqrt(C2) * _norm(s * g), _rms(D), TINY)
        return yours, D, denom, _rms(yours - D) / denom, max(tol, 10 * _rms([e.err for e in ests]) / denom)

    if method == "auto" and n_dirs is None and not num.complex_affordable(ev):
        # A large x and a costly f: two central differences (4 evaluations) settle a clear pass;
        # anything less clear is decided by Richardson differences along the same directions.
        dirs.append(draw())
        # Central differences at Richardson's long step: least round-off, and their evaluations
        # are the first half of the Richardson estimates that settle a doubtful case.
        ests = [num.directional(ev, d, "central", f_scale, h=num.richardson_step(ev)) for d in dirs]
        yours, D, denom, err, tol_eff = compare(dirs, ests)
        if err <= tol_eff / THIN and tol_eff <= tol:
            return CheckResult(True, err, tol_eff, "ok",
                               f"your {kind} matches the numerical one along {len(dirs)} random directions",
                               n_evals=ev.n_evals, method="central", kind=kind, resolution=tol_eff / ATTENUATION)
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
        return CheckResult(True, err, tol_eff, "ok",
                           f"your {kind} matches the numerical one along {len(dirs)} random directions",
                           n_evals=ev.n_evals, method=chosen, kind=kind, resolution=resolution)
    hint = _precision_hint(raw_dtype, spec)
    if x0.size > max_localize:
        if kink and chosen != "complex":
            return CheckResult(True, err, tol_eff, "kink",
                               "unreliable here: f is not smooth near x (finite differences at two steps disagree) "
                               "— check at another point", n_evals=ev.n_evals, method=chosen, kind=kind,
                               resolution=resolution)
        code, msg = _directional_diagnosis(ev, spec, g, dirs, yours, D, denom, tol_eff, chosen, f_scale, kind)
        if code == "mismatch":
            msg += (f"; x has {x0.size} entries, more than max_localize={max_localize}, so the wrong entries "
                    "are not named")
        return CheckResult(False, err, tol_eff, code, msg + hint, n_evals=ev.n_evals, method=chosen, kind=kind,
                           resolution=resolution)
    J, kinks, errs = num.full_jacobian(ev, x0, spec, chosen, f_scale)
    G = J[0]
    mask = ~kinks
    # relative to the true gradient; where that is exactly zero, relative to yours
    full_denom = max(_norm(G[mask]), _norm(g[mask]) if not _norm(G[mask]) else 0.0, TINY)
    full_err = _norm((g - G)[mask]) / full_denom
    tol_full = max(tol, 10 * _norm(errs[mask]) / full_denom)
    skipped = [w["index"] for w in worst_entries(np.where(kinks, 1.0, 0.0), np.zeros_like(G), spec.leaves, k=5)]
    note = (f" Entries {', '.join(skipped)} are next to a kink of f (finite differences disagree) and were not "
            "checked." if kinks.any() else "")
    if full_err <= tol_full:
        return CheckResult(True, full_err, tol_full, "kink" if kinks.any() else "ok",
                           f"your {kind} matches the numerical one in every entry.{note}",
                           n_evals=ev.n_evals, method=chosen, kind=kind, resolution=tol_full)
    code, msg = diagnose(np.where(mask, g, 0), np.where(mask, G, 0), spec.leaves, tol_full, what=kind)
    worst = worst_entries(np.where(mask, g, 0), np.where(mask, G, 0), spec.leaves)
    return CheckResult(False, full_err, tol_full, code, msg + note + hint, worst=worst, n_evals=ev.n_evals,
                       method=chosen, kind=kind, resolution=tol_full)


def _directional_diagnosis(ev, spec, g, dirs, yours, D, denom, tol_eff, chosen, f_scale, kind):
    """Name a mistake from directional data alone (x too large to compute the whole gradient).

    yours_k = ⟨g, d_k⟩ against D_k = ⟨∇f, d_k⟩: a constant ratio means a sign or a factor. For a
    square matrix x, ⟨g, d⟩ = ⟨∇f, dᵀ⟩ for all d means g = ∇fᵀ (transposed), and
    ⟨g, sym d⟩ = ⟨∇f, sym d⟩ means only the symmetric part is right; D_{dᵀ} costs one more
    evaluation per direction, and D_{sym d} = (D_d + D_{dᵀ})/2 by linearity.
    """
    close = max(10 * tol_eff, 1e-6)
    c = float(yours @ D / max(D @ D, TINY))
    resid = _rms(yours - c * D) / denom
    # a constant ratio must explain the error, not merely leave a residual below the tolerance
    # (a tiny single-entry error along two or three directions is nearly proportional too)
    explained = resid <= close and resid <= 0.01 * _rms(yours - D) / denom
    if explained and abs(c + 1) <= close:
        return "sign", sentence("sign", kind)
    if explained and abs(c - 1) > close and c != 0:
        return "factor", f"off by a constant factor: your {kind} is ≈ {c:.4g} × the true one"
    leaf = spec.leaves[0] if spec.single_array else None
    if leaf is not None and len(leaf.shape) == 2 and leaf.shape[0] == leaf.shape[1] > 1:
        n = leaf.shape[0]
        flipped = [d.reshape(n, n).T.reshape(-1) for d in dirs]
        Dt = np.array([float(np.real(num.directional(ev, d, chosen, f_scale).value)) for d in flipped])
        if _rms(yours - Dt) / denom <= close:
            return "transposed", sentence("transposed", kind)
        yours_sym = np.array([g @ ((d + t) / 2) for d, t in zip(dirs, flipped)])
        if _rms(yours_sym - (D + Dt) / 2) / denom <= close:
            return "symmetric_part", sentence("symmetric_part", kind)
    return "mismatch", f"your {kind} differs from the numerical one"


def _dtype_of(y):
    """The least precise float dtype in what ``grad`` returned (for the low-precision hint), or None."""
    try:
        from ._tree import _as_numpy
        if isinstance(y, (tuple, list)):
            return min((_dtype_of(o) for o in y), key=lambda d: np.finfo(d).bits if d is not None and d.kind == "f" else 99)
        if isinstance(y, dict):
            return _dtype_of(list(y.values()))
        arr = _as_numpy(y)
        return arr.dtype if arr.dtype.kind == "f" else None
    except Exception:  # noqa: BLE001 - only a hint
        return None


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
        (1e-8 for float64, 1e-4 for float32), raised to 10 × the estimated FD error.
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
    f = _check_callable(f, "f")
    grad = _check_callable(grad, "grad")
    return _gradient_core(f, grad, x, rtol=rtol, n_dirs=n_dirs, seed=seed, method=method,
                          max_localize=max_localize, kind="gradient", who="grad")


def check_vjp(f, vjp, x, *, rtol=None, n_dirs=None, seed=0, method="auto", max_localize=2000) -> CheckResult:
    """Check a vector-Jacobian product ``vjp(x, v) = vᵀ J(x)`` (shaped like ``x``).

    Uses ``vᵀ J = ∇_x ⟨v, f(x)⟩``: with a random cotangent ``v`` shaped like ``f(x)``, the
    VJP is checked as the gradient of the scalar ``x ↦ ⟨v, f(x)⟩``.
    """
    f = _check_callable(f, "f")
    vjp = _check_callable(vjp, "vjp")
    return _vjp_core(f, vjp, x, rtol=rtol, n_dirs=n_dirs, seed=seed, method=method, max_localize=max_localize,
                     kind="VJP", who="vjp")


def _vjp_core(f, vjp, x, *, rtol, n_dirs, seed, method, max_localize, kind, who):
    spec, x0, ev = num._prepare(f, copy_tree(x), scalar=False)
    y0 = ev()
    rng = np.random.default_rng(seed + 7919)
    w = rng.standard_normal(np.size(y0))
    w_obj = output_like(w, ev)

    def phi(xx):
        return w @ _flatten_out(f(xx), ev.out_spec, "f")

    scalar_ev = (spec, x0, Evaluator(phi, spec, x0, scalar=True))
    return _gradient_core(phi, lambda xx: vjp(xx, copy_tree(w_obj)), x, rtol=rtol, n_dirs=n_dirs, seed=seed,
                          method=method, max_localize=max_localize, kind=kind, who=who, scalar_ev=scalar_ev)


# ---------------------------------------------------------------------------------------------
# Jacobian-vector products and Jacobians

def _out_leaf(ev, name="f(x)"):
    return Leaf(name, "array", tuple(ev.out_spec[1]) if ev.out_spec[0] == "array" else (ev.out_spec[1].size,),
                np.dtype(np.float64))


def _jvp_core(ev, spec, x0, apply, rtol, n_dirs, seed, method, kind, who, full=None):
    y0 = ev()
    f_scale = _norm(y0)
    tol = _tolerance(spec, rtol, DEFAULT_RTOL)
    s, dirs = _directions(x0, spec, 2 if n_dirs is None else n_dirs, seed)
    chosen, est0, kink = num.choose_method(ev, dirs[0], method, f_scale)
    ests = [est0] + [num.directional(ev, d, chosen, f_scale) for d in dirs[1:]]
    kink = kink or any(e.kink for e in ests)
    out_leaf = _out_leaf(ev)
    yours = []
    for d in dirs:
        y, failed = apply(d, out_leaf)
        if failed is not None:
            failed.n_evals = ev.n_evals
            return failed
        yours.append(y)
    yours = np.concatenate(yours)
    D = np.concatenate([np.real(np.ravel(e.value)) for e in ests])
    denom = max(_norm(D), _norm(yours), TINY)   # symmetric: D can be round-off where J u = 0
    err = _norm(yours - D) / denom
    tol_eff = max(tol, 10 * _norm([e.err for e in ests]) / denom)
    if err <= tol_eff:
        return CheckResult(True, err, tol_eff, "ok", f"your {kind} matches the numerical one along {len(dirs)} "
                           "random directions", n_evals=ev.n_evals, method=chosen, kind=kind, resolution=tol_eff / ATTENUATION)
    if kink and chosen != "complex":
        return CheckResult(True, err, tol_eff, "kink", "unreliable here: f is not smooth near x (finite differences "
                           "at two steps disagree) — check at another point", n_evals=ev.n_evals, method=chosen,
                           kind=kind, resolution=tol_eff / ATTENUATION)
    if full is not None:
        res = full(chosen, f_scale, tol_eff)
        if res is not None:
            res.n_evals = ev.n_evals
            return res
    leaves = [Leaf(f"{out_leaf.path} along u{k}", "array", out_leaf.shape, out_leaf.dtype, offset=k * out_leaf.size)
              for k in range(len(dirs))]
    code, msg = diagnose(yours, D, leaves, tol_eff, what=kind)
    return CheckResult(False, err, tol_eff, code, msg, worst=worst_entries(yours, D, leaves), n_evals=ev.n_evals,
                       method=chosen, kind=kind, resolution=tol_eff / ATTENUATION)


def _read_output(y, ev, out_leaf, who, kind):
    """Flatten what a JVP returned; it must be shaped like f(x)."""
    if ev.out_spec[0] == "array":
        from ._tree import _as_numpy
        arr = _as_numpy(y)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise StructureError(f"{who} returned non-numeric or complex data (dtype {arr.dtype})")
        msg = shape_message(out_leaf, arr.shape, kind)
        if msg:
            return None, CheckResult(False, float("inf"), 0.0, "wrong_shape", msg.replace("(the shape of f(x))",
                                     "(the shape of f(x))"), kind=kind)
        flat = arr.astype(np.float64).reshape(-1)
    else:
        parts = leaves_like(y, ev.out_spec[1], who)
        problems = [m for leaf, p in zip(ev.out_spec[1].leaves, parts) if (m := shape_message(leaf, p.shape, kind))]
        if problems:
            return None, CheckResult(False, float("inf"), 0.0, "wrong_shape", "; ".join(problems), kind=kind)
        flat = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in parts])
    bad = _nonfinite(flat, [out_leaf], who, kind)
    return (None, bad) if bad is not None else (flat, None)


def check_jvp(f, jvp, x, *, rtol=None, n_dirs=None, seed=0, method="auto") -> CheckResult:
    """Check a Jacobian-vector product ``jvp(x, u) = J(x) u`` (shaped like ``f(x)``).

    ``J u`` is the directional derivative of ``f`` along ``u``: compared with finite
    differences along random ``u`` (passed to ``jvp`` in the structure of ``x``).
    """
    f = _check_callable(f, "f")
    jvp = _check_callable(jvp, "jvp")
    return _jvp_check(f, jvp, x, rtol=rtol, n_dirs=n_dirs, seed=seed, method=method, kind="JVP", who="jvp")


def _jvp_check(f, jvp, x, *, rtol, n_dirs, seed, method, kind, who):
    spec, x0, ev = num._prepare(f, copy_tree(x), scalar=False)

    def apply(d, out_leaf):
        return _read_output(jvp(unflatten(x0, spec), unflatten(d, spec)), ev, out_leaf, who, kind)

    return _jvp_core(ev, spec, x0, apply, rtol, n_dirs, seed, method, kind, who)


def check_jacobian(f, jac, x, *, rtol=None, n_dirs=None, seed=0, method="auto", max_localize=2000) -> CheckResult:
    """Check ``jac(x)``, an array of shape ``f(x).shape + x.shape`` with J[i, j] = ∂f_i/∂x_j.

    The product J u with random u is compared with finite differences (the identity
    ⟨w, J u⟩ for all w); on failure the whole numerical Jacobian names the mistake.
    """
    f = _check_callable(f, "f")
    jac = _check_callable(jac, "jac")
    spec, x0, ev = num._prepare(f, copy_tree(x), scalar=False)
    if not spec.single_array:
        raise TypeError(f"check_jacobian: x must be a float, an array or a tensor, not {spec.describe()}; "
                        "for structures use check_vjp / check_jvp")
    y0 = ev()
    if ev.out_spec[0] != "array":
        raise TypeError("check_jacobian: f(x) must return one array; for structures use check_vjp / check_jvp")
    from ._tree import _as_numpy
    J = _as_numpy(jac(copy_tree(x)))
    if J.dtype == object or J.dtype.kind not in "biuf":
        raise TypeError(f"jac(x) must return a real array, got dtype {J.dtype}")
    x_shape, f_shape = tuple(spec.leaves[0].shape), tuple(ev.out_spec[1])
    M, N = int(np.size(y0)), x0.size
    want = f_shape + x_shape
    if J.shape not in (want, (M, N)):
        if J.shape == x_shape + f_shape or J.shape == (N, M):
            msg = (f"wrong layout: expected shape {want} with J[i, j] = ∂f_i/∂x_j, got {J.shape} — "
                   "that is the transposed layout (∂f_j/∂x_i); return its transpose")
        else:
            msg = shape_message(Leaf("J", "array", want, np.dtype(np.float64)), J.shape, "Jacobian")
            msg = msg.replace("(the shape of J)", "(= f(x).shape + x.shape)")
        return CheckResult(False, float("inf"), 0.0, "wrong_shape", msg, n_evals=ev.n_evals, kind="Jacobian")
    Jm = J.astype(np.float64).reshape(M, N)
    bad = _nonfinite(Jm.reshape(-1), [Leaf("J", "array", (M, N), np.dtype(np.float64))], "jac", "Jacobian")
    if bad is not None:
        return bad

    def apply(d, out_leaf):
        return Jm @ d, None

    def full(chosen, f_scale, tol_eff):
        if N > max_localize:
            return None
        Jn, kinks, errs = num.full_jacobian(ev, x0, spec, chosen, f_scale)
        leaf = Leaf("J", "array", (M, N), np.dtype(np.float64))
        err = _norm(Jm - Jn) / max(_norm(Jn), TINY)
        code, msg = diagnose(Jm.reshape(-1), Jn.reshape(-1), [leaf], tol_eff, what="Jacobian")
        return CheckResult(False, err, tol_eff, code, msg, worst=worst_entries(Jm.reshape(-1), Jn.reshape(-1), [leaf]),
                           method=chosen, kind="Jacobian")

    return _jvp_core(ev, spec, x0, apply, rtol, n_dirs, seed, method, "Jacobian", "jac", full=full)


# ---------------------------------------------------------------------------------------------
# Hessians and Hessian-vector products

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
    spec, x0, ev = num._prepare(f, copy_tree(x), scalar=True)
    f0 = ev()
    f_scale = abs(complex(f0))
    tol = _tolerance(spec, rtol, HESSIAN_RTOL)
    s, dirs = _directions(x0, spec, 2 * n_pairs, seed)
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
    scale = np.sqrt(C2) * max(_norm(s * yours_Hv[0]), _norm(s * hw), TINY)
    asym = abs(vs[0] @ hw - ws[0] @ yours_Hv[0]) / scale
    if grad is not None:
        gspec_ev = Evaluator(grad, spec, x0, scalar=False, name="grad")
        chosen, est0, _ = num.choose_method(gspec_ev, vs[0], method, 0.0)
        ests = [est0] + [num.directional(gspec_ev, v, chosen, 0.0) for v in vs[1:]]
        ev.n_evals += gspec_ev.n_evals
        num_b = np.array([w @ np.real(np.ravel(e.value)) for w, e in zip(ws, ests)])
        err_b = np.array([_norm(w) * e.err for w, e in zip(ws, ests)])
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
    denom = max(np.sqrt(C2) * _rms([_norm(s * hv) for hv in yours_Hv]), _rms(num_b), TINY)
    err = _rms(yours_b - num_b) / denom
    tol_eff = max(tol, 10 * _rms(err_b) / denom)
    symmetric = asym <= max(10 * tol_eff, 1e-10)
    if err <= tol_eff and symmetric:
        return CheckResult(True, err, tol_eff, "ok", f"your {kind} matches {how} for {n_pairs} random pairs (v, w) "
                           "and is symmetric", n_evals=ev.n_evals, method=chosen, kind=kind, resolution=tol_eff / ATTENUATION ** 2)
    N = x0.size
    if N <= max_localize:
        Hn = _numerical_hessian(ev, x0, spec, grad, method, f_scale)
        Hu = user_full()
        leaf = Leaf("H", "array", (N, N), np.dtype(np.float64))
        full_err = _norm(Hu - Hn) / max(_norm(Hn), TINY)
        worst = worst_entries(Hu.reshape(-1), Hn.reshape(-1), [leaf])
        if not symmetric:
            if _norm((Hu + Hu.T) / 2 - Hn) <= max(10 * tol_eff, 1e-6) * max(_norm(Hn), TINY):
                return CheckResult(False, full_err, tol_eff, "symmetric_part",
                                   f"your {kind} is not symmetric, but its symmetric part (H + Hᵀ)/2 is right: "
                                   "the Hessian of a smooth f is symmetric — did you write 2A where A + Aᵀ is needed?",
                                   worst=worst, n_evals=ev.n_evals, method=chosen, kind=kind, resolution=tol_eff / ATTENUATION ** 2)
            return CheckResult(False, full_err, tol_eff, "not_symmetric",
                               f"your {kind} is not symmetric (vᵀHw ≠ wᵀHv), and the Hessian of a smooth f is; "
                               "it is also wrong", worst=worst, n_evals=ev.n_evals, method=chosen, kind=kind, resolution=tol_eff / ATTENUATION ** 2)
        code, msg = diagnose(Hu.reshape(-1), Hn.reshape(-1), [leaf], tol_eff, what=kind, hessian=True)
        return CheckResult(False, full_err, tol_eff, code, msg, worst=worst, n_evals=ev.n_evals, method=chosen,
                           kind=kind, resolution=tol_eff / ATTENUATION ** 2)
    if not symmetric:
        return CheckResult(False, err, tol_eff, "not_symmetric", f"your {kind} is not symmetric: vᵀHw ≠ wᵀHv",
                           n_evals=ev.n_evals, method=chosen, kind=kind, resolution=tol_eff / ATTENUATION ** 2)
    c = float(yours_b @ num_b / max(num_b @ num_b, TINY))
    code, msg = ("sign", sentence("sign", kind)) if abs(c + 1) < 1e-6 else \
        ("mismatch", f"your {kind} differs from {how}; x has {N} entries, more than max_localize={max_localize}")
    return CheckResult(False, err, tol_eff, code, msg, n_evals=ev.n_evals, method=chosen, kind=kind, resolution=tol_eff / ATTENUATION ** 2)


def _numerical_hessian(ev, x0, spec, grad, method, f_scale):
    N = x0.size
    if grad is not None:
        gev = Evaluator(grad, spec, x0, scalar=False, name="grad")
        chosen = num._pick(gev, x0, spec, method)
        H, _, _ = num.full_jacobian(gev, x0, spec, chosen, 0.0)
        ev.n_evals += gev.n_evals
        return (H + H.T) / 2
    inner = num._pick(ev, x0, spec, method)
    s = num.leaf_scales(x0, spec)
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
    from ._tree import _as_numpy
    H = _as_numpy(Hraw)
    N = spec.size
    shape = tuple(spec.leaves[0].shape) if spec.single_array else (N,)
    want = shape + shape
    if H.dtype == object or H.dtype.kind not in "biuf":
        raise TypeError(f"hess(x) must return a real array, got dtype {H.dtype}")
    if H.shape not in (want, (N, N)):
        msg = shape_message(Leaf("H", "array", want, np.dtype(np.float64)), H.shape, kind)
        return None, CheckResult(False, float("inf"), 0.0, "wrong_shape",
                                 msg.replace("(the shape of H)", "(= x.shape + x.shape, or (n, n))"), kind=kind)
    H = H.astype(np.float64).reshape(N, N)
    bad = _nonfinite(H.reshape(-1), [Leaf("H", "array", (N, N), np.dtype(np.float64))], "hess", kind)
    return (None, bad) if bad is not None else (H, None)


def check_hessian(f, hess, x, *, grad=None, rtol=None, n_pairs=3, seed=0, method="auto", max_localize=60) -> CheckResult:
    """Check ``hess(x)`` (shape ``x.shape + x.shape``, or ``(n, n)``) against second differences of ``f``.

    For random pairs (v, w), wᵀ H v is compared with the directional derivative along v of
    the directional derivative along w of ``f`` (or of ``grad`` when given: more accurate);
    the student's H must also be symmetric, vᵀ H w = wᵀ H v.
    """
    f = _check_callable(f, "f")
    hess = _check_callable(hess, "hess")
    if grad is not None:
        grad = _check_callable(grad, "grad")
    spec = num.spec_of(copy_tree(x))
    H, failed = _square(hess(copy_tree(x)), spec, "Hessian")
    if failed is not None:
        return failed
    return _hessian_core(f, x, lambda v: (H @ v, None), lambda: H, grad, rtol, n_pairs, seed, method,
                         max_localize, "Hessian")


def check_hvp(f, hvp, x, *, grad=None, rtol=None, n_pairs=3, seed=0, method="auto", max_localize=60) -> CheckResult:
    """Check a Hessian-vector product ``hvp(x, v) = ∇²f(x) v`` (shaped like ``x``).

    Compared through wᵀ (H v) for random v, w with second differences of ``f`` (or directional
    derivatives of ``grad`` when given), plus the symmetry vᵀ H w = wᵀ H v.
    """
    f = _check_callable(f, "f")
    hvp = _check_callable(hvp, "hvp")
    if grad is not None:
        grad = _check_callable(grad, "grad")
    spec = num.spec_of(copy_tree(x))
    x0 = num.flatten(copy_tree(x), spec)

    def user_Hv(v):
        return _read_like_x(hvp(unflatten(x0, spec), unflatten(v, spec)), spec, "hvp", "HVP")

    def user_full():
        cols = []
        for j in range(x0.size):
            e = np.zeros_like(x0)
            e[j] = 1.0
            cols.append(user_Hv(e)[0])
        return np.stack(cols, axis=1)

    return _hessian_core(f, x, user_Hv, user_full, grad, rtol, n_pairs, seed, method, max_localize, "HVP")


# ---------------------------------------------------------------------------------------------
# assert_* : for tests (nbgrader reads a truthy last expression as partial credit: return None)

def _asserting(check):
    def assert_(*args, **kwargs):
        __tracebackhide__ = True  # IPython and pytest: show the student's line, not gradcheck's frames
        result = check(*args, **kwargs)
        if not result.passed:
            raise AssertionError(str(result))
        return None

    assert_.__name__ = check.__name__.replace("check_", "assert_")
    assert_.__qualname__ = assert_.__name__
    assert_.__doc__ = (f"Like :func:`{check.__name__}`, but raise ``AssertionError`` with the message on failure "
                       "and return None.")
    return assert_


assert_gradient = _asserting(check_gradient)
assert_jacobian = _asserting(check_jacobian)
assert_vjp = _asserting(check_vjp)
assert_jvp = _asserting(check_jvp)
assert_hessian = _asserting(check_hessian)
assert_hvp = _asserting(check_hvp)

__all__ = ["check_gradient", "check_jacobian", "check_vjp", "check_jvp", "check_hessian", "check_hvp",
           "assert_gradient", "assert_jacobian", "assert_vjp", "assert_jvp", "assert_hessian", "assert_hvp",
           "ComplexUnsupported"]
