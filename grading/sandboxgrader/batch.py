"""Grade many submissions in parallel: JOBS worker processes, each with a pre-started kernel.

Each worker grades one submission at a time in a fresh sandboxed kernel, and launches the next
kernel before grading, so the next student's kernel boots while this one is graded. A crash,
timeout or dead kernel affects only that submission. Results stream back to the parent, which
alone writes files and the gradebook.
"""
from __future__ import annotations

import multiprocessing as mp
import os
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
    d["nb"] = nbformat.writes(res.nb) if res.nb is not None else None
    d["score"], d["max_score"] = res.score, res.max_score
    return d


def _failure(job: Job, message: str) -> dict:
    return {"student": job.student, "assignment": job.assignment, "notebook": job.notebook, "verdicts": [],
            "flags": [f"grader error: {message}"], "nb": None, "seconds": 0.0, "calls": 0, "call_seconds": 0.0,
            "score": 0.0, "max_score": 0.0, "error": message}


def _worker(index: int, jobs, results, options: Options) -> None:
    from .runner import grade
    from .session import Session

    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    slots = (2 * index, 2 * index + 1)
    turn = 0
    pending = Session(slots[turn], unsafe=options.unsafe).launch()
    while True:
        job = jobs.get()
        if job is None:
            break
        session, pending = pending, None
        t0 = time.monotonic()
        try:
            if job.files:
                session.add_files(job.files)
            session.start()
            turn = 1 - turn
            pending = Session(slots[turn], unsafe=options.unsafe).launch()  # boots while we grade
            source = nbformat.read(job.source_path, as_version=4)
            try:
                submission = nbformat.read(job.submission_path, as_version=4)
            except Exception as exc:  # noqa: BLE001 - not a notebook: graded as empty, flagged
                submission = nbformat.v4.new_notebook()
                bad = f"submission is not a readable notebook ({type(exc).__name__}): graded as blank"
            else:
                bad = None
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
        if pending is None:
            pending = Session(slots[turn], unsafe=options.unsafe).launch()
        results.put(out)
    if pending is not None:
        pending.shutdown()


def grade_many(jobs: list[Job], n_workers: int, options: Options | None = None):
    """Yield one result dict per job, in completion order."""
    options = options or Options()
    if not jobs:
        return
    n_workers = max(1, min(n_workers, len(jobs)))
    ctx = mp.get_context("spawn")     # no zmq state shared across fork
    job_q, res_q = ctx.Queue(), ctx.Queue()
    for job in jobs:
        job_q.put(job)
    for _ in range(n_workers):
        job_q.put(None)
    procs = [ctx.Process(target=_worker, args=(i, job_q, res_q, options), daemon=True) for i in range(n_workers)]
    for p in procs:
        p.start()
    remaining = {(j.student, j.assignment) for j in jobs}
    try:
        while remaining:
            try:
                out = res_q.get(timeout=5)
            except Exception:  # noqa: BLE001 - queue.Empty: check the workers are alive
                if not any(p.is_alive() for p in procs):
                    for student, assignment in sorted(remaining):
                        job = next(j for j in jobs if (j.student, j.assignment) == (student, assignment))
                        yield _failure(job, "a grading worker died")
                    return
                continue
            remaining.discard((out["student"], out["assignment"]))
            yield out
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
