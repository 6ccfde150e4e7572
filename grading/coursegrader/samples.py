"""Sample submissions for CI, generated from the CURRENT release and the source's solutions.

Never hand-edited: each sample is the release with its answer cells filled from the source's solution
regions (markers dropped), then changed by a named mutation declared in grading/mutations.toml:

    [[hw1_matrix_gradients.sample]]
    name = "wrong_sign"              # student id becomes sample-wrong_sign
    cell = "grad_quadratic"          # grade_id of the answer cell to mutate
    kind = "wrong_sign"              # wrong_sign | transposed | wrong_shape | missing_term | replace
    expr = "(A + A.T) @ x"           # wrong_sign/transposed/wrong_shape: expression to change
    breaks = ["test_grad_quadratic"] # grade_ids of the test cells this must fail

`term` (missing_term: text removed) and `old`/`new` (replace) complete the other kinds. The target text
must occur exactly once in the answer, so a changed solution makes the generator fail loudly instead
of silently producing a sample that tests nothing. The EXPECTED score is the total of the test cells'
points minus the points of the `breaks` cells, read from the source notebook.

Built-in samples for every assignment: blank (the release as is: 0), solution (full), warns (solution
+ `warnings.warn` in every answer and in the functions it defines: full), dupe (solution + a
copy-pasted answer cell and test cell, i.e. duplicated grade_ids, + another test cell deleted: full,
the batch is not aborted and the deleted test is restored and run).
"""

from __future__ import annotations

import ast
import copy
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import nbutil
from .settings import Course

KINDS = ("wrong_sign", "transposed", "wrong_shape", "missing_term", "replace")
BUILTIN = ("blank", "solution", "warns", "dupe")
WARN_TEXT = "student debugging warning"


class SpecError(ValueError):
    pass


@dataclass
class Sample:
    assignment: str
    name: str
    notebooks: dict  # notebook file name -> notebook
    expected: float
    breaks: list = field(default_factory=list)
    note: str = ""

    @property
    def student(self) -> str:
        return f"sample-{self.name}"


def load_spec(path: Path) -> dict[str, list[dict]]:
    if not path.exists():
        return {}
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    out = {}
    for aid, body in data.items():
        samples = body.get("sample", []) if isinstance(body, dict) else []
        for s in samples:
            missing = {"name", "cell", "kind", "breaks"} - set(s)
            if missing:
                raise SpecError(f"{path.name} [{aid}] sample {s.get('name')!r}: missing {sorted(missing)}")
            if s["kind"] not in KINDS:
                raise SpecError(f"{path.name} [{aid}] {s['name']}: unknown kind {s['kind']!r} (one of {KINDS})")
            if s["name"] in BUILTIN or not re.fullmatch(r"[A-Za-z0-9_]+", s["name"]):
                raise SpecError(f"{path.name} [{aid}] {s['name']!r}: bad or reserved sample name")
        names = [s["name"] for s in samples]
        if len(names) != len(set(names)):
            raise SpecError(f"{path.name} [{aid}]: duplicated sample names")
        out[aid] = samples
    return out


def _once(text: str, needle: str, what: str) -> None:
    n = text.count(needle)
    if n != 1:
        raise SpecError(f"{what}: {needle!r} occurs {n} times in the answer (must be exactly once)")


def mutate(text: str, spec: dict, what: str = "mutation") -> str:
    """Apply one named mutation to an answer's source."""
    kind = spec["kind"]
    if kind in ("wrong_sign", "transposed", "wrong_shape"):
        expr = spec.get("expr")
        if not expr:
            raise SpecError(f"{what}: kind {kind} needs `expr`")
        _once(text, expr, what)
        new = {"wrong_sign": f"-({expr})", "transposed": f"({expr}).T", "wrong_shape": f"({expr})[..., None]"}[kind]
        return text.replace(expr, new)
    if kind == "missing_term":
        term = spec.get("term")
        if not term:
            raise SpecError(f"{what}: kind missing_term needs `term`")
        _once(text, term, what)
        return text.replace(term, "")
    old, new = spec.get("old"), spec.get("new")
    if old is None or new is None:
        raise SpecError(f"{what}: kind replace needs `old` and `new`")
    _once(text, old, what)
    return text.replace(old, new)


def answers(source_nb: dict) -> dict[str, str]:
    """grade_id -> the solution's answer (the source cell without its marker lines)."""
    return {nbutil.grade_id(c): nbutil.drop_markers(nbutil.src(c)) for c in source_nb["cells"] if nbutil.is_answer(c)}


def test_points(source_nb: dict) -> dict[str, float]:
    return {nbutil.grade_id(c): nbutil.points(c) for c in source_nb["cells"] if nbutil.is_test(c)}


def fill(release_nb: dict, filled: dict[str, str]) -> dict:
    nb = copy.deepcopy(release_nb)
    for cell in nb["cells"]:
        gid = nbutil.grade_id(cell)
        if nbutil.is_answer(cell) and gid in filled:
            cell["source"] = filled[gid]
    return nb


def add_warnings(text: str) -> str:
    """`warnings.warn` at the top of the answer AND as the first statement of each function it defines,
    so the warning also fires inside the test cells that call it."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    lines = text.split("\n")
    inserts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            line = lines[first.lineno - 1]
            indent = line[: len(line) - len(line.lstrip())]
            inserts.append((first.lineno - 1, f'{indent}warnings.warn("{WARN_TEXT} in {node.name}")'))
    for at, new in sorted(inserts, reverse=True):
        lines.insert(at, new)
    return f'import warnings\nwarnings.warn("{WARN_TEXT}")\n' + "\n".join(lines)


def _dupe(nb: dict) -> tuple[dict, str]:
    """Copy-paste the first answer cell and the first test cell (Lab copies the metadata, grade_id
    included, and gives a new cell id), and delete another test cell. Returns (notebook, deleted id)."""
    nb = copy.deepcopy(nb)
    for pick in (nbutil.is_answer, nbutil.is_test):
        for i, cell in enumerate(nb["cells"]):
            if pick(cell) and cell.get("cell_type") == "code":
                twin = copy.deepcopy(cell)
                twin["id"] = (str(cell.get("id", i)) + "-copy")[:64]
                nb["cells"].insert(i + 1, twin)
                break
    tests = [i for i, c in enumerate(nb["cells"]) if nbutil.is_test(c)]
    ids = [nbutil.grade_id(nb["cells"][i]) for i in tests]
    for i, gid in zip(tests, ids):
        if ids.count(gid) == 1:
            del nb["cells"][i]
            return nb, gid
    return nb, ""


def build(assignment: str, source_nbs: dict[str, dict], release_nbs: dict[str, dict], spec: list[dict]) -> list[Sample]:
    """All samples of one assignment. source_nbs / release_nbs: notebook file name -> notebook."""
    if set(source_nbs) != set(release_nbs):
        raise SpecError(
            f"{assignment}: release notebooks {sorted(release_nbs)} differ from the source's "
            f"{sorted(source_nbs)} (run `make release`)"
        )
    filled, pts, where = {}, {}, {}
    for name, snb in source_nbs.items():
        a = answers(snb)
        filled[name] = a
        for gid in a:
            where[gid] = name
        pts.update(test_points(snb))
    total = sum(pts.values())
    solution = {n: fill(release_nbs[n], filled[n]) for n in release_nbs}
    out = [
        Sample(assignment, "blank", copy.deepcopy(release_nbs), 0.0, list(pts), "the release as is"),
        Sample(assignment, "solution", solution, total, [], "answers from the source"),
    ]

    def warned(n):
        return {g: (add_warnings(t) if _is_code_answer(source_nbs[n], g) else t) for g, t in filled[n].items()}

    warns = {n: fill(release_nbs[n], warned(n)) for n in release_nbs}
    out.append(Sample(assignment, "warns", warns, total, [], "solution + warnings.warn in every answer"))
    first = sorted(solution)[0]
    pasted, deleted = _dupe(solution[first])
    out.append(
        Sample(
            assignment,
            "dupe",
            {**solution, first: pasted},
            total,
            [],
            f"solution + copy-pasted answer and test cells (duplicated grade_ids) + test cell {deleted} deleted",
        )
    )

    for s in spec:
        what = f"mutations.toml [{assignment}] {s['name']}"
        cell = s["cell"]
        if cell not in where:
            raise SpecError(f"{what}: no answer cell {cell!r} in the source")
        unknown = set(s["breaks"]) - set(pts)
        if unknown:
            raise SpecError(f"{what}: breaks unknown test cells {sorted(unknown)}")
        name = where[cell]
        changed = dict(filled[name])
        changed[cell] = mutate(changed[cell], s, what)
        nbs = {**solution, name: fill(release_nbs[name], changed)}
        expected = total - sum(pts[g] for g in set(s["breaks"]))
        out.append(Sample(assignment, s["name"], nbs, expected, sorted(set(s["breaks"])), s.get("note", s["kind"])))
    return out


def _is_code_answer(nb: dict, gid: str) -> bool:
    return any(nbutil.grade_id(c) == gid and c.get("cell_type") == "code" for c in nb["cells"])


def build_course(
    course: Course, release_dir: Path | None = None, spec_file: Path | None = None, assignments: list[str] | None = None
) -> list[Sample]:
    release_dir = Path(release_dir or course.release)
    spec_path = Path(spec_file or course.grading / "mutations.toml")
    spec = load_spec(spec_path)
    if assignments is None and set(spec) - set(course.assignments()):
        raise SpecError(f"{spec_path.name}: no assignment named {sorted(set(spec) - set(course.assignments()))}")
    out = []
    for aid in assignments or course.assignments():
        src = {p.name: nbutil.read_nb(p) for p in course.source_notebooks(aid)}
        rel = {p.name: nbutil.read_nb(p) for p in sorted((release_dir / aid).glob("*.ipynb"))}
        out += build(aid, src, rel, spec.get(aid, []))
    return out


def write(samples: list[Sample], submitted: Path, expected_file: Path | None = None) -> dict:
    """Write in nbgrader's submitted layout; returns (and optionally writes) the expected scores."""
    expected = {}
    for s in samples:
        for name, nb in s.notebooks.items():
            nbutil.write_nb(submitted / s.student / s.assignment / name, nb)
        expected[f"{s.assignment}/{s.student}"] = {"expected": s.expected, "breaks": s.breaks, "note": s.note}
    if expected_file is not None:
        nbutil.write_atomic(expected_file, json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return expected
