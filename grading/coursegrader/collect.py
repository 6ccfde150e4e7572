"""`make collect FROM=<zip or folder>`: LMS downloads -> grading/submitted/<student>/<id>/<notebook>.

Understood layouts (a zip or a folder; a zip a student uploaded is opened too):
  Moodle  `Ann Lee_12345_assignsubmission_file_/hw1_matrix_gradients.ipynb`  -> student `ann_lee`
  Canvas  `lee_12345_67890_hw1_matrix_gradients-1.ipynb` (also `lee_LATE_…`) -> student `lee`
  plain   `<student>/<file>.ipynb` or `<student>/<assignment>/<file>.ipynb` (nbgrader's own layout)
A single top-level folder wrapping everything is skipped. Two LMS ids with the same name get
`<name>_<id>` (reported).

The assignment (and notebook) is recognised by CONTENT first: the nbgrader grade_ids of the cells,
compared with every release notebook, so `Copy of hw1 (2).ipynb` from Colab is found; the file name
is the fallback when the metadata is gone. Every file ends up in the report: collected, unchanged,
duplicate (older copy of the same student's notebook; the newest is kept), ignored (macOS metadata)
or bad (not JSON, not a notebook, unknown assignment, no student) — nothing is dropped silently.
Writes are atomic; the LMS time of the kept file goes to timestamp.txt (nbgrader reads it for late
penalties). Report: printed, and grading/reports/collect.csv.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import nbutil
from .settings import Course

MOODLE = re.compile(r"^(?P<name>.+?)_(?P<num>\d+)_assign(?:submission|feedback)_\w*?_?$")
CANVAS = re.compile(r"^(?P<name>.+?)(?:_late)?_(?P<num>\d+)_(?P<sub>\d+)_(?P<file>.+)$", re.I)
RESUBMIT = re.compile(r"(?:-(\d+)| \((\d+)\))$")  # Canvas `-1`, browsers ` (1)`
MAX_BYTES = 50_000_000


@dataclass
class Item:
    origin: str                 # where it came from, for the report
    parts: tuple                # path parts relative to the download root
    data: bytes
    mtime: dt.datetime
    student: str = ""
    lms_num: str = ""
    assignment: str = ""
    notebook: str = ""
    order: int = 0              # resubmission number from the file name
    status: str = ""            # collected | unchanged | duplicate | ignored | bad
    reason: str = ""
    notes: list = field(default_factory=list)


def slug(name: str) -> str:
    """A student id usable as a folder and as an nbgrader glob: lowercase, `_` for spaces."""
    s = unicodedata.normalize("NFKC", name).strip().lower()
    s = re.sub(r"\s+", "_", s)
    s = re.sub(r"[^\w.\-]", "", s)
    return s.strip("._-") or "unknown"


def _zip_items(data: bytes, origin: str, prefix: tuple, depth: int) -> list[Item]:
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            parts = prefix + tuple(p for p in info.filename.split("/") if p)
            when = dt.datetime(*info.date_time)
            if info.file_size > MAX_BYTES:
                out.append(Item(f"{origin}!{info.filename}", parts, b"", when, status="bad",
                                reason=f"too large ({info.file_size} bytes)"))
                continue
            blob = zf.read(info)
            out += _expand(Item(f"{origin}!{info.filename}", parts, blob, when), depth)
    return out


def _expand(item: Item, depth: int) -> list[Item]:
    """Open a zip (the download, or one a student uploaded) in place of the item."""
    if item.data[:4] == b"PK\x03\x04" and depth < 2:
        try:
            return _zip_items(item.data, item.origin, item.parts[:-1], depth + 1)
        except zipfile.BadZipFile:
            item.status, item.reason = "bad", "corrupt zip"
    return [item]


def scan(source: Path) -> list[Item]:
    source = Path(source)
    if source.is_dir():
        items = []
        for p in sorted(source.rglob("*")):
            if p.is_file():
                parts = p.relative_to(source).parts
                when = dt.datetime.fromtimestamp(p.stat().st_mtime)
                if p.stat().st_size > MAX_BYTES:
                    items.append(Item(str(p), parts, b"", when, status="bad", reason="too large"))
                    continue
                items += _expand(Item(str(p), parts, p.read_bytes(), when), 0)
    elif source.is_file():
        data = source.read_bytes()
        if data[:4] != b"PK\x03\x04":
            raise ValueError(f"{source}: expected an LMS download (a .zip or a folder), got a single file")
        try:
            items = _zip_items(data, str(source), (), 0)
        except zipfile.BadZipFile:
            raise ValueError(f"{source}: corrupt zip") from None
    else:
        raise FileNotFoundError(f"{source}: no such file or folder")
    if not items:
        raise ValueError(f"{source}: no files in it")
    return items


def strip_wrapper(items: list[Item], assignment_ids: set[str]) -> None:
    """Drop one top folder shared by every file when it is not itself a student folder
    (a student folder holds Moodle names or nbgrader's <student>/<assignment>/ layout)."""
    live = [i for i in items if not _junk(i.parts)]
    tops = {i.parts[0] for i in live}
    if not live or len(tops) != 1 or MOODLE.match(next(iter(tops))):
        return
    flat_canvas = all(len(i.parts) == 2 and CANVAS.match(i.parts[1]) for i in live)
    nested = all(len(i.parts) >= 3 for i in live) and not any(i.parts[1] in assignment_ids for i in live)
    if flat_canvas or nested:
        for i in items:
            if i.parts and i.parts[0] in tops and len(i.parts) > 1:
                i.parts = i.parts[1:]


def _junk(parts: tuple) -> bool:
    return any(p == "__MACOSX" or p.startswith("._") or p in (".DS_Store", "Thumbs.db") for p in parts)


def _who(item: Item) -> None:
    parts = item.parts
    m = MOODLE.match(parts[0]) if len(parts) >= 2 else None
    if m:
        item.student, item.lms_num = slug(m["name"]), m["num"]
        return
    c = CANVAS.match(parts[-1]) if len(parts) == 1 else None
    if c:
        item.student, item.lms_num = slug(c["name"]), c["num"]
        return
    if len(parts) >= 2:
        item.student = slug(parts[0])
        return
    item.status, item.reason = "bad", "cannot tell the student from the path"


def _stem(name: str) -> tuple[str, int]:
    """File name -> (normalised stem, resubmission number)."""
    base = name
    for ext in (".json", ".txt", ".ipynb"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
    c = CANVAS.match(base)
    if c:
        base = c["file"]
    order = 0
    m = RESUBMIT.search(base)
    if m:
        order = int(m.group(1) or m.group(2))
        base = base[: m.start()]
    base = re.sub(r"^(copy of |копия )", "", base.strip(), flags=re.I)
    return base.strip().lower().replace(" ", "_"), order


class Catalog:
    """Every release notebook of the course: (assignment, notebook file) and its grade_ids."""

    def __init__(self, course: Course):
        self.entries = []
        for aid in course.assignments():
            nbs = course.release_notebooks(aid) or course.source_notebooks(aid)
            for p in nbs:
                ids = {nbutil.grade_id(c) for c in nbutil.read_nb(p)["cells"]} - {None}
                self.entries.append((aid, p.name, ids))

    def by_content(self, nb: dict) -> tuple[str, str] | None:
        ids = {nbutil.grade_id(c) for c in nb.get("cells", []) if isinstance(c, dict)} - {None}
        if not ids:
            return None
        best = max(self.entries, key=lambda e: (len(ids & e[2]), -len(e[2] ^ ids)), default=None)
        if best is None or not ids & best[2]:
            return None
        return best[0], best[1]

    def by_name(self, parts: tuple) -> tuple[str, str] | None:
        stem, _ = _stem(parts[-1])
        folders = [p.lower() for p in parts[:-1]]
        for aid, name, _ in sorted(self.entries, key=lambda e: -len(Path(e[1]).stem)):
            nbstem = Path(name).stem.lower()
            if stem == nbstem or nbstem in stem:
                return aid, name
        for aid, name, _ in self.entries:  # the only notebook of an assignment folder
            if aid.lower() in folders and sum(e[0] == aid for e in self.entries) == 1:
                return aid, name
        return None


def classify(items: list[Item], catalog: Catalog) -> None:
    for item in items:
        if item.status:
            continue
        if _junk(item.parts):
            item.status, item.reason = "ignored", "macOS/Windows metadata"
            continue
        _who(item)
        if item.status:
            continue
        try:
            nb = json.loads(item.data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            item.status, item.reason = "bad", "not JSON (not a notebook)"
            continue
        if not (isinstance(nb, dict) and isinstance(nb.get("cells"), list) and nb.get("nbformat") == 4):
            item.status, item.reason = "bad", "JSON but not a Jupyter notebook (nbformat 4)"
            continue
        content, named = catalog.by_content(nb), catalog.by_name(item.parts)
        hit = content or named
        if hit is None:
            item.status, item.reason = "bad", "unknown assignment (neither the cells nor the name match)"
            continue
        if content and named and content != named:
            item.notes.append(f"named like {named[0]}/{named[1]} but its cells are {content[0]}")
        if not content:
            item.notes.append("no nbgrader metadata: recognised by file name only")
        item.assignment, item.notebook = hit
        item.order = _stem(item.parts[-1])[1]


def _disambiguate(items: list[Item]) -> None:
    nums = {}
    for i in items:
        if i.student and i.lms_num:
            nums.setdefault(i.student, set()).add(i.lms_num)
    for i in items:
        if i.student in nums and len(nums[i.student]) > 1:
            i.notes.append(f"several LMS ids named {i.student!r}: id {i.student}_{i.lms_num}")
            i.student = f"{i.student}_{i.lms_num}"


def collect(course: Course, source: Path, dry_run: bool = False) -> list[Item]:
    if str(source) == "exchange":  # nbgrader's exchange of the course's JupyterHub (hub/README.md)
        from .exchange import collect_exchange
        return collect_exchange(course, dry_run=dry_run)
    items = scan(Path(source))
    catalog = Catalog(course)
    strip_wrapper(items, {e[0] for e in catalog.entries})
    classify(items, catalog)
    _disambiguate([i for i in items if not i.status])
    groups = {}
    for i in items:
        if not i.status:
            groups.setdefault((i.student, i.assignment, i.notebook), []).append(i)
    for (sid, aid, name), group in sorted(groups.items()):
        group.sort(key=lambda i: (i.mtime, i.order, i.origin), reverse=True)
        keep = group[0]
        for older in group[1:]:
            older.status = "duplicate"
            older.reason = f"older copy of {sid}/{aid}/{name}; kept {keep.origin}"
        target = course.submitted / sid / aid / name
        earlier = _stamp(target.parent / "timestamp.txt") if target.exists() else None
        if earlier is not None and earlier > _utc(keep.mtime) and target.read_bytes() != keep.data:
            keep.status = "duplicate"
            keep.reason = f"older than the copy collected before ({earlier:%Y-%m-%d %H:%M} UTC), which is kept"
            continue
        if target.exists() and target.read_bytes() == keep.data:
            keep.status, keep.reason = "unchanged", str(target.relative_to(course.root))
            continue
        keep.status = "collected"
        keep.reason = str(target.relative_to(course.root)) + (" (replaced)" if target.exists() else "")
        if not dry_run:
            nbutil.write_atomic(target, keep.data)
            stamp = _utc(keep.mtime).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
            nbutil.write_atomic(target.parent / "timestamp.txt", stamp + "\n")
    if not dry_run:
        write_report(course, items)
    return items


def _utc(when: dt.datetime) -> dt.datetime:
    """LMS times are local, naive: read them as this machine's local time."""
    return when.astimezone(dt.timezone.utc)


def _stamp(path: Path) -> dt.datetime | None:
    try:
        text = path.read_text().strip().removesuffix("UTC").strip()
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)
    except (OSError, ValueError):
        return None


def write_report(course: Course, items: list[Item]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["status", "student", "assignment", "notebook", "origin", "reason"])
    for i in items:
        w.writerow([i.status, i.student, i.assignment, i.notebook, i.origin,
                    "; ".join([i.reason] + i.notes).strip("; ")])
    path = course.reports / "collect.csv"
    nbutil.write_atomic(path, buf.getvalue())
    return path


def report(items: list[Item]) -> str:
    counts = {}
    for i in items:
        counts[i.status] = counts.get(i.status, 0) + 1
    lines = ["collect: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]
    for i in items:
        if i.status in ("bad", "duplicate", "ignored") or i.notes:
            why = "; ".join([i.reason] + i.notes).strip("; ")
            lines.append(f"  {i.status.upper():9s} {i.origin}: {why}")
    return "\n".join(lines)
