"""Notebook cells and nbgrader's markers: the one vocabulary of the grader and of the course workflow.

A cell's source, its nbgrader metadata and role (`src`, `meta`, `grade_id`, `is_test`,
`is_answer`, `points`), and nbgrader's region markers read by nbgrader's own rule: a line
CONTAINING the delimiter. nbgrader 0.9.6 (ClearSolutions, ClearHiddenTests) tests ``delimiter in
line``, so ``# BEGIN HIDDEN TESTS``, ``### BEGIN HIDDEN TESTS`` and ``#### BEGIN HIDDEN TESTS`` all
open a region. A stricter parser here would let a hidden test that nbgrader strips from the release
run inside the student's kernel. This is the one parser of the grader and of the course workflow
(release checks, feedback leak scan, student repository scan); `release.lint` accepts only the
canonical spelling (`CANONICAL`) in `solutions/`, so the tolerant rule never has to decide.

The delimiters and the stub are nbgrader's own settings (`ClearSolutions`, `ClearHiddenTests`):
their defaults here, the course's ``c.ClearSolutions.code_stub`` through `code_stub(config)`.
"""

from __future__ import annotations

import re

from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

BEGIN_SOLUTION = ClearSolutions.begin_solution_delimeter.default_value  # "BEGIN SOLUTION"
END_SOLUTION = ClearSolutions.end_solution_delimeter.default_value  # "END SOLUTION"
BEGIN_HIDDEN = ClearHiddenTests.begin_test_delimeter.default_value  # "BEGIN HIDDEN TESTS"
END_HIDDEN = ClearHiddenTests.end_test_delimeter.default_value  # "END HIDDEN TESTS"
DELIMITERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
# the one spelling of a marker line in solutions/ (release.lint): three hashes, nothing else on the line
CANONICAL = tuple(f"### {d}" for d in DELIMITERS)


def src(cell) -> str:
    """A cell's source as text; whatever a hand-edited file holds there (a number, null) reads as ""."""
    s = cell.get("source", "") if isinstance(cell, dict) else ""
    if isinstance(s, list):
        return "".join(x for x in s if isinstance(x, str))
    return s if isinstance(s, str) else ""


def meta(cell) -> dict:
    """The cell's nbgrader metadata ({} when absent or not a dict)."""
    m = cell.get("metadata") if isinstance(cell, dict) else None
    m = m.get("nbgrader") if isinstance(m, dict) else None
    return m if isinstance(m, dict) else {}


def grade_id(cell) -> str | None:
    """The nbgrader grade_id, only if it is a string (a list or a number is no id)."""
    g = meta(cell).get("grade_id")
    return g if isinstance(g, str) else None


def is_answer(cell) -> bool:
    """An answer cell (nbgrader's ``solution``: the student writes it)."""
    return bool(meta(cell).get("solution"))


def is_test(cell) -> bool:
    """An autograder test cell: a graded code cell that is not an answer cell."""
    m = meta(cell)
    return isinstance(cell, dict) and cell.get("cell_type") == "code" and bool(m.get("grade")) and not m.get("solution")


def points(cell) -> float:
    """The cell's points (0 when absent or not a number)."""
    try:
        return float(meta(cell).get("points", 0) or 0)
    except (TypeError, ValueError):
        return 0.0


def code_stub(config=None, language: str = "python") -> str:
    """What replaces a solution region: ``c.ClearSolutions.code_stub[language]`` of ``config`` (a
    traitlets Config, e.g. the course's), else nbgrader's default, as nbgrader's ClearSolutions does."""
    stubs = dict(ClearSolutions.code_stub.default())
    if config is not None and "ClearSolutions" in config and "code_stub" in config.ClearSolutions:
        given = config.ClearSolutions.code_stub
        stubs.update(given if isinstance(given, dict) else {"python": given})  # (nbgrader's old form)
    return stubs[language]


STUB = code_stub()  # nbgrader's default python stub: "# YOUR CODE HERE\nraise NotImplementedError()"


def marker_problems(text: str) -> list[str]:
    """Marker lines not spelled exactly as `CANONICAL` (nbgrader would still read them as markers)."""
    return [line for line in text.split("\n") if any(d in line for d in DELIMITERS) and line.strip() not in CANONICAL]


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
    if any(line.strip() for line in lines[stop + 1 :]):
        return None
    return "\n".join(lines[starts[0] + 1 : stop]) + "\n"


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
