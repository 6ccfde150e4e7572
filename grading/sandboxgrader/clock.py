"""Time limits on the kernel's own clock: a busy machine does not make a student's code time out.

Every limit of the grader is a number of seconds a student's cell or call may take. Measured on the
wall clock, that number depends on the machine's load: with forty runnable processes on two cores a
kernel gets a twentieth of a core, and a cell that takes 3 s alone takes a minute. The kernel's
clock counts what the kernel itself would have taken on an idle machine:

    t_kernel = t_wall - d,    d = the run-queue delay of the kernel's thread that runs the code

where a thread's run-queue delay (``/proc/<pid>/task/<tid>/schedstat``, 2nd field, ns) is the time
it was ready to run but waited for a CPU -- other processes' load, or the kernel's own CPU quota
being spent (a throttled cgroup counts as waiting). Running, sleeping, waiting for I/O or for a
child all count: a ``time.sleep`` just under the limit, on every call, is still on the clock.

Since ``t_kernel <= t_wall``, a limit on the kernel's clock alone could stretch without bound (a
kernel whose own threads starve each other); so every limit also has a wall-clock cap,
``seconds * wall_factor``: bounded whatever happens, and independent of load up to that factor.

Where the thread cannot be read (no ``/proc``, a kernel that is gone), the kernel's clock is the
wall clock.
"""

from __future__ import annotations

import os
import time


def run_delay(task: tuple[int, int] | None) -> int | None:
    """Run-queue delay (ns) of thread ``tid`` of process ``pid`` (host ids); None if unreadable."""
    if task is None:
        return None
    try:
        with open(f"/proc/{task[0]}/task/{task[1]}/schedstat", "rb") as fh:
            return int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def run_delays(pid: int) -> dict[int, int]:
    """Run-queue delay (ns) of every thread of process ``pid``; {} if they cannot be read."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        d = run_delay((pid, int(tid)))
        if d is not None:
            out[int(tid)] = d
    return out


def host_tid(pid: int, ns_tid: int) -> int | None:
    """The host id of the thread that calls itself ``ns_tid`` inside the kernel's pid namespace."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                for line in fh:
                    if line.startswith("NSpid:"):
                        if int(line.split()[-1]) == ns_tid:
                            return int(tid)
                        break
        except (OSError, ValueError):
            pass
    return None


class Deadline:
    """A limit of ``seconds`` on the kernel's clock, and of ``seconds * wall_factor`` on the wall's.

    ``task`` is ``(pid, tid)``, host ids of the kernel's thread that runs the student's code: the
    main thread for a cell, the agent's thread for a call (None: the wall clock only). Its delay
    is read once at the start and then only after the wall clock has passed ``seconds``: a step
    that ends in time costs one read of one small file. ``every_thread``: the code runs in a thread
    started for it (a call under a rule, agent_src's ``guarded``), so the clock follows the thread of
    the process that waited most since the start (a thread born since then, all of its delay). A
    thread's count goes with it when it ends: each reading keeps what it saw (``sample``, at least
    every ``SAMPLE`` s while waiting), so a thread gone since is still counted up to its last reading.
    """

    SAMPLE = 0.5  # s between readings of every thread (every_thread only)

    def __init__(
        self,
        seconds: float,
        task: tuple[int, int] | None = None,
        wall_factor: float = 5.0,
        every_thread: bool = False,
    ):
        self.seconds = float(seconds)
        self.wall_factor = max(1.0, float(wall_factor))
        self.t0 = time.monotonic()
        self.every = {} if task is None or not every_thread else run_delays(task[0])
        self.seen = dict(self.every)
        self.base = run_delay(task) if not self.every else self.every.get(task[1])
        self.task = task if self.base is not None else None

    def pause(self, seconds: float) -> None:
        """Take ``seconds`` off both clocks (time spent in the grader, on nobody's clock; the kernel's
        thread was blocked meanwhile, so its delay did not grow)."""
        self.t0 += seconds

    def wall(self) -> float:
        """Wall-clock seconds since the start."""
        return time.monotonic() - self.t0

    def waited(self) -> float:
        """Seconds the kernel's thread spent ready to run but without a CPU, since the start."""
        if self.every:
            self.seen.update(run_delays(self.task[0]))
            return max((d - self.every.get(tid, 0) for tid, d in self.seen.items()), default=0) / 1e9
        now = run_delay(self.task)
        return 0.0 if now is None else max(0, now - self.base) / 1e9

    def elapsed(self) -> float:
        """Seconds on the kernel's clock since the start."""
        return max(0.0, self.wall() - self.waited())

    def expired(self, seconds: float | None = None) -> bool:
        """Is the limit reached -- or ``seconds`` (a later limit on the same clock, e.g. a grace)?"""
        seconds = self.seconds if seconds is None else seconds
        wall = self.wall()
        if wall < seconds:  # the kernel's clock is never ahead of the wall's
            return False
        return wall >= seconds * self.wall_factor or wall - self.waited() >= seconds

    def left(self, seconds: float | None = None) -> float:
        """Wall-clock seconds that can pass before the limit (or ``seconds``) can be reached (0 if it
        is), or before the next reading is due (every_thread)."""
        seconds = self.seconds if seconds is None else seconds
        wall = self.wall()
        if wall < seconds:
            if self.every:
                self.waited()  # (a reading: the thread that works may end before the next)
                return min(seconds - wall, self.SAMPLE)
            return seconds - wall
        cap = seconds * self.wall_factor - wall
        kernel = wall - self.waited()
        if cap <= 0 or kernel >= seconds:
            return 0.0
        return min(seconds - kernel, cap, self.SAMPLE if self.every else cap)
