"""The kernel's clock (grading/sandboxgrader/clock.py): a time limit that the machine's load does not move.

A kernel held to a tenth of a core by its cgroup's CPU quota is the busy machine made exact: nine
tenths of the wall time it waits for a CPU, whatever else runs. Code that needs 0.4 s of CPU then
takes >= 4 s of wall time; on the kernel's clock it takes about 0.4 s, and a 2 s limit holds. Sleeping
is on the clock, and every limit is capped on the wall clock at ``wall_factor`` times itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest
from test_sandbox import HAVE_SANDBOX, needs_sandbox

from sandboxgrader.cgroup import KernelCgroup
from sandboxgrader.clock import Deadline, host_tid, run_delay
from sandboxgrader.kernel import Limits

BUSY = "import time\nt = time.thread_time()\nwhile time.thread_time() - t < {cpu}:\n    pass\n"


def _cgroup(name: str) -> KernelCgroup:
    cg = KernelCgroup.create(name, Limits())
    if cg is None:
        assert os.environ.get("CI") != "true", "no writable cgroup: the clock's tests need one"
        pytest.skip("no writable cgroup v1/v2 here (root needed)")
    return cg


@pytest.fixture
def throttled():
    """A busy process in a cgroup of its own, held to a tenth of a core."""
    cg = _cgroup(f"clocktest-{os.getpid()}")
    assert cg.set_cpus(0.1)
    procs = " ".join(cg.procs_files)
    p = subprocess.Popen(
        ["/bin/sh", "-c", f'for f in {procs}; do echo $$ > "$f"; done; exec "$0" -c "while True: pass"', sys.executable]
    )
    time.sleep(0.2)  # (it is in its cgroup before it execs python)
    yield p
    p.kill()
    p.wait()
    cg.remove()


def test_a_throttled_busy_process_is_on_the_kernels_clock_only_while_it_runs(throttled):
    task = (throttled.pid, throttled.pid)
    clock = Deadline(1.0, task, wall_factor=100)
    capped = Deadline(1.0, task, wall_factor=1.5)
    wall_only = Deadline(1.0)
    time.sleep(2.0)
    assert wall_only.expired() and wall_only.elapsed() >= 2.0
    assert clock.wall() >= 2.0 and clock.elapsed() < 0.6, clock.elapsed()  # ~0.2 s: a tenth of the wall's
    assert not clock.expired() and clock.left() > 0.3
    assert capped.expired() and capped.left() == 0.0  # 1.5 x 1.0 s of wall time: the cap


def test_sleeping_is_on_the_kernels_clock():
    task = (os.getpid(), threading.get_native_id())
    d = Deadline(0.5, task, wall_factor=100)
    assert d.task == task and not d.expired()
    time.sleep(0.6)
    assert d.expired() and d.elapsed() >= 0.5


def test_a_thread_that_cannot_be_read_is_timed_by_the_wall_clock():
    assert run_delay((2**22 + 7, 2**22 + 7)) is None
    d = Deadline(0.3, (2**22 + 7, 2**22 + 7), wall_factor=100)
    assert d.task is None
    time.sleep(0.35)
    assert d.expired()


def test_host_tid_finds_a_thread_by_its_namespaced_id():
    assert host_tid(os.getpid(), threading.get_native_id()) == threading.get_native_id()
    assert host_tid(os.getpid(), 2**22 + 7) is None


def test_pause_takes_grader_time_off_the_clock():
    d = Deadline(0.3)
    time.sleep(0.35)
    d.pause(0.35)
    assert not d.expired() and d.elapsed() < 0.3


# ------------------------------------------------------------------------- in a real kernel


@pytest.fixture(scope="module")
def session():
    if not HAVE_SANDBOX:
        pytest.skip("bubblewrap missing or not root")
    from sandboxgrader.session import Session

    s = Session(slot=93, limits=replace(Limits(), wall_factor=100.0)).start()
    if s.kernel.cgroup is None:
        s.shutdown()
        assert os.environ.get("CI") != "true", "no writable cgroup: the clock's tests need one"
        pytest.skip("no writable cgroup here")
    assert s._main_task and s._agent_task and s._agent_task != s._main_task
    s.kernel.cgroup.set_cpus(0.1)  # (after its start: booting on a tenth of a core is slow)
    yield s
    s.shutdown()


@needs_sandbox
def test_a_cell_on_a_throttled_kernel_gets_its_time_on_the_kernels_clock(session):
    t0 = time.monotonic()
    run = session.run_cell(BUSY.format(cpu=0.4), timeout=2)
    wall = time.monotonic() - t0
    assert run.status == "ok", (run.status, run.evalue)
    assert wall >= 3.0  # a limit of 2 s on the wall clock would have stopped it
    assert run.seconds < 2.0  # what the budget is charged: the kernel's clock


@needs_sandbox
def test_a_call_on_a_throttled_kernel_gets_its_time_on_the_kernels_clock(session):
    from sandboxgrader.trusted import TrustedRunner

    assert (
        session.run_cell("def busy(cpu):\n" + "\n".join("    " + x for x in BUSY.format(cpu="cpu").split("\n"))).status
        == "ok"
    )
    tr = TrustedRunner(session, call_timeout=2)
    t0 = time.monotonic()
    ok, _, err = tr.run("busy(0.4)", "t-busy")
    wall = time.monotonic() - t0
    assert ok, err
    assert wall >= 3.0 and tr.call_seconds < 2.0


@needs_sandbox
def test_a_call_under_a_rule_runs_in_its_own_thread_and_its_clock_follows_it(session):
    """Warnings as errors: the agent runs the call in a thread started for it (agent_src's guarded),
    while the serving thread only waits -- the clock must follow the thread that works."""
    from sandboxgrader.trusted import TrustedRunner

    assert (
        session.run_cell("def busy(cpu):\n" + "\n".join("    " + x for x in BUSY.format(cpu="cpu").split("\n"))).status
        == "ok"
    )
    tr = TrustedRunner(session, call_timeout=2)
    strict = "import warnings\nwith warnings.catch_warnings():\n    warnings.simplefilter('error', RuntimeWarning)\n"
    t0 = time.monotonic()
    ok, _, err = tr.run(strict + "    busy(0.4)", "t-rule")
    wall = time.monotonic() - t0
    assert ok, err
    assert wall >= 3.0 and tr.call_seconds < 2.0


@needs_sandbox
def test_sleep_and_cpu_beyond_the_limit_still_time_out(session):
    from sandboxgrader.trusted import TrustedRunner

    run = session.run_cell("import time\ntime.sleep(3)", timeout=1)
    assert run.status == "timeout" and 1.0 <= run.seconds < 3.0
    assert session.run_cell("def nap(s):\n    import time\n    time.sleep(s)").status == "ok"
    tr = TrustedRunner(session, call_timeout=1)
    ok, _, err = tr.run("nap(3)", "t-nap")
    assert not ok and ("CallTimeout" in err or "TimeoutError" in err), err
    run = session.run_cell(BUSY.format(cpu=1.5), timeout=1)  # 1.5 s of CPU > 1 s, even throttled
    assert run.status == "timeout"


@needs_sandbox
def test_the_wall_clock_cap_stops_a_kernel_starved_of_cpu(session):
    session.limits.wall_factor = 2.0
    try:
        t0 = time.monotonic()
        run = session.run_cell(BUSY.format(cpu=0.4), timeout=1)  # >= 4 s of wall time, ~0.4 s on its clock
        wall = time.monotonic() - t0
        assert run.status == "timeout" and wall >= 2.0, (run.status, wall)
    finally:
        session.limits.wall_factor = 100.0
