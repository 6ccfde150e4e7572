"""Talking to one sandboxed kernel: run a cell (for the feedback notebook) or serve one request.

Every wait is bounded: a cell or a call that runs past its time is interrupted, and a kernel
that does not answer the interrupt (SIGINT ignored, stuck in C) is killed and restarted; an
output flood is cut off. What the student printed is kept only as feedback text. Requests go to
the agent's unix socket (length-prefixed JSON, one answer per request), or -- where there is no
socket -- in an ``execute_request`` whose answer is read only from the ``user_expressions`` of the
reply to OUR message id; never from anything the student's code printed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import struct
import time
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import kernel as kernel_mod
from . import wire
from .agent_src import AGENT
from .clock import Deadline, host_tid
from .kernel import Limits, SandboxKernel

INTERRUPT_GRACE = 3.0
FLOOD_MESSAGES = 4  # a cell or call may send this many messages' worth (x message_bytes) in all
PIDS_SLACK = 4  # threads a call may start and leave (its watchdog, a library's pool)


class KernelDied(RuntimeError):
    """The student's kernel died (os._exit, a crash, a limit)."""


class CallTimeout(TimeoutError):
    """A cell or call ran past its time limit."""


class OutputFlood(RuntimeError):
    """A call printed more than its output limit."""


class MessageTooLarge(RuntimeError):
    """The kernel's reply was above the message cap: refused, so it will never arrive."""


@dataclass
class CellRun:
    status: str  # ok | error | timeout | dead | flood
    outputs: list = field(default_factory=list)
    ename: str = ""
    evalue: str = ""
    seconds: float = 0.0
    truncated: bool = False
    too_large: bool = False  # a message above the cap was refused (its output is lost)


class Session:
    """A sandboxed kernel plus the agent; restartable."""

    def __init__(
        self,
        slot: int,
        limits: Limits | None = None,
        files: dict | None = None,
        unsafe: bool = False,
        hidden_modules: tuple = (),
        locked: bool = False,
    ):
        self.slot, self.limits, self.files, self.unsafe = slot, limits or Limits(), dict(files or {}), unsafe
        self.hidden_modules = tuple(hidden_modules)  # not importable in the kernel (the assignment's rules)
        self.locked = locked  # a rule-bound kernel: the agent refuses tampering at all times (agent_src)
        self.kernel: SandboxKernel | None = None
        self.restarts = 0
        self.reaped = 0  # runaway processes killed (fork bombs)
        self.recovery_seconds = 0.0  # spent restarting kernels: on nobody's clock
        # budget hits of the kernel tree, over every kernel of this session (see usage())
        self.hits = {"oom_kill": 0, "pids_max": 0, "left_running": 0, "home_full": 0, "too_large": 0}
        self._cpu_done = 0.0
        self._too_large = False  # set by _wait: a message of the current cell was refused
        self._calls_since_sync = False
        self._iopub_dropped = False
        self._sock = None
        self.on_callback = _no_callbacks  # set by the trusted runner
        self._pids_base = 0
        self._known_children: set = set()
        # the kernel's threads that run student code, host (pid, tid): a cell's (the main thread) and a
        # call's (the agent's); their run-queue delay is off the kernel's clock (clock.py)
        self._main_task = self._agent_task = None
        self.last_seconds = 0.0  # the last cell's or call's time on the kernel's clock

    def add_files(self, files: dict) -> None:
        """Files for the kernel's home (kept for restarts)."""
        self.files.update(files)
        if self.kernel is not None:
            self.kernel.add_files(files)

    # -- lifecycle -----------------------------------------------------------------------
    def launch(self) -> Session:
        """Spawn the kernel without waiting for it (pre-start the next student's kernel)."""
        self.kernel = SandboxKernel(self.slot, self.limits, unsafe=self.unsafe, hidden_modules=self.hidden_modules)
        if self.files:
            self.kernel.add_files(self.files)
        self.kernel.launch()
        return self

    def start(self) -> Session:
        if self.kernel is None:
            self.launch()
        self.kernel.connect(timeout=60 * self.limits.wall_factor)  # (a kernel's boot slows with the load)
        if self.files and not self.unsafe:  # into the tmpfs home, before any student code runs
            run = self.run_cell(_files_code(self.files), timeout=60, store_history=False)
            if run.status != "ok":
                raise RuntimeError(f"could not copy the assignment's files: {run.ename}: {run.evalue}")
        path = self.kernel.agent_socket
        run = self.run_cell(
            AGENT.replace("SG_SOCKET_PATH", repr(path)).replace("SG_LOCKED_FLAG", repr(bool(self.locked))),
            timeout=60,
            store_history=False,
        )
        if run.status != "ok":
            raise RuntimeError(f"could not install the agent: {run.ename}: {run.evalue}")
        self._sock = None
        if path:
            deadline = time.monotonic() + 10 * self.limits.wall_factor  # (no student code has run yet)
            while self._sock is None and time.monotonic() < deadline:
                try:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.connect(path)
                    self._sock = sock
                except OSError:
                    sock.close()
                    time.sleep(0.01)
        self.kernel.lock_run_dir()
        self.kernel.main_pid()  # known now, while it is the uid's only process
        self._learn_tasks()
        cg = self.kernel.cgroup
        self._pids_base = cg.pids() if cg else 0
        self._known_children = set()
        return self

    def _learn_tasks(self) -> None:
        """Which host threads run student code -- asked before any student code ran (trusted)."""
        pid = self.kernel.clock_pid()
        self._main_task = self._agent_task = None
        if pid is None:
            return
        self._main_task = (pid, pid)
        if self._sock is not None:
            try:
                answer = self._request_socket({"op": "tid"}, 10, recover=False)
                tid = host_tid(pid, int(answer["tid"]))
                self._agent_task = (pid, tid) if tid is not None else None
            except Exception:  # noqa: BLE001 - then calls are on the wall clock (stricter, never looser)
                self._agent_task = None

    def _deadline(self, seconds: float, task, every_thread: bool = False) -> Deadline:
        return Deadline(seconds, task, self.limits.wall_factor, every_thread)

    def restart(self) -> None:
        t0, seconds = time.monotonic(), self.last_seconds  # (its own cells are on nobody's clock)
        self.restarts += 1
        self.shutdown()
        self.launch()
        self.start()
        self.recovery_seconds += time.monotonic() - t0
        self.last_seconds = seconds

    def shutdown(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.kernel is not None:
            self._harvest()
            self.kernel.shutdown()
            self.kernel = None

    # -- budgets of the kernel tree ----------------------------------------------------------
    def _harvest(self) -> None:
        """Fold the budget counters of the current kernel into the session's (before it goes)."""
        k = self.kernel
        if k is None or k.cgroup is None:
            return
        for key, n in k.cgroup.events().items():
            self.hits[key] += n
        self._cpu_done += k.cgroup.cpu_seconds()
        if self._home_full():
            self.hits["home_full"] += 1

    def _home_full(self) -> bool:
        pid = self.kernel.main_pid() if self.kernel is not None else None
        try:  # the sandbox's own view of its home: its tmpfs, seen from here through /proc
            st = os.statvfs(f"/proc/{pid}/root/home/student") if pid else None
        except OSError:
            return False
        return st is not None and st.f_bavail * st.f_frsize < 2**20

    def usage(self) -> dict:
        """Budget hits and CPU seconds over every kernel of this session, the current one included."""
        hits = dict(self.hits)
        cpu = self._cpu_done
        k = self.kernel
        if k is not None and k.cgroup is not None:
            for key, n in k.cgroup.events().items():
                hits[key] += n
            cpu += k.cgroup.cpu_seconds()
            hits["home_full"] += self._home_full()
        hits["cpu_seconds"] = cpu
        return hits

    def cpu_seconds(self) -> float:
        k = self.kernel
        now = k.cgroup.cpu_seconds() if k is not None and k.cgroup is not None else 0.0
        return self._cpu_done + now

    def _after_call(self, before: int) -> None:
        """A call that left processes behind (a background bomb, busy children): kill them, flag it.

        Cheap when nothing happened (one read of the cgroup's task count); the scan of /proc runs
        only when the tree grew by more than a few threads.
        """
        cg = self.kernel.cgroup if self.kernel is not None else None
        if cg is None or cg.pids() <= before + PIDS_SLACK:
            return
        uid, main = self.kernel.uid, self.kernel.main_pid()
        if main is None:
            return
        known = self._known_children | {main}
        new = set(kernel_mod._uid_processes(uid)) - known
        if not new:
            return
        self.hits["left_running"] += len(new)
        for _ in range(50):  # (they may still fork: kill until none but the known ones is alive)
            for pid in new:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            alive = set(kernel_mod._uid_processes(uid)) - known
            if not alive:
                break
            new |= alive
            time.sleep(0.01)
        try:  # now zombies of the kernel: it must wait for them (each holds a process slot)
            self._request_socket({"op": "reap"}, 10, recover=False)
        except Exception:  # noqa: BLE001 - checked just below
            pass
        if new & set(kernel_mod._uid_processes(uid, zombies=True)):
            self.restart()  # not gone: start afresh rather than leave the budget short

    @property
    def client(self):
        return self.kernel.client

    # -- low level -----------------------------------------------------------------------
    def _send(self, code: str, *, silent: bool, store_history: bool, user_expressions=None, metadata=None) -> str:
        content = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions or {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        msg = self.client.session.msg("execute_request", content, metadata=metadata or {})
        self.client.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def _wait(self, msg_id: str, timeout: float, collect: list | None, out_limit: int):
        """Wait for the reply to ``msg_id``; collect its outputs; enforce time and output limits.

        ``timeout`` is on the kernel's clock (its main thread's: clock.py), capped on the wall's;
        one deadline from the start (nothing the kernel sends extends it). Time is checked after
        what has arrived is read: a reply that is in is never taken for a timeout.
        """
        limit = self._deadline(timeout, self._main_task)
        try:
            return self._wait_for(msg_id, timeout, collect, out_limit, limit)
        finally:
            self.last_seconds = limit.elapsed()

    def _wait_for(self, msg_id, timeout, collect, out_limit, limit: Deadline):
        hard = timeout + INTERRUPT_GRACE  # the interrupt's grace, on the same clock from the same start
        printed, reply, idle, truncated = 0, None, False, False
        interrupted = False
        shell, iopub = self.client.shell_channel, self.client.iopub_channel
        poller = zmq.Poller()  # wake on the first message instead of sleeping in short polls
        poller.register(shell.socket, zmq.POLLIN)
        poller.register(iopub.socket, zmq.POLLIN)
        monitor, shell_monitor = self.kernel.iopub_monitor, self.kernel.shell_monitor
        for mon in (monitor, shell_monitor):
            if mon is not None:
                poller.register(mon, zmq.POLLIN)
        dropped = flooded = False
        received = 0  # what iopub brought during this wait, whoever it claims to be for
        flood_limit = FLOOD_MESSAGES * self.limits.message_bytes
        while reply is None or not (idle or dropped):
            wait = limit.left(hard if interrupted or reply is not None else None)  # (in: only idle is due)
            events = dict(poller.poll(max(1, min(int(wait * 1000) + 1, 200))))
            if not events and not self.kernel.alive():
                raise KernelDied("the kernel died")
            while monitor is not None and monitor.poll(0):
                recv_monitor_message(monitor)  # iopub lost a message above the cap: no "idle" to wait for
                dropped = self._too_large = True
            if shell_monitor is not None and shell_monitor.poll(0) and reply is None:
                # the reply went down with the connection (above the cap) -- or the kernel died: ask it
                recv_monitor_message(shell_monitor)
                if self._answers(time.monotonic() + max(limit.left(hard), 1.0)):  # alive: its reply was refused
                    self.kernel.reconnect_shell()
                    self._iopub_dropped = dropped  # (its error message was likely refused on iopub too)
                    raise MessageTooLarge(
                        f"the kernel's reply was above the cap of {self.limits.message_bytes} bytes: refused"
                    )
                raise KernelDied("the kernel died")
            while shell.msg_ready() and not limit.expired(hard):
                m = shell.get_msg(timeout=0)
                if m["parent_header"].get("msg_id") == msg_id:
                    reply = m
            while not flooded and iopub.msg_ready() and not limit.expired(hard):  # a flood cannot keep us
                m = iopub.get_msg(timeout=0)
                t, c = m["msg_type"], m["content"]
                size = _size(c)
                received += size
                if received > flood_limit:
                    # many messages just under the cap (or sent as someone else's): stop reading, drop
                    # what is queued, stop the cell; iopub comes back once the reply is in
                    self.kernel.interrupt()
                    poller.unregister(iopub.socket)
                    if monitor is not None:
                        poller.unregister(monitor)
                    self.kernel.reconnect_iopub(connect=False)
                    monitor = None
                    dropped = flooded = truncated = self._too_large = True
                    if collect is None:
                        raise OutputFlood(f"sent more than {flood_limit} bytes of output")
                    break
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                if t == "status" and c.get("execution_state") == "idle":
                    idle = True
                elif t in ("stream", "display_data", "execute_result", "error"):
                    printed += size
                    if printed > out_limit:
                        if collect is None:  # a proxied call: a flood is a failure
                            self.kernel.interrupt()
                            raise OutputFlood(f"printed more than {out_limit} characters")
                        if not truncated:  # a cell: stop it, keep what it printed so far
                            self.kernel.interrupt()
                        truncated = True
                        continue
                    if collect is not None:
                        collect.append(_to_output(t, c))
            if reply is not None and (idle or dropped):
                break
            if not interrupted and reply is None and limit.expired():
                self.kernel.interrupt()
                interrupted = True
            elif limit.expired(hard):
                raise CallTimeout(f"no answer within {timeout:.0f} s, and the interrupt was ignored")
        if dropped:
            self.hits["too_large"] += 1
        if dropped and not self._resync_iopub(time.monotonic() + max(limit.left(hard), 10 * self.limits.wall_factor)):
            raise CallTimeout("the kernel's output channel did not come back after a message above the cap")
        status = reply["content"].get("status")
        return reply["content"], status, interrupted, truncated

    def _resync_iopub(self, deadline: float) -> bool:
        """After iopub was disconnected (a message above the cap): wait until it delivers again.

        ZMQ reconnects by itself, but what the kernel publishes before that is lost; a
        kernel_info request is repeated until its own "busy"/"idle" arrives on iopub (as
        jupyter_client's nudge does), so the next cell's messages are not lost.
        """
        self.kernel.reconnect_iopub()
        iopub = self.client.iopub_channel
        while time.monotonic() < deadline:
            mid = self.client.kernel_info()
            until = min(deadline, time.monotonic() + 0.5)
            while time.monotonic() < until:
                if not iopub.socket.poll(100):
                    continue
                m = iopub.get_msg(timeout=0)
                if m["parent_header"].get("msg_id") == mid:
                    while self.client.shell_channel.msg_ready():  # (the kernel_info replies)
                        self.client.shell_channel.get_msg(timeout=0)
                    return True
        return False

    def _answers(self, deadline: float) -> bool:
        """Is the kernel alive and answering? A kernel_info on the control channel (served by its
        own thread, even while a cell runs) gets an answer, or the kernel is seen dead."""
        control = self.client.control_channel
        control.send(self.client.session.msg("kernel_info_request"))
        while time.monotonic() < deadline:
            if not self.kernel.alive():
                return False
            if control.socket.poll(100):
                control.get_msg(timeout=0)
                return True
        return False

    def sync_output(self, timeout: float = 30) -> None:
        """After graded calls: did iopub lose a message above the cap meanwhile (a display in a call)?

        Not a matter of timing: a kernel_info's own "busy" goes out on iopub after anything the
        calls published (one socket, in order), so either it arrives -- nothing was lost -- or the
        monitor reports the refused message first; then iopub is brought back and it is counted.
        """
        k = self.kernel
        self._calls_since_sync = False
        if k is None or k.iopub_monitor is None or not k.alive():
            return
        monitor, iopub = k.iopub_monitor, self.client.iopub_channel
        mid = self.client.kernel_info()
        poller = zmq.Poller()
        poller.register(iopub.socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = dict(poller.poll(200))
            if monitor.poll(0):
                while monitor.poll(0):
                    recv_monitor_message(monitor)
                self.hits["too_large"] += 1
                if not self._resync_iopub(time.monotonic() + 10):
                    self.restart()
                return
            while iopub.msg_ready():
                if iopub.get_msg(timeout=0)["parent_header"].get("msg_id") == mid:
                    return
            if not events and not k.alive():
                return  # dead: the next step finds out and restarts it

    # -- cells ---------------------------------------------------------------------------
    def run_cell(self, code: str, timeout: float = 30, store_history: bool = True) -> CellRun:
        if self._calls_since_sync:
            self.sync_output()
        self.last_seconds = 0.0  # (set by _wait: the cell's time on the kernel's clock)
        outputs: list = []
        self._too_large = False
        try:
            msg_id = self._send(code, silent=False, store_history=store_history)
            content, status, timed_out, truncated = self._wait(msg_id, timeout, outputs, self.limits.cell_output_chars)
            seconds = self.last_seconds  # (now: a restart below runs cells of its own)
        except KernelDied:
            return CellRun(
                "dead",
                outputs,
                "DeadKernelError",
                "the kernel died while running this cell (os._exit, a crash, or a resource limit)",
                self.last_seconds,
            )
        except CallTimeout as exc:  # (before `except Exception`: CallTimeout is one)
            seconds = self.last_seconds  # (before the restart: that is on nobody's clock)
            self.restart()
            return CellRun("timeout", outputs, "TimeoutError", str(exc), seconds)
        except MessageTooLarge as exc:  # the cell is over (its reply was its last word); the kernel keeps its state
            seconds = self.last_seconds
            self.hits["too_large"] += 1
            if self._iopub_dropped:
                self._resync_iopub(time.monotonic() + 30)
            else:
                self.sync_output()
            outputs.append({"output_type": "stream", "name": "stdout", "text": f"\n[output too large: {exc}]\n"})
            return CellRun("error", outputs, "OutputTooLarge", str(exc), seconds, too_large=True)
        except Exception as exc:  # noqa: BLE001 - a garbled channel: the kernel is unusable
            seconds = self.last_seconds
            self.restart()
            return CellRun(
                "dead", outputs, "DeadKernelError", f"the kernel's channel broke ({type(exc).__name__})", seconds
            )
        if status != "ok" or timed_out:
            self._reap()
        cg = self.kernel.cgroup if self.kernel is not None else None
        if cg is not None and store_history:  # children a cell leaves running are the student's own
            self._known_children = set()
            if cg.pids() > self._pids_base + PIDS_SLACK:
                self._known_children = set(kernel_mod._uid_processes(self.kernel.uid)) - {self.kernel.main_pid()}
        too_large = self._too_large
        if too_large:
            outputs.append(
                {
                    "output_type": "stream",
                    "name": "stdout",
                    "text": f"\n[output too large: a message above {self.limits.message_bytes} bytes, or "
                    f"more than {FLOOD_MESSAGES} such, was refused by the grader]\n",
                }
            )
        elif truncated:
            outputs.append(
                {
                    "output_type": "stream",
                    "name": "stdout",
                    "text": f"\n[output truncated by the grader: more than {self.limits.cell_output_chars} characters]\n",
                }
            )
        self.last_seconds = seconds
        if timed_out:
            return CellRun(
                "timeout",
                outputs,
                "TimeoutError",
                f"cell interrupted after {timeout:.0f} s",
                seconds,
                truncated,
                too_large,
            )
        if status == "ok":
            return CellRun("ok", outputs, seconds=seconds, truncated=truncated, too_large=too_large)
        return CellRun(
            "error", outputs, content.get("ename", "Error"), content.get("evalue", ""), seconds, truncated, too_large
        )

    # -- requests to the agent -----------------------------------------------------------
    def request(self, req: dict, timeout: float) -> dict:
        """Send one request to the agent; return its decoded JSON answer (unvalidated nodes)."""
        cg = self.kernel.cgroup
        before = cg.pids() if cg is not None else 0
        self._calls_since_sync = True
        if self._sock is not None:
            answer = self._request_socket(req, timeout)
        else:
            answer = self._request_execute(req, timeout)
        self._after_call(before)
        return answer

    def _request_socket(self, req: dict, timeout: float, recover: bool = True) -> dict:
        """The fast path: one length-prefixed JSON message each way over the agent's unix socket.

        One absolute deadline for the whole exchange (a reply trickled a byte at a time times
        out like a silent one), and a size cap read from the length prefix before any body byte:
        an oversized reply is refused without being read (the kernel is restarted, since the
        stream is then out of step).
        """
        body = json.dumps(
            {
                **req,
                "deadline": timeout,
                "wall_factor": self.limits.wall_factor,
                "output_limit": self.limits.call_output_chars,
            }
        ).encode()
        sock = self._sock
        # the agent stops the call at `timeout` on its thread's clock; we wait a grace longer, on the same
        # (a call under a rule, or any in a rule-bound kernel, runs in a thread of its own: see clock.py)
        every = self.locked or bool(req.get("warnings_error"))
        deadline = self._deadline(timeout + INTERRUPT_GRACE, self._agent_task, every)
        limit = self.limits.reply_bytes
        try:
            sock.settimeout((timeout + INTERRUPT_GRACE) * self.limits.wall_factor)
            sock.sendall(struct.pack("!Q", len(body)) + body)
            while True:
                size = struct.unpack("!Q", _recv_exact(sock, 8, deadline))[0]
                if size > limit:
                    self.last_seconds = deadline.elapsed()
                    self.restart()
                    raise wire.WireError(
                        f"reply of {size} bytes refused (the limit is {limit}): the kernel was restarted"
                    )
                data = _recv_exact(sock, size, deadline)
                if not data.startswith(b'{"cb"'):
                    break
                # student code called an instructor function: it runs here, in the grader, and
                # only its result goes back (the time it takes here is on nobody's clock)
                t0 = time.monotonic()
                out = json.dumps(self.on_callback(data)).encode()
                sock.sendall(struct.pack("!Q", len(out)) + out)
                deadline.pause(time.monotonic() - t0)
        except TimeoutError:
            if recover:
                self.last_seconds = deadline.elapsed()
            # the watchdog could not stop it (C code, or the agent was replaced): kill, start afresh
            self.restart()
            raise CallTimeout(f"no answer within {timeout:.0f} s: the kernel was restarted") from None
        except (OSError, EOFError, struct.error) as exc:
            if recover:
                self.last_seconds = deadline.elapsed()
            alive = self.kernel is not None and self.kernel.alive()
            self.restart()
            raise KernelDied(
                "the kernel died during the call"
                if not alive
                else f"the grader's channel to the kernel broke ({type(exc).__name__}); restarted"
            ) from None
        if recover:  # (a call's; not the grader's own requests)
            self.last_seconds = deadline.elapsed()
        try:
            answer = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise wire.WireError(f"reply is not JSON: {exc}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise wire.WireError("malformed answer")
        if not answer["ok"] and recover:
            etype = answer.get("etype")
            self._reap()
            if etype == "OutputFlood":
                raise OutputFlood(f"printed more than {self.limits.call_output_chars} characters")
            if etype == "TimeoutError" and "deadline" not in str(answer.get("evalue", "")):
                raise CallTimeout(f"the call ran longer than {timeout:.0f} s and was stopped")
        return answer

    def _reap(self) -> None:
        """After a failure: kill runaway child processes (fork bomb) and have the kernel wait for them.

        Recovery must not depend on timing: the next test starts only once the kernel's process
        budget is whole again -- no child and no zombie of the kernel left. If the kernel cannot
        be brought there (its agent replaced, a bomb still forking), it is restarted afresh.
        """
        if self.kernel is None or self.kernel.unsafe:
            return
        killed = self.kernel.reap(keep_at_most=0)
        self.reaped += killed
        if not kernel_mod.leftovers(self.kernel.uid, self.kernel.main_pid()):
            return
        try:  # killed children of the kernel are zombies (each holds a process slot) until it waits
            if self._sock is not None:
                self._request_socket({"op": "reap"}, 10, recover=False)
        except Exception:  # noqa: BLE001 - checked just below
            pass
        if kernel_mod.leftovers(self.kernel.uid, self.kernel.main_pid()):
            self.reaped += 0 if killed else 1
            self.restart()

    def _request_execute(self, req: dict, timeout: float) -> dict:
        """The slow path (no socket): an execute_request whose user expression is the answer."""
        msg_id = self._send(
            "", silent=True, store_history=False, user_expressions={"r": "__sg_call__()"}, metadata={"sg": req}
        )
        try:
            content, status, timed_out, _ = self._wait(msg_id, timeout, None, self.limits.call_output_chars)
        except (CallTimeout, OutputFlood):
            self.restart()
            raise
        except MessageTooLarge as exc:
            self.hits["too_large"] += 1
            self.restart()
            raise OutputFlood(str(exc)) from None
        except KernelDied:
            raise
        except Exception as exc:  # noqa: BLE001 - a garbled channel (e.g. after a fork bomb): start afresh
            self.restart()
            raise KernelDied(f"the kernel's channel broke ({type(exc).__name__}: {exc}); restarted") from None
        if timed_out:
            raise CallTimeout(f"the call ran longer than {timeout:.0f} s and was interrupted")
        expr = (content.get("user_expressions") or {}).get("r")
        if not isinstance(expr, dict) or expr.get("status") != "ok":
            evalue = expr.get("evalue", "") if isinstance(expr, dict) else ""
            raise wire.WireError(
                f"the grader's agent in your kernel did not answer ({evalue[:200]}) — "
                "did your code replace or delete it?"
            )
        text = (expr.get("data") or {}).get("text/plain")
        if not isinstance(text, str):
            raise wire.WireError("the agent's answer is not text")
        answer = wire.parse_reply_text(text, self.limits.reply_bytes)
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise wire.WireError("malformed answer")
        if not answer["ok"]:
            self._reap()
        return answer


def _no_callbacks(data: bytes) -> dict:
    return {"ok": False, "etype": "RuntimeError", "evalue": "no instructor function is callable here"}


def _recv_exact(sock, n: int, deadline: Deadline) -> bytes:
    """``n`` bytes from ``sock`` before ``deadline`` expires, else TimeoutError."""
    chunks, got = [], 0
    while got < n:
        left = deadline.left()
        if left <= 0:
            raise TimeoutError("deadline passed")
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except TimeoutError:
            continue  # the wall clock's share is spent: on the kernel's clock there may be time left
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _files_code(files: dict) -> str:
    """A cell writing the assignment's files into the kernel's home (run before any student code)."""
    blobs = {os.path.basename(k): base64.b64encode(v).decode("ascii") for k, v in files.items()}
    return (
        "def __sg_files__(blobs):\n    import base64\n    for name, b in blobs.items():\n"
        "        with open(name, 'wb') as fh:\n            fh.write(base64.b64decode(b))\n"
        f"__sg_files__({blobs!r})\ndel __sg_files__\n"
    )


def _size(c: dict) -> int:
    """Characters of what a message carries (text, data, an error): its cost to the grader."""
    size = len(str(c.get("text", ""))) + len(str(c.get("evalue", "")))
    size += sum(len(str(v)) for v in (c.get("data") or {}).values()) if isinstance(c.get("data"), dict) else 0
    tb = c.get("traceback")
    return size + (sum(len(str(x)) for x in tb) if isinstance(tb, list) else 0)


def _to_output(msg_type: str, c: dict) -> dict:
    if msg_type == "stream":
        return {"output_type": "stream", "name": c.get("name", "stdout"), "text": c.get("text", "")}
    if msg_type == "error":
        return {
            "output_type": "error",
            "ename": c.get("ename", ""),
            "evalue": c.get("evalue", ""),
            "traceback": c.get("traceback", []),
        }
    out = {"output_type": msg_type, "data": c.get("data", {}), "metadata": c.get("metadata", {})}
    if msg_type == "execute_result":
        out["execution_count"] = c.get("execution_count")
    return out
