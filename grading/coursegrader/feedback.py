"""`make feedback`: one HTML page per student and assignment, safe to hand back.

nbgrader's own generate_feedback shows hidden tests, and with ClearHiddenTests alone the traceback
frames still quote them (measured). The course config (nbgrader_config.py) adds ClearHiddenTests and
ShortTracebacks; on top of that every page is CHECKED here before it is kept: a page that contains
hidden-test text, or solution code the student did not write, is deleted and reported.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from . import nbutil
from .nbg import run
from .settings import Course


@dataclass
class FeedbackResult:
    assignment: str
    student: str
    ok: bool
    pages: list
    problem: str = ""


def secrets(course: Course, assignment: str) -> dict[str, set[str]]:
    out = {"solution": set(), "hidden": set()}
    for p in course.source_notebooks(assignment):
        s = nbutil.secret_lines(nbutil.read_nb(p))
        out["solution"] |= s["solution"]
        out["hidden"] |= s["hidden"]
    return out


def page_leaks(html: str, secret: dict[str, set[str]], student_text: str) -> list[str]:
    """Hidden-test and solution lines in the page that the student's own submission does not contain
    (a student may well write `g = grad_f(x)` like a hidden test does)."""
    text = {line.strip() for line in nbutil.html_text(html).split("\n")}
    own = {line.strip() for line in student_text.split("\n")}
    found = [f"hidden test line {x!r}" for x in sorted((secret["hidden"] & text) - own)]
    found += [f"solution line {x!r}" for x in sorted((secret["solution"] & text) - own)]
    return found


def submitted_text(course: Course, assignment: str, student: str) -> str:
    parts = []
    for p in sorted((course.submitted / student / assignment).glob("*.ipynb")):
        try:
            parts += [nbutil.src(c) for c in nbutil.read_nb(p).get("cells", [])]
        except (OSError, ValueError):
            pass
    return "\n".join(parts)


def generate(course: Course, pairs: list[tuple[str, str]], progress: bool = True) -> list[FeedbackResult]:
    from nbgrader.converters import GenerateFeedback
    from tqdm import tqdm

    cache, results = {}, []
    bar = tqdm(pairs, desc="feedback", unit="nb", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for aid, sid in bar:
        if not (course.autograded / sid / aid).is_dir():
            results.append(FeedbackResult(aid, sid, False, [], "not autograded"))
            continue
        r = run(course, GenerateFeedback, aid, sid, force=True)
        folder = course.feedback / sid / aid
        pages = sorted(folder.glob("*.html")) if folder.is_dir() else []
        if not r.success or not pages:
            last = (r.error or r.log).strip().splitlines()[-1:] or ["no page written"]
            results.append(FeedbackResult(aid, sid, False, [], "error: " + last[0][:200]))
            continue
        if aid not in cache:
            cache[aid] = secrets(course, aid)
        own = submitted_text(course, aid, sid)
        problems = []
        for page in pages:
            found = page_leaks(page.read_text(encoding="utf-8"), cache[aid], own)
            if found:
                page.unlink()  # never hand out a page that leaks
                problems.append(f"{page.name}: {found[0]} (+{len(found) - 1} more), page deleted")
        results.append(FeedbackResult(aid, sid, not problems, [str(p) for p in pages if p.exists()],
                                      "; ".join(problems)))
    return results


def pages(course: Course, assignment: str, student: str) -> list[Path]:
    return sorted((course.feedback / student / assignment).glob("*.html"))
