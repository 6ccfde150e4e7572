"""A small seccomp-BPF filter for student kernels (x86-64), written out by hand.

bubblewrap loads it with ``--seccomp FD``. It refuses (EPERM) the system calls a numerical
notebook never needs and a sandbox escape often does: new namespaces (``unshare``, ``setns``,
``clone`` with namespace flags), mounts, ``ptrace`` and cross-process memory access, keyrings,
``bpf``, ``perf_event_open``, ``io_uring``, ``userfaultfd``, module loading and ``reboot``.
``clone3`` answers ENOSYS, so the C library falls back to ``clone``, whose flags are checked.
Threads, subprocesses, multiprocessing and torch keep working.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
OFF_NR, OFF_ARCH, OFF_ARG0 = 0, 4, 16

BLOCKED_X86_64 = {
    "ptrace": 101,
    "syslog": 103,
    "personality": 135,
    "pivot_root": 155,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
}
CLONE, CLONE3 = 56, 435
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080


def _ins(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)


def program() -> bytes:
    """The BPF program as raw ``struct sock_filter`` array bytes."""
    if platform.machine() != "x86_64":
        raise RuntimeError(f"the seccomp filter is written for x86-64, this machine is {platform.machine()}")
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    blocked = sorted(BLOCKED_X86_64.values())
    ins = [
        _ins(BPF_LD_W_ABS, 0, 0, OFF_ARCH),
        _ins(BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _ins(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _ins(BPF_LD_W_ABS, 0, 0, OFF_NR),
    ]
    # x32 ABI system calls have bit 30 set: refuse them all
    ins.append(_ins(BPF_JSET_K, 0, 1, 0x40000000))
    ins.append(_ins(BPF_RET_K, 0, 0, eperm))
    for nr in blocked:
        ins.append(_ins(BPF_JEQ_K, 0, 1, nr))
        ins.append(_ins(BPF_RET_K, 0, 0, eperm))
    ins.append(_ins(BPF_JEQ_K, 0, 1, CLONE3))
    ins.append(_ins(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS))
    ins.append(_ins(BPF_JEQ_K, 0, 4, CLONE))
    ins.append(_ins(BPF_LD_W_ABS, 0, 0, OFF_ARG0))  # low 32 bits of the flags
    ins.append(_ins(BPF_JSET_K, 0, 1, CLONE_NS_FLAGS))
    ins.append(_ins(BPF_RET_K, 0, 0, eperm))
    # two ALLOWs on purpose: the clone check's jumps land on the first (clone without namespace
    # flags) and skip over it (`JEQ CLONE, 0, 4` jumps 4 ahead) to the second (any other call)
    ins.append(_ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    ins.append(_ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return b"".join(ins)


def write(path: str) -> str:
    """Write the program to ``path`` (atomically) and return the path."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(program())
    os.replace(tmp, path)
    return path
