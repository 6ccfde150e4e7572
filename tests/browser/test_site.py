"""The course website (`make site`: Sphinx + MyST-NB + sphinx-book-theme) opened in Chromium.

Every page loads with no console error and nothing fetched from outside the site; math is typeset
on every lecture page, figures are shown, widgets are replaced by a note; every link resolves;
search finds the right lecture; the sidebar lists every lecture in order; the launch buttons
open this page's notebook; no page holds solution or hidden-test text.

`make site` / `make test-browser` build _site/ and pass it as SITE_DIR; run alone, this file builds
the site into a temporary folder (`make site-html SITE=…`).
"""

import functools
import http.server
import os
import re
import subprocess
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import pytest

from conftest import ROOT, screenshot_path
from course import (
    colab_url,
    hub_url,
    lecture_info,
    lecture_notebooks,
    read_nb,
    release_notebooks,
    settings,
    source_notebooks,
    src,
)

LECTURES = lecture_notebooks()
NOTEBOOK_PAGES = {p.relative_to(ROOT).with_suffix(".html").as_posix(): p for p in LECTURES + release_notebooks()}
SEARCH_TERMS = ["Kronecker", "maxvol", "backpropagation"]

# MathJax 2 has typeset the page and is idle (its startup signal posts "End" after the first typeset);
# Sphinx loads MathJax only on pages with math
_MATH_DONE_JS = """() => !document.querySelector('script[src*="mathjax/MathJax.js"]') ||
                        (window.MathJax && MathJax.Hub && MathJax.Hub.Startup.signal.posted.some(m => String(m) === "End")
                         && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running)"""
# What a reader sees that is wrong after typesetting: MathJax errors, TeX left as text
_MATH_JS = """() => {
  const article = document.querySelector('article.bd-article') || document.body;  // search.html has none
  const c = article.cloneNode(true);
  c.querySelectorAll('code, pre, script, .MathJax, .MathJax_Display, .MathJax_Preview').forEach(e => e.remove());
  const leftover = c.textContent.match(/\\$\\$[^$]*\\$\\$|\\$[^$\\n]{1,200}\\$|\\\\\\(|\\\\\\[|\\\\begin\\{/g) || [];
  return {
    rendered: article.querySelectorAll('.MathJax, .MathJax_Display').length,
    errors: [...article.querySelectorAll('.MathJax_Error, .merror, .noError')].map(e => e.textContent.slice(0, 120)),
    leftover: leftover.map(s => s.slice(0, 120)),
    mathSources: article.querySelectorAll('script[type^="math/tex"]').length,
  };
}"""
_IMAGES_JS = """() => [...(document.querySelector('article.bd-article') || document.body).querySelectorAll('img')]
                       .map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}))"""
_LINKS_JS = """() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"""
_IDS_JS = """() => [...document.querySelectorAll('[id]')].map(e => e.id)"""
_SIDEBAR_JS = (
    """() => [...document.querySelectorAll('nav.bd-docs-nav a.reference.internal')].map(a => a.getAttribute('href'))"""
)
_LAUNCH_JS = """() => [...document.querySelectorAll('.dropdown-launch-buttons a')].map(a => a.href)"""
_SEARCH_DONE_JS = """() => { const s = document.querySelector('#search-results .search-summary, #search-results p');
                             return s && /found|did not match|no result/i.test(s.textContent); }"""
_SEARCH_HITS_JS = (
    """() => [...document.querySelectorAll('#search-results ul.search li a')].map(a => a.getAttribute('href'))"""
)


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory) -> Path:
    if os.environ.get("SITE_DIR"):
        out = (ROOT / os.environ["SITE_DIR"]).resolve()
        assert (out / "index.html").exists(), f"{out} has no index.html: run `make site`"
        return out
    tmp = tmp_path_factory.mktemp("site")
    subprocess.run(
        ["make", "-s", "site-html", f"SITE={tmp / '_site'}", f"SITE_WORK={tmp / 'work'}"], cwd=ROOT, check=True
    )
    return tmp / "_site"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site_url(site_dir):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def site_page(browser, site_url):
    """One page of a context that records console errors, failed and outside requests (aborted)."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    context.set_default_timeout(300_000)  # a safety net on a loaded machine, not a margin
    log = {"outside": [], "failed": [], "console": []}
    context.route(
        re.compile(r"^(?!" + re.escape(site_url) + r"|data:|about:|blob:)"),
        lambda route: (log["outside"].append(route.request.url), route.abort()),
    )
    context.on(
        "requestfailed", lambda r: None if r.url in log["outside"] else log["failed"].append(f"{r.url}: {r.failure}")
    )
    context.on("response", lambda r: log["failed"].append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None)
    page = context.new_page()
    page.on(
        "console", lambda m: log["console"].append(f"{page.url}: {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: log["console"].append(f"{page.url}: page error: {e}"))
    page.site_log = log
    yield page
    context.close()


def _html_pages(site_dir: Path) -> list[str]:
    return sorted(
        p.relative_to(site_dir).as_posix()
        for p in site_dir.rglob("*.html")
        if not p.relative_to(site_dir).parts[0].startswith("_")
    )


def _repo_path_of_external(href: str):
    """The repository path a GitHub / Colab / Binder link of this course points at, else None."""
    s = settings()
    for prefix in (
        f"https://github.com/{s['slug']}/blob/{s['branch']}/",
        f"https://github.com/{s['slug']}/tree/{s['branch']}/",
        f"https://colab.research.google.com/github/{s['slug']}/blob/{s['branch']}/",
    ):
        if href.startswith(prefix):
            return unquote(href[len(prefix) :].split("#")[0].split("?")[0])
    m = re.match(rf"https://mybinder\.org/v2/gh/{re.escape(s['slug'])}/{re.escape(s['branch'])}\?urlpath=(.*)", href)
    if m:
        return unquote(m.group(1)).removeprefix("lab/tree/")
    return None


def test_every_page_loads_offline_with_math_figures_and_working_links(site_dir, site_url, site_page):
    pages = _html_pages(site_dir)
    for name in [
        "index.html",
        "homework.html",
        "gradcheck.html",
        "api.html",
        "instructors.html",
        "bibliography.html",
        *NOTEBOOK_PAGES,
    ]:
        assert name in pages, f"the site lacks {name}"
    page, log = site_page, site_page.site_log
    ids_of, links_of = {}, {}
    for name in pages:
        page.goto(site_url + name, wait_until="load")
        page.wait_for_function(_MATH_DONE_JS, timeout=600_000, polling=200)
        math = page.evaluate(_MATH_JS)
        assert not math["errors"], f"{name}: MathJax errors {math['errors']}"
        assert not math["leftover"], f"{name}: TeX left unrendered: {math['leftover'][:5]}"
        images = page.evaluate(_IMAGES_JS)
        broken = [i["src"] for i in images if not i["ok"]]
        assert not broken, f"{name}: images not shown: {broken}"
        if name.startswith("lectures/"):
            assert math["mathSources"] > 20 and math["rendered"] >= math["mathSources"], (
                f"{name}: {math['rendered']} of {math['mathSources']} formulas rendered"
            )
            figures = [i for i in images if "_images/" in i["src"]]
            assert figures, f"{name}: no figure"
            nb = read_nb(NOTEBOOK_PAGES[name])
            if any(
                "application/vnd.jupyter.widget-view+json" in o.get("data", {})
                for c in nb["cells"]
                for o in c.get("outputs", [])
            ):
                note = page.locator(".course-widget-note").first.inner_text()
                assert "move the slider" in note and "Colab" in note, f"{name}: widget note {note!r}"
            if name == "lectures/04_matrix_differentials.html":
                page.screenshot(path=str(screenshot_path("site-lecture")))
        ids_of[name] = set(page.evaluate(_IDS_JS))
        links_of[name] = page.evaluate(_LINKS_JS)
    assert not log["outside"], f"the site fetched from outside itself: {sorted(set(log['outside']))[:10]}"
    assert not log["failed"], f"failed requests: {log['failed'][:10]}"
    assert not log["console"], "console errors:\n" + "\n".join(log["console"][:10])

    broken = []
    for name, hrefs in links_of.items():
        for href in hrefs:
            parts = urlsplit(href)
            if parts.scheme in ("http", "https"):
                repo_path = _repo_path_of_external(href)
                if repo_path is not None and not (ROOT / repo_path).exists():
                    broken.append(f"{name}: {href} (no {repo_path} in the repository)")
                continue
            if parts.scheme == "mailto":
                continue
            if parts.scheme:
                broken.append(f"{name}: {href} (scheme {parts.scheme})")
                continue
            target = urlsplit(urljoin(name, href)).path or name
            if target.endswith(".ipynb") and not target.startswith("_sources/"):
                broken.append(f"{name}: {href} (a link to a notebook file, not to its page)")
            elif target.endswith("/") and (site_dir / target / "index.html").is_file():
                continue
            elif not (site_dir / unquote(target)).is_file():
                broken.append(f"{name}: {href} (no {target} in the site)")
            elif parts.fragment and target in ids_of and not {parts.fragment, unquote(parts.fragment)} & ids_of[target]:
                broken.append(f"{name}: {href} (no #{parts.fragment} in {target})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_links_between_notebooks_lead_to_their_pages(site_dir):
    """Every relative link of a notebook to another notebook is, on the site, a link to that page."""
    from bs4 import BeautifulSoup

    missing = []
    for page_name, nb_path in NOTEBOOK_PAGES.items():
        soup = BeautifulSoup((site_dir / page_name).read_text(encoding="utf-8"), "html.parser")
        hrefs = {urlsplit(urljoin(page_name, a["href"])).path for a in soup.select("article a[href]")}
        for cell in read_nb(nb_path)["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for target in re.findall(
                r"(?<!!)\[[^\]\n]*\]\((?![a-zA-Z][a-zA-Z0-9+.-]*:|[#/])([^)\s#]+\.ipynb)", src(cell)
            ):
                dest = (nb_path.parent / target).resolve().relative_to(ROOT).with_suffix(".html").as_posix()
                if dest not in hrefs:
                    missing.append(f"{page_name}: no link to {dest} (the notebook links {target})")
    assert not missing, "\n".join(missing)


def expected_lecture(term: str):
    """The lecture a search for `term` should find first: the term in its title, else in the most
    headings, else the most often; None when no lecture mentions it (then none may be found)."""
    best, best_key = None, (0, 0, 0)
    for path in LECTURES:
        md = "\n".join(src(c) for c in read_nb(path)["cells"] if c["cell_type"] == "markdown")
        headings = "\n".join(line for line in md.split("\n") if line.startswith("#"))
        key = (
            int(term.lower() in lecture_info(path)["heading"].lower()),
            len(re.findall(re.escape(term), headings, re.I)),
            len(re.findall(re.escape(term), md, re.I)),
        )
        if key > best_key:
            best, best_key = path, key
    return best


@pytest.mark.parametrize("term", SEARCH_TERMS)
def test_search_finds_the_right_lecture(term, site_url, site_page):
    page = site_page
    page.goto(f"{site_url}search.html?q={term}", wait_until="load")
    page.wait_for_function(_SEARCH_DONE_JS, timeout=300_000, polling=200)
    hits = [urlsplit(h).path.lstrip("./") for h in page.evaluate(_SEARCH_HITS_JS)]
    lecture_hits = [h for h in hits if h.startswith("lectures/")]
    expected = expected_lecture(term)
    if expected is None:  # e.g. "Kronecker" before lecture 07 exists: no lecture may claim it
        assert not lecture_hits, f"search {term!r}: no lecture mentions it, yet found {lecture_hits}"
    else:
        want = expected.relative_to(ROOT).with_suffix(".html").as_posix()
        assert lecture_hits and lecture_hits[0] == want, f"search {term!r}: expected {want} first, got {hits}"
    assert not page.site_log["console"], page.site_log["console"][:5]


def test_sidebar_lists_every_lecture_in_order(site_url, site_page):
    page = site_page
    for name in ["index.html", "lectures/03_matrix_calculus_definitions.html"]:
        page.goto(site_url + name, wait_until="load")
        hrefs = [urlsplit(urljoin(name, h)).path for h in page.evaluate(_SIDEBAR_JS)]
        lectures = [h for h in hrefs if h.startswith("lectures/")]
        want = [p.relative_to(ROOT).with_suffix(".html").as_posix() for p in LECTURES]
        assert lectures == want, f"{name}: sidebar lectures {lectures}, expected {want}"
        titles = page.locator("nav.bd-docs-nav a.reference.internal").all_inner_texts()
        for p in LECTURES:
            assert lecture_info(p)["heading"] in [" ".join(t.split()) for t in titles], (
                f"{name}: the sidebar lacks {lecture_info(p)['heading']!r}"
            )


def test_launch_buttons_open_this_pages_notebook(site_url, site_page):
    s, page = settings(), site_page
    for name, nb in NOTEBOOK_PAGES.items():
        page.goto(site_url + name, wait_until="load")
        links = page.evaluate(_LAUNCH_JS)
        rel = nb.relative_to(ROOT).as_posix()
        colab = [u for u in links if u.startswith("https://colab.research.google.com/")]
        assert colab == [colab_url(nb)], f"{name}: Colab button {colab}, expected {colab_url(nb)}"
        binder = [urlsplit(u) for u in links if u.startswith("https://mybinder.org/")]
        assert len(binder) == 1, f"{name}: Binder buttons {links}"
        assert binder[0].path == f"/v2/gh/{s['slug']}/{s['branch']}", f"{name}: Binder {binder[0].geturl()}"
        assert unquote(parse_qs(binder[0].query)["urlpath"][0]) == f"lab/tree/{rel}", f"{name}: {binder[0].geturl()}"
        hub = [u for u in links if hub_url() and u.startswith(hub_url())]
        assert len(hub) == (1 if hub_url() else 0), f"{name}: JupyterHub buttons {hub} (course.toml: {hub_url()})"
        if hub:
            assert rel in unquote(hub[0]), f"{name}: JupyterHub button {hub[0]} does not open {rel}"


def test_no_page_holds_solution_or_hidden_test_text(site_dir):
    """Scanned as `make student-repo` scans the public tree: markers anywhere; on an assignment's
    pages and files, every line that exists only in its solution or hidden-test regions."""
    from coursegrader import nbutil

    secrets = {}
    for source in source_notebooks():
        lines = nbutil.secret_lines(nbutil.read_nb(source))
        secrets[source.parent.name] = lines["solution"] | lines["hidden"]
    assert secrets, "no source notebooks to take the secret lines from"
    problems, scanned = [], 0
    for path in sorted(site_dir.rglob("*")):
        if not path.is_file() or path.suffix not in (".html", ".js", ".ipynb", ".txt", ".md", ".json"):
            continue
        rel = path.relative_to(site_dir).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        scanned += 1
        for marker in (nbutil.BEGIN_SOLUTION, nbutil.END_SOLUTION, nbutil.BEGIN_HIDDEN, nbutil.END_HIDDEN):
            if marker in text:
                problems.append(f"{rel}: marker {marker!r}")
        visible = nbutil.html_text(text) if path.suffix == ".html" else text
        lines = {line.strip() for line in visible.split("\n")}
        for aid, secret in secrets.items():
            if aid in rel or path.name == "searchindex.js":
                problems += [
                    f"{rel}: line of {aid}'s solution or hidden tests: {line!r}" for line in sorted(secret & lines)
                ]
    assert scanned > 20, f"only {scanned} files scanned in {site_dir}"
    assert not problems, "\n".join(problems[:20])
