"""One cgroup per sandboxed kernel: a memory, process and CPU budget for the WHOLE kernel tree.

``RLIMIT_AS`` and ``RLIMIT_CPU`` are per process: four forked children may each fill the address
space limit, forty busy children each get the CPU limit. A cgroup bounds the tree: ``memory``
(tmpfs pages the kernel writes included; the OOM killer acts inside the group only), ``pids``
(processes and threads), ``cpu`` (a quota of ``Limits.cpus`` cores and an equal share, so a kernel
with forty busy children gets what a kernel with one gets), and the tree's CPU time for the
budget. Hits are counted by the kernel (``oom_kill``, ``pids.events max``) and read back as flags.

Both layouts are handled: cgroup v2 (one directory; created under the grader's own cgroup when
it may delegate, else under the root) and v1 (a directory per controller, under the grader's own
group of each hierarchy). Where neither can be written, :meth:`KernelCgroup.create` returns None
and the per-process limits and the uid's process limit remain.
"""

from __future__ import annotations

import os
import time

V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
GROUP = "sandboxgrader"
# where the hierarchies and this process's place in them are read (a test points them at a fake tree)
MOUNTINFO = "/proc/self/mountinfo"
PROC_CGROUP = "/proc/self/cgroup"


def _own_paths() -> dict[str, str]:
    """hierarchy key ("" for v2, else the controller) -> this process's cgroup path."""
    out = {}
    try:
        with open(PROC_CGROUP) as fh:
            for line in fh:
                num, ctrls, path = line.rstrip("\n").split(":", 2)
                if num == "0" and ctrls == "":
                    out[""] = path
                for c in ctrls.split(","):
                    if c:
                        out[c] = path
    except OSError:
        pass
    return out


def _mounts() -> dict[str, str]:
    """hierarchy key ("" for v2, else each controller) -> mount point."""
    out = {}
    try:
        with open(MOUNTINFO) as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if len(rest) < 3:
                    continue
                fstype, opts = rest[0], rest[2].split(",")
                if fstype == "cgroup2":
                    out.setdefault("", fields[4])
                elif fstype == "cgroup":
                    for o in opts:
                        if o in V1_CONTROLLERS:
                            out.setdefault(o, fields[4])
    except OSError:
        pass
    return out


def _write(path: str, value) -> bool:
    try:
        with open(path, "w") as fh:
            fh.write(str(value))
        return True
    except OSError:
        return False


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


class KernelCgroup:
    """The cgroup(s) of one kernel. ``procs_files``: where the launcher writes its own pid."""

    def __init__(self, version: int, dirs: dict[str, str]):
        self.version, self.dirs = version, dirs

    # -- creation --------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, limits) -> KernelCgroup | None:
        if os.geteuid() != 0:
            return None
        mounts, own = _mounts(), _own_paths()
        v1 = {c: mounts[c] for c in V1_CONTROLLERS if c in mounts}
        if {"memory", "pids", "cpu"} <= set(v1):
            return cls._create_v1(name, limits, v1, own)
        if "" in mounts:
            return cls._create_v2(name, limits, mounts[""], own.get("", "/"))
        return None

    @classmethod
    def _create_v1(cls, name, limits, v1, own):
        dirs = {}
        for ctrl, mount in v1.items():
            d = os.path.join(mount, own.get(ctrl, "/").lstrip("/"), GROUP, name)
            if d in dirs.values():  # cpu,cpuacct co-mounted
                dirs[ctrl] = d
                continue
            try:
                _remove_dir(d)  # a stale one of a crashed grader (empty by now, or busy and kept)
                os.makedirs(d, exist_ok=True)
            except OSError:
                for made in set(dirs.values()):
                    _remove_dir(made)
                return None
            dirs[ctrl] = d
        cg = cls(1, dirs)
        m = dirs["memory"]
        ok = _write(f"{m}/memory.limit_in_bytes", limits.memory)
        _write(f"{m}/memory.memsw.limit_in_bytes", limits.memory)  # swap too, where accounted
        ok &= _write(f"{dirs['pids']}/pids.max", limits.processes)
        c = dirs["cpu"]
        _write(f"{c}/cpu.shares", 1024)
        _write(f"{c}/cpu.cfs_period_us", 100_000)
        ok &= cg.set_cpus(limits.cpus)
        if not ok:
            cg.remove()
            return None
        return cg

    @classmethod
    def _create_v2(cls, name, limits, mount, own):
        want = {"memory", "pids", "cpu"}
        # under our own cgroup if it delegates these controllers (a systemd unit with Delegate=yes
        # or a container's root), else under the root of the hierarchy
        for parent in (os.path.join(mount, own.lstrip("/")), mount):
            base = os.path.join(parent, GROUP)
            avail = set(_read(f"{parent}/cgroup.controllers").split())
            if not want <= avail:  # (checked first: no stray group left where we may not delegate)
                continue
            try:
                os.makedirs(base, exist_ok=True)
            except OSError:
                continue
            _write(f"{parent}/cgroup.subtree_control", "+memory +pids +cpu")
            _write(f"{base}/cgroup.subtree_control", "+memory +pids +cpu")
            if not want <= set(_read(f"{base}/cgroup.subtree_control").split()):
                continue
            d = os.path.join(base, name)
            try:
                _remove_dir(d)
                os.makedirs(d, exist_ok=True)
            except OSError:
                continue
            ok = _write(f"{d}/memory.max", limits.memory) and _write(f"{d}/pids.max", limits.processes)
            _write(f"{d}/memory.swap.max", 0)
            cg = cls(2, {"": d})
            ok &= cg.set_cpus(limits.cpus)
            _write(f"{d}/cpu.weight", 100)
            if ok:
                return cg
            _remove_dir(d)
        return None

    def set_cpus(self, cpus: float) -> bool:
        """At most ``cpus`` cores for the whole tree at once (a quota per 100 ms period)."""
        quota = max(1000, int(cpus * 100_000))
        if self.version == 2:
            return _write(os.path.join(self.dirs[""], "cpu.max"), f"{quota} 100000")
        return _write(os.path.join(self.dirs["cpu"], "cpu.cfs_quota_us"), quota)

    # -- use ---------------------------------------------------------------------------------
    @property
    def procs_files(self) -> list[str]:
        return sorted({os.path.join(d, "cgroup.procs") for d in self.dirs.values()})

    def _dir(self, ctrl: str) -> str:
        return self.dirs[""] if self.version == 2 else self.dirs[ctrl]

    def pids(self) -> int:
        """Tasks (processes and threads) in the kernel's tree now."""
        text = _read(os.path.join(self._dir("pids"), "pids.current")).strip()
        return int(text) if text.isdigit() else 0

    def cpu_seconds(self) -> float:
        """CPU time used by the whole tree so far."""
        if self.version == 2:
            return _keyed(_read(os.path.join(self.dirs[""], "cpu.stat"))).get("usage_usec", 0) / 1e6
        d = self.dirs.get("cpuacct", self.dirs["cpu"])
        text = _read(os.path.join(d, "cpuacct.usage")).strip()
        return int(text) / 1e9 if text.isdigit() else 0.0

    def events(self) -> dict[str, int]:
        """How often a budget was hit: {"oom_kill": processes killed, "pids_max": forks refused}."""
        if self.version == 2:
            mem = _keyed(_read(os.path.join(self.dirs[""], "memory.events")))
            pids = _keyed(_read(os.path.join(self.dirs[""], "pids.events")))
        else:
            mem = _keyed(_read(os.path.join(self.dirs["memory"], "memory.oom_control")))
            pids = _keyed(_read(os.path.join(self.dirs["pids"], "pids.events")))
        return {"oom_kill": mem.get("oom_kill", 0), "pids_max": pids.get("max", 0)}

    def remove(self, wait: float = 10.0) -> None:
        """Delete the group(s) once the kernel's processes are gone (best effort, bounded)."""
        deadline = time.monotonic() + wait
        for d in sorted(set(self.dirs.values())):
            while not _remove_dir(d) and time.monotonic() < deadline:
                time.sleep(0.05)


def _remove_dir(d: str) -> bool:
    try:
        os.rmdir(d)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def groups_by_uid(max_depth: int = 8) -> dict[int, list[str]]:
    """Every ``<...>/sandboxgrader/uid-<uid>`` group on this machine, in every hierarchy: uid -> dirs.

    Not only under this process's own group: a grader started elsewhere (another unit, another
    login) made its groups under its own. Used to find the groups a killed grader left behind.
    """
    found: dict[int, list[str]] = {}

    def walk(d: str, depth: int) -> None:
        try:
            entries = [e for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for e in entries:
            if e.name == GROUP:
                try:
                    kids = list(os.scandir(e.path))
                except OSError:
                    continue
                for k in kids:
                    uid = k.name[4:] if k.name.startswith("uid-") else ""
                    if uid.isdigit() and k.is_dir(follow_symlinks=False):
                        found.setdefault(int(uid), []).append(k.path)
            elif depth < max_depth:
                walk(e.path, depth + 1)

    for mount in sorted(set(_mounts().values())):
        walk(mount, 0)
    return found


def members(dirs: list[str]) -> set[int]:
    """pids of the processes in these groups (one per hierarchy in v1: the same tree)."""
    out = set()
    for d in dirs:
        out.update(int(p) for p in _read(os.path.join(d, "cgroup.procs")).split() if p.isdigit())
    return out
