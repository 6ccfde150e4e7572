"""`make feedback`: one HTML page per student and assignment, safe to hand back.

nbgrader's own generate_feedback shows hidden tests, and with ClearHiddenTests alone the traceback
frames still quote them (measured). The course config (nbgrader_config.py) adds ClearHiddenTests,
ShortTracebacks and InertOutputs (text and verified images only); every page is then made static
(no script, a Content-Security-Policy that forbids scripts and fetches) and CHECKED before it is
kept: a page that contains a hidden-test or solution fragment the student did not write -- in its
text, markup, scripts or an encoded blob -- is deleted and reported.
"""
from __future__ import annotations

import base64
import binascii
import html as _html
import re
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
    """Solution and hidden-test lines of the source, and the release's text (what students may see)."""
    out = {"solution": set(), "hidden": set(), "public": ""}
    for p in course.source_notebooks(assignment):
        s = nbutil.secret_lines(nbutil.read_nb(p))
        out["solution"] |= s["solution"]
        out["hidden"] |= s["hidden"]
    public = []
    for p in sorted((course.release / assignment).glob("*.ipynb")):
        public += [nbutil.src(c) for c in nbutil.read_nb(p).get("cells", [])]
    out["public"] = "\n".join(public)
    return out


def _squash(text: str) -> str:
    return " ".join(text.split())


_B64 = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){16,}")
_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\'": "'", '\\"': '"', "\\\\": "\\"}


def page_views(html: str) -> list[str]:
    """Every way a page can carry text: its markup, its visible text, string escapes undone, and the
    base64 / hex blobs in it decoded -- whitespace squashed. Scripts and attributes are read too."""
    raw = _html.unescape(html)
    views = [raw, _html.unescape(re.sub(r"<[^>]+>", "", html))]
    unescaped = views[1]
    for k, v in _ESCAPES.items():
        unescaped = unescaped.replace(k, v)
    views.append(unescaped)
    for blob in _B64.findall(raw):
        try:
            views.append(base64.b64decode(blob + "=" * (-len(blob) % 4), altchars=b"-_" if "-" in blob or "_" in blob
                                          else None).decode("utf-8", "ignore"))
        except (ValueError, binascii.Error):
            pass
    for blob in _HEX.findall(raw):
        views.append(bytes.fromhex(blob).decode("utf-8", "ignore"))
    return [_squash(v) for v in views]


def page_leaks(html: str, secret: dict, student_text: str) -> list[str]:
    """Hidden-test and solution fragments anywhere in the page (markup, scripts, encoded blobs), other
    than those the student's own submission or the release contains (a student may well write
    `g = grad_f(x)` like a hidden test does). A fragment inside a longer line is found too."""
    views = page_views(html)
    allowed = _squash(student_text) + "\n" + _squash(secret.get("public", ""))
    found = []
    for kind in ("hidden", "solution"):
        for line in sorted(secret[kind]):
            frag = _squash(line)
            if len(frag) < 8 or frag in allowed:
                continue
            if any(frag in v for v in views):
                found.append(f"{kind if kind == 'solution' else 'hidden test'} line {line!r}")
    return found


STATIC_CSP = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
              "style-src 'unsafe-inline'; img-src data:; font-src data:\">")


def make_static(html: str) -> str:
    """A feedback page that runs nothing and fetches nothing: every script removed, and a policy that
    forbids scripts, connections and remote images even if something slipped through."""
    html = re.sub(r"<script\b[^>]*>.*?</script\s*>", "", html, flags=re.S | re.I)
    html = re.sub(r"<script\b[^>]*/?>", "", html, flags=re.I)
    head = re.search(r"<head[^>]*>", html, flags=re.I)
    if head:
        return html[:head.end()] + "\n" + STATIC_CSP + html[head.end():]
    return STATIC_CSP + html


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
            html = make_static(page.read_text(encoding="utf-8"))
            nbutil.write_atomic(page, html)
            found = page_leaks(html, cache[aid], own)
            if found:
                page.unlink()  # never hand out a page that leaks
                problems.append(f"{page.name}: {found[0]} (+{len(found) - 1} more), page deleted")
        results.append(FeedbackResult(aid, sid, not problems, [str(p) for p in pages if p.exists()],
                                      "; ".join(problems)))
    return results


def pages(course: Course, assignment: str, student: str) -> list[Path]:
    return sorted((course.feedback / student / assignment).glob("*.html"))
