"""The grading machinery on a throwaway course (tests/grading_fixtures.py), independent of the real
assignments: release, samples, one autograde batch with hostile submissions, feedback, grades, collect."""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from coursegrader import autograde, collect, feedback, grades, nbutil, records, release, samples
from coursegrader.settings import REPO, Course
from grading_fixtures import HIDDEN_MARK, TOY, TOY_POINTS, make_toy_course, toy_source

REPO_SOLUTION = REPO / "solutions" / "hw1_matrix_gradients" / "hw1_matrix_gradients.ipynb"

TOTAL = sum(TOY_POINTS.values())
EVIL_ID = '=HYPERLINK("http://x","ok")\x1b[2K\r\x1b[32mall good\x1b[0m'
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
        nb = nbutil.read_nb(path) if path.exists() else copy.deepcopy(solution)  # changes accumulate
        for c in nb["cells"]:
            if nbutil.grade_id(c) == cell:
                c["source"] = change(nbutil.src(c))
        nbutil.write_nb(course.submitted / student / TOY / "toy.ipynb", nb)

    hostile("x-died", "answer_grad", lambda s: s + "\nimport os\nos._exit(0)")
    hostile("x-loop", "answer_hess", lambda s: s.replace("return", "while True:\n        pass\n    return"))
    hostile(
        "x-stderr",
        "answer_hess",
        lambda s: s.replace("return", "import sys\n    print('debug', file=sys.stderr)\n    return"),
    )
    hostile("x-edited", "test_hess", lambda s: "pass  # the test, edited away by the student")
    # records every input grad_f gets; a LATER answer cell prints them (hidden inputs must not be there)
    hostile(
        "x-spy",
        "answer_grad",
        lambda s: (
            s + "\nSEEN = []\n_real = grad_f\n"
            "def grad_f(A, x):\n    SEEN.append(np.asarray(A).tolist())\n    return _real(A, x)\n"
        ),
    )
    hostile("x-spy", "answer_hess", lambda s: s + "\nprint('SPY', SEEN)\n")
    # output that runs script where it is rendered (formgrader, feedback, Lab): must arrive inert
    hostile("x-xss", "answer_grad", lambda s: s + "\n" + XSS_CELL)
    nbutil.write_nb(course.submitted / "x-unknown" / "nope" / "nope.ipynb", solution)  # no such assignment
    malformed = copy.deepcopy(solution)  # hand-edited JSON: one bad file must not stop the class
    pasted = copy.deepcopy(next(c for c in malformed["cells"] if nbutil.grade_id(c) == "test_hess"))
    pasted["source"] = 42
    malformed["cells"] += [
        pasted,
        {"cell_type": "code", "metadata": [1, 2], "source": "x_list_meta = 1", "outputs": [], "execution_count": None},
    ]
    for _ in range(2):  # a student-chosen grade_id that a spreadsheet or a terminal would run
        malformed["cells"].append(
            {
                "cell_type": "code",
                "source": "pass",
                "outputs": [],
                "execution_count": None,
                "metadata": {"nbgrader": {"grade_id": EVIL_ID, "grade": False, "solution": False, "locked": False}},
            }
        )
    nbutil.write_nb(course.submitted / "x-malformed" / TOY / "toy.ipynb", malformed)
    expected.update(
        {
            "nope/x-unknown": {"expected": 0.0},
            f"{TOY}/x-died": {"expected": TOTAL - 5},
            f"{TOY}/x-loop": {"expected": TOTAL - 1},
            f"{TOY}/x-edited": {"expected": TOTAL},
            f"{TOY}/x-stderr": {"expected": TOTAL},
            f"{TOY}/x-malformed": {"expected": TOTAL},
            f"{TOY}/x-spy": {"expected": TOTAL},
            f"{TOY}/x-xss": {"expected": TOTAL},
        }
    )
    results = autograde.grade_submissions(course, course.submissions(), progress=False)
    fb = feedback.generate(course, course.submissions(), progress=False)
    reports = grades.export(course)
    return dict(
        course=course,
        expected=expected,
        results={r.key: r for r in results},
        feedback={f"{f.assignment}/{f.student}": f for f in fb},
        reports=reports,
    )


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
    assert "image/png" in notes and "image/svg+xml" in notes  # the fake PNG is named as removed
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

    from coursegrader.converters import run

    course = toy["course"]
    graded = course.autograded / "sample-solution" / TOY / "toy.ipynb"
    before = graded.read_bytes()
    r = run(course, Autograde, TOY, "sample-solution", force=True, create_student=True)
    assert not r.success and "make autograde" in (r.error + r.log), (r.error, r.log)
    assert graded.read_bytes() == before


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
    bad["cells"][3]["source"] += "\nnp.allclose(g, g)"  # value read as partial credit
    bad["cells"][6]["metadata"]["nbgrader"]["grade_id"] = "test_grad"  # duplicated id
    problems = "\n".join(release.lint(bad))
    assert "ends with an expression" in problems and "also used by" in problems


@pytest.mark.parametrize(
    "spelling",
    [
        "# BEGIN SOLUTION",
        "#### BEGIN SOLUTION",
        "###BEGIN SOLUTION",
        "### BEGIN SOLUTION here",
        "### END SOLUTION  # done",
        "## BEGIN HIDDEN TESTS",
        "### END HIDDEN TESTS!",
    ],
)
def test_lint_accepts_only_the_one_marker_spelling(spelling):
    """nbgrader reads any line containing the delimiter as a marker; solutions/ uses exactly one form."""
    nb = toy_source()
    k, cell = next((k, c) for k, c in enumerate(nb["cells"]) if "### END SOLUTION" in nbutil.src(c))
    cell["source"] = nbutil.src(cell).replace("### END SOLUTION", "### END SOLUTION\n    " + spelling)
    problems = release.lint(nb)
    assert any(repr(spelling) in p and f"cell {k}" in p for p in problems), problems


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
    for page in [
        f"<pre>funcs = [{lam}, 3]</pre>",
        f"<script>var s = {json.dumps(lam)};</script>",
        f'<div title="{lam}"></div>',
        f"<pre>{base64.b64encode(lam.encode()).decode()}</pre>",
        f"<pre>{lam.encode().hex()}</pre>",
        f"<pre>{repr(chr(10) + lam + chr(10))}</pre>",
    ]:
        assert feedback.page_leaks(page, secret, student_text=""), page
    assert feedback.page_leaks("<pre>f = lambda x: ad.sum(x)</pre>", secret, student_text="") == []


def test_grade_reports(toy):
    course, rep = toy["course"], toy["reports"]
    for p in rep["paths"]:
        assert p.exists() and p.stat().st_size > 0, p
    assert (course.reports / "histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {
        (r["assignment"], r["student"]): r
        for r in __import__("csv").DictReader(io.StringIO((course.reports / "grades.csv").read_text()))
    }
    assert float(rows[(TOY, "sample-solution")]["score"]) == TOTAL
    assert float(rows[(TOY, "x-died")]["score"]) == TOTAL - 5  # graded after the restart
    questions = (course.reports / "questions.csv").read_text()
    assert "test_grad_hidden" in questions
    kinds = {(a.student, a.kind) for a in rep["anomalies"]}
    assert ("x-died", "grader flags") in kinds
    assert ("x-loop", "grader flags") in kinds
    assert not [k for k in kinds if k[0] == "x-stderr" and "stderr" in k[1]]  # stderr costs nothing now
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
        put("Борис Петров_102_assignsubmission_file_/my_homework.ipynb", good)  # found by content
        put("Cy Dee_103_assignsubmission_file_/toy.ipynb", b"{not json")
        put("Cy Dee_103_assignsubmission_file_/notes.json", b'{"a": 1}')
        put(
            "Di Eve_104_assignsubmission_file_/other_course.ipynb",
            nbutil.dumps_nb({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode(),
        )
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


# one row per LMS layout: a path the LMS writes -> (student, LMS id); a file name it decorates -> the stem
LAYOUT_ROWS = {
    "Moodle": (("Ann Lee_12345_assignsubmission_file_", "hw1.ipynb"), ("ann_lee", "12345"), "hw1", "hw1"),
    "Canvas": (("lee_LATE_12345_67890_hw1-1.ipynb",), ("lee", "12345"), "lee_12345_67890_hw1", "hw1"),
    "Plain": (("Ann", "hw1", "hw1.ipynb"), ("ann", ""), "hw1", "hw1"),
}


@pytest.mark.parametrize("layout", collect.LAYOUTS, ids=lambda lay: type(lay).__name__)
def test_each_lms_layout_reads_its_own_paths(layout):
    parts, who, decorated, stem = LAYOUT_ROWS[type(layout).__name__]  # a new layout needs its row
    assert layout.student(parts) == who and layout.stem(decorated) == stem
    assert [type(lay).__name__ for lay in collect.LAYOUTS if lay.student(parts)][0] == type(layout).__name__


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


# ---------------------------------------------------------------- one bad file never stops a class


def test_hand_edited_json_is_graded_and_reported_not_fatal(toy):
    r = toy["results"][f"{TOY}/x-malformed"]
    assert r.ok and r.score == TOTAL, r.problem
    assert toy["feedback"][f"{TOY}/x-malformed"].ok
    kinds = {(a.student, a.kind) for a in toy["reports"]["anomalies"]}
    assert ("x-malformed", "duplicated grade_id") in kinds


def test_report_cells_cannot_run_as_formulas(toy):
    for path in toy["course"].reports.glob("*.csv"):
        for row in csv.reader(io.StringIO(path.read_text())):
            for cell in row:
                if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                    float(cell)  # only numbers may start so
    assert "'=HYPERLINK" in (toy["course"].reports / "anomalies.csv").read_text()


def test_student_text_printed_to_a_terminal_is_escaped(toy, capsys):
    from coursegrader import cli

    assert cli.cmd_grades(toy["course"], None) == 0
    out = capsys.readouterr().out
    assert "=HYPERLINK" in out and "\x1b" not in out and "\r" not in out and "\\x1b[2K" in out


def test_feedback_and_grades_go_on_past_a_bad_or_huge_notebook(toy, tmp_path, monkeypatch):
    course = fresh(toy["course"].root, tmp_path / "copy")
    bad = course.autograded / "x-garbage" / TOY
    bad.mkdir(parents=True)
    (bad / "toy.ipynb").write_text("[" * 100_000)  # nested too deeply for json
    (course.submitted / "x-garbage" / TOY).mkdir(parents=True)
    (course.submitted / "x-garbage" / TOY / "toy.ipynb").write_text("[" * 100_000)
    fb = {
        f.student: f for f in feedback.generate(course, [(TOY, "x-garbage"), (TOY, "sample-solution")], progress=False)
    }
    assert not fb["x-garbage"].ok and fb["sample-solution"].ok
    rep = grades.export(course)
    assert ("x-garbage", "unreadable submission") in {(a.student, a.kind) for a in rep["anomalies"]}
    monkeypatch.setattr(feedback, "MAX_NOTEBOOK_BYTES", 1000)  # a 47 MB notebook, scaled down
    f = feedback.generate(course, [(TOY, "sample-solution")], progress=False)[0]
    assert not f.ok and "more than" in f.problem and not list((course.feedback / "sample-solution").rglob("*.html"))
    monkeypatch.setattr(feedback, "MAX_NOTEBOOK_BYTES", 20 * 2**20)
    monkeypatch.setattr(feedback, "SECONDS_PER_PAGE", 0.001)  # a page that takes too long
    f = feedback.generate(course, [(TOY, "sample-solution")], progress=False)[0]
    assert not f.ok and not list((course.feedback / "sample-solution").rglob("*.html"))


def test_a_job_past_its_deadline_is_not_graded_and_autograde_fails(released, tmp_path, capsys):
    """The worker is killed, the submission marked not graded (never a silent 0), the summary
    written, and `make autograde` exits non-zero with a line per submission."""
    from coursegrader import cli

    course = fresh(released, tmp_path / "c", timeout=300)
    course.config.Sandbox.job_timeout = 5
    built = [s for s in samples.build_course(course) if s.name == "solution"]
    nb = built[0].notebooks["toy.ipynb"]
    for c in nb["cells"]:
        if nbutil.grade_id(c) == "answer_grad":
            c["source"] = nbutil.src(c) + "\nimport time\ntime.sleep(600)"  # stuck for longer than the deadline
    nbutil.write_nb(course.submitted / "x-stuck" / TOY / "toy.ipynb", nb)
    args = type(
        "Args",
        (),
        {"assignment": "", "student": "", "no_progress": True, "grader": "sandbox", "jobs": None, "unsafe": False},
    )()
    assert cli.cmd_autograde(course, args) == 1
    err = capsys.readouterr().err
    assert "NOT GRADED toy/x-stuck" in err and "deadline of 5 s" in err
    assert not records.load_records(course)[f"{TOY}/x-stuck"]["ok"]  # the summary is written
    grades.export(course)
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO((course.reports / "grades.csv").read_text()))}
    assert rows["x-stuck"]["score"] == "" and rows["x-stuck"]["status"].startswith("NOT GRADED")
    with course.gradebook() as gb:
        grades_ = gb.find_submission_notebook("toy", TOY, "x-stuck").grades
        assert grades_ and all(g.auto_score is None and g.needs_manual_grade for g in grades_)


def test_make_autograde_passes_grader_jobs_unsafe_as_flags_of_the_cli():
    """GRADER / JOBS / UNSAFE are read once, by make, and reach the workflow as flags (no env reads)."""
    import subprocess

    from coursegrader import cli

    out = subprocess.run(
        ["make", "-n", "autograde", "GRADER=nbgrader", "JOBS=3", "UNSAFE=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "autograde --grader nbgrader --jobs 3 --unsafe" in " ".join(out.replace("\\\n", " ").split())
    plain = subprocess.run(["make", "-n", "autograde"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "--grader" not in plain and "--unsafe" not in plain
    with pytest.raises(SystemExit):
        cli.main(["autograde", "--grader", "plain"])  # only sandbox | nbgrader
    assert "os.environ" not in (REPO / "grading" / "coursegrader" / "autograde.py").read_text()


def _graded_with_budget(released, tmp_path, budget: float, student: str, grad_suffix: str):
    """The toy's solution with ``grad_suffix`` after grad_f, graded alone under a time budget."""
    course = fresh(released, tmp_path / "c", timeout=30)
    course.config.Sandbox.submission_budget = budget
    nb = [s for s in samples.build_course(course) if s.name == "solution"][0].notebooks["toy.ipynb"]
    for c in nb["cells"]:
        if nbutil.grade_id(c) == "answer_grad":
            c["source"] = nbutil.src(c) + grad_suffix
    nbutil.write_nb(course.submitted / student / TOY / "toy.ipynb", nb)
    return course, autograde.grade_submissions(course, course.submissions(), progress=False)[0]


def test_a_submission_past_its_time_budget_is_not_graded(released, tmp_path):
    """Slow only when the grader calls: each graded call sleeps 3 s, at least 9 s in all against a
    budget of 5 s -- whatever the load, the rest is not run and the submission is NOT graded."""
    course, r = _graded_with_budget(
        released,
        tmp_path,
        5,
        "x-slow",
        (
            "\n_fast = grad_f\ndef grad_f(A, x):\n    import threading, time\n"
            "    if threading.current_thread().name == 'sg-agent':\n        time.sleep(3)\n    return _fast(A, x)\n"
        ),
    )
    assert not r.ok and "time budget of 5 s exhausted" in r.problem, r.problem
    with course.gradebook() as gb:  # never a silent 0: every grade waits for a person
        grades_ = gb.find_submission_notebook("toy", TOY, "x-slow").grades
        assert grades_ and all(g.auto_score is None and g.needs_manual_grade for g in grades_)
    fb = feedback.generate(course, [(TOY, "x-slow")], progress=False)[0]
    assert not fb.ok and not fb.pages and "not graded" in fb.problem  # no partial results handed out


def test_a_hidden_test_cut_by_the_time_budget_leaves_the_submission_not_graded(released, tmp_path):
    """The visible tests pass at once; the hidden test's first call (the identity, a hidden input) never
    returns: it is cut to what is left of a 15-s budget, and the submission is NOT graded (no hidden
    test is scored 0 for running out of the budget)."""
    course, r = _graded_with_budget(
        released,
        tmp_path,
        15,
        "x-hidden-slow",
        (
            "\n_fast = grad_f\ndef grad_f(A, x):\n    import time\n"
            "    if np.array_equal(A, np.eye(3)):\n        time.sleep(3600)\n    return _fast(A, x)\n"
        ),
    )
    assert not r.ok and "time budget of 15 s exhausted in the hidden tests: not graded" in r.problem, r.problem
    with course.gradebook() as gb:
        grades_ = gb.find_submission_notebook("toy", TOY, "x-hidden-slow").grades
        assert grades_ and all(g.auto_score is None and g.needs_manual_grade for g in grades_)


def test_a_submission_past_its_cpu_budget_is_not_graded(released, tmp_path):
    """CPU, not time: the graded call burns 5 CPU seconds in busy children and threads (each under the
    per-process limit) against the kernel tree's budget of 4 (c.Sandbox.cpu_seconds), counted by the
    cgroup; timeouts far away, so whatever the load the budget is what stops it: NOT graded."""
    course = fresh(released, tmp_path / "c", timeout=600)
    course.config.Sandbox.cpu_seconds = 4
    nb = [s for s in samples.build_course(course) if s.name == "solution"][0].notebooks["toy.ipynb"]
    for c in nb["cells"]:
        if nbutil.grade_id(c) == "answer_grad":
            c["source"] = nbutil.src(c) + (
                "\n_fast = grad_f\ndef grad_f(A, x):\n    import os, threading, time\n"
                "    if threading.current_thread().name == 'sg-agent':\n"
                "        def burn(clock, s):\n            while clock() < s:\n                pass\n"
                "        kids = [pid for pid in (os.fork() for _ in range(5)) if pid or (burn(time.process_time, 1.0)"
                " or os._exit(0))]\n"
                "        th = [threading.Thread(target=burn, args=(time.thread_time, 0.3)) for _ in range(2)]\n"
                "        [t.start() for t in th]; [t.join() for t in th]; [os.waitpid(k, 0) for k in kids]\n"
                "    return _fast(A, x)\n"
            )
    nbutil.write_nb(course.submitted / "x-burn" / TOY / "toy.ipynb", nb)
    r = autograde.grade_submissions(course, course.submissions(), progress=False)[0]
    assert not r.ok and "CPU budget of 4 s (whole kernel tree) exhausted" in r.problem, r.problem


FAKE_WORKER = """
import json, sys, time
for line in sys.stdin:
    job = json.loads(line)
    if job["student"] == "stuck":
        time.sleep(3600)
    print(json.dumps({"student": job["student"], "assignment": job["assignment"], "notebook": job["notebook"],
                      "verdicts": [], "manual": [], "flags": [], "nb": "{}", "seconds": 0.0, "calls": 0,
                      "call_seconds": 0.0, "score": 1.0, "max_score": 1.0}), flush=True)
"""


def test_the_batch_kills_a_stuck_worker_and_goes_on(monkeypatch):
    import subprocess
    import sys

    from sandboxgrader import batch

    monkeypatch.setattr(
        batch,
        "_spawn",
        lambda i, o: subprocess.Popen(
            [sys.executable, "-c", FAKE_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        ),
    )
    jobs = [batch.Job(s, "a", "nb", "src", "sub") for s in ("s1", "stuck", "s2", "s3")]
    out = {r["student"]: r for r in batch.grade_many(jobs, 1, batch.Options(job_timeout=2))}
    assert set(out) == {"s1", "stuck", "s2", "s3"}
    assert "deadline of 2 s" in out["stuck"]["error"] and out["stuck"]["nb"] is None
    assert all(out[s]["score"] == 1.0 for s in ("s1", "s2", "s3"))


def test_unknown_sandbox_settings_are_refused(released, tmp_path):
    from coursegrader.sandboxed import sandbox_options

    course = fresh(released, tmp_path / "c")
    course.config.Sandbox.memroy = 2**30
    with pytest.raises(ValueError, match="memroy"):
        sandbox_options(course, 10, 10, False)
    course.config.Sandbox.pop("memroy")
    course.config.Sandbox.memory = 2**30
    assert sandbox_options(course, 10, 10, False).limits["memory"] == 2**30


# ---------------------------------------------------------------- collect: hostile and broken downloads


def _patch(raw: bytes, name: bytes, local_off: int, central_off: int, value: bytes) -> bytes:
    """Overwrite a field of one member's local and central headers (what zipfile will not write)."""
    raw = bytearray(raw)
    for sig, off, name_at in ((b"PK\x03\x04", local_off, 30), (b"PK\x01\x02", central_off, 46)):
        at = 0
        while (at := raw.find(sig, at)) >= 0:
            if raw[at + name_at : at + name_at + len(name)] == name:
                raw[at + off : at + off + len(value)] = value
            at += 4
    return bytes(raw)


def test_collect_reports_each_broken_file_and_collects_the_rest(released, tmp_path, monkeypatch):
    course = fresh(released, tmp_path / "c")
    good = _nb_bytes(course)
    gid_list = json.loads(good)
    gid_list["cells"][0].setdefault("metadata", {})["nbgrader"] = {"grade_id": ["a", "list"]}
    meta_list = json.loads(good)
    meta_list["cells"][1]["metadata"] = [1, 2]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:

        def put(name, data, **kw):
            zi = zipfile.ZipInfo(name, date_time=kw.get("when", (2025, 3, 1, 12, 0, 0)))
            zi.compress_type = kw.get("compress", zipfile.ZIP_STORED)
            if "attr" in kw:
                zi.external_attr = kw["attr"]
            z.writestr(zi, data)

        put("Ann Lee_101_assignsubmission_file_/toy.ipynb", good)
        put("Bo Ek_102_assignsubmission_file_/toy.ipynb", good)  # encrypted
        put("Cy Dee_103_assignsubmission_file_/toy.ipynb", good.replace(b"grad", b"GRAD"))  # CRC patched below
        put("Di Eve_104_assignsubmission_file_/toy.ipynb", good, when=(2025, 13, 1, 0, 0, 0))  # bad date
        put("Ed Fox_105_assignsubmission_file_/toy.ipynb", good)  # compression 99
        put("Fa Gu_106_assignsubmission_file_/toy.ipynb", b"[" * 100_000 + b"]" * 100_000)  # nested JSON
        put("Gi Ho_107_assignsubmission_file_/toy.ipynb", nbutil.dumps_nb(gid_list).encode())
        put("Hu Io_108_assignsubmission_file_/toy.ipynb", nbutil.dumps_nb(meta_list).encode())
        put(
            "Ix Ju_109_assignsubmission_file_/toy.ipynb", b"../../solutions/toy/toy.ipynb", attr=(0o120777 << 16)
        )  # a symlink
    raw = buf.getvalue()
    raw = raw.replace(good.replace(b"grad", b"GRAD"), good.replace(b"grad", b"GRAX"))  # corrupt data
    raw = _patch(raw, b"Ed Fox_105_assignsubmission_file_/toy.ipynb", 8, 10, (99).to_bytes(2, "little"))
    raw = _patch(raw, b"Bo Ek_102_assignsubmission_file_/toy.ipynb", 6, 8, (1).to_bytes(2, "little"))
    (tmp_path / "dl.zip").write_bytes(raw)
    items = collect.collect(course, tmp_path / "dl.zip")
    st = {i.student or i.origin.split("!")[1].split("_")[0]: (i.status, i.reason) for i in items}
    assert st["ann_lee"][0] == "collected"
    for who, why in [
        ("Bo Ek", "encrypted"),
        ("Cy Dee", "CRC"),
        ("Di Eve", "invalid date"),
        ("Ed Fox", "compression"),
        ("fa_gu", "nested too deeply"),
        ("Ix Ju", "symbolic link"),
    ]:
        assert st[who][0] == "bad" and why in st[who][1], (who, st[who])
    assert st["gi_ho"][0] in ("collected", "bad") and st["hu_io"][0] in ("collected", "bad")
    assert len(items) == 9 and (course.reports / "collect.csv").read_text().count("\n") == 10


def test_collect_budget_stops_zip_bombs_without_holding_them(released, tmp_path, monkeypatch):
    course = fresh(released, tmp_path / "c")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        for k in range(4):
            z.writestr(f"part{k}.ipynb", b"\0" * (3 * 2**20))  # 12 MiB expanded, a few KB packed
    with zipfile.ZipFile(tmp_path / "dl.zip", "w") as z:
        z.writestr("Ann Lee_101_assignsubmission_file_/toy.ipynb", _nb_bytes(course))
        z.writestr("Bo Ek_102_assignsubmission_file_/upload.zip", inner.getvalue())
    monkeypatch.setattr(collect, "MAX_EXPANDED", 8 * 2**20)
    items = collect.collect(course, tmp_path / "dl.zip")
    bomb = [i for i in items if "upload.zip" in i.origin]
    assert any(i.status == "bad" and "zip bomb" in i.reason for i in bomb)
    assert (course.submitted / "ann_lee" / TOY / "toy.ipynb").exists()
    monkeypatch.setattr(collect, "MAX_EXPANDED", 2**30)
    monkeypatch.setattr(collect, "MAX_MEMBERS", 3)
    items = collect.collect(course, tmp_path / "dl.zip")
    assert any(i.status == "bad" and "more than 3 files" in i.reason for i in items)


def _upload(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2099, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def test_files_in_an_upload_belong_to_the_uploader_at_its_lms_time(released, tmp_path):
    """Canvas, Moodle and plain folders: a zip named and dated to pass as other students' work
    files everything under its uploader, at the time the LMS gave the upload."""
    course = fresh(released, tmp_path / "c")
    victim, blank = _nb_bytes(course), _nb_bytes(course, "raise NotImplementedError()")
    canvas = tmp_path / "canvas"
    canvas.mkdir()
    (canvas / "lee_12345_67890_toy.ipynb").write_bytes(victim)
    (canvas / "kim_222_333_toy.zip").write_bytes(
        _upload({"lee_12345_67890_toy.ipynb": blank, "ghost_999_999_toy.ipynb": blank})
    )
    os.utime(canvas / "lee_12345_67890_toy.ipynb", (1.7e9, 1.7e9))
    os.utime(canvas / "kim_222_333_toy.zip", (1.7e9 + 60, 1.7e9 + 60))
    items = collect.collect(course, canvas)
    assert (course.submitted / "lee" / TOY / "toy.ipynb").read_bytes() == victim
    assert not (course.submitted / "ghost").exists()
    assert (course.submitted / "kim" / TOY / "toy.ipynb").read_bytes() == blank
    assert not (course.submitted / "kim" / TOY / "timestamp.txt").read_text().startswith("2099")
    assert {i.student for i in items if "kim_222_333_toy.zip" in i.origin} == {"kim"}
    newer = tmp_path / "canvas2"  # the victim's real resubmission is still taken
    newer.mkdir()
    (newer / "lee_12345_67899_toy-1.ipynb").write_bytes(victim + b" ")
    os.utime(newer / "lee_12345_67899_toy-1.ipynb", (1.7e9 + 120, 1.7e9 + 120))
    assert [i.status for i in collect.collect(course, newer)] == ["collected"]

    with zipfile.ZipFile(tmp_path / "moodle.zip", "w") as z:
        z.writestr(zipfile.ZipInfo("Ann Lee_101_assignsubmission_file_/toy.ipynb", (2025, 3, 1, 9, 0, 0)), victim)
        z.writestr(
            zipfile.ZipInfo("Bo Ek_102_assignsubmission_file_/mine.zip", (2025, 3, 1, 10, 0, 0)),
            _upload({"Ann Lee_101_assignsubmission_file_/toy.ipynb": blank}),
        )
    items = collect.collect(course, tmp_path / "moodle.zip")
    assert (course.submitted / "ann_lee" / TOY / "toy.ipynb").read_bytes() == victim
    assert (course.submitted / "bo_ek" / TOY / "timestamp.txt").read_text().startswith("2025-03-01")

    plain = tmp_path / "plain"
    (plain / "s1").mkdir(parents=True)
    (plain / "s2").mkdir()
    (plain / "s1" / "toy.ipynb").write_bytes(victim)
    (plain / "s2" / "work.zip").write_bytes(_upload({"s1/toy.ipynb": blank}))
    (plain / "s3").mkdir()
    (plain / "s3" / "toy.ipynb").symlink_to(REPO_SOLUTION)  # a link to solutions/ is refused
    items = collect.collect(course, plain)
    assert (course.submitted / "s1" / TOY / "toy.ipynb").read_bytes() == victim
    assert (course.submitted / "s2" / TOY / "toy.ipynb").read_bytes() == blank
    assert [i.reason for i in items if "s3" in i.origin] == ["a symbolic link: refused"]
    assert not (course.submitted / "s3").exists()
