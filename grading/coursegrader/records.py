"""Grade results and the gradebook: the record of each graded submission, written once.

`GradeResult` is one submission's outcome; `record` merges results into
grading/reports/autograde.json and `load_records` reads it back (autograde writes, feedback and
grades read); `ensure_gradebook` records an assignment in nbgrader's gradebook from its source.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from . import nbutil
from .converters import run
from .settings import Course


@dataclass
class GradeResult:
    assignment: str
    student: str
    ok: bool  # nbgrader produced an autograded notebook
    score: float  # auto score (manual grades count once a grader has given them)
    max_score: float
    seconds: float
    problem: str = ""  # "", "kernel died", "kernel unresponsive", "error: ..."
    cells: dict = field(default_factory=dict)  # grade_id -> [score or None, max]

    @property
    def key(self) -> str:
        return f"{self.assignment}/{self.student}"


def ensure_gradebook(course: Course, assignment: str) -> None:
    """A fresh clone has no gradebook: record the assignment from its source (release not rewritten)."""
    from nbgrader.api import MissingEntry
    from nbgrader.converters import GenerateAssignment
    from traitlets.config import Config

    with course.gradebook() as gb:
        try:
            a = gb.find_assignment(assignment)
            if a.notebooks:
                return
        except MissingEntry:
            pass
    extra = Config()
    extra.CourseDirectory.release_directory = "grading/.work/release"
    r = run(course, GenerateAssignment, assignment, ".", extra=extra)
    if not r.success:
        raise RuntimeError(f"cannot record {assignment} in the gradebook:\n{r.error[-2000:]}")


def record(course: Course, results: list[GradeResult]) -> None:
    """Merge into grading/reports/autograde.json (latest run of each submission wins)."""
    path = course.reports / "autograde.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    for r in results:
        data[r.key] = asdict(r)
    nbutil.write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_records(course: Course) -> dict[str, dict]:
    path = course.reports / "autograde.json"
    return json.loads(path.read_text()) if path.exists() else {}
