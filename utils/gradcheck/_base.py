"""Numbers every module shares: norms, the leaf holding a flat index, the random-direction recipe.

The bottom of the package (it imports only NumPy): :mod:`numerical`, :mod:`diagnose` and the check
families all use these, so that each is written once.
"""

from __future__ import annotations

import numpy as np

TINY = 1e-300  # a denominator floor: relative errors of exact zeros stay finite
C2 = 13.0 / 12.0  # second moment E[u²] of the direction entries u, |u| uniform in [0.5, 1.5]
# An error confined to one entry j shows in the directional estimate as |u_j| / √C2 ≥ this
# fraction of its true relative size: a check resolves any such error ≥ tolerance / ATTENUATION.
ATTENUATION = 0.5 / np.sqrt(C2)


def norm(v) -> float:
    """The 2-norm of ``v`` seen as one flat vector."""
    return float(np.linalg.norm(np.ravel(v)))


def rms(v) -> float:
    """Root mean square of the entries of ``v`` (0 for an empty ``v``)."""
    v = np.ravel(np.asarray(v, dtype=float))
    return float(np.sqrt(np.mean(v**2))) if v.size else 0.0


def leaf_at(leaves, j: int):
    """The leaf holding flat index ``j``, and ``j``'s multi-index inside it (a tuple of ints)."""
    leaf = next(l for l in leaves if l.offset <= j < l.offset + l.size)
    idx = tuple(int(i) for i in np.unravel_index(j - leaf.offset, leaf.shape)) if leaf.shape else ()
    return leaf, idx


def index_name(leaf, idx: tuple) -> str:
    """How a student writes entry ``idx`` of ``leaf``: ``x[1, 2]``, ``x['W'][0]``, or ``x`` for a scalar."""
    return leaf.path + (str(list(idx)) if idx else "")


def entry_name(leaves, j: int) -> str:
    """How a student writes flat entry ``j`` (see :func:`index_name`)."""
    return index_name(*leaf_at(leaves, j))


def leaf_scales(x0: np.ndarray, spec) -> np.ndarray:
    """Per-entry step scale: the RMS of each leaf (so steps are relative to the data)."""
    s = np.empty_like(x0)
    overall = float(np.sqrt(np.mean(x0**2)))
    for leaf in spec.leaves:
        part = x0[leaf.offset : leaf.offset + leaf.size]
        r = float(np.sqrt(np.mean(part**2)))
        s[leaf.offset : leaf.offset + leaf.size] = r if r > 0 else (overall if overall > 0 else 1.0)
    return s


def direction_stream(x0: np.ndarray, spec, seed):
    """Per-entry scales s and a function drawing the next random direction s ∘ u, |u_j| ∈ [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    s = leaf_scales(x0, spec)

    def draw():
        v = rng.random(x0.size)  # one draw an entry: v < 1/2 → u ∈ [−1.5, −0.5), else [0.5, 1.5)
        return s * (2 * v - 0.5 - (v < 0.5))

    return s, draw
