"""Notebook helpers: atomic writes, nbgrader cell roles, solution and hidden-test regions."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

# cells and markers have one home, below both packages; the workflow reads them through here
from sandboxgrader.cells import (  # noqa: F401
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    CANONICAL,
    END_HIDDEN,
    END_SOLUTION,
    grade_id,
    is_answer,
    is_test,
    marker_problems,
    meta,
    points,
    regions,
    src,
)

# lines so generic that they may appear in a release legitimately (stubs, punctuation, `return x`)
TRIVIAL = re.compile(
    r"^(.{0,7}|pass|return \w+|raise NotImplementedError(\(\))?|# YOUR CODE HERE|YOUR ANSWER HERE"
    r"|[\[\](){}:,.\s]*|else:|try:|finally:|[\"']{3})$"
)


def read_nb(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def dumps_nb(nb: dict) -> str:
    """The layout Jupyter and nbformat write (indent 1, sorted keys)."""
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Temp file in the same folder + rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_nb(path: Path, nb: dict) -> None:
    write_atomic(path, dumps_nb(nb))


def drop_markers(text: str) -> str:
    """An answer as a perfect student would write it: the solution without the marker lines."""
    inside, _ = regions(text, BEGIN_SOLUTION, END_SOLUTION)
    keep = [line for line in text.split("\n") if BEGIN_SOLUTION not in line and END_SOLUTION not in line]
    return "\n".join(keep) if inside or keep else text


def secret_lines(source_nb: dict) -> dict[str, set[str]]:
    """Significant stripped lines that exist ONLY inside solution / hidden-test regions of the source.

    A line that also occurs outside those regions (a shared import, `return grad`) may legitimately be
    in the release, so it is not counted as secret.
    """
    sol, hid, public = set(), set(), set()
    for cell in source_nb["cells"]:
        text = src(cell)
        s_in, s_out = regions(text, BEGIN_SOLUTION, END_SOLUTION)
        h_in, h_out = regions("\n".join(s_out), BEGIN_HIDDEN, END_HIDDEN)
        sol.update(line.strip() for line in s_in)
        hid.update(line.strip() for line in h_in)
        public.update(line.strip() for line in h_out)

    def significant(lines):
        return {x for x in lines if x and not TRIVIAL.match(x) and x not in public}

    return {"solution": significant(sol), "hidden": significant(hid)}


def html_text(html: str) -> str:
    """Visible text of an nbconvert HTML page (code is split into pygments spans)."""
    import html as _html

    text = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", "", text)
    return _html.unescape(text)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """Student-chosen text for a terminal: control characters (ANSI escapes, carriage returns,
    bidi overrides) shown as escapes, so nothing can move the cursor or overwrite a line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def csv_safe(value):
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or tab / CR) gets a
    leading apostrophe (OWASP's CSV injection advice). Numbers are left alone."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value
