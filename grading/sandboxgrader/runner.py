"""Grade one submission: the student's answers in the sandbox, every verdict in the grader.

The notebook that is run is rebuilt from the instructor's source: markdown, instructor code and
test cells come from ``solutions/`` (so deleted, edited or re-pointed test cells are restored),
answer cells and any cells the student added come from the submission. Cells run in order in
the sandboxed kernel (test cells in their visible, released form — hidden tests never enter the
student's kernel). At each test cell the grader runs the same visible tests, then the hidden
ones, in its own process against proxies of the student's names: that trusted run decides the
points. Where the notebook's own run and the trusted run disagree, the submission is flagged.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass, field

import nbformat
from nbgrader.utils import compute_checksum

from . import inert
from .cells import STUB, hidden_tail, is_answer, is_test, replace_solutions, src, without_hidden
from .cells import meta as nbmeta  # (the functions below name their locals `meta`)
from .session import CellRun, Session
from .trusted import TrustedRunner


def visible_part(source: str) -> str:
    """A test cell as students see it: hidden tests removed (by nbgrader's own marker rule)."""
    return without_hidden(source)


def stub_of(source: str, stub: str = STUB) -> str:
    """An answer cell as released: the solution replaced by the stub (``c.ClearSolutions.code_stub``)."""
    return replace_solutions(source, stub)


_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])|\b(?:nan|inf)\b")
# numpy's assertion messages print both arrays and their differences after these lines
_NUMPY_DETAIL = re.compile(
    r"^\s*(Mismatched elements|Max absolute difference|Max relative difference|x:|y:|"
    r"ACTUAL:|DESIRED:|\(shapes|x and y nan location mismatch)",
    re.M,
)


def visible_message(err: str) -> str:
    """A visible test's error, as it was (its inputs are in the release), capped."""
    return err[:4000]


def hidden_message(err: str, grade_id: str) -> str:
    """A hidden test's error without what it knows: numpy's array dumps cut, every number masked.

    The message still says which check failed (its own words), so a student can act on it; the
    expected values, the hidden inputs and anything a student function returned stay in the grader.
    """
    ename, _, evalue = err.partition(": ")
    m = _NUMPY_DETAIL.search(evalue)
    if m:
        evalue = evalue[: m.start()]
    evalue = _NUMBER.sub("…", " ".join(evalue.split()))[:300]
    return f"{ename or 'Error'}: a hidden test of {grade_id} failed: {evalue or ename}"


@dataclass
class TestVerdict:
    grade_id: str
    points: float
    passed: bool
    score: float
    message: str = ""
    notebook_passed: bool | None = None
    seconds: float = 0.0


@dataclass
class ManualCell:
    """An answer graded by hand (a written answer with points): 0 if left as released."""

    grade_id: str
    points: float
    unchanged: bool


@dataclass
class Result:
    student: str
    assignment: str
    notebook: str
    verdicts: list = field(default_factory=list)
    manual: list = field(default_factory=list)
    flags: list = field(default_factory=list)
    nb: object = None
    seconds: float = 0.0
    calls: int = 0
    call_seconds: float = 0.0
    error: str = ""  # set when the submission could not be graded in full: NOT graded

    @property
    def score(self) -> float:
        return sum(v.score for v in self.verdicts)

    @property
    def max_score(self) -> float:
        return sum(v.points for v in self.verdicts) + sum(m.points for m in self.manual)

    def to_dict(self) -> dict:
        """The one record a worker sends its parent (plain JSON): every field, the notebook as
        text, the score and its maximum."""
        d = {k: v for k, v in self.__dict__.items() if k != "nb"}
        d["verdicts"] = [asdict(v) for v in self.verdicts]
        d["manual"] = [asdict(m) for m in self.manual]
        d["nb"] = nbformat.writes(self.nb) if self.nb is not None else None
        d["score"], d["max_score"] = self.score, self.max_score
        return d

    @classmethod
    def failed(cls, student: str, assignment: str, notebook: str, message: str, seconds: float = 0.0) -> Result:
        """A job the grader could not grade: no verdicts, NOT graded (``error``), flagged."""
        return cls(student, assignment, notebook, flags=[f"grader error: {message}"], seconds=seconds, error=message)


def key_of(cell):
    """How a cell is matched between source and submission: its grade_id, else its cell id."""
    gid = nbmeta(cell).get("grade_id")
    if isinstance(gid, str) and gid:
        return gid
    cid = cell.get("id")
    return ("id", cid if isinstance(cid, str) else None)


def merge(source_nb, submission_nb, flags: list, stub: str = STUB):
    """The cells to run: instructor cells from the source, answers and extra cells from the student."""
    by_id, seen, extras = {}, set(), {None: []}
    anchor = None
    source_ids = [key_of(c) for c in source_nb.cells]
    cells_in = submission_nb.get("cells") if isinstance(submission_nb.get("cells"), list) else []
    for n, cell in enumerate(cells_in):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            flags.append(f"cell {n} of the submission is malformed: ignored")
            continue
        if not isinstance(cell.get("metadata"), dict):  # (a list in a hand-edited file)
            cell["metadata"] = nbformat.from_dict({})
        gid = key_of(cell)
        if gid in source_ids and gid not in seen:
            seen.add(gid)
            by_id[gid] = cell
            anchor = gid
        else:
            if gid in seen and isinstance(gid, str):
                flags.append(f"duplicate grade_id {gid!r} (a copied cell): the copy runs as an ordinary cell")
            elif isinstance(gid, str):
                flags.append(f"unknown grade_id {gid!r}: runs as an ordinary cell")
            if cell["cell_type"] == "code":
                extra = nbformat.v4.new_code_cell(src(cell))
                extra["id"] = f"student-{n}"
                extra.metadata["student_cell"] = True  # student code: runs only in the sandbox
                extras.setdefault(anchor, []).append(extra)
    cells = list(extras[None])
    for scell in source_nb.cells:
        gid = key_of(scell)
        mine = by_id.get(gid)
        cell = copy.deepcopy(scell)
        if is_answer(scell):
            if mine is None:
                flags.append(f"answer cell {gid!r} missing: restored blank")
                cell.source = stub_of(src(scell), stub) if scell["cell_type"] == "code" else ""
            else:
                cell.source = src(mine)
                if nbmeta(mine).get("checksum"):  # the release's: tells an untouched answer
                    cell.metadata["nbgrader"]["checksum"] = nbmeta(mine)["checksum"]
        elif is_test(scell):
            if mine is None:
                flags.append(f"test cell {gid!r} missing or its metadata stripped: restored and run")
            elif visible_part(src(scell)).strip() != visible_part(src(mine)).strip():
                flags.append(f"test cell {gid!r} edited: restored and run")
            elif nbmeta(mine).get("points") != nbmeta(scell).get("points"):
                flags.append(f"points of test cell {gid!r} changed: restored")
        cells.append(cell)
        cells.extend(extras.get(gid, []))
    return cells


def budget_flags(session: Session) -> list[str]:
    """What the kernel tree's budgets stopped (read from its cgroups), as flags."""
    use, lim = session.usage(), session.limits
    out = []
    if use["oom_kill"]:
        out.append(
            f"memory budget of the kernel ({lim.memory / 2**30:g} GiB, all its processes) exhausted: "
            f"{use['oom_kill']} process(es) killed"
        )
    if use["pids_max"]:
        out.append(f"process budget of the kernel ({lim.processes}) exhausted: {use['pids_max']} fork(s) refused")
    if use["left_running"]:
        out.append(f"processes left running after a call (busy children, a bomb): {use['left_running']} killed")
    if use["too_large"]:
        out.append(
            f"output too large: {use['too_large']} time(s) a message above {lim.message_bytes / 2**20:g} MiB "
            "(or a flood of them) was refused"
        )
    if use["home_full"]:
        out.append(f"disk budget of the kernel's home ({lim.home_size / 2**20:g} MiB) filled")
    return out


def grade(
    session: Session,
    source_nb,
    submission_nb,
    *,
    student: str,
    assignment: str,
    notebook: str,
    cell_timeout: float = 30,
    call_timeout: float = 30,
    budget: float | None = None,
    stub: str = STUB,
) -> Result:
    """Run the submission in ``session`` (a started sandbox) and compute every verdict in-process.

    ``budget``: seconds the submission's code may take in all (cells and calls; restarting the
    kernel and replaying earlier cells after a bomb are on nobody's clock), and CPU seconds of
    the kernel tree are bounded by ``session.limits.cpu_seconds``. A submission that exhausts
    either is not graded (``Result.error``): the rest of its tests are not run.
    """
    t0 = time.monotonic()
    res = Result(student, assignment, notebook)
    cells = merge(source_nb, submission_nb, res.flags, stub)
    trusted = TrustedRunner(session, call_timeout=call_timeout)
    history: list[str] = []  # code that ran in the sandbox, replayed after a restart
    count = 0
    generation = [session.restarts]
    cell_seconds = [0.0]
    pending: list = []  # test cells: [cell, notebook passed, visible verdict, error, seconds, grader names]

    def spent() -> float:
        """Time the submission's code took: its cells and the grader's calls into it (not restarts,
        replays, or the grader's own work, which depend on the machine's load, not on the student)."""
        return cell_seconds[0] + trusted.call_seconds

    def left(timeout: float) -> float:
        """The step's timeout, cut to what is left of the budget."""
        return timeout if budget is None else max(0.5, min(timeout, budget - spent()))

    def exhausted() -> str:
        if budget is not None and spent() >= budget:
            return f"time budget of {budget:g} s exhausted"
        if session.cpu_seconds() > session.limits.cpu_seconds:
            return f"CPU budget of {session.limits.cpu_seconds} s (whole kernel tree) exhausted"
        return ""

    def ensure_alive():
        """After the kernel died or was restarted (timeouts), rebuild the student's state."""
        if not session.kernel.alive():
            session.restart()
        if session.restarts != generation[0]:
            for code in history:
                session.run_cell(code, timeout=cell_timeout, store_history=False)
            generation[0] = session.restarts

    for cell in cells:
        why = exhausted()
        if why:
            if not res.error:
                tests = [nbmeta(c).get("grade_id") for c in cells[cells.index(cell) :] if is_test(c)]
                res.error = f"{why} at cell {count + 1}: not graded ({len(tests)} test(s) not run)"
                res.flags.insert(0, res.error)  # first: it is why the submission is not graded
            if is_test(cell):
                meta = nbmeta(cell)
                res.verdicts.append(
                    TestVerdict(meta["grade_id"], float(meta.get("points", 0) or 0), False, 0.0, f"not run: {why}")
                )
            continue
        if is_answer(cell) and nbmeta(cell).get("grade"):
            checksum = nbmeta(cell).get("checksum")
            res.manual.append(
                ManualCell(
                    nbmeta(cell)["grade_id"],
                    float(nbmeta(cell).get("points", 0) or 0),
                    bool(checksum) and compute_checksum(cell) == checksum,
                )
            )
        if cell["cell_type"] != "code":
            continue
        count += 1
        meta = nbmeta(cell)
        full = src(cell)
        code = visible_part(full) if is_test(cell) else full
        ensure_alive()
        run: CellRun = session.run_cell(code, timeout=left(cell_timeout))
        cell_seconds[0] += run.seconds
        cell.outputs = [nbformat.from_dict(o) for o in run.outputs]
        cell.execution_count = count
        if not is_test(cell) and (
            run.status in ("ok", "error") or (run.status == "timeout" and session.restarts == generation[0])
        ):
            history.append(code)  # a dead or killed cell is not replayed (its state is lost), nor a test
        if run.status == "dead":
            res.flags.append(f"kernel died in cell {count} ({meta.get('grade_id') or 'student cell'}): restarted")
            cell.outputs.append(
                nbformat.v4.new_output(
                    "error", ename="DeadKernelError", evalue=run.evalue, traceback=[f"DeadKernelError: {run.evalue}"]
                )
            )
        elif run.status == "timeout":
            res.flags.append(
                f"cell {count} ({meta.get('grade_id') or 'student cell'}) timed out after "
                f"{cell_timeout:.0f} s: interrupted"
            )
            cell.outputs.append(
                nbformat.v4.new_output(
                    "error", ename="TimeoutError", evalue=run.evalue, traceback=[f"TimeoutError: {run.evalue}"]
                )
            )
        if run.too_large:
            res.flags.append(
                f"cell {count} ({meta.get('grade_id') or 'student cell'}): output too large "
                f"(a message above {session.limits.message_bytes / 2**20:g} MiB, or a flood): refused"
            )
        elif run.truncated:
            res.flags.append(f"cell {count} printed too much: output truncated")
        if not is_test(cell):
            if not is_answer(cell) and not cell.metadata.get("student_cell"):
                trusted.budget = None if budget is None else budget - spent()
                trusted.run(full, f"instructor {meta.get('grade_id', count)}")
            continue
        # the trusted verdict of the visible tests, in the grader, where the notebook stands
        ensure_alive()
        t1 = time.monotonic()
        trusted.budget = None if budget is None else budget - spent()
        ok_visible, _, err = trusted.run(code, f"test {meta['grade_id']}")
        pending.append(
            [
                cell,
                run.status == "ok",
                ok_visible,
                err,
                time.monotonic() - t1,
                trusted.snapshot() if ok_visible and full != code else None,
            ]
        )
    # Hidden tests only after the last student cell: no student cell can see what they passed in, and
    # nothing the kernel prints from here on is shown (calls print into the agent's sink).
    for item in pending:
        cell, notebook_passed, ok_visible, err, seconds, snapshot = item
        meta, full = nbmeta(cell), src(cell)
        ok = ok_visible
        why = exhausted() if snapshot is not None else ""
        if why:
            if not res.error:
                res.error = f"{why} before the hidden tests: not graded"
                res.flags.insert(0, res.error)
            ok, err = False, f"not run: {why}"
        elif snapshot is not None:  # the grader's names as they were after this cell's visible tests
            trusted.restore(snapshot)
            tail = hidden_tail(full)
            ensure_alive()
            t1 = time.monotonic()
            trusted.budget = None if budget is None else budget - spent()
            ok, _, hidden_err = trusted.run(tail if tail is not None else full, f"hidden {meta['grade_id']}")
            seconds += time.monotonic() - t1
            if not ok:
                err = hidden_err
                spent_all = exhausted()  # the call was cut to what was left of the budget
                if spent_all and not res.error:
                    res.error = f"{spent_all} in the hidden tests: not graded"
                    res.flags.insert(0, res.error)
        points = float(meta.get("points", 0) or 0)
        if err.split(":")[0] in (
            "CallTimeout",
            "OutputFlood",
            "KernelDied",
            "MemoryError",
            "WireError",
            "BlockingIOError",
        ):
            res.flags.append(f"test {meta['grade_id']!r}: {err[:160]}")
        shown = visible_message(err)
        if ok_visible and not ok and not why:  # a hidden test failed: its name and message, not its values
            shown = hidden_message(err, meta["grade_id"])
        res.verdicts.append(
            TestVerdict(meta["grade_id"], points, ok, points if ok else 0.0, shown, notebook_passed, seconds)
        )
        if notebook_passed != ok_visible:
            res.flags.append(
                f"test {meta['grade_id']!r}: the notebook's own run {'passed' if notebook_passed else 'failed'}"
                f" but the trusted run {'passed' if ok_visible else 'failed'} — the trusted verdict counts"
                + (" (tampering suspected)" if notebook_passed else "")
            )
        # what the student sees: the notebook's outputs, then the grader's verdict
        cell.outputs = [
            o
            for o in cell.outputs
            if o.get("output_type") != "error" and not (o.get("output_type") == "stream" and o.get("name") == "stderr")
        ]
        if ok:
            cell.outputs.append(
                nbformat.v4.new_output(
                    "stream", name="stdout", text=f"[grader] passed: {points:g} / {points:g} points\n"
                )
            )
        else:
            ename, _, evalue = shown.partition(": ")
            cell.outputs.append(
                nbformat.v4.new_output(
                    "error", ename=ename or "Error", evalue=evalue[:4000], traceback=[f"{ename}: {evalue[:4000]}"]
                )
            )
    for cell in cells:  # what anyone will see of the student's work: text and verified images only
        inert.cell(cell, student_markdown=is_answer(cell) or bool(cell.metadata.get("student_cell")))
        if cell["cell_type"] == "code":
            cell.outputs = [nbformat.from_dict(o) for o in cell.outputs]
    if session.reaped:
        res.flags.append(f"runaway processes (a fork bomb?): {session.reaped} killed")
    session.sync_output()  # (a message refused during the hidden tests counts too)
    why = exhausted()  # (spent in the last tests: the budget counts to the end)
    if why and not res.error:
        res.error = f"{why} by the end of the tests: not graded"
        res.flags.insert(0, res.error)
    res.flags += budget_flags(session)
    res.nb = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(source_nb.metadata))
    res.calls, res.call_seconds = trusted.calls, trusted.call_seconds
    res.seconds = time.monotonic() - t0
    return res
