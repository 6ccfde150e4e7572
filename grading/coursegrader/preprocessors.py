"""nbgrader preprocessors of the course, each closing one measured hole of plain nbgrader 0.9.6.

Referenced by name from grading/nbgrader_config.py, so the plain `nbgrader` CLI uses them too.

- SanitizeGradeIds: a copy-pasted cell duplicates its `grade_id`; nbgrader's DeduplicateIds then leaves
  `nbgrader: {}` metadata and the WHOLE batch aborts (SchemaTooOldError). Here the extra copies become
  ordinary cells (the last copy keeps the id, as in nbgrader), and ids unknown to the gradebook are
  dropped instead of failing that student.
- RestoreMissingTests: a deleted test cell would give "no grade" (needs manual grading). It is put
  back from the gradebook (hidden part included) where the release had it, and run.
- ShortTracebacks (feedback): tracebacks quote the frames of hidden tests even after
  ClearHiddenTests; every error is reduced to `ename: evalue`.
- RefuseUnsandboxed (autograde's exporter): formgrader's Autograde button and `nbgrader autograde` would run the
  student's notebook unsandboxed, as the server's user, with solutions/ and the gradebook in reach.
  They refuse with a message pointing at `make autograde` (the sandboxed grader writes what
  formgrader then shows); `--RefuseUnsandboxed.allow=True` is the explicit, trusted-code-only escape.
- InertOutputs (feedback): only text and verified images of any graded notebook reach a page.
- kernel_arguments(): the grading kernel writes warnings to stdout (nbgrader scores a test cell with
  ANY stderr as 0, so a correct answer that calls `warnings.warn` would lose the points).
"""

from __future__ import annotations

import json
import os
import re

from nbconvert.exporters import NotebookExporter
from nbformat.notebooknode import from_dict
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Integer, Unicode

from sandboxgrader import inert
from sandboxgrader.cells import grade_id, meta, without_hidden

RESTORED_NOTE = "# (restored by the grader: this test cell was missing from the submission)\n"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Runs once in the grading kernel before any student code, in its own namespace (no names leak into
# the student's globals). Warnings and logging records go to stdout instead of stderr.
KERNEL_SETUP = (
    "import sys as _s, warnings as _w, logging as _l\n"
    "def _show(message, category, filename, lineno, file=None, line=None):\n"
    "    _s.stdout.write(_w.formatwarning(message, category, filename, lineno, line))\n"
    "_w.showwarning = _show\n"
    "_l.basicConfig(stream=_s.stdout, format='%(levelname)s:%(name)s:%(message)s')\n"
)


def kernel_arguments() -> list[str]:
    """Extra arguments of the grading kernel (nbclient passes them to ipykernel)."""
    return [
        "--HistoryManager.hist_file=:memory:",
        "--IPKernelApp.log_level=ERROR",
        "--IPKernelApp.exec_lines=exec(" + json.dumps(KERNEL_SETUP) + ", {})",
    ]


def _drop_nbgrader(cell) -> None:
    cell.metadata.pop("nbgrader", None)
    for key in ("deletable", "editable"):
        cell.metadata.pop(key, None)


class SanitizeGradeIds(NbGraderPreprocessor):
    """Keep one cell per grade_id (the last, like nbgrader) and drop ids the gradebook does not know."""

    def preprocess(self, nb, resources):
        known = None
        info = resources.get("nbgrader", {})
        if info.get("db_url"):
            try:
                with Gradebook(info["db_url"]) as gb:
                    notebook = gb.find_notebook(info["notebook"], info["assignment"])
                    known = {c.name for c in notebook.source_cells}
            except MissingEntry:
                known = None
        seen = set()
        for cell in reversed(nb.cells):
            m, gid = meta(cell), grade_id(cell)
            if not (m.get("grade") or m.get("solution") or m.get("locked") or m.get("task")):
                continue
            if not gid:
                self.log.warning("nbgrader cell without grade_id: metadata dropped")
                _drop_nbgrader(cell)
            elif gid in seen:
                self.log.warning("Cell with id '%s' exists multiple times: extra copy kept as a plain cell", gid)
                _drop_nbgrader(cell)
            elif known is not None and gid not in known:
                self.log.warning("Cell id '%s' is not in the gradebook: kept as a plain cell", gid)
                _drop_nbgrader(cell)
            else:
                seen.add(gid)
        return nb, resources


def _release_path(preprocessor, assignment_id: str, notebook_id: str) -> str | None:
    """The release notebook, found through the converter that owns this preprocessor's exporter."""
    obj = preprocessor
    for _ in range(4):
        obj = getattr(obj, "parent", None)
        coursedir = getattr(obj, "coursedir", None)
        if coursedir is not None:
            folder = coursedir.format_path(coursedir.release_directory, ".", assignment_id)
            return os.path.join(folder, notebook_id + ".ipynb")
    return None


class RestoreMissingTests(NbGraderPreprocessor):
    """Put deleted test cells back (position from the release, source from the gradebook)."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_notebook(info["notebook"], info["assignment"])
            solutions = {c.name for c in notebook.solution_cells}
            sources = {c.name: c for c in notebook.source_cells}
            tests = {g.name: g for g in notebook.grade_cells if g.cell_type == "code" and g.name not in solutions}
            present = {grade_id(c) for c in nb.cells} - {None}
            missing = [k for k in tests if k not in present]
            if not missing:
                return nb, resources
            order = self._release_order(info)
            missing.sort(key=lambda k: order.index(k) if k in order else len(order))
            for gid in missing:
                src = sources[gid]
                cell = self._matching_plain_cell(nb, without_hidden(src.source))
                if cell is None:
                    cell = from_dict(
                        {
                            "cell_type": "code",
                            "execution_count": None,
                            "outputs": [],
                            "id": ("restored-" + re.sub(r"[^A-Za-z0-9_-]", "-", gid))[:64],
                            "metadata": {},
                            "source": "",
                        }
                    )
                    nb.cells.insert(self._position(nb, gid, order), cell)
                    self.log.warning("Missing test cell %s: restored from the gradebook", gid)
                else:
                    self.log.warning("Test cell %s had lost its metadata: restored", gid)
                cell.metadata["deletable"] = False
                cell.metadata["editable"] = False
                cell.metadata["nbgrader"] = {
                    "grade": True,
                    "grade_id": gid,
                    "locked": True,
                    "solution": False,
                    "points": float(tests[gid].max_score),
                    "schema_version": 3,
                    "checksum": src.checksum,
                }
                cell.source = RESTORED_NOTE + src.source
                cell.outputs, cell.execution_count = [], None
        return nb, resources

    def _release_order(self, info) -> list[str]:
        path = _release_path(self, info["assignment"], info["notebook"])
        if not path or not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as fh:
            release = json.load(fh)
        return [g for g in (grade_id(c) for c in release["cells"]) if g]

    @staticmethod
    def _matching_plain_cell(nb, visible: str):
        for cell in nb.cells:
            if (
                cell.cell_type == "code"
                and grade_id(cell) is None
                and cell.source.strip() == visible.strip()
                and visible.strip()
            ):
                return cell
        return None

    @staticmethod
    def _position(nb, gid: str, order: list[str]) -> int:
        """After the nearest earlier cell of the release still present, else before the nearest later one,
        else at the end (tests after every answer is the safe default)."""
        index = {g: i for i, g in enumerate(grade_id(c) for c in nb.cells) if g}
        if gid in order:
            k = order.index(gid)
            for g in reversed(order[:k]):
                if g in index:
                    return index[g] + 1
            for g in order[k + 1 :]:
                if g in index:
                    return index[g]
        return len(nb.cells)


class ShortTracebacks(NbGraderPreprocessor):
    """Reduce every error output to `ename: evalue` (ANSI colours removed, value capped)."""

    max_chars = Integer(600, help="longest error message kept").tag(config=True)
    note = Unicode("", help="text appended to each shortened traceback").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            value = ANSI.sub("", str(out.get("evalue", "")))
            if len(value) > self.max_chars:
                value = value[: self.max_chars] + " …"
            line = f"{out.get('ename', 'Error')}: {value}" if value else str(out.get("ename", "Error"))
            out["evalue"] = value
            out["traceback"] = [line + self.note]
        return cell, resources


UNSANDBOXED = (
    "refused: nbgrader's own autograde (formgrader's Autograde button, `nbgrader autograde`) would run "
    "the student's code unsandboxed, as the server's user, with solutions/ and the gradebook in reach. "
    "Grade with the course's sandboxed grader instead: `make autograde` (or `make autograde "
    "ASSIGNMENT=<id>`) from the repository root; formgrader then shows its results. Only for code "
    "you trust: --RefuseUnsandboxed.allow=True."
)


class RefuseUnsandboxed(NotebookExporter):
    """Autograde's exporter (``c.Autograde.exporter_class``): built when the converter starts, before
    nbgrader removes any earlier autograded folder or runs anything, so a refusal loses nothing."""

    allow = Bool(False, help="run nbgrader's unsandboxed autograde anyway (trusted code only)").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.allow:
            raise RuntimeError(UNSANDBOXED)


class InertOutputs(NbGraderPreprocessor):
    """Every output reduced to plain text and verified images (see sandboxgrader/inert.py)."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            cell.outputs = [from_dict(o) for o in inert.outputs(cell.get("outputs"))]
        return cell, resources
