"""What a student sees when a check raises: their own code, not gradcheck's frames.

Every public entry point (``check_*``, ``assert_*``, ``taylor_test``, …) is wrapped by
:func:`student_facing`. When it raises (a failed ``assert_*``, a wrong structure, or the
student's own function failing inside a check), gradcheck's frames are cut from the exception's
traceback and the exception is re-raised with a bare ``raise``, which adds no frame: the
student's frames and other libraries' stay, in order, and the message and type are unchanged.

``__tracebackhide__`` alone is not enough: pytest honours it, but IPython (Jupyter, Colab) always
shows the innermost frame — the one that raised — whatever its ``__tracebackhide__``. On Python
3.9 and 3.10 a bare ``raise`` restores the traceback it caught, so there the entry point's own
frame stays (marked ``__tracebackhide__``), with everything below it cut.
"""

from __future__ import annotations

import functools
import sys
from types import TracebackType

PACKAGE = __name__.rpartition(".")[0]
# From Python 3.11 a bare ``raise`` re-raises with the exception's own (shortened) __traceback__;
# before, it restored the traceback as it was caught.
BARE_RAISE_KEEPS_TRACEBACK = sys.version_info >= (3, 11)


def is_ours(frame) -> bool:
    """Whether ``frame`` runs gradcheck's own code."""
    name = frame.f_globals.get("__name__", "")
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def without_our_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback ``tb`` with gradcheck's frames left out (the order of the others kept)."""
    kept = []
    while tb is not None:
        if not is_ours(tb.tb_frame):
            kept.append(tb)
        tb = tb.tb_next
    out = None
    for t in reversed(kept):
        out = TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return out


def _shorten(exc: BaseException) -> None:
    """Cut gradcheck's frames from ``exc`` and from the exceptions it was raised from or during."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = without_our_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


def student_facing(fn):
    """``fn`` raising with a traceback of the student's frames only (message and type unchanged)."""

    @functools.wraps(fn)
    def entry(*args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 - read by pytest (and IPython) to hide this frame
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised as it is, only its traceback is shortened
            _shorten(exc)
            if BARE_RAISE_KEEPS_TRACEBACK:
                raise  # records no new frame: the caller's is the innermost the student sees
            raise exc.with_traceback(exc.__traceback__)  # noqa: B904 - Python < 3.11: this frame stays, hidden

    return entry


def asserting(check):
    """``assert_*`` from ``check_*``: raise ``AssertionError`` with the result's message, else return None.

    nbgrader reads a truthy last expression of a test cell as partial credit: hence None.
    """

    def assert_(*args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 - read by pytest (and IPython) to hide this frame
        result = check(*args, **kwargs)
        if not result.passed:
            raise AssertionError(str(result))
        return None

    assert_.__name__ = check.__name__.replace("check_", "assert_")
    assert_.__qualname__ = assert_.__name__
    assert_.__module__ = check.__module__
    assert_.__doc__ = (
        f"Like :func:`{check.__name__}`, but raise ``AssertionError`` with the message on failure and return None."
    )
    return student_facing(assert_)
