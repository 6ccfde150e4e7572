"""A grader's sandbox processes die with it; what a killed grader leaves behind, the next one sweeps.

Every link of the chain is held by the Linux kernel, not by Python cleanup (a SIGKILL runs none)::

    grader (make autograde, pytest) --PR_SET_PDEATHSIG: SIGKILL--> batch worker (die_with_parent)
    batch worker --setpriv --pdeathsig KILL, bwrap --die-with-parent--> bwrap (kernel.launch)
    bwrap --die-with-parent--> the sandbox's init; its death kills every process of its pid namespace

A parent-death signal fires when the *thread* that forked the child exits: workers and kernels are
started from the thread that lives as long as they do (the grader's thread that runs the batch, a
worker's main thread). Each link checks, once its signal is set, that its parent is still the one
that started it (the parent may have died in between).

SIGTERM, SIGINT and SIGHUP become :class:`Interrupted` in the grader and in its workers
(:func:`interruptible`), so the normal cleanup runs: kernels shut down, cgroups and work folders
removed, uid locks released. What a SIGKILL leaves (work folders, cgroups, a process that escaped
a link) is removed by :func:`sweep` when the next grader starts: only leftovers of a uid whose lock
(an flock in ``kernel.LOCKS``) is free, held while they are removed -- never anything of a live
grader, another one on this machine included.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import threading
import time

from . import cgroup
from .kernel import LOCKS, UID_BASE, UID_COUNT

WORKROOT = os.path.dirname(LOCKS)  # where the kernels' work folders live (SandboxKernel.workroot)
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """This process gets ``sig`` when the thread of ``parent`` that started it exits (or at once if
    ``parent`` is already gone: its orphans are adopted by another process)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


class Interrupted(BaseException):
    """A stop signal arrived (SIGTERM, SIGINT, SIGHUP): cleanup runs, the command exits non-zero.

    A BaseException, as KeyboardInterrupt: no ``except Exception`` of a submission's handling takes it.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}"


@contextlib.contextmanager
def interruptible(signals=STOP_SIGNALS):
    """Inside: the first of ``signals`` raises :class:`Interrupted` in the main thread; any later one
    is ignored until the block is left (the cleanup it starts is not itself cut short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in signals}

    def stop(signum, frame):
        for s in signals:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    for s in signals:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# -- the sweep ---------------------------------------------------------------------------------
def folder_uid(path: str) -> int | None:
    """The sandbox uid of a kernel's work folder: ``sandbox-<slot>-<uid>-<random>`` (or, named the
    older way ``sandbox-<slot>-<random>``, the owner of its home); None when it is not one."""
    parts = os.path.basename(path).split("-")
    if len(parts) == 4 and parts[0] == "sandbox" and parts[2].isdigit():
        uid = int(parts[2])
    else:
        try:
            uid = os.stat(os.path.join(path, "home")).st_uid
        except OSError:
            return None
    return uid if UID_BASE <= uid < UID_BASE + UID_COUNT else None


def _free_lock(uid: int):
    """The uid's lock, if no live kernel holds it (then held by us until closed), else None."""
    os.makedirs(LOCKS, mode=0o700, exist_ok=True)
    fh = open(os.path.join(LOCKS, str(uid)), "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def _in_group(pid: int, uid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            return any(line.rstrip("\n").endswith(f"/{cgroup.GROUP}/uid-{uid}") for line in fh)
    except OSError:
        return False


def kill_members(uid: int, dirs: list[str], wait: float = 10.0) -> bool:
    """SIGKILL every process of the uid's leftover groups (ours: only our launcher puts a process
    there) until none is left; through a pidfd, checked to be in the group, so a reused pid is never
    hit. False if some remain after ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        pids = cgroup.members(dirs)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                if _in_group(pid, uid):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(fd)
        time.sleep(0.02)


def sweep(workroot: str = WORKROOT) -> dict[str, int]:
    """Remove what killed graders left behind: their processes still in a kernel cgroup, the cgroups,
    the work folders -- of every sandbox uid whose lock is free (taken meanwhile). Returns counts."""
    done = {"processes": 0, "cgroups": 0, "folders": 0}
    folders: dict[int, list[str]] = {}
    try:
        names = sorted(os.listdir(workroot))
    except OSError:
        names = []
    for name in names:
        path = os.path.join(workroot, name)
        uid = folder_uid(path) if name.startswith("sandbox-") else None
        if uid is not None:
            folders.setdefault(uid, []).append(path)
    groups = {u: d for u, d in cgroup.groups_by_uid().items() if UID_BASE <= u < UID_BASE + UID_COUNT}
    for uid in sorted(set(folders) | set(groups)):
        lock = _free_lock(uid)
        if lock is None:  # a live kernel's (this grader's or another's)
            continue
        try:
            dirs = groups.get(uid, [])
            done["processes"] += len(cgroup.members(dirs))
            kill_members(uid, dirs)
            for d in sorted(set(dirs)):
                done["cgroups"] += cgroup._remove_dir(d)
            for path in folders.get(uid, []):
                shutil.rmtree(path, ignore_errors=True)
                done["folders"] += not os.path.exists(path)
        finally:
            lock.close()
    return done
