"""Source of the small agent installed in each student kernel.

It runs in the UNTRUSTED kernel: student code can replace or break it, which can only change
or withhold the data it returns (the grader validates that data and computes every verdict).
It serves one request per ``execute_request``: the request travels in the message metadata
(``metadata["sg"]``), the answer is the value of the user expression ``__sg_call__()`` — a
JSON string — so nothing the student prints can be mistaken for it.
"""

BODY = r'''
def __sg_install__(SG_SOCKET, SG_LOCKED):
    import base64, builtins, importlib, inspect, io, json, os, struct, sys, traceback
    import numpy as np
    import _json, _socket, _struct
    ip = get_ipython()
    ns = ip.user_ns
    # the wire, in C only: bound before any student cell runs (json's and struct's module attributes and
    # classes can be patched from a student cell; the request's flags and the answer must not be)
    scan_once = json.JSONDecoder().scan_once
    c_encode = json.encoder.c_make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",",
                                           False, False, True)
    pack, unpack = _struct.pack, _struct.unpack

    class jsonw:   # (a namespace)
        def loads(data, scan_once=scan_once):
            return scan_once(data.decode("utf-8") if type(data) is bytes else data, 0)[0]

        def dumps(obj, c_encode=c_encode):
            return "".join(c_encode(obj, 0))
    json_loads, json_dumps = jsonw.loads, jsonw.dumps
    WARNING_CLASSES = {c.__name__: c for c in (RuntimeWarning, UserWarning, DeprecationWarning, FutureWarning, Warning)}
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
            if SG_LOCKED:   # its closure would lead student code to the agent's
                raise RuntimeError("instructor functions cannot be handed to student code in a rule-bound kernel")
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
        msg = json_dumps({"cb": key, "args": [enc(a) for a in args],
                          "kwargs": [[k, enc(v)] for k, v in kwargs.items()]}).encode()
        conn.sendall(pack("!Q", len(msg)) + msg)
        while True:
            head = recv_exact(conn, 8)
            body = None if head is None else recv_exact(conn, unpack("!Q", head)[0])
            if body is None:
                raise RuntimeError("the grader closed the channel")
            m = json_loads(body)
            if "op" in m:   # the grader works on the student's objects while the call is open
                out = handle(m).encode()
                conn.sendall(pack("!Q", len(out)) + out)
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

    # ---- rules that hold where the student's code runs (hw2: "no overflow warnings") ----------------
    # A graded call whose warnings are errors runs in a thread of its own, started from C
    # (_thread.start_new_thread(Context.run, ...)): its bottom frame is `trampoline`, above it only the
    # student's frames, so no frame the student's code reaches leads to the agent. In that thread numpy's
    # floating-point errors call `on_fp_error`, and a profile hook `watch` sees every change of numpy's
    # error state, of the warnings filters, of the hook itself, a context switch and a new thread. Both
    # report to an audit hook (PEP 578: it cannot be removed from Python) that keeps the counts where no
    # Python object reaches them, and that refuses -- in that thread, and in a rule-bound kernel at all
    # times -- what reaches the grader's state or raw memory: gc's object graph, ctypes' audited calls,
    # /proc/*/mem and writes to /proc, other threads' frames, the hook's own frames, setting a profile or
    # trace function, replacing a function's code or defaults, starting processes. Each refusal counts:
    # the call then fails with a RuntimeWarning saying it tampered with the grader's checks.
    # These functions read no global and no builtin at run time: all they use are default arguments
    # (a tuple; replacing it is refused) bound here, before any student cell runs.
    import _thread, contextvars, itertools, types, warnings, _warnings
    import threading as _threading
    from numpy._core import umath
    import ctypes
    # resolved now, on a handle of the agent's own (the hook refuses dlsym later)
    set_async_exc = ctypes.PyDLL(None).PyThreadState_SetAsyncExc
    extobj_var, make_extobj = umath._extobj_contextvar, umath._make_extobj
    start_thread, allocate_lock, audit = _thread.start_new_thread, _thread.allocate_lock, sys.audit
    AG = globals()                 # the agent's own namespace (the cell exec'd it in a private dict)
    TG = {"__builtins__": {}}      # globals of what runs in the graded call's thread
    HG = {"__builtins__": {}}      # the audit hook's

    def isolated(fn, g, defaults=None):
        return types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__ if defaults is None else defaults)

    def watch(frame, event, arg, extobj=extobj_var, filters=warnings.filters, Context=contextvars.Context,
              forbidden=("setprofile", "settrace", "start_new_thread", "_filters_mutated"),
              py_names=((warnings.__file__, ("simplefilter", "filterwarnings", "resetwarnings", "_add_filter",
                                             "__enter__")),
                        (_threading.__file__, ("setprofile", "settrace", "setprofile_all_threads",
                                               "settrace_all_threads"))),
              importing="<frozen importlib._bootstrap>", audit=audit, getattr=getattr, type=type,
              RuntimeWarning=RuntimeWarning):
        if frame.f_back is None:   # the trampoline's own calls (the bottom of the call's thread)
            return
        what, filters_only = None, False
        if event == "c_call":
            owner = getattr(arg, "__self__", None)
            if owner is extobj or owner is filters or type(owner) is Context:
                what, filters_only = getattr(arg, "__qualname__", "a C call"), owner is filters
            else:
                name = getattr(arg, "__name__", None)   # (a C function's name is its own: a fresh copy of
                for f in forbidden:                       # _thread's from _imp.create_builtin has it too)
                    if name == f:
                        what, filters_only = getattr(arg, "__qualname__", "a C call"), f == "_filters_mutated"
        elif event == "call":
            code = frame.f_code
            for file, names in py_names:
                if code.co_filename == file and code.co_name in names:
                    what, filters_only = code.co_name, file == py_names[0][0]
        if filters_only:   # a module imported during the call may set its warnings filters (scipy does):
            f = frame      # numpy's errors reach on_fp_error whatever the filters say
            while f is not None and f.f_code.co_filename != importing:
                f = f.f_back
            if f is not None:
                return
        if what is not None:
            audit("sg.tamper", what)
            raise RuntimeWarning("the floating-point error state or the warnings filters were changed during "
                                 "a graded call (" + what + "): silencing overflow is not allowed here")

    def on_fp_error(kind, flag, audit=audit, RuntimeWarning=RuntimeWarning):   # numpy calls it, whatever the filters
        audit("sg.fp_error", kind)
        raise RuntimeWarning(kind + " encountered in a graded call")

    def call(target, args, kwargs):
        return target(*args, **kwargs)

    watch, on_fp_error, call = isolated(watch, TG), isolated(on_fp_error, TG), isolated(call, TG)

    def trampoline(target, args, kwargs, box, lock, exited, call=call, watch=watch, setprofile=sys.setprofile,
                   getprofile=sys.getprofile, audit=audit, sentinel=_thread._set_sentinel,
                   BaseException=BaseException):
        exited.append(sentinel())   # released by the interpreter when this thread is gone
        try:
            setprofile(watch)
            try:
                box.append(True)
                box.append(call(target, args, kwargs))
            except BaseException as e:
                box.clear()
                box.append(False)
                box.append(e)
            finally:
                hooked = getprofile() is watch
                setprofile(None)
                if not hooked:
                    audit("sg.tamper", "the profile hook was removed or replaced")
        finally:
            lock.release()

    plain = isolated(trampoline, TG, trampoline.__defaults__[:1] + (None,) + trampoline.__defaults__[2:])   # no watch
    trampoline = isolated(trampoline, TG)

    import linecache
    trusted = set()   # code of the stdlib's traceback formatting: the agent formats the student's errors

    def add_code(code):
        trusted.add(code)
        for c in code.co_consts:
            if type(c) is types.CodeType:
                add_code(c)

    for mod in (traceback, linecache):
        for obj in list(vars(mod).values()):
            for fn in [obj] + (list(vars(obj).values()) if type(obj) is type else []):
                fn = getattr(fn, "__func__", getattr(fn, "fget", fn))
                if type(fn) is types.FunctionType and fn.__module__ == mod.__name__:
                    add_code(fn.__code__)
    me_code = []
    own_code = set()   # the code of the functions below: their defaults hold what they use

    def hook_impl(ev, args, TG=TG, AG=AG, locked=bool(SG_LOCKED), getframe=sys._getframe,
                counts=(itertools.count(), itertools.count()), notes=([], []), me_code=me_code,
                trusted=frozenset(trusted), own=own_code,
                watched=frozenset(("object.__getattr__", "object.__setattr__", "open", "sys._getframe",
                                   "sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
                                   "sg.count", "sg.fp_error", "sg.tamper", "os.system", "os.exec", "os.posix_spawn",
                                   "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen", "pty.spawn")),
                frame_attrs=("tb_frame", "gi_frame", "cr_frame", "ag_frame"),
                tuple=tuple, FunctionType=types.FunctionType, TracebackType=types.TracebackType, type=type, str=str,
                bytes=bytes, len=len, next=next, list=list, int=int, range=range, stat=os.stat, readlink=os.readlink,
                proc_dev=os.stat("/proc").st_dev, writing=os.O_WRONLY | os.O_RDWR, OSError=OSError,
                PermissionError=PermissionError):
        if type(ev) is not str or (ev not in watched and ev[:7] != "ctypes."):
            return
        if ev == "object.__getattr__" and (len(args) != 2 or args[1] not in frame_attrs):
            return   # (f_code, __code__, ...: harmless, and the hook reads f_code itself)
        if ev == "sys._getframe" and args[0].f_code is me_code[0]:
            return   # the hook's own look at the stack
        up = getframe(0).f_back.f_back   # (above sg_hook: the code whose operation this is)
        if up is not None and up.f_code is me_code[0]:
            return   # the hook's own reading
        if ev == "sg.count":   # anyone may read the counts: they only grow
            if len(args) == 1 and type(args[0]) is list:
                args[0].append((counts[0].__reduce__()[1][0], counts[1].__reduce__()[1][0],
                                tuple(notes[0]), tuple(notes[1])))
            return
        if ev == "sg.fp_error" or ev == "sg.tamper":
            i = 0 if ev == "sg.fp_error" else 1
            next(counts[i])
            notes[i].append(args[0] if len(args) == 1 and type(args[0]) is str else "?")
            return
        if up is not None and up.f_globals is AG:
            return   # the agent's own (no student code reaches its namespace in a rule-bound kernel)
        f, bottom = up, None
        while f is not None:
            bottom, f = f, f.f_back
        strict = bottom is not None and bottom.f_globals is TG
        why = None
        if ev == "sys._getframe" or ev == "object.__getattr__":
            # a frame: in a rule-bound kernel none that leads to the agent, nor a generator's or
            # coroutine's (it may later run inside a graded call)
            if not locked:
                return
            if ev == "sys._getframe":
                frame = args[0]
            elif type(args[0]) is TracebackType:
                frame = args[0].tb_frame
            else:
                frame = None
                why = "a generator's or coroutine's frame"
            f = frame
            while why is None and f is not None:
                if f.f_globals is AG:
                    why = "a frame of the grader's agent"
                f = f.f_back
            if why is None:
                return
            f = up   # the agent's own traceback formatting: only the stdlib's code between it and the agent
            while f is not None and f.f_code in trusted:
                f = f.f_back
            if f is not None and f.f_globals is AG:
                return
        elif not (strict or locked):
            return
        elif ev == "object.__setattr__":
            if len(args) != 3 or type(args[0]) is not FunctionType or \
                    args[1] not in ("__code__", "__defaults__", "__kwdefaults__") or args[0].__code__ not in own:
                return
            why = "replacing the " + args[1] + " of the grader's " + args[0].__code__.co_name
        elif ev == "open":
            path, mode, flags = (args + (None, None, None))[:3]
            if type(path) is bytes:
                path = path.decode("utf-8", "surrogateescape")
            if type(path) is not str:
                return
            try:
                if stat(path).st_dev != proc_dev:
                    return
            except OSError:
                return
            for _ in range(40):   # the name the last component links to (/proc/self/fd/N, a symlink)
                try:
                    target = readlink(path)
                except OSError:
                    break
                path = target if target[:1] == "/" else path.rpartition("/")[0] + "/" + target
            name = path.rstrip("/").rpartition("/")[2]
            w = (type(mode) is str and ("w" in mode or "a" in mode or "+" in mode or "x" in mode)) or \
                (type(flags) is int and flags & writing)
            if name != "mem" and not w:
                return
            why = "opening " + path + (" for writing" if w else "")
        else:
            why = ev
        next(counts[1])
        notes[1].append(why)
        return why + " is not allowed " + ("during a graded call" if strict else "in this kernel") \
            + ": it could tamper with the grader's checks"

    hook_impl = isolated(hook_impl, {"__builtins__": {}})
    me_code.append(hook_impl.__code__)   # before the hook is installed
    own_code.update(f.__code__ for f in (watch, on_fp_error, call, trampoline, hook_impl))

    def sg_hook(ev, args, impl=hook_impl, BaseException=BaseException, PermissionError=PermissionError):
        # only this frame can be in a traceback (the one of a refusal): it keeps nothing of the hook's
        try:
            why = impl(ev, args)
        except BaseException:
            why = "an operation the grader's audit hook could not judge"
        del impl
        if why is not None:
            raise PermissionError(why)

    sg_hook = isolated(sg_hook, HG)
    own_code.add(sg_hook.__code__)

    def read_counts():
        box = []
        audit("sg.count", box)
        return box[0]

    victims = []   # threads the watchdog stops: the serving thread and the graded call's own

    def bottom(frame):
        while frame.f_back is not None:
            frame = frame.f_back
        return frame

    current_frames = sys._current_frames
    kernel_threads = {ident: bottom(f) for ident, f in current_frames().items()}   # the kernel's own, now

    def foreign_threads():
        """Threads running the student's cells' code, neither the kernel's nor the agent's: a graded call must
        not hand work to them. (A thread the kernel starts late runs no cell's code: it is not counted.)"""
        found = []
        for ident, f in current_frames().items():
            b = bottom(f)
            if b.f_globals is AG or kernel_threads.get(ident) is b:   # (a call's own thread is gone)
                continue
            g = f
            while g is not None and g.f_globals is not ns:
                g = g.f_back
            if g is not None:
                found.append(g.f_code.co_name)
        return ", ".join(found)
    copy_context, warnings_module = contextvars.copy_context, warnings

    def guarded(target, args, kwargs, strict=True):
        """target(*args, **kwargs) in a thread of its own; if strict, under the rule (see above)."""
        fp0, tampered0, _, _ = read_counts()
        running = foreign_threads() if strict else ""
        if running:
            audit("sg.tamper", "a thread started by the student's code is running: " + running)
        filters = warnings_module.filters
        before = list(filters)
        ctx = copy_context()
        if strict:
            ctx.run(extobj_var.set, make_extobj(over="call", divide="call", invalid="call", under="ignore",
                                                call=on_fp_error))
        box, lock, exited = [], allocate_lock(), []
        lock.acquire()
        tid = start_thread(ctx.run, (trampoline if strict else plain, target, args, kwargs, box, lock, exited))
        victims.append(tid)
        try:   # (a TimeoutError from the watchdog lands in these loops)
            while not lock.acquire(True, 0.05):
                pass
            while not exited[0].acquire(True, 0.05):   # the thread is gone: nothing of the call runs on
                pass
        finally:
            victims.remove(tid)
        if strict:
            running = foreign_threads()
            if running:
                audit("sg.tamper", "a thread started by the student's code is running: " + running)
            fp, tampered, fp_notes, tamper_notes = read_counts()
            if tampered > tampered0 or warnings_module.filters is not filters or list(filters) != before:
                raise RuntimeWarning("the call tampered with the grader's checks ("
                                     + (tamper_notes[tampered0] if len(tamper_notes) > tampered0 else "warnings filters")
                                     + "): silencing overflow is not allowed here")
            if fp > fp0:   # raised in the student's code, even if it caught it
                raise RuntimeWarning((fp_notes[fp0] if len(fp_notes) > fp0 else "a floating-point error")
                                     + " encountered in a graded call")
        if len(box) != 2:
            raise RuntimeError("the graded call's thread ended without a result")
        if not box[0]:
            raise box[1]
        return box[1]

    def release(e, BaseException=BaseException, RuntimeError=RuntimeError, id=id):
        # A failure's traceback holds its frames, and they every local the failed code made: the 3 GiB
        # of a memory bomb stay allocated while anything keeps the traceback (IPython keeps a failed
        # cell's as sys.last_traceback, until the next error), and the next test meets a full memory.
        # The locals are dropped (the traceback's text needs none); frames still running are kept.
        seen = set()
        while isinstance(e, BaseException) and id(e) not in seen:
            seen.add(id(e))
            tb = e.__traceback__
            while tb is not None:
                frame = tb.tb_frame
                try:
                    frame.clear()
                except RuntimeError:   # still running (the agent's own frame)
                    pass
                else:   # (3.11: clear() keeps the dict of locals a formatter read; reading it again empties it)
                    frame.f_locals
                tb = tb.tb_next
            e = e.__context__ if e.__cause__ is None else e.__cause__

    def released(result=None):
        release(getattr(result, "error_in_exec", None))
        release(getattr(result, "error_before_exec", None))

    ip.events.register("post_run_cell", released)   # after every cell: a failed one's locals are freed

    def handle(req):
        extra = {}   # more of the answer: "peak" of a traced call
        try:
            op = req["op"]
            if op == "describe":
                if req["name"] not in ns:
                    return json_dumps({"ok": True, "missing": True})
                r = enc(ns[req["name"]])
            elif op == "call":
                target = dec(req["target"])
                args = [dec(a) for a in req["args"]]
                kwargs = {k: dec(a) for k, a in req["kwargs"]}
                strict = [WARNING_CLASSES[c] for c in req.get("warnings_error", ()) if c in WARNING_CLASSES]

                def run():
                    if req.get("trace_memory"):   # the test measures memory (tracemalloc): so does the kernel
                        return traced(lambda: target(*args, **kwargs), extra)
                    return target(*args, **kwargs)

                def run_guarded(rule):   # (the student's frames lead to no frame of the agent's)
                    if req.get("trace_memory"):
                        return traced(lambda: guarded(target, args, kwargs, rule), extra)
                    return guarded(target, args, kwargs, rule)

                if strict:   # the test treats these warnings as errors: so does the kernel, during this call
                    import warnings
                    with warnings.catch_warnings(), np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
                        for category in strict:
                            warnings.simplefilter("error", category)
                        if RuntimeWarning in strict or Warning in strict:   # numpy's floating-point errors
                            r = enc(run_guarded(True))
                        else:
                            r = enc(run())
                elif SG_LOCKED:
                    r = enc(run_guarded(False))
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
            return json_dumps({"ok": True, "r": r, **extra})
        except BaseException as e:  # the student's exception travels back as data
            release(e)   # first: formatting needs memory that a bomb's locals may still hold
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            return json_dumps({"ok": False, "etype": type(e).__name__, "evalue": str(e)[:4000],
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
        # seconds a thread has waited for a CPU (the grader's clock.py: the kernel's clock skips them)
        try:
            with open(path, "rb") as fh:
                return int(fh.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return None

    def run_delays(every, own):
        # {thread: delay}: this thread's, or (a call in a thread of its own: guarded) every thread's
        tids = [own]
        if every:
            try:
                tids = os.listdir("/proc/self/task")
            except OSError:
                pass
        out = {}
        for t in tids:
            d = run_delay("/proc/self/task/%s/schedstat" % t)
            if d is not None:
                out[t] = d
        return out

    def run_bounded(req):
        limit, deadline = int(req.get("output_limit", 2000000)), float(req.get("deadline", 30))
        wall_cap = deadline * max(1.0, float(req.get("wall_factor", 1.0)))
        victims[:] = [threading.get_ident()]   # (and a graded call's own thread: guarded)
        every, own = bool(SG_LOCKED or req.get("warnings_error")), str(threading.get_native_id())
        t0, base = monotonic(), run_delays(every, own)
        done = threading.Event()

        def watchdog():
            # a pure-Python runaway gets a TimeoutError raised into it; C code is killed outside. The
            # deadline is on the kernel's clock (time the call's thread waited for a CPU not counted),
            # capped on the wall's
            left = deadline
            while not done.wait(left):
                wall = monotonic() - t0
                now = run_delays(every, own) if base else {}
                used = wall - max([d - base.get(t, 0.0) for t, d in now.items()] + [0.0])
                if used >= deadline or wall >= wall_cap:
                    break
                left = max(0.01, min(deadline - used, wall_cap - wall))
            else:
                return
            while not done.wait(0.05):
                for v in list(victims):
                    set_async_exc(ctypes.c_ulong(v), ctypes.py_object(TimeoutError))

        start_thread(watchdog, ())
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
        kernel_threads[threading.get_ident()] = bottom(sys._getframe())   # (started by threading: not ours at the bottom)
        me = os.getpid()
        srv = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)   # (C methods: no class to patch)
        try:
            os.unlink(path)
        except OSError:
            pass
        srv.bind(path)
        srv.listen(1)
        live.append(srv)
        while True:
            fd, _ = srv._accept()
            conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
            live.append(conn)
            chan[0] = conn
            try:
                while True:
                    head = recv_exact(conn, 8)
                    if head is None:
                        break
                    body = recv_exact(conn, unpack("!Q", head)[0])
                    if body is None:
                        break
                    try:
                        req = json_loads(body)
                        if req.get("op") == "reap":   # inline: starting the watchdog thread may fail
                            out = json_dumps({"ok": True, "r": enc(reap())}).encode()
                        elif req.get("op") == "tid":   # this thread, for the grader's clock (asked at start)
                            out = json_dumps({"ok": True, "tid": threading.get_native_id()}).encode()
                        else:
                            out = run_bounded(req).encode()
                    except BaseException as e:  # even a late TimeoutError must not kill the server
                        out = json_dumps({"ok": False, "etype": type(e).__name__, "evalue": str(e)[:4000]}).encode()
                    if os.getpid() != me:   # a child forked by the student's code got here: it must go
                        os._exit(0)
                    conn.sendall(pack("!Q", len(out)) + out)
            finally:
                conn.close()

    # In a rule-bound kernel nothing that student code can reach leads to the agent's functions (their
    # closures would): no threading.Thread holds the server, no builtin serves requests (the socket
    # does), the warnings hook has globals of its own.
    if SG_SOCKET and SG_LOCKED:
        start_thread(server, (SG_SOCKET,))
    elif SG_SOCKET:
        threading.Thread(target=server, args=(SG_SOCKET,), daemon=True, name="sg-agent").start()
    if not (SG_SOCKET and SG_LOCKED):
        builtins.__sg_call__ = serve

    def to_stdout(message, category, filename, lineno, file=None, line=None, sys=sys, fmt=warnings.formatwarning):
        # a student's warnings are feedback, not failures: print them on stdout
        sys.stdout.write(fmt(message, category, filename, lineno, line))

    warnings.showwarning = isolated(to_stdout, {"__builtins__": {}})

    def refused(a=None, b=None, c=None, name="", audit=audit, PermissionError=PermissionError):
        audit("sg.tamper", "ctypes." + name)
        raise PermissionError("raw memory access through ctypes." + name + " is not allowed in this kernel")

    if SG_LOCKED:   # ctypes' ready-made raw-memory functions (they take bare addresses; calls are not audited)
        import _ctypes
        for name in ("memmove", "memset", "string_at", "wstring_at"):   # (scipy needs cast)
            setattr(ctypes, name, isolated(refused, {"__builtins__": {}}, (None, None, None, name, audit, PermissionError)))
        for mod in (ctypes, _ctypes):
            for name in ("_memmove_addr", "_memset_addr", "_cast_addr", "_string_at_addr", "_wstring_at_addr"):
                if name in vars(mod):
                    delattr(mod, name)
    sys.addaudithook(sg_hook)   # last: the agent's own imports are done


__sg_install__(SG_SOCK, SG_LOCKED)
del __sg_install__
'''

# The cell that installs the agent: its code runs in a namespace of its own, with a copy of the builtins
# taken before any student cell runs (a student cell may rebind builtins.RuntimeWarning or len).
AGENT = (
    "exec(compile(" + repr(BODY) + ", '<sg-agent>', 'exec'), {'__builtins__': dict(vars(__import__('builtins'))), "
    "'get_ipython': get_ipython, 'SG_SOCK': SG_SOCKET_PATH, 'SG_LOCKED': SG_LOCKED_FLAG})\n"
)
