"""`make autograde` with the sandbox: parallel, tamper-proof, results in nbgrader's gradebook.

For every (assignment, student) pair: the trusted source notebook from ``solutions/``, the
submission from ``grading/submitted/<student>/<assignment>/``; the graded notebook goes to
``grading/autograded/<student>/<assignment>/`` (what formgrader and feedback read), the scores
into the gradebook (``nbgrader export``, formgrader and ``make grades`` keep working).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from sandboxgrader.batch import Job, Options, grade_many
from sandboxgrader.cells import code_stub
from sandboxgrader.kernel import SandboxUnavailable, check_tools
from sandboxgrader.lifeline import Interrupted

from .nbutil import write_atomic


def assignment_files(source_dir: Path) -> dict:
    """Non-notebook files of the assignment (data it reads), as nbgrader copies them."""
    files = {}
    for p in sorted(source_dir.iterdir()):
        if p.is_file() and p.suffix != ".ipynb" and not p.name.startswith("."):
            files[p.name] = p.read_bytes()
    return files


def jobs_for(course, pairs) -> tuple[list[Job], list]:
    jobs, missing = [], []
    for aid, sid in pairs:
        src_dir = course.source / aid
        files = assignment_files(src_dir) if src_dir.is_dir() else {}
        for src_nb in sorted(src_dir.glob("*.ipynb")):
            sub = course.submitted / sid / aid / src_nb.name
            if not sub.exists():
                missing.append((aid, sid, src_nb.stem))
                continue
            jobs.append(Job(sid, aid, src_nb.stem, str(src_nb), str(sub), files))
    return jobs, missing


def record_in_gradebook(course, out: dict) -> None:
    """Write one result's scores into the gradebook (the submission is created or updated)."""
    from nbgrader.api import MissingEntry

    aid, sid, nb_name = out["assignment"], out["student"], out["notebook"]
    ts_file = course.submitted / sid / aid / "timestamp.txt"
    timestamp = ts_file.read_text().strip() if ts_file.exists() else None
    with course.gradebook() as gb:
        gb.update_or_create_student(sid)
        try:
            gb.find_submission(aid, sid)
        except MissingEntry:
            gb.add_submission(aid, sid, timestamp=timestamp)
        else:
            if timestamp:
                gb.update_or_create_submission(aid, sid, timestamp=timestamp)
        for v in out["verdicts"]:
            grade = gb.find_grade(v["grade_id"], nb_name, aid, sid)
            grade.auto_score = float(v["score"])
            grade.needs_manual_grade = grade.manual_score is not None
        for m in out.get("manual", []):  # as nbgrader: an untouched written answer is 0, else a grader's
            grade = gb.find_grade(m["grade_id"], nb_name, aid, sid)
            grade.auto_score = 0.0 if m["unchanged"] else None
            grade.needs_manual_grade = grade.manual_score is not None or not m["unchanged"]
            comment = gb.find_comment(m["grade_id"], nb_name, aid, sid)
            comment.auto_comment = "No response." if m["unchanged"] else None
        gb.db.commit()


def record_not_graded(course, out: dict) -> None:
    """A submission the grader could not grade: every grade of it waits for a person, none is 0.

    The gradebook keeps no automatic score for it (a previous run's included) and marks each
    cell "needs manual grading", so formgrader and ``nbgrader export`` show it as ungraded.
    """
    from nbgrader.api import MissingEntry

    aid, sid, nb_name = out["assignment"], out["student"], out["notebook"]
    with course.gradebook() as gb:
        try:
            gb.find_notebook(nb_name, aid)
        except MissingEntry:
            return
        gb.update_or_create_student(sid)
        try:
            gb.find_submission(aid, sid)
        except MissingEntry:
            gb.add_submission(aid, sid)
        for grade in gb.find_submission_notebook(nb_name, aid, sid).grades:
            grade.auto_score = None
            grade.needs_manual_grade = True
        gb.db.commit()


def sandbox_options(course, cell_timeout: float, call_timeout: float, unsafe: bool) -> Options:
    """Options of a batch from the course config: timeouts (``c.Execute.timeout``) and the sandbox's
    budgets and limits (``c.Sandbox.<name>``: submission_budget, job_timeout and any field of
    :class:`~sandboxgrader.kernel.Limits`)."""
    from dataclasses import fields

    from sandboxgrader.kernel import Limits

    cfg = course.config.Sandbox if "Sandbox" in course.config else {}
    names = {f.name for f in fields(Limits)}
    unknown = sorted(set(cfg) - names - {"submission_budget", "job_timeout"})
    if unknown:
        raise ValueError(
            f"unknown c.Sandbox setting(s) in nbgrader_config.py: {', '.join(unknown)} "
            f"(known: submission_budget, job_timeout, {', '.join(sorted(names))})"
        )
    opts = Options(cell_timeout, call_timeout, unsafe, code_stub=code_stub(course.config))
    if "submission_budget" in cfg:
        opts.budget = float(cfg["submission_budget"]) if cfg["submission_budget"] else None
    if "job_timeout" in cfg:
        opts.job_timeout = float(cfg["job_timeout"]) if cfg["job_timeout"] else None
    opts.limits = {k: cfg[k] for k in names if k in cfg}
    Limits(**opts.limits)  # fails here, not in a worker
    return opts


def write_autograded(course, out: dict) -> Path | None:
    if not out.get("nb"):
        return None
    folder = course.autograded / out["student"] / out["assignment"]
    folder.mkdir(parents=True, exist_ok=True)
    # as nbgrader's autograde: feedback carries the submission's time and secret (release_feedback
    # names the page after the secret; the hub's exchange needs it)
    for name in ("timestamp.txt", "submission_secret.txt"):
        ts = course.submitted / out["student"] / out["assignment"] / name
        if ts.exists():
            shutil.copy2(ts, folder / name)
    path = folder / f"{out['notebook']}.ipynb"
    write_atomic(path, out["nb"])  # (an interrupted write leaves no temp file either)
    return path


def grade_submissions(
    course,
    pairs,
    *,
    jobs: int | None = None,
    unsafe: bool = False,
    progress: bool = True,
    cell_timeout: float | None = None,
    call_timeout: float | None = None,
):
    """Grade (assignment, student) pairs; return coursegrader GradeResults (with flags).

    Timeouts default to nbgrader's own setting (``c.Execute.timeout`` of the course config), per
    cell of the notebook and per proxied call of a test.
    """
    from tqdm import tqdm

    from .records import ensure_gradebook
    from .settings import ensure_venv_on_path

    ensure_venv_on_path()  # nbgrader migrates the gradebook with `alembic`, found on PATH only

    if not unsafe:
        check_tools()
    unknown = {}
    for aid in sorted({a for a, _ in pairs}):
        try:
            ensure_gradebook(course, aid)
        except Exception as exc:  # noqa: BLE001 - one bad assignment must not stop the batch
            unknown[aid] = f"cannot grade {aid}: {str(exc).strip().splitlines()[-1][:300]}"
    job_list, missing = jobs_for(course, [(a, s) for a, s in pairs if a not in unknown])
    configured = float(course.config.Execute.get("timeout", 30) or 30) if "Execute" in course.config else 30.0
    cell_timeout = cell_timeout or configured
    call_timeout = call_timeout or configured
    n_workers = jobs or os.cpu_count() or 1
    options = sandbox_options(course, cell_timeout, call_timeout, unsafe)
    per_pair: dict = {}
    bar = tqdm(
        total=len(job_list), desc="autograde", unit="nb", file=sys.stderr, disable=not progress, dynamic_ncols=True
    )
    anomalies = 0
    t0 = time.monotonic()

    def blank():
        return {"score": 0.0, "max": 0.0, "cells": {}, "flags": [], "seconds": 0.0, "ok": True}

    done = set()
    stream = grade_many(job_list, n_workers, options)
    try:
        for out in stream:
            key = (out["assignment"], out["student"])
            done.add((key, out["notebook"]))
            agg = per_pair.setdefault(key, blank())
            graded = bool(out.get("nb")) and not out.get("error")
            try:
                write_autograded(course, out)
                if graded:
                    record_in_gradebook(course, out)
                else:
                    record_not_graded(course, out)
            except Exception as exc:  # noqa: BLE001 - one submission's records must not stop the batch
                graded = False
                out["flags"] = out["flags"] + [
                    f"grader error: cannot record the result ({type(exc).__name__}: {str(exc)[:200]})"
                ]
            agg["score"] += out["score"]
            agg["max"] += out["max_score"]
            agg["seconds"] += out["seconds"]
            agg["flags"] += out["flags"]
            agg["ok"] &= graded
            for v in out["verdicts"]:
                agg["cells"][v["grade_id"]] = [v["score"], v["points"]]
            for m in out.get("manual", []):
                agg["cells"][m["grade_id"]] = [0.0 if m["unchanged"] else None, m["points"]]
            anomalies += bool(out["flags"])
            bar.update(1)
            bar.set_postfix_str(f"anomalies {anomalies}")
    except BaseException as exc:  # interrupted (a stop signal, a crash): what was not graded says so
        stream.close()  # first: the workers stop and shut their kernels down
        why = str(exc) if isinstance(exc, Interrupted) else type(exc).__name__
        for job in job_list:
            if ((job.assignment, job.student), job.notebook) not in done:
                agg = per_pair.setdefault((job.assignment, job.student), blank())
                agg["ok"] = False
                agg["flags"].append(f"not graded: the batch stopped ({why})")
        _finish(course, pairs, per_pair, missing, unknown)
        raise
    finally:
        bar.close()
    results = _finish(course, pairs, per_pair, missing, unknown)
    if progress:
        wall = time.monotonic() - t0
        print(
            f"graded {len(job_list)} notebooks in {wall:.1f} s with {n_workers} workers "
            f"({60 * len(job_list) / max(wall, 1e-9):.0f} per minute)",
            file=sys.stderr,
        )
    return results


def _finish(course, pairs, per_pair, missing, unknown):
    """GradeResults of the batch, recorded in grading/reports/autograde.json (always written)."""
    from .records import GradeResult, record

    results = []
    for aid, sid, nb in missing:
        per_pair.setdefault(
            (aid, sid), {"score": 0.0, "max": 0.0, "cells": {}, "flags": [], "seconds": 0.0, "ok": False}
        )["flags"].append(f"notebook {nb}.ipynb not submitted")
    for aid, sid in pairs:
        if aid in unknown:
            per_pair[(aid, sid)] = {
                "score": 0.0,
                "max": 0.0,
                "cells": {},
                "flags": [unknown[aid]],
                "seconds": 0.0,
                "ok": False,
            }
    for (aid, sid), agg in sorted(per_pair.items()):
        r = GradeResult(
            aid,
            sid,
            agg["ok"],
            agg["score"] if agg["ok"] else 0.0,
            agg["max"],
            round(agg["seconds"], 2),
            "; ".join(agg["flags"])[:2000],
            agg["cells"],
        )
        results.append(r)
    record(course, results)
    return results


__all__ = ["grade_submissions", "SandboxUnavailable"]
