"""The grading machinery on a throwaway course (tests/grading_fixtures.py), independent of the real
assignments: release, samples, one autograde batch with hostile submissions, feedback, grades, collect."""
from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from grading_fixtures import HIDDEN_MARK, TOY, TOY_POINTS, make_toy_course, toy_source

from coursegrader import autograde, collect, feedback, grades, nbutil, release, samples
from coursegrader.settings import Course

TOTAL = sum(TOY_POINTS.values())
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The toy course with its release generated (and its gradebook created: ≈ 2-8 s, done once)."""
    root = make_toy_course(tmp_path_factory.mktemp("toyrelease"))
    course = Course.at(root)
    gen = release.generate(course)
    assert all(r.success for r in gen), gen[0].error
    return root


def fresh(released: Path, dest: Path, **kw) -> Course:
    shutil.copytree(released, dest, symlinks=True)
    return Course.at(dest, **kw)


@pytest.fixture(scope="module")
def toy(released, tmp_path_factory):
    """Toy course: release, samples + hostile submissions, ONE autograde batch, feedback, grades."""
    course = fresh(released, tmp_path_factory.mktemp("toy") / "c", timeout=8)  # x-loop costs one timeout
    built = samples.build_course(course)
    expected = samples.write(built, course.submitted)
    solution = nbutil.read_nb(course.submitted / "sample-solution" / TOY / "toy.ipynb")

    def hostile(student, cell, change):
        path = course.submitted / student / TOY / "toy.ipynb"
        nb = nbutil.read_nb(path) if path.exists() else copy.deepcopy(solution)   # changes accumulate
        for c in nb["cells"]:
            if nbutil.grade_id(c) == cell:
                c["source"] = change(nbutil.src(c))
        nbutil.write_nb(course.submitted / student / TOY / "toy.ipynb", nb)

    hostile("x-died", "answer_grad", lambda s: s + "\nimport os\nos._exit(0)")
    hostile("x-loop", "answer_hess", lambda s: s.replace("return", "while True:\n        pass\n    return"))
    hostile("x-stderr", "answer_hess", lambda s: s.replace(
        "return", "import sys\n    print('debug', file=sys.stderr)\n    return"))
    hostile("x-edited", "test_hess", lambda s: "pass  # the test, edited away by the student")
    # records every input grad_f gets; a LATER answer cell prints them (hidden inputs must not be there)
    hostile("x-spy", "answer_grad", lambda s: s + "\nSEEN = []\n_real = grad_f\n"
            "def grad_f(A, x):\n    SEEN.append(np.asarray(A).tolist())\n    return _real(A, x)\n")
    hostile("x-spy", "answer_hess", lambda s: s + "\nprint('SPY', SEEN)\n")
    # output that runs script where it is rendered (formgrader, feedback, Lab): must arrive inert
    hostile("x-xss", "answer_grad", lambda s: s + "\n" + XSS_CELL)
    nbutil.write_nb(course.submitted / "x-unknown" / "nope" / "nope.ipynb", solution)  # no such assignment
    expected.update({"nope/x-unknown": {"expected": 0.0}, f"{TOY}/x-died": {"expected": TOTAL - 5}, f"{TOY}/x-loop": {"expected": TOTAL - 1}, f"{TOY}/x-edited": {"expected": TOTAL},
                     f"{TOY}/x-stderr": {"expected": TOTAL}, f"{TOY}/x-spy": {"expected": TOTAL},
                     f"{TOY}/x-xss": {"expected": TOTAL}})
    results = autograde.grade_submissions(course, course.submissions(), progress=False)
    fb = feedback.generate(course, course.submissions(), progress=False)
    reports = grades.export(course)
    return dict(course=course, expected=expected, results={r.key: r for r in results},
                feedback={f"{f.assignment}/{f.student}": f for f in fb}, reports=reports)


XSS = '<img src="data:," onerror="document.title=\'pwned\'">'
XSS_CELL = f"""
from IPython.display import display, HTML, Javascript, Markdown, SVG
display(HTML({XSS!r}))
display(Javascript("document.title = 'pwned'"))
display(Markdown({XSS!r}))
display({{"image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
         "application/vnd.jupyter.widget-view+json": {{"model_id": "x", "version_major": 2, "version_minor": 0}},
         "image/png": "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
         "text/plain": "fine"}}, raw=True)
print({XSS!r})
"""
SAFE_MIME = {"text/plain", "image/png", "image/jpeg", "image/gif"}


def test_hidden_inputs_never_reach_a_student_cell(toy):
    """Hidden tests run after the last student cell: a later cell that prints every input grad_f saw
    shows only the visible test's inputs (np.eye(3) and triu(ones) are the hidden ones)."""
    assert toy["results"][f"{TOY}/x-spy"].score == TOTAL
    nb = nbutil.read_nb(toy["course"].autograded / "x-spy" / TOY / "toy.ipynb")
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "SPY [[[" in printed, printed[:500]
    assert "[1.0, 0.0, 0.0]" not in printed and "[1.0, 1.0, 1.0]" not in printed, printed[:500]


def test_student_output_is_inert_in_the_graded_notebook_and_the_feedback(toy):
    """HTML, JavaScript, markdown, SVG, widget views and a PNG that is not a PNG are removed (a note
    says so); text is kept and rendered escaped; the feedback page runs no script at all."""
    assert toy["results"][f"{TOY}/x-xss"].score == TOTAL
    nb = nbutil.read_nb(toy["course"].autograded / "x-xss" / TOY / "toy.ipynb")
    outs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    mimes = {m for o in outs for m in o.get("data", {})}
    assert mimes <= SAFE_MIME, mimes
    notes = "".join(str(o.get("data", {}).get("text/plain", "")) for o in outs)
    assert "removed output of type text/html" in notes and "application/javascript" in notes
    assert "image/png" in notes and "image/svg+xml" in notes   # the fake PNG is named as removed
    for key, f in toy["feedback"].items():
        if f.ok:
            html = Path(f.pages[0]).read_text()
            assert "<script" not in html.lower() and "Content-Security-Policy" in html, key
    html = Path(toy["feedback"][f"{TOY}/x-xss"].pages[0]).read_text()
    assert "onerror" in html and not re.search(r"<img[^>]*onerror", html, re.I)


def test_nbgraders_own_autograde_refuses_and_keeps_the_sandboxed_results(toy):
    """Formgrader's Autograde button and `nbgrader autograde` run nbgrader's Autograde with the course
    config: it refuses before any student code runs or any file is removed."""
    from nbgrader.converters import Autograde
    from coursegrader.nbg import run
    course = toy["course"]
    graded = course.autograded / "sample-solution" / TOY / "toy.ipynb"
    before = graded.read_bytes()
    r = run(course, Autograde, TOY, "sample-solution", force=True, create_student=True)
    assert not r.success and "make autograde" in (r.error + r.log), (r.error, r.log)
    assert graded.read_bytes() == before


def test_grade_reports_do_not_start_formulas():
    assert [grades.inert_cell(v) for v in ["=HYPERLINK(\"x\")", "+1+2", "@SUM(A1)", "-cmd", "-1.5", "ann", 3.0]] == \
        ["'=HYPERLINK(\"x\")", "'+1+2", "'@SUM(A1)", "'-cmd", "-1.5", "ann", 3.0]


def test_release_is_deterministic_and_clean(released, tmp_path):
    a = fresh(released, tmp_path / "a")
    first = tmp_path / "first"
    shutil.copytree(a.release, first)
    assert all(r.success for r in release.generate(a))
    assert release.compare(a.release, first) == []
    assert release.check(a) == {TOY: []}
    rel = nbutil.read_nb(a.release / TOY / "toy.ipynb")
    text = json.dumps(rel)
    assert "BEGIN SOLUTION" not in text and HIDDEN_MARK not in text and "return (A + A.T) @ x" not in text
    assert "raise NotImplementedError()" in text
    assert (a.release / TOY / "data.txt").exists()


def test_leak_checker_sees_planted_leaks():
    src = toy_source()
    leaky = copy.deepcopy(src)
    assert release.leaks(src, leaky)  # the source itself is full of secrets
    for c in leaky["cells"]:
        c["source"] = nbutil.src(c).replace("### BEGIN SOLUTION\n", "").replace("    ### END SOLUTION", "")
    found = release.leaks(src, leaky)
    assert any("solution line" in f for f in found) and any("hidden" in f.lower() for f in found)


def test_lint_flags_authoring_mistakes():
    nb = toy_source()
    assert release.lint(nb) == []
    bad = copy.deepcopy(nb)
    bad["cells"][3]["source"] += "\nnp.allclose(g, g)"          # value read as partial credit
    bad["cells"][6]["metadata"]["nbgrader"]["grade_id"] = "test_grad"  # duplicated id
    problems = "\n".join(release.lint(bad))
    assert "ends with an expression" in problems and "also used by" in problems


def test_mutations_fail_loudly_when_out_of_step():
    text = "def f(A, x):\n    return (A + A.T) @ x"
    assert samples.mutate(text, {"kind": "wrong_sign", "expr": "(A + A.T) @ x"}).endswith("-((A + A.T) @ x)")
    assert samples.mutate(text, {"kind": "transposed", "expr": "(A + A.T) @ x"}).endswith("((A + A.T) @ x).T")
    assert samples.mutate(text, {"kind": "missing_term", "term": " + A.T"}).endswith("(A) @ x")
    with pytest.raises(samples.SpecError, match="0 times"):
        samples.mutate(text, {"kind": "wrong_sign", "expr": "A @ x.T"})
    with pytest.raises(samples.SpecError, match="3 times"):
        samples.mutate(text, {"kind": "replace", "old": "A", "new": "B"})


def test_sample_scores_are_exact(toy):
    got = {k: r.score for k, r in toy["results"].items()}
    want = {k: e["expected"] for k, e in toy["expected"].items()}
    assert got == want


def test_builtin_samples_cover_the_spec(toy):
    e = toy["expected"]
    assert e[f"{TOY}/sample-blank"]["expected"] == 0
    for name in ("solution", "warns", "dupe"):
        assert e[f"{TOY}/sample-{name}"]["expected"] == TOTAL
    assert {"wrong_sign", "missing_term", "transposed_hess"} <= {k.split("sample-")[1] for k in e if "sample-" in k}


def test_batch_survives_kernel_death_timeout_and_duplicates(toy):
    r = toy["results"]
    # the sandboxed grader: a dying kernel is restarted, the rest graded, the submission flagged
    assert r[f"{TOY}/x-died"].ok and "kernel died" in r[f"{TOY}/x-died"].problem
    assert "timed out" in r[f"{TOY}/x-loop"].problem
    assert not r["nope/x-unknown"].ok and "cannot grade nope" in r["nope/x-unknown"].problem
    ok = [k for k in r if k != "nope/x-unknown"]
    assert all(r[k].ok for k in ok), {k: r[k].problem for k in ok if not r[k].ok}


def test_warnings_go_to_stdout_in_the_grading_kernel(toy):
    nb = nbutil.read_nb(toy["course"].autograded / "sample-warns" / TOY / "toy.ipynb")
    tests = [c for c in nb["cells"] if nbutil.is_test(c)]
    streams = [o for c in tests for o in c["outputs"] if o["output_type"] == "stream"]
    assert any(samples.WARN_TEXT in "".join(o["text"]) for o in streams)
    assert all(o["name"] == "stdout" for o in streams)


def test_feedback_hides_hidden_tests_and_long_tracebacks(toy):
    course = toy["course"]
    for key, f in toy["feedback"].items():
        if key.endswith("x-unknown"):
            assert not f.ok
            continue
        assert f.ok, (key, f.problem)
        html = Path(f.pages[0]).read_text()
        text = nbutil.html_text(html)
        assert HIDDEN_MARK not in text, key
        assert "Traceback (most recent call last)" not in text, key
    blank = nbutil.html_text(Path(toy["feedback"][f"{TOY}/sample-blank"].pages[0]).read_text())
    assert "return (A + A.T) @ x" not in blank and "NotImplementedError" in blank
    # the autograded copy (never handed out) does contain the hidden tests: the guard is the feedback step
    assert HIDDEN_MARK in (course.autograded / "sample-blank" / TOY / "toy.ipynb").read_text()


def test_feedback_guard_deletes_a_leaking_page():
    secret = {"hidden": {f"{HIDDEN_MARK} = np.eye(3)"}, "solution": {"return (A + A.T) @ x"}}
    page = f"<pre><span>{HIDDEN_MARK}</span> <span>=</span> np.eye(3)\nreturn (A + A.T) @ x</pre>"
    assert len(feedback.page_leaks(page, secret, student_text="")) == 2
    assert feedback.page_leaks(page, secret, student_text=f"{HIDDEN_MARK} = np.eye(3)\nreturn (A + A.T) @ x") == []
    # fragments inside longer lines, in a script, in an attribute, base64- or hex-encoded, as a repr
    lam = "f = lambda W, b: ad.sum(ad.log(1.0 + ad.exp(X @ W + b)))"
    secret = {"hidden": {lam}, "solution": set(), "public": "f = lambda x: ad.sum(x)"}
    for page in [f"<pre>funcs = [{lam}, 3]</pre>", f"<script>var s = {json.dumps(lam)};</script>",
                 f'<div title="{lam}"></div>', f"<pre>{base64.b64encode(lam.encode()).decode()}</pre>",
                 f"<pre>{lam.encode().hex()}</pre>", f"<pre>{repr(chr(10) + lam + chr(10))}</pre>"]:
        assert feedback.page_leaks(page, secret, student_text=""), page
    assert feedback.page_leaks("<pre>f = lambda x: ad.sum(x)</pre>", secret, student_text="") == []


def test_grade_reports(toy):
    course, rep = toy["course"], toy["reports"]
    for p in rep["paths"]:
        assert p.exists() and p.stat().st_size > 0, p
    assert (course.reports / "histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {(r["assignment"], r["student"]): r for r in
            __import__("csv").DictReader(io.StringIO((course.reports / "grades.csv").read_text()))}
    assert float(rows[(TOY, "sample-solution")]["score"]) == TOTAL
    assert float(rows[(TOY, "x-died")]["score"]) == TOTAL - 5   # graded after the restart
    questions = (course.reports / "questions.csv").read_text()
    assert "test_grad_hidden" in questions
    kinds = {(a.student, a.kind) for a in rep["anomalies"]}
    assert ("x-died", "grader flags") in kinds
    assert ("x-loop", "grader flags") in kinds
    assert not [k for k in kinds if k[0] == "x-stderr" and "stderr" in k[1]]   # stderr costs nothing now
    assert ("x-edited", "edited locked cells (restored)") in kinds
    assert ("sample-dupe", "duplicated grade_id") in kinds
    assert ("sample-dupe", "missing cells") in kinds
    assert ("sample-solution", "needs manual grading") in kinds  # the written answer
    assert ("sample-blank", "needs manual grading") not in kinds  # unanswered: 0 without a grader
    assert not [k for k in kinds if k[0] in ("sample-solution", "sample-warns") and k[1] != "needs manual grading"]
    assert rows[(TOY, "sample-solution")]["status"] == "needs manual grading"
    assert float(rows[(TOY, "sample-solution")]["max_score"]) == TOTAL + 1


def _nb_bytes(course, student_answer="return (A + A.T) @ x", strip_meta=False):
    nb = nbutil.read_nb(course.release / TOY / "toy.ipynb")
    for c in nb["cells"]:
        if nbutil.grade_id(c) == "answer_grad":
            c["source"] = "def grad_f(A, x):\n    " + student_answer
        if strip_meta:
            c["metadata"] = {}
    return nbutil.dumps_nb(nb).encode()


def test_collect_lms_layouts_bad_and_duplicate_files(released, tmp_path):
    course = fresh(released, tmp_path / "c")
    good, newer = _nb_bytes(course), _nb_bytes(course, "return A @ x + A.T @ x")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("work/toy.ipynb", good)
    dl = tmp_path / "moodle.zip"
    with zipfile.ZipFile(dl, "w") as z:
        def put(name, data, when=(2025, 3, 1, 12, 0, 0)):
            z.writestr(zipfile.ZipInfo(name, date_time=when), data)
        put("Ann Lee_101_assignsubmission_file_/toy.ipynb", good)
        put("Ann Lee_101_assignsubmission_file_/Copy of toy (1).ipynb", newer, (2025, 3, 2, 9, 0, 0))
        put("Борис Петров_102_assignsubmission_file_/my_homework.ipynb", good)   # found by content
        put("Cy Dee_103_assignsubmission_file_/toy.ipynb", b"{not json")
        put("Cy Dee_103_assignsubmission_file_/notes.json", b'{"a": 1}')
        put("Di Eve_104_assignsubmission_file_/other_course.ipynb",
            nbutil.dumps_nb({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode())
        put("Ed Fox_105_assignsubmission_file_/upload.zip", inner.getvalue())
        put("__MACOSX/Ann Lee_101_assignsubmission_file_/._toy.ipynb", b"\x00\x05")
    items = collect.collect(course, dl)
    by = {(i.status, i.student) for i in items}
    assert ("collected", "ann_lee") in by and ("duplicate", "ann_lee") in by
    assert ("collected", "борис_петров") in by and ("collected", "ed_fox") in by
    bad = sorted(i.reason for i in items if i.status == "bad")
    assert len(bad) == 3 and any("not JSON" in r for r in bad) and any("unknown assignment" in r for r in bad)
    assert any(i.status == "ignored" for i in items)
    assert len(items) == 8  # every file accounted for
    kept = (course.submitted / "ann_lee" / TOY / "toy.ipynb").read_bytes()
    assert kept == newer  # the newest copy wins
    assert (course.submitted / "ann_lee" / TOY / "timestamp.txt").read_text().startswith("2025-03-02")
    assert not list(course.submitted.rglob("*.tmp"))
    report = (course.reports / "collect.csv").read_text()
    assert report.count("\n") == 9 and "older copy" in report
    again = collect.collect(course, dl)
    assert {i.status for i in again if i.student == "ann_lee"} == {"unchanged", "duplicate"}
    stale = tmp_path / "older.zip"  # an older download collected later must not replace the newer copy
    with zipfile.ZipFile(stale, "w") as z:
        z.writestr(zipfile.ZipInfo("Ann Lee_101_assignsubmission_file_/toy.ipynb", (2025, 2, 1, 8, 0, 0)), good)
    items = collect.collect(course, stale)
    assert [i.status for i in items] == ["duplicate"] and "older than the copy" in items[0].reason
    assert (course.submitted / "ann_lee" / TOY / "toy.ipynb").read_bytes() == newer


def test_collect_canvas_and_plain_folders(released, tmp_path):
    course = fresh(released, tmp_path / "c")
    good = _nb_bytes(course)
    canvas = tmp_path / "canvas"
    canvas.mkdir()
    (canvas / "lee_12345_67890_toy.ipynb").write_bytes(good)
    (canvas / "lee_12345_67891_toy-1.ipynb").write_bytes(good + b" ")
    (canvas / "kim_LATE_222_333_toy.ipynb").write_bytes(good)
    (canvas / "stray.ipynb").write_bytes(good)
    os.utime(canvas / "lee_12345_67890_toy.ipynb", (1e9, 1e9))
    items = collect.collect(course, canvas)
    st = {(i.status, i.student) for i in items}
    assert {("collected", "lee"), ("duplicate", "lee"), ("collected", "kim"), ("bad", "")} <= st
    assert (course.submitted / "lee" / TOY / "toy.ipynb").read_bytes() == good + b" "
    plain = tmp_path / "plain" / "wrapper"
    (plain / "s1" / TOY).mkdir(parents=True)
    (plain / "s1" / TOY / "toy.ipynb").write_bytes(good)
    (plain / "s2").mkdir()
    (plain / "s2" / "toy.ipynb").write_bytes(good)
    items = collect.collect(course, tmp_path / "plain")
    assert {(i.status, i.student) for i in items} == {("collected", "s1"), ("collected", "s2")}
    wrapped = tmp_path / "wrapped" / "Homework 1 - Canvas"  # a Canvas download unzipped into its folder
    wrapped.mkdir(parents=True)
    (wrapped / "ng_777_888_toy.ipynb").write_bytes(good)
    items = collect.collect(course, tmp_path / "wrapped")
    assert [(i.status, i.student) for i in items] == [("collected", "ng")]


def test_collect_refuses_a_single_notebook(released, tmp_path):
    course = fresh(released, tmp_path / "c")
    nb = tmp_path / "x.ipynb"
    nb.write_text("{}")
    with pytest.raises(ValueError, match="LMS download"):
        collect.collect(course, nb)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files"):
        collect.collect(course, tmp_path / "empty")
