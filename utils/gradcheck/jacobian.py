"""JVPs and Jacobians against finite differences, through the identity ⟨w, J u⟩.

``J u`` is the directional derivative of ``f`` along ``u``: the student's J u (from ``jvp``, or
``jac(x) @ u``) is compared with finite differences along random ``u``; on failure a Jacobian is
compared entry by entry with the whole numerical one, which names the mistake.
"""

from __future__ import annotations

import numpy as np

from . import numerical as num
from ._base import ATTENUATION, TINY, norm
from ._common import DEFAULT_RTOL, check_callable, directions, nonfinite, real_array, tolerance
from ._frames import asserting, student_facing
from ._tree import Leaf, StructureError, as_numpy, copy_tree, leaves_like, unflatten
from .diagnose import diagnose, shape_message, worst_entries
from .result import CheckResult


def _flat_leaf(name, shape):
    return Leaf(name, "array", shape, np.dtype(np.float64))


def _out_leaf(ev, name="f(x)"):
    return _flat_leaf(name, tuple(ev.out_spec[1]) if ev.out_spec[0] == "array" else (ev.out_spec[1].size,))


def _jvp_core(ev, spec, x0, apply, rtol, n_dirs, seed, method, kind, who, full=None):
    y0 = ev()
    f_scale = norm(y0)
    tol = tolerance(spec, rtol, DEFAULT_RTOL)
    s, dirs = directions(x0, spec, 2 if n_dirs is None else n_dirs, seed)
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
    denom = max(norm(D), norm(yours), TINY)  # symmetric: D can be round-off where J u = 0
    err = norm(yours - D) / denom
    tol_eff = max(tol, 10 * norm([e.err for e in ests]) / denom)
    details = dict(n_evals=ev.n_evals, method=chosen, kind=kind, resolution=tol_eff / ATTENUATION)
    if err <= tol_eff:
        return CheckResult.success(
            err, tol_eff, f"your {kind} matches the numerical one along {len(dirs)} random directions", **details
        )
    if kink and chosen != "complex":
        return CheckResult.unreliable(err, tol_eff, **details)
    if full is not None:
        res = full(chosen, f_scale, tol_eff)
        if res is not None:
            res.n_evals = ev.n_evals
            return res
    leaves = [
        Leaf(f"{out_leaf.path} along u{k}", "array", out_leaf.shape, out_leaf.dtype, offset=k * out_leaf.size)
        for k in range(len(dirs))
    ]
    code, msg = diagnose(yours, D, leaves, tol_eff, what=kind)
    return CheckResult.failure(code, err, tol_eff, msg, worst=worst_entries(yours, D, leaves), **details)


def _read_output(y, ev, out_leaf, who, kind):
    """Flatten what a JVP returned; it must be shaped like f(x)."""
    if ev.out_spec[0] == "array":
        arr = as_numpy(y)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise StructureError(f"{who} returned non-numeric or complex data (dtype {arr.dtype})")
        msg = shape_message(out_leaf, arr.shape, kind)
        if msg:
            return None, CheckResult.wrong_shape(msg, kind)
        flat = arr.astype(np.float64).reshape(-1)
    else:
        parts = leaves_like(y, ev.out_spec[1], who)
        problems = [m for leaf, p in zip(ev.out_spec[1].leaves, parts) if (m := shape_message(leaf, p.shape, kind))]
        if problems:
            return None, CheckResult.wrong_shape("; ".join(problems), kind)
        flat = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in parts])
    bad = nonfinite(flat, [out_leaf], who, kind)
    return (None, bad) if bad is not None else (flat, None)


@student_facing
def check_jvp(f, jvp, x, *, rtol=None, n_dirs=None, seed=0, method="auto") -> CheckResult:
    """Check a Jacobian-vector product ``jvp(x, u) = J(x) u`` (shaped like ``f(x)``).

    ``J u`` is the directional derivative of ``f`` along ``u``: compared with finite
    differences along random ``u`` (passed to ``jvp`` in the structure of ``x``).
    """
    f = check_callable(f, "f")
    jvp = check_callable(jvp, "jvp")
    return jvp_check(f, jvp, x, rtol=rtol, n_dirs=n_dirs, seed=seed, method=method, kind="JVP", who="jvp")


def jvp_check(f, jvp, x, *, rtol, n_dirs, seed, method, kind, who):
    """:func:`check_jvp` for callables already checked (also :func:`gradcheck.check_function`'s jvp)."""
    spec, x0, ev = num.prepare(f, copy_tree(x), scalar=False)

    def apply(d, out_leaf):
        return _read_output(jvp(unflatten(x0, spec), unflatten(d, spec)), ev, out_leaf, who, kind)

    return _jvp_core(ev, spec, x0, apply, rtol, n_dirs, seed, method, kind, who)


@student_facing
def check_jacobian(f, jac, x, *, rtol=None, n_dirs=None, seed=0, method="auto", max_localize=2000) -> CheckResult:
    """Check ``jac(x)``, an array of shape ``f(x).shape + x.shape`` with J[i, j] = ∂f_i/∂x_j.

    The product J u with random u is compared with finite differences (the identity
    ⟨w, J u⟩ for all w); on failure the whole numerical Jacobian names the mistake.
    """
    f = check_callable(f, "f")
    jac = check_callable(jac, "jac")
    spec, x0, ev = num.prepare(f, copy_tree(x), scalar=False)
    if not spec.single_array:
        raise TypeError(
            f"check_jacobian: x must be a float, an array or a tensor, not {spec.describe()}; "
            "for structures use check_vjp / check_jvp"
        )
    y0 = ev()
    if ev.out_spec[0] != "array":
        raise TypeError("check_jacobian: f(x) must return one array; for structures use check_vjp / check_jvp")
    J = real_array(jac(copy_tree(x)), "jac")
    x_shape, f_shape = tuple(spec.leaves[0].shape), tuple(ev.out_spec[1])
    M, N = int(np.size(y0)), x0.size
    want = f_shape + x_shape
    if J.shape not in (want, (M, N)):
        if J.shape == x_shape + f_shape or J.shape == (N, M):
            msg = (
                f"wrong layout: expected shape {want} with J[i, j] = ∂f_i/∂x_j, got {J.shape} — "
                "that is the transposed layout (∂f_j/∂x_i); return its transpose"
            )
        else:
            msg = shape_message(_flat_leaf("J", want), J.shape, "Jacobian")
            msg = msg.replace("(the shape of J)", "(= f(x).shape + x.shape)")
        return CheckResult.wrong_shape(msg, "Jacobian", n_evals=ev.n_evals)
    Jm = J.astype(np.float64).reshape(M, N)
    leaf = _flat_leaf("J", (M, N))
    bad = nonfinite(Jm.reshape(-1), [leaf], "jac", "Jacobian")
    if bad is not None:
        return bad

    def apply(d, out_leaf):
        return Jm @ d, None

    def full(chosen, f_scale, tol_eff):
        if N > max_localize:
            return None
        Jn, kinks, errs = num.full_jacobian(ev, x0, spec, chosen, f_scale)
        err = norm(Jm - Jn) / max(norm(Jn), TINY)
        code, msg = diagnose(Jm.reshape(-1), Jn.reshape(-1), [leaf], tol_eff, what="Jacobian")
        return CheckResult.failure(
            code,
            err,
            tol_eff,
            msg,
            worst=worst_entries(Jm.reshape(-1), Jn.reshape(-1), [leaf]),
            method=chosen,
            kind="Jacobian",
        )

    return _jvp_core(ev, spec, x0, apply, rtol, n_dirs, seed, method, "Jacobian", "jac", full=full)


assert_jacobian = asserting(check_jacobian)
assert_jvp = asserting(check_jvp)
