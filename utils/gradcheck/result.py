"""The outcome of a check: a verdict, a number, a diagnosis and a sentence a student can act on."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from .diagnose import DIAGNOSES

UNRELIABLE = (
    "unreliable here: f is not smooth near x (finite differences at two steps disagree) — check at another point"
)


@dataclass
class CheckResult:
    """Result of a ``check_*`` call.

    Attributes
    ----------
    passed : bool
        The verdict; ``bool(result)`` is the same.
    error : float
        Normwise relative error ‖yours − expected‖ / ‖expected‖ (estimated from random
        directions when the check passed, exact over all entries when it was localised).
    tolerance : float
        The relative tolerance the error was compared with.
    diagnosis : str
        A short code from :data:`gradcheck.diagnose.DIAGNOSES` (``ok``, ``sign``, ``factor``,
        ``transposed``, …), which says what each means and how it is detected.
    message : str
        One or two sentences saying what is wrong and what to do.
    worst : list of dict
        The worst entries: ``index``, ``yours``, ``expected``, ``abs_err``, ``rel_err``.
    n_evals : int
        Evaluations of the function under test.
    method : str
        Finite-difference scheme used: ``complex``, ``richardson``, ``central``, ``forward``.
    kind : str
        What was checked (``gradient``, ``VJP``, ``Jacobian``, ``Hessian``, …): the message's subject.
    resolution : float
        The smallest relative error the check could have detected: a mistake confined to one
        entry of at least this relative size fails for certain (random directions scale an
        entry by at least 1/2, ``tolerance / ATTENUATION``); a mistake spread over many entries
        of that size fails with high probability. Equal to ``tolerance`` when every entry was
        compared (a localised check). NaN where it does not apply (a wrong shape, NaN values).
    """

    passed: bool
    error: float
    tolerance: float
    diagnosis: str
    message: str
    worst: list = field(default_factory=list)
    n_evals: int = 0
    method: str = ""
    kind: str = "gradient"
    resolution: float = float("nan")

    def __post_init__(self):
        if self.diagnosis not in DIAGNOSES:
            raise ValueError(f"unknown diagnosis code {self.diagnosis!r}; add it to gradcheck.diagnose.DIAGNOSES")

    # factories: one per kind of verdict, so that no check builds a result positionally

    @classmethod
    def success(cls, error, tolerance, message, *, diagnosis="ok", **details) -> CheckResult:
        """A passing check (``diagnosis`` "ok", or "kink" for a pass with a note)."""
        return cls(True, error, tolerance, diagnosis, message, **details)

    @classmethod
    def failure(cls, diagnosis, error, tolerance, message, **details) -> CheckResult:
        """A failing check, named by a code of :data:`gradcheck.diagnose.DIAGNOSES`."""
        return cls(False, error, tolerance, diagnosis, message, **details)

    @classmethod
    def unreliable(cls, error, tolerance, **details) -> CheckResult:
        """f is not smooth near x: finite differences cannot decide, so the check passes with a note."""
        return cls(True, error, tolerance, "kink", UNRELIABLE, **details)

    @classmethod
    def wrong_shape(cls, message, kind, n_evals=0) -> CheckResult:
        """The student's result has the wrong shape: nothing was compared."""
        return cls(False, float("inf"), 0.0, "wrong_shape", message, n_evals=n_evals, kind=kind)

    @classmethod
    def non_finite(cls, message, kind) -> CheckResult:
        """The student's result holds NaN or inf: nothing was compared."""
        return cls(False, float("inf"), 0.0, "nan", message, kind=kind)

    def __bool__(self) -> bool:
        return bool(self.passed)

    def __str__(self) -> str:
        head = (
            f"{self.kind} check {'passed' if self.passed else 'FAILED'}: {self.message} "
            f"[relative error {self.error:.2e}, tolerance {self.tolerance:.1e}{self._resolution_text()}, "
            f"{self.n_evals} evaluations, {self.method}]"
        )
        if not self.worst or self.passed:
            return head
        rows = [f"  {'entry':<22}{'yours':>14}{'expected':>14}{'abs err':>11}"]
        for w in self.worst:
            rows.append(f"  {w['index']:<22}{w['yours']:>14.6g}{w['expected']:>14.6g}{w['abs_err']:>11.2e}")
        return head + "\n  worst entries:\n" + "\n".join(rows)

    def _resolution_text(self) -> str:
        r = self.resolution
        return f", resolves relative errors ≥ {r:.1e}" if r == r and r > self.tolerance else ""

    def __repr__(self) -> str:
        return (
            f"CheckResult(passed={self.passed}, error={self.error:.3e}, diagnosis={self.diagnosis!r}, "
            f"n_evals={self.n_evals}, method={self.method!r})"
        )

    def _repr_html_(self) -> str:
        ok = bool(self.passed)
        color, bg, mark = ("#1a7f37", "#e6f4ea", "✔") if ok else ("#b42318", "#fdecea", "✘")
        table = ""
        if self.worst and not ok:
            cells = "".join(
                f"<tr><td><code>{html.escape(w['index'])}</code></td><td>{w['yours']:.6g}</td>"
                f"<td>{w['expected']:.6g}</td><td>{w['abs_err']:.2e}</td></tr>"
                for w in self.worst
            )
            table = (
                "<table style='margin-top:4px;font-size:90%'><tr><th>entry</th><th>yours</th>"
                f"<th>expected</th><th>abs err</th></tr>{cells}</table>"
            )
        return (
            f"<div style='border-left:4px solid {color};background:{bg};padding:6px 10px;margin:4px 0;"
            f"font-family:sans-serif'><b style='color:{color}'>{mark} {self.kind} check "
            f"{'passed' if ok else 'failed'}</b> — {html.escape(self.message)}"
            f"<div style='color:#555;font-size:85%'>relative error {self.error:.2e} · tolerance "
            f"{self.tolerance:.1e}{html.escape(self._resolution_text())} · {self.n_evals} evaluations · {self.method}</div>{table}</div>"
        )
