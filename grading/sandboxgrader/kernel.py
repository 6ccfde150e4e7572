"""A student's IPython kernel inside bubblewrap: no network, an allow-listed filesystem, limits.

The kernel runs as a non-root uid (one per live kernel, so RLIMIT_NPROC counts only its own
processes) under ``prlimit`` (address space, CPU seconds, processes, open files, file size, no
core dumps) and a seccomp filter (:mod:`.seccomp`). ZMQ uses the ``ipc`` transport: the sockets
live in a per-kernel run directory bind-mounted into the sandbox, which works without any
network namespace shared with the host. The filesystem is built from an allow-list: system
directories, the Python installation and the course package read-only, a small writable home —
``solutions/``, the gradebook and other students' files simply do not exist in there.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec

from . import seccomp

UID_BASE = 61000
UID_COUNT = 1000
LOCKS = "/var/tmp/sandboxgrader/uids"


def acquire_uid():
    """A sandbox uid no other live kernel uses -- on this machine, whatever process started it.

    An exclusive ``flock`` on ``<LOCKS>/<uid>`` is held for the kernel's life (the kernel closes
    it; the OS drops it if the grader dies), so two graders never share a uid and never kill
    each other's processes. Returns ``(uid, open lock file)``.
    """
    os.makedirs(LOCKS, mode=0o700, exist_ok=True)
    start = (os.getpid() * 7919 + int(time.monotonic() * 1000)) % UID_COUNT   # spread reuse out
    for k in range(UID_COUNT):
        uid = UID_BASE + (start + k) % UID_COUNT
        fh = open(os.path.join(LOCKS, str(uid)), "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        return uid, fh
    raise SandboxUnavailable(f"all {UID_COUNT} sandbox uids are in use")


class SandboxUnavailable(RuntimeError):
    """bubblewrap (or setpriv / prlimit) is missing: grading student code would be unsafe."""


@dataclass
class Limits:
    """Resource limits of one student kernel."""

    address_space: int = 3 * 2**30     # bytes (RLIMIT_AS): MemoryError beyond
    cpu_seconds: int = 300             # RLIMIT_CPU over the kernel's life
    processes: int = 64                # RLIMIT_NPROC for the kernel's uid
    open_files: int = 256
    file_size: int = 64 * 2**20        # largest file the kernel may write
    tmp_size: int = 64 * 2**20         # /tmp, /dev/shm and home are tmpfs-like, capped


def check_tools() -> None:
    """Raise :class:`SandboxUnavailable` naming what is missing."""
    missing = [t for t in ("bwrap", "setpriv", "prlimit") if shutil.which(t) is None]
    if missing:
        raise SandboxUnavailable(
            f"{', '.join(missing)} not found: student code would run unsandboxed, as the grader, with "
            "access to solutions/ and the gradebook. Install bubblewrap (apt-get install -y bubblewrap) "
            "or, knowing the risk, run with UNSAFE=1.")
    if os.geteuid() != 0:
        raise SandboxUnavailable("the sandbox runs kernels under per-kernel uids and needs root; "
                                 "run as root or, knowing the risk, with UNSAFE=1")


def _uid_processes(uid: int) -> dict[int, int]:
    """pid -> parent pid of every process whose real uid is ``uid``."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 0").split()[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
            out[int(entry)] = int(fields.get("PPid", "0").strip())   # (zombies are dead: only reaping helps)
    return out


def reap_descendants(uid: int, keep_at_most: int) -> int:
    """Kill the kernel's child processes when there are more than ``keep_at_most`` (a fork bomb).

    The kernel itself is the one process of the uid whose parent is not of the uid (it is
    bubblewrap's child); everything else descends from it. Returns how many were killed.
    """
    procs = _uid_processes(uid)
    children = [pid for pid, ppid in procs.items() if ppid in procs]
    if len(children) <= keep_at_most:
        return 0
    for _ in range(50):
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)
        procs = _uid_processes(uid)
        children = [pid for pid, ppid in procs.items() if ppid in procs]
        if not children:
            break
    return len(children) or 1


def kill_uid(uid: int, wait: float = 3.0) -> None:
    """SIGKILL every process of ``uid`` (ours alone: a sandbox uid) and wait until they are gone.

    The pid namespace dies with the kernel anyway, but asynchronously; leftovers of a fork bomb
    would still count against RLIMIT_NPROC of the next kernel that gets this uid.
    """
    deadline = time.monotonic() + wait
    while True:
        pids = _uid_processes(uid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not pids or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def _python_paths() -> list[str]:
    """Directories the kernel's Python needs, read-only: the venv, its base installation, packages."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(p)
    try:  # the course package may be an editable install pointing into the repo
        import gradcheck
        paths.add(os.path.dirname(os.path.realpath(gradcheck.__file__)))
    except ImportError:
        pass
    out = []
    for p in sorted(paths, key=len):
        p = os.path.realpath(p)
        if os.path.exists(p) and not any(p == q or p.startswith(q + os.sep) for q in out):
            out.append(p)
    return out


def _parents(path: str) -> list[str]:
    parts = Path(path).parts
    return [str(Path(*parts[:i])) for i in range(2, len(parts))]


def bwrap_argv(uid: int, home: str, rundir: str, limits: Limits, python_cmd: list[str]) -> list[str]:
    """The bubblewrap command line that runs ``python_cmd`` as ``uid`` with ``limits``."""
    argv = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
    for d in ("/usr", "/etc"):
        argv += ["--ro-bind", d, d]
    for link in ("/bin", "/sbin", "/lib", "/lib64"):
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.tmp_size), "--perms", "1777", "--tmpfs", "/tmp",
             "--size", str(limits.tmp_size), "--perms", "1777", "--tmpfs", "/dev/shm",
             "--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    # bwrap makes missing parents 0700 (root only): create them traversable first
    made = set()
    for p in _python_paths() + [rundir, "/home/student"]:
        for parent in _parents(p):
            if parent not in made and parent not in ("/usr", "/etc", "/tmp"):
                made.add(parent)
                argv += ["--perms", "0755", "--dir", parent]
    for p in _python_paths():
        argv += ["--ro-bind", p, p]
    argv += ["--bind", home, "/home/student", "--bind", rundir, rundir, "--chdir", "/home/student"]
    env = {"HOME": "/home/student", "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
           "PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/mpl", "LANG": "C.UTF-8",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1", "JUPYTER_PLATFORM_DIRS": "1"}
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # set on some processors for correctness
        if key in os.environ:
            env[key] = os.environ[key]
    for k, v in env.items():
        argv += ["--setenv", k, v]
    argv += ["--seccomp", "9", "--",
             "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
             "--inh-caps=-all", "--bounding-set=-all", "--",
             "prlimit", f"--as={limits.address_space}", f"--cpu={limits.cpu_seconds}",
             f"--nproc={limits.processes}", f"--nofile={limits.open_files}",
             f"--fsize={limits.file_size}", "--core=0", "--"] + python_cmd
    return argv


@dataclass
class SandboxKernel:
    """One sandboxed kernel: start it, talk to it with ``client``, shut it down."""

    slot: int
    limits: Limits = field(default_factory=Limits)
    workroot: str = "/var/tmp/sandboxgrader"
    unsafe: bool = False   # no bubblewrap: student code runs as the grader's user (UNSAFE=1 only)

    def __post_init__(self):
        self.uid, self._uid_lock = (UID_BASE, None) if self.unsafe else acquire_uid()
        # not under /tmp: inside the sandbox /tmp is a fresh tmpfs that would hide the run directory
        if self.unsafe:
            self.workroot = tempfile.gettempdir()
        os.makedirs(self.workroot, mode=0o711, exist_ok=True)
        base = tempfile.mkdtemp(prefix=f"sandbox-{self.slot}-", dir=self.workroot)
        os.chmod(base, 0o711)
        self.base = base
        self.home = os.path.join(base, "home")
        self.rundir = os.path.join(base, "run")
        for d in (self.home, self.rundir):
            os.mkdir(d, 0o700)
            if not self.unsafe:
                os.chown(d, self.uid, self.uid)
        self.bpf = seccomp.write(os.path.join(base, "seccomp.bpf"))
        self.km = None
        self.client = None
        self._log = None

    def add_files(self, files: dict[str, bytes]) -> None:
        """Put assignment files (data the notebook reads) into the kernel's home."""
        for name, data in files.items():
            path = os.path.join(self.home, os.path.basename(name))
            with open(path, "wb") as fh:
                fh.write(data)
            if not self.unsafe:
                os.chown(path, self.uid, self.uid)

    def launch(self) -> "SandboxKernel":
        """Spawn the kernel process and return at once (it boots while the caller works)."""
        if not self.unsafe:
            kill_uid(self.uid)
        python_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        if self.unsafe:
            lim = self.limits
            argv = ["prlimit", f"--as={lim.address_space}", f"--cpu={lim.cpu_seconds}", "--core=0", "--"] + python_cmd
        else:
            inner = bwrap_argv(self.uid, self.home, self.rundir, self.limits, python_cmd)
            # sh keeps the BPF program open on fd 9 for bwrap's --seccomp 9
            argv = ["/bin/sh", "-c", 'exec 9<"$0"; exec "$@"', self.bpf] + inner
        km = KernelManager(transport="ipc", connection_file=os.path.join(self.rundir, "kernel.json"))
        km.ip = os.path.join(self.rundir, "k")
        km._kernel_spec = KernelSpec(argv=argv, display_name="sandbox", language="python",
                                     interrupt_mode="message", env={})
        self._log = open(os.path.join(self.base, "kernel.log"), "wb")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if self.unsafe:
            env.update({"HOME": self.home, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
        km.start_kernel(env=env, stdout=self._log, stderr=self._log, cwd=self.home)
        if not self.unsafe:
            for f in os.listdir(self.rundir):
                os.chown(os.path.join(self.rundir, f), self.uid, self.uid)
        self.km = km
        return self

    def connect(self, timeout: float = 60) -> "SandboxKernel":
        """Wait until the launched kernel answers; raise RuntimeError if it died."""
        client = self.km.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            log = self.read_log()
            self.shutdown()
            raise RuntimeError(f"the sandboxed kernel did not start: {exc}\n{log[-2000:]}") from None
        self.client = client
        return self

    def start(self, timeout: float = 60) -> "SandboxKernel":
        return self.launch().connect(timeout)

    def read_log(self) -> str:
        try:
            with open(os.path.join(self.base, "kernel.log"), "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def agent_socket(self) -> str:
        """Where the kernel's agent listens (the run directory is bind-mounted at the same path)."""
        return os.path.join(self.rundir, "agent.sock")

    def reap(self, keep_at_most: int = 8) -> int:
        """Kill runaway child processes of the kernel (a fork bomb); the kernel keeps its state."""
        return 0 if self.unsafe else reap_descendants(self.uid, keep_at_most)

    def alive(self) -> bool:
        return self.km is not None and self.km.is_alive()

    def interrupt(self) -> None:
        if self.km is not None:
            try:
                self.km.interrupt_kernel()
            except Exception:  # noqa: BLE001 - a dead kernel cannot be interrupted
                pass

    def shutdown(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001
                pass
            self.km.cleanup_resources()
        if not self.unsafe and self.km is not None:
            kill_uid(self.uid)
        if self._log is not None:
            self._log.close()
        if self._uid_lock is not None:
            self._uid_lock.close()   # releases the uid
            self._uid_lock = None
        self.km = self.client = self._log = None
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.shutdown()
