"""Fixtures of the browser suite: Debian's Chromium driven by Playwright, JupyterLab on a course copy.

`make test-browser` runs this folder. `make test-repo` (`pytest tests`) skips it: a browser run
is slow and has its own target (see `pytest_ignore_collect`).

Chromium is `/usr/bin/chromium` (Debian's package; `playwright install` is never used). Where it is
missing the tests SKIP with the reason, except in CI (`CI=true`), where they FAIL.

JupyterLab runs on a throw-away copy of the course (lectures, releases, sources, grading config),
so the notebooks the browser edits, runs and saves are never the repository's. Its settings,
workspaces, runtime and config folders are throw-away too, news and update checks are off, the
token is random and the server is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV_BIN = Path(sys.executable).parent
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", ROOT / "build" / "browser"))
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
IN_CI = os.environ.get("CI", "").lower() == "true"
INSTALL_HINT = "install it with `apt-get update && apt-get install -y chromium` (never `playwright install`)"


def pytest_ignore_collect(collection_path, config):
    """Collect this folder only when it (or a file in it) is named on the command line."""
    for arg in config.args:
        target = Path(arg.split("::")[0]).resolve()
        if target == HERE or HERE in target.parents:
            return None
    return True


def unavailable(reason: str):
    """Skip locally, fail in CI: a CI that silently skips the browser tests tests nothing."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run in CI; .ci/run installs chromium)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        unavailable(f"no Chromium at {CHROMIUM}: {INSTALL_HINT}")
    for stale in ARTIFACTS.glob("FAILED-*.png"):  # pictures of failures of an earlier run
        stale.unlink()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the Python package playwright is missing: run `make install`")
    with sync_playwright() as pw:
        # Playwright makes a fresh temporary profile for every launch
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    pg.page_errors = []
    pg.on("pageerror", lambda exc: pg.page_errors.append(str(exc)))
    yield pg
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:  # a picture of the failure is worth more than the timeout message
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"))
        except Exception:
            pass
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# The course copy and the JupyterLab server

COPY_IGNORE = shutil.ignore_patterns(
    ".ipynb_checkpoints",
    "__pycache__",
    "*.db",
    "submitted",
    "autograded",
    "feedback",
    "reports",
    ".work",
    "release_solutions",
    "*.pyc",
)


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory) -> Path:
    """What an instructor's clone holds, minus everything the browser tests do not open."""
    dest = tmp_path_factory.mktemp("course")
    for name in ["lectures", "assignments", "solutions", "grading"]:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=COPY_IGNORE)
    for name in ["course.toml", "README.md"]:
        shutil.copy2(ROOT / name, dest / name)
    return dest


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    proc: subprocess.Popen
    log: Path

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self):
        """Between tests: no kernel of an earlier test may compete for the two cores."""
        for session in self.api("/api/sessions"):
            self.api(f"/api/sessions/{session['id']}", method="DELETE")
        for kernel in self.api("/api/kernels"):
            self.api(f"/api/kernels/{kernel['id']}", method="DELETE")


def _lab_settings(settings_dir: Path):
    def put(plugin: str, values: dict):
        pkg, name = plugin.rsplit(":", 1)
        path = settings_dir / pkg / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))

    put("@jupyterlab/apputils-extension:notification", {"fetchNews": "false", "checkForUpdates": False})
    # windowing "none": every cell is in the DOM, so "every prompt is numbered" means every cell ran
    put(
        "@jupyterlab/notebook-extension:tracker",
        {"windowingMode": "none", "autoStartDefaultKernel": True, "kernelShutdown": True},
    )
    put("@jupyterlab/docmanager-extension:plugin", {"autosave": False})


@pytest.fixture(scope="session")
def lab(course_copy, tmp_path_factory, browser) -> Lab:
    """`jupyter lab` on the course copy, started as an instructor starts it: from grading/, where
    nbgrader reads nbgrader_config.py (Validate and Formgrader use it), serving the course root."""
    state = tmp_path_factory.mktemp("jupyter-state")
    dirs = {name: state / name for name in ["config", "data", "runtime", "settings", "workspaces"]}
    for d in dirs.values():
        d.mkdir()
    _lab_settings(dirs["settings"])
    port, token = free_port(), secrets.token_hex(24)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        # nbgrader runs `alembic` by name when it opens the gradebook
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.pop("JUPYTER_PATH", None)
    cmd = [
        str(VENV_BIN / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={course_copy}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.getuid() == 0:
        cmd.append("--allow-root")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "jupyter-lab.log"
    cwd = course_copy / "grading" if (course_copy / "grading" / "nbgrader_config.py").exists() else course_copy
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Lab(url=f"http://127.0.0.1:{port}", token=token, root=course_copy, proc=proc, log=log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                server.api("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in 90 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.25)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)  # Jupyter shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def lab_page(lab, page):
    yield page
    lab.shutdown_kernels()
