"""A grader killed from outside leaves nothing behind (issue 9): whatever is killed -- a batch worker
by SIGKILL, the grader by SIGKILL or SIGTERM -- no process of its sandbox uids survives, and no cgroup
or work folder once the next grader has started; a leftover of a uid a live grader holds is kept.

Processes die asynchronously: each check polls (up to 60 s, so load does not decide the verdict).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_sandbox import needs_sandbox

from grading_fixtures import TOY, make_toy_course, toy_source
from sandboxgrader import batch, cgroup
from sandboxgrader.kernel import UID_BASE, UID_COUNT, Limits, _uid_processes, acquire_uid

pytestmark = needs_sandbox
ROOT = Path(__file__).resolve().parent.parent
WORKROOT = "/var/tmp/sandboxgrader"
BOUND = 60.0  # seconds a dead process may take to be gone (never reached unless something is wrong)

# the toy course's answer, then a cell that runs for ever: a kernel is busy when the grader is killed
SLEEPER = "\nimport time\ntime.sleep(3000)"
CLI = (
    "import sys\nfrom pathlib import Path\nfrom coursegrader import cli, settings\n"
    "settings.Course.default = classmethod(lambda cls: settings.Course.at(Path(sys.argv[1]), timeout=600))\n"
    "sys.exit(cli.main(['autograde', '--no-progress', '--jobs', '1']))\n"
)


def _sleeper_nb() -> dict:
    nb = toy_source()
    for c in nb["cells"]:
        if c["metadata"].get("nbgrader", {}).get("grade_id") == "answer_grad":
            c["source"] += SLEEPER
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The toy course, its gradebook, two students whose answer never returns."""
    from coursegrader.records import ensure_gradebook
    from coursegrader.settings import Course, ensure_venv_on_path

    root = make_toy_course(tmp_path_factory.mktemp("orphans"))
    for student in ("s1", "s2"):
        path = root / "grading" / "submitted" / student / TOY / "toy.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_sleeper_nb()))
    ensure_venv_on_path()  # (nbgrader runs alembic)
    ensure_gradebook(Course.at(root), TOY)
    return root


def _procs() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, real uid) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as fh:
                f = dict(line.split(":", 1) for line in fh if ":" in line)
            out[int(entry)] = (int(f["PPid"]), int(f["Uid"].split()[0]))
        except (OSError, ValueError, KeyError):
            continue
    return out


def kernel_uids_under(pid: int) -> set[int]:
    """Sandbox uids of the processes descending from ``pid``."""
    procs = _procs()
    uids = set()
    for p, (_, uid) in procs.items():
        if not UID_BASE <= uid < UID_BASE + UID_COUNT:
            continue
        q = p
        for _ in range(64):
            q = procs.get(q, (0, 0))[0]
            if q in (0, pid):
                break
        if q == pid:
            uids.add(uid)
    return uids


def wait_for(predicate, bound: float = BOUND, what=lambda: ""):
    """Poll ``predicate`` until it holds, at most ``bound`` s; ``what()`` says what did not happen."""
    deadline = time.monotonic() + bound
    while True:
        got = predicate()
        if got or time.monotonic() > deadline:
            assert got, f"not within {bound:g} s: {what()}"
            return got
        time.sleep(0.1)


def folders_of(uid: int) -> list[str]:
    """Work folders of a uid: named after it, or (the older name) with a home that is the uid's."""
    out = []
    for name in os.listdir(WORKROOT) if os.path.isdir(WORKROOT) else []:
        path = os.path.join(WORKROOT, name)
        try:
            owner = os.stat(os.path.join(path, "home")).st_uid
        except OSError:
            owner = None
        if name.startswith("sandbox-") and (f"-{uid}-" in name or owner == uid):
            out.append(path)
    return out


def leftovers(uids: set[int]) -> dict:
    """Live processes, cgroups and work folders of the uids."""
    left = {
        "processes": {u: p for u in uids if (p := _uid_processes(u))},
        "cgroups": {u: d for u, d in cgroup.groups_by_uid().items() if u in uids},
        "folders": [f for u in uids for f in folders_of(u)],
    }
    return {k: v for k, v in left.items() if v}


def assert_nothing_left(uids: set[int], sweep: bool = False) -> None:
    """Nothing of the uids left within BOUND (processes die asynchronously, and a sweep of another
    grader on this machine may hold a uid's lock for a moment). ``sweep``: what the next grader does
    first, meanwhile."""
    from sandboxgrader import lifeline

    def clean():
        if sweep:
            lifeline.sweep()
        return not leftovers(uids)

    wait_for(clean, what=lambda: f"left of {sorted(uids)}: {leftovers(uids)}")


def _kill_when_busy(parent: int, found: dict, sig=signal.SIGKILL, bound: float = 120.0) -> None:
    """Once ``parent``'s worker runs one kernel and has the next one pre-launched: ``sig`` to the
    worker (or to ``parent`` itself if ``found["target"] == "grader"``)."""
    deadline = time.monotonic() + bound
    worker = None
    while time.monotonic() < deadline:
        procs = _procs()
        workers = [p for p, (pp, _) in procs.items() if pp == parent and b"sandboxgrader.batch" in _cmdline(p)]
        worker = workers[0] if workers else None
        if worker and len(kernel_uids_under(worker)) >= 2:
            found["uids"] = kernel_uids_under(worker)
            break
        time.sleep(0.1)
    os.kill(parent if found.get("target") == "grader" else (worker or parent), sig)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def test_a_worker_killed_by_sigkill_takes_its_running_and_prelaunched_kernels(course):
    src = course / "solutions" / TOY / "toy.ipynb"
    sub = course / "grading" / "submitted" / "s1" / TOY / "toy.ipynb"
    found: dict = {}
    killer = threading.Thread(target=_kill_when_busy, args=(os.getpid(), found), daemon=True)
    killer.start()
    out = list(batch.grade_many([batch.Job("s1", TOY, "toy", str(src), str(sub))], 1, batch.Options(600, 600)))
    killer.join()
    assert len(found.get("uids", ())) == 2, found  # the running kernel and the pre-launched one
    assert "worker died" in out[0]["error"], out[0]["error"]
    assert_nothing_left(found["uids"])


def _autograde(course: Path, log: Path) -> subprocess.Popen:
    """`autograde` of the course in a process of its own (output to a file: no pipe an orphan would
    keep open)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "grading"))
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-c", CLI, str(course)], env=env, stdout=fh, stderr=fh)


def test_sigterm_of_autograde_stops_it_cleanly_and_says_so(course, tmp_path):
    proc = _autograde(course, tmp_path / "log")
    found = {"target": "grader"}
    _kill_when_busy(proc.pid, found, signal.SIGTERM)
    proc.wait(timeout=180)
    err = (tmp_path / "log").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err[-3000:])
    assert "autograde: interrupted by SIGTERM" in err, err[-3000:]
    assert len(found.get("uids", ())) == 2, found
    assert_nothing_left(found["uids"])  # shut down by the grader itself: nothing for a sweep to do
    summary = json.loads((course / "grading" / "reports" / "autograde.json").read_text())
    assert {k: v["ok"] for k, v in summary.items()} == {f"{TOY}/s1": False, f"{TOY}/s2": False}
    assert all("interrupted by SIGTERM" in v["problem"] for v in summary.values())
    assert not list((course / "grading").rglob("*.tmp"))


def test_sigkill_of_autograde_kills_its_kernels_and_the_next_start_sweeps_the_rest(course, tmp_path):
    proc = _autograde(course, tmp_path / "log")
    found = {"target": "grader"}
    _kill_when_busy(proc.pid, found, signal.SIGKILL)
    proc.wait(timeout=60)
    assert len(found.get("uids", ())) == 2, found
    alive = lambda: {u: p for u in found["uids"] if (p := _uid_processes(u))}  # noqa: E731
    wait_for(lambda: not alive(), what=lambda: f"kernels outlived their grader: {alive()}")  # no Python ran
    assert_nothing_left(found["uids"], sweep=True)


def test_the_sweep_removes_leftovers_of_free_uids_only():
    from sandboxgrader.kernel import KernelCgroup

    made = {}
    locks = {}
    for role in ("free", "held"):
        uid, lock = acquire_uid()
        folder = os.path.join(WORKROOT, f"sandbox-0-{uid}-fake{role}")
        os.makedirs(os.path.join(folder, "home"))
        made[role] = (uid, folder, KernelCgroup.create(f"uid-{uid}", Limits()))
        locks[role] = lock
    locks.pop("free").close()  # as when its grader died: the OS released the lock
    stray = None
    try:
        cg = made["free"][2]
        if cg is not None:  # a process a dead grader's kernel left in its group: killed by the sweep
            stray = subprocess.Popen(["sleep", "600"])
            for f in cg.procs_files:
                with open(f, "w") as fh:
                    fh.write(str(stray.pid))
        assert_nothing_left({made["free"][0]}, sweep=True)
        if stray is not None:
            assert stray.wait(timeout=BOUND) == -signal.SIGKILL
        uid, folder, cg = made["held"]  # a live grader's: untouched
        assert os.path.isdir(folder) and (cg is None or uid in cgroup.groups_by_uid())
    finally:
        if stray is not None and stray.poll() is None:
            stray.kill()
            stray.wait()
        locks["held"].close()  # its grader is gone now: the next sweep takes it
    assert_nothing_left({made["held"][0]}, sweep=True)
