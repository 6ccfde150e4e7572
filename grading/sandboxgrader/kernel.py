"""A student's IPython kernel inside bubblewrap: no network, an allow-listed filesystem, limits.

The kernel runs as a non-root uid (one per live kernel, so RLIMIT_NPROC counts only its own
processes) under ``prlimit`` (address space, CPU seconds, processes, open files, file size, no
core dumps), in a cgroup of its own that bounds its whole process tree (:mod:`.cgroup`: memory,
processes, CPU), and a seccomp filter (:mod:`.seccomp`). ZMQ uses the ``ipc`` transport: the sockets
live in a per-kernel run directory bind-mounted into the sandbox (root's once they exist), which
works without any network namespace shared with the host. The filesystem is built from an
allow-list: system directories, the Python installation and the course package read-only, a
size-capped tmpfs home — ``solutions/``, the gradebook and other students' files simply do not
exist in there, and nothing the kernel writes reaches host disk.
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

import zmq
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec

from . import runtime, seccomp
from .cgroup import KernelCgroup
from .runtime import BLOCKED, COURSE_IN_SANDBOX, VENV_IN_SANDBOX

# A uid range nothing else uses: above normal users (<= 60000), systemd's DynamicUser range
# (61184-65519), nobody (65534), shadow's default subordinate ranges (100000-600100000) and
# systemd-nspawn's container ranges (524288-1879048191); below systemd's "foreign" range
# (2147352576-) and 2**31. acquire_uid() still skips any uid of /etc/passwd, /etc/subuid,
# /etc/subgid or with a live process: the grader only ever signals a uid it allocated.
UID_BASE = 1_900_000_000
UID_COUNT = 1000
LOCKS = "/var/tmp/sandboxgrader/uids"


def _taken_uids() -> set[int]:
    """uids of the range that the system itself assigns (accounts, subordinate id ranges)."""
    taken = set()
    for path in ("/etc/passwd", "/etc/group"):
        try:
            with open(path) as fh:
                for line in fh:
                    f = line.split(":")
                    if len(f) > 2 and f[2].isdigit() and UID_BASE <= int(f[2]) < UID_BASE + UID_COUNT:
                        taken.add(int(f[2]))
        except OSError:
            pass
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as fh:
                for line in fh:
                    f = line.strip().split(":")
                    if len(f) == 3 and f[1].isdigit() and f[2].isdigit():
                        lo, n = int(f[1]), int(f[2])
                        taken.update(range(max(lo, UID_BASE), min(lo + n, UID_BASE + UID_COUNT)))
        except OSError:
            pass
    return taken


def acquire_uid():
    """A sandbox uid no other live kernel uses -- on this machine, whatever process started it.

    An exclusive ``flock`` on ``<LOCKS>/<uid>`` is held for the kernel's life (the kernel closes
    it; the OS drops it if the grader dies), so two graders never share a uid and never kill
    each other's processes. A uid that still has a process (a leftover, or some other program
    using it) is skipped, never signalled. Returns ``(uid, open lock file)``.
    """
    os.makedirs(LOCKS, mode=0o700, exist_ok=True)
    taken = _taken_uids()
    start = (os.getpid() * 7919 + int(time.monotonic() * 1000)) % UID_COUNT  # spread reuse out
    for k in range(UID_COUNT):
        uid = UID_BASE + (start + k) % UID_COUNT
        if uid in taken:
            continue
        fh = open(os.path.join(LOCKS, str(uid)), "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        if _uid_processes(uid, zombies=True):  # not ours to touch (or not yet gone): next one
            fh.close()
            continue
        return uid, fh
    raise SandboxUnavailable(f"all {UID_COUNT} sandbox uids are in use")


class SandboxUnavailable(RuntimeError):
    """bubblewrap (or setpriv / prlimit) is missing: grading student code would be unsafe."""


@dataclass
class Limits:
    """Resource limits of one student kernel (configurable: ``c.Sandbox.<name>`` in nbgrader_config.py)."""

    address_space: int = 3 * 2**30  # bytes per process (RLIMIT_AS): MemoryError beyond
    cpu_seconds: int = 300  # RLIMIT_CPU per process; also the whole kernel tree's CPU budget
    processes: int = 64  # processes + threads of the kernel's uid (RLIMIT_NPROC) and tree
    open_files: int = 256  # open file descriptors per process (RLIMIT_NOFILE)
    file_size: int = 64 * 2**20  # largest file the kernel may write
    tmp_size: int = 64 * 2**20  # /tmp and /dev/shm: size-capped tmpfs each
    home_size: int = 256 * 2**20  # the kernel's home: a size-capped tmpfs (no host disk)
    memory: int = 4 * 2**30  # the whole kernel tree, tmpfs included (a cgroup per kernel)
    cpus: float = 1.0  # CPU share of the whole kernel tree (cgroup quota), in cores
    reply_bytes: int = 16 * 2**20  # largest answer of the agent (refused unread beyond)
    message_bytes: int = 16 * 2**20  # largest Jupyter message the grader accepts from the kernel
    cell_output_chars: int = 200_000  # characters of output kept per cell (feedback), the rest cut
    call_output_chars: int = 2_000_000  # characters a graded call may print before it is stopped
    wall_factor: float = 5.0  # time limits are on the kernel's clock (clock.py), and at most this x on the wall's


def check_tools() -> None:
    """Raise :class:`SandboxUnavailable` naming what is missing."""
    missing = [t for t in ("bwrap", "setpriv", "prlimit") if shutil.which(t) is None]
    if missing:
        raise SandboxUnavailable(
            f"{', '.join(missing)} not found: student code would run unsandboxed, as the grader, with "
            "access to solutions/ and the gradebook. Install bubblewrap (apt-get install -y bubblewrap) "
            "or, knowing the risk, run with UNSAFE=1."
        )
    if os.geteuid() != 0:
        raise SandboxUnavailable(
            "the sandbox runs kernels under per-kernel uids and needs root; "
            "run as root or, knowing the risk, with UNSAFE=1"
        )


def _uid_processes(uid: int, zombies: bool = False) -> dict[int, int]:
    """pid -> parent pid of every process whose real uid is ``uid`` (zombies too if asked)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 0").split()[0]) == uid and (
            zombies or not fields.get("State", "").strip().startswith("Z")
        ):
            out[int(entry)] = int(fields.get("PPid", "0").strip())
    return out


def reap_descendants(uid: int, keep_at_most: int, main: int | None = None) -> int:
    """Kill the kernel's other processes when there are more than ``keep_at_most`` (a fork bomb).

    ``main`` is the kernel process itself (:meth:`SandboxKernel.main_pid`); every other process of
    the uid descends from it -- its children, or orphans the sandbox's init adopted. Returns how
    many were killed; the caller checks with :func:`leftovers` that they are gone (killed children
    of the kernel stay zombies -- and count against the uid's process limit -- until it waits).
    """

    def others():
        procs = _uid_processes(uid)
        if main is None:  # (before the kernel's pid is known) its descendants
            return [pid for pid, ppid in procs.items() if ppid in procs]
        return [pid for pid in procs if pid != main]

    children = others()
    if len(children) <= keep_at_most:
        return 0
    killed = set()
    for _ in range(50):  # a still-running bomb forks while we kill: repeat until none is left
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        children = others()
        if not children:
            break
        time.sleep(0.01)
    return len(killed) or 1


def leftovers(uid: int, main: int | None = None) -> int:
    """Processes of the uid besides the kernel itself, zombies included (each holds a process slot)."""
    procs = _uid_processes(uid, zombies=True)
    if main is None:
        return sum(1 for ppid in procs.values() if ppid in procs)
    return sum(1 for pid in procs if pid != main)


def kill_uid(uid: int, wait: float = 30.0) -> bool:
    """SIGKILL every process of ``uid`` (ours alone: a sandbox uid we hold) and wait until they are gone.

    ``kill(-1, SIGKILL)`` sent by a process running as ``uid`` reaches every process of that uid
    in one step (the kernel walks the task list under a lock no fork can pass), so a fork bomb
    cannot outrun it, whatever the load. The pid namespace dies with the kernel anyway, but
    asynchronously; leftovers would count against RLIMIT_NPROC of the next kernel with this uid.
    Returns False if some are still there after ``wait`` s (the uid is then skipped by
    :func:`acquire_uid` until they are gone).
    """
    deadline = time.monotonic() + wait
    while True:
        pids = _uid_processes(uid, zombies=True)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        if _uid_processes(uid):  # live ones: one atomic kill as the uid
            pid = os.fork()
            if pid == 0:  # only system calls here, then _exit (the grader is multi-threaded)
                try:
                    os.setgroups([])
                    os.setresgid(uid, uid, uid)
                    os.setresuid(uid, uid, uid)
                    os.kill(-1, signal.SIGKILL)
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
        time.sleep(0.02)  # zombies: their (root) parent in the sandbox reaps them


# The course's own packages a test cell imports (utils/, coursetests/): read-only in every kernel.
COURSE_PACKAGES = ("gradcheck", "coursetests")
ETC_NEEDED = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "alternatives", "fonts")


@dataclass
class Layout:
    """What of the host's Python the kernel sees, and where (no path of the repo or of the venv)."""

    binds: list  # (host path, sandbox path), read-only
    blank: list  # sandbox paths of files hidden behind an empty file (they name host paths)
    python: str  # the interpreter, as the kernel calls it
    pythonpath: str
    venv_cfg: str | None  # pyvenv.cfg without the line that names the host venv
    image: str | None = None  # the venv's runtime image (:mod:`.runtime`): bin/, pyvenv.cfg, blanks done
    fallback: str | None = None  # why the host paths are bound instead of images (they show in mountinfo)


def _under(p: str, root: str) -> bool:
    return p == root or p.startswith(root + os.sep)


def sandbox_path(p: str) -> str:
    """Where a host file of the Python installation appears in the sandbox."""
    p = os.path.realpath(p)
    venv = os.path.realpath(sys.prefix) if sys.prefix != sys.base_prefix else None
    return VENV_IN_SANDBOX + p[len(venv) :] if venv and _under(p, venv) else p


def module_location(name: str) -> str | None:
    """The host folder (package) or file (module) of a top-level module, without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return spec.origin


_warned: set = set()


def _fall_back(reason: str) -> str:
    """Say once, loudly, that the kernel will see host paths (tests fail on it in CI)."""
    if reason not in _warned:
        _warned.add(reason)
        print(
            f"sandboxgrader: WARNING: {reason}; the kernel is shown the host paths of the venv and the "
            "course packages (in /proc/self/mountinfo)",
            file=sys.stderr,
        )
    return reason


def python_layout() -> Layout:
    """The binds of the kernel's Python: from runtime images at neutral paths (:mod:`.runtime`)
    where they can be made, else the host's paths (and files naming them blanked one by one)."""
    base = os.path.realpath(sys.base_prefix)
    binds, blank, pythonpath, venv_cfg = [(base, base)], [], "", None
    venv = os.path.realpath(sys.prefix) if sys.prefix != sys.base_prefix else None
    python = sys.executable
    image = fallback = None
    covered = [base]  # host folders the kernel sees (a package inside one needs no bind of its own)

    inside = sandbox_path
    if venv:
        covered.append(venv)
        python = f"{VENV_IN_SANDBOX}/bin/python"
        try:
            image = runtime.venv_image(venv, os.path.realpath(sys.executable))
            binds.append((os.path.join(image, "venv"), VENV_IN_SANDBOX))
        except runtime.NoImage as exc:
            fallback = _fall_back(str(exc))
            binds.append((venv, VENV_IN_SANDBOX))
        cfg = os.path.join(venv, "pyvenv.cfg")
        if os.path.exists(cfg):
            with open(cfg) as fh:
                venv_cfg = "".join(line for line in fh if not line.startswith("command"))
    for key in ("purelib", "platlib"):
        sp = sysconfig.get_paths().get(key)
        if not sp or not os.path.isdir(sp):
            continue
        sp = os.path.realpath(sp)
        if not any(_under(sp, h) for h in covered):
            binds.append((sp, sp))
            covered.append(sp)
        if image:  # the image has them blanked already
            continue
        for name in sorted(os.listdir(sp)):  # editable installs point into the repo by absolute path
            path = os.path.join(sp, name)
            if name.startswith("__editable__"):
                blank.append(inside(path))
            elif name.endswith(".dist-info") and os.path.exists(os.path.join(path, "direct_url.json")):
                with open(os.path.join(path, "direct_url.json")) as fh:
                    if '"editable": true' in fh.read():
                        blank.append(inside(os.path.join(path, "direct_url.json")))
    course = {}
    for name in COURSE_PACKAGES:  # an editable install lives in the repo: shown under a neutral name
        where = module_location(name)
        if where is None or not os.path.isdir(where):
            continue
        gdir = os.path.realpath(where)
        if not any(_under(gdir, h) for h in covered):
            course[name] = gdir
    if course:
        pythonpath = COURSE_IN_SANDBOX
        try:
            copies = runtime.course_image(course)
            course = {name: os.path.join(copies, name) for name in course}
        except runtime.NoImage as exc:
            fallback = fallback or _fall_back(str(exc))
        binds += [(src, f"{COURSE_IN_SANDBOX}/{name}") for name, src in course.items()]
    return Layout(binds, sorted(set(blank)), python, pythonpath, venv_cfg, image, fallback)


# files of the kernel's own that bwrap copies in from these descriptors (the launcher opens them)
KERNEL_FILE_FDS = {"passwd": 7, "group": 6}


def _parents(path: str) -> list[str]:
    parts = Path(path).parts
    return [str(Path(*parts[:i])) for i in range(2, len(parts))]


def bwrap_argv(
    uid: int,
    home: str,
    rundir: str,
    limits: Limits,
    python_cmd: list[str],
    files: str | None = None,
    hidden_modules: tuple = (),
) -> list[str]:
    """The bubblewrap command line that runs ``python_cmd`` as ``uid`` with ``limits``.

    ``files`` is a folder of the kernel's own (passwd, group, pyvenv.cfg, an empty file): the kernel
    sees a few files of ``/etc`` that programs need, not the host's configuration.
    ``hidden_modules`` (e.g. ``("torch",)`` where answers must be derived by hand) do not exist in
    the kernel: their folder is an empty tmpfs whose ``__init__.py`` raises ImportError -- no Python
    trick inside the kernel can bring them back, as their files are not there.
    """
    layout = python_layout()
    files = files or rundir
    argv = [
        "bwrap",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        "--clearenv",
    ]
    argv += ["--ro-bind", "/usr", "/usr", "--perms", "0755", "--dir", "/etc"]
    for name in ETC_NEEDED:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name, fd in KERNEL_FILE_FDS.items():  # copied into the sandbox's root: no mount names their host path
        argv += ["--perms", "0444", "--file", str(fd), f"/etc/{name}"]
    for link in ("/bin", "/sbin", "/lib", "/lib64"):
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.tmp_size),
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
        "--size",
        str(limits.tmp_size),
        "--perms",
        "1777",
        "--tmpfs",
        "/dev/shm",
        "--ro-bind-try",
        "/sys/devices/system/cpu",
        "/sys/devices/system/cpu",
    ]
    # bwrap makes missing parents 0700 (root only): create them traversable first
    made = set()
    for p in [dest for _, dest in layout.binds] + [rundir, "/home/student"]:
        for parent in _parents(p):
            if parent not in made and parent not in ("/usr", "/etc", "/tmp"):
                made.add(parent)
                argv += ["--perms", "0755", "--dir", parent]
    for host, dest in layout.binds:
        argv += ["--ro-bind", host, dest]
    if layout.python.startswith(VENV_IN_SANDBOX + "/") and layout.image is None:
        # the venv's scripts name the host venv in their #! lines: only the interpreter is shown
        argv += [
            "--perms",
            "0755",
            "--tmpfs",
            f"{VENV_IN_SANDBOX}/bin",
            "--symlink",
            os.path.realpath(sys.executable),
            f"{VENV_IN_SANDBOX}/bin/python",
            "--remount-ro",
            f"{VENV_IN_SANDBOX}/bin",
        ]
        if layout.venv_cfg is not None:
            argv += ["--ro-bind", os.path.join(files, "pyvenv.cfg"), f"{VENV_IN_SANDBOX}/pyvenv.cfg"]
    for path in layout.blank:
        argv += ["--ro-bind", os.path.join(files, "empty"), path]
    for name in hidden_modules:
        where = module_location(name)
        if where is None:
            continue
        if layout.image:
            blocked = os.path.join(layout.image, "blocked.py")  # names the module it stands for
        else:
            blocked = os.path.join(files, f"blocked-{name}.py")
            with open(blocked, "w") as fh:
                fh.write(f"raise ImportError({BLOCKED.format(name=name)!r})\n")
            os.chmod(blocked, 0o644)
        if os.path.isdir(where):
            dest = sandbox_path(where)
            argv += [
                "--perms",
                "0755",
                "--tmpfs",
                dest,
                "--ro-bind",
                blocked,
                f"{dest}/__init__.py",
                "--remount-ro",
                dest,
            ]
        else:
            argv += ["--ro-bind", blocked, sandbox_path(where)]
    # home: a size-capped tmpfs (charged to the kernel's memory cgroup), never host disk
    argv += [
        "--size",
        str(limits.home_size),
        "--perms",
        "0777",
        "--tmpfs",
        "/home/student",
        "--bind",
        rundir,
        rundir,
        "--chdir",
        "/home/student",
    ]
    env = {
        "HOME": "/home/student",
        "PATH": f"{os.path.dirname(layout.python)}:/usr/bin:/bin",
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/mpl",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        "USER": "student",
    }
    if layout.pythonpath:
        env["PYTHONPATH"] = layout.pythonpath
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # set on some processors for correctness
        if key in os.environ:
            env[key] = os.environ[key]
    for k, v in env.items():
        argv += ["--setenv", k, v]
    python_cmd = [layout.python if a == sys.executable else a for a in python_cmd]
    argv += [
        "--seccomp",
        "9",
        "--",
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        "prlimit",
        f"--as={limits.address_space}",
        f"--cpu={limits.cpu_seconds}",
        f"--nproc={limits.processes}",
        f"--nofile={limits.open_files}",
        f"--fsize={limits.file_size}",
        "--core=0",
        "--",
    ] + python_cmd
    return argv


def write_kernel_files(folder: str, uid: int) -> None:
    """The few files the kernel gets instead of the host's: passwd and group naming only it, the
    venv's pyvenv.cfg without the host path, an empty file to hide files that name host paths."""
    layout = python_layout()
    contents = {
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\nstudent:x:{uid}:{uid}:student:/home/student:/bin/sh\n",
        "group": f"root:x:0:\nstudent:x:{uid}:\n",
        "empty": "",
        "pyvenv.cfg": layout.venv_cfg or "",
    }
    for name, text in contents.items():
        with open(os.path.join(folder, name), "w") as fh:
            fh.write(text)
        os.chmod(os.path.join(folder, name), 0o644)


@dataclass
class SandboxKernel:
    """One sandboxed kernel: start it, talk to it with ``client``, shut it down."""

    slot: int
    limits: Limits = field(default_factory=Limits)
    workroot: str = "/var/tmp/sandboxgrader"
    unsafe: bool = False  # no bubblewrap: student code runs as the grader's user (UNSAFE=1 only)
    hidden_modules: tuple = ()  # modules that do not exist in this kernel (see bwrap_argv)

    def __post_init__(self):
        self.uid, self._uid_lock = (UID_BASE, None) if self.unsafe else acquire_uid()
        # not under /tmp: inside the sandbox /tmp is a fresh tmpfs that would hide the run directory
        if self.unsafe:
            self.workroot = tempfile.gettempdir()
        os.makedirs(self.workroot, mode=0o711, exist_ok=True)
        base = tempfile.mkdtemp(prefix=f"sandbox-{self.slot}-{self.uid}-", dir=self.workroot)  # (lifeline.sweep)
        os.chmod(base, 0o711)
        self.base = base
        self.home = os.path.join(base, "home")
        self.rundir = os.path.join(base, "run")
        for d in (self.home, self.rundir):
            os.mkdir(d, 0o700)
            if not self.unsafe:
                os.chown(d, self.uid, self.uid)
        self.bpf = seccomp.write(os.path.join(base, "seccomp.bpf"))
        self.cgroup = None if self.unsafe else KernelCgroup.create(f"uid-{self.uid}", self.limits)
        self.km = None
        self.client = None
        self.iopub_monitor = None
        self.shell_monitor = None
        self._main_pid = None
        self._log = None

    def add_files(self, files: dict[str, bytes]) -> None:
        """Put assignment files (data the notebook reads) into the kernel's home -- UNSAFE mode only:
        a sandboxed home is a tmpfs inside the sandbox, where :meth:`Session.start` writes them."""
        if not self.unsafe:
            return
        for name, data in files.items():
            path = os.path.join(self.home, os.path.basename(name))
            with open(path, "wb") as fh:
                fh.write(data)
            if not self.unsafe:
                os.chown(path, self.uid, self.uid)

    def launch(self) -> SandboxKernel:
        """Spawn the kernel process and return at once (it boots while the caller works)."""
        python_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        if self.unsafe:
            lim = self.limits
            argv = ["prlimit", f"--as={lim.address_space}", f"--cpu={lim.cpu_seconds}", "--core=0", "--"] + python_cmd
        else:
            files = os.path.join(self.base, "files")
            os.makedirs(files, mode=0o755, exist_ok=True)
            write_kernel_files(files, self.uid)
            connection = os.path.join(self.rundir, "kernel.json")
            inner = bwrap_argv(
                self.uid,
                self.home,
                self.rundir,
                self.limits,
                [connection if a == "{connection_file}" else a for a in python_cmd],
                files,
                tuple(self.hidden_modules),
            )
            # setpriv gives the process a parent-death SIGKILL from its first instruction on, and sh
            # checks that its parent is still this one (it may have died before): bwrap's own
            # --die-with-parent is set only later, and a kernel must never outlive its grader
            # (lifeline). sh joins the kernel's cgroup (its whole tree follows), keeps the BPF program
            # open on fd 9 for bwrap's --seccomp 9, then becomes bwrap, which reads its options from
            # fd 8: the sandbox's /proc/1/cmdline is `bwrap --args 8 ...`, not every host path it
            # mounts (the command, with no host path in it, stays on the command line); fds 7 and 6
            # are the kernel's passwd and group, which bwrap copies in (KERNEL_FILE_FDS)
            split = inner.index("--seccomp")
            args_file = os.path.join(self.base, "bwrap.args")
            with open(args_file, "wb") as fh:
                fh.write(b"".join(a.encode() + b"\0" for a in inner[1:split]))
            argv = [
                "setpriv",
                "--pdeathsig",
                "KILL",
                "--",
                "/bin/sh",
                "-c",
                '[ "$PPID" = "$SG_PARENT" ] || exit 98; '
                'for f in $SG_CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; '
                'exec 9<"$0" 8<"$1" 7<"$2" 6<"$3"; shift 4; exec bwrap --args 8 "$@"',
                self.bpf,
                args_file,
                os.path.join(files, "passwd"),
                os.path.join(files, "group"),
                "x",
            ] + inner[split:]
        km = KernelManager(transport="ipc", connection_file=os.path.join(self.rundir, "kernel.json"))
        # every socket of ours refuses a message above the cap (the peer is disconnected, the
        # message dropped unread): a kernel cannot make the grader hold gigabytes
        self._ctx = zmq.Context()
        self._ctx.setsockopt(zmq.MAXMSGSIZE, self.limits.message_bytes)
        km.context = self._ctx
        km.ip = os.path.join(self.rundir, "k")
        km._kernel_spec = KernelSpec(
            argv=argv, display_name="sandbox", language="python", interrupt_mode="message", env={}
        )
        # the kernel keeps a descriptor of its original stdout: an anonymous file, whose
        # /proc/self/fd link names no host path (a file of the work root would)
        self._log = os.fdopen(os.memfd_create("kernel-log", os.MFD_CLOEXEC), "w+b")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),  # (bwrap --clearenv: none reaches the kernel)
            "SG_CGROUP_PROCS": " ".join(self.cgroup.procs_files) if self.cgroup else "",
            "SG_PARENT": str(os.getpid()),
        }
        if self.unsafe:
            env.update({"HOME": self.home, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
        km.start_kernel(env=env, stdout=self._log, stderr=self._log, cwd=self.home)
        if not self.unsafe:
            for f in os.listdir(self.rundir):
                os.chown(os.path.join(self.rundir, f), self.uid, self.uid)
        self.km = km
        return self

    def connect(self, timeout: float = 60) -> SandboxKernel:
        """Wait until the launched kernel answers; raise RuntimeError if it died."""
        client = self.km.client(context=self._ctx)
        client.start_channels()
        try:
            client.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            log = self.read_log()
            self.shutdown()
            raise RuntimeError(f"the sandboxed kernel did not start: {exc}\n{log[-2000:]}") from None
        self.client = client
        # a message above the size cap disconnects iopub (and is dropped); the monitor tells the
        # waiting grader at once, so it does not wait for an "idle" that went down with it
        self.iopub_monitor = client.iopub_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        # the same on shell: an execute_reply above the cap (a huge error message) is lost with it
        self.shell_monitor = client.shell_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        return self

    def reconnect_iopub(self, connect: bool = True) -> None:
        """A fresh iopub socket (and its monitor): ZMQ does not reconnect after a refused message
        (a protocol error ends the connection for good). Closing the old one drops what it queued;
        ``connect=False`` leaves iopub closed (a flood: nothing is read until the cell is over)."""
        client = self.client
        if self.iopub_monitor is not None:
            try:
                client.iopub_channel.socket.disable_monitor()
            except Exception:  # noqa: BLE001 - already closed
                pass
            self.iopub_monitor.close(linger=0)
            self.iopub_monitor = None
        if client._iopub_channel is not None:
            client._iopub_channel.close()
            client._iopub_channel = None
        if connect:
            self.iopub_monitor = client.iopub_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def reconnect_shell(self) -> None:
        """A fresh shell socket after a refused reply, under a new identity (the kernel's ROUTER may
        not have seen the old connection go yet, and ignores a second peer with the same one)."""
        client = self.client
        try:
            client.shell_channel.socket.disable_monitor()
        except Exception:  # noqa: BLE001 - already closed
            pass
        if self.shell_monitor is not None:
            self.shell_monitor.close(linger=0)
        client.shell_channel.close()
        client._shell_channel = client.shell_channel_class(
            client.connect_shell(identity=os.urandom(16)), client.session, client.ioloop
        )
        self.shell_monitor = client.shell_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def lock_run_dir(self) -> None:
        """Once the kernel's sockets exist: the run directory becomes root's (no host disk for the kernel)."""
        if self.unsafe:
            return
        for f in os.listdir(self.rundir):
            try:
                os.lchown(os.path.join(self.rundir, f), 0, 0)
            except OSError:
                pass
        os.chown(self.rundir, 0, 0)
        os.chmod(self.rundir, 0o755)

    def read_log(self) -> str:
        try:
            fd = self._log.fileno()
            return os.pread(fd, 1 << 20, max(0, os.fstat(fd).st_size - (1 << 20))).decode("utf-8", "replace")
        except (OSError, AttributeError, ValueError):  # closed: the kernel is gone
            return ""

    @property
    def agent_socket(self) -> str:
        """Where the kernel's agent listens (the run directory is bind-mounted at the same path)."""
        return os.path.join(self.rundir, "agent.sock")

    def main_pid(self) -> int | None:
        """Host pid of the kernel process itself: the uid's one process once it is ready (cached
        then: orphans of a bomb, adopted by the sandbox's init, would look alike later)."""
        if self.unsafe:
            return None
        if self._main_pid is None:
            procs = _uid_processes(self.uid)
            roots = [pid for pid, ppid in procs.items() if ppid not in procs]
            if len(roots) != 1:
                return None
            self._main_pid = roots[0]
        return self._main_pid

    def clock_pid(self) -> int | None:
        """Host pid of the process that runs the student's code (its threads' clocks: clock.py)."""
        if not self.unsafe:
            return self.main_pid()
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "pid", None)  # (prlimit execs the kernel: the same pid)

    def reap(self, keep_at_most: int = 8) -> int:
        """Kill runaway processes of the kernel's (a fork bomb); the kernel keeps its state."""
        return 0 if self.unsafe else reap_descendants(self.uid, keep_at_most, self.main_pid())

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
            try:
                self.client.iopub_channel.socket.disable_monitor()
            except Exception:  # noqa: BLE001 - already closed
                pass
            if self.iopub_monitor is not None:
                self.iopub_monitor.close(linger=0)
                self.iopub_monitor = None
            if getattr(self, "shell_monitor", None) is not None:
                try:
                    self.client.shell_channel.socket.disable_monitor()
                except Exception:  # noqa: BLE001 - already closed
                    pass
                self.shell_monitor.close(linger=0)
                self.shell_monitor = None
            self.client.stop_channels()
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001
                pass
            self.km.cleanup_resources()
        if not self.unsafe and self.km is not None:
            kill_uid(self.uid)
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if getattr(self, "_ctx", None) is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.base, ignore_errors=True)  # before the uid is released (lifeline.sweep)
        if self._uid_lock is not None:
            self._uid_lock.close()  # releases the uid
            self._uid_lock = None
        self.km = self.client = self._log = None
