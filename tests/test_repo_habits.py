"""The habits of a well-kept repository: one tool configuration (pyproject.toml), pre-commit running
ruff and the repository's own "generated copy is current" checks, the documents a maintainer needs."""

import re
import subprocess
import tomllib

import yaml

from course import ROOT
from test_environment import requirements

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PRECOMMIT = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())


def hooks():
    return {h["id"]: (repo, h) for repo in PRECOMMIT["repos"] for h in repo["hooks"]}


def test_pytest_paths_come_from_pyproject_not_from_test_files():
    ini = PYPROJECT["tool"]["pytest"]["ini_options"]
    for path in ini["pythonpath"] + ini["testpaths"]:
        assert (ROOT / path).is_dir(), path
    setters = re.compile(r"^\s*sys\.path(\.insert|\.append|\[:0\]\s*=)|^\s*os\.environ\[.PYTHONPATH.\]\s*=", re.M)
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in sorted((ROOT / "tests").rglob("*.py"))
        if setters.search(p.read_text(encoding="utf-8"))
    ]
    assert not offenders, f"set sys.path in pyproject.toml's [tool.pytest.ini_options] pythonpath: {offenders}"


def test_ruff_is_configured_pinned_and_run_by_make_lint():
    ruff = PYPROJECT["tool"]["ruff"]
    assert ruff["line-length"] == 120
    assert set(ruff["lint"]["select"]) >= {"E", "F", "I", "B", "UP"}
    assert "*.ipynb" in ruff["extend-exclude"] and "assignments" in ruff["extend-exclude"]
    assert "ruff" in requirements(), "requirements.txt must pin ruff (environment.yml too: test_environment.py)"
    dry = subprocess.run(["make", "-n", "lint"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "ruff check ." in dry.stdout and "ruff format --check ." in dry.stdout, dry.stdout
    whole = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    assert "ruff check ." in whole.stdout, "make test must run make lint"


def test_precommit_runs_ruff_at_the_pinned_version_and_the_generated_copy_checks():
    found = hooks()
    for hook in (
        "ruff-check",
        "ruff-format",
        "check-json",
        "end-of-file-fixer",
        "trailing-whitespace",
        "stamps-current",
        "readme-tables-current",
        "release-current",
    ):
        assert hook in found, f".pre-commit-config.yaml has no hook {hook}"
    assert not [h for h in found if "nbstripout" in h or "strip" in found[h][0]["repo"]], (
        "no nbstripout: lecture outputs are stored on purpose"
    )
    ruff_repo, _ = found["ruff-check"]
    assert ruff_repo["rev"] == "v" + requirements()["ruff"], "the ruff hook must run the version requirements.txt pins"
    for hook in ("end-of-file-fixer", "trailing-whitespace"):
        assert re.search(found[hook][1]["exclude"], "lectures/01_rank_and_regularization.ipynb")
    assert found["stamps-current"][1]["entry"].endswith("scripts/stamp_badges.py --check")
    assert found["readme-tables-current"][1]["entry"].endswith("scripts/stamp_badges.py --check --readme")
    assert found["release-current"][1]["entry"] == "make release-check"
    for hook in ("stamps-current", "readme-tables-current", "release-current"):
        entry = found[hook][1]["entry"].split()
        if entry[0] == "make":
            assert subprocess.run(["make", "-n", *entry[1:]], cwd=ROOT, capture_output=True).returncode == 0
        else:
            assert (ROOT / entry[1]).is_file() and (ROOT / entry[0]).parent.name == "bin", entry


def test_the_maintainers_documents_exist_and_say_what_they_must():
    licence = (ROOT / "LICENSE").read_text()
    assert "MIT License" in licence and "CC BY 4.0" in licence and "lectures/" in licence
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    for recipe in (
        "### Add a lecture",
        "### Add an assignment",
        "### Add a gradcheck diagnosis",
        "### Add an LMS download layout",
        "### Change a sandbox limit",
        "## STYLE",
    ):
        assert recipe in contributing, recipe
    assert "grading/mutations.toml" in contributing and "DIAGNOSES" in contributing
    architecture = (ROOT / "ARCHITECTURE.md").read_text()
    assert "coursegrader  →  sandboxgrader  →  coursetests  →  gradcheck" in architecture
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and re.search(r"^## \[\d{4}\.\d+\] - \d{4}-\d\d-\d\d$", changelog, re.M)
