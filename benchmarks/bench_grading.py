"""Grading throughput: plain nbgrader (one process per student) vs the sandboxed grader.

    python benchmarks/bench_grading.py [--n 40] [--assignment hw1_matrix_gradients] [--jobs 2]

Both grade the same generated submissions (the solution and the planted mistakes of
grading/mutations.toml, cycled to N students) of one assignment, in one run, on this machine:

* plain nbgrader: ``nbgrader autograde <id> --student <sid>`` in its own process per student, one
  after the other (its docs' advice for robustness; it has no parallel grading),
* ours: ``make autograde``'s engine — bubblewrap kernels, trusted tests, JOBS workers.

It prints a markdown table: wall time, submissions per minute, the throughput ratio, and our
per-submission overhead over executing the notebook once in a plain kernel (serial run of ours
on a subset minus that execution time). Scores of both are compared: they must agree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "grading"))

from coursegrader import release, samples  # noqa: E402
from coursegrader.settings import GRADING, Course, ensure_venv_on_path  # noqa: E402

CONFIG = """
# benchmark course: the real configuration (run as if from its own place), moved to this root
import os
_real = {real!r}
exec(compile(open(_real).read(), _real, "exec"), {{"__file__": _real, "get_config": get_config}})
c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = "sqlite:///" + os.path.join({root!r}, "grading", "gradebook.db")
"""


def build_course(tmp: Path, aid: str, n: int) -> tuple[Course, list[tuple[str, str]], dict]:
    (tmp / "solutions").mkdir(parents=True)
    shutil.copytree(ROOT / "solutions" / aid, tmp / "solutions" / aid)
    course = Course.at(tmp)
    release.generate(course, [aid])
    built = samples.build_course(course, spec_file=GRADING / "mutations.toml", assignments=[aid])
    pool = [s for s in built if s.name != "blank"]
    chosen, expected = [], {}
    for i in range(n):
        s = pool[i % len(pool)]
        sid = f"student{i:03d}-{s.name}"
        for name, nb in s.notebooks.items():
            from coursegrader import nbutil

            nbutil.write_nb(course.submitted / sid / aid / name, nb)
        chosen.append((aid, sid))
        expected[sid] = s.expected
    (tmp / "nbgrader_config.py").write_text(CONFIG.format(real=str(GRADING / "nbgrader_config.py"), root=str(tmp)))
    return course, chosen, expected


def scores(course: Course, aid: str) -> dict:
    with course.gradebook() as gb:
        return {s.student.id: float(s.score) for s in gb.assignment_submissions(aid)}


def plain_nbgrader(course: Course, pairs) -> float:
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    t0 = time.perf_counter()
    for aid, sid in pairs:
        subprocess.run(
            [
                os.path.join(os.path.dirname(sys.executable), "nbgrader"),
                "autograde",
                aid,
                "--student",
                sid,
                "--force",
                "--log-level=ERROR",
                "--RefuseUnsandboxed.allow=True",
            ],  # a benchmark of trusted samples
            cwd=course.root,
            env=env,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - t0


def ours(course: Course, pairs, jobs: int) -> float:
    from coursegrader.sandboxed import grade_submissions

    t0 = time.perf_counter()
    grade_submissions(course, pairs, jobs=jobs, progress=False)
    return time.perf_counter() - t0


def execute_once(path: Path, repeat: int = 3) -> float:
    import nbformat
    from nbclient import NotebookClient

    best = float("inf")
    for _ in range(repeat):
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        NotebookClient(
            nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(path.parent)}}
        ).execute()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="submissions (default 40)")
    ap.add_argument("--assignment", default="hw1_matrix_gradients")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--serial-subset", type=int, default=8, help="submissions graded with 1 worker (overhead)")
    args = ap.parse_args(argv)
    ensure_venv_on_path()
    aid = args.assignment
    with (
        tempfile.TemporaryDirectory(prefix="bench-grading-") as t1,
        tempfile.TemporaryDirectory(prefix="bench-grading-") as t2,
        tempfile.TemporaryDirectory(prefix="bench-grading-") as t3,
    ):
        print(f"preparing {args.n} submissions of {aid} ...", file=sys.stderr)
        c_plain, pairs, expected = build_course(Path(t1), aid, args.n)
        c_ours, pairs2, _ = build_course(Path(t2), aid, args.n)
        c_serial, pairs3, _ = build_course(Path(t3), aid, args.serial_subset)
        print("plain nbgrader ...", file=sys.stderr)
        t_plain = plain_nbgrader(c_plain, pairs)
        print(f"ours, {args.jobs} workers ...", file=sys.stderr)
        t_ours = ours(c_ours, pairs2, args.jobs)
        print("ours, 1 worker (overhead) ...", file=sys.stderr)
        t_serial = ours(c_serial, pairs3, 1)
        t_exec = execute_once(c_plain.source / aid / f"{aid}.ipynb")
        s_plain, s_ours = scores(c_plain, aid), scores(c_ours, aid)
    n = len(pairs)
    agree = sum(1 for sid in expected if s_plain.get(sid) == s_ours.get(sid))
    exact = sum(1 for sid in expected if s_ours.get(sid) == expected[sid])
    per_min = lambda t, k: 60 * k / t  # noqa: E731
    print(f"\n**Grading throughput** — {n} submissions of `{aid}`, {os.cpu_count()} cores, one run\n")
    print("| grader | wall time | submissions / min | × plain nbgrader |")
    print("|---|---|---|---|")
    print(f"| plain nbgrader, one process per student, serial | {t_plain:.0f} s | {per_min(t_plain, n):.1f} | 1.0 |")
    print(
        f"| ours, sandboxed, {args.jobs} workers | {t_ours:.0f} s | {per_min(t_ours, n):.1f} | "
        f"**{t_plain / t_ours:.1f}** |"
    )
    print(
        f"| ours, sandboxed, 1 worker ({len(pairs3)} submissions) | {t_serial:.0f} s | "
        f"{per_min(t_serial, len(pairs3)):.1f} | {per_min(t_serial, len(pairs3)) / per_min(t_plain, n):.1f} |"
    )
    print(
        f"\nExecuting the solution notebook once in a plain kernel: {t_exec:.2f} s (best of 3). "
        f"Our serial time per submission: {t_serial / len(pairs3):.2f} s, so the sandbox, the trusted tests and "
        f"the gradebook add {t_serial / len(pairs3) - t_exec:+.2f} s per submission."
    )
    print(f"\nScores: ours equal plain nbgrader's on {agree}/{n} submissions and the expected score on {exact}/{n}.")
    return 0 if agree == n and exact == n else 1


if __name__ == "__main__":
    sys.exit(main())
