"""CI of the real assignments (`make test-grading`), in ONE autograde batch:

for every assignment the solution earns full marks, the blank release 0, the planted mistakes of
grading/mutations.toml exactly their expected scores, a correct answer with `warnings.warn` full marks,
a copy-pasted cell (duplicated grade_id) does not abort the batch; feedback has no hidden-test text;
the committed release equals a fresh generation and holds no solution code; the student repository
holds no solutions, grading state or hidden tests.

Samples are generated from the committed release (what students get) and the source's solutions,
never hand-edited. Everything runs in a temporary course with its own gradebook.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from coursegrader import autograde, feedback, grades, nbutil, release, samples
from coursegrader.settings import GRADING, Course

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

REAL = Course.default()
ASSIGNMENTS = REAL.assignments()  # every folder of solutions/ with a notebook: a new assignment joins by itself
KINDS = {"wrong_sign", "missing_term", "transposed", "wrong_shape"}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    (root / "solutions").symlink_to(REAL.source, target_is_directory=True)
    course = Course.at(root)
    generated = {r.assignment: r for r in release.generate(course)}
    built = []
    for aid in course.assignments():
        committed = REAL.release / aid
        use = (
            REAL.release
            if sorted(p.name for p in committed.glob("*.ipynb")) == sorted(p.name for p in course.source_notebooks(aid))
            else course.release
        )
        built += samples.build_course(course, release_dir=use, spec_file=GRADING / "mutations.toml", assignments=[aid])
    expected = samples.write(built, course.submitted)
    results = autograde.grade_submissions(course, course.submissions(), progress=False)
    fb = feedback.generate(course, [(r.assignment, r.student) for r in results], progress=False)
    reports = grades.export(course)
    return dict(
        course=course,
        generated=generated,
        samples=built,
        expected=expected,
        results={r.key: r for r in results},
        feedback={f"{f.assignment}/{f.student}": f for f in fb},
        reports=reports,
    )


def test_every_source_has_a_committed_release_and_back():
    assert len(ASSIGNMENTS) >= 6, ASSIGNMENTS
    released = sorted(p.name for p in REAL.release.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert released == ASSIGNMENTS


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_source_notebook_lints_clean(aid):
    assert release.lint_course(REAL, [aid]) == {aid: []}


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_committed_release_equals_fresh_generation(batch, aid):
    r = batch["generated"].get(aid)
    assert r is not None and r.success, r.error[-2000:] if r else f"{aid} not generated"
    diffs = release.compare(batch["course"].release / aid, REAL.release / aid)
    assert diffs == [], "assignments/ is stale, run `make release`:\n" + "\n".join(diffs)


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_committed_release_has_no_solution_or_hidden_tests(aid):
    assert release.check(REAL, [aid]) == {aid: []}


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_mutation_spec_covers_the_typical_mistakes(batch, aid):
    kinds = {s["kind"] for s in samples.load_spec(GRADING / "mutations.toml").get(aid, [])}
    assert len(kinds & KINDS) >= 3, f"{aid}: mutations.toml plants only {sorted(kinds)}"


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_every_sample_earns_exactly_its_expected_score(batch, aid):
    rows, wrong = [], []
    for s in [s for s in batch["samples"] if s.assignment == aid]:
        r = batch["results"][f"{aid}/{s.student}"]
        failed = sorted(g for g, (got, mx) in r.cells.items() if got != mx)
        rows.append(f"  {s.name:14s} expected {s.expected:5g} got {r.score:5g}  failing {failed} {r.problem}")
        if r.score != s.expected or not r.ok:
            wrong.append(s.name)
    assert len(rows) >= 7, f"{aid}: only {len(rows)} samples"
    assert not wrong, f"{aid}: {wrong}\n" + "\n".join(rows)


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_planted_mistakes_break_exactly_the_declared_tests(batch, aid):
    problems = []
    for s in [s for s in batch["samples"] if s.assignment == aid and s.breaks and s.name != "blank"]:
        r = batch["results"][f"{aid}/{s.student}"]
        failed = sorted(g for g, (got, mx) in r.cells.items() if got != mx)
        if failed != s.breaks:
            problems.append(f"{s.name}: declared {s.breaks}, failing {failed}")
    assert not problems, "\n".join(problems)


def test_batch_was_not_aborted(batch):
    assert len(batch["results"]) == len(batch["samples"])
    bad = {k: r.problem for k, r in batch["results"].items() if not r.ok}
    assert not bad, bad


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_feedback_has_no_hidden_tests_and_no_solution_text(batch, aid):
    course = batch["course"]
    secret = feedback.secrets(course, aid)
    seen = 0
    for key, f in batch["feedback"].items():
        if not key.startswith(aid + "/"):
            continue
        assert f.ok and f.pages, (key, f.problem)
        own = {line.strip() for line in feedback.submitted_text(course, *key.split("/")).split("\n")}
        for page in f.pages:
            text = nbutil.html_text(Path(page).read_text(encoding="utf-8"))
            lines = {line.strip() for line in text.split("\n")}
            hidden = (secret["hidden"] & lines) - own  # a solution line may also sit in a hidden test
            assert not hidden, (key, sorted(hidden)[:3])
            assert "Traceback (most recent call last)" not in text, key
            if key.endswith("/sample-blank"):
                assert not secret["solution"] & lines, (key, sorted(secret["solution"] & lines)[:3])
            seen += 1
    assert seen >= 7


def test_anomaly_report(batch):
    kinds = {}
    for a in batch["reports"]["anomalies"]:
        kinds.setdefault(a.student, set()).add(a.kind)
    assert "duplicated grade_id" in kinds.get("sample-dupe", set())
    assert "missing cells" in kinds.get("sample-dupe", set())
    assert not kinds.get("sample-solution"), kinds.get("sample-solution")
    course = batch["course"]
    csv = (course.reports / "grades.csv").read_text()
    # one row per (assignment, student) of the gradebook: every student against every assignment
    assert csv.count("\n") == len(ASSIGNMENTS) * len({s.student for s in batch["samples"]}) + 1
    assert (course.reports / "histogram.png").read_bytes()[:4] == b"\x89PNG"


def test_student_repo_has_no_private_material(tmp_path):
    from coursegrader import studentrepo

    dest = tmp_path / "public"
    rep = studentrepo.build(REAL, dest)
    assert rep.problems == [] and rep.missing == [], rep.problems + rep.missing
    for name in ("assignments", "utils", "Makefile", "requirements.txt", "environment.yml"):
        assert (dest / name).exists(), name
    for private in ("solutions", "grading", "tests"):
        assert not (dest / private).exists(), private
    assert not list(dest.rglob("*.db")) and not list(dest.rglob("__pycache__"))
    for aid in ASSIGNMENTS:
        assert (dest / "assignments" / aid / f"{aid}.ipynb").exists(), aid
    text = "\n".join(p.read_text(errors="ignore") for p in dest.rglob("*") if p.is_file())
    assert "BEGIN HIDDEN TESTS" not in text and "### BEGIN SOLUTION" not in text
    dry = subprocess.run(["make", "-n", "lab"], cwd=dest, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    with pytest.raises(ValueError, match="outside"):
        studentrepo.build(REAL, REAL.root / "public")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        studentrepo.build(REAL, tmp_path / "busy")


def _make(dest, *args, env=None):
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=dest, capture_output=True, text=True, env=env, timeout=1800
    )


def test_student_repo_makefile_offers_only_what_exists_there(tmp_path):
    """The public tree's `make help` lists only targets that work there, `make test` runs its suites
    (gradcheck's tests and the lectures), and its gradcheck suite passes (run with this .venv)."""
    import os
    import re
    import sys

    from coursegrader import studentrepo

    dest = tmp_path / "public"
    studentrepo.build(REAL, dest)
    listed = _make(dest, "help")
    assert listed.returncode == 0, listed.stderr
    targets = re.findall(r"^  make (\S+)", listed.stdout, re.M)
    assert {"install", "lab", "test", "test-utils", "test-lectures", "lint"} <= set(targets), targets
    for private in (
        "formgrader",
        "test-repo",
        "test-grading",
        "test-browser",
        "bench",
        "bench-grading",
        "bench-sandbox-image",
        "release",
        "autograde",
        "site",
        "hub",
        "test-hub",
    ):
        assert private not in targets, f"the public `make help` offers {private}, which needs private files"
    for target in targets:
        dry = _make(dest, "-n", target)
        assert dry.returncode == 0, f"`make -n {target}` fails in the public tree: {dry.stderr}"
    dry = _make(dest, "-n", "test")
    assert "pytest tests --doctest-modules gradcheck" in dry.stdout and "--nbval" in dry.stdout, dry.stdout
    assert "grading" not in dry.stdout and "tests/" not in dry.stdout.replace("pytest tests --doctest", ""), dry.stdout
    # the public suite itself: gradcheck's tests and doctests, in the public tree, with this environment
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = _make(dest, f"VENV={venv}", "-o", "install", "test-utils", env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert re.search(r"\d+ passed", run.stdout) and " failed" not in run.stdout, run.stdout[-2000:]


def test_public_makefile_drops_only_the_blocks_whose_files_are_absent(tmp_path):
    from coursegrader.studentrepo import public_makefile

    (tmp_path / "here").mkdir()
    text = (
        "a: ## kept\nifneq ($(wildcard here),)\nb: ## kept too\nendif\n"
        "ifneq ($(wildcard gone/x.py also_gone),)\nc: ## dropped\nendif\nd:\n"
    )
    assert public_makefile(text, tmp_path) == "a: ## kept\nifneq ($(wildcard here),)\nb: ## kept too\nendif\nd:\n"
    with pytest.raises(ValueError, match="endif"):
        public_makefile("ifneq ($(wildcard gone),)\nc:\n", tmp_path)


def test_grading_state_is_git_ignored():
    paths = [
        "grading/gradebook.db",
        "grading/submitted/s1/hw1_matrix_gradients/hw1_matrix_gradients.ipynb",
        "grading/autograded/s1/hw1_matrix_gradients/hw1_matrix_gradients.ipynb",
        "grading/feedback/s1/hw1_matrix_gradients/hw1_matrix_gradients.html",
        "grading/reports/grades.csv",
        "grading/.work/samples/expected.json",
        "grading/release_solutions/hw1_matrix_gradients/hw1_matrix_gradients.ipynb",
    ]
    out = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REAL.root, capture_output=True, text=True)
    ignored = set(out.stdout.split())
    assert ignored == set(paths), sorted(set(paths) - ignored)
    kept = subprocess.run(
        [
            "git",
            "check-ignore",
            "--no-index",
            "grading/nbgrader_config.py",
            "grading/mutations.toml",
            "grading/coursegrader/cli.py",
        ],
        cwd=REAL.root,
        capture_output=True,
        text=True,
    )
    assert kept.stdout.strip() == "", kept.stdout
