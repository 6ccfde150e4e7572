"""nbgrader's region markers, read by nbgrader's own rule: a line CONTAINING the delimiter.

nbgrader 0.9.6 (ClearSolutions, ClearHiddenTests) tests ``delimiter in line``, so ``# BEGIN HIDDEN
TESTS``, ``### BEGIN HIDDEN TESTS`` and ``#### BEGIN HIDDEN TESTS`` all open a region. A stricter
parser here would let a hidden test that nbgrader strips from the release run inside the student's
kernel. This is the one parser of the grader and of the course workflow (release checks, feedback
leak scan, student repository scan).
"""
from __future__ import annotations

import re

BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def regions(text: str, begin: str, end: str) -> tuple[list[str], list[str]]:
    """(lines inside begin/end regions, lines outside them); the marker lines are in neither."""
    inside, outside, on = [], [], False
    for line in text.split("\n"):
        if begin in line:
            on = True
        elif end in line:
            on = False
        else:
            (inside if on else outside).append(line)
    return inside, outside


def without_hidden(source: str) -> str:
    """A test cell as students see it: hidden regions and their marker lines removed."""
    return "\n".join(regions(source, BEGIN_HIDDEN, END_HIDDEN)[1])


def hidden_tail(source: str) -> str | None:
    """When the cell's only hidden region comes after every visible line, that region (else None)."""
    lines = source.split("\n")
    starts = [i for i, line in enumerate(lines) if BEGIN_HIDDEN in line]
    if len(starts) != 1:
        return None
    ends = [i for i, line in enumerate(lines) if END_HIDDEN in line and i > starts[0]]
    stop = ends[0] if ends else len(lines)
    if any(line.strip() for line in lines[stop + 1:]):
        return None
    return "\n".join(lines[starts[0] + 1:stop]) + "\n"


def replace_solutions(source: str, stub: str) -> str:
    """An answer cell as released: each solution region replaced by ``stub`` at the marker's indent."""
    out, on = [], False
    for line in source.split("\n"):
        if BEGIN_SOLUTION in line:
            on = True
            indent = re.match(r"\s*", line).group(0)
            out += [indent + s for s in stub.split("\n")]
        elif END_SOLUTION in line:
            on = False
        elif not on:
            out.append(line)
    return "\n".join(out)
