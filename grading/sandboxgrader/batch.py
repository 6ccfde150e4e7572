"""Grade many submissions in parallel: JOBS worker processes, each with a pre-started kernel.

Each worker grades one submission at a time in a fresh sandboxed kernel, and launches the next
kernel before grading, so the next student's kernel boots while this one is graded. A crash,
timeout or dead kernel affects only that submission. Results stream back to the parent, which
alone writes files and the gradebook.
"""
from __future__ import annotations

import base64
import json
import os
import selectors
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field

import nbformat


@dataclass
class Job:
    student: str
    assignment: str
    notebook: str                 # notebook name without .ipynb
    source_path: str              # solutions/<aid>/<nb>.ipynb (trusted, with hidden tests)
    submission_path: str
    files: dict = field(default_factory=dict)   # extra assignment files for the kernel's home


@dataclass
class Options:
    cell_timeout: float = 30.0
    call_timeout: float = 30.0
    unsafe: bool = False


def _result_dict(res) -> dict:
    d = {k: v for k, v in res.__dict__.items() if k != "nb"}
    d["verdicts"] = [asdict(v) for v in res.verdicts]
    d["manual"] = [asdict(m) for m in res.manual]
    d["nb"] = nbformat.writes(res.nb) if res.nb is not None else None
    d["score"], d["max_score"] = res.score, res.max_score
    return d


def _failure(job: Job, message: str) -> dict:
    return {"student": job.student, "assignment": job.assignment, "notebook": job.notebook, "verdicts": [],
            "manual": [],
            "flags": [f"grader error: {message}"], "nb": None, "seconds": 0.0, "calls": 0, "call_seconds": 0.0,
            "score": 0.0, "max_score": 0.0, "error": message}


def _grade_one(job: Job, options: Options, state: dict) -> dict:
    """Grade one job in the pre-launched session; launch the next one before grading."""
    from .runner import grade
    from .session import Session

    session = state.pop("pending")
    t0 = time.monotonic()
    try:
        source = nbformat.read(job.source_path, as_version=4)
        hidden = hidden_modules(source)
        if hidden != session.hidden_modules:   # the pre-launched kernel was built for other rules
            session.shutdown()
            session = Session(session.slot, unsafe=options.unsafe, hidden_modules=hidden)
            session.launch()
        state["hidden"] = hidden
        if job.files:
            session.add_files(job.files)
        session.start()
        state["turn"] = 1 - state["turn"]
        state["pending"] = Session(state["slots"][state["turn"]], unsafe=options.unsafe,
                                   hidden_modules=hidden).launch()  # boots now
        try:
            submission = nbformat.read(job.submission_path, as_version=4)
            bad = None
        except Exception as exc:  # noqa: BLE001 - not a notebook: graded as empty, flagged
            submission = nbformat.v4.new_notebook()
            bad = f"submission is not a readable notebook ({type(exc).__name__}): graded as blank"
        res = grade(session, source, submission, student=job.student, assignment=job.assignment,
                    notebook=job.notebook, cell_timeout=options.cell_timeout, call_timeout=options.call_timeout)
        if bad:
            res.flags.insert(0, bad)
        out = _result_dict(res)
        out["seconds"] = time.monotonic() - t0
    except Exception as exc:  # noqa: BLE001 - one submission's failure must not stop the batch
        out = _failure(job, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
    finally:
        session.shutdown()
    if "pending" not in state:
        state["pending"] = Session(state["slots"][state["turn"]], unsafe=options.unsafe,
                                   hidden_modules=state.get("hidden", ())).launch()
    return out


def hidden_modules(source_nb) -> tuple:
    """Modules the assignment's rules keep out of the student's kernel: the trusted source notebook's
    ``metadata.sandboxgrader.unavailable_modules`` (e.g. torch where gradients are derived by hand)."""
    names = (source_nb.metadata.get("sandboxgrader") or {}).get("unavailable_modules") or []
    return tuple(sorted(str(n) for n in names if str(n).isidentifier()))


def worker_main(index: int, options: Options) -> None:
    """A worker process: jobs arrive as JSON lines on stdin, results leave as JSON lines on stdout."""
    from .session import Session

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)   # anything else printed goes to stderr, never into the protocol
    slots = (2 * index, 2 * index + 1)
    state = {"slots": slots, "turn": 0, "pending": Session(slots[0], unsafe=options.unsafe).launch()}
    for line in sys.stdin:
        if not line.strip():
            continue
        job = Job(**json.loads(line))
        job.files = {k: base64.b64decode(v) for k, v in job.files.items()}
        proto.write(json.dumps(_grade_one(job, options, state)) + "\n")
    state["pending"].shutdown()


def _spawn(index: int, options: Options) -> subprocess.Popen:
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # grading/
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "sandboxgrader.batch", str(index), json.dumps(asdict(options))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)


def _send(proc: subprocess.Popen, job: Job) -> None:
    d = asdict(job)
    d["files"] = {k: base64.b64encode(v).decode() for k, v in job.files.items()}
    proc.stdin.write(json.dumps(d) + "\n")
    proc.stdin.flush()


def grade_many(jobs: list[Job], n_workers: int, options: Options | None = None):
    """Yield one result dict per job, in completion order. Workers are separate processes
    (``python -m sandboxgrader.batch``), fed one job at a time; a dead worker costs only its job."""
    options = options or Options()
    if not jobs:
        return
    n_workers = max(1, min(n_workers, len(jobs)))
    todo = list(reversed(jobs))
    sel = selectors.DefaultSelector()
    current: dict = {}
    procs = []
    try:
        for i in range(n_workers):
            proc = _spawn(i, options)
            procs.append(proc)
            sel.register(proc.stdout, selectors.EVENT_READ, (i, proc))
            current[i] = todo.pop()
            _send(proc, current[i])
        while current or sel.get_map():
            for key, _ in sel.select():
                i, proc = key.data
                line = proc.stdout.readline()
                if not line:
                    sel.unregister(proc.stdout)
                    proc.wait()
                    if i not in current:   # finished its last job and exited
                        continue
                    # the worker died: its job fails, a new worker takes over
                    yield _failure(current.pop(i), f"the grading worker died (exit {proc.returncode})")
                    if todo:
                        proc = _spawn(i, options)
                        procs.append(proc)
                        sel.register(proc.stdout, selectors.EVENT_READ, (i, proc))
                        current[i] = todo.pop()
                        _send(proc, current[i])
                    continue
                current.pop(i)
                yield json.loads(line)
                if todo:
                    current[i] = todo.pop()
                    _send(proc, current[i])
                else:
                    proc.stdin.close()
    finally:
        for proc in procs:
            if proc.stdin and not proc.stdin.closed:
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    worker_main(int(sys.argv[1]), Options(**json.loads(sys.argv[2])))
