"""Course-wide settings and notebook helpers shared by the scripts and the repo tests.

The one source of truth for links is ``course.toml`` (repository slug and branch).
"""
from __future__ import annotations

import json
import os
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def settings() -> dict:
    """Return ``{"slug": ..., "branch": ...}`` read from ``course.toml``."""
    with open(ROOT / "course.toml", "rb") as fh:
        repo = tomllib.load(fh)["repository"]
    for key in ("slug", "branch"):
        if not isinstance(repo.get(key), str) or not repo[key]:
            raise ValueError(f"course.toml: [repository] {key} must be a non-empty string")
    if repo["slug"].count("/") != 1:
        raise ValueError(f"course.toml: slug must be 'owner/name', got {repo['slug']!r}")
    return {"slug": repo["slug"], "branch": repo["branch"]}


def lecture_notebooks() -> list[Path]:
    return sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))


def release_notebooks() -> list[Path]:
    return sorted((ROOT / "assignments").glob("*/*.ipynb"))


def source_notebooks() -> list[Path]:
    return sorted((ROOT / "solutions").glob("*/*.ipynb"))


def colab_path(nb: Path) -> str:
    """The repo path a student opens on Colab: a solution's badge points at its release."""
    rel = nb.resolve().relative_to(ROOT)
    if rel.parts[0] == "solutions":
        rel = Path("assignments", *rel.parts[1:])
    return rel.as_posix()


def colab_url(nb: Path) -> str:
    s = settings()
    return f"https://colab.research.google.com/github/{s['slug']}/blob/{s['branch']}/{colab_path(nb)}"


def pip_spec() -> str:
    s = settings()
    return f"gradcheck @ git+https://github.com/{s['slug']}@{s['branch']}#subdirectory=utils"


def read_nb(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_nb(path: Path, nb: dict) -> None:
    """Write atomically (temp file + rename) in the layout Jupyter itself writes."""
    text = json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; notebooks are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
