"""Name the classic mistakes in a derivative, in plain words.

Each diagnosis is a short code and a sentence; :data:`DIAGNOSES` is the one registry of codes,
what each means and how it is detected (``CheckResult`` accepts no other code, and a test keeps
the README's list in step with it).

To add a diagnosis: an entry in :data:`DIAGNOSES` and its detection in :func:`diagnose` (plus
``gradient._directional_diagnosis`` if it must be named when x is too large to localise, or
``hessian._hessian_core`` for Hessians only), the code in utils/README.md's Localisation list, and
a planted-mistake test in utils/tests/.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ._base import TINY, index_name, leaf_at, norm
from ._tree import Leaf


@dataclass(frozen=True)
class Diagnosis:
    """A diagnosis code: what it says about the derivative, how it is detected, and its sentence."""

    code: str
    meaning: str
    detected: str
    sentence: str = ""  # template: {what} ("gradient", "VJP", …), {where} (" for x[1]" or "")


DIAGNOSES: dict[str, Diagnosis] = {
    d.code: d
    for d in [
        Diagnosis("ok", "the derivative matches", "every compared quantity within the tolerance"),
        Diagnosis("nan", "NaN or inf in the result", "a non-finite entry in what the function under test returned"),
        Diagnosis(
            "wrong_shape",
            "flattened, row vs column, missing or extra dimension, transposed shape",
            "the returned shape differs from the point's (or f(x)'s) shape",
        ),
        Diagnosis(
            "sign",
            "yours ≈ −expected",
            "yours + expected ≈ 0 (a constant ratio −1 along random directions)",
            "sign flipped: your {what} is minus the true one",
        ),
        Diagnosis(
            "factor",
            "yours ≈ c · expected (c named: 2, 1/2, n, 1/n, …)",
            "a constant ratio c ≠ 1 that explains the whole error",
        ),
        Diagnosis(
            "transposed",
            "yours ≈ expectedᵀ (square matrix input)",
            "yours equals the transposed numerical derivative (or ⟨g, d⟩ = D_{dᵀ} f along random d)",
            "transposed{where}: your {what} equals the true one transposed — the gradient with respect to a matrix X "
            "has entry (i, j) = ∂f/∂X_ij; return its .T",
        ),
        Diagnosis(
            "symmetric_part",
            "only the symmetric part is right: yours + yoursᵀ ≈ expected + expectedᵀ",
            "the symmetric parts agree where the matrices do not",
            "only the symmetric part is right{where}: (G + Gᵀ)/2 matches but G does not — did you assume a symmetric "
            "matrix (e.g. write 2AX where A + Aᵀ is needed)?",
        ),
        Diagnosis("not_symmetric", "a Hessian that is not symmetric", "vᵀHw ≠ wᵀHv for the function under test"),
        Diagnosis(
            "few_entries",
            "the error sits in a few entries (named)",
            "all but a few entries agree with the whole numerical derivative",
        ),
        Diagnosis(
            "kink",
            "f is not smooth near x: the check is unreliable there (passes, with a note)",
            "second differences shrink like h, not h², or differences at two steps disagree",
        ),
        Diagnosis("mismatch", "wrong, in none of the patterns above", "none of the patterns explains the error"),
    ]
}


def sentence(code: str, what: str = "gradient", where: str = "") -> str:
    """The registry's sentence for ``code``, filled in."""
    return DIAGNOSES[code].sentence.format(what=what, where=where)


MAX_WORST = 5


def shape_message(leaf: Leaf, got: tuple, what: str = "gradient") -> str | None:
    """Explain a shape mismatch between ``got`` and the leaf's shape, or None if they match."""
    want = tuple(leaf.shape)
    got = tuple(got)
    if got == want:
        return None
    where = "" if leaf.path == "x" else f" for {leaf.path}"
    head = f"wrong shape{where}: expected {want} (the shape of {leaf.path}), got {got}"
    size_want = int(np.prod(want, dtype=np.int64))
    size_got = int(np.prod(got, dtype=np.int64))
    if size_got != size_want:
        return f"{head} — {size_got} entries instead of {size_want}: the {what} has one entry per entry of {leaf.path}"
    squeeze_w = tuple(s for s in want if s != 1)
    squeeze_g = tuple(s for s in got if s != 1)
    if len(want) == 2 and got == want[::-1]:
        return f"{head}: it is transposed — return its .T"
    if squeeze_w == squeeze_g:
        if len(got) < len(want):
            return f"{head}: a dimension of size 1 is missing (row vs column vector?) — reshape to {want}"
        if len(got) > len(want):
            return f"{head}: an extra dimension of size 1 (column vs flat vector?) — reshape to {want}"
        return f"{head}: row vs column — reshape to {want}"
    if len(got) == 1:
        return f"{head}: flattened — reshape to {want}"
    return f"{head} — reshape to {want}"


def _name_factor(c: float, sizes: dict[str, int]) -> str:
    """A readable name for a scale factor c: '2', '1/2', 'n = 50', '1/m = 1/8', or '≈ 3.14'."""
    for label, n in sizes.items():
        if n > 4:
            if abs(c - n) <= 1e-6 * n:
                return f"{label} = {n}"
            if abs(c * n - 1) <= 1e-6:
                return f"1/{label} = 1/{n}"
    frac = Fraction(c).limit_denominator(8)
    if frac != 0 and abs(float(frac) - c) <= 1e-6 * abs(c):
        return str(frac)
    return f"≈ {c:.4g}"


def worst_entries(yours: np.ndarray, expected: np.ndarray, leaves: list, k: int = MAX_WORST):
    """The k entries with the largest absolute error, as dicts (index, yours, expected, abs, rel)."""
    err = np.abs(yours - expected)
    order = np.argsort(-err, kind="stable")[:k]
    out = []
    for flat in order:
        if err[flat] == 0:
            break
        leaf, idx = leaf_at(leaves, flat)
        denom = abs(expected[flat])
        out.append(
            {
                "index": index_name(leaf, idx),
                "multi_index": idx,
                "leaf": leaf.path,
                "yours": float(yours[flat]),
                "expected": float(expected[flat]),
                "abs_err": float(err[flat]),
                "rel_err": float(err[flat] / denom) if denom > 0 else float("inf"),
            }
        )
    return out


def diagnose(
    yours: np.ndarray, expected: np.ndarray, leaves: list, tol: float, what: str = "gradient", hessian: bool = False
):
    """Classify the difference between ``yours`` and ``expected`` (flat vectors over ``leaves``).

    Returns ``(code, sentence)``. ``tol`` is the relative tolerance of the check: a pattern
    holds when it explains the difference to within 10·tol (and 1e-6 at least).
    """
    ref = max(norm(expected), norm(yours), TINY)
    close = max(10 * tol, 1e-6)
    total = norm(yours - expected)
    if norm(yours + expected) <= close * ref:
        return "sign", sentence("sign", what) + " (check the sign of each term)"
    e2 = float(np.dot(expected, expected))
    if e2 > 0:
        c = float(np.dot(yours, expected) / e2)
        if abs(c - 1) > close and c != 0 and norm(yours - c * expected) <= close * ref:
            sizes = {"n": sum(l.size for l in leaves)}
            mats = [l for l in leaves if len(l.shape) == 2]
            if mats:
                sizes["m"] = mats[0].shape[0]
                sizes["columns"] = mats[0].shape[1]
            name = _name_factor(abs(c), sizes)
            sign = " and its sign is flipped" if c < 0 else ""
            return "factor", (
                f"off by a constant factor: your {what} is {name} × the true one{sign}"
                + (" (a missing or extra 1/2 from differentiating a square?)" if name in ("2", "1/2") else "")
            )
    for leaf in leaves:
        if len(leaf.shape) != 2 or leaf.shape[0] != leaf.shape[1] or leaf.shape[0] < 2:
            continue
        sl = slice(leaf.offset, leaf.offset + leaf.size)
        Y = yours[sl].reshape(leaf.shape)
        E = expected[sl].reshape(leaf.shape)
        rest = total**2 - norm(Y - E) ** 2
        if norm(Y - E) <= close * ref or rest > (close * ref) ** 2:
            continue  # this leaf is right, or other leaves are wrong too
        if hessian:
            continue
        where = "" if leaf.path == "x" else f" for {leaf.path}"
        if norm(Y.T - E) <= close * ref:
            return "transposed", sentence("transposed", what, where)
        if norm((Y + Y.T) - (E + E.T)) <= close * ref:
            return "symmetric_part", sentence("symmetric_part", what, where)
    err = np.abs(yours - expected)
    order = np.argsort(-err)
    n = err.size
    k_max = max(3, n // 100)
    if n > 3 and total > 0:
        cum = np.cumsum(err[order] ** 2)
        k = int(np.searchsorted(cum, (1 - 1e-4) * cum[-1]) + 1)
        rest_ok = np.sqrt(max(cum[-1] - cum[min(k, n) - 1], 0.0)) <= close * ref
        if k <= k_max and rest_ok and k < n:
            names = ", ".join(w["index"] for w in worst_entries(yours, expected, leaves, k=min(k, MAX_WORST)))
            more = f" and {k - MAX_WORST} more" if k > MAX_WORST else ""
            return "few_entries", (
                f"wrong in {k} entr{'y' if k == 1 else 'ies'} only: {names}{more}; all other entries are right"
            )
    return "mismatch", f"your {what} differs from the numerical one (relative error {total / ref:.2e})"
