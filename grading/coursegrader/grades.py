"""`make grades`: CSV export, per-question statistics, a histogram and the list of anomalies.

Writes into grading/reports/ (git-ignored):
  grades.csv             one row per (assignment, student): score, max, percent, status
  grades_by_student.csv  one row per student, one column per assignment, total
  questions.csv          per test/answer cell: max points, n, mean, median, % full marks, % zero, ungraded
  histogram.png          distribution of percentages, one panel per assignment
  anomalies.csv          kernel died, timeouts, missing/duplicated/edited cells, manual grading needed,
                         stderr or a value in a test cell, autograde failures, missing notebooks
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from pathlib import Path

from . import nbutil
from .records import load_records
from .settings import Course


@dataclass
class Anomaly:
    assignment: str
    student: str
    kind: str
    detail: str


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([[nbutil.csv_safe(v) for v in row] for row in rows])  # student-chosen ids are text
    nbutil.write_atomic(path, buf.getvalue())


def collect_scores(course: Course) -> tuple[list[dict], list[dict]]:
    """(submission rows, grade-cell rows) from the gradebook, corrected by the autograde records."""
    from nbgrader.api import MissingEntry

    records = load_records(course)
    subs, cells = [], []
    with course.gradebook() as gb:
        assignments = sorted(a.name for a in gb.assignments)
        students = sorted(s.id for s in gb.students)
        for aid in assignments:
            for sid in students:
                rec = records.get(f"{aid}/{sid}")
                try:
                    sub = gb.find_submission(aid, sid)
                except MissingEntry:
                    a = gb.find_assignment(aid)
                    subs.append(
                        dict(
                            assignment=aid,
                            student=sid,
                            score=0.0,
                            max_score=float(a.max_score),
                            status="no submission",
                            needs_manual=False,
                        )
                    )
                    continue
                failed = rec is not None and not rec["ok"]
                status = (
                    ("NOT GRADED: " + rec["problem"])
                    if failed
                    else ("needs manual grading" if sub.needs_manual_grade else "graded")
                )
                subs.append(
                    dict(
                        assignment=aid,
                        student=sid,  # not graded: no score, never a silent 0
                        score=None if failed else float(sub.score) - float(sub.late_submission_penalty or 0),
                        max_score=float(sub.max_score),
                        status=status,
                        needs_manual=bool(sub.needs_manual_grade) and not failed,
                    )
                )
                for nb in sub.notebooks:
                    for g in nb.grades:
                        graded = g.auto_score is not None or g.manual_score is not None
                        cells.append(
                            dict(
                                assignment=aid,
                                notebook=nb.name,
                                grade_id=g.name,
                                student=sid,
                                score=None if failed else (float(g.score) if graded else None),
                                max_score=float(g.max_score),
                                needs_manual=bool(g.needs_manual_grade) and not failed,
                            )
                        )
    return subs, cells


def question_stats(cells: list[dict]) -> list[list]:
    by = {}
    for c in cells:
        by.setdefault((c["assignment"], c["notebook"], c["grade_id"], c["max_score"]), []).append(c["score"])
    rows = []
    for (aid, nb, gid, mx), scores in sorted(by.items()):
        got = [s for s in scores if s is not None]
        n = len(got)
        rows.append(
            [
                aid,
                nb,
                gid,
                f"{mx:g}",
                n,
                f"{statistics.fmean(got):.3f}" if got else "",
                f"{statistics.median(got):g}" if got else "",
                f"{100 * sum(s >= mx for s in got) / n:.1f}" if n else "",
                f"{100 * sum(s == 0 for s in got) / n:.1f}" if n else "",
                len(scores) - n,
            ]
        )
    return rows


def histogram(subs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (integer counts on the y axis)

    by = {}
    for s in subs:
        if s["status"] != "no submission" and s["max_score"] > 0 and s["score"] is not None:
            by.setdefault(s["assignment"], []).append(100 * s["score"] / s["max_score"])
    names = sorted(by) or ["(no submissions)"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 1, 3), squeeze=False, sharey=True)
    for ax, aid in zip(axes[0], names):
        ax.hist(by.get(aid, []), bins=list(range(0, 101, 10)), color="#4c72b0", edgecolor="white")
        ax.set_title(f"{aid}\n(n = {len(by.get(aid, []))})", fontsize=9)
        ax.set_xlabel("score, %")
        ax.set_xlim(0, 100)
    axes[0][0].set_ylabel("submissions")
    axes[0][0].yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def _release_cells(course: Course, aid: str, nb_name: str) -> list[dict]:
    p = course.release / aid / nb_name
    return nbutil.read_nb(p)["cells"] if p.exists() else []


def find_anomalies(course: Course, cells: list[dict] | None = None) -> list[Anomaly]:
    out: list[Anomaly] = []
    records = load_records(course)
    for _key, rec in sorted(records.items()):
        if not rec["ok"]:
            kind = rec["problem"] if rec["problem"] in ("kernel died", "kernel unresponsive") else "NOT GRADED"
            out.append(Anomaly(rec["assignment"], rec["student"], kind, rec["problem"]))
        elif rec.get("problem"):  # a grader that flags graded submissions (the sandboxed harness does)
            out.append(Anomaly(rec["assignment"], rec["student"], "grader flags", rec["problem"]))
    for aid, sid in course.submissions():
        release_nbs = {p.name for p in course.release_notebooks(aid)} or {p.name for p in course.source_notebooks(aid)}
        folder = course.submitted / sid / aid
        for name in sorted(release_nbs - {p.name for p in folder.glob("*.ipynb")}):
            out.append(Anomaly(aid, sid, "missing notebook", name))
        for p in sorted(folder.glob("*.ipynb")):  # one bad file is reported, never stops the class
            graded = course.autograded / sid / aid / p.name
            try:
                out += _submitted_anomalies(course, aid, sid, p)
                if graded.exists():
                    out += _autograded_anomalies(aid, sid, read_limited(graded))
            except Exception as exc:  # noqa: BLE001 - any malformed content
                out.append(
                    Anomaly(aid, sid, "unreadable notebook", f"{p.name}: {type(exc).__name__}: {str(exc)[:200]}")
                )
    if cells is None:
        _, cells = collect_scores(course)
    manual = {}
    for c in cells:
        if c["needs_manual"]:
            manual.setdefault((c["assignment"], c["student"]), []).append(c["grade_id"])
    for (aid, sid), gids in sorted(manual.items()):
        out.append(Anomaly(aid, sid, "needs manual grading", ", ".join(gids)))
    return out


MAX_NOTEBOOK_BYTES = 20 * 2**20  # larger notebooks are reported, not inspected (time and memory)


def read_limited(path: Path) -> dict:
    """A notebook for inspection: at most MAX_NOTEBOOK_BYTES, a JSON object with a list of dict cells."""
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"{size} bytes, more than the {MAX_NOTEBOOK_BYTES} inspected")
    try:
        nb = nbutil.read_nb(path)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a notebook (no list of cells)")
    nb["cells"] = [c for c in nb["cells"] if isinstance(c, dict)]
    return nb


def _submitted_anomalies(course: Course, aid: str, sid: str, path: Path) -> list[Anomaly]:
    try:
        nb = read_limited(path)
    except (OSError, ValueError) as exc:
        return [Anomaly(aid, sid, "unreadable submission", f"{path.name}: {exc}")]
    out = []
    release = _release_cells(course, aid, path.name)
    ids = [nbutil.grade_id(c) for c in nb.get("cells", []) if nbutil.grade_id(c)]
    dupes = sorted({g for g in ids if ids.count(g) > 1})
    if dupes:
        out.append(Anomaly(aid, sid, "duplicated grade_id", ", ".join(dupes)))
    missing = [nbutil.grade_id(c) for c in release if nbutil.grade_id(c) and nbutil.grade_id(c) not in ids]
    if missing:
        tests = [g for g in missing if any(nbutil.grade_id(c) == g and nbutil.is_test(c) for c in release)]
        detail = ", ".join(missing) + (f" (test cells restored: {', '.join(tests)})" if tests else "")
        out.append(Anomaly(aid, sid, "missing cells", detail))
    locked = {nbutil.grade_id(c): nbutil.src(c) for c in release if nbutil.meta(c).get("locked") or nbutil.is_test(c)}
    edited = sorted(
        {
            nbutil.grade_id(c)
            for c in nb.get("cells", [])
            if nbutil.grade_id(c) in locked and nbutil.src(c).strip() != locked[nbutil.grade_id(c)].strip()
        }
    )
    if edited:
        out.append(Anomaly(aid, sid, "edited locked cells (restored)", ", ".join(edited)))
    return out


def _autograded_anomalies(aid: str, sid: str, nb: dict) -> list[Anomaly]:
    out = []
    timeouts, stderr, values = [], [], []
    for k, cell in enumerate(nb.get("cells", [])):
        label = nbutil.grade_id(cell) or f"cell {k}"
        outs = (
            [o for o in cell.get("outputs", []) if isinstance(o, dict)] if isinstance(cell.get("outputs"), list) else []
        )
        if any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError" for o in outs):
            timeouts.append(label)
        if nbutil.is_test(cell):
            has_error = any(o.get("output_type") == "error" for o in outs)
            if not has_error and any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in outs):
                stderr.append(label)
            if any(o.get("output_type") == "execute_result" for o in outs):
                values.append(label)
    if timeouts:
        out.append(Anomaly(aid, sid, "timeout", ", ".join(timeouts)))
    if stderr:
        out.append(Anomaly(aid, sid, "stderr in a passing test cell (scored 0)", ", ".join(stderr)))
    if values:
        out.append(Anomaly(aid, sid, "test cell ends with a value (read as partial credit)", ", ".join(values)))
    return out


def export(course: Course) -> dict:
    """Write every report; returns {"subs", "questions", "anomalies", "paths"}."""
    subs, cells = collect_scores(course)
    rep = course.reports
    rep.mkdir(parents=True, exist_ok=True)
    _csv(
        rep / "grades.csv",
        ["assignment", "student", "score", "max_score", "percent", "status"],
        [
            [
                s["assignment"],
                s["student"],
                "" if s["score"] is None else f"{s['score']:g}",
                f"{s['max_score']:g}",
                f"{100 * s['score'] / s['max_score']:.1f}" if s["max_score"] and s["score"] is not None else "",
                s["status"],
            ]
            for s in subs
        ],
    )
    assignments = sorted({s["assignment"] for s in subs})
    table = {}
    for s in subs:
        table.setdefault(s["student"], {})[s["assignment"]] = s["score"]

    def cell(v):
        return "NOT GRADED" if v is None else f"{v:g}"

    _csv(
        rep / "grades_by_student.csv",
        ["student"] + assignments + ["total"],
        [
            [sid]
            + [cell(row.get(a, 0)) for a in assignments]
            + [cell(None if None in row.values() else sum(row.values()))]
            for sid, row in sorted(table.items())
        ],
    )
    qrows = question_stats(cells)
    _csv(
        rep / "questions.csv",
        ["assignment", "notebook", "grade_id", "max_points", "n", "mean", "median", "full_pct", "zero_pct", "ungraded"],
        qrows,
    )
    histogram(subs, rep / "histogram.png")
    anomalies = find_anomalies(course, cells)
    _csv(
        rep / "anomalies.csv",
        ["assignment", "student", "kind", "detail"],
        [[a.assignment, a.student, a.kind, a.detail] for a in anomalies],
    )
    return {
        "subs": subs,
        "questions": qrows,
        "anomalies": anomalies,
        "paths": [
            rep / n for n in ("grades.csv", "grades_by_student.csv", "questions.csv", "histogram.png", "anomalies.csv")
        ],
    }
