"""Command line of the instructor workflow; grading/grading.mk calls it (`python -m coursegrader …`).

release        generate assignments/ from solutions/ (lint first, leak check after)
release-check  compare the committed assignments/ with a fresh generation (temp dir)
collect FROM   LMS zip or folder -> grading/submitted/<student>/<assignment>/
autograde      grade everything submitted (one process, progress bar, summary table)
feedback       HTML per student, checked for hidden tests and solutions
grades         CSV, per-question statistics, histogram, anomalies (grading/reports/)
samples        CI sample submissions from the current release (grading/.work/samples/)
student-repo   the public tree at DEST
lint           authoring problems in the source notebooks
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .nbutil import terminal_safe
from .settings import Course


def _quiet() -> None:
    """nbgrader's gradebook and nbformat warn about things that are not the instructor's business."""
    warnings.filterwarnings("ignore", module="nbformat")
    warnings.filterwarnings("ignore", message=".*not in session.*")
    try:
        from sqlalchemy.exc import SAWarning

        warnings.filterwarnings("ignore", category=SAWarning)
    except ImportError:
        pass


def _pairs(course: Course, assignment: str | None, student: str | None) -> list[tuple[str, str]]:
    pairs = course.submissions(assignment or None)
    if student:
        pairs = [(a, s) for a, s in pairs if s == student]
    return pairs


def cmd_lint(course: Course, args) -> int:
    from .release import lint_course

    bad = 0
    for aid, problems in lint_course(course, args.assignment and [args.assignment]).items():
        for p in problems:
            print(f"LINT {aid}: {p}")
        bad += len(problems)
    if not bad:
        print("lint: source notebooks OK")
    return 1 if bad else 0


def cmd_release(course: Course, args) -> int:
    from .release import check, generate, lint_course

    aids = [args.assignment] if args.assignment else course.assignments()
    if not aids:
        print("release: no source notebooks under solutions/", file=sys.stderr)
        return 1
    for aid, problems in lint_course(course, aids).items():
        for p in problems:
            print(f"WARNING {aid}: {p}", file=sys.stderr)
    rc = 0
    for r in generate(course, aids):
        print(f"release {r.assignment}: {'ok' if r.success else 'FAILED'} ({r.seconds:.1f} s)")
        if not r.success:
            print(r.error[-3000:] or r.log[-3000:], file=sys.stderr)
            rc = 1
    for aid, problems in check(course, aids).items():
        for p in problems:
            print(f"LEAK {aid}: {p}", file=sys.stderr)
            rc = 1
    if rc == 0:
        print(
            f"release: {', '.join(aids)} -> {course.release.relative_to(course.root)}/ (checked: no "
            f"solution code, no hidden tests)"
        )
    return rc


def cmd_release_check(course: Course, args) -> int:
    from .release import fresh_release_diff

    diffs = fresh_release_diff(course)
    for d in diffs:
        print(f"STALE {d}", file=sys.stderr)
    if not diffs:
        print("release-check: committed assignments/ equals a fresh generation")
    return 1 if diffs else 0


def cmd_collect(course: Course, args) -> int:
    from .collect import collect, report

    items = collect(course, Path(args.source), dry_run=args.dry_run)
    print(report(items))
    if not args.dry_run:
        print(f"report: {(course.reports / 'collect.csv').relative_to(course.root)}")
    return 0


def cmd_autograde(course: Course, args) -> int:
    from .autograde import grade_submissions, summary_table

    pairs = _pairs(course, args.assignment, args.student)
    if not pairs:
        print("autograde: nothing submitted (run `make collect FROM=…` first)", file=sys.stderr)
        return 1
    from sandboxgrader.kernel import SandboxUnavailable
    from sandboxgrader.lifeline import Interrupted, interruptible

    try:
        with interruptible():  # SIGTERM, SIGINT, SIGHUP: workers and kernels shut down, summary written
            results = grade_submissions(
                course, pairs, progress=not args.no_progress, engine=args.grader, jobs=args.jobs, unsafe=args.unsafe
            )
    except SandboxUnavailable as exc:
        print(f"autograde: refusing to grade: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(
            f"autograde: {exc}: grading stopped, kernels shut down; submissions not graded are marked so in "
            f"{(course.reports / 'autograde.json').relative_to(course.root)}",
            file=sys.stderr,
        )
        return 128 + exc.signum
    print(summary_table(results))
    failed = [r for r in results if not r.ok]
    for r in failed:  # never a silent 0: each submission the grader could not grade, and why
        print(f"NOT GRADED {r.assignment}/{r.student}: {terminal_safe(r.problem) or 'unknown reason'}", file=sys.stderr)
    if failed:
        print(
            f"autograde: {len(failed)} of {len(results)} submission(s) NOT graded (marked for manual "
            "grading in the gradebook)",
            file=sys.stderr,
        )
    return 1 if failed else 0


def cmd_feedback(course: Course, args) -> int:
    from .feedback import generate

    pairs = [(a, s) for a, s in _pairs(course, args.assignment, args.student) if (course.autograded / s / a).is_dir()]
    if not pairs:
        print("feedback: nothing autograded (run `make autograde` first)", file=sys.stderr)
        return 1
    results = generate(course, pairs, progress=not args.no_progress)
    rc = 0
    for r in results:
        if not r.ok:
            print(terminal_safe(f"FEEDBACK {r.assignment}/{r.student}: {r.problem}"), file=sys.stderr)
            rc = 1 if "page deleted" in r.problem else rc
    done = sum(r.ok for r in results)
    print(
        f"feedback: {done}/{len(results)} pages in {course.feedback.relative_to(course.root)}/<student>/<assignment>/"
    )
    return rc


def cmd_grades(course: Course, args) -> int:
    from .grades import export

    out = export(course)
    for p in out["paths"]:
        print(f"wrote {p.relative_to(course.root)}")
    if out["anomalies"]:
        print(f"{len(out['anomalies'])} anomalies:")
        for a in out["anomalies"]:
            print(terminal_safe(f"  {a.assignment}/{a.student}: {a.kind} — {a.detail}"))
    else:
        print("no anomalies")
    return 0


def cmd_samples(course: Course, args) -> int:
    from . import samples

    dest = Path(args.dest) if args.dest else course.grading / ".work" / "samples"
    built = samples.build_course(course, assignments=args.assignment and [args.assignment])
    expected = samples.write(built, dest / "submitted", dest / "expected.json")
    for key, e in sorted(expected.items()):
        print(f"{key}: expected {e['expected']:g}  ({e['note']})")
    print(f"{len(expected)} samples in {dest}/submitted (expected scores: {dest}/expected.json)")
    return 0


def cmd_student_repo(course: Course, args) -> int:
    from .studentrepo import build

    rep = build(course, Path(args.dest), force=args.force)
    for w in rep.warnings:
        print(f"note: {w}")
    for m in rep.missing:
        print(f"MISSING {m}", file=sys.stderr)
    for p in rep.problems:
        print(f"LEAK {p}", file=sys.stderr)
    print(f"student-repo: {len(rep.files)} files in {rep.dest}")
    return 1 if (rep.problems or rep.missing) else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="coursegrader", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help_):
        p = sub.add_parser(name, help=help_)
        p.set_defaults(fn=fn)
        return p

    for name, fn, help_ in [
        ("lint", cmd_lint, "check the source notebooks"),
        ("release", cmd_release, "generate assignments/"),
        ("samples", cmd_samples, "CI sample submissions"),
    ]:
        p = add(name, fn, help_)
        p.add_argument("--assignment", default="")
        if name == "samples":
            p.add_argument("--dest", default="")
    add("release-check", cmd_release_check, "committed release == fresh generation?")
    p = add("collect", cmd_collect, "LMS download -> grading/submitted/")
    p.add_argument("source")
    p.add_argument("--dry-run", action="store_true")
    for name, fn in [("autograde", cmd_autograde), ("feedback", cmd_feedback)]:
        p = add(name, fn, name)
        p.add_argument("--assignment", default="")
        p.add_argument("--student", default="")
        p.add_argument("--no-progress", action="store_true")
        if name == "autograde":  # (make autograde GRADER=… JOBS=… UNSAFE=1)
            p.add_argument(
                "--grader",
                choices=("sandbox", "nbgrader"),
                default="sandbox",
                help="nbgrader: plain nbgrader, unsandboxed (trusted code only)",
            )
            p.add_argument("--jobs", type=int, default=None, help="submissions graded at once (default: cores)")
            p.add_argument("--unsafe", action="store_true", help="grade without bubblewrap (trusted code only)")
    add("grades", cmd_grades, "reports")
    p = add("student-repo", cmd_student_repo, "public tree")
    p.add_argument("dest")
    p.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    _quiet()
    try:
        return args.fn(Course.default(), args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{args.cmd}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
