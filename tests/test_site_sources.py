"""What the website and the README are generated from, checked without building the site.

- Links between notebooks resolve in JupyterLab (the relative link: a file at that path) and on
  Colab (the stamped companion: the Colab URL of that file, from course.toml); on the site they are
  pages (tests/browser/test_site.py).
- README's lecture table is the one `make badges` generates from the notebooks.
- The site's notebook reader (docs/_ext/course_site.py) and the data the pages are made of.
"""

import re

import pytest

import course_site
import stamp_badges
from course import (
    ROOT,
    assignment_info,
    colab_url,
    lecture_info,
    lecture_notebooks,
    read_nb,
    release_notebooks,
    source_notebooks,
    src,
)

NOTEBOOKS = lecture_notebooks() + source_notebooks() + release_notebooks()
RELATIVE = re.compile(r"(?<!!)\[[^\]\n]*\]\((?![a-zA-Z][a-zA-Z0-9+.-]*:|[#/])([^)\s#]+\.ipynb)(#[^)\s]*)?\)")


def ids(paths):
    return [p.relative_to(ROOT).as_posix() for p in paths]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_links_between_notebooks_resolve_in_jupyterlab_and_colab(path):
    problems, n = [], 0
    for k, cell in enumerate(read_nb(path)["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for m in stamp_badges.NB_LINK.finditer(src(cell)):
            n += 1
            target = (path.parent / m["target"]).resolve()
            if not target.is_file():  # JupyterLab opens the relative path
                problems.append(f"cell {k}: {m['target']} does not exist (JupyterLab)")
                continue
            companion = m["companion"] or ""
            want = f"<sup>[Colab]({colab_url(target)})</sup>"
            if companion != want:  # Colab opens the notebook alone: only the absolute link works there
                problems.append(
                    f"cell {k}: {m['target']} has {companion or 'no Colab link'}, expected {want} (run `make badges`)"
                )
            colab_path = colab_url(target).split("/blob/", 1)[1].split("/", 1)[1]
            if not (ROOT / colab_path).is_file():
                problems.append(f"cell {k}: the Colab link of {m['target']} opens {colab_path}, not in the repository")
    assert len(RELATIVE.findall("\n".join(src(c) for c in read_nb(path)["cells"] if c["cell_type"] == "markdown"))) == n
    assert not problems, "\n".join(problems)


def test_link_stamping_is_idempotent_and_follows_course_toml():
    nb = ROOT / "lectures" / "01_rank_and_regularization.ipynb"
    text = "See [Lecture 2](02_low_rank_skeleton_cur.ipynb), [a missing one](99_none.ipynb), ![img](x.ipynb)."
    once = stamp_badges.stamp_links(text, nb)
    assert once == stamp_badges.stamp_links(once, nb)
    target = ROOT / "lectures" / "02_low_rank_skeleton_cur.ipynb"
    assert once.count("<sup>[Colab]") == 1 and f"({colab_url(target)})</sup>" in once
    stale = once.replace(colab_url(target), "https://colab.research.google.com/github/old/repo/blob/main/x.ipynb")
    assert stamp_badges.stamp_links(stale, nb) == once, "a companion with an old URL is regenerated"


def test_readme_lecture_and_assignment_tables_are_current():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert stamp_badges.stamp_readme(text) == text, (
        "README.md's lecture or assignment table is stale: run `make badges`"
    )
    assert stamp_badges.main(["--check", "--readme"]) == 0
    for path in lecture_notebooks():
        assert f"[{lecture_info(path)['title']}]({path.relative_to(ROOT).as_posix()})" in text
    table = text.split(stamp_badges.ASSIGNMENTS_START)[1].split(stamp_badges.ASSIGNMENTS_END)[0]
    rows = [r for r in table.splitlines() if r.startswith("| ") and "](assignments/" in r]
    assert len(rows) == len(source_notebooks()) >= 6, rows
    for path, row in zip(source_notebooks(), rows):
        info = assignment_info(path)
        assert f"](assignments/{info['id']}/{info['id']}.ipynb)" in row and row.endswith(f"| {info['points']} |"), row


def test_a_stale_readme_table_is_regenerated():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(r for r in text.splitlines() if "](assignments/hw1_matrix_gradients/" in r)
    stale = text.replace(row, row.rsplit("|", 2)[0] + "| 999 |")
    assert stale != text and stamp_badges.stamp_readme(stale) == text
    with pytest.raises(SystemExit, match="assignments:start"):
        stamp_badges.stamp_readme(text.replace(stamp_badges.ASSIGNMENTS_START, ""))


@pytest.mark.parametrize("path", lecture_notebooks(), ids=ids(lecture_notebooks()))
def test_site_reader_shows_the_lecture_without_colab_cells_and_with_widget_notes(path):
    nb = course_site.read_notebook((path).read_text(encoding="utf-8"))
    tags = [t for c in nb.cells for t in c.get("metadata", {}).get("tags", [])]
    assert "colab-badge" not in tags and "colab-setup" not in tags
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "<sup>[Colab]" not in markdown, "the Colab companions are not shown on the site"
    assert "widgets" not in nb.metadata
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(course_site.WIDGET_VIEW in o.get("data", {}) for o in outputs)
    stored = read_nb(path)
    widgets = sum(course_site.WIDGET_VIEW in o.get("data", {}) for c in stored["cells"] for o in c.get("outputs", []))
    notes = [o["data"]["text/html"] for o in outputs if "course-widget-note" in o.get("data", {}).get("text/html", "")]
    assert len(notes) == widgets
    assert all("move the slider" in n and colab_url(path) in n for n in notes)
    assert sum(o.get("data", {}).get("image/png") is not None for o in outputs) == sum(
        o.get("data", {}).get("image/png") is not None for c in stored["cells"] for o in c.get("outputs", [])
    )


@pytest.mark.parametrize("path", release_notebooks(), ids=ids(release_notebooks()))
def test_assignment_page_data(path):
    info = assignment_info(path)
    assert info["points"] > 0 and info["tests"] > 0, f"{path.name}: no graded test cells"
    if info["tasks"]:  # the points written in the task titles are what nbgrader counts
        assert sum(t["points"] for t in info["tasks"]) == info["points"], info["tasks"]
    nb = course_site.read_notebook(path.read_text(encoding="utf-8"))
    box = next(c.source for c in nb.cells if "This assignment at a glance" in c.source)
    assert f"**{info['points']} points** in {info['tests']} auto-graded test cells" in box


def test_bibliography_has_every_lectures_references():
    for path in lecture_notebooks():
        refs = course_site.references(path)
        assert refs, f"{path.name}: no list items under its References heading"
        assert all(len(r) > 20 for r in refs), refs
    keys = {course_site._ref_key(r) for p in lecture_notebooks() for r in course_site.references(p)}
    # the same book cited in two lectures with other punctuation or a <> link is one entry
    assert course_site._ref_key(
        "S. Boyd and L. Vandenberghe. *Convex Optimization*. <https://x.org/>"
    ) == course_site._ref_key("S. Boyd, L. Vandenberghe. *Convex Optimization*. https://x.org/")
    assert len(keys) < sum(len(course_site.references(p)) for p in lecture_notebooks())
