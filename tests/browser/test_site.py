"""The static site (`make site`) opened in Chromium: math rendered, images shown, no broken link,
nothing fetched from outside the site.

By default the site is built into a temporary folder; `make site` checks the _site/ it built by
setting SITE_DIR.
"""
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from conftest import ROOT, screenshot_path

sys.path.insert(0, str(ROOT / "scripts"))
import build_site  # noqa: E402
from course import lecture_notebooks, settings  # noqa: E402

# After MathJax has typeset the page: what a reader would see that is wrong.
# MathJax 2 has typeset the page and is idle (its startup signal posts "End" after the first typeset)
_MATH_DONE_JS = """() => window.MathJax && MathJax.Hub && MathJax.Hub.Startup.signal.posted.some(m => String(m) === "End")
                        && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running"""
_MATH_JS = """() => {
  const leftover = [];
  for (const m of document.querySelectorAll('.jp-MarkdownOutput')) {
    const c = m.cloneNode(true);
    c.querySelectorAll('code, pre, script, .MathJax, .MathJax_Display, .MathJax_Preview').forEach(e => e.remove());
    const hit = c.textContent.match(/\\$\\$[^$]*\\$\\$|\\$[^$\\n]{1,200}\\$|\\\\\\(|\\\\\\[/);
    if (hit) leftover.push(hit[0].slice(0, 120));
  }
  return {
    rendered: document.querySelectorAll('.MathJax, .MathJax_Display').length,
    errors: [...document.querySelectorAll('.MathJax_Error, .merror, .noError')].map(e => e.textContent.slice(0, 120)),
    leftover: leftover,
    mathSources: document.querySelectorAll('script[type^="math/tex"]').length,
  };
}"""

_IMAGES_JS = """() => [...document.images].map(i => ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0}))"""
_LINKS_JS = """() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"""
_IDS_JS = """() => [...document.querySelectorAll('[id]')].map(e => e.id)"""


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory) -> Path:
    if os.environ.get("SITE_DIR"):
        out = Path(os.environ["SITE_DIR"]).resolve()
        assert (out / "index.html").exists(), f"{out} has no index.html: run `make site`"
        return out
    out = tmp_path_factory.mktemp("site") / "_site"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_site.py"), "--out", str(out)], check=True)
    return out


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


def _repo_path_of_external(href: str):
    """The repository path a GitHub / Colab / Binder link of this course points at, else None."""
    s = settings()
    for prefix in (f"https://github.com/{s['slug']}/blob/{s['branch']}/",
                   f"https://colab.research.google.com/github/{s['slug']}/blob/{s['branch']}/"):
        if href.startswith(prefix):
            return unquote(href[len(prefix):].split("#")[0])
    m = re.match(rf"https://mybinder\.org/v2/gh/{re.escape(s['slug'])}/{re.escape(s['branch'])}\?urlpath=(.*)", href)
    if m:
        return unquote(m.group(1)).removeprefix("lab/tree/")
    return None


def test_site_renders_offline_with_math_images_and_working_links(browser, site_dir, site_url):
    pages = ["index.html"] + [p.stem + ".html" for p in lecture_notebooks()]
    for name in pages:
        assert (site_dir / name).exists(), f"the site lacks {name}"
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    outside, failed, errors = [], [], []
    # (MathJax probes fonts with a src of about:blank, by design: not a request to anywhere)
    local = ("data:", "about:", site_url)
    context.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
    context.on("requestfailed", lambda r: None if r.url.startswith("about:") else failed.append(f"{r.url}: {r.failure}"))
    context.on("response", lambda r: failed.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None)
    # nothing leaves the machine: a CDN the page still needs would fail here, not hang
    context.route(re.compile(r"^https?://(?!" + re.escape(site_url.split("://")[1]) + ")"), lambda route: route.abort())
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    ids_of, links_of = {}, {}
    try:
        for name in pages:
            page.goto(site_url + name, wait_until="load")
            page.wait_for_function(_MATH_DONE_JS, timeout=60_000, polling=200)
            math = page.evaluate(_MATH_JS)
            assert math["mathSources"] > 0 and math["rendered"] >= math["mathSources"] > 0, \
                f"{name}: {math['rendered']} of {math['mathSources']} formulas rendered"
            assert not math["errors"], f"{name}: MathJax errors {math['errors']}"
            assert not math["leftover"], f"{name}: TeX left unrendered: {math['leftover']}"
            images = page.evaluate(_IMAGES_JS)
            broken = [i["src"] for i in images if not i["ok"]]
            assert not broken, f"{name}: images not shown: {broken}"
            if name != "index.html":
                assert sum(i["src"].startswith("data:image/png") for i in images) > 0, f"{name}: no figure"
            ids_of[name] = set(page.evaluate(_IDS_JS))
            links_of[name] = page.evaluate(_LINKS_JS)
            if name in ("index.html", "04_matrix_differentials.html"):
                page.screenshot(path=str(screenshot_path("site-" + name.removesuffix(".html"))))
    finally:
        context.close()
    assert not outside, f"the site fetched from outside itself: {sorted(set(outside))[:10]}"
    assert not failed, f"failed requests: {failed[:10]}"
    assert not errors, f"JavaScript errors: {errors[:5]}"

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
            if not (site_dir / unquote(target)).is_file():
                broken.append(f"{name}: {href} (no {target} in the site)")
            elif parts.fragment and target in ids_of and not {parts.fragment, unquote(parts.fragment)} & ids_of[target]:
                # (a browser looks the fragment up as written, then percent-decoded)
                broken.append(f"{name}: {href} (no #{parts.fragment} in {target})")
    assert not broken, "broken links:\n" + "\n".join(broken)
