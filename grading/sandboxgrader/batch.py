"""Grade many submissions in parallel: JOBS worker processes, each with a pre-started kernel.

Each worker grades one submission at a time in a fresh sandboxed kernel, and launches the next
kernel before grading, so the next student's kernel boots while this one is graded. A crash,
timeout or dead kernel affects only that submission. Results stream back to the parent, which
alone writes files and the gradebook. A worker dies with the grader, its kernels with the worker
(:mod:`.lifeline`); a stop signal makes both clean up first.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field

import nbformat

from . import lifeline
from .cells import STUB

STOP_GRACE = 60.0  # seconds a stopped worker has to shut its kernels down before it is killed


@dataclass
class Job:
    student: str
    assignment: str
    notebook: str  # notebook name without .ipynb
    source_path: str  # solutions/<aid>/<nb>.ipynb (trusted, with hidden tests)
    submission_path: str
    files: dict = field(default_factory=dict)  # extra assignment files for the kernel's home


@dataclass
class Options:
    cell_timeout: float = 30.0
    call_timeout: float = 30.0
    unsafe: bool = False
    budget: float | None = 600.0  # seconds of student code per submission (runner.grade)
    job_timeout: float | None = 1800.0  # wall-clock deadline of one job: the worker is killed beyond
    limits: dict = field(default_factory=dict)  # kernel.Limits fields that differ from the defaults
    code_stub: str = STUB  # replaces a missing answer's solution (c.ClearSolutions.code_stub)


def _failure(job: Job, message: str, seconds: float = 0.0) -> dict:
    from .runner import Result

    return Result.failed(job.student, job.assignment, job.notebook, message, seconds).to_dict()


def _session(slot: int, options: Options, hidden: tuple = ()):
    from .kernel import Limits
    from .session import Session

    return Session(slot, limits=Limits(**options.limits), unsafe=options.unsafe, hidden_modules=hidden)


def read_submission(path: str):
    """(notebook, problem or None). A hand-edited file (a cell whose source is a number, a list
    for metadata) is repaired cell by cell rather than graded as blank: its answers still count."""
    try:
        return nbformat.read(path, as_version=4), None
    except Exception as exc:  # noqa: BLE001 - whatever nbformat refuses: try to repair it below
        first = exc
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        cells, dropped = [], 0
        for c in raw.get("cells", []) if isinstance(raw, dict) and isinstance(raw.get("cells"), list) else []:
            if not isinstance(c, dict) or c.get("cell_type") not in ("code", "markdown", "raw"):
                dropped += 1
                continue
            s = c.get("source", "")
            s = "".join(x for x in s if isinstance(x, str)) if isinstance(s, list) else s if isinstance(s, str) else ""
            meta = c.get("metadata") if isinstance(c.get("metadata"), dict) else {}
            make = {
                "code": nbformat.v4.new_code_cell,
                "markdown": nbformat.v4.new_markdown_cell,
                "raw": nbformat.v4.new_raw_cell,
            }[c["cell_type"]]
            cells.append(make(s, metadata=nbformat.from_dict(meta)))
        if not cells:
            raise ValueError("no cells")
        return (
            nbformat.v4.new_notebook(cells=cells),
            f"malformed notebook ({type(first).__name__}) repaired cell by cell ({dropped} cell(s) dropped)",
        )
    except Exception as exc:  # noqa: BLE001 - not a notebook at all: graded as empty, flagged
        return (
            nbformat.v4.new_notebook(),
            f"submission is not a readable notebook ({type(exc).__name__}): graded as blank",
        )


def _grade_one(job: Job, options: Options, state: dict) -> dict:
    """Grade one job in the pre-launched session; launch the next one before grading."""
    from .runner import grade

    session = state.pop("pending")
    t0 = time.monotonic()
    try:
        source = nbformat.read(job.source_path, as_version=4)
        hidden = hidden_modules(source)
        if hidden != session.hidden_modules:  # the pre-launched kernel was built for other rules
            session.shutdown()
            session = _session(session.slot, options, hidden).launch()
        state["hidden"] = hidden
        session.locked = locked_kernel(source)  # (the agent, installed by start(), reads it)
        if job.files:
            session.add_files(job.files)
        session.start()
        state["turn"] = 1 - state["turn"]
        state["pending"] = _session(state["slots"][state["turn"]], options, hidden).launch()  # boots now
        submission, bad = read_submission(job.submission_path)
        res = grade(
            session,
            source,
            submission,
            student=job.student,
            assignment=job.assignment,
            notebook=job.notebook,
            cell_timeout=options.cell_timeout,
            call_timeout=options.call_timeout,
            budget=options.budget,
            stub=options.code_stub,
        )
        if bad:
            res.flags.insert(0, bad)
        out = res.to_dict()
        out["seconds"] = time.monotonic() - t0
    except Exception as exc:  # noqa: BLE001 - one submission's failure must not stop the batch
        out = _failure(job, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
    finally:
        session.shutdown()
    if "pending" not in state:
        state["pending"] = _session(state["slots"][state["turn"]], options, state.get("hidden", ())).launch()
    return out


def hidden_modules(source_nb) -> tuple:
    """Modules the assignment's rules keep out of the student's kernel: the trusted source notebook's
    ``metadata.sandboxgrader.unavailable_modules`` (e.g. torch where gradients are derived by hand)."""
    names = (source_nb.metadata.get("sandboxgrader") or {}).get("unavailable_modules") or []
    return tuple(sorted(str(n) for n in names if str(n).isidentifier()))


def locked_kernel(source_nb) -> bool:
    """Whether the assignment's rules bind the kernel at all times (``metadata.sandboxgrader.locked``, e.g.
    hw2's "no overflow warnings"): its agent then refuses, from every student cell, what could prepare a
    bypass of the checks made during graded calls (gc's object graph, ctypes, /proc/*/mem, frames that lead
    to the agent, processes). See agent_src.py."""
    return bool((source_nb.metadata.get("sandboxgrader") or {}).get("locked"))


def worker_main(index: int, options: Options) -> None:
    """A worker process: jobs arrive as JSON lines on stdin, results leave as JSON lines on stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the protocol
    slots = (2 * index, 2 * index + 1)
    state = {"slots": slots, "turn": 0}
    try:
        with lifeline.interruptible():  # SIGTERM (the grader stopping), Ctrl-C: shut the kernels down
            state["pending"] = _session(slots[0], options).launch()
            for line in sys.stdin:
                if not line.strip():
                    continue
                job = Job(**json.loads(line))
                job.files = {k: base64.b64decode(v) for k, v in job.files.items()}
                proto.write(json.dumps(_grade_one(job, options, state)) + "\n")
    except lifeline.Interrupted as exc:
        print(f"grading worker {index}: {exc}: kernels shut down", file=sys.stderr)
        raise SystemExit(128 + exc.signum) from None
    finally:
        if state.get("pending") is not None:  # (_grade_one shut the current one down)
            state["pending"].shutdown()


def _spawn(index: int, options: Options) -> subprocess.Popen:
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # grading/
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    env["SG_GRADER_PID"] = str(os.getpid())  # the worker dies with this process (lifeline)
    return subprocess.Popen(
        [sys.executable, "-m", "sandboxgrader.batch", str(index), json.dumps(asdict(options))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        bufsize=1,
    )


def _send(proc: subprocess.Popen, job: Job) -> None:
    d = asdict(job)
    d["files"] = {k: base64.b64encode(v).decode() for k, v in job.files.items()}
    proc.stdin.write(json.dumps(d) + "\n")
    proc.stdin.flush()


def grade_many(jobs: list[Job], n_workers: int, options: Options | None = None):
    """Yield one result dict per job, in completion order. Workers are separate processes
    (``python -m sandboxgrader.batch``), fed one job at a time; a dead worker costs only its job,
    and so does a job past ``options.job_timeout``: its worker is killed (with its kernels: they
    die with their parent), the job is reported as not graded and a new worker takes the rest.

    Workers die with the thread that runs this generator (:mod:`.lifeline`): iterate it in a
    thread that lives until the batch is over. Closed early (an exception, a stop signal), it stops
    the workers (SIGTERM: they shut their kernels down; SIGKILL after :data:`STOP_GRACE` s). What
    killed graders left behind is swept first; what a dead worker left, once it is gone."""
    options = options or Options()
    if not jobs:
        return
    lifeline.sweep()
    n_workers = max(1, min(n_workers, len(jobs)))
    todo = list(reversed(jobs))
    sel = selectors.DefaultSelector()
    current: dict = {}  # worker index -> (job, started at)
    procs = []
    finished = dirty = False  # the batch ran to its end / a worker died or was killed

    def start_worker(i):
        proc = _spawn(i, options)
        procs.append(proc)
        sel.register(proc.stdout, selectors.EVENT_READ, (i, proc))
        give(i, proc)

    def give(i, proc):
        current[i] = (todo.pop(), time.monotonic())
        _send(proc, current[i][0])

    try:
        for i in range(n_workers):
            start_worker(i)
        while current or sel.get_map():
            timeout = None
            if options.job_timeout and current:
                timeout = max(0.0, min(t for _, t in current.values()) + options.job_timeout - time.monotonic())
            ready = sel.select(timeout)
            for key in list(sel.get_map().values()) if options.job_timeout else []:
                i, proc = key.data
                if i in current and time.monotonic() - current[i][1] >= options.job_timeout:
                    job, started = current.pop(i)
                    sel.unregister(proc.stdout)
                    proc.kill()
                    proc.wait()
                    lifeline.sweep()  # its kernels died with it: their folders and cgroups go now
                    ready = [(k, e) for k, e in ready if k.data[0] != i]
                    yield _failure(
                        job,
                        f"the job ran past its deadline of {options.job_timeout:g} s: the worker was killed",
                        time.monotonic() - started,
                    )
                    if todo:
                        start_worker(i)
            for key, _ in ready:
                i, proc = key.data
                line = proc.stdout.readline()
                if not line:
                    sel.unregister(proc.stdout)
                    proc.wait()
                    if i not in current:  # finished its last job and exited
                        continue
                    # the worker died: its job fails, a new worker takes over
                    lifeline.sweep()
                    dirty = True
                    job, started = current.pop(i)
                    yield _failure(job, f"the grading worker died (exit {proc.returncode})", time.monotonic() - started)
                    if todo:
                        start_worker(i)
                    continue
                current.pop(i)
                yield json.loads(line)
                if todo:
                    give(i, proc)
                else:
                    proc.stdin.close()
        finished = True
    finally:
        live = [p for p in procs if p.poll() is None]
        if not finished:  # stopped early: each worker shuts its kernels down, then exits
            for proc in live:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc.stdin and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        deadline = time.monotonic() + (20 if finished else STOP_GRACE)
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                dirty = True
        if dirty or not finished:
            lifeline.sweep()


if __name__ == "__main__":
    if os.environ.get("SG_GRADER_PID", "").isdigit():
        lifeline.die_with_parent(int(os.environ["SG_GRADER_PID"]))
    worker_main(int(sys.argv[1]), Options(**json.loads(sys.argv[2])))
