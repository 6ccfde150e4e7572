"""Fixtures of `make test-hub`: a real JupyterHub with throw-away Linux users, driven in Chromium.

The hub runs on a free loopback port with its own exchange, state and config folders under a
temporary folder; the users carry a random prefix and are deleted at the end with their homes.
Everything the hub started is stopped, pass or fail (hubctl.stop_hub). Without root or Chromium
the test skips locally and FAILS under CI=true: a CI that skips the hub tests tests nothing.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
HUB = HERE.parent
ROOT = HUB.parent
# hub/ and grading/ are on the path by pyproject.toml; the browser suite's helpers (jlab) are not (its
# conftest would shadow ours as a module).
sys.path.insert(0, str(ROOT / "tests" / "browser"))

import hubctl  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
HUB_VENV = Path(os.environ.get("HUB_VENV", "/opt/course-hub/venv"))
CHP = HUB / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "build" / "hub"
# as tests/browser/conftest.py launches it
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
AID = "hw1_matrix_gradients"


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the hub test must run in CI)", pytrace=False)
    pytest.skip(reason)


@dataclass
class Hub:
    url: str
    course_id: str
    exchange: Path
    course: Path  # the instructor's course folder
    instructor: str
    students: list
    passwords: dict
    log: Path
    proc: subprocess.Popen = field(repr=False)

    def home(self, user: str) -> Path:
        return Path(pwd.getpwnam(user).pw_dir)


def seed_lab_settings(user: str) -> None:
    """What the browser tests pre-seed too: no news toast, every cell in the DOM, kernels start."""
    home = Path(pwd.getpwnam(user).pw_dir)
    base = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    for rel, values in [
        ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False}),
        ("notebook-extension/tracker", {"windowingMode": "none", "autoStartDefaultKernel": True}),
        ("docmanager-extension/plugin", {"autosave": False}),
    ]:
        path = base / f"{rel}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    subprocess.run(["chown", "-R", f"{user}:", str(home / ".jupyter")], check=True)


@pytest.fixture(scope="session")
def hub():
    if os.geteuid() != 0:
        unavailable("the hub test creates Linux users: run it as root")
    if not (HUB_VENV / ".installed").exists() or not CHP.exists():
        unavailable(f"no hub environment ({HUB_VENV}) or proxy ({CHP}): run `make hub-install`")
    if not CHROMIUM.exists():
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    t0 = time.monotonic()
    # a CI timeout's SIGTERM must still run the clean-up below (stop the hub, delete the users)
    signal.signal(signal.SIGTERM, _interrupt)
    course_id = hubctl.course_settings()["course_id"]
    prefix = "ht" + secrets.token_hex(3)  # throw-away users: ht<6 hex><role>
    instructor, students = f"{prefix}i", [f"{prefix}a", f"{prefix}b"]
    users = [instructor, *students]
    base = Path(tempfile.mkdtemp(prefix="course-hub-test-", dir="/tmp"))
    os.chmod(base, 0o755)  # students' servers must reach the config folder and the exchange
    state, exchange = base / "state", base / "exchange"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "jupyterhub.log"
    proc = None
    try:
        passwords = {u: secrets.token_urlsafe(12) for u in users}
        for u in users:
            hubctl.create_user(u, passwords[u])
            seed_lab_settings(u)
        state.mkdir(mode=0o711)
        hubctl.make_exchange(exchange)
        hubctl.write_etc(state / "etc", course_id, exchange)
        settings = hubctl.hub_settings(
            HUB_VENV,
            state,
            CHP,
            hubctl.free_port(),
            exchange,
            {"instructors": [instructor], "students": students},
            course_id,
        )
        settings["service_token"] = secrets.token_hex(32)
        log = open(log_path, "wb")
        proc = hubctl.start_hub(HUB_VENV, state, settings, log)
        url = f"http://127.0.0.1:{settings['port']}"
        hubctl.wait_healthy(url, proc)
        # Servers start (≈ 20-30 s each on a loaded machine) while the course folder is being made:
        # the logins find them up.
        for u in users:
            req = urllib.request.Request(
                f"{url}/hub/api/users/{u}/server",
                method="POST",
                headers={"Authorization": f"token {settings['service_token']}"},
            )
            urllib.request.urlopen(req, timeout=60).close()
        course = hubctl.install_course(instructor, course_id)
        print(f"\nhub up, users made, course installed: {time.monotonic() - t0:.0f} s")
        yield Hub(
            url=url,
            course_id=course_id,
            exchange=exchange,
            course=course,
            instructor=instructor,
            students=students,
            passwords=passwords,
            log=log_path,
            proc=proc,
        )
    finally:
        if proc is not None:
            hubctl.stop_hub(proc, users)
        for u in users:
            hubctl.delete_user(u)
        shutil.rmtree(base, ignore_errors=True)
        leftover = [u for u in users if _exists(u)]
        assert not leftover, f"throw-away users not deleted: {leftover}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def contexts(browser, request):
    """Browser contexts the test opens (one per user); on failure a screenshot of each page."""
    opened = []
    yield opened
    rep = getattr(request.node, "rep_call", None)
    for k, ctx in enumerate(opened):
        if rep is not None and rep.failed:
            for j, page in enumerate(ctx.pages):
                try:
                    page.screenshot(path=str(ARTIFACTS / f"FAILED-{k}-{j}.png"))
                except Exception:
                    pass
        ctx.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def shot_name(name: str) -> Path:
    (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / "screenshots" / f"{name}.png"


# tests/browser/test_student_validate.py (whose answer helpers the hub test reuses) imports this name
# from `conftest`, which is this file while the hub suite runs.
screenshot_path = shot_name
