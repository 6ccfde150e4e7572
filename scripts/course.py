"""Course-wide settings and notebook helpers shared by the scripts and the repo tests.

The one source of truth for links is ``course.toml`` (repository slug and branch).
"""
from __future__ import annotations

import json
import os
import re
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


def course_id() -> str:
    """nbgrader's course id (``[course] id``): hub exchange, formgrader, JupyterHub groups, hub/k8s/."""
    with open(ROOT / "course.toml", "rb") as fh:
        cid = tomllib.load(fh).get("course", {}).get("id")
    if not isinstance(cid, str) or not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", cid):
        raise ValueError(f"course.toml: [course] id must be a short lowercase name, got {cid!r}")
    return cid


def hub_settings() -> dict:
    """``[hub]`` of course.toml: ``url`` (may be empty: no hub links) and ``exchange`` (a folder)."""
    with open(ROOT / "course.toml", "rb") as fh:
        hub = tomllib.load(fh).get("hub", {})
    url, exchange = hub.get("url", ""), hub.get("exchange", "")
    if not isinstance(url, str) or (url and not re.match(r"^https?://[^/\s]+", url)):
        raise ValueError(f"course.toml: [hub] url must be empty or http(s)://host[/path], got {url!r}")
    if not isinstance(exchange, str) or not exchange.startswith("/"):
        raise ValueError(f"course.toml: [hub] exchange must be an absolute folder, got {exchange!r}")
    return {"url": url.rstrip("/"), "exchange": exchange}


def nbgitpuller_url(nb: Path, hub_url: str | None = None) -> str:
    """The link that clones (or updates) the public repo into the student's hub home and opens `nb`.

    nbgitpuller merges upstream changes into the student's copy and never overwrites a file the
    student edited (hub/README.md)."""
    from urllib.parse import quote, urlencode
    s, hub = settings(), (hub_settings()["url"] if hub_url is None else hub_url.rstrip("/"))
    if not hub:
        raise ValueError("course.toml: [hub] url is empty: no hub to link to")
    name = s["slug"].split("/")[1]
    query = urlencode({"repo": f"https://github.com/{s['slug']}", "branch": s["branch"],
                       "urlpath": f"lab/tree/{name}/{colab_path(nb)}"}, quote_via=quote)
    return f"{hub}/hub/user-redirect/git-pull?{query}"


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
