"""Build the static HTML site of the lectures: an index page and every lecture with its outputs.

Built with nbconvert (the `lab` template) from the notebooks as stored, so the site shows exactly
what `make test-lectures` validated. It works offline and from any static host:

- MathJax 2 is copied into the site from the pinned PyPI package `jupyter-server-mathjax`
  (nbconvert's default loads MathJax from a CDN), with the STIX-Web fonts that package ships;
- the template's other CDN scripts (require.js, mermaid, the widget renderer) are left out;
- figures are inline (data: URIs) and the badges are local SVG files;
- links between lectures point at the .html pages; links to other repository files point at the
  file on GitHub (slug and branch from course.toml).

An interactive widget cannot work without a kernel: the site shows the figure stored next to it
and a note with the Colab and Binder links instead.

    python scripts/build_site.py                  # build into _site/ (make site)
    python scripts/build_site.py --out DIR        # build elsewhere (the browser test builds into a temp dir)
    python scripts/build_site.py --readme-table   # print the README's lecture table (badges + summaries)
"""
from __future__ import annotations

import argparse
import copy
import html
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

from course import ROOT, colab_url, lecture_notebooks, read_nb, settings

MARKER = ".course-site"  # only a folder holding this file is ever wiped by a rebuild
MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# One line per lecture for the index and the README; a lecture missing here gets the first sentence
# of its introduction.
SUMMARIES = {
    "01_rank_and_regularization": "Rank, numerical rank and conditioning; from a tall data matrix to the "
                                  "normal equations, singular Gram matrices and ridge ($\\ell_2$) regularization.",
    "02_low_rank_skeleton_cur": "Skeleton $A = C\\hat A^{-1}R$ and CUR decompositions, maximal volume, "
                                "and cross approximation that reads only $O((m+n)r)$ entries.",
    "03_matrix_calculus_definitions": "Inner products, trace and determinant, definiteness and conditioning; "
                                      "gradient, Jacobian and Hessian with their shapes.",
    "04_matrix_differentials": "The differential approach: a dozen rules and $df = \\langle \\nabla f, dx\\rangle$; "
                               "least squares, ridge, $\\operatorname{tr}(AXB)$, $\\log\\det X$ and their Hessians.",
    "05_autodiff_backprop": "The cheap-gradient principle, the chain rules, computational graphs, and "
                            "backpropagation by hand checked against `torch.autograd`.",
    "06_vjp_jvp_hvp": "Vector-Jacobian and Jacobian-vector products, a small reverse-mode AD in NumPy, and "
                      "Hessian-vector products for Newton-CG.",
    "09_implicit_differentiation_adjoint": "Differentiating through solvers: VJPs of linear solves, least squares and ridge, "
                                           "the hypergradient of $\\lambda$, the implicit function theorem, the adjoint method, "
                                           "custom `torch.autograd.Function`s, eigenvalue and singular value derivatives and their "
                                           "failure at crossings.",
    "10_randomized_low_rank": "The randomized range finder and SVD with oversampling and power iterations, the "
                              "Halko–Martinsson–Tropp bounds, the cost in matrix–vector products, pivoted QR and the "
                              "interpolative decomposition, compared with the skeleton and cross approximation of Lecture 2 "
                              "on the same matrices.",
}

# Page-specific pieces on top of nbconvert's `lab` template (which stays the source of everything else).
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
// only the STIX-Web web fonts are shipped: use them, never image fonts or local TeX fonts
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
                                 imageFont: null, linebreaks: {automatic: true}},
                    // the hidden MathML copy asks for TeX fonts that are not shipped
                    menuSettings: {assistiveMML: false}});
</script>
<link rel="icon" href="data:,">
{{ super() }}
{%- endblock html_head_js_mathjax -%}
{%- block extra_css -%}
<style type="text/css">
.course-nav { max-width: 1100px; margin: 0 auto; padding: 10px 20px; font-family: var(--jp-ui-font-family);
              font-size: 14px; border-bottom: 1px solid var(--jp-border-color2); }
.course-nav a { margin-right: 1.5em; }
.course-widget-note { padding: 6px 10px; border-left: 3px solid var(--jp-brand-color1);
                      background: var(--jp-layout-color2); font-family: var(--jp-ui-font-family); }
img.course-badge { vertical-align: middle; height: 20px; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{%- if resources.course_nav %}
<nav class="course-nav">{{ resources.course_nav }}</nav>
{%- endif %}
{%- endblock body_header -%}
"""

# The two badges drawn locally (the site must not load images from elsewhere).
BADGE_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{text}">
<rect width="{w}" height="20" rx="3" fill="{color}"/>
<text x="{x}" y="14" fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"
      text-anchor="middle">{text}</text></svg>
"""
BADGES = {
    "colab-badge.svg": dict(text="Open in Colab", w=98, x=49, color="#e37400"),
    "binder-badge.svg": dict(text="launch binder", w=88, x=44, color="#579aca"),
}
LOCAL_BADGE = {COLAB_BADGE: "assets/colab-badge.svg", BINDER_BADGE: "assets/binder-badge.svg"}


def binder_url(nb: Path) -> str:
    s = settings()
    rel = nb.resolve().relative_to(ROOT).as_posix()
    return f"https://mybinder.org/v2/gh/{s['slug']}/{s['branch']}?urlpath={quote('lab/tree/' + rel, safe='')}"


def github_url(rel_path: str) -> str:
    s = settings()
    return f"https://github.com/{s['slug']}/blob/{s['branch']}/{rel_path}"


def _src(cell) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def lecture_info(path: Path) -> dict:
    """Number, title and one-line summary of a lecture, read from its first heading."""
    nb = read_nb(path)
    for cell in nb["cells"]:
        text = _src(cell).strip()
        if cell["cell_type"] == "markdown" and text.startswith("# "):
            heading, _, rest = text.partition("\n")
            break
    else:
        raise ValueError(f"{path.name}: no '# ' heading")
    heading = heading[2:].strip()
    m = re.match(r"Lecture\s+(\d+)\.\s*(.*)", heading)
    number, title = (int(m.group(1)), m.group(2)) if m else (int(path.name[:2]), heading)
    summary = SUMMARIES.get(path.stem)
    if summary is None:
        paragraph = " ".join(rest.strip().split("\n\n")[0].split())
        summary = re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph)[0]
    return {"path": path, "stem": path.stem, "number": number, "title": title, "summary": summary,
            "html": path.stem + ".html"}


def readme_table(lectures: list[dict]) -> str:
    rows = ["| # | lecture | what it teaches | open |", "|---|---|---|---|"]
    for lec in lectures:
        rel = lec["path"].relative_to(ROOT).as_posix()
        badges = (f"[![Open In Colab]({COLAB_BADGE})]({colab_url(lec['path'])}) "
                  f"[![Binder]({BINDER_BADGE})]({binder_url(lec['path'])})")
        rows.append(f"| {lec['number']} | [{lec['title']}]({rel}) | {lec['summary']} | {badges} |")
    return "\n".join(rows)


def prepare(nb: dict, lec: dict) -> dict:
    """A copy of the notebook fit for a static page (the stored notebook is never changed)."""
    nb = copy.deepcopy(nb)
    nb["metadata"].pop("widgets", None)  # else the template loads the widget renderer from a CDN
    nb["metadata"]["title"] = f"{lec['number']}. {lec['title']}"
    note = ("<div class=\"course-widget-note\">Interactive widget: it needs a running kernel. "
            f"<a href=\"{html.escape(colab_url(lec['path']))}\">Open in Colab</a> or "
            f"<a href=\"{html.escape(binder_url(lec['path']))}\">launch Binder</a> to use it; "
            "the figure above is its initial state.</div>")
    # the Colab setup cell does nothing outside Colab: a reader of the site does not need it
    nb["cells"] = [c for c in nb["cells"] if "colab-setup" not in c.get("metadata", {}).get("tags", [])]
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and "colab-badge" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = _src(cell) + f" [![Binder]({BINDER_BADGE})]({binder_url(lec['path'])})"
        if cell["cell_type"] != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if WIDGET_VIEW in out.get("data", {}):
                out = {"output_type": "display_data", "metadata": {}, "data": {"text/html": note}}
            outputs.append(out)
        cell["outputs"] = outputs
    return nb


def rewrite(page_html: str, nb_dir: Path, site_pages: dict[str, str]) -> str:
    """Links between lectures -> .html pages, other repository files -> GitHub, badges -> local."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page_html, "html.parser")
    for img in soup.find_all("img", src=True):
        if img["src"] in LOCAL_BADGE:
            img["src"] = LOCAL_BADGE[img["src"]]
            img["class"] = img.get("class", []) + ["course-badge"]
    for a in soup.find_all("a", href=True):
        href = a["href"]
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or href.startswith("#") or not parts.path:
            continue
        target = (nb_dir / parts.path).resolve()
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        try:
            rel = target.relative_to(ROOT).as_posix()
        except ValueError:
            continue  # outside the repository: left alone, the link check reports it
        if rel in site_pages:
            a["href"] = site_pages[rel] + fragment
        elif target.exists():
            a["href"] = github_url(rel) + fragment
    return str(soup)


def exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"course.html.j2": TEMPLATE})],
                        template_file="course.html.j2", mathjax_url=MATHJAX_URL, embed_images=True)


def course_title_and_intro() -> tuple[str, str]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").split("\n\n")
    title = lines[0].lstrip("# ").strip()
    intro = " ".join(lines[1].split())
    return title, intro


def index_notebook(lectures: list[dict]) -> dict:
    import nbformat

    s = settings()
    title, intro = course_title_and_intro()
    rows = ["| # | lecture | what it teaches | |", "|---|---|---|---|"]
    for lec in lectures:
        rows.append(f"| {lec['number']} | [{lec['title']}]({lec['html']}) | {lec['summary']} | "
                    f"[![Open In Colab]({COLAB_BADGE})]({colab_url(lec['path'])}) "
                    f"[![Binder]({BINDER_BADGE})]({binder_url(lec['path'])}) |")
    repo = f"https://github.com/{s['slug']}"
    body = "\n\n".join([
        f"# {title}", intro, "## Lectures", "\n".join(rows),
        "Every page shows the lecture exactly as stored in the repository, outputs included. To run it, "
        "use the badges (Colab or Binder), or clone the repository and run `make lab`.",
        f"Source, assignments and the grading workflow: [{s['slug']}]({repo}).",
    ])
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(body)]
    nb.metadata["title"] = title
    return nb


def copy_mathjax(out: Path) -> None:
    import jupyter_server_mathjax

    src = Path(jupyter_server_mathjax.__file__).parent / "static"
    # what the TeX input and HTML-CSS output with STIX-Web fonts need (9.6 MB -> about 4 MB)
    keep = ["MathJax.js", "LICENSE", "config", "extensions", "jax/input/TeX", "jax/element",
            "jax/output/HTML-CSS", "fonts/HTML-CSS/STIX-Web"]
    for item in keep:
        s, d = src / item, out / "mathjax" / item
        if s.is_dir():
            shutil.copytree(s, d)
        else:
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)


def clean(out: Path) -> None:
    if out.exists():
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise SystemExit(f"{out} exists and is not a site built by this script: refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("built by scripts/build_site.py; deleted and rebuilt by `make site`\n")


def build(out: Path, notebooks: list[Path] | None = None) -> list[Path]:
    notebooks = notebooks or lecture_notebooks()
    lectures = [lecture_info(p) for p in notebooks]
    site_pages = {lec["path"].relative_to(ROOT).as_posix(): lec["html"] for lec in lectures}
    clean(out)
    copy_mathjax(out)
    (out / "assets").mkdir()
    for name, spec in BADGES.items():
        (out / "assets" / name).write_text(BADGE_SVG.format(**spec))
    exp = exporter()
    index_nav = '<a href="index.html">Course index</a>'
    written = []
    for lec in lectures:
        nb = prepare(read_nb(lec["path"]), lec)
        nav = (f"{index_nav}<a href=\"{html.escape(colab_url(lec['path']))}\">Open in Colab</a>"
               f"<a href=\"{html.escape(binder_url(lec['path']))}\">Launch Binder</a>"
               f"<a href=\"{html.escape(github_url(lec['path'].relative_to(ROOT).as_posix()))}\">Notebook on GitHub</a>")
        import nbformat
        body, _ = exp.from_notebook_node(nbformat.from_dict(nb), resources={
            "metadata": {"name": nb["metadata"]["title"], "path": str(lec["path"].parent)},
            "course_nav": nav})
        page = out / lec["html"]
        page.write_text(rewrite(body, lec["path"].parent, site_pages), encoding="utf-8")
        written.append(page)
    body, _ = exp.from_notebook_node(index_notebook(lectures), resources={
        "metadata": {"name": "index", "path": str(ROOT)}})
    (out / "index.html").write_text(rewrite(body, ROOT, site_pages), encoding="utf-8")
    return [out / "index.html"] + written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "_site"), help="output folder (default: _site/)")
    ap.add_argument("--readme-table", action="store_true", help="print the README lecture table and exit")
    args = ap.parse_args(argv)
    if args.readme_table:
        print(readme_table([lecture_info(p) for p in lecture_notebooks()]))
        return 0
    out = Path(args.out).resolve()
    pages = build(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"site: {len(pages)} pages in {out} ({size / 1e6:.1f} MB); open {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
