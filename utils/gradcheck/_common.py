"""What the three families of checks share: tolerances, reading the student's result, hints.

Used by :mod:`gradient`, :mod:`jacobian`, :mod:`hessian` and :mod:`taylor`; the numbers below it
(norms, the leaf of an entry, the random directions) are in :mod:`_base`.
"""

from __future__ import annotations

import numpy as np

from ._base import direction_stream, entry_name
from ._eval import accept_torch
from ._tree import as_numpy, leaves_like
from .diagnose import shape_message
from .result import CheckResult

THIN = 4.0  # error within tolerance / THIN … tolerance: a thin margin
MAX_EXTRA_DIRS = 2
DEFAULT_RTOL = {64: 1e-9, 32: 1e-4, 16: 1e-2}
HESSIAN_RTOL = {64: 1e-6, 32: 1e-3, 16: 3e-2}


def check_callable(obj, name):
    """``obj`` ready to be called with gradcheck's data: NumPy arrays, or tensors for torch code."""
    if not callable(obj):
        raise TypeError(f"{name} must be callable (a function), got {type(obj).__name__}")
    return accept_torch(obj)


def tolerance(spec, rtol, table):
    """``rtol`` checked, or the table's default for the precision of x."""
    if rtol is None:
        return table[min(64, max(16, np.finfo(spec.dtype).bits))]
    if not isinstance(rtol, (int, float)) or not np.isfinite(rtol) or rtol <= 0:
        raise ValueError(f"rtol must be a positive number, got {rtol!r}")
    return float(rtol)


def directions(x0, spec, k, seed):
    """Per-entry scales s and k random directions (the recipe of :func:`_base.direction_stream`)."""
    s, draw = direction_stream(x0, spec, seed)
    return s, [draw() for _ in range(k)]


def read_like_x(y, spec, who, kind):
    """Flatten what ``who`` returned into a float vector over x's leaves, or a failed result."""
    parts = leaves_like(y, spec, who)
    problems = [m for leaf, p in zip(spec.leaves, parts) if (m := shape_message(leaf, p.shape, kind))]
    if problems:
        return None, CheckResult.wrong_shape("; ".join(problems), kind)
    flat = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in parts])
    bad = nonfinite(flat, spec.leaves, who, kind)
    return (None, bad) if bad is not None else (flat, None)


def nonfinite(flat, leaves, who, kind):
    """A failed result naming the first NaN or inf entries of ``flat``, or None if all are finite."""
    mask = ~np.isfinite(flat)
    if not mask.any():
        return None
    where = [entry_name(leaves, j) for j in np.flatnonzero(mask)[:3]]
    n = int(mask.sum())
    return CheckResult.non_finite(
        f"{who} returned NaN or inf in {n} entr{'y' if n == 1 else 'ies'} (first: {', '.join(where)}) — look for "
        "a division by zero, log of a non-positive number or an overflow",
        kind,
    )


def real_array(y, who):
    """What ``who`` returned as one real NumPy array (a TypeError naming its dtype otherwise)."""
    arr = as_numpy(y)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{who}(x) must return a real array, got dtype {arr.dtype}")
    return arr


def precision_hint(parts_dtype, spec):
    """A note when the student's result is less precise than x (float32 for a float64 x)."""
    if parts_dtype is not None and parts_dtype.kind == "f" and np.finfo(parts_dtype).bits < np.finfo(spec.dtype).bits:
        return f" Note: your result is {parts_dtype} while x is {spec.dtype}: precision is lost."
    return ""


def dtype_of(y):
    """The least precise float dtype in what ``grad`` returned (for the low-precision hint), or None."""
    try:
        if isinstance(y, (tuple, list)):
            return min(
                (dtype_of(o) for o in y), key=lambda d: np.finfo(d).bits if d is not None and d.kind == "f" else 99
            )
        if isinstance(y, dict):
            return dtype_of(list(y.values()))
        arr = as_numpy(y)
        return arr.dtype if arr.dtype.kind == "f" else None
    except Exception:  # noqa: BLE001 - only a hint
        return None
