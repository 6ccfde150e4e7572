"""`make autograde`: grade every submission in ONE process, with a progress bar and a summary table.

`grade_submissions(course, pairs)` is the single entry point the rest of the package uses: the
sandboxed grader (`sandboxed`: student code in bubblewrap, tests in the trusted grader) or plain
nbgrader. It returns one `GradeResult` per submission and records them in
grading/reports/autograde.json (`records`; read by `make grades` for the anomaly list).
"""

from __future__ import annotations

import sys

from traitlets.config import Config

from . import nbutil
from .converters import run
from .records import GradeResult, ensure_gradebook, record
from .settings import Course


def _problem(log: str, error: str) -> str:
    text = log + error
    if "DeadKernelError" in text or "Kernel died" in text:
        return "kernel died"
    if "UnresponsiveKernelError" in text or "kernel became unresponsive" in text:
        return "kernel unresponsive"
    lines = [line for line in (error or log).strip().splitlines() if line.strip()]
    return "error: " + (lines[-1][:200] if lines else "unknown")


def _scores(course: Course, assignment: str, student: str) -> tuple[float, float, dict]:
    from nbgrader.api import MissingEntry

    with course.gradebook() as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return 0.0, 0.0, {}
        cells = {}
        for nb in sub.notebooks:
            for g in nb.grades:
                cells[g.name] = [
                    g.score if (g.auto_score is not None or g.manual_score is not None) else None,
                    float(g.max_score),
                ]
        return float(sub.score), float(sub.max_score), cells


def grade_submissions(
    course: Course,
    pairs: list[tuple[str, str]],
    progress: bool = True,
    *,
    engine: str = "sandbox",
    jobs: int | None = None,
    unsafe: bool = False,
) -> list[GradeResult]:
    """Autograde (assignment, student) pairs. Never aborts the batch.

    The engine is the sandboxed grader (grading/sandboxgrader: student code in bubblewrap, every
    verdict computed in this process, ``jobs`` workers, default one per core) unless
    ``engine="nbgrader"`` asks for plain nbgrader. Without bubblewrap the sandbox refuses to run
    unless ``unsafe``. (`make autograde` passes GRADER, JOBS and UNSAFE as `--grader`, `--jobs`, `--unsafe`.)
    """
    if engine == "sandbox":
        from .sandboxed import grade_submissions as sandboxed

        return sandboxed(course, pairs, jobs=jobs or None, unsafe=unsafe, progress=progress)
    if engine != "nbgrader":
        raise ValueError(f"GRADER must be 'sandbox' or 'nbgrader', got {engine!r}")
    return grade_submissions_plain(course, pairs, progress)


# GRADER=nbgrader is the instructor's explicit choice of nbgrader's unsandboxed engine (trusted code)
UNSANDBOXED_OK = Config({"RefuseUnsandboxed": {"allow": True}})


def grade_submissions_plain(course: Course, pairs: list[tuple[str, str]], progress: bool = True) -> list[GradeResult]:
    """Autograde (assignment, student) pairs with plain nbgrader, in this process."""
    from nbgrader.converters import Autograde
    from tqdm import tqdm

    results, unknown = [], {}
    for aid in sorted({a for a, _ in pairs}):
        try:
            ensure_gradebook(course, aid)
        except RuntimeError as exc:  # no source for it: report those submissions, grade the rest
            unknown[aid] = str(exc).splitlines()[0]
    for aid, sid in pairs:
        if aid in unknown:
            results.append(GradeResult(aid, sid, False, 0.0, 0.0, 0.0, "error: " + unknown[aid]))
    pairs = [(a, s) for a, s in pairs if a not in unknown]
    bar = tqdm(pairs, desc="autograde", unit="nb", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for aid, sid in bar:
        bar.set_postfix_str(f"{aid}/{sid}"[-40:])
        r = run(course, Autograde, aid, sid, force=True, create_student=True, extra=UNSANDBOXED_OK)
        ok = r.success and (course.autograded / sid / aid).is_dir()
        score, max_score, cells = _scores(course, aid, sid)
        results.append(
            GradeResult(
                aid,
                sid,
                ok,
                score if ok else 0.0,
                max_score,
                round(r.seconds, 2),
                "" if ok else _problem(r.log, r.error),
                cells,
            )
        )
    record(course, results)
    return results


def summary_table(results: list[GradeResult]) -> str:
    """Plain-text table: one row per submission, then totals per assignment."""
    rows = [("assignment", "student", "score", "max", "%", "s", "problem")]
    for r in sorted(results, key=lambda r: (r.assignment, r.student)):
        pct = 100 * r.score / r.max_score if r.max_score else 0.0
        manual = sum(1 for s, _ in r.cells.values() if s is None)
        note = r.problem or (f"{manual} cell(s) need manual grading" if manual else "")
        if not r.ok:
            note = "NOT GRADED: " + (r.problem or "unknown reason")
        rows.append(
            (
                r.assignment,
                nbutil.terminal_safe(r.student),
                f"{r.score:g}" if r.ok else "-",
                f"{r.max_score:g}",
                f"{pct:.0f}" if r.ok else "-",
                f"{r.seconds:.1f}",
                nbutil.terminal_safe(note)[:300],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    by = {}
    for r in results:
        by.setdefault(r.assignment, []).append(r)
    for aid, rs in sorted(by.items()):
        failed = sum(not r.ok for r in rs)
        ok = [r.score for r in rs if r.ok]
        mean = sum(ok) / len(ok) if ok else 0.0
        lines.append(
            f"{aid}: {len(ok)} graded, mean {mean:.2f}/{rs[0].max_score:g}"
            + (f", {failed} NOT GRADED" if failed else "")
        )
    return "\n".join(lines)
