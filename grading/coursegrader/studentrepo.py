"""`make student-repo DEST=…`: the public tree students clone, built from an ALLOW-list.

Only what is listed in PUBLIC is copied (lectures, assignments, utils, README, environment files,
the Makefile for `make lab`, the scripts it calls); solutions/, grading/, the instructor's tests/ and
every gradebook therefore never get there, whatever is added to the private repository later. The
written tree is then scanned: a solution or hidden-test marker, a hidden-test line or (in
assignments/) a solution line fails the command.

The Makefile is copied without its blocks ``ifneq ($(wildcard <paths>),) … endif`` whose paths are
not in the public tree (formgrader, test-repo, the benchmarks): `make help` there lists only targets
that work, and `make test` runs the suites the public tree has.

DEST must be empty, new, or a clone of the public repository (it has `.git`): then everything but
`.git` is replaced, so deleted files disappear from the public repo too.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import nbutil
from .settings import Course

PUBLIC = [
    "README.md",
    "LICENSE",
    "LICENSE.md",
    "LICENSE.txt",
    "CITATION.cff",
    ".gitignore",
    "requirements.txt",
    "environment.yml",
    "Makefile",
    "pyproject.toml",
    "course.toml",
    "apt.txt",
    "postBuild",
    "runtime.txt",
    "binder",
    "lectures",
    "assignments",
    "utils",
    "coursetests",
    "scripts",
]
REQUIRED = ["assignments", "utils", "coursetests", "Makefile", "requirements.txt", "environment.yml"]
SKIP_NAMES = {
    "__pycache__",
    ".ipynb_checkpoints",
    ".pytest_cache",
    ".hypothesis",
    "build",
    "dist",
    ".DS_Store",
    ".git",
    ".venv",
    "node_modules",
}
SKIP_SUFFIXES = (".pyc", ".egg-info", ".tmp", ".db", ".sqlite")
PRIVATE = ("solutions", "grading", "tests")  # never public, even if listed by mistake


@dataclass
class RepoReport:
    dest: Path
    files: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def _skip(path: Path) -> bool:
    return path.name in SKIP_NAMES or path.name.endswith(SKIP_SUFFIXES)


def _safe_dest(repo: Path, dest: Path, force: bool) -> None:
    repo, dest = repo.resolve(), dest.resolve()
    if dest == repo or repo in dest.parents or dest in repo.parents or dest == Path(dest.anchor):
        raise ValueError(f"DEST={dest} must be outside the course repository {repo}")
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"DEST={dest} is a file")
    if dest.exists() and any(dest.iterdir()) and not (dest / ".git").exists() and not force:
        raise ValueError(f"DEST={dest} is not empty and not a git clone; use FORCE=1 to replace its content")


def build(course: Course, dest: Path, force: bool = False) -> RepoReport:
    repo = course.root
    dest = Path(dest)
    _safe_dest(repo, dest, force)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.iterdir():
        if old.name == ".git":
            continue
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    rep = RepoReport(dest.resolve())
    for name in PUBLIC:
        if name in PRIVATE:
            continue
        src = repo / name
        if not src.exists():
            if name in REQUIRED:
                rep.missing.append(f"{name}: not in the repository")
            continue
        if src.is_file():
            rep.files.append(_copy(src, dest / name))
            continue
        for root, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if not _skip(Path(d)))
            for f in sorted(files):
                p = Path(root) / f
                if not _skip(p) and not p.is_symlink():
                    rep.files.append(_copy(p, dest / p.relative_to(repo)))
    if (dest / "Makefile").is_file():
        nbutil.write_atomic(dest / "Makefile", public_makefile((dest / "Makefile").read_text(), dest))
    if not (repo / "README.md").exists():
        rep.warnings.append("README.md missing: the public repository has no front page")
    if not any((repo / n).exists() for n in ("LICENSE", "LICENSE.md", "LICENSE.txt")):
        rep.warnings.append("no LICENSE file: students may not reuse the material")
    rep.problems = scan(course, dest)
    return rep


_GUARD = re.compile(r"^ifneq \(\$\(wildcard ([^)]*)\),\)\s*$")


def public_makefile(text: str, tree: Path) -> str:
    """The Makefile without its ``ifneq ($(wildcard <paths>),)`` … ``endif`` blocks (not nested) whose
    paths do not exist in ``tree``: make would skip them there anyway, but `make help` reads the text."""
    out, dropping = [], None
    for line in text.splitlines(keepends=True):
        m = _GUARD.match(line)
        if dropping is None and m:
            present = any(list(tree.glob(p)) for p in m.group(1).split())
            dropping = not present
            if dropping:
                continue
        elif dropping is not None and line.strip() == "endif":
            was, dropping = dropping, None
            if was:
                continue
        if not dropping:
            out.append(line)
    if dropping is not None:
        raise ValueError("Makefile: an `ifneq ($(wildcard …),)` block has no `endif`")
    return "".join(out)


def _copy(src: Path, dst: Path) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755 if os.access(src, os.X_OK) else 0o644)
    return dst.as_posix()


def scan(course: Course, tree: Path) -> list[str]:
    """Private folders, solution / hidden-test markers anywhere, and in assignments/<id>/ any line of that
    assignment's solution or hidden-test regions (empty = clean).

    Lines of other files are not compared with the regions: generic code such as
    `rng = np.random.default_rng(3)` legitimately appears in lectures too.
    """
    from .release import leaks

    known = set(course.assignments())
    problems = []
    for p in sorted(tree.rglob("*")):
        if p.is_dir() or ".git" in p.relative_to(tree).parts:
            continue
        rel = p.relative_to(tree).as_posix()
        parts = rel.split("/")
        if parts[0] in PRIVATE:
            problems.append(f"{rel}: private folder in the public tree")
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        tooling = p.suffix == ".py" and parts[0] in ("scripts", "utils")  # may name the markers
        for marker in (nbutil.BEGIN_SOLUTION, nbutil.BEGIN_HIDDEN):  # any number of #, as nbgrader
            if marker in text and not tooling:
                problems.append(f"{rel}: contains '{marker}'")
        if parts[0] == "assignments" and len(parts) >= 3 and p.suffix == ".ipynb":
            source = course.source / parts[1] / p.name
            if parts[1] not in known or not source.exists():
                problems.append(f"{rel}: no source notebook (not made by `make release`)")
                continue
            problems += [f"{rel}: {x}" for x in leaks(nbutil.read_nb(source), nbutil.read_nb(p))]
    return problems
