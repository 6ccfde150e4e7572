"""The data that crosses the sandbox boundary: plain values only, validated on arrival.

Both directions use one JSON shape, ``{"t": <tag>, ...}``:

``none`` ``bool`` ``int`` ``float`` (repr text, so nan/inf survive) ``str`` ``array`` (``.npy``
bytes, base64, ``allow_pickle=False``) ``tuple`` ``list`` ``dict`` (string keys) — and, for
things that are not data, ``handle`` (an object left in the sandbox, named by a number),
``name`` (a global of the student's namespace), ``module`` (numpy, math, torch, …) and
``callback`` (an instructor function, by number: it stays in the grader, the kernel's stub
calls it back with data).

The trusted side (this module) never unpickles and never evaluates what comes back: arrays are
rebuilt from their header after checking dtype (bool, int, uint, float, complex — no object,
structured or datetime dtypes), shape and byte count; nesting, lengths and sizes are capped.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import math
import types

import numpy as np
from numpy.lib import format as npy_format

MAX_DEPTH = 16
MAX_ITEMS = 100_000
MAX_STR = 1_000_000
MAX_ARRAY_BYTES = 256 * 2**20
ALLOWED_KINDS = "biufc"
SHIPPABLE_MODULES = {"numpy", "math", "torch", "scipy", "scipy.linalg", "numpy.linalg", "gradcheck", "cmath"}


class WireError(ValueError):
    """What came back from the sandbox is not acceptable data."""


# ------------------------------------------------------------------------------------ decode


def parse_reply_text(text: str, limit: int) -> dict:
    """The kernel answers with the repr of a JSON string: a Python string literal."""
    if len(text) > limit:
        raise WireError(f"reply of {len(text)} bytes exceeds the limit of {limit}")
    try:
        payload = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise WireError(f"reply is not a string literal: {exc}") from None
    if not isinstance(payload, str):
        raise WireError(f"reply is a {type(payload).__name__}, not a string")
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"reply is not JSON: {exc}") from None


def decode_array(b64: str) -> np.ndarray:
    try:
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, TypeError) as exc:
        raise WireError(f"array payload is not base64: {exc}") from None
    if len(raw) > MAX_ARRAY_BYTES + 4096:
        raise WireError(f"array of {len(raw)} bytes exceeds {MAX_ARRAY_BYTES}")
    fh = io.BytesIO(raw)
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fh, max_header_size=4096)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fh, max_header_size=4096)
        else:
            raise WireError(f"unsupported .npy version {version}")
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed header is refused
        raise WireError(f"malformed .npy header: {exc}") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in ALLOWED_KINDS:
        raise WireError(f"dtype {dtype} is not a plain numeric dtype")
    if not all(isinstance(s, int) and 0 <= s for s in shape) or len(shape) > 32:
        raise WireError(f"bad shape {shape}")
    count = math.prod(shape)
    body = raw[fh.tell() :]
    if len(body) != count * dtype.itemsize:
        raise WireError(f"array body has {len(body)} bytes, shape {shape} of {dtype} needs {count * dtype.itemsize}")
    arr = np.frombuffer(body, dtype=dtype, count=count).copy()
    return arr.reshape(shape, order="F" if fortran else "C")


def decode(node, make_handle, depth: int = 0):
    """Rebuild a value sent by the sandbox; ``make_handle(id, info)`` builds a handle proxy."""
    if depth > MAX_DEPTH:
        raise WireError("data nested too deeply")
    if not isinstance(node, dict) or "t" not in node:
        raise WireError("malformed node")
    t = node["t"]
    v = node.get("v")
    if t == "none":
        return None
    if t == "bool" and isinstance(v, bool):
        return v
    if t == "int" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if t == "float" and isinstance(v, str) and len(v) < 64:
        try:
            return float(v)
        except ValueError:
            raise WireError(f"bad float {v!r}") from None
    if t == "complex" and isinstance(v, list) and len(v) == 2:
        try:
            return complex(float(v[0]), float(v[1]))
        except (TypeError, ValueError):
            raise WireError(f"bad complex {v!r}"[:200]) from None
    if t == "str" and isinstance(v, str) and len(v) <= MAX_STR:
        return v
    if t == "array" and isinstance(v, str):
        arr = decode_array(v)
        return arr[()] if node.get("scalar") and arr.shape == () else arr
    if t in ("tuple", "list") and isinstance(v, list) and len(v) <= MAX_ITEMS:
        items = [decode(x, make_handle, depth + 1) for x in v]
        return tuple(items) if t == "tuple" else items
    if t == "dict" and isinstance(v, list) and len(v) <= MAX_ITEMS:
        out = {}
        for pair in v:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise WireError("malformed dict item")
            key = decode(pair[0], make_handle, depth + 1)
            if not isinstance(key, (str, int, float, bool, tuple)) or key is None:
                raise WireError("dict keys must be plain values")
            out[key] = decode(pair[1], make_handle, depth + 1)
        return out
    if t == "handle" and isinstance(node.get("id"), int):
        info = {
            "callable": bool(node.get("callable")),
            "type": str(node.get("type", ""))[:100],
            "source": str(node.get("source", ""))[:200_000],
        }
        return make_handle(node["id"], info)
    raise WireError(f"unexpected node of type {t!r}")


# ------------------------------------------------------------------------------------ encode


def encode_array(arr: np.ndarray) -> str:
    if arr.dtype.kind not in ALLOWED_KINDS or arr.dtype.fields is not None:
        raise TypeError(f"cannot send an array of dtype {arr.dtype}")
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, order="C"), allow_pickle=False)  # ascontiguousarray would make 0-d 1-d
    return base64.b64encode(buf.getvalue()).decode("ascii")


def encode(obj, ship, depth: int = 0):
    """Encode a trusted value for the sandbox. ``ship(obj)`` handles callables, proxies, modules."""
    if depth > MAX_DEPTH:
        raise TypeError("argument nested too deeply")
    if obj is None:
        return {"t": "none"}
    if isinstance(obj, (bool, np.bool_)):
        return {"t": "bool", "v": bool(obj)}
    if isinstance(obj, (int, np.integer)):
        return {"t": "int", "v": int(obj)}
    if isinstance(obj, (float, np.floating)) and not isinstance(obj, np.ndarray):
        if isinstance(obj, np.floating) and not isinstance(obj, np.float64):
            return {"t": "array", "v": encode_array(np.asarray(obj)), "scalar": True}
        return {"t": "float", "v": repr(float(obj))}
    if isinstance(obj, complex):
        return {"t": "complex", "v": [obj.real, obj.imag]}
    if isinstance(obj, str):
        return {"t": "str", "v": obj}
    if isinstance(obj, np.ndarray):
        return {"t": "array", "v": encode_array(obj)}
    if isinstance(obj, tuple):
        return {"t": "tuple", "v": [encode(o, ship, depth + 1) for o in obj]}
    if isinstance(obj, list):
        return {"t": "list", "v": [encode(o, ship, depth + 1) for o in obj]}
    if isinstance(obj, dict):
        return {"t": "dict", "v": [[encode(k, ship, depth + 1), encode(v, ship, depth + 1)] for k, v in obj.items()]}
    if isinstance(obj, types.ModuleType):
        if obj.__name__ not in SHIPPABLE_MODULES:
            raise TypeError(f"cannot send module {obj.__name__} to the student's kernel")
        return {"t": "module", "v": obj.__name__}
    shipped = ship(obj, depth)
    if shipped is None:
        raise TypeError(f"cannot send a {type(obj).__name__} to the student's kernel")
    return shipped
