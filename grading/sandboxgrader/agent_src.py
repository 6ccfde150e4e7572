"""Source of the small agent installed in each student kernel.

It runs in the UNTRUSTED kernel: student code can replace or break it, which can only change
or withhold the data it returns (the grader validates that data and computes every verdict).
It serves one request per ``execute_request``: the request travels in the message metadata
(``metadata["sg"]``), the answer is the value of the user expression ``__sg_call__()`` — a
JSON string — so nothing the student prints can be mistaken for it.
"""

AGENT = r'''
def __sg_install__(SG_SOCKET):
    import base64, builtins, importlib, inspect, io, json, os, struct, sys, traceback
    import numpy as np
    ip = get_ipython()
    ns = ip.user_ns
    store = {}
    counter = [0]

    def torch_mod():
        return sys.modules.get("torch")

    def enc_array(a, extra=None):
        buf = io.BytesIO()
        np.save(buf, np.asarray(a, order="C"), allow_pickle=False)
        node = {"t": "array", "v": base64.b64encode(buf.getvalue()).decode("ascii")}
        if extra:
            node.update(extra)
        return node

    def enc(o, d=0):
        if d > 16:
            raise TypeError("value nested too deeply")
        if o is None:
            return {"t": "none"}
        if isinstance(o, (bool, np.bool_)):
            return {"t": "bool", "v": bool(o)}
        if isinstance(o, (int, np.integer)):
            return {"t": "int", "v": int(o)}
        if type(o) is float:
            return {"t": "float", "v": repr(o)}
        if type(o) is complex:
            return {"t": "complex", "v": [o.real, o.imag]}
        if isinstance(o, (np.floating, np.complexfloating)):
            return enc_array(np.asarray(o), {"scalar": True})
        if isinstance(o, str):
            return {"t": "str", "v": str(o)}
        if isinstance(o, np.ndarray) and o.dtype.kind in "biufc" and o.dtype.fields is None:
            return enc_array(np.asarray(o))
        t = torch_mod()
        if t is not None and isinstance(o, t.Tensor) and not o.is_complex():
            return enc_array(o.detach().cpu().numpy(), {"torch": True})
        if type(o) in (tuple, list):
            return {"t": type(o).__name__, "v": [enc(x, d + 1) for x in o]}
        if type(o) is dict:
            return {"t": "dict", "v": [[enc(k, d + 1), enc(v, d + 1)] for k, v in o.items()]}
        counter[0] += 1
        store[counter[0]] = o
        src = ""
        if callable(o):
            try:
                src = inspect.getsource(o)
            except Exception:
                src = ""
        return {"t": "handle", "id": counter[0], "callable": callable(o), "type": type(o).__name__,
                "source": src[:200000]}

    def dec(n):
        t = n["t"]
        v = n.get("v")
        if t == "none":
            return None
        if t in ("bool", "int", "str"):
            return v
        if t == "float":
            return float(v)
        if t == "complex":
            return complex(v[0], v[1])
        if t == "array":
            a = np.load(io.BytesIO(base64.b64decode(v)), allow_pickle=False)
            if n.get("scalar"):
                a = a[()]
            if n.get("torch"):
                a = torch_mod().from_numpy(np.array(a)) if torch_mod() else importlib.import_module("torch").from_numpy(np.array(a))
            return a
        if t == "tuple":
            return tuple(dec(x) for x in v)
        if t == "list":
            return [dec(x) for x in v]
        if t == "dict":
            return {dec(k): dec(x) for k, x in v}
        if t == "name":
            return ns[v]
        if t == "handle":
            return store[n["id"]]
        if t == "module":
            return importlib.import_module(v)
        if t == "modattr":
            return getattr(importlib.import_module(n["module"]), n["name"])
        if t == "callback":
            return instructor_stub(int(n["id"]))
        raise TypeError("unknown node " + repr(t))

    # An instructor function never comes here: the kernel gets a stub that sends its arguments
    # back to the grader over the agent's socket and waits for the result (data only). Torch
    # tensors go through an autograd.Function whose backward is again such a call, so student
    # code can differentiate through it to any order while the grader counts every evaluation.
    chan = [None]

    def call_back(key, args, kwargs):
        conn = chan[0]
        if conn is None:
            raise RuntimeError("an instructor function can only be called during a graded call")
        msg = json.dumps({"cb": key, "args": [enc(a) for a in args],
                          "kwargs": [[k, enc(v)] for k, v in kwargs.items()]}).encode()
        conn.sendall(struct.pack("!Q", len(msg)) + msg)
        while True:
            head = recv_exact(conn, 8)
            body = None if head is None else recv_exact(conn, struct.unpack("!Q", head)[0])
            if body is None:
                raise RuntimeError("the grader closed the channel")
            m = json.loads(body)
            if "op" in m:   # the grader works on the student's objects while the call is open
                out = handle(m).encode()
                conn.sendall(struct.pack("!Q", len(out)) + out)
                continue
            if m.get("ok"):
                return dec(m["r"])
            raise RuntimeError("the grader's function failed with " + str(m.get("etype", "an error"))[:100])

    tfn = []

    def tensor_function():
        if not tfn:
            torch = torch_mod()

            class InstructorFunction(torch.autograd.Function):
                @staticmethod
                def forward(ctx, cid, levels, *xs):
                    ctx.cid, ctx.levels = cid, levels
                    ctx.save_for_backward(*xs)
                    out = call_back({"id": cid, "levels": levels}, [x.detach() for x in xs], {})
                    outs = out if isinstance(out, tuple) else (out,)
                    return tuple(torch.as_tensor(o).to(xs[0].dtype) for o in outs)

                @staticmethod
                def backward(ctx, *gs):
                    xs = ctx.saved_tensors
                    grads = InstructorFunction.apply(ctx.cid, ctx.levels + [len(xs)], *xs, *gs)
                    return (None, None) + tuple(grads)

            tfn.append(InstructorFunction)
        return tfn[0]

    def instructor_stub(cid):
        def instructor_function(*args, **kwargs):
            torch = torch_mod()
            if torch is not None and args and not kwargs and all(isinstance(a, torch.Tensor) for a in args):
                out = tensor_function().apply(cid, [], *args)
                return out[0] if len(out) == 1 else out
            return call_back({"id": cid}, args, kwargs)
        return instructor_function

    import tracemalloc
    tm_api = (tracemalloc.is_tracing, tracemalloc.start, tracemalloc.stop, tracemalloc.get_traced_memory,
              tracemalloc.reset_peak)   # taken before any student cell runs

    def traced(fn, extra):
        """fn() under tracemalloc (NumPy reports its arrays to it); its peak in bytes goes to extra["peak"]."""
        tracing, start, stop, memory, reset_peak = tm_api
        was = tracing()
        if not was:
            start()
        try:
            base = memory()[0]
            reset_peak()
            value = fn()
            extra["peak"] = max(memory()[1] - base, 0)
        finally:
            if not was:
                stop()
        return value

    def reap():
        # children the grader killed are zombies until their parent waits; no thread is started
        # here: the zombies may hold every process slot of the uid
        n = 0
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            n += 1
        return n

    # During a call whose warnings are errors, the student's code must not silence them: a profile
    # hook sees every change of numpy's error state (errstate, seterr, seterrcall all set one
    # context variable), of the warnings filters, of the profile hook itself, a switch of context
    # and a new thread; any of them makes the call fail with the rule's warning, caught or not.
    def guarded(target, args, kwargs):
        import contextvars, threading as _threading, warnings, _thread, _warnings
        from numpy._core import umath
        extobj, filters = umath._extobj_contextvar, warnings.filters
        fp_errors = []

        def on_fp_error(kind, flag):   # numpy calls this, whatever the warnings filters say
            fp_errors.append(kind)
            raise RuntimeWarning(kind + " encountered in a graded call")

        py_names = {warnings.__file__: {"simplefilter", "filterwarnings", "resetwarnings", "_add_filter", "__enter__"},
                    _threading.__file__: {"setprofile", "settrace", "setprofile_all_threads", "settrace_all_threads"}}
        forbidden_c = (sys.setprofile, sys.settrace, _thread.start_new_thread, _warnings._filters_mutated)
        seen, done = [], [False]

        def watch(frame, event, arg):
            if done[0]:
                return
            if event == "c_call":
                owner = getattr(arg, "__self__", None)
                if owner is extobj or owner is filters or isinstance(owner, contextvars.Context) \
                        or any(arg is f for f in forbidden_c):
                    seen.append(getattr(arg, "__qualname__", repr(arg)))
            elif event == "call":
                code = frame.f_code
                if code.co_name in py_names.get(code.co_filename, ()):
                    seen.append(code.co_name)
            if seen:
                done[0] = True
                sys.setprofile(None)
                raise RuntimeWarning("the floating-point error state or the warnings filters were changed during "
                                     "a graded call (" + seen[0] + "): silencing overflow is not allowed here")

        with np.errstate(over="call", divide="call", invalid="call", under="ignore", call=on_fp_error):
            before = (np.geterr(), np.geterrcall(), list(filters))
            sys.setprofile(watch)
            try:
                out = target(*args, **kwargs)
            finally:
                hooked = sys.getprofile() is watch
                done[0] = True
                sys.setprofile(None)
            after = (np.geterr(), np.geterrcall(), list(warnings.filters))
        if fp_errors:   # raised in the student's code, even if it caught it
            raise RuntimeWarning(fp_errors[0] + " encountered in a graded call")
        if seen or not hooked or after != before or warnings.filters is not filters:
            raise RuntimeWarning("the floating-point error state or the warnings filters were changed during a "
                                 "graded call (" + (seen or ["profile hook removed" if not hooked else "state"])[0]
                                 + "): silencing overflow is not allowed here")
        return out

    def handle(req):
        extra = {}   # more of the answer: "peak" of a traced call
        try:
            op = req["op"]
            if op == "describe":
                if req["name"] not in ns:
                    return json.dumps({"ok": True, "missing": True})
                r = enc(ns[req["name"]])
            elif op == "call":
                target = dec(req["target"])
                args = [dec(a) for a in req["args"]]
                kwargs = {k: dec(a) for k, a in req["kwargs"]}
                strict = [getattr(builtins, c) for c in req.get("warnings_error", ())
                          if c in ("RuntimeWarning", "UserWarning", "DeprecationWarning", "FutureWarning", "Warning")]

                def run():
                    if req.get("trace_memory"):   # the test measures memory (tracemalloc): so does the kernel
                        return traced(lambda: target(*args, **kwargs), extra)
                    return target(*args, **kwargs)

                if strict:   # the test treats these warnings as errors: so does the kernel, during this call
                    import warnings
                    with warnings.catch_warnings(), np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
                        for category in strict:
                            warnings.simplefilter("error", category)
                        if RuntimeWarning in strict or Warning in strict:   # numpy's floating-point errors
                            r = enc(guarded(run, (), {}))
                        else:
                            r = enc(run())
                else:
                    r = enc(run())
            elif op == "getattr":
                r = enc(getattr(dec(req["target"]), req["attr"]))
            elif op == "binop":   # an operator of the grader's side applied to a student object
                import operator
                fn = getattr(operator, req["name"]) if req["name"] in ("add", "sub", "mul", "truediv", "matmul", "pow", "neg") else None
                target = dec(req["target"])
                if req["name"] == "neg":
                    r = enc(fn(target))
                else:
                    other = dec(req["other"])
                    r = enc(fn(other, target) if req.get("reflected") else fn(target, other))
            elif op == "getitem":
                r = enc(dec(req["target"])[dec(req["key"])])
            elif op == "reap":
                r = enc(reap())
            elif op == "release":
                for i in req["ids"]:
                    store.pop(i, None)
                r = enc(None)
            else:
                raise ValueError("unknown op " + repr(op))
            return json.dumps({"ok": True, "r": r, **extra})
        except BaseException as e:  # the student's exception travels back as data
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            return json.dumps({"ok": False, "etype": type(e).__name__, "evalue": str(e)[:4000],
                               "tb": "".join(tb[-6:])[-8000:]})

    def serve():
        return handle(ip.kernel.get_parent()["metadata"]["sg"])

    # The fast path: a unix socket in the run directory, served by a thread while the kernel's
    # main thread is idle between cells (about 10x less latency than an execute_request).
    import ctypes, socket, struct, threading
    from time import monotonic

    class OutputFlood(Exception):
        pass

    class Sink:
        def __init__(self, limit):
            self.left = limit

        def write(self, text):
            self.left -= len(text)
            if self.left < 0:
                raise OutputFlood("printed more than the grader's limit")
            return len(text)

        def flush(self):
            pass

    def run_delay(path):
        # seconds this thread has waited for a CPU (the grader's clock.py: the kernel's clock skips them)
        try:
            with open(path, "rb") as fh:
                return int(fh.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return None

    def run_bounded(req):
        limit, deadline = int(req.get("output_limit", 2000000)), float(req.get("deadline", 30))
        wall_cap = deadline * max(1.0, float(req.get("wall_factor", 1.0)))
        me = threading.get_ident()
        stat = "/proc/self/task/%d/schedstat" % threading.get_native_id()
        t0, base = monotonic(), run_delay(stat)
        done = threading.Event()

        def watchdog():
            # a pure-Python runaway gets a TimeoutError raised into it; C code is killed outside. The
            # deadline is on this thread's clock (time waiting for a CPU not counted), capped on the wall's
            left = deadline
            while not done.wait(left):
                wall = monotonic() - t0
                now = run_delay(stat)
                used = wall - (now - base if now is not None and base is not None else 0.0)
                if used >= deadline or wall >= wall_cap:
                    break
                left = max(0.01, min(deadline - used, wall_cap - wall))
            else:
                return
            while not done.wait(0.05):
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(me), ctypes.py_object(TimeoutError))

        threading.Thread(target=watchdog, daemon=True).start()
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = Sink(limit)
        try:
            return handle(req)
        finally:
            sys.stdout, sys.stderr = saved
            done.set()

    def recv_exact(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    live = []   # the agent's sockets: a process forked by student code must never write on them

    def forget_sockets():
        for sk in live:
            try:
                os.close(sk.detach())
            except OSError:
                pass

    os.register_at_fork(after_in_child=forget_sockets)

    def server(path):
        me = os.getpid()
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.unlink(path)
        except OSError:
            pass
        srv.bind(path)
        srv.listen(1)
        live.append(srv)
        while True:
            conn, _ = srv.accept()
            live.append(conn)
            chan[0] = conn
            with conn:
                while True:
                    head = recv_exact(conn, 8)
                    if head is None:
                        break
                    body = recv_exact(conn, struct.unpack("!Q", head)[0])
                    if body is None:
                        break
                    try:
                        req = json.loads(body)
                        if req.get("op") == "reap":   # inline: starting the watchdog thread may fail
                            out = json.dumps({"ok": True, "r": enc(reap())}).encode()
                        elif req.get("op") == "tid":   # this thread, for the grader's clock (asked at start)
                            out = json.dumps({"ok": True, "tid": threading.get_native_id()}).encode()
                        else:
                            out = run_bounded(req).encode()
                    except BaseException as e:  # even a late TimeoutError must not kill the server
                        out = json.dumps({"ok": False, "etype": type(e).__name__, "evalue": str(e)[:4000]}).encode()
                    if os.getpid() != me:   # a child forked by the student's code got here: it must go
                        os._exit(0)
                    conn.sendall(struct.pack("!Q", len(out)) + out)

    if SG_SOCKET:
        threading.Thread(target=server, args=(SG_SOCKET,), daemon=True, name="sg-agent").start()

    builtins.__sg_call__ = serve

    import warnings

    def to_stdout(message, category, filename, lineno, file=None, line=None):
        # a student's warnings are feedback, not failures: print them on stdout
        sys.stdout.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = to_stdout


__sg_install__(SG_SOCKET_PATH)
del __sg_install__
'''
