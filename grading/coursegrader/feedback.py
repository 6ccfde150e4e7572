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
import contextlib
import html as _html
import re
import signal
import sys
import threading
from dataclasses import dataclass

from . import nbutil
from .converters import run
from .records import load_records
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
            views.append(
                base64.b64decode(
                    blob + "=" * (-len(blob) % 4), altchars=b"-_" if "-" in blob or "_" in blob else None
                ).decode("utf-8", "ignore")
            )
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


STATIC_CSP = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "style-src 'unsafe-inline'; img-src data:; font-src data:\">"
)


def make_static(html: str) -> str:
    """A feedback page that runs nothing and fetches nothing: every script removed, and a policy that
    forbids scripts, connections and remote images even if something slipped through."""
    html = re.sub(r"<script\b[^>]*>.*?</script\s*>", "", html, flags=re.S | re.I)
    html = re.sub(r"<script\b[^>]*/?>", "", html, flags=re.I)
    head = re.search(r"<head[^>]*>", html, flags=re.I)
    if head:
        return html[: head.end()] + "\n" + STATIC_CSP + html[head.end() :]
    return STATIC_CSP + html


def submitted_text(course: Course, assignment: str, student: str) -> str:
    parts = []
    for p in sorted((course.submitted / student / assignment).glob("*.ipynb")):
        try:
            cells = nbutil.read_nb(p).get("cells", [])
            parts += [nbutil.src(c) for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []
        except (OSError, ValueError, RecursionError, AttributeError):
            pass
    return "\n".join(parts)


MAX_NOTEBOOK_BYTES = 20 * 2**20  # an autograded notebook larger than this gets no page (reported)
SECONDS_PER_PAGE = 120  # wall-clock limit of one student's pages


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError in this (main) thread after ``seconds``; elsewhere no limit is possible."""
    if threading.current_thread() is not threading.main_thread() or not seconds:
        yield
        return

    def alarm(signum, frame):
        raise TimeoutError(f"took more than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def generate(course: Course, pairs: list[tuple[str, str]], progress: bool = True) -> list[FeedbackResult]:
    """Pages for (assignment, student) pairs; one bad notebook is reported and the class goes on."""
    from tqdm import tqdm

    cache, results = {}, []
    bar = tqdm(pairs, desc="feedback", unit="nb", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for aid, sid in bar:
        try:
            with time_limit(SECONDS_PER_PAGE):
                results.append(_one(course, aid, sid, cache))
        except Exception as exc:  # noqa: BLE001 - a malformed notebook, a page that takes too long
            folder = course.feedback / sid / aid
            for page in folder.glob("*.html") if folder.is_dir() else []:
                page.unlink()  # half-done or stale: never hand it out
            results.append(FeedbackResult(aid, sid, False, [], f"error: {type(exc).__name__}: {str(exc)[:200]}"))
    return results


def _one(course: Course, aid: str, sid: str, cache: dict) -> FeedbackResult:
    from nbgrader.converters import GenerateFeedback

    if not (course.autograded / sid / aid).is_dir():
        return FeedbackResult(aid, sid, False, [], "not autograded")
    for page in (course.feedback / sid / aid).glob("*.html"):  # a stale page is never left to hand out
        page.unlink()
    rec = load_records(course).get(f"{aid}/{sid}")
    if rec is not None and not rec.get("ok", True):  # partial results are not handed out
        return FeedbackResult(aid, sid, False, [], "not graded: " + str(rec.get("problem", ""))[:200])
    big = [p for p in (course.autograded / sid / aid).glob("*.ipynb") if p.stat().st_size > MAX_NOTEBOOK_BYTES]
    if big:
        return FeedbackResult(
            aid,
            sid,
            False,
            [],
            f"error: {big[0].name} has {big[0].stat().st_size} bytes, "
            f"more than the {MAX_NOTEBOOK_BYTES} a page is made from",
        )
    r = run(course, GenerateFeedback, aid, sid, force=True)
    folder = course.feedback / sid / aid
    pages = sorted(folder.glob("*.html")) if folder.is_dir() else []
    if not r.success or not pages:
        last = (r.error or r.log).strip().splitlines()[-1:] or ["no page written"]
        return FeedbackResult(aid, sid, False, [], "error: " + last[0][:200])
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
    return FeedbackResult(aid, sid, not problems, [str(p) for p in pages if p.exists()], "; ".join(problems))
