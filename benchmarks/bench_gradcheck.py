#!/usr/bin/env python
"""Benchmark: ``gradcheck`` side by side with torch, scipy and a CS231n-style loop.

    python benchmarks/bench_gradcheck.py                  # n = 10 … 10⁵, markdown tables on stdout
    python benchmarks/bench_gradcheck.py --quick          # n ≤ 10³ only (smoke test, a few seconds)
    python benchmarks/bench_gradcheck.py --write-readme   # also rewrite the Benchmark section of utils/README.md

Test function f(x) = ½‖Ax − b‖² + 0.1·Σ log(1 + eˣ), A 50×n and b, x standard normal (seeded),
the gradient given as a numpy function; the transposed-gradient bug uses f(X) = tr(AXB), X √n×√n.

Checkers (each with its own defaults and the pass rule it documents or the course uses):

* ``gradcheck``          gc.check_gradient(f, grad, x);
* torch slow / fast      torch.autograd.gradcheck(fn, (x,), fast_mode=False / True)
                         (eps 1e-6, rtol 1e-3, atol 1e-5);
* scipy all / random     scipy.optimize.check_grad(f, grad, x, direction="all" / "random", rng=…),
                         which returns ‖grad − FD‖ only: passed ⇔ that / ‖grad(x)‖ < SCIPY_RTOL;
* CS231n loop            centred differences entry by entry (h = 1e-5), passed ⇔
                         max |a − n| / max(1e-8, |a| + |n|) < 1e-7.

f-evaluations are counted by wrapping the function each checker is handed. torch checks the
Jacobian of the function it is handed against torch's own autograd: in the cost and false-alarm
tables it gets a native torch f; in the planted-mistake tables (controls included) a custom
``torch.autograd.Function`` whose forward is the numpy f and whose backward returns the (buggy)
numpy gradient.

Cost model. A run whose evaluations grow with n (torch slow mode, scipy all entries, the CS231n
loop) needs a·n + b of them (fitted on its counts at n = 10 and 100). It is not run when that ×
one evaluation of f (timed at this n) already exceeds SKIP_SECONDS or the time left of
BUDGET_SECONDS, and it is stopped when that × the median time per evaluation inside the run over
its evaluations PROBE[0]…PROBE[1] (the checker's own overhead included) does; the cell shows "—"
with a footnote. torch's fast mode costs 4 evaluations, but on failure it recomputes the whole
slow-mode Jacobian for its error message (2n + 3 evaluations): where that would take more than
GUARD_SECONDS the run is stopped once the verdict is known (footnoted).

In the tables of planted mistakes the f-values are memoised across the cases that share f and x
(f is pure: verdicts and counts are those of an unmemoised run; no times are reported there).

Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # 2 shared cores: single-threaded, steadier timings

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import check_grad  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
try:
    import gradcheck as gc
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "utils"))
    import gradcheck as gc
sys.path.insert(0, str(ROOT / "utils" / "tests"))  # the planted-mistake Functions the tests use too
from planted import solve_function  # noqa: E402

torch.set_num_threads(1)

SEED = 20261130
SIZES = (10, 100, 1_000, 10_000, 100_000)
QUICK_SIZES = (10, 100, 1_000)
DETECT_SIZES = (100, 10_000)
SKIP_SECONDS = 10.0  # a run predicted to take longer is not run
BUDGET_SECONDS = 150.0  # nor one that would take the whole measurement past this
GUARD_SECONDS = 1.0  # torch fast mode: stop after the verdict if its failure path costs more
REPEAT_BELOW = 0.05  # runs shorter than this are timed best of 3
SCIPY_RTOL = 1e-5  # check_grad passes when its error / ‖grad(x)‖ is below this
CS231N_H, CS231N_RTOL = 1e-5, 1e-7
PROBE = (20, 220)  # evaluations between which a running check is timed (cost model)
README = ROOT / "utils" / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# problems


@dataclass
class Problem:
    key: str  # case key, e.g. "correct", "entry0.0001", "sign", "transposed"
    family: str  # cases of one family share f and x (memoisation)
    n: int
    dtype: type
    f: callable  # numpy f; accepts complex input (complex step)
    grad: callable  # the "student" gradient (numpy), possibly buggy
    x: np.ndarray
    torch_f: callable = None  # native torch f (correct gradients), or None → custom Function
    note: str = ""  # normwise relative size of a single-entry bug
    raw_f: callable = None  # f itself when ``f`` is memoised


def least_squares(n, dtype=np.float64, bug=None, delta=None, native=True):
    """f(x) = ½‖Ax − b‖² + 0.1 Σ log(1 + eˣ), computed in ``dtype`` whatever x is handed in.

    ``native``: for a correct gradient, hand torch a native torch f (else the custom Function)."""
    rng = np.random.default_rng([SEED, n])
    A, b, x0 = (
        v.astype(dtype) for v in (rng.standard_normal((50, n)), rng.standard_normal(50), rng.standard_normal(n))
    )
    cdtype = np.complex64 if dtype == np.float32 else np.complex128
    tenth = dtype(0.1)

    def f(x):
        x = np.asarray(x)
        x = x.astype(cdtype if np.iscomplexobj(x) else dtype, copy=False)
        return 0.5 * np.sum((A @ x - b) ** 2) + tenth * np.sum(np.log1p(np.exp(x)))

    def true_grad(x):
        x = np.asarray(x, dtype=dtype)
        return A.T @ (A @ x - b) + tenth / (1 + np.exp(-x))

    g0 = true_grad(x0).astype(np.float64)
    # a single-entry bug sits on a typical entry: |g_j| closest to the RMS of g
    j = int(np.argmin(np.abs(np.abs(g0) - np.sqrt(np.mean(g0**2)))))
    note, key = "", bug or "correct"
    if bug is None:
        grad = true_grad
    elif bug == "entry":
        key = f"entry{delta:g}"

        def grad(x):
            g = true_grad(x).copy()
            g[j] = g[j] * (1 + delta)
            return g

        note = f"{delta * abs(g0[j]) / np.linalg.norm(g0):.1e}"
    elif bug == "sign":
        grad = lambda x: -true_grad(x)  # noqa: E731
    elif bug == "factor2":
        grad = lambda x: 2 * true_grad(x)  # noqa: E731
    else:
        raise ValueError(bug)
    torch_f = None
    if bug is None and native:
        tdt = torch.float32 if dtype == np.float32 else torch.float64
        At, bt = torch.tensor(A, dtype=tdt), torch.tensor(b, dtype=tdt)

        def torch_f(x):
            return 0.5 * ((At @ x - bt) ** 2).sum() + 0.1 * torch.log1p(torch.exp(x)).sum()

    return Problem(key, "lsq", n, dtype, f, grad, x0, torch_f, note)


def trace_axb(n, transposed=False, native=True):
    """f(X) = tr(A X B), X k×k with k = √n; ∇f = AᵀBᵀ; the bug returns its transpose, B A."""
    k = int(round(np.sqrt(n)))
    rng = np.random.default_rng([SEED, n, 1])
    A, B, X0 = (rng.standard_normal((k, k)) for _ in range(3))
    G = A.T @ B.T
    grad = (lambda X: G.T.copy()) if transposed else (lambda X: G.copy())
    torch_f = None
    if not transposed and native:
        At, Bt = torch.tensor(A), torch.tensor(B)
        torch_f = lambda X: torch.trace(At @ X @ Bt)  # noqa: E731
    return Problem(
        "transposed" if transposed else "trace_correct",
        "trace",
        k * k,
        np.float64,
        lambda X: np.trace(A @ X @ B),
        grad,
        X0,
        torch_f,
    )


CASES = [  # (key, label, builder): planted mistakes
    ("entry0.001", "one entry × (1 + 10⁻³)", lambda n: least_squares(n, bug="entry", delta=1e-3)),
    ("entry0.0001", "one entry × (1 + 10⁻⁴)", lambda n: least_squares(n, bug="entry", delta=1e-4)),
    ("entry1e-06", "one entry × (1 + 10⁻⁶)", lambda n: least_squares(n, bug="entry", delta=1e-6)),
    ("sign", "sign flipped: −∇f", lambda n: least_squares(n, bug="sign")),
    ("factor2", "factor 2: 2∇f", lambda n: least_squares(n, bug="factor2")),
    ("transposed", "transposed ∇ of tr(AXB), X √n×√n", lambda n: trace_axb(n, transposed=True)),
]
CONTROLS = [  # correct gradients handed over the same way (torch: the custom Function): false-alarm controls
    ("correct", "control: correct ∇f", lambda n: least_squares(n, native=False)),
    ("trace_correct", "control: correct ∇ tr(AXB)", lambda n: trace_axb(n, native=False)),
]
LABELS = {k: label for k, label, _ in CASES + CONTROLS}
PATTERNED = {"sign": "sign", "factor2": "factor", "transposed": "transposed"}  # case → expected diagnosis


# ---------------------------------------------------------------------------------------------
# counting and memoising


class Counted:
    """Wrap a function and count its calls.

    With ``decide``: time the intervals between the checker's calls PROBE[0] … PROBE[1] (its own
    overhead included), and ask ``decide(median interval)`` whether to go on; if not, raise
    :class:`Stopped`. The median shrugs off the other users' bursts on a shared machine.
    """

    def __init__(self, f, decide=None):
        self.f, self.n, self.decide = f, 0, decide
        self.stamps, self.per_eval = [], None

    def __call__(self, *args):
        self.n += 1
        if self.decide is not None and PROBE[0] <= self.n <= PROBE[1]:
            self.stamps.append(time.perf_counter())
            if self.n == PROBE[1]:
                self.per_eval = float(np.median(np.diff(self.stamps)))
                if not self.decide(self.per_eval):
                    raise Stopped(self.n, self.per_eval)
        return self.f(*args)


class Stopped(Exception):
    """A run stopped by its cost probe: (evaluations so far, seconds per evaluation)."""


class Memo:
    """f-values memoised by point: exactly for points that differ from x0 in ≤ 8 entries (what the
    entry-by-entry checkers evaluate), by a 64-bit hash of the bytes otherwise; complex points
    are not memoised."""

    def __init__(self, f, x0):
        self.f, self.x0 = f, np.ascontiguousarray(x0).ravel()
        self.values = {}

    def _key(self, x):
        x = np.asarray(x)
        if x.dtype != self.x0.dtype or x.size != self.x0.size:
            return None
        flat = np.ascontiguousarray(x).ravel()
        diff = np.flatnonzero(flat != self.x0)
        if diff.size <= 8:
            return diff.tobytes(), flat[diff].tobytes()
        return hash(flat.tobytes())

    def __call__(self, x):
        key = self._key(x)
        if key is None:
            return self.f(x)
        if key not in self.values:
            self.values[key] = self.f(x)
        return self.values[key]


# ---------------------------------------------------------------------------------------------
# checkers


@dataclass
class Outcome:
    passed: bool | None  # None: not run or raised (see ``skipped`` / ``message``)
    n_evals: int = 0
    seconds: float = 0.0
    error: float = float("nan")
    diagnosis: str = ""
    message: str = ""
    skipped: tuple = ()  # key into Runner.skips when not run
    stopped: bool = False  # torch fast mode stopped after its verdict
    tolerance: float = float("nan")


def _numpy_torch_function(f, grad):
    """A torch function whose forward is the numpy f and whose backward is the numpy gradient."""

    class StudentF(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            xn = x.detach().numpy()
            return torch.as_tensor(np.asarray(f(xn), dtype=xn.dtype))

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved_tensors
            xn = x.detach().numpy()
            return grad_out * torch.as_tensor(np.asarray(grad(xn), dtype=xn.dtype))

    return StudentF.apply


def _torch_fn(p):
    return p.torch_f if p.torch_f is not None else _numpy_torch_function(p.f, p.grad)


def run_gradcheck(p: Problem, decide=None) -> Outcome:
    cf = Counted(p.f)
    t = time.perf_counter()
    r = gc.check_gradient(cf, p.grad, p.x)
    sec = time.perf_counter() - t
    if cf.n != r.n_evals:
        log(f"  note: gradcheck reports {r.n_evals} evaluations, the counter saw {cf.n}")
    return Outcome(bool(r.passed), cf.n, sec, r.error, r.diagnosis, r.message, tolerance=r.tolerance)


def _run_torch(p: Problem, fast: bool, decide=None) -> Outcome:
    fn = Counted(_torch_fn(p), decide)
    xt = torch.tensor(p.x, requires_grad=True)
    torch.manual_seed(SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "inputs are not double precision" for float32
        t = time.perf_counter()
        ok = torch.autograd.gradcheck(fn, (xt,), fast_mode=fast, raise_exception=False)
        sec = time.perf_counter() - t
    return Outcome(bool(ok), fn.n, sec)


def run_torch_slow(p, decide=None):
    return _run_torch(p, fast=False, decide=decide)


def run_torch_fast(p, decide=None):
    return _run_torch(p, fast=True, decide=decide)


def _run_scipy(p: Problem, direction: str, decide=None) -> Outcome:
    shape = p.x.shape
    f = Counted(lambda v: p.f(v.reshape(shape)), decide)  # scipy wants a flat x
    grad = lambda v: np.ravel(p.grad(v.reshape(shape)))  # noqa: E731
    gnorm = float(np.linalg.norm(grad(p.x.ravel()).astype(np.float64)))
    t = time.perf_counter()
    err = check_grad(f, grad, p.x.ravel(), direction=direction, rng=np.random.default_rng(SEED))
    sec = time.perf_counter() - t
    rel = float(err) / max(gnorm, 1e-300)
    return Outcome(bool(rel < SCIPY_RTOL), f.n, sec, rel)


def run_scipy_all(p, decide=None):
    return _run_scipy(p, "all", decide)


def run_scipy_random(p, decide=None):
    return _run_scipy(p, "random", decide)


def eval_numerical_gradient(f, x, h=CS231N_H):
    """CS231n's loop: centred differences, one entry at a time, x modified in place and restored."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        oldval = x[ix]
        x[ix] = oldval + h
        fxph = f(x)
        x[ix] = oldval - h
        fxmh = f(x)
        x[ix] = oldval
        grad[ix] = (fxph - fxmh) / (2 * h)
        it.iternext()
    return grad


def rel_error(x, y):
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def run_cs231n(p: Problem, decide=None) -> Outcome:
    f = Counted(p.f, decide)
    x = p.x.copy()
    t = time.perf_counter()
    f(x)  # the loop in the assignments starts with fx = f(x)
    num = eval_numerical_gradient(f, x)
    err = rel_error(p.grad(p.x), num)
    sec = time.perf_counter() - t
    return Outcome(bool(err < CS231N_RTOL), f.n, sec, err)


@dataclass
class Checker:
    key: str
    label: str
    run: callable
    expensive: bool = False  # evaluations grow with n: subject to the cost model
    uses_torch: bool = False
    evals_fit: tuple = None  # (a, b): evaluations ≈ a·n + b


CHECKERS = [
    Checker("gradcheck", "**gradcheck**", run_gradcheck),
    Checker("torch_slow", "torch slow", run_torch_slow, expensive=True, uses_torch=True),
    Checker("torch_fast", "torch fast", run_torch_fast, uses_torch=True),
    Checker("scipy_all", "scipy all", run_scipy_all, expensive=True),
    Checker("scipy_random", "scipy random", run_scipy_random),
    Checker("cs231n", "CS231n loop", run_cs231n, expensive=True),
]
BY_KEY = {c.key: c for c in CHECKERS}
LONG_LABELS = {
    "gradcheck": "`gc.check_gradient(f, grad, x)`, defaults",
    "torch_slow": "`torch.autograd.gradcheck(fn, (x,), fast_mode=False)`, defaults (eps 1e-6, rtol 1e-3, atol 1e-5)",
    "torch_fast": "the same with `fast_mode=True`",
    "scipy_all": f"`scipy.optimize.check_grad(f, grad, x)` (forward differences, ε = 1.5e-8, every entry); "
    f"it returns ‖grad − FD‖ only: passed ⇔ that / ‖grad(x)‖ < {SCIPY_RTOL:g}",
    "scipy_random": "the same with `direction='random'` (one standard-normal direction v, `rng` seeded; "
    "the error |gᵀv − FD| / ‖grad(x)‖ against the same threshold)",
    "cs231n": f"CS231n's `eval_numerical_gradient` loop (centred, h = {CS231N_H:g}) and the rule "
    f"max |a − n| / max(1e-8, |a| + |n|) < {CS231N_RTOL:g}",
}


def time_one_eval(c: Checker, p: Problem, raw: bool = False) -> float:
    """Median wall time of one evaluation of the function the checker is handed (``raw``: unmemoised)."""
    f = p.raw_f if (raw and p.raw_f is not None) else p.f
    if c.uses_torch:
        fn, arg = (p.torch_f or _numpy_torch_function(f, p.grad)), torch.tensor(p.x)
    else:
        fn, arg = f, p.x.copy()
    fn(arg)
    times = []
    budget = time.perf_counter() + 0.05
    while len(times) < 3 or (len(times) < 25 and time.perf_counter() < budget):
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


class Runner:
    """Runs checkers under the cost model and the time budget.

    The evaluations a run needs come from a·n + b (fitted on its counts at n = 10, 10²; for torch's
    fast mode, the failure path: the slow mode's count + 1). Before the run, that × one evaluation
    of f (a lower bound) already over the limit means: not run. During the run, the checker's calls
    PROBE[0] … PROBE[1] are timed, its own overhead included; that × the evaluations over the limit
    means: stopped. The limit is SKIP_SECONDS (GUARD_SECONDS for torch's failure path) or the time
    left of the budget.
    """

    def __init__(self, budget=BUDGET_SECONDS):
        self.t0, self.budget = time.perf_counter(), budget
        self.skips = {}  # (checker, n, dtype, over SKIP_SECONDS?) → footnote data

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def evals_needed(self, c: Checker, n: int):
        if c.key == "torch_fast":
            fit = BY_KEY["torch_slow"].evals_fit
            return None if fit is None else fit[0] * n + fit[1] + 1
        return None if (not c.expensive or c.evals_fit is None) else c.evals_fit[0] * n + c.evals_fit[1]

    def run(self, c: Checker, p: Problem) -> Outcome:
        evals = self.evals_needed(c, p.n)
        limit = lambda: min(GUARD_SECONDS if c.key == "torch_fast" else SKIP_SECONDS, self.left())  # noqa: E731
        decide = None
        if evals is not None:
            if c.expensive:
                t_eval = time_one_eval(c, p)
                if evals * t_eval > limit():
                    return self._skip(c, p, evals, t_eval, "f alone")
            # torch's failure path: judged on unmemoised f, so that whether it is stopped does not
            # depend on which points earlier cases happened to memoise
            floor = time_one_eval(c, p, raw=True) if c.key == "torch_fast" else 0.0
            decide = lambda per: evals * max(per, floor) <= limit()  # noqa: E731
        try:
            out = c.run(p, decide=decide)
            if out.seconds < REPEAT_BELOW:  # short: best of 3 (timer noise, caches)
                out.seconds = min([out.seconds] + [c.run(p).seconds for _ in range(2)])
        except Stopped as stop:
            if c.key == "torch_fast":
                # fast mode evaluates f more than 4 times only in _run_slow_mode_and_get_error, which it
                # calls once its comparison has failed, to print both Jacobians: the verdict is False
                return Outcome(False, stop.args[0], stopped=True)
            return self._skip(c, p, evals, stop.args[1], f"median over {PROBE[1] - PROBE[0]} of its evaluations")
        except Exception as exc:  # noqa: BLE001 - a checker that raises is a result too
            log(f"  {c.key} raised {type(exc).__name__}: {exc}")
            return Outcome(None, message=f"{c.label} raised {type(exc).__name__}: {str(exc)[:160]}")
        if evals is not None and c.expensive:
            log(
                f"  {c.key:<12} n={p.n:<7} {p.key:<13} {out.n_evals:>7,} evaluations, took {out.seconds:6.2f} s "
                f"(predicted {evals:,.0f} evaluations)"
            )
        return out

    def _skip(self, c, p, evals, per, how):
        seconds = evals * per
        over_skip = seconds > SKIP_SECONDS
        key = (c.key, p.n, np.dtype(p.dtype).name, over_skip)
        entry = self.skips.setdefault(
            key,
            {
                "label": c.label,
                "n": p.n,
                "dtype": np.dtype(p.dtype).name,
                "evals": evals,
                "per": [],
                "how": how,
                "over_skip": over_skip,
                "budget": self.budget,
            },
        )
        entry["per"].append(per)
        log(
            f"  skip: {c.label} n={p.n} {p.key}: {evals:,.0f} evaluations × {per * 1e3:.2f} ms ({how}) ≈ "
            f"{seconds:.0f} s; {self.left():.0f} s left"
        )
        return Outcome(None, skipped=key)


def calibrate(c: Checker, results: dict):
    """Fit evaluations = a·n + b on the runs at n = 10 and 100."""
    r10, r100 = results.get(10), results.get(100)
    if r10 and r100 and r10.n_evals and r100.n_evals:
        a = (r100.n_evals - r10.n_evals) / 90
        c.evals_fit = (a, r10.n_evals - 10 * a)


# ---------------------------------------------------------------------------------------------
# measuring


def measure(sizes, detect_sizes, budget):
    runner = Runner(budget)
    f64 = {c.key: {} for c in CHECKERS}
    f32 = {c.key: {} for c in CHECKERS}
    for c in CHECKERS:  # warm-up (imports, torch dispatch, BLAS), not recorded
        c.run(least_squares(10))
    for n in sizes:
        log(f"correct gradients, n = {n:,}")
        for dtype, table in ((np.float64, f64), (np.float32, f32)):
            p = least_squares(n, dtype)
            for c in CHECKERS:
                table[c.key][n] = runner.run(c, p)
        if n == 100:
            for c in CHECKERS:
                calibrate(c, f64[c.key])
    det = {}
    for n in detect_sizes:
        log(f"planted mistakes, n = {n:,}")
        problems, memos = {}, {}
        for key, _, build in CASES + CONTROLS:
            p = build(n)
            p.raw_f = p.f
            p.f = memos.setdefault(p.family, Memo(p.f, p.x))
            problems[key] = p
        d = {key: {} for key in LABELS}
        # the cheap checkers first, then the entry-by-entry ones: under the budget they give way
        for c in sorted(CHECKERS, key=lambda c: c.expensive):
            for key, p in problems.items():
                d[key][c.key] = runner.run(c, p)
        d["_notes"] = {key: p.note for key, p in problems.items()}
        det[n] = d
    return f64, f32, det, runner.skips


# ---------------------------------------------------------------------------------------------
# custom autograd Functions: gc.check_function vs torch.autograd.gradcheck

FN_N = 12  # x = A⁻¹ b with A 12×12 (well conditioned), b of 12; softplus on 200 entries


def _softplus_function(mistake=None):
    """y = log(1 + eˣ) elementwise; backward x̄ = σ(x) ∘ ȳ — or a planted mistake."""

    class Softplus(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.nn.functional.softplus(x)

        @staticmethod
        def backward(ctx, y_bar):
            (x,) = ctx.saved_tensors
            if mistake == "no_ybar":
                return torch.sigmoid(x)  # forgot the chain rule's ȳ
            if mistake == "half":
                return 0.5 * torch.sigmoid(x) * y_bar
            return torch.sigmoid(x) * y_bar

    return Softplus


FN_CASES = [  # (key, label, builder of (Function class, inputs))
    ("solve_ok", "control: x = A⁻¹b, correct backward", lambda: ("solve", None)),
    ("solve_A_T", "Ā returned transposed", lambda: ("solve", "A_transposed")),
    ("solve_b_sign", "b̄ with the wrong sign", lambda: ("solve", "b_sign")),
    ("solve_b_noT", "b̄ = A⁻¹x̄ instead of A⁻ᵀx̄", lambda: ("solve", "b_not_transposed")),
    ("solve_A_entry", "one entry of Ā × (1 + 10⁻⁴)", lambda: ("solve", "A_entry")),
    ("solve_b_entry", "one entry of b̄ × (1 + 10⁻⁶)", lambda: ("solve", "b_entry")),
    ("softplus_ok", "control: softplus, correct backward", lambda: ("softplus", None)),
    ("softplus_no_ybar", "softplus backward forgets ȳ", lambda: ("softplus", "no_ybar")),
    ("softplus_half", "softplus backward × ½", lambda: ("softplus", "half")),
]


def _fn_problem(kind, mistake):
    g = torch.Generator().manual_seed(SEED)
    if kind == "solve":
        A = torch.randn(FN_N, FN_N, generator=g, dtype=torch.float64) + FN_N**0.5 * torch.eye(FN_N, dtype=torch.float64)
        b = torch.randn(FN_N, generator=g, dtype=torch.float64)
        return solve_function(mistake), (A.requires_grad_(), b.requires_grad_())
    x = torch.randn(200, generator=g, dtype=torch.float64)
    return _softplus_function(mistake), (x.requires_grad_(),)


def measure_functions():
    """Each case: gc.check_function and torch.autograd.gradcheck (slow, fast) — verdict, forward calls, time."""
    out = {}
    for key, _, build in FN_CASES:
        cls, inputs = _fn_problem(*build())
        row = {}
        counted = Counted(cls.apply)
        t = time.perf_counter()
        r = gc.check_function(counted, *inputs, jvp=False)
        row["gradcheck"] = Outcome(
            bool(r.passed), counted.n, time.perf_counter() - t, r.error, r.diagnosis, r.message, tolerance=r.tolerance
        )
        for name, fast in (("torch_slow", False), ("torch_fast", True)):
            counted = Counted(cls.apply)
            torch.manual_seed(SEED)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                ok = torch.autograd.gradcheck(counted, inputs, fast_mode=fast, raise_exception=False)
                sec = time.perf_counter() - t
            row[name] = Outcome(bool(ok), counted.n, sec)
        out[key] = row
    return out


def function_table(fn) -> list[str]:
    lines = ["| case | **gc.check_function** | torch slow | torch fast |", "|---|---|---|---|"]
    for key, label, _ in FN_CASES:
        control = key.endswith("_ok")
        cells = []
        for c in ("gradcheck", "torch_slow", "torch_fast"):
            o = fn[key][c]
            verdict = (
                ("passes" if o.passed else "**false alarm**")
                if control
                else ("caught" if not o.passed else "**missed**")
            )
            if c == "gradcheck" and not control and not o.passed:
                verdict += f" `{o.diagnosis}`"
            cells.append(f"{verdict} · {o.n_evals:,}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# formatting


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.1f} s"


def fmt_n(n: int) -> str:
    return {10: "10", 100: "10²", 1000: "10³", 10_000: "10⁴", 100_000: "10⁵"}.get(n, f"{n:,}")


class Notes:
    """Numbered footnotes shared by all tables; one per key (the first text given is kept)."""

    def __init__(self, skips):
        self.keys, self.texts, self.skips = [], [], skips

    def ref(self, key, text: str) -> str:
        if key not in self.keys:
            self.keys.append(key)
            self.texts.append(text)
        return f"[^{self.keys.index(key) + 1}]"

    def render(self) -> list[str]:
        return [f"[^{i}]: {t}" for i, t in enumerate(self.texts, 1)]


STOPPED_NOTE = (
    "failed; torch's fast mode reaches this verdict in 4 evaluations, then recomputes the whole "
    "slow-mode Jacobian for its error message{counts}: the run was stopped once the verdict was "
    f"known, because that would take more than {GUARD_SECONDS:g} s."
)


def stopped_note(f32) -> str:
    """The footnote on stopped torch fast-mode runs, with the failure-path counts measured where it ran."""
    seen = [(n, o.n_evals) for n, o in sorted(f32["torch_fast"].items()) if o.passed is False and not o.stopped]
    counts = (
        (
            " ("
            + ", ".join(f"{e:,}" for _, e in seen)
            + " evaluations in all at n = "
            + ", ".join(fmt_n(n) for n, _ in seen)
            + " in float32)"
        )
        if seen
        else ""
    )
    return STOPPED_NOTE.format(counts=counts)


def _span(values, fmt):
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}–{fmt(hi)}"


def skip_text(e) -> str:
    where = f"at n = {fmt_n(e['n'])}" + (" in float32" if e["dtype"] == "float32" else "")
    per = _span(e["per"], lambda v: f"{v * 1e3:.2g} ms")
    secs = _span([e["evals"] * v for v in e["per"]], lambda v: f"{v:.0f} s")
    runs = len(e["per"])
    limit = (
        f"more than {SKIP_SECONDS:g} s"
        if e["over_skip"]
        else f"more than the time left of the {e['budget']:g} s budget"
    )
    return (
        f"{e['label']} {where}: not run{f' ({runs} runs)' if runs > 1 else ''} — the cost model predicts "
        f"{e['evals']:,.0f} evaluations × {per} per evaluation ({e['how']}) ≈ {secs}, {limit}."
    )


def special(o: Outcome, notes: Notes, skips=None) -> str | None:
    if o.skipped:
        return "—" + notes.ref(o.skipped, skip_text(notes.skips[o.skipped]))
    if o.passed is None:
        return "error" + notes.ref(o.message, o.message)
    return None


def cost_table(sizes, f64, notes) -> list[str]:
    lines = ["| checker | " + " | ".join(f"n = {fmt_n(n)}" for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for c in CHECKERS:
        cells = []
        for n in sizes:
            o = f64[c.key][n]
            s = special(o, notes) or (f"{o.n_evals:,} · {fmt_time(o.seconds)}" + ("" if o.passed else " ✗"))
            cells.append(s)
        lines.append(f"| {c.label} | " + " | ".join(cells) + " |")
    return lines


def false_alarm_table(sizes, f64, f32, notes) -> list[str]:
    lines = [
        "| checker | " + " | ".join(f"n = {fmt_n(n)}" for n in sizes) + " | false alarms |",
        "|---" * (len(sizes) + 2) + "|",
    ]
    for c in CHECKERS:
        cells, alarms, runs = [], 0, 0
        for n in sizes:
            parts = []
            for o in (f64[c.key][n], f32[c.key][n]):
                s = special(o, notes)
                if s is None:
                    runs += 1
                    alarms += not o.passed
                    s = ("✓" if o.passed else "✗") + (notes.ref("stopped", notes.stopped) if o.stopped else "")
                parts.append(s)
            cells.append(" / ".join(parts))
        lines.append(f"| {c.label} | " + " | ".join(cells) + f" | {alarms} of {runs} |")
    return lines


CONTROL_OF = {"transposed": "trace_correct", "trace_correct": "trace_correct"}  # others: "correct"
CONTROL_NOTE = (
    "fails, but it fails the correct gradient (control row) too: at this n the check cannot tell "
    "this mistake from no mistake"
)


def detection_table(n, d, notes) -> list[str]:
    lines = [f"| n = {fmt_n(n)} | " + " | ".join(c.label for c in CHECKERS) + " |", "|---" * (len(CHECKERS) + 1) + "|"]
    for key in LABELS:
        control = key in ("correct", "trace_correct")
        cells = []
        for c in CHECKERS:
            o = d[key][c.key]
            s = special(o, notes)
            if s is None:
                ctrl = d[CONTROL_OF.get(key, "correct")][c.key]
                if control:
                    s = "passes" if o.passed else "**false alarm**"
                elif not o.passed and ctrl.passed is False:
                    s = "fails" + notes.ref("control", CONTROL_NOTE)
                else:
                    s = "caught" if not o.passed else "**missed**"
                    if c.key == "gradcheck" and not o.passed:
                        s += f" `{o.diagnosis}`"
                if o.stopped:
                    s += notes.ref("stopped", notes.stopped)
            cells.append(s)
        lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    return lines


def render(sizes, detect_sizes, f64, f32, det, skips, seconds, fn=None) -> str:
    notes = Notes(skips)
    notes.stopped = stopped_note(f32)
    out = [
        f"Measured by `benchmarks/bench_gradcheck.py`{' --quick' if sizes != SIZES else ''} in "
        f"{seconds:.0f} s, single-threaded, on a shared {os.cpu_count()}-core machine (load average "
        f"{os.getloadavg()[0]:.1f} at the end; wall times vary ±40 % between runs, more under load — compare "
        f"checkers within a run): Python {platform.python_version()}, numpy {np.__version__}, scipy "
        f"{scipy.__version__}, torch {torch.__version__.split('+')[0]}, gradcheck {gc.__version__}. "
        "f(x) = ½‖Ax − b‖² + 0.1·Σ log(1 + eˣ), A 50×n; A, b, x standard normal, seeded; float64 unless "
        "said. Checkers:",
        "",
    ]
    out += [f"- {c.label}: {LONG_LABELS[c.key]}" for c in CHECKERS]
    out += [
        "",
        "**Cost of checking a correct gradient** — f-evaluations · wall time (✗: the check failed "
        "on a correct gradient)",
        "",
    ]
    out += cost_table(sizes, f64, notes)
    out += [
        "",
        "**False alarms on correct gradients** — float64 / float32 in each cell (✓ passed, ✗ false "
        "alarm). In float32, A, b, x are float32 and f and the gradient compute in float32 whatever they "
        "are handed (complex64 for a complex step).",
        "",
    ]
    out += false_alarm_table(sizes, f64, f32, notes)
    for n in detect_sizes:
        sizes_note = ", ".join(f"{det[n]['_notes'][k]} (δ = {k[5:]})" for k in LABELS if k.startswith("entry"))
        out += [
            "",
            f"**Planted mistakes at n = {fmt_n(n)}** — caught or missed; gradcheck with its diagnosis "
            "code. The wrong entry is a typical one (|g_j| closest to the RMS of g): the bug's size "
            f"‖yours − ∇f‖ / ‖∇f‖ is {sizes_note}. torch gets a custom autograd Function (numpy forward, "
            "the student's gradient as backward; the controls too); scipy gets X flattened (it refuses a "
            "matrix).",
            "",
        ]
        out += detection_table(n, det[n], notes)
    if fn:
        out += [
            "",
            f"**Custom autograd Functions** — `gc.check_function(Fn, *inputs)` against "
            "`torch.autograd.gradcheck(Fn.apply, inputs)` (slow and fast mode, defaults), both checking the "
            f"hand-written backward against finite differences of forward: x = A⁻¹b with A {FN_N}×{FN_N} "
            "(both inputs require grad), softplus on 200 entries. Each cell: verdict · forward calls.",
            "",
        ]
        out += function_table(fn)
    out += [
        "",
        "**gradcheck's diagnosis of each patterned mistake** (`CheckResult.message`; f-evaluations of "
        "the failing check):",
        "",
    ]
    for n in detect_sizes:
        for k in PATTERNED:
            o = det[n][k]["gradcheck"]
            out.append(f"- n = {fmt_n(n)}, {LABELS[k]}: `{o.diagnosis}` — “{o.message}” ({o.n_evals} evaluations)")
    out += [
        "",
        f"Cost model: a run whose evaluations grow with n (torch slow, scipy all, CS231n) needs a·n + b "
        f"of them (fitted on its counts at n = 10, 10²). It is not run when that × one evaluation of f "
        f"already exceeds {SKIP_SECONDS:g} s (or the time left of the {BUDGET_SECONDS:g} s budget), and it is "
        f"stopped when that × the median time per evaluation over its evaluations {PROBE[0]}–{PROBE[1]} (the "
        "checker's own overhead included) does. Runs under "
        f"{REPEAT_BELOW * 1e3:.0f} ms are timed best of 3. In the planted-mistake tables f-values are "
        "memoised across cases that share f and x (f is pure: same verdicts and counts, fewer seconds).",
    ]
    if notes.keys:
        out += [""] + notes.render()
    return "\n".join(out) + "\n"


def targets(sizes, f64, f32, det, fn=None) -> list[str]:
    """The issue's targets for gradcheck, each MET or MISSED, with the numbers."""
    rows = []
    gc64, gc32 = f64["gradcheck"], f32["gradcheck"]
    passing = [
        (r.n_evals, n, dt) for dt, tbl in (("float64", gc64), ("float32", gc32)) for n, r in tbl.items() if r.passed
    ]
    worst = max(passing) if passing else (0, 0, "")
    ok = all(e <= 10 for e, _, _ in passing)
    rows.append(
        f"- {'MET' if ok else 'MISSED'}: a passing check in ≤ 10 evaluations at any n (most: {worst[0]}, "
        f"n = {fmt_n(worst[1])}, {worst[2]})"
    )
    if 100 in det:
        o = det[100]["entry1e-06"]["gradcheck"]
        rows.append(
            f"- {'MET' if not o.passed else 'MISSED'}: catches a 10⁻⁶ single-entry bug at n = 10² "
            f"(error {o.error:.2e}, `{o.diagnosis}`: “{o.message}”, {o.n_evals} evaluations)"
        )
    if 10_000 in det:
        for key, tex in (("entry0.0001", "10⁻⁴"), ("entry1e-06", "10⁻⁶")):
            o = det[10_000][key]["gradcheck"]
            rows.append(
                f"- {'MET' if not o.passed else 'MISSED'}: catches a {tex} single-entry bug at n = 10⁴ "
                f"(error {o.error:.2e}, `{o.diagnosis}`: “{o.message}”, {o.n_evals} evaluations)"
            )
    both = [n for n in sizes if f64["torch_fast"][n].passed is not None and f64["gradcheck"][n].passed is not None]
    slower = [n for n in both if f64["gradcheck"][n].seconds > f64["torch_fast"][n].seconds]
    ratios = ", ".join(f"{fmt_n(n)}: {f64['gradcheck'][n].seconds / f64['torch_fast'][n].seconds:.2f}" for n in both)
    rows.append(
        f"- {'MET' if not slower else 'MISSED'}: wall time of a correct check ≤ torch fast mode's at every n, "
        f"same run (gradcheck / torch fast: {ratios})"
    )
    if fn:
        fails = [k for k, _, _ in FN_CASES if (fn[k]["gradcheck"].passed is not k.endswith("_ok"))]
        torch_missed = [lbl for k, lbl, _ in FN_CASES if not k.endswith("_ok") and fn[k]["torch_slow"].passed]
        rows.append(
            f"- {'MET' if not fails else 'MISSED'}: check_function catches every planted backward mistake "
            f"and passes the controls ({len(FN_CASES)} cases)"
            + (f" — wrong on: {', '.join(fails)}" if fails else "")
            + (f"; torch slow mode misses: {', '.join(torch_missed)}" if torch_missed else "")
        )
    alarms = [
        f"{dt} n = {fmt_n(n)} (error {r.error:.2e} > tolerance {r.tolerance:.1e}: “{r.message}”)"
        for dt, tbl in (("float64", gc64), ("float32", gc32))
        for n, r in tbl.items()
        if not r.passed
    ]
    alarms += [
        f"{LABELS[k]} n = {fmt_n(n)}"
        for n in det
        for k in ("correct", "trace_correct")
        if not det[n][k]["gradcheck"].passed
    ]
    rows.append(
        f"- {'MET' if not alarms else 'MISSED'}: zero false alarms (float64 and float32, n = "
        f"{', '.join(fmt_n(n) for n in sizes)}; the tr(AXB) controls)"
        + (" — false alarms: " + "; ".join(alarms) if alarms else "")
    )
    missing = [
        (n, k, det[n][k]["gradcheck"])
        for n in det
        for k, want in PATTERNED.items()
        if det[n][k]["gradcheck"].diagnosis != want
    ]
    rows.append(
        f"- {'MET' if not missing else 'MISSED'}: a diagnosis sentence for every patterned mistake"
        + (
            " — not named: "
            + "; ".join(f"{LABELS[k]} at n = {fmt_n(n)} (got `{o.diagnosis}`: “{o.message}”)" for n, k, o in missing)
            if missing
            else ""
        )
    )
    wrong = [
        (n, k, o)
        for n in det
        for k in LABELS
        if k.startswith("entry")
        for o in [det[n][k]["gradcheck"]]
        if not o.passed and o.diagnosis not in ("few_entries", "mismatch")
    ]
    if wrong:
        rows.append(
            "- (not a listed target) a misleading diagnosis of a single-entry bug: "
            + "; ".join(f"{LABELS[k]} at n = {fmt_n(n)} → `{o.diagnosis}`: “{o.message}”" for n, k, o in wrong)
        )
    return rows


def write_readme(section: str, path: Path = README):
    """Replace the text between the bench markers (or append them at the end), atomically."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{START}\n## Benchmark\n\n{section.strip()}\n{END}"
    i, j = text.find(START), text.find(END)
    if i >= 0 and j > i:
        new = text[:i] + block + text[j + len(END) :]
    else:
        new = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
        os.chmod(tmp, (path.stat().st_mode if path.exists() else 0o644) & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv=None):
    ap = argparse.ArgumentParser(description="gradcheck vs torch, scipy and CS231n: markdown tables on stdout")
    ap.add_argument("--quick", action="store_true", help="n ≤ 10³ only (smoke test)")
    ap.add_argument(
        "--write-readme",
        action="store_true",
        help=f"also write the tables into {README.relative_to(ROOT)} between {START} and {END}",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=BUDGET_SECONDS,
        help=f"seconds for the whole measurement (default {BUDGET_SECONDS:g})",
    )
    args = ap.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    detect_sizes = tuple(n for n in DETECT_SIZES if n <= max(sizes))
    t0 = time.perf_counter()
    np.seterr(all="ignore")
    f64, f32, det, skips = measure(sizes, detect_sizes, args.budget)
    log("custom autograd Functions")
    fn = measure_functions()
    text = render(sizes, detect_sizes, f64, f32, det, skips, time.perf_counter() - t0, fn)
    text += (
        "\n**Targets for gradcheck** (its design goals, each measured in this run):\n\n"
        + "\n".join(targets(sizes, f64, f32, det, fn))
        + "\n"
    )
    print(text, end="", flush=True)
    if args.write_readme:
        write_readme(text)
        log(f"wrote the Benchmark section of {README}")
    log(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
