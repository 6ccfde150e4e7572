"""Stamp the "Open in Colab" badge, the Colab setup cell and Colab links into every notebook,
and the lecture and assignment tables into README.md.

All are generated from ``course.toml`` and the notebooks; never edit them by hand. Lectures and
solutions (sources of the student releases) are stamped; a solution's badge points at its release
path under ``assignments/``, so the release generated from it carries the right badge.

Links between notebooks: authors write relative links, ``[Lecture 3](03_matrix_calculus_definitions.ipynb)``
(they work in JupyterLab, Binder and a hub, and the site turns them into its pages). Colab opens a
notebook alone, where a relative link leads nowhere, so each one gets a stamped absolute companion
right after it: ``[Lecture 3](03_….ipynb)<sup>[Colab](https://colab.research.google.com/github/…)</sup>``.

    python scripts/stamp_badges.py          # rewrite what is stale
    python scripts/stamp_badges.py --check  # exit 1 and list what is stale
    python scripts/stamp_badges.py --check --readme  # README's tables only
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from course import (
    ROOT,
    assignment_info,
    binder_url,
    colab_url,
    hub_settings,
    lecture_info,
    lecture_notebooks,
    nbgitpuller_url,
    pip_spec,
    read_nb,
    source_notebooks,
    src,
    write_atomic,
    write_nb,
)

BADGE_TAG = "colab-badge"
SETUP_TAG = "colab-setup"
BADGE_IMG = "https://colab.research.google.com/assets/colab-badge.svg"


def badge_source(nb_path) -> str:
    badge = f"[![Open In Colab]({BADGE_IMG})]({colab_url(nb_path)})"
    # Lectures only: on a hub, assignments come through nbgrader's Assignments tab (hub/README.md).
    if hub_settings()["url"] and is_lecture(nb_path):
        badge += f" [Open on your JupyterHub]({nbgitpuller_url(nb_path)})"
    return badge


def is_lecture(nb_path) -> bool:
    from pathlib import Path

    return Path(nb_path).resolve().relative_to(ROOT).parts[0] == "lectures"


def uses_coursetests(nb: dict | None) -> bool:
    """Whether a notebook's code imports the course's test machinery (coursetests/)."""
    return nb is not None and any(
        cell["cell_type"] == "code" and re.search(r"^\s*(from|import)\s+coursetests\b", src(cell), re.M)
        for cell in nb["cells"]
    )


def setup_source(nb: dict | None = None) -> str:
    """The setup cell: on Colab, pip-install gradcheck (and coursetests where the notebook imports it)."""
    tests = uses_coursetests(nb)
    lines = ["# Setup (stamped from course.toml by scripts/stamp_badges.py; do not edit by hand)."]
    if tests:
        lines += [
            "# On Colab: install the course packages `gradcheck` and `coursetests` (the test cells' checks) and",
            "# enable widgets. Locally: nothing to do.",
        ]
    else:
        lines += ["# On Colab: install the course package `gradcheck` and enable widgets. Locally: nothing to do."]
    lines += [
        "import sys",
        'if "google.colab" in sys.modules:',
        "    import os, subprocess",
        f'    spec = os.environ.get("GRADCHECK_PIP_SPEC", "{pip_spec()}")',
    ]
    if tests:
        lines += [f'    tests_spec = os.environ.get("COURSETESTS_PIP_SPEC", "{pip_spec("coursetests")}")']
    specs = "spec, tests_spec" if tests else "spec"
    lines += [
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", {specs}], check=True)',
        "    from google.colab import output",
        "    output.enable_custom_widget_manager()",
    ]
    return "\n".join(lines)


# A relative link to a notebook (not an image, not a URL, not an anchor), with its stamped Colab
# companion if it has one already (whatever URL that holds: it is regenerated).
NB_LINK = re.compile(
    r"(?P<link>(?<!!)\[(?P<text>[^\]\n]*)\]\((?P<target>(?![a-zA-Z][a-zA-Z0-9+.-]*:|[#/])"
    r"[^)\s]+?\.ipynb)(?P<fragment>#[^)\s]*)?\))"
    r"(?P<companion><sup>\[Colab\]\([^)\s]*\)</sup>)?"
)


def link_target(nb_path: Path, target: str) -> Path | None:
    """The repository file a relative notebook link points at, or None if there is none."""
    path = (Path(nb_path).resolve().parent / target).resolve()
    try:
        path.relative_to(ROOT)
    except ValueError:
        return None
    return path if path.is_file() else None


def stamp_links(text: str, nb_path: Path) -> str:
    """Give every relative notebook link that resolves a Colab companion (idempotent)."""

    def repl(m):
        target = link_target(nb_path, m["target"])
        if target is None:  # broken: left as it is, the link test names it
            return m[0]
        return f"{m['link']}<sup>[Colab]({colab_url(target)})</sup>"

    return NB_LINK.sub(repl, text)


def _tagged(nb: dict, tag: str):
    for i, cell in enumerate(nb["cells"]):
        if tag in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def stamp(nb: dict, nb_path) -> dict:
    """Return the notebook with an up-to-date badge cell first and setup cell second."""
    cells = nb["cells"]
    badge = {
        "cell_type": "markdown",
        "id": "colab-badge",
        "metadata": {"tags": [BADGE_TAG]},
        "source": badge_source(nb_path),
    }
    i = _tagged(nb, BADGE_TAG)
    if i is None:
        cells.insert(0, badge)
    else:
        old = cells.pop(i)
        badge["id"] = old.get("id", badge["id"])
        badge["metadata"] = {**old.get("metadata", {}), "tags": old["metadata"]["tags"]}
        cells.insert(0, badge)
    j = _tagged(nb, SETUP_TAG)
    if j is None:
        setup = {
            "cell_type": "code",
            "id": "colab-setup",
            "metadata": {"tags": [SETUP_TAG]},
            "execution_count": None,
            "outputs": [],
            "source": setup_source(nb),
        }
        cells.insert(1, setup)
    else:
        setup = cells.pop(j)
        setup["source"] = setup_source(nb)
        cells.insert(1, setup)
    for cell in cells[2:]:
        if cell["cell_type"] == "markdown":
            new = stamp_links(src(cell), nb_path)
            if new != src(cell):
                cell["source"] = new
    return nb


README_START, README_END = "<!-- lectures:start (generated by `make badges`) -->", "<!-- lectures:end -->"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"


def readme_table() -> str:
    """The README's lecture table: the notebooks' own titles and summaries (as on the site)."""
    rows = ["| # | lecture | what it teaches | open |", "|---|---|---|---|"]
    for path in lecture_notebooks():
        lec = lecture_info(path)
        rel = path.relative_to(ROOT).as_posix()
        badges = f"[![Open In Colab]({COLAB_BADGE})]({colab_url(path)}) [![Binder]({BINDER_BADGE})]({binder_url(path)})"
        rows.append(f"| {lec['number']} | [{lec['title']}]({rel}) | {lec['summary']} | {badges} |")
    return "\n".join(rows)


ASSIGNMENTS_START = "<!-- assignments:start (generated by `make badges`) -->"
ASSIGNMENTS_END = "<!-- assignments:end -->"


def assignments_table() -> str:
    """The README's assignment table, from each source notebook (solutions/<id>/<id>.ipynb).

    Title: the first heading (``# Homework N — Title``); what it practises: the notebook metadata
    ``course.summary``, else the topics of its ``## Task N (k points) — topic`` headings; lectures: the
    ones it links; points: nbgrader's cell metadata (what the grader counts). Rows link the release.
    """
    rows = [
        "| # | assignment (nbgrader, auto-graded) | what it practises | lectures | points |",
        "|---|---|---|---|---|",
    ]
    for k, path in enumerate(source_notebooks(), 1):
        info = assignment_info(path)
        m = re.match(r"Homework\s+(\d+)\s*[—–:.-]\s*(.*)", info["title"])
        number, title = (int(m.group(1)), m.group(2)) if m else (k, info["title"])
        summary = (read_nb(path)["metadata"].get("course") or {}).get("summary")
        topics = dict.fromkeys(t["topic"] for t in info["tasks"] if t["topic"])  # in order, once each
        practises = " ".join(summary.split()) if summary else "; ".join(topics)
        release = f"assignments/{info['id']}/{info['id']}.ipynb"
        lectures = ", ".join(
            f"[{lecture_info(p)['number']}]({p.relative_to(ROOT).as_posix()})" for p in info["lectures"]
        )
        rows.append(f"| {number} | [{title}]({release}) | {practises} | {lectures} | {info['points']} |")
    return "\n".join(rows)


def _replace_block(text: str, start: str, end: str, body: str) -> str:
    if text.count(start) != 1 or text.count(end) != 1:
        raise SystemExit(f"README.md must hold the markers {start!r} and {end!r} once each")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def stamp_readme(text: str) -> str:
    """README.md with its generated lecture and assignment tables current."""
    text = _replace_block(text, README_START, README_END, readme_table())
    return _replace_block(text, ASSIGNMENTS_START, ASSIGNMENTS_END, assignments_table())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale notebooks")
    ap.add_argument("--readme", action="store_true", help="only README.md's lecture and assignment tables")
    ap.add_argument("notebooks", nargs="*", help="default: lectures and solutions")
    args = ap.parse_args(argv)
    if args.readme and args.notebooks:
        ap.error("--readme takes no notebooks")
    paths = [] if args.readme else [Path(p) for p in args.notebooks] or lecture_notebooks() + source_notebooks()
    stale = []
    for path in paths:
        nb = read_nb(path)
        before = [(src(c), c.get("metadata", {}).get("tags")) for c in nb["cells"]]
        stamped = stamp(nb, path)
        after = [(src(c), c.get("metadata", {}).get("tags")) for c in stamped["cells"]]
        if before != after:
            stale.append(path)
            if not args.check:
                write_nb(path, stamped)
    if not args.notebooks:
        readme = ROOT / "README.md"
        text = readme.read_text(encoding="utf-8")
        if stamp_readme(text) != text:
            stale.append(readme)
            if not args.check:
                write_atomic(readme, stamp_readme(text))
    for p in stale:
        print(("stale: " if args.check else "stamped: ") + str(p))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
