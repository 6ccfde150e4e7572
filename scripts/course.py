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
from urllib.parse import quote

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
    query = urlencode(
        {
            "repo": f"https://github.com/{s['slug']}",
            "branch": s["branch"],
            "urlpath": f"lab/tree/{name}/{colab_path(nb)}",
        },
        quote_via=quote,
    )
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


def binder_url(nb: Path) -> str:
    """The notebook opened in JupyterLab on mybinder.org (the whole repository is there)."""
    s = settings()
    rel = colab_path(nb)
    return f"https://mybinder.org/v2/gh/{s['slug']}/{s['branch']}?urlpath={quote('lab/tree/' + rel, safe='')}"


def github_url(rel_path: str) -> str:
    s = settings()
    return f"https://github.com/{s['slug']}/blob/{s['branch']}/{rel_path}"


def hub_url() -> str | None:
    """The course's JupyterHub, if course.toml names one ([hub] url), else None."""
    return hub_settings()["url"] or None


def src(cell) -> str:
    # the public twin of grading's sandboxgrader.cells.src: scripts/ ships to students, grading/ does not
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def _first_sentence(paragraph: str) -> str:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(paragraph.split()))[0]


def lecture_info(path: Path) -> dict:
    """Number, title and one-line summary of a lecture, from the notebook itself.

    The title is the first ``# `` heading (``# Lecture N. Title``); the summary is the notebook's
    metadata ``course.summary`` (Edit -> Notebook metadata in JupyterLab), else the first sentence
    of the lecture's introduction. The README's table and the site's contents both come from here.
    """
    nb = read_nb(path)
    for cell in nb["cells"]:
        text = src(cell).strip()
        if cell["cell_type"] == "markdown" and text.startswith("# "):
            heading, _, rest = text.partition("\n")
            break
    else:
        raise ValueError(f"{path.name}: no '# ' heading (the lecture's title)")
    heading = heading[2:].strip()
    m = re.match(r"Lecture\s+(\d+)\.\s*(.*)", heading)
    number, title = (int(m.group(1)), m.group(2)) if m else (int(path.name[:2]), heading)
    summary = (nb["metadata"].get("course") or {}).get("summary")
    if not summary:
        summary = _first_sentence(rest.strip().split("\n\n")[0])
    return {
        "path": path,
        "stem": path.stem,
        "number": number,
        "title": title,
        "heading": heading,
        "summary": " ".join(summary.split()),
    }


# "## Task 3 (5 points) — maxvol", "### Task A2 (4 points) — every adjoint"
TASK = re.compile(
    r"^#{2,4}\s+(?P<task>Task\s+\S+)\s+\((?P<points>\d+)\s+points?[^)]*\)\s*(?:[—–-]\s*(?P<topic>.*))?$", re.M
)
REL_NB_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\((?![a-zA-Z][a-zA-Z0-9+.-]*:|[#/])([^)\s#]+\.ipynb)")


def assignment_info(path: Path) -> dict:
    """Title, points, tasks and the lectures an assignment builds on, from its notebook.

    Points and test cells come from nbgrader's metadata (what the grader counts); tasks and
    their topics from the ``## Task N (k points) — topic`` headings; lectures from its links.
    """
    nb = read_nb(path)
    title, tasks, lectures, points, tests = None, [], [], 0, 0
    for cell in nb["cells"]:
        text = src(cell)
        grader = cell.get("metadata", {}).get("nbgrader") or {}
        if grader.get("grade") and not grader.get("solution"):
            tests += 1
            points += grader.get("points", 0)
        if cell["cell_type"] != "markdown":
            continue
        if title is None and text.lstrip().startswith("# "):
            title = text.lstrip()[2:].split("\n", 1)[0].strip()
        for m in TASK.finditer(text):
            tasks.append({"task": m["task"], "points": int(m["points"]), "topic": (m["topic"] or "").strip()})
        for target in REL_NB_LINK.findall(text):
            lec = (path.resolve().parent / target).resolve()
            if lec.parent == ROOT / "lectures" and lec.is_file() and lec not in lectures:
                lectures.append(lec)
    if title is None:
        raise ValueError(f"{path}: no '# ' heading (the assignment's title)")
    return {
        "path": path,
        "id": path.parent.name,
        "title": title,
        "points": points,
        "tests": tests,
        "tasks": tasks,
        "lectures": sorted(lectures),
    }


def pip_spec(package: str = "gradcheck") -> str:
    """What Colab's setup cell installs: a course package (gradcheck: utils/; coursetests) from the repository."""
    folder = {"gradcheck": "utils", "coursetests": "coursetests"}[package]
    s = settings()
    return f"{package} @ git+https://github.com/{s['slug']}@{s['branch']}#subdirectory={folder}"


def read_nb(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_nb(path: Path, nb: dict) -> None:
    """Write atomically (temp file + rename) in the layout Jupyter itself writes."""
    write_atomic(path, json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Write a text file atomically: temp file in the same folder, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
