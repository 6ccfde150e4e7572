"""Hostile sample submissions, generated from the current release and the source's solutions.

Each sample is the solution with one answer cell turned into an attack (often on top of a wrong
answer); its expected score follows from the points of the test cells that read the attacked
function. What plain nbgrader 0.9.6 does with each (measured) is in the docstring of each builder;
the sandboxed grader must score them exactly as expected, flag the anomalies, and leave the
gradebook, the solutions and the other students untouched.
"""

from __future__ import annotations

import ast
import copy
import re
import textwrap

from . import nbutil
from .samples import Sample, answers, fill, test_points

NOOP_CHECKS = (
    "check_gradient",
    "check_jacobian",
    "check_vjp",
    "check_jvp",
    "check_hessian",
    "check_hvp",
    "assert_gradient",
    "assert_jacobian",
    "assert_vjp",
    "assert_jvp",
    "assert_hessian",
    "assert_hvp",
)


def _defined_function(code: str) -> str | None:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    return names[0] if len(names) == 1 else None


def _wrong(fn: str) -> str:
    """Make the answer wrong without knowing the maths: negate whatever it returns."""
    return textwrap.dedent(f"""
        _right_{fn} = {fn}
        def {fn}(*args, **kwargs):
            return -_right_{fn}(*args, **kwargs)
        """)


def _replace_body(fn: str, body: str) -> str:
    return f"def {fn}(*args, **kwargs):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


def _attacks(fn: str, db_path: str, solutions_path: str) -> dict:
    """name -> (code appended to / replacing the answer, replaces?, answer lost?, note)."""
    checks = "\n".join(f"gc.{c} = _noop" for c in NOOP_CHECKS)
    return {
        "patch_checker": (
            _wrong(fn) + f"import gradcheck as gc\n_noop = lambda *a, **k: None\n{checks}\n",
            False,
            True,
            "wrong answer + gradcheck's checks replaced by no-ops (nbgrader: full marks)",
        ),
        "patch_allclose": (
            _wrong(fn) + "import numpy as np\nnp.testing.assert_allclose = lambda *a, **k: None\n"
            "np.testing.assert_array_equal = lambda *a, **k: None\n"
            "np.allclose = lambda *a, **k: True\nnp.isclose = lambda a, b, *r, **k: True\n",
            False,
            True,
            "wrong answer + numpy's comparisons patched (nbgrader: full marks)",
        ),
        "input_transformer": (
            _wrong(fn) + "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n",
            False,
            True,
            "wrong answer + every later cell turned into `pass` (nbgrader: full marks)",
        ),
        "swallow_errors": (
            _wrong(fn) + "ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
            "ip.set_custom_exc((BaseException,), lambda *a, **k: None)\n",
            False,
            True,
            "wrong answer + showtraceback / set_custom_exc swallowing errors (nbgrader: 0)",
        ),
        "write_gradebook": (
            textwrap.dedent(f"""
            import sqlite3
            for _p in [{db_path!r}, "../../gradebook.db", "../../../grading/gradebook.db", "gradebook.db"]:
                try:
                    _c = sqlite3.connect("file:" + _p + "?mode=rw", uri=True)
                    _c.execute("UPDATE grade SET manual_score = 99")
                    _c.commit()
                    print("wrote", _p)
                except Exception as _e:
                    print("cannot write", _p, type(_e).__name__)
            """),
            False,
            False,
            "writes the gradebook with sqlite3 (nbgrader: exported 198/5)",
        ),
        "read_secrets": (
            textwrap.dedent(f"""
            for _p in [{solutions_path!r}, {db_path!r}]:
                try:
                    print(open(_p, "rb").read()[:100000])
                except Exception as _e:
                    print("cannot read", _p, type(_e).__name__)
            """),
            False,
            False,
            "reads solutions/ and the gradebook and prints them (nbgrader: leaked)",
        ),
        "os_exit": (
            "import os\nos._exit(0)\n",
            False,
            True,
            "os._exit(0) in the answer cell (nbgrader: student dropped, rc = 1)",
        ),
        "loop_in_function": (
            _replace_body(fn, "while True:\n    pass"),
            True,
            True,
            "infinite loop in the graded function (nbgrader: bounded by the timeout)",
        ),
        "loop_top_level": (
            "while True:\n    pass\n",
            False,
            False,
            "infinite loop at top level after a correct def (nbgrader: full marks, slow)",
        ),
        "sigint_ignored": (
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n",
            False,
            True,
            "SIGINT ignored, then an infinite loop (nbgrader: bounded)",
        ),
        "memory_bomb": (
            _replace_body(fn, "hog = []\nwhile True:\n    hog.append(bytearray(2**27))"),
            True,
            True,
            "the graded function allocates until memory runs out (nbgrader: no limit)",
        ),
        "fork_bomb": (
            _replace_body(fn, "import os\nwhile True:\n    os.fork()"),
            True,
            True,
            "the graded function forks without end (nbgrader: no limit)",
        ),
        "trickle_reply": (
            _replace_body(
                fn,
                """
            import struct, sys, threading, time
            if threading.current_thread().name != "sg-agent":
                return None
            f = sys._getframe()
            while f is not None and "conn" not in f.f_locals:   # the agent's connection to the grader
                f = f.f_back
            conn = f.f_locals["conn"]
            def trickle():   # a reply "of 1 MB", one byte a second: a per-recv timeout never fires
                conn.sendall(struct.pack("!Q", 10**6))
                while True:
                    conn.sendall(b" ")
                    time.sleep(1)
            threading.Thread(target=trickle, daemon=True).start()
            time.sleep(3600)
            """,
            ),
            True,
            True,
            "the graded call answers one byte a second (main: hung for ever)",
        ),
        "memory_fanout": (
            _replace_body(
                fn,
                """
            import os, threading
            if threading.current_thread().name != "sg-agent":
                return None
            kids = []
            for _ in range(4):   # each under the per-process limit, held for ever: 4 x 1.5 GB in main
                pid = os.fork()
                if pid == 0:
                    hog = b"x" * (1536 * 2**20)
                    os.read(os.pipe()[0], 1)
                    os._exit(0)
                kids.append(pid)
            for pid in kids:
                os.waitpid(pid, 0)
            """,
            ),
            True,
            True,
            "four forked children fill 1.5 GB each (main: 6.2 GiB resident, no flag)",
        ),
        "cpu_fanout": (
            _replace_body(
                fn,
                """
            import os, threading
            if threading.current_thread().name == "sg-agent":
                for _ in range(30):   # busy children left behind when the call returns
                    if os.fork() == 0:
                        while True:
                            pass
            return None
            """,
            ),
            True,
            True,
            "the graded call leaves 30 busy children (main: 40 ran 10 min unflagged)",
        ),
        "disk_fill": (
            _replace_body(
                fn,
                """
            for k in range(48):   # 1.5 GB in 32 MiB files (each under the file size limit)
                with open(f"fill{k}.bin", "wb") as fh:
                    for _ in range(32):
                        fh.write(b"x" * 2**20)
            """,
            ),
            True,
            True,
            "writes 1.5 GB into its home (main: host disk, 2.7 s)",
        ),
        "huge_reply": (
            _replace_body(fn, "return 'x' * (60 * 2**20)"),
            True,
            True,
            "the graded function returns 60 MiB (main: 1.45 GB and 9 s in the grader)",
        ),
        # output messages above the grader's cap (c.Sandbox.message_bytes; 1 MiB in CI): refused, the cell
        # ends at once (not at its timeout), the kernel keeps its state, flagged
        "huge_messages": (
            "print('x' * (4 * 2**20))   # one output message above the cap\n",
            False,
            False,
            "an output message above the cap (main: ten of 300 MB took a worker to 3.3 GB)",
        ),
        "huge_error": (
            "raise ValueError('x' * (4 * 2**20))   # the execute_reply itself above the cap\n",
            False,
            False,
            "an error whose reply is above the cap (main: the cell waited its timeout)",
        ),
        "message_flood": (
            "from IPython.display import display\nfor _ in range(8):\n"
            "    display({'text/plain': 'x' * (2**20 - 4096)}, raw=True)   # each just under the cap\n",
            False,
            False,
            "8 messages just under the cap: the total per cell is bounded too",
        ),
        "huge_display_in_call": (
            f"_quiet_{fn} = {fn}\n"
            + _replace_body(
                fn,
                "import threading\nif threading.current_thread().name == 'sg-agent':\n"
                "    from IPython.display import display\n"
                "    display({'text/plain': 'x' * (4 * 2**20)}, raw=True)\n"
                f"return _quiet_{fn}(*args, **kwargs)",
            ),
            False,
            False,
            "every graded call displays 4 MiB (refused; the next cell unharmed)",
        ),
        "print_flood": (
            f"_quiet_{fn} = {fn}\n"
            + _replace_body(fn, f"for i in range(10**6):\n    print(i)\nreturn _quiet_{fn}(*args, **kwargs)"),
            False,
            True,
            "the graded function prints 1M lines (nbgrader: 0, 70 s)",
        ),
    }


def _readers(source_nb: dict, fn: str) -> list[str]:
    """grade_ids of the test cells that read the function ``fn``."""
    word = re.compile(rf"\b{re.escape(fn)}\b")
    return [nbutil.grade_id(c) for c in source_nb["cells"] if nbutil.is_test(c) and word.search(nbutil.src(c))]


def build(
    assignment: str, source_nb: dict, release_nb: dict, nb_name: str, *, db_path: str, solutions_path: str
) -> list[Sample]:
    """Hostile samples for one single-notebook assignment (the first answer defining one function is attacked)."""
    filled = answers(source_nb)
    pts = test_points(source_nb)
    total = sum(pts.values())
    order = [nbutil.grade_id(c) for c in source_nb["cells"] if nbutil.is_answer(c) and c.get("cell_type") == "code"]
    target = next(
        g for g in order if _defined_function(filled[g]) and _readers(source_nb, _defined_function(filled[g]))
    )
    last = next(
        g for g in reversed(order) if _defined_function(filled[g]) and _readers(source_nb, _defined_function(filled[g]))
    )
    out = []
    for name, (code, replaces, lost, note) in _attacks("FN", db_path, solutions_path).items():
        gid = last if name == "input_transformer" else target  # it disables every later cell
        fn = _defined_function(filled[gid])
        code = _attacks(fn, db_path, solutions_path)[name][0]
        changed = dict(filled)
        changed[gid] = code if replaces else filled[gid].rstrip("\n") + "\n" + code
        breaks = sorted(set(_readers(source_nb, fn))) if lost else []
        out.append(
            Sample(
                assignment,
                f"hostile_{name}",
                {nb_name: fill(release_nb, changed)},
                total - sum(pts[b] for b in breaks),
                breaks,
                note,
            )
        )
    # the test cells themselves: deleted, metadata stripped, edited, points changed -> restored and run
    nb = fill(release_nb, filled)
    tests = [i for i, c in enumerate(nb["cells"]) if nbutil.is_test(c)]
    if len(tests) >= 4:
        edited = copy.deepcopy(nb)
        edited["cells"][tests[1]]["metadata"].pop("nbgrader", None)
        edited["cells"][tests[2]]["source"] = "pass  # the test, edited away"
        edited["cells"][tests[3]]["metadata"]["nbgrader"]["points"] = 100
        del edited["cells"][tests[0]]
        out.append(
            Sample(
                assignment,
                "hostile_test_cells",
                {nb_name: edited},
                total,
                [],
                "test cells deleted, metadata stripped, edited, points changed (restored and run)",
            )
        )
    return out


# ------------------------------------------------------------------------------------------------
# The assignments' own rules, attacked where the student's code runs (the kernel). Each row replaces
# answer cells; ``breaks`` are the test cells whose points the attack must lose.

_TORCH_ADJOINTS = """
    v = {k: torch.tensor(float(val), dtype=torch.float64, requires_grad=True) for k, val in zip("wbxt", (w, b, x, t))}
    z = v["w"] * v["x"] + v["b"]
    y = torch.sigmoid(z)
    L, R = 0.5 * (y - v["t"]) ** 2, 0.5 * v["w"] ** 2
    for n in (z, y, L, R):
        n.retain_grad()
    (L + lam * R).backward()
    return {"loss_bar": 1.0, "L_bar": 1.0, "R_bar": lam, "y_bar": y.grad.item(), "z_bar": z.grad.item(),
            "w_bar": v["w"].grad.item(), "b_bar": v["b"].grad.item(), "x_bar": v["x"].grad.item(),
            "t_bar": v["t"].grad.item()}
"""


def _by_torch(header: str, get_torch: str) -> str:
    """backward_univariate computed by torch.autograd, torch reached by ``get_torch``."""
    return (
        header
        + "\n\ndef _adjoints(w, b, x, t, lam):\n"
        + textwrap.indent(get_torch, "    ")
        + "\n"
        + _TORCH_ADJOINTS
        + "\n\ndef backward_univariate(w, b, x, t, lam):\n    return _adjoints(w, b, x, t, lam)\n"
    )


_NAIVE_GRAD = """
def logreg_grad(w, b, X, t, lam):
    z = X @ w + b
    y = {sigmoid}
    z_bar = (y - t) / X.shape[0]
    return X.T @ z_bar + lam * w, float(np.sum(z_bar))
"""


def _silenced(setup: str, enter: str, leave: str) -> str:
    """logreg_grad with the naive sigmoid, run between ``enter`` (a block opener) and ``leave``."""
    return (
        "def _sig(z):\n    return 1.0 / (1.0 + np.exp(-z))\n\n\n" + setup + "\n\n\n"
        "def logreg_grad(w, b, X, t, lam):\n    z = X @ w + b\n" + textwrap.indent(enter, "    ") + "\n"
        "        y = _sig(z)\n" + textwrap.indent(leave, "    ") + "\n"
        "    z_bar = (y - t) / X.shape[0]\n    return X.T @ z_bar + lam * w, float(np.sum(z_bar))\n"
    )


_TAMPER_SETUP = """
import builtins, ctypes, gc, queue, struct, sys, threading
import numpy as np

_NOOP = (lambda frame, event, arg: None).__code__   # its address is written into the hook: kept alive
_KEEP = [_NOOP] * 100   # (the hook's end drops a reference it never took)
_EXPIT, _WORKER = [], []
_JOBS, _DONE = queue.Queue(), queue.Queue()


def _walk_frames():
    try:
        1 / 0
    except ZeroDivisionError as e:
        f = e.__traceback__.tb_frame
    while f is not None:
        done = f.f_locals.get("done")
        if isinstance(done, list) and done == [False]:
            done[0] = True
        f = f.f_back


def _flip_flags(fn):
    for cell in getattr(fn, "__closure__", None) or ():
        v = cell.cell_contents
        if isinstance(v, list) and v == [False]:
            v[0] = True


def _poke(address, data):
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(address)
        mem.write(data)


def _swap_handler():
    roots = [getattr(builtins, "__sg_call__", None)]
    try:
        roots += [o for o in gc.get_objects() if getattr(o, "__name__", "") == "run_bounded"]
    except Exception as e:
        print("gc:", type(e).__name__)
    for fn in roots:
        code = getattr(fn, "__code__", None)
        for name, cell in zip(getattr(code, "co_freevars", ()), getattr(fn, "__closure__", None) or ()):
            if name == "handle":
                real = cell.cell_contents
                cell.cell_contents = lambda req, real=real: real({k: v for k, v in req.items() if k != "warnings_error"})
                return
    print("no handler found")


def _worker():
    np.seterr(all="ignore")
    while True:
        z = _JOBS.get()
        _DONE.put(1.0 / (1.0 + np.exp(-z)))


def _start_worker():
    threading.Thread(target=_worker, daemon=True).start()
    _WORKER.append(True)


def _sigmoid(z):
    if _WORKER:
        _JOBS.put(z)
        return _DONE.get()
    if _EXPIT:
        return _EXPIT[0](z)
    old = np.seterr(all="ignore")
    try:
        return 1.0 / (1.0 + np.exp(-z))
    finally:
        np.seterr(**old)
"""

_TAMPERED_GRAD = """

def logreg_grad(w, b, X, t, lam):
    {unguard}
    z = X @ w + b
    y = _sigmoid(z)
    {restore}
    z_bar = (y - t) / X.shape[0]
    return X.T @ z_bar + lam * w, float(np.sum(z_bar))
"""

RULE_ATTACKS = {
    "hw2_backprop": {
        # derive by hand: the grading kernel has no torch at all (its files are not in the sandbox)
        "hw2_autograd_in_helper": (
            {"a2-sol": _by_torch("", "import torch")},
            ["a2-test"],
            "adjoints by torch.autograd inside a helper (was 20/20)",
        ),
        "hw2_real_engine": (
            {
                "a2-sol": _by_torch(
                    "import torch\nfrom torch.autograd.variable import Variable\n_engine = Variable._execution_engine",
                    "pass",
                )
            },
            ["a2-test"],
            "torch imported at cell level, the real autograd engine kept aside (was 20/20)",
        ),
        "hw2_importlib": (
            {"a2-sol": _by_torch("import importlib", 'torch = importlib.import_module("tor" + "ch")')},
            ["a2-test"],
            "torch imported by importlib under a built name",
        ),
        "hw2_meta_path": (
            {
                "a2-sol": _by_torch(
                    "import sys",
                    "sys.meta_path[:] = [f for f in sys.meta_path if "
                    'getattr(f, "__name__", "") in ("BuiltinImporter", "PathFinder")]\n'
                    'sys.modules.pop("torch", None)\ntorch = __import__("torch")',
                )
            },
            ["a2-test"],
            "import machinery stripped to the plain path finder, then __import__",
        ),
        "hw2_subprocess": (
            {
                "a2-sol": "import json, subprocess, sys\n_SCRIPT = "
                + repr(
                    "import json, torch\ndef f(w, b, x, t, lam):\n" + _TORCH_ADJOINTS + "\nprint(json.dumps(f(*%r)))\n"
                )
                + """


def backward_univariate(w, b, x, t, lam):
    out = subprocess.run([sys.executable, "-c", _SCRIPT % ((w, b, x, t, lam),)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-300:]
    return json.loads(out.stdout)
"""
            },
            ["a2-test"],
            "torch run in a child Python process",
        ),
        "hw2_torch_func_mlp": (
            {
                "c2-sol": """
def mlp_backward(W1, b1, W2, b2, X, y):
    import torch, torch.func
    def loss(p):
        S = torch.tanh(torch.tensor(X) @ p[0] + p[1]) @ p[2] + p[3]
        return torch.nn.functional.cross_entropy(S, torch.tensor(y))
    g = torch.func.grad(loss)([torch.tensor(a) for a in (W1, b1, W2, b2)])
    return tuple(a.numpy() for a in g)
"""
            },
            ["c2-test", "c2b-test"],
            "mlp gradients by torch.func.grad",
        ),
        # no overflow warnings: warnings are errors inside the kernel during the graded calls
        "hw2_naive_sigmoid": (
            {"b2-sol": _NAIVE_GRAD.format(sigmoid="1.0 / (1.0 + np.exp(-z))")},
            ["b2-test"],
            "sigmoid that overflows for large logits (was 20/20)",
        ),
        "hw2_sigmoid_helper": (
            {
                "b2-sol": "_SIG = {'f': lambda z: 1.0 / (1.0 + np.exp(-z))}\n"
                + _NAIVE_GRAD.format(sigmoid="_SIG['f'](z)")
            },
            ["b2-test"],
            "the overflowing sigmoid hidden in a dict of helpers",
        ),
        "hw2_sigmoid_power": (
            {"b2-sol": _NAIVE_GRAD.format(sigmoid="np.reciprocal(1.0 + np.power(np.e, -z))")},
            ["b2-test"],
            "overflow through np.power(e, -z)",
        ),
        "hw2_seterr_in_cell": (
            {
                "b2-sol": "np.seterr(all='ignore')\nimport warnings\nwarnings.filterwarnings('ignore')\n"
                + _NAIVE_GRAD.format(sigmoid="1.0 / (1.0 + np.exp(-z))")
            },
            ["b2-test"],
            "numpy errors and warnings silenced for the whole kernel, then the naive sigmoid",
        ),
        # ... and the student's code cannot lower that during the call (a profile hook in the kernel sees
        # every change of numpy's error state or of the warnings filters; numpy's errors go to a callback)
        **{
            f"hw2_{name}": (
                {"b2-sol": _silenced(setup, enter, leave)},
                ["b2-test"],
                note + " around the naive sigmoid, inside logreg_grad",
            )
            for name, (setup, enter, leave, note) in {
                "errstate_in_function": ("", "with np.errstate(over='ignore', divide='ignore'):", "", "np.errstate"),
                "seterr_in_function": (
                    "",
                    "_old = np.seterr(all='ignore')\nif True:",
                    "np.seterr(**_old)",
                    "np.seterr",
                ),
                "catch_warnings_in_function": (
                    "import warnings",
                    "with warnings.catch_warnings():\n    warnings.simplefilter('ignore')",
                    "",
                    "warnings.catch_warnings + simplefilter",
                ),
                "filterwarnings_in_function": (
                    "import warnings",
                    "warnings.filterwarnings('ignore')\nif True:",
                    "warnings.filters.pop(0)",
                    "warnings.filterwarnings (then undone)",
                ),
                "errstate_via_import": (
                    "",
                    "with __import__('nu' + 'mpy').errstate(all='ignore'):",
                    "",
                    "numpy's errstate reached through __import__",
                ),
                "filters_assigned": (
                    "import warnings",
                    "_saved, warnings.filters = warnings.filters, [('ignore', None, Warning, None, 0)]\nif True:",
                    "warnings.filters = _saved",
                    "warnings.filters replaced by assignment (no function called)",
                ),
                "context_run": (
                    "import contextvars\n_CTX = contextvars.copy_context()\n_CTX.run(np.seterr, all='ignore')\n"
                    "_sig = (lambda f: lambda z: _CTX.run(f, z))(_sig)",
                    "if True:",
                    "",
                    "the sigmoid run in a context prepared at cell level (Context.run)",
                ),
            }.items()
        },
        # ... nor silence the checks themselves: each row reaches the grader's state (or the process's memory)
        # first, then runs the naive sigmoid under np.seterr(all='ignore') and restores the error state
        **{
            f"hw2_{name}": (
                {
                    "b2-sol": _TAMPER_SETUP
                    + setup
                    + _TAMPERED_GRAD.format(unguard=unguard.replace("\n", "\n    "), restore=restore)
                },
                breaks,
                note,
            )
            for name, (setup, unguard, restore, breaks, note) in {
                "frame_walk": (
                    "",
                    "_walk_frames()",
                    "pass",
                    ["b2-test"],
                    "tb_frame -> f_back up to the guard's frame, its `done` flag set through f_locals (was 22/22)",
                ),
                "profile_closure": (
                    "",
                    "_flip_flags(sys.getprofile())",
                    "pass",
                    ["b2-test"],
                    "the flag in the closure of sys.getprofile() (the profile hook) set (was 22/22)",
                ),
                "gc_state": (
                    "",
                    "[_flip_flags(o) for o in gc.get_objects() if getattr(o, '__name__', '') == 'watch']",
                    "pass",
                    ["b2-test"],
                    "gc.get_objects() finds the profile hook, its flag set (was 22/22)",
                ),
                "ctypes_setprofile": (
                    "",
                    "saved = sys.getprofile()\nctypes.pythonapi.PyEval_SetProfile(None, None)",
                    "sys.setprofile(saved)",
                    ["b2-test"],
                    "the profile hook removed by ctypes PyEval_SetProfile(NULL), put back after (was 22/22)",
                ),
                "ctypes_memory": (
                    "",
                    "ctypes.memmove(id(sys.getprofile()) + 48, struct.pack('P', id(_NOOP)), 8)",
                    "pass",
                    ["b2-test"],
                    "ctypes.memmove writes a no-op code object into the profile hook (was 22/22)",
                ),
                "proc_mem": (
                    "",
                    "_poke(id(sys.getprofile()) + 48, struct.pack('P', id(_NOOP)))",
                    "pass",
                    ["b2-test"],
                    "the same write through /proc/self/mem (was 22/22)",
                ),
                "prepared_handler": (
                    "_swap_handler()\n",
                    "pass",
                    "pass",
                    ["b2-test"],
                    "cell level: the agent's request handler (from builtins.__sg_call__'s closure, or gc) swapped "
                    "for one that drops the rule's flag from every request (was 22/22)",
                ),
                "prepared_json": (
                    "import json\n_LOADS = json.loads\njson.loads = lambda s, *a, **k: "
                    "{x: y for x, y in _LOADS(s, *a, **k).items() if x != 'warnings_error'}\n",
                    "pass",
                    "pass",
                    ["b2-test"],
                    "cell level: json.loads patched to drop the rule's flag from the agent's requests (was 22/22)",
                ),
                "worker_thread": (
                    "_start_worker()\n",
                    "pass",
                    "pass",
                    ["b1-test", "b2-test", "c2b-test"],  # every call under the rule, while the thread runs
                    "cell level: a thread with its own error state (all ignored) computes the sigmoid; while a "
                    "thread the student started runs, every call under the rule fails (was 22/22)",
                ),
                "expit_neighbour": (
                    "from scipy.special import expit\n_EXPIT.append(expit)\n",
                    "pass",
                    "pass",
                    [],
                    "correct neighbour: scipy.special.expit, nothing tampered with (keeps full marks)",
                ),
            }.items()
        },
    },
}

# hw3: instructor functions stay in the grader (student code calls them back over the agent's
# socket), and "HVP without forming the Hessian" is checked by the work the grader counts.
_SPY = '''
import gc as _gc, inspect as _inspect, sys as _sys, threading as _threading, types as _types
import numpy as _np
_FOUND = []


def _spy(fn):
    """During a graded call (the agent's thread): anything instructor-made reachable from the call --
    the source or closure data of the function handed in, a frame or a code object of shipped code."""
    if _threading.current_thread().name != "sg-agent":
        return False
    hits = []
    try:
        if "lambda" in _inspect.getsource(fn):
            hits.append("source: " + _inspect.getsource(fn))
    except Exception:
        pass
    for cell in getattr(fn, "__closure__", None) or ():
        value = cell.cell_contents
        code = getattr(value, "__code__", None)   # (the agent's own helpers are no instructor code)
        if isinstance(value, _np.ndarray) or type(value).__name__ == "Tensor" or \
                (code is not None and code.co_filename == "<instructor>"):
            hits.append("closure: " + repr(value)[:300])
    frame = _sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == "<instructor>":
            hits.append("frame: " + repr(frame.f_locals)[:300])
        frame = frame.f_back
    for o in _gc.get_objects():
        if isinstance(o, _types.CodeType) and o.co_filename == "<instructor>":
            hits.append("code: " + o.co_name)
    if hits:
        _FOUND.extend(hits)
        print("FOUND", hits)   # printed during a graded call: must not reach the feedback
    return bool(hits)
'''

_HESSIAN = """
def hvp(f, x, v):
    x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    v = torch.as_tensor(v, dtype=torch.float64)
{form}
    return (H @ v.reshape(-1)).reshape(x.shape).detach().numpy()
"""


def _hessian_by(form: str) -> str:
    return _HESSIAN.format(form=textwrap.indent(textwrap.dedent(form).strip("\n"), "    "))


SLOW_RULE_ATTACKS = {  # graded in their own batch (torch kernels: a longer cell timeout)
    "hw3_autodiff": {
        "hw3_spy_callers": (
            {
                "t9-sol+": _SPY
                + """
_grad = grad


def grad(f, argnum=0):
    g = _grad(f, argnum)

    def spied(*args):
        return g(*args) * (2.0 if _spy(f) else 1.0)   # a wrong answer if anything instructor-made was found
    return spied
""",
                "t10-sol+": """
_hvp = hvp


def hvp(f, x, v):
    return _hvp(f, x, v) * (2.0 if _spy(f) else 1.0)
""",
                "end": "print('SPY', _FOUND)\n",
            },
            [],
            "grad and hvp search the function they are handed, their callers' frames and the heap for "
            "instructor code and print what they find (main: 8 hidden lambdas and their data in the feedback)",
        ),
        "hw3_hessian_functional": (
            {"t10-sol": _hessian_by("H = torch.autograd.functional.hessian(f, x).reshape(x.numel(), x.numel())")},
            ["t10-test"],
            "torch.autograd.functional.hessian, then H @ v (was 30/30)",
        ),
        "hw3_hessian_torch_func": (
            {"t10-sol": _hessian_by("H = torch.func.hessian(f)(x).reshape(x.numel(), x.numel())")},
            ["t10-test"],
            "torch.func.hessian",
        ),
        "hw3_jacrev_jacrev": (
            {
                "t10-sol": _hessian_by(
                    "from torch.func import jacrev as J\nH = J(J(f))(x).reshape(x.numel(), x.numel())"
                )
            },
            ["t10-test"],
            "jacrev(jacrev(f))",
        ),
        "hw3_importlib_hessian": (
            {
                "t10-sol": _hessian_by(
                    "import importlib\nH = getattr(importlib.import_module('torch.autograd.' + 'functional'), 'hess' + 'ian')"
                    "(f, x).reshape(x.numel(), x.numel())"
                )
            },
            ["t10-test"],
            "the Hessian function reached by importlib under built names",
        ),
        "hw3_unit_vector_rows": (
            {
                "t10-sol": _hessian_by("""
            (g,) = torch.autograd.grad(f(x), x, create_graph=True)
            g = g.reshape(-1)
            H = torch.stack([torch.autograd.grad(g, x, torch.eye(g.numel(), dtype=g.dtype)[i].reshape(g.shape),
                                                 retain_graph=True, allow_unused=True)[0].reshape(-1)
                             for i in range(g.numel())])""")
            },
            ["t10-test"],
            "the Hessian row by row: one gradient of <grad f, e_i> per unit vector (no Hessian function called)",
        ),
    },
}


def rule_rows(assignment: str, source_nb: dict, release_nb: dict, nb_name: str) -> list[Sample]:
    """The rows of RULE_ATTACKS (or SLOW_RULE_ATTACKS) for one assignment, each with its expected score."""
    filled = answers(source_nb)
    pts = test_points(source_nb)
    out = []
    rows = {**RULE_ATTACKS.get(assignment, {}), **SLOW_RULE_ATTACKS.get(assignment, {})}
    for name, (changes, breaks, note) in rows.items():
        changes = dict(changes)
        end = changes.pop("end", None)  # a student cell after the last cell of the notebook
        answers_now = dict(filled)
        for gid, code in changes.items():  # "<grade_id>+" appends to the solution, else replaces it
            base = gid.rstrip("+")
            if base not in filled:
                raise KeyError(f"{name}: no answer cell {base!r} in {assignment}")
            code = textwrap.dedent(code).strip("\n") + "\n"
            answers_now[base] = filled[base].rstrip("\n") + "\n" + code if gid.endswith("+") else code
        if set(breaks) - set(pts):
            raise KeyError(f"{name}: no test cell {sorted(set(breaks) - set(pts))} in {assignment}")
        nb = fill(release_nb, answers_now)
        if end:
            nb["cells"].append(
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": "student-end",
                    "metadata": {},
                    "outputs": [],
                    "source": end,
                }
            )
        out.append(
            Sample(assignment, name, {nb_name: nb}, sum(pts.values()) - sum(pts[b] for b in breaks), list(breaks), note)
        )
    return out
