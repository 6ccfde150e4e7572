"""Structures of arrays ("trees"): flatten to one real vector and rebuild.

A point ``x`` may be a Python float, a NumPy array of any shape, a torch tensor, or a tuple /
list / dict of those. Checks work on one flat float vector ``v`` and rebuild ``x`` from it with
:func:`unflatten`, in the caller's own types, so that ``f`` and ``grad`` always see one object
of the structure they were written for.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def imported_torch():
    """torch if the caller imported it -- a tensor cannot exist otherwise. Never imported here:
    importing torch costs seconds, and gradcheck is imported in every graded notebook."""
    return sys.modules.get("torch")


def is_tensor(obj) -> bool:
    torch = imported_torch()
    return torch is not None and isinstance(obj, torch.Tensor)


@dataclass
class Leaf:
    """One array of the structure: where it is, its kind, shape and dtype."""

    path: str  # e.g. "x", "x[1]", "x['W']"
    kind: str  # "scalar" | "array" | "tensor"
    shape: tuple
    dtype: np.dtype  # real floating dtype of the caller's data
    offset: int = 0
    device: Any = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Spec:
    """The structure of ``x``: a container tree whose leaves are :class:`Leaf`."""

    node: Any  # Leaf | ("tuple"|"list", [nodes]) | ("dict", [keys], [nodes])
    leaves: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(leaf.size for leaf in self.leaves)

    @property
    def dtype(self) -> np.dtype:
        """The least precise leaf dtype: tolerances are set from it."""
        return min((leaf.dtype for leaf in self.leaves), key=lambda d: np.finfo(d).bits)

    @property
    def single_array(self) -> bool:
        return isinstance(self.node, Leaf)

    def describe(self) -> str:
        return _describe(self.node)


def _describe(node) -> str:
    if isinstance(node, Leaf):
        return (
            "a float"
            if node.kind == "scalar"
            else f"{'a tensor' if node.kind == 'tensor' else 'an array'} of shape {node.shape}"
        )
    kind = node[0]
    if kind == "dict":
        return "a dict with keys " + ", ".join(repr(k) for k in node[1])
    return f"a {kind} of {len(node[1])}"


def _leaf_from(obj, path: str, what: str) -> Leaf:
    if isinstance(obj, bool) or isinstance(obj, np.bool_):
        raise TypeError(f"{what}: {path} is a bool; expected a float, a float array or tensor")
    if isinstance(obj, (float, np.floating)) and not isinstance(obj, np.ndarray):
        dtype = np.dtype(type(obj)) if isinstance(obj, np.floating) else np.dtype(np.float64)
        return Leaf(path, "scalar", (), dtype)
    if isinstance(obj, (int, np.integer)):
        raise TypeError(f"{what}: {path} is an integer ({obj!r}); expected a float — write {float(obj)!r}")
    if isinstance(obj, complex) or isinstance(obj, np.complexfloating):
        raise TypeError(f"{what}: {path} is complex; gradients are checked at real points")
    if is_tensor(obj):
        if not obj.is_floating_point():
            raise TypeError(
                f"{what}: {path} is a torch tensor of dtype {obj.dtype}; expected a floating dtype "
                "(torch.float64 or torch.float32)"
            )
        # bfloat16 has no NumPy dtype; its precision is float16's or worse
        dtype = (
            np.dtype(np.float16)
            if str(obj.dtype) == "torch.bfloat16"
            else np.dtype(str(obj.dtype).replace("torch.", ""))
        )
        return Leaf(path, "tensor", tuple(obj.shape), dtype, device=obj.device)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "iub":
            raise TypeError(
                f"{what}: {path} is an integer/bool array (dtype {obj.dtype}); expected a float array — "
                f"use {path}.astype(float)"
            )
        if obj.dtype.kind == "c":
            raise TypeError(f"{what}: {path} is a complex array; gradients are checked at real points")
        if obj.dtype.kind != "f":
            raise TypeError(f"{what}: {path} has dtype {obj.dtype}; expected float64 or float32")
        return Leaf(path, "array", obj.shape, obj.dtype)
    raise TypeError(
        f"{what}: {path} is a {type(obj).__name__}; expected a float, a NumPy float array, a torch "
        "tensor, or a tuple / list / dict of those"
    )


def spec_of(x, name: str = "x", what: str = "x") -> Spec:
    """Describe the structure of ``x``; raise TypeError/ValueError on anything unsupported."""
    leaves: list[Leaf] = []

    def walk(obj, path):
        if isinstance(obj, (tuple, list)):
            if len(obj) == 0:
                raise ValueError(f"{what}: {path} is an empty {type(obj).__name__}; nothing to differentiate")
            return (type(obj).__name__, [walk(o, f"{path}[{i}]") for i, o in enumerate(obj)])
        if isinstance(obj, dict):
            if len(obj) == 0:
                raise ValueError(f"{what}: {path} is an empty dict; nothing to differentiate")
            keys = list(obj.keys())
            return ("dict", keys, [walk(obj[k], f"{path}[{k!r}]") for k in keys])
        leaf = _leaf_from(obj, path, what)
        leaf.offset = sum(l.size for l in leaves)
        leaves.append(leaf)
        return leaf

    node = walk(x, name)
    spec = Spec(node, leaves)
    if spec.size == 0:
        raise ValueError(f"{what}: {name} has no entries (size 0)")
    return spec


def as_numpy(obj) -> np.ndarray:
    if is_tensor(obj):
        return obj.detach().cpu().numpy()
    return np.asarray(obj)


def flatten(x, spec: Spec, dtype=np.float64) -> np.ndarray:
    """Concatenate the leaves of ``x`` (structure ``spec``) into one vector."""
    out = np.empty(spec.size, dtype=dtype)
    for leaf, obj in zip(spec.leaves, leaves_of(x, spec.node)):
        out[leaf.offset : leaf.offset + leaf.size] = as_numpy(obj).reshape(-1)
    return out


def leaves_of(x, node):
    if isinstance(node, Leaf):
        yield x
    elif node[0] == "dict":
        for k, sub in zip(node[1], node[2]):
            yield from leaves_of(x[k], sub)
    else:
        for o, sub in zip(x, node[1]):
            yield from leaves_of(o, sub)


def unflatten(v: np.ndarray, spec: Spec, dtype=None):
    """Rebuild a fresh object of structure ``spec`` from the vector ``v``.

    ``dtype=None`` keeps each leaf's own dtype; otherwise every leaf gets ``dtype``
    (float64 for accurate finite differences, complex128 for the complex step).
    """

    def build(node):
        if isinstance(node, Leaf):
            chunk = v[node.offset : node.offset + node.size]
            dt = node.dtype if dtype is None else np.dtype(dtype)
            if node.kind == "scalar":
                val = chunk[0]
                if dt.kind == "c":
                    return complex(val)
                return float(val) if dtype is not None or node.dtype == np.float64 else node.dtype.type(val)
            arr = np.array(chunk, dtype=dt).reshape(node.shape)
            if node.kind == "tensor":
                return imported_torch().from_numpy(arr).to(device=node.device)
            return arr
        if node[0] == "dict":
            return {k: build(sub) for k, sub in zip(node[1], node[2])}
        built = [build(sub) for sub in node[1]]
        return tuple(built) if node[0] == "tuple" else built

    return build(spec.node)


class StructureError(ValueError):
    """What a function returned does not have the structure of x (containers, keys, lengths)."""


def leaves_like(y, spec: Spec, who: str):
    """Split ``y`` (returned by the user's ``grad``/``vjp``/...) into arrays matching ``spec``'s leaves.

    Containers must match exactly; leaf *shapes* are not checked here (a wrong shape is a
    student mistake that :mod:`gradcheck.diagnose` explains). Returns a list of float arrays.
    """
    out = []

    def walk(obj, node, path):
        if isinstance(node, Leaf):
            if isinstance(obj, (tuple, list, dict)) and not (node.kind != "scalar" and isinstance(obj, (tuple, list))):
                raise StructureError(f"{who} returned {type(obj).__name__} at {path}, where x has {_describe(node)}")
            if obj is None:
                raise StructureError(
                    f"{who} returned None at {path}; expected {_describe(node)} (did you forget `return`?)"
                )
            try:
                arr = as_numpy(obj)
            except Exception as exc:  # noqa: BLE001 - report what could not be read
                raise StructureError(
                    f"{who} returned an object of type {type(obj).__name__} at {path} that is not numeric ({exc})"
                ) from None
            if arr.dtype == object or arr.dtype.kind not in "biufc":
                raise StructureError(f"{who} returned non-numeric data (dtype {arr.dtype}) at {path}")
            if arr.dtype.kind == "c":
                if np.any(arr.imag != 0):
                    raise StructureError(f"{who} returned complex values at {path}; a real gradient was expected")
                arr = arr.real
            out.append(arr)
            return
        kind = node[0]
        if kind == "dict":
            if not isinstance(obj, dict):
                raise StructureError(
                    f"{who} returned {type(obj).__name__} at {path}; expected a dict with keys "
                    + ", ".join(map(repr, node[1]))
                )
            if set(obj.keys()) != set(node[1]):
                raise StructureError(
                    f"{who} returned a dict with keys {sorted(map(repr, obj.keys()))} at {path}; "
                    f"expected keys {sorted(map(repr, node[1]))}"
                )
            for k, sub in zip(node[1], node[2]):
                walk(obj[k], sub, f"{path}[{k!r}]")
            return
        if not isinstance(obj, (tuple, list)):
            raise StructureError(
                f"{who} returned {type(obj).__name__} at {path}; expected a {kind} of "
                f"{len(node[1])} (one entry per argument of x)"
            )
        if len(obj) != len(node[1]):
            raise StructureError(
                f"{who} returned {len(obj)} items at {path}; expected {len(node[1])} (one per entry of x)"
            )
        for i, (o, sub) in enumerate(zip(obj, node[1])):
            walk(o, sub, f"{path}[{i}]")

    walk(y, spec.node, "the result")
    return out


def copy_tree(x):
    """A deep copy of the leaves, so that nothing the caller owns is ever modified."""
    if isinstance(x, tuple):
        return tuple(copy_tree(o) for o in x)
    if isinstance(x, list):
        return [copy_tree(o) for o in x]
    if isinstance(x, dict):
        return {k: copy_tree(o) for k, o in x.items()}
    if is_tensor(x):
        return x.detach().clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    return x
