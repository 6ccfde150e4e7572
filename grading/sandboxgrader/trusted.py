"""Test cells run HERE, in the grader, against proxies of the student's names.

Before a test cell runs, every global name it reads that the trusted namespace lacks is looked
up in the student's kernel: data comes back as a validated copy, anything else (a function, an
object) as a proxy whose calls, attribute reads, indexing and arithmetic are forwarded to the
sandbox with plain-data arguments. An instructor function passed to student code (``grad(f)``)
never goes there: the kernel gets a numbered stub, and each call of it comes back here over the
agent's socket with its arguments as data (``TrustedRunner.callback``).
No student code ever runs in this process, so patching checkers, ``assert_allclose``, IPython
or the gradebook from the notebook has no effect on the verdict.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import ctypes
import io
import json
import linecache
import sys
import tracemalloc
import types
import warnings

import numpy as np

from . import wire
from .session import CallTimeout, Session

_BUILTIN_EXC = {
    name: obj for name, obj in vars(builtins).items() if isinstance(obj, type) and issubclass(obj, Exception)
}


class StudentError(Exception):
    """An exception raised by student code in the sandbox, re-raised here with its message."""


def _student_exception(answer: dict) -> Exception:
    etype, evalue = str(answer.get("etype", "Error"))[:100], str(answer.get("evalue", ""))[:4000]
    cls = _BUILTIN_EXC.get(etype)
    if cls is not None and cls not in (SystemExit, KeyboardInterrupt):
        try:
            return cls(evalue)
        except Exception:  # noqa: BLE001 - exceptions with special constructors
            pass
    return StudentError(f"{etype}: {evalue}")


class Remote:
    """A student object left in the sandbox (usually a function)."""

    __slots__ = ("_runner", "_node", "_info", "_label", "_dummy")

    def __init__(self, runner, node, info, label):
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_info", info)
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_dummy", None)

    def __call__(self, *args, **kwargs):
        if not self._info.get("callable"):
            raise TypeError(f"'{self._info.get('type')}' object is not callable")
        return self._runner.call(self._node, args, kwargs)

    @property
    def __name__(self):
        return self._label

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return self._runner.remote_op({"op": "getattr", "target": self._node, "attr": attr}, f"{self._label}.{attr}")

    def __getitem__(self, key):
        return self._runner.remote_op(
            {"op": "getitem", "target": self._node, "key": wire.encode(key, self._runner.ship)}, f"{self._label}[...]"
        )

    @property
    def __wrapped__(self):
        """A never-called stand-in compiled from the student's source, so inspect.getsource works."""
        if self._dummy is None:
            src = self._info.get("source") or ""
            if not src:
                raise AttributeError("__wrapped__")
            fname = f"<student {self._label}>"
            try:
                code = compile(src, fname, "exec")
            except SyntaxError:
                raise AttributeError("__wrapped__") from None
            fcode = next((c for c in code.co_consts if isinstance(c, types.CodeType)), None)
            if fcode is None:
                raise AttributeError("__wrapped__")
            linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
            object.__setattr__(self, "_dummy", types.FunctionType(fcode, {}))
        return self._dummy

    def __repr__(self):
        return f"<student {self._info.get('type', 'object')} {self._label}>"

    # arithmetic with a student object (hw3's traced Node) is done by the object, in the sandbox
    __array_ufunc__ = None  # ndarray (op) Remote must call Remote's reflected operator

    def _binop(self, name, other=None, reflected=False):
        req = {"op": "binop", "name": name, "target": self._node, "reflected": reflected}
        if name != "neg":
            req["other"] = wire.encode(other, self._runner.ship)
        return self._runner.remote_op(req, f"{self._label} {name}")

    def __add__(self, o):
        return self._binop("add", o)

    def __radd__(self, o):
        return self._binop("add", o, True)

    def __sub__(self, o):
        return self._binop("sub", o)

    def __rsub__(self, o):
        return self._binop("sub", o, True)

    def __mul__(self, o):
        return self._binop("mul", o)

    def __rmul__(self, o):
        return self._binop("mul", o, True)

    def __truediv__(self, o):
        return self._binop("truediv", o)

    def __rtruediv__(self, o):
        return self._binop("truediv", o, True)

    def __matmul__(self, o):
        return self._binop("matmul", o)

    def __rmatmul__(self, o):
        return self._binop("matmul", o, True)

    def __pow__(self, o):
        return self._binop("pow", o)

    def __neg__(self):
        return self._binop("neg")


class TrustedRunner:
    """Runs instructor and test code in a namespace whose student names are proxies."""

    def __init__(self, session: Session, call_timeout: float = 30.0):
        self.session = session
        self.call_timeout = call_timeout
        self.ns: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.calls = 0
        self.call_seconds = 0.0
        self.budget: float | None = None  # seconds of calls left to the submission (None: no budget)
        self.callbacks: list = []  # instructor functions handed to student code, by number
        self.callback_calls = 0
        session.on_callback = self.callback

    # -- requests ------------------------------------------------------------------------
    def _answer(self, req, what):
        timeout = self.call_timeout
        if self.budget is not None:
            if self.budget <= 0:
                raise CallTimeout("not called: the submission's time budget is exhausted")
            timeout = min(timeout, max(self.budget, 0.5))
        self.session.last_seconds = 0.0
        try:
            answer = self.session.request(req, timeout)
        finally:  # the call's time on the kernel's clock (a restart inside it is on nobody's)
            took = self.session.last_seconds
            self.calls += 1
            self.call_seconds += took
            if self.budget is not None:
                self.budget -= took
        if not answer["ok"]:
            raise _student_exception(answer)
        return answer

    def _decode(self, node, label):
        return wire.decode(node, lambda hid, info: Remote(self, {"t": "handle", "id": hid}, info, label))

    def call(self, target_node, args, kwargs):
        req = {
            "op": "call",
            "target": target_node,
            "args": [wire.encode(a, self.ship) for a in args],
            "kwargs": [[k, wire.encode(v, self.ship)] for k, v in kwargs.items()],
            "warnings_error": escalated_warnings(),
            "trace_memory": tracemalloc.is_tracing(),
        }
        label = target_node.get("v", "object") if target_node["t"] == "name" else "result"
        answer = self._answer(req, label)
        mirror_peak(answer.get("peak"))
        return self._decode(answer["r"], f"{label}(...)")

    def remote_op(self, req, label):
        return self._decode(self._answer(req, label)["r"], label)

    def describe(self, name):
        answer = self._answer({"op": "describe", "name": name}, name)
        if answer.get("missing"):
            return False, None
        node = answer["r"]
        if node.get("t") == "handle":
            return True, Remote(
                self,
                {"t": "name", "v": name},
                {
                    "callable": bool(node.get("callable")),
                    "type": str(node.get("type", ""))[:100],
                    "source": str(node.get("source", ""))[:200_000],
                },
                name,
            )
        return True, self._decode(node, name)

    # -- instructor functions called by student code ---------------------------------------
    def ship(self, obj, depth=0):
        if isinstance(obj, Remote):
            return obj._node
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.Tensor):
            return {"t": "array", "v": wire.encode_array(obj.detach().cpu().numpy()), "torch": True}
        mod = getattr(obj, "__module__", None) or ("numpy" if isinstance(obj, np.ufunc) else None)
        name = getattr(obj, "__name__", None)
        if mod and name:
            root = mod.split(".")[0]
            top = sys.modules.get(root)
            if root in ("numpy", "math", "torch", "scipy", "cmath") and top is not None:
                for m in (mod, root):
                    module = sys.modules.get(m)
                    if module is not None and getattr(module, name, None) is obj:
                        return {"t": "modattr", "module": m, "name": name}
        if isinstance(obj, (types.FunctionType, types.MethodType)):
            # never its code: the kernel gets a number, and calls come back here (see callback)
            self.callbacks.append(obj)
            return {"t": "callback", "id": len(self.callbacks) - 1}
        return None

    def callback(self, data: bytes) -> dict:
        """Run the instructor function a student's code called; answer with its result as data.

        ``{"cb": {"id": i}, "args": …, "kwargs": …}`` calls function ``i`` with the (validated)
        arguments; ``{"cb": {"id": i, "levels": [m0, m1, …]}, "args": [tensors]}`` evaluates the
        k-th derivative map of function ``i`` for the kernel's autograd (k = len(levels)): level 0
        is f itself, level k+1 maps (inputs z of level k, cotangents) to the VJP of level k at z.
        Errors go back by type only (their messages could hold hidden data).
        """
        try:
            msg = json.loads(data)
            key = msg["cb"]
            fn = self.callbacks[int(key["id"])]
            args = [self._decode(a, "argument") for a in msg["args"]]
            kwargs = {str(k): self._decode(v, "argument") for k, v in msg["kwargs"]}
            self.callback_calls += 1
            if "levels" in key:
                import torch

                levels = [int(m) for m in key["levels"]]
                z = [torch.as_tensor(np.asarray(a)) for a in args]
                out = tuple(o.detach() for o in _derivative_map(fn, levels, z))
                result = out if levels else (out[0] if len(out) == 1 else out)
            else:
                if any(isinstance(a, Remote) for a in (*args, *kwargs.values())):
                    fn = self._with_student_tools(fn)
                result = fn(*args, **kwargs)
            return {"ok": True, "r": wire.encode(result, self.ship)}
        except Exception as exc:  # noqa: BLE001 - the kernel learns only that it failed
            return {"ok": False, "etype": type(exc).__name__}

    def _with_student_tools(self, fn):
        """``fn`` reading the kernel's tools (hw3's ``ad``, ``trace``) where it reads the grader's copies.

        The notebook's visible helper cells run on both sides; a student object handed to ``fn``
        (a traced Node) works only with the kernel's helpers. Data ``fn`` reads stays the grader's.
        """
        if not isinstance(fn, types.FunctionType):
            return fn
        g = None
        for name in sorted(_referenced_names(fn.__code__)):
            value = fn.__globals__.get(name)
            if (
                value is None
                or isinstance(value, (types.ModuleType, type, Remote))
                or not (isinstance(value, (types.FunctionType, types.SimpleNamespace)))
            ):
                continue
            exists, theirs = self.describe(name)
            if exists and isinstance(theirs, Remote):
                g = g if g is not None else dict(fn.__globals__)
                g[name] = theirs
        if g is None:
            return fn
        return types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)

    # -- running code --------------------------------------------------------------------
    def bind_student_names(self, code: str) -> None:
        """Install proxies / data for the names ``code`` reads that we do not have."""
        try:
            tree = ast.parse(code)
        except SyntaxError:
            return
        needed = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                needed.add(node.id)
        for name in sorted(needed):
            if name in self.ns or hasattr(builtins, name):
                continue
            exists, value = self.describe(name)
            if exists:
                self.ns[name] = value

    def snapshot(self) -> dict:
        """The grader's names now (random generators copied: later cells must not advance them)."""
        return {
            k: copy.deepcopy(v) if isinstance(v, (np.random.Generator, np.random.RandomState)) else v
            for k, v in self.ns.items()
        }

    def restore(self, snapshot: dict) -> None:
        """Back to a snapshot, IN the same dict: functions defined earlier read their globals from it."""
        self.ns.clear()
        self.ns.update(snapshot)

    def run(self, code: str, label: str):
        """Run instructor/test code; return (passed, stdout, error text)."""
        fname = f"<{label}>"
        linecache.cache[fname] = (len(code), None, code.splitlines(True), fname)
        out = io.StringIO()
        try:
            self.bind_student_names(code)
            compiled = compile(code, fname, "exec")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                exec(compiled, self.ns)
        except Exception as exc:  # noqa: BLE001 - any failure of a test is a failed test
            return False, out.getvalue(), f"{type(exc).__name__}: {exc}"
        return True, out.getvalue(), ""


_TRACE_DOMAIN = 0x53470000  # a tracemalloc domain of the grader's own (NumPy's is 389047)


def mirror_peak(peak) -> None:
    """Record the kernel's traced peak of a call in this process's tracemalloc, for an instant.

    A test that measures a student's function with ``tracemalloc`` (hw1 Task 12, hw4 Task 3: no n^2 x n^2,
    no n x n matrix) runs here, the function in the kernel: the call carries ``trace_memory``, the agent
    measures there, and the peak is recorded here as one block of that size (``PyTraceMalloc_Track``: nothing
    is allocated), released at once, so ``tracemalloc.get_traced_memory()`` reads as in the student's own
    kernel. The figure comes from the untrusted kernel (hostile code can lower it): those tests also call at
    a size where the forbidden matrix exceeds the kernel's memory limits.
    """
    if not tracemalloc.is_tracing() or type(peak) is not int or not 0 < peak < 2**50:
        return
    api = ctypes.pythonapi
    api.PyTraceMalloc_Track.argtypes = (ctypes.c_uint, ctypes.c_size_t, ctypes.c_size_t)
    api.PyTraceMalloc_Untrack.argtypes = (ctypes.c_uint, ctypes.c_size_t)
    api.PyTraceMalloc_Track(_TRACE_DOMAIN, 1, peak)
    api.PyTraceMalloc_Untrack(_TRACE_DOMAIN, 1)


WARNING_CATEGORIES = (RuntimeWarning, UserWarning, DeprecationWarning, FutureWarning, Warning)


def escalated_warnings() -> list[str]:
    """Warning categories the test, here in the grader, turned into errors (``simplefilter("error",
    RuntimeWarning)``): the call carries them so the kernel, where the student's code runs, does too."""
    out = []
    for category in WARNING_CATEGORIES:
        for action, message, cat, module, lineno in warnings.filters:  # the first match decides
            if (
                (message is None or message.pattern == "")
                and module is None
                and lineno == 0
                and issubclass(category, cat)
            ):
                if action == "error":
                    out.append(category.__name__)
                break
    return out


def _referenced_names(code: types.CodeType) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _referenced_names(const)
    return names


def _derivative_map(fn, levels: list, z: list) -> tuple:
    """Level ``len(levels)`` of ``fn`` at ``z`` (see TrustedRunner.callback), by torch.autograd here."""
    import torch

    if not levels:
        out = fn(*z)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
    m = levels[-1]
    # (an outer level's inputs already require grad: keep them in the graph, do not detach)
    xs = [x if x.requires_grad else x.detach().requires_grad_(True) for x in z[:m]]
    with torch.enable_grad():
        outs = _derivative_map(fn, levels[:-1], xs)
        pairs = [(o, g) for o, g in zip(outs, z[m:]) if isinstance(o, torch.Tensor) and o.requires_grad]
        grads = (
            torch.autograd.grad(
                [o for o, _ in pairs], xs, grad_outputs=[g for _, g in pairs], create_graph=True, allow_unused=True
            )
            if pairs
            else (None,) * m
        )
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads))
