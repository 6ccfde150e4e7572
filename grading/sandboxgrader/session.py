"""Talking to one sandboxed kernel: run a cell (for the feedback notebook) or serve one request.

Every wait is bounded: a cell or a call that runs past its time is interrupted, and a kernel
that does not answer the interrupt (SIGINT ignored, stuck in C) is killed and restarted; an
output flood is cut off. What the student printed is kept only as feedback text. Requests go to
the agent's unix socket (length-prefixed JSON, one answer per request), or -- where there is no
socket -- in an ``execute_request`` whose answer is read only from the ``user_expressions`` of the
reply to OUR message id; never from anything the student's code printed.
"""
from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass, field

import zmq

from . import wire
from .agent_src import AGENT
from .kernel import Limits, SandboxKernel

CELL_OUTPUT_LIMIT = 200_000        # characters of output kept per cell (feedback)
CALL_OUTPUT_LIMIT = 2_000_000      # characters a proxied call may print before it is stopped
REPLY_LIMIT = 64 * 2**20
INTERRUPT_GRACE = 3.0


class KernelDied(RuntimeError):
    """The student's kernel died (os._exit, a crash, a limit)."""


class CallTimeout(TimeoutError):
    """A cell or call ran past its time limit."""


class OutputFlood(RuntimeError):
    """A call printed more than its output limit."""


@dataclass
class CellRun:
    status: str                      # ok | error | timeout | dead | flood
    outputs: list = field(default_factory=list)
    ename: str = ""
    evalue: str = ""
    seconds: float = 0.0
    truncated: bool = False


class Session:
    """A sandboxed kernel plus the agent; restartable."""

    def __init__(self, slot: int, limits: Limits | None = None, files: dict | None = None, unsafe: bool = False,
                 hidden_modules: tuple = ()):
        self.slot, self.limits, self.files, self.unsafe = slot, limits or Limits(), dict(files or {}), unsafe
        self.hidden_modules = tuple(hidden_modules)   # not importable in the kernel (the assignment's rules)
        self.kernel: SandboxKernel | None = None
        self.restarts = 0
        self.reaped = 0     # runaway processes killed (fork bombs)

    def add_files(self, files: dict) -> None:
        """Files for the kernel's home (kept for restarts)."""
        self.files.update(files)
        if self.kernel is not None:
            self.kernel.add_files(files)

    # -- lifecycle -----------------------------------------------------------------------
    def launch(self) -> "Session":
        """Spawn the kernel without waiting for it (pre-start the next student's kernel)."""
        self.kernel = SandboxKernel(self.slot, self.limits, unsafe=self.unsafe, hidden_modules=self.hidden_modules)
        if self.files:
            self.kernel.add_files(self.files)
        self.kernel.launch()
        return self

    def start(self) -> "Session":
        if self.kernel is None:
            self.launch()
        self.kernel.connect()
        path = self.kernel.agent_socket
        run = self.run_cell(AGENT.replace("SG_SOCKET_PATH", repr(path)), timeout=60, store_history=False)
        if run.status != "ok":
            raise RuntimeError(f"could not install the agent: {run.ename}: {run.evalue}")
        self._sock = None
        if path:
            deadline = time.monotonic() + 10
            while self._sock is None and time.monotonic() < deadline:
                try:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.connect(path)
                    self._sock = sock
                except OSError:
                    sock.close()
                    time.sleep(0.01)
        return self

    def restart(self) -> None:
        self.restarts += 1
        self.shutdown()
        self.launch()
        self.start()

    def shutdown(self) -> None:
        if getattr(self, "_sock", None) is not None:
            self._sock.close()
            self._sock = None
        if self.kernel is not None:
            self.kernel.shutdown()
            self.kernel = None

    @property
    def client(self):
        return self.kernel.client

    # -- low level -----------------------------------------------------------------------
    def _send(self, code: str, *, silent: bool, store_history: bool, user_expressions=None, metadata=None) -> str:
        content = {"code": code, "silent": silent, "store_history": store_history,
                   "user_expressions": user_expressions or {}, "allow_stdin": False, "stop_on_error": False}
        msg = self.client.session.msg("execute_request", content, metadata=metadata or {})
        self.client.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def _wait(self, msg_id: str, timeout: float, collect: list | None, out_limit: int):
        """Wait for the reply to ``msg_id``; collect its outputs; enforce time and output limits."""
        deadline = time.monotonic() + timeout
        printed, reply, idle, truncated = 0, None, False, False
        interrupted_at = None
        shell, iopub = self.client.shell_channel, self.client.iopub_channel
        poller = zmq.Poller()   # wake on the first message instead of sleeping in short polls
        poller.register(shell.socket, zmq.POLLIN)
        poller.register(iopub.socket, zmq.POLLIN)
        while reply is None or not idle:
            now = time.monotonic()
            if interrupted_at is None and now > deadline:
                self.kernel.interrupt()
                interrupted_at = now
            if interrupted_at is not None and now > interrupted_at + INTERRUPT_GRACE:
                raise CallTimeout(f"no answer within {timeout:.0f} s, and the interrupt was ignored")
            wait = (deadline if interrupted_at is None else interrupted_at + INTERRUPT_GRACE) - now
            events = dict(poller.poll(max(1, min(int(wait * 1000) + 1, 200))))
            if not events and not self.kernel.alive():
                raise KernelDied("the kernel died")
            while shell.msg_ready():
                m = shell.get_msg(timeout=0)
                if m["parent_header"].get("msg_id") == msg_id:
                    reply = m
            while iopub.msg_ready():
                m = iopub.get_msg(timeout=0)
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                t, c = m["msg_type"], m["content"]
                if t == "status" and c.get("execution_state") == "idle":
                    idle = True
                elif t in ("stream", "display_data", "execute_result", "error"):
                    size = len(c.get("text", "")) + sum(len(str(v)) for v in c.get("data", {}).values())
                    printed += size
                    if printed > out_limit:
                        if collect is None:   # a proxied call: a flood is a failure
                            self.kernel.interrupt()
                            raise OutputFlood(f"printed more than {out_limit} characters")
                        if not truncated:     # a cell: stop it, keep what it printed so far
                            self.kernel.interrupt()
                        truncated = True
                        continue
                    if collect is not None:
                        collect.append(_to_output(t, c))
        status = reply["content"].get("status")
        timed_out = interrupted_at is not None
        return reply["content"], status, timed_out, truncated

    # -- cells ---------------------------------------------------------------------------
    def run_cell(self, code: str, timeout: float = 30, store_history: bool = True) -> CellRun:
        t0 = time.monotonic()
        outputs: list = []
        try:
            msg_id = self._send(code, silent=False, store_history=store_history)
            content, status, timed_out, truncated = self._wait(msg_id, timeout, outputs, CELL_OUTPUT_LIMIT)
        except KernelDied:
            return CellRun("dead", outputs, "DeadKernelError", "the kernel died while running this cell "
                           "(os._exit, a crash, or a resource limit)", time.monotonic() - t0)
        except Exception as exc:  # noqa: BLE001 - a garbled channel: the kernel is unusable
            self.restart()
            return CellRun("dead", outputs, "DeadKernelError", f"the kernel's channel broke ({type(exc).__name__})",
                           time.monotonic() - t0)
        except CallTimeout as exc:
            self.restart()
            return CellRun("timeout", outputs, "TimeoutError", str(exc), time.monotonic() - t0)
        if status != "ok" or timed_out:
            self._reap()
        if truncated:
            outputs.append({"output_type": "stream", "name": "stdout",
                            "text": f"\n[output truncated by the grader after {CELL_OUTPUT_LIMIT} characters]\n"})
        seconds = time.monotonic() - t0
        if timed_out:
            return CellRun("timeout", outputs, "TimeoutError", f"cell interrupted after {timeout:.0f} s", seconds,
                           truncated)
        if status == "ok":
            return CellRun("ok", outputs, seconds=seconds, truncated=truncated)
        return CellRun("error", outputs, content.get("ename", "Error"), content.get("evalue", ""), seconds, truncated)

    # -- requests to the agent -----------------------------------------------------------
    def request(self, req: dict, timeout: float) -> dict:
        """Send one request to the agent; return its decoded JSON answer (unvalidated nodes)."""
        if getattr(self, "_sock", None) is not None:
            return self._request_socket(req, timeout)
        return self._request_execute(req, timeout)

    def _request_socket(self, req: dict, timeout: float) -> dict:
        """The fast path: one length-prefixed JSON message each way over the agent's unix socket."""
        body = json.dumps({**req, "deadline": timeout, "output_limit": CALL_OUTPUT_LIMIT}).encode()
        sock = self._sock
        try:
            sock.settimeout(timeout + INTERRUPT_GRACE)
            sock.sendall(struct.pack("!Q", len(body)) + body)
            size = struct.unpack("!Q", _recv_exact(sock, 8))[0]
            if size > REPLY_LIMIT:
                raise wire.WireError(f"reply of {size} bytes exceeds the limit of {REPLY_LIMIT}")
            data = _recv_exact(sock, size)
        except (socket.timeout, TimeoutError):
            # the watchdog could not stop it (C code, or the agent was replaced): kill, start afresh
            self.restart()
            raise CallTimeout(f"no answer within {timeout:.0f} s: the kernel was restarted") from None
        except (OSError, EOFError, struct.error) as exc:
            alive = self.kernel is not None and self.kernel.alive()
            self.restart()
            raise KernelDied("the kernel died during the call" if not alive else
                             f"the grader's channel to the kernel broke ({type(exc).__name__}); restarted") from None
        try:
            answer = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise wire.WireError(f"reply is not JSON: {exc}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise wire.WireError("malformed answer")
        if not answer["ok"]:
            etype = answer.get("etype")
            self._reap()
            if etype == "OutputFlood":
                raise OutputFlood(f"printed more than {CALL_OUTPUT_LIMIT} characters")
            if etype == "TimeoutError" and "deadline" not in str(answer.get("evalue", "")):
                raise CallTimeout(f"the call ran longer than {timeout:.0f} s and was stopped")
        return answer

    def _reap(self) -> None:
        """After a failure: kill runaway child processes (fork bomb) and have the kernel wait for them."""
        killed = self.kernel.reap()
        if killed:
            self.reaped += killed
            try:
                if getattr(self, "_sock", None) is not None:
                    self._request_socket({"op": "reap"}, 5)
            except Exception:  # noqa: BLE001 - best effort: the zombies only cost process slots
                pass

    def _request_execute(self, req: dict, timeout: float) -> dict:
        """The slow path (no socket): an execute_request whose user expression is the answer."""
        msg_id = self._send("", silent=True, store_history=False,
                            user_expressions={"r": "__sg_call__()"}, metadata={"sg": req})
        try:
            content, status, timed_out, _ = self._wait(msg_id, timeout, None, CALL_OUTPUT_LIMIT)
        except (CallTimeout, OutputFlood):
            self.restart()
            raise
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
            raise wire.WireError(f"the grader's agent in your kernel did not answer ({evalue[:200]}) — "
                                 "did your code replace or delete it?")
        text = (expr.get("data") or {}).get("text/plain")
        if not isinstance(text, str):
            raise wire.WireError("the agent's answer is not text")
        answer = wire.parse_reply_text(text, REPLY_LIMIT)
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise wire.WireError("malformed answer")
        if not answer["ok"]:
            self._reap()
        return answer


def _recv_exact(sock, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _to_output(msg_type: str, c: dict) -> dict:
    if msg_type == "stream":
        return {"output_type": "stream", "name": c.get("name", "stdout"), "text": c.get("text", "")}
    if msg_type == "error":
        return {"output_type": "error", "ename": c.get("ename", ""), "evalue": c.get("evalue", ""),
                "traceback": c.get("traceback", [])}
    out = {"output_type": msg_type, "data": c.get("data", {}), "metadata": c.get("metadata", {})}
    if msg_type == "execute_result":
        out["execution_count"] = c.get("execution_count")
    return out
