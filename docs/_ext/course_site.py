"""What the Sphinx + MyST-NB + sphinx-book-theme stack does not do for this course by itself.

- ``read_notebook``: the notebook as the site shows it (myst-nb reads every ``.ipynb`` through it,
  ``nb_custom_formats``). The stored file is never changed. The Colab badge and setup cell are
  dropped (the page has launch buttons), the stamped Colab companions of links too (on the site the
  relative link itself becomes the page), other relative links point at the file on GitHub, a widget
  is replaced by a line saying where it can be moved (its stored figure stays), and an assignment
  gets a box with its points, tasks and lectures.
- Directives that generate content from the notebooks, so that no page holds a hand-made list:
  ``course-lectures`` (the lecture table), ``course-assignments`` (points and topics of each
  assignment), ``course-bibliography`` (every reference the lectures cite, with the lectures citing it).
- ``<!-- course:include PATH -->`` in a page is replaced by that repository file (the gradcheck guide
  and the instructor's guide are the READMEs), its relative links pointed at the site or GitHub.
- Offline: MathJax 2 is copied into the site from the pinned ``jupyter-server-mathjax`` (Sphinx's
  default loads MathJax from a CDN).
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from course import (
    ROOT,
    assignment_info,
    binder_url,
    colab_url,
    github_url,
    hub_url,
    lecture_info,
    lecture_notebooks,
    read_nb,
    release_notebooks,
    src,
)

BADGE_TAG, SETUP_TAG = "colab-badge", "colab-setup"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
COMPANION = re.compile(r"<sup>\[Colab\]\(https://colab\.research\.google\.com/[^)\s]*\)</sup>")
# a markdown link or image with a relative target: [text](target) / ![alt](target)
REL_LINK = re.compile(r"(?P<head>!?\[[^\]\n]*\]\()(?P<target>(?![a-zA-Z][a-zA-Z0-9+.-]*:|[#/])[^)\s]+)(?P<tail>\))")
INCLUDE = re.compile(r"^<!-- course:include (?P<path>\S+) -->$", re.M)
MATHJAX_KEEP = [
    "MathJax.js",
    "LICENSE",
    "config",
    "extensions",
    "jax/input/TeX",
    "jax/element",
    "jax/output/HTML-CSS",
    "fonts/HTML-CSS/STIX-Web",
]


# ------------------------------------------------------------------------------------------------
# Notebooks as the site shows them


def notebook_path(nb: dict) -> Path | None:
    """The repository path of a notebook, read from its stamped Colab badge (the reader gets text only)."""
    for cell in nb["cells"][:3]:
        if BADGE_TAG in cell.get("metadata", {}).get("tags", []):
            m = re.search(r"/blob/[^/]+/([^)\s]+\.ipynb)\)", src(cell))
            if m and (ROOT / m.group(1)).is_file():
                return ROOT / m.group(1)
    return None


def site_markdown(text: str, path: Path | None) -> str:
    """Drop the Colab companions; a relative link to a repository file that is no page -> GitHub."""
    text = COMPANION.sub("", text)
    if path is None:
        return text

    def repl(m):
        target = m["target"]
        file_part = target.split("#", 1)[0]
        if file_part.endswith(".ipynb") or not file_part:
            return m[0]  # another page of the site: myst-nb resolves it
        resolved = (path.parent / file_part).resolve()
        try:
            rel = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            return m[0]
        return f"{m['head']}{github_url(rel)}{m['tail']}" if resolved.exists() else m[0]

    return REL_LINK.sub(repl, text)


def widget_note(path: Path | None) -> dict:
    where = []
    if path is not None:
        where.append(f'<a href="{html.escape(colab_url(path))}">Colab</a>')
        where.append(
            f'<a href="{html.escape(hub_url() or binder_url(path))}">{"JupyterHub" if hub_url() else "Binder"}</a>'
        )
    where = " / ".join(where) or "Colab / JupyterHub"
    text = (
        f'<p class="course-widget-note">Interactive widget: open in {where} to move the slider '
        "(or use the launch buttons at the top of the page). This page is static: the figure of this "
        "cell shows the widget in its initial state.</p>"
    )
    return nbformat.v4.new_output("display_data", data={"text/html": text})


def assignment_box(path: Path) -> str:
    info = assignment_info(path)
    lectures = ", ".join(
        f"[Lecture {lecture_info(p)['number']}. {lecture_info(p)['title']}]"
        f"({Path('../../lectures', p.name).as_posix()})"
        for p in info["lectures"]
    )
    rows = "\n".join(f"| {t['task']} | {t['points']} | {t['topic']} |" for t in info["tasks"])
    return "\n".join(
        [
            "```{admonition} This assignment at a glance",
            ":class: tip",
            "",
            f"**{info['points']} points** in {info['tests']} auto-graded test cells.",
            *([f"It builds on {lectures}."] if lectures else []),
            "",
            *(["| task | points | topic |", "|---|---|---|", rows, ""] if info["tasks"] else []),
            "Open it with the launch buttons at the top of this page (Colab, Binder, JupyterHub) or with "
            "`make lab`; run every cell, then upload the `.ipynb` to the course's LMS. Hidden tests with other "
            "inputs are added when it is graded.",
            "```",
        ]
    )


def read_notebook(text: str) -> nbformat.NotebookNode:
    """myst-nb's reader for every ``.ipynb`` of the site (``nb_custom_formats``)."""
    nb = nbformat.reads(text, as_version=4)
    path = notebook_path(nb)
    nb.metadata.pop("widgets", None)  # else myst-nb embeds widget state and loads its renderer
    cells = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if BADGE_TAG in tags or SETUP_TAG in tags:
            continue
        if cell.cell_type == "markdown":
            cell.source = site_markdown(src(cell), path)
        elif cell.cell_type == "code":
            cell.outputs = [
                widget_note(path) if WIDGET_VIEW in out.get("data", {}) else out for out in cell.get("outputs", [])
            ]
        cells.append(cell)
    if path is not None and path.parts[-3] == "assignments":
        first = next(i for i, c in enumerate(cells) if c.cell_type == "markdown")
        cells.insert(first + 1, nbformat.v4.new_markdown_cell(assignment_box(path)))
    nb.cells = cells
    return nb


# ------------------------------------------------------------------------------------------------
# Generated content


class _Generated(SphinxDirective):
    """A directive whose content is MyST markdown generated from the repository."""

    def markdown(self) -> str:
        raise NotImplementedError

    def depends_on(self) -> list[Path]:
        return []

    def run(self):
        for path in self.depends_on():
            self.env.note_dependency(str(path))
        node = nodes.container(classes=["course-generated"])
        self.state.nested_parse(StringList(self.markdown().split("\n"), source=self.name), self.content_offset, node)
        return node.children


class Lectures(_Generated):
    """Table of the lectures: number, title (a link), summary — the notebooks' own."""

    def depends_on(self):
        return lecture_notebooks()

    def markdown(self):
        rows = ["| # | lecture | what it teaches |", "|---|---|---|"]
        for path in lecture_notebooks():
            lec = lecture_info(path)
            rows.append(f"| {lec['number']} | [{lec['title']}](lectures/{path.name}) | {lec['summary']} |")
        return "\n".join(rows)


class Assignments(_Generated):
    """Table of the assignments (student versions): points, test cells, topics, lectures."""

    def depends_on(self):
        return release_notebooks()

    def markdown(self):
        rows = ["| assignment | points | topics | builds on |", "|---|---|---|---|"]
        for path in release_notebooks():
            info = assignment_info(path)
            rel = path.relative_to(ROOT).as_posix()
            topics = "; ".join(t["topic"] for t in info["tasks"] if t["topic"])
            lectures = ", ".join(f"[{lecture_info(p)['number']}](lectures/{p.name})" for p in info["lectures"])
            rows.append(
                f"| [{info['title']}]({rel}) | {info['points']} ({info['tests']} tests) | {topics} | {lectures} |"
            )
        return "\n".join(rows)


def references(path: Path) -> list[str]:
    """The list items of a lecture's ``References`` section (one string each)."""
    items, inside = [], False
    for cell in read_nb(path)["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for line in src(cell).split("\n"):
            if re.match(r"^#{1,6}\s", line):
                inside = bool(re.match(r"^#{1,6}\s+(\d+\.\s*)?References\s*$", line, re.I))
                continue
            if not inside:
                continue
            if re.match(r"^[*-]\s+", line):
                items.append(re.sub(r"^[*-]\s+", "", line).strip())
            elif line.startswith((" ", "\t")) and line.strip() and items:
                items[-1] += " " + line.strip()
    return items


def _ref_key(item: str) -> str:
    text = re.sub(r"<?https?://\S+?>?(?=[\s.,;)]|$)", "", item).lower()
    text = re.sub(r"\band\b", " ", text)
    return re.sub(r"[^a-z0-9]+", "", text)


class Bibliography(_Generated):
    """Every reference cited by a lecture, once, with the lectures that cite it."""

    def depends_on(self):
        return lecture_notebooks()

    def markdown(self):
        refs: dict[str, dict] = {}
        for path in lecture_notebooks():
            for item in references(path):
                entry = refs.setdefault(_ref_key(item), {"text": item, "lectures": []})
                if path not in entry["lectures"]:
                    entry["lectures"].append(path)
        if not refs:
            raise self.error("no lecture has a References section with list items")
        lines = []
        for entry in sorted(refs.values(), key=lambda e: _ref_key(e["text"])):
            # a relative link in a lecture's reference (another lecture) is resolved from that lecture
            text = rewrite_links(entry["text"], entry["lectures"][0])
            text = re.sub(r"(?<![<(])(https?://[^\s>)]+?)(?=[.,;]?(\s|$))", r"<\1>", text)
            cited = ", ".join(f"[{lecture_info(p)['number']}](lectures/{p.name})" for p in entry["lectures"])
            lines.append(f"* {text} — cited in lecture {cited}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Repository files included as pages


def rewrite_links(text: str, source: Path) -> str:
    """Relative links of a repository file included in a page: a site page stays a page, any other
    file of the repository becomes its GitHub URL."""

    def repl(m):
        target = m["target"]
        file_part, _, fragment = target.partition("#")
        resolved = (source.parent / file_part).resolve() if file_part else source
        try:
            rel = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            return m[0]
        if m["head"].startswith("!") or not resolved.exists():
            return m[0]
        if resolved.suffix == ".ipynb" and (resolved in lecture_notebooks() or resolved in release_notebooks()):
            return f"{m['head']}{rel}{'#' + fragment if fragment else ''}{m['tail']}"
        url = github_url(rel) if resolved.is_file() else github_url(rel).replace("/blob/", "/tree/", 1)
        return f"{m['head']}{url}{'#' + fragment if fragment else ''}{m['tail']}"

    return REL_LINK.sub(repl, text)


def expand_includes(app, docname, source):
    def repl(m):
        path = (ROOT / m["path"]).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{docname}: course:include of a missing file {m['path']}")
        app.env.note_dependency(str(path))
        return rewrite_links(path.read_text(encoding="utf-8"), path)

    source[0] = INCLUDE.sub(repl, source[0])


# ------------------------------------------------------------------------------------------------
# Offline MathJax


def copy_mathjax(app):
    if app.builder.format != "html":
        return
    import jupyter_server_mathjax

    src_dir = Path(jupyter_server_mathjax.__file__).parent / "static"
    dest = Path(app.outdir) / "_static" / "mathjax"
    if dest.exists():
        shutil.rmtree(dest)
    for item in MATHJAX_KEEP:  # what TeX input and HTML-CSS output with STIX-Web need (9.6 MB -> 4 MB)
        s, d = src_dir / item, dest / item
        if s.is_dir():
            shutil.copytree(s, d)
        else:
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)


def setup(app):
    app.add_directive("course-lectures", Lectures)
    app.add_directive("course-assignments", Assignments)
    app.add_directive("course-bibliography", Bibliography)
    app.connect("source-read", expand_includes)
    app.connect("builder-inited", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
