"""The per-kernel cgroup against FAKE cgroup trees (v2 and v1): the contract for both layouts.

CI machines are like this one: cgroup v1 with every controller bound to it (a cgroup2 hierarchy
mounted beside it gets no controller, and a controller lives in one hierarchy only), so the v2
path cannot run against a real kernel there. These tests are its contract: a directory tree laid
out like cgroupfs (tmp_path), ``/proc/self/mountinfo`` and ``/proc/self/cgroup`` read from files
describing it, and the kernel's rules the code relies on emulated (``cgroup.subtree_control``
takes ``+ctrl`` words, a child's ``cgroup.controllers`` are its parent's ``subtree_control``,
``rmdir`` removes a group with its interface files). They check every file written and every
counter read; the real v1 hierarchy is tested in tests/test_sandbox.py.
"""

import os
import shutil
from pathlib import Path

import pytest

from sandboxgrader import cgroup  # noqa: E402
from sandboxgrader.kernel import Limits  # noqa: E402

LIMITS = Limits(memory=768 * 2**20, processes=64, cpus=1.5)


class FakeCgroupFs:
    """The few rules of cgroupfs that :mod:`sandboxgrader.cgroup` depends on."""

    def __init__(self, monkeypatch, tmp_path, mountinfo: str, proc_cgroup: str):
        (tmp_path / "mountinfo").write_text(mountinfo)
        (tmp_path / "cgroup").write_text(proc_cgroup)
        monkeypatch.setattr(cgroup, "MOUNTINFO", str(tmp_path / "mountinfo"))
        monkeypatch.setattr(cgroup, "PROC_CGROUP", str(tmp_path / "cgroup"))
        monkeypatch.setattr(cgroup.os, "geteuid", lambda: 0)
        self.real_write, self.real_read = cgroup._write, cgroup._read
        monkeypatch.setattr(cgroup, "_write", self.write)
        monkeypatch.setattr(cgroup, "_read", self.read)
        monkeypatch.setattr(cgroup, "_remove_dir", self.rmdir)
        self.refused: set = set()  # files whose writes fail (EBUSY, EINVAL, read-only)

    def write(self, path, value):
        if path in self.refused:
            return False
        if os.path.basename(path) == "cgroup.subtree_control":
            d = os.path.dirname(path)
            avail = set(self.read(f"{d}/cgroup.controllers").split())
            now = set(self.real_read(path).split())
            for word in str(value).split():
                if word.lstrip("+-") not in avail:
                    return False  # the kernel refuses to enable what the group does not have
                (now.add if word[0] == "+" else now.discard)(word.lstrip("+-"))
            return self.real_write(path, " ".join(sorted(now)))
        return self.real_write(path, value)

    def read(self, path):
        if os.path.basename(path) == "cgroup.controllers" and not os.path.exists(path):
            return self.real_read(os.path.join(os.path.dirname(os.path.dirname(path)), "cgroup.subtree_control"))
        return self.real_read(path)

    @staticmethod
    def rmdir(d):
        if not os.path.isdir(d):
            return True
        if any(e.is_dir() for e in os.scandir(d)) or open_text(os.path.join(d, "cgroup.procs")).strip():
            return False  # EBUSY: a child group or a process left
        shutil.rmtree(d)
        return True


def open_text(path):
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def v2_tree(
    tmp_path,
    root_ctrls="cpuset cpu io memory hugetlb pids rdma",
    root_subtree="",
    own="/system.slice/g.service",
    own_ctrls=None,
):
    mount = tmp_path / "unified"
    (mount / own.lstrip("/")).mkdir(parents=True)
    (mount / "cgroup.controllers").write_text(root_ctrls + "\n")
    (mount / "cgroup.subtree_control").write_text(root_subtree)
    if own_ctrls is not None:
        (mount / own.lstrip("/") / "cgroup.controllers").write_text(own_ctrls + "\n")
    else:
        (mount / own.lstrip("/") / "cgroup.controllers").write_text("\n")  # not delegated to us
    return mount, f"41 31 0:38 / {mount} rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n", f"0::{own}\n"


# ------------------------------------------------------------------------------------------------ v2


def test_v2_writes_the_limits_under_the_root_when_the_own_group_does_not_delegate(monkeypatch, tmp_path):
    mount, mi, pc = v2_tree(tmp_path)
    FakeCgroupFs(monkeypatch, tmp_path, mi, pc)
    cg = cgroup.KernelCgroup.create("k7", LIMITS)
    assert cg is not None and cg.version == 2
    d = mount / "sandboxgrader" / "k7"
    assert cg.dirs == {"": str(d)}
    assert (d / "memory.max").read_text() == str(768 * 2**20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "64"
    assert (d / "cpu.max").read_text() == "150000 100000"  # 1.5 cores for the whole tree
    assert (d / "cpu.weight").read_text() == "100"  # an equal share per kernel
    for parent in (mount, mount / "sandboxgrader"):  # the controllers reach the kernel's group
        assert {"memory", "pids", "cpu"} <= set((parent / "cgroup.subtree_control").read_text().split())
    assert cg.procs_files == [str(d / "cgroup.procs")]
    assert not (mount / "system.slice" / "g.service" / "sandboxgrader").exists()  # nothing left in our own group


def test_v2_uses_the_own_group_when_it_delegates(monkeypatch, tmp_path):
    mount, mi, pc = v2_tree(tmp_path, own="/grader.scope", own_ctrls="memory pids cpu io")
    FakeCgroupFs(monkeypatch, tmp_path, mi, pc)
    cg = cgroup.KernelCgroup.create("k1", LIMITS)
    assert cg.dirs == {"": str(mount / "grader.scope" / "sandboxgrader" / "k1")}
    assert not (mount / "sandboxgrader").exists()


def test_v2_counters_are_read_from_memory_events_pids_events_and_cpu_stat(monkeypatch, tmp_path):
    mount, mi, pc = v2_tree(tmp_path)
    FakeCgroupFs(monkeypatch, tmp_path, mi, pc)
    cg = cgroup.KernelCgroup.create("k2", LIMITS)
    d = Path(cg.dirs[""])
    assert cg.events() == {"oom_kill": 0, "pids_max": 0} and cg.cpu_seconds() == 0.0 and cg.pids() == 0
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 41\noom 3\noom_kill 2\noom_group_kill 0\n")
    (d / "pids.events").write_text("max 5\n")
    (d / "cpu.stat").write_text(
        "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 9\n"
        "nr_throttled 4\nthrottled_usec 120000\n"
    )
    (d / "pids.current").write_text("7\n")
    assert cg.events() == {"oom_kill": 2, "pids_max": 5}
    assert cg.cpu_seconds() == 2.5 and cg.pids() == 7
    cg.remove(wait=0)
    assert not d.exists()


def test_v2_without_the_controllers_gives_no_group(monkeypatch, tmp_path):
    """A cgroup2 mount whose controllers are all bound to v1 (this machine's /sys/fs/cgroup/unified)."""
    mount, mi, pc = v2_tree(tmp_path, root_ctrls="")
    FakeCgroupFs(monkeypatch, tmp_path, mi, pc)
    assert cgroup.KernelCgroup.create("k3", LIMITS) is None


def test_v2_a_refused_limit_leaves_no_group(monkeypatch, tmp_path):
    mount, mi, pc = v2_tree(tmp_path)
    fs = FakeCgroupFs(monkeypatch, tmp_path, mi, pc)
    fs.refused.add(str(mount / "sandboxgrader" / "k4" / "pids.max"))
    assert cgroup.KernelCgroup.create("k4", LIMITS) is None
    assert not (mount / "sandboxgrader" / "k4").exists()


# ------------------------------------------------------------------------------------------------ v1


def v1_tree(tmp_path, comounted: bool):
    root = tmp_path / "fs"
    ctrls = [("cpu,cpuacct", "cpu,cpuacct")] if comounted else [("cpu", "cpu"), ("cpuacct", "cpuacct")]
    ctrls += [("memory", "memory"), ("pids", "pids"), ("name=systemd", "systemd")]
    lines, own = [], []
    for n, (opts, dirname) in enumerate(ctrls):
        (root / dirname).mkdir(parents=True)
        lines.append(f"{32 + n} 31 0:{29 + n} / {root / dirname} rw,relatime - cgroup cgroup rw,{opts}")
        path = "/process_api/9c94" if opts == "memory" else "/"
        own.append(f"{9 - n}:{opts}:{path}")
    lines.append(f"41 31 0:38 / {tmp_path / 'unified'} rw,relatime - cgroup2 cgroup2 rw")  # hybrid: v1 wins
    (tmp_path / "unified").mkdir()
    return root, "\n".join(lines) + "\n", "\n".join(own) + "\n0::/\n"


@pytest.mark.parametrize("comounted", [False, True], ids=["cpu-and-cpuacct", "cpu,cpuacct"])
def test_v1_writes_a_group_per_controller_under_the_own_groups(monkeypatch, tmp_path, comounted):
    root, mi, pc = v1_tree(tmp_path, comounted)
    FakeCgroupFs(monkeypatch, tmp_path, mi, pc)
    cg = cgroup.KernelCgroup.create("k5", LIMITS)
    assert cg is not None and cg.version == 1
    mem = root / "memory" / "process_api" / "9c94" / "sandboxgrader" / "k5"
    cpu = root / ("cpu,cpuacct" if comounted else "cpu") / "sandboxgrader" / "k5"
    acct = cpu if comounted else root / "cpuacct" / "sandboxgrader" / "k5"
    assert cg.dirs == {
        "memory": str(mem),
        "pids": str(root / "pids" / "sandboxgrader" / "k5"),
        "cpu": str(cpu),
        "cpuacct": str(acct),
    }
    assert (mem / "memory.limit_in_bytes").read_text() == str(768 * 2**20)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(768 * 2**20)
    assert (root / "pids" / "sandboxgrader" / "k5" / "pids.max").read_text() == "64"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "150000"
    assert (cpu / "cpu.shares").read_text() == "1024"
    assert len(cg.procs_files) == (3 if comounted else 4)  # the launcher joins every group once

    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    (root / "pids" / "sandboxgrader" / "k5" / "pids.events").write_text("max 7\n")
    (acct / "cpuacct.usage").write_text("1500000000\n")
    assert cg.events() == {"oom_kill": 3, "pids_max": 7} and cg.cpu_seconds() == 1.5
    cg.remove(wait=0)
    assert not mem.exists() and not cpu.exists() and not acct.exists()


def test_v1_a_refused_limit_removes_every_group_made(monkeypatch, tmp_path):
    root, mi, pc = v1_tree(tmp_path, False)
    fs = FakeCgroupFs(monkeypatch, tmp_path, mi, pc)
    fs.refused.add(str(root / "cpu" / "sandboxgrader" / "k6" / "cpu.cfs_quota_us"))
    assert cgroup.KernelCgroup.create("k6", LIMITS) is None
    assert not any(p.name == "k6" for p in root.rglob("k6"))


def test_no_cgroup_mount_gives_no_group(monkeypatch, tmp_path):
    FakeCgroupFs(monkeypatch, tmp_path, "22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n")
    assert cgroup.KernelCgroup.create("k8", LIMITS) is None


def test_this_machines_hierarchy_is_read(monkeypatch):
    """The real /proc files parse: v1 here (CI too), where every needed controller is found."""
    mounts = cgroup._mounts()
    if os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        assert {"memory", "pids", "cpu"} <= set(mounts)
    elif open_text("/proc/self/mountinfo").count(" - cgroup2 "):
        assert "" in mounts
