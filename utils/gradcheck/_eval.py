"""Evaluate the user's function at points of a flat vector, counting evaluations.

The evaluator rebuilds ``x`` in the caller's structure (float64 by default, complex128 for the
complex step), calls ``f`` and returns a flat vector (or a scalar), converting torch tensors.
"""

from __future__ import annotations

import functools
import time
import warnings

import numpy as np

from ._tree import Spec, as_numpy, imported_torch, is_tensor, leaves_like, leaves_of, spec_of, unflatten


class ComplexUnsupported(Exception):
    """``f`` cannot be evaluated at complex points (or silently drops the imaginary part)."""


def _is_complex_result(y) -> bool:
    if is_tensor(y):
        return y.is_complex()
    return np.iscomplexobj(y)


class Evaluator:
    """Call ``f`` at ``x0 + t`` for flat real or complex perturbations ``t``.

    Parameters
    ----------
    f : callable
        The user's function of one object shaped like ``x``.
    spec : Spec
        Structure of ``x``.
    x0 : ndarray
        The point, flattened (float64).
    scalar : bool
        Whether ``f`` must return a scalar (``check_gradient``) or any array / structure.
    """

    def __init__(self, f, spec: Spec, x0: np.ndarray, scalar: bool, name: str = "f"):
        self.f, self.spec, self.x0, self.scalar, self.name = f, spec, x0, scalar, name
        self.n_evals = 0
        # wall time of each real / complex evaluation: the complex step is chosen by its cost too
        self.seconds = {"real": [], "complex": []}
        self.out_spec = None  # structure of f's output (non-scalar f)
        self.real_dtype = np.dtype(np.float64)  # the precision f actually computes in
        self._y0 = None  # f(x0), computed on first use

    def _convert(self, y, complex_ok: bool):
        if self.scalar:
            arr = as_numpy(y) if (is_tensor(y) or isinstance(y, np.ndarray)) else np.asarray(y)
            if arr.dtype == object or arr.dtype.kind not in "biufc":
                raise TypeError(f"{self.name}(x) returned {type(y).__name__}; expected a real scalar")
            if arr.size != 1:
                raise ValueError(
                    f"{self.name}(x) must return a scalar, but it returned shape {arr.shape}; "
                    "for a vector-valued f use check_jacobian / check_vjp / check_jvp"
                )
            val = arr.reshape(())[()]
            if not complex_ok and np.iscomplexobj(arr):
                raise TypeError(f"{self.name}(x) returned a complex value at a real point")
            return val, arr.dtype
        if self.out_spec is None:
            if isinstance(y, (tuple, list, dict)):
                self.out_spec = _out_spec(y)
            else:
                arr = as_numpy(y)
                if arr.dtype == object or arr.dtype.kind not in "biufc":
                    raise TypeError(f"{self.name}(x) returned {type(y).__name__}; expected an array")
                self.out_spec = ("array", arr.shape, y.device if is_tensor(y) else None)
        flat = _flatten_out(y, self.out_spec, self.name)
        return flat, flat.dtype

    def __call__(self, t=None, complex_step: bool = False):
        """Value of f at x0 + t (t real, or complex when ``complex_step``); f(x0) is cached."""
        if t is None and not complex_step:
            if self._y0 is None:
                self._y0 = self._call(None, False)
            return self._y0
        return self._call(t, complex_step)

    def _call(self, t, complex_step):
        v = self.x0 if t is None else self.x0 + t
        x = unflatten(v, self.spec, dtype=np.complex128 if complex_step else np.float64)
        self.n_evals += 1
        if complex_step:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a ComplexWarning means the imaginary part was dropped
                try:
                    t0 = time.perf_counter()
                    y = self.f(x)
                    self.seconds["complex"].append(time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - any failure means: no complex step
                    raise ComplexUnsupported(str(exc)) from None
            if not _contains_complex(y):
                raise ComplexUnsupported(f"{self.name} returned a real value at a complex point")
            val, _ = self._convert(y, complex_ok=True)
            return val
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the user's own warnings are not ours to print
            t0 = time.perf_counter()
            y = self.f(x)
            self.seconds["real"].append(time.perf_counter() - t0)
        val, dt = self._convert(y, complex_ok=False)
        if dt.kind == "f" and np.finfo(dt).bits < np.finfo(self.real_dtype).bits:
            self.real_dtype = dt  # f computes in lower precision than we hand it: noise is larger
        return val


class TorchAdapter:
    """Call a function written for torch tensors with the NumPy data gradcheck hands around.

    The first call passes the arguments as they are. If it fails with a TypeError or
    AttributeError (``torch.exp(ndarray)``, ``ndarray.exp()``, ``tensor @ ndarray``) while torch
    is loaded and an argument holds NumPy arrays, it is retried with every array converted by
    ``torch.from_numpy`` (complex arrays too: the complex step works on torch code); when that
    succeeds, every later call converts. A function that fails both ways re-raises its first error.
    """

    def __init__(self, fn):
        self.fn, self.convert = fn, False
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args):
        if self.convert:
            return self.fn(*(_to_torch(a) for a in args))
        try:
            with warnings.catch_warnings():
                # torch code handed NumPy arrays may warn on its way to the TypeError we retry on
                warnings.simplefilter("ignore", DeprecationWarning)
                return self.fn(*args)
        except (TypeError, AttributeError) as exc:
            if imported_torch() is None or not any(_holds_numpy(a) for a in args):
                raise
            try:
                out = self.fn(*(_to_torch(a) for a in args))
            except Exception:  # noqa: BLE001 - not a torch function after all: the first error stands
                raise exc from None
            self.convert = True
            return out


def accept_torch(fn):
    """``fn`` wrapped in :class:`TorchAdapter` (once)."""
    return fn if isinstance(fn, TorchAdapter) else TorchAdapter(fn)


def _holds_numpy(a) -> bool:
    if isinstance(a, np.ndarray):
        return True
    if isinstance(a, (tuple, list)):
        return any(_holds_numpy(o) for o in a)
    if isinstance(a, dict):
        return any(_holds_numpy(o) for o in a.values())
    return False


def _to_torch(a):
    if isinstance(a, np.ndarray):
        return imported_torch().from_numpy(np.ascontiguousarray(a))
    if isinstance(a, tuple):
        return tuple(_to_torch(o) for o in a)
    if isinstance(a, list):
        return [_to_torch(o) for o in a]
    if isinstance(a, dict):
        return {k: _to_torch(o) for k, o in a.items()}
    return a


def _out_spec(y):
    try:
        return ("tree", spec_of(y, name="f(x)", what="f(x)"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"f(x) returned a structure that cannot be differentiated: {exc}") from None


def _flatten_out(y, out_spec, name):
    if out_spec[0] == "array":
        arr = as_numpy(y)
        if arr.shape != out_spec[1]:
            raise ValueError(f"{name}(x) changed its output shape from {out_spec[1]} to {arr.shape}")
        return arr.reshape(-1)
    spec: Spec = out_spec[1]
    parts = leaves_like(y, spec, name) if not _contains_complex(y) else _complex_leaves(y, spec)
    return np.concatenate([np.asarray(p).reshape(-1) for p in parts])


def _contains_complex(y):
    if isinstance(y, (tuple, list)):
        return any(_contains_complex(o) for o in y)
    if isinstance(y, dict):
        return any(_contains_complex(o) for o in y.values())
    return _is_complex_result(y)


def _complex_leaves(y, spec):
    return [as_numpy(o) for o in leaves_of(y, spec.node)]


def output_like(flat: np.ndarray, ev: Evaluator):
    """Rebuild a flat output vector (e.g. a random cotangent w) in the structure of f(x)."""
    if ev.out_spec[0] == "array":
        arr = flat.reshape(ev.out_spec[1]).copy()
        if ev.out_spec[2] is not None:
            return imported_torch().from_numpy(arr).to(ev.out_spec[2])
        return arr
    return unflatten(flat, ev.out_spec[1], dtype=np.float64)
