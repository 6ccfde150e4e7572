"""`make collect FROM=<zip or folder>`: LMS downloads -> grading/submitted/<student>/<id>/<notebook>.

Understood layouts, the table `LAYOUTS` (a zip or a folder; a zip a student uploaded is opened too):
  Moodle  `Ann Lee_12345_assignsubmission_file_/hw1_matrix_gradients.ipynb`  -> student `ann_lee`
  Canvas  `lee_12345_67890_hw1_matrix_gradients-1.ipynb` (also `lee_LATE_…`) -> student `lee`
  Plain   `<student>/<file>.ipynb` or `<student>/<assignment>/<file>.ipynb` (nbgrader's own layout)
A new LMS is one `Layout` subclass in `LAYOUTS` and one row in tests/test_grading_machinery.py.
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
import os
import re
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from . import nbutil
from .settings import Course

RESUBMIT = re.compile(r"(?:-(\d+)| \((\d+)\))$")  # Canvas `-1`, browsers ` (1)`
MAX_BYTES = 50_000_000  # one file (expanded)
MAX_EXPANDED = 2 * 2**30  # all files of one download, expanded (zip bombs)
MAX_MEMBERS = 20_000  # files in one download, zips inside it included


@dataclass
class Item:
    origin: str  # where it came from, for the report
    parts: tuple  # path parts relative to the download root
    blob: Path | None  # the file's bytes, spooled to a temp file (never all held in memory)
    mtime: dt.datetime
    student: str = ""
    lms_num: str = ""
    assignment: str = ""
    notebook: str = ""
    order: int = 0  # resubmission number from the file name
    status: str = ""  # collected | unchanged | duplicate | ignored | bad
    reason: str = ""
    notes: list = field(default_factory=list)
    upload: Item | None = None  # the uploaded zip this file came out of: its owner and LMS time count

    @property
    def data(self) -> bytes:
        return self.blob.read_bytes() if self.blob is not None else b""


def slug(name: str) -> str:
    """A student id usable as a folder and as an nbgrader glob: lowercase, `_` for spaces."""
    s = unicodedata.normalize("NFKC", name).strip().lower()
    s = re.sub(r"\s+", "_", s)
    s = re.sub(r"[^\w.\-]", "", s)
    return s.strip("._-") or "unknown"


class Layout:
    """How one LMS lays out a download. `student(parts)`: (student, LMS id) from the path parts of a
    file the LMS wrote, or None when the path is not this layout's; `stem(name)`: the file name the
    student uploaded (the LMS's decoration removed; name without extension); `student_folder(name)`:
    a top folder that is one student's (so never a wrapper to skip); `flat_file(name)`: a file name
    of a flat download (every file directly in one folder)."""

    def student(self, parts: tuple) -> tuple[str, str] | None:
        return None

    def stem(self, name: str) -> str:
        return name

    def student_folder(self, name: str) -> bool:
        return False

    def flat_file(self, name: str) -> bool:
        return False


class Moodle(Layout):
    """`Ann Lee_12345_assignsubmission_file_/<file>`: one folder per student, the LMS id in its name."""

    FOLDER = re.compile(r"^(?P<name>.+?)_(?P<num>\d+)_assign(?:submission|feedback)_\w*?_?$")

    def student(self, parts):
        m = self.FOLDER.match(parts[0]) if len(parts) >= 2 else None
        return (slug(m["name"]), m["num"]) if m else None

    def student_folder(self, name):
        return bool(self.FOLDER.match(name))


class Canvas(Layout):
    """`lee_12345_67890_<file>` (or `lee_LATE_…`), all in one folder: name, user id, submission id."""

    FILE = re.compile(r"^(?P<name>.+?)(?:_late)?_(?P<num>\d+)_(?P<sub>\d+)_(?P<file>.+)$", re.I)

    def student(self, parts):
        c = self.FILE.match(parts[-1]) if len(parts) == 1 else None
        return (slug(c["name"]), c["num"]) if c else None

    def stem(self, name):
        c = self.FILE.match(name)
        return c["file"] if c else name

    def flat_file(self, name):
        return bool(self.FILE.match(name))


class Plain(Layout):
    """`<student>/<file>` or nbgrader's own `<student>/<assignment>/<file>`: the folder is the student."""

    def student(self, parts):
        return (slug(parts[0]), "") if len(parts) >= 2 else None


LAYOUTS = (Moodle(), Canvas(), Plain())  # tried in this order: the first that knows the path wins


class Budget:
    """What one download may expand to (bytes, members), and where its files are spooled."""

    def __init__(self, spool: Path, max_bytes: int | None = None, max_members: int | None = None):
        self.spool = spool
        self.left = MAX_EXPANDED if max_bytes is None else max_bytes
        self.members_left = MAX_MEMBERS if max_members is None else max_members
        self.count = 0

    def new_file(self) -> Path:
        self.count += 1
        return self.spool / f"{self.count:06d}"


def _bad(origin: str, parts: tuple, when, reason: str, upload=None) -> Item:
    return Item(origin, parts, None, when, status="bad", reason=reason, upload=upload)


def _copy_capped(src, dest: Path, budget: Budget) -> str:
    """Stream ``src`` into ``dest``, at most MAX_BYTES and what is left of the budget; "" or why not."""
    got = 0
    with open(dest, "wb") as out:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                return ""
            got += len(chunk)
            budget.left -= len(chunk)
            if got > MAX_BYTES:
                return f"too large (more than {MAX_BYTES} bytes expanded)"
            if budget.left < 0:
                return f"the download expands to more than {MAX_EXPANDED} bytes (a zip bomb?): not read"
            out.write(chunk)


def _zip_items(path: Path, origin: str, prefix: tuple, depth: int, budget: Budget, upload=None) -> list[Item]:
    out = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = f"{origin}!{info.filename}"
            parts = prefix + tuple(p for p in info.filename.split("/") if p)
            if info.is_dir():
                continue
            budget.members_left -= 1
            if budget.members_left < 0:
                out.append(
                    _bad(
                        name,
                        parts,
                        dt.datetime.now(),
                        f"more than {MAX_MEMBERS} files in the download: not read",
                        upload,
                    )
                )
                break
            try:
                when = dt.datetime(*info.date_time)
            except (TypeError, ValueError):
                when = None  # a corrupt date: the upload's (LMS) time still counts, else refused
            if upload is not None:
                when = upload.mtime
            if when is None:
                out.append(_bad(name, parts, dt.datetime.now(), f"invalid date {info.date_time} in the zip"))
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                out.append(_bad(name, parts, when, "a symbolic link: refused", upload))
                continue
            if info.file_size > MAX_BYTES:
                out.append(_bad(name, parts, when, f"too large ({info.file_size} bytes)", upload))
                continue
            dest = budget.new_file()
            try:
                with zf.open(info) as src:
                    why = _copy_capped(src, dest, budget)
            except (
                RuntimeError,
                NotImplementedError,
                zipfile.BadZipFile,
                zlib.error,
                OSError,
                EOFError,
                ValueError,
            ) as exc:  # encrypted, unsupported compression, corrupt member
                why = "cannot be read from the zip: " + _zip_error(exc)
            if why:
                dest.unlink(missing_ok=True)
                out.append(_bad(name, parts, when, why, upload))
                if budget.left < 0:
                    break
                continue
            out += _expand(Item(name, parts, dest, when, upload=upload), depth, budget)
    return out


def _zip_error(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, RuntimeError) and "encrypted" in text:
        return "encrypted (password-protected)"
    if isinstance(exc, NotImplementedError):
        return f"unsupported compression ({text[:80]})"
    return f"corrupt ({type(exc).__name__}: {text[:120]})"


def _expand(item: Item, depth: int, budget: Budget) -> list[Item]:
    """Open a zip (one a student uploaded) in place of the item. Its files belong to the uploader
    and take the upload's LMS time, whatever their own names and dates say."""
    with open(item.blob, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PK\x03\x04" and depth < 2:
        try:
            return _zip_items(item.blob, item.origin, item.parts[:-1], depth + 1, budget, upload=item.upload or item)
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, RuntimeError, NotImplementedError) as exc:
            item.status, item.reason = "bad", f"corrupt zip ({type(exc).__name__})"
    return [item]


def scan(source: Path, budget: Budget) -> list[Item]:
    source = Path(source)
    if source.is_dir():
        items = []
        for folder, dirs, files in os.walk(source, followlinks=False):
            dirs.sort()
            for name in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(folder, d))):
                p = Path(folder, name)
                parts = p.relative_to(source).parts
                st = p.lstat()
                when = dt.datetime.fromtimestamp(st.st_mtime)
                if stat.S_ISLNK(st.st_mode):  # e.g. a link to solutions/: never filed as a submission
                    items.append(_bad(str(p), parts, when, "a symbolic link: refused"))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    items.append(_bad(str(p), parts, when, "not a regular file"))
                    continue
                budget.members_left -= 1
                if st.st_size > MAX_BYTES or budget.members_left < 0:
                    items.append(
                        _bad(
                            str(p),
                            parts,
                            when,
                            "too large" if st.st_size > MAX_BYTES else f"more than {MAX_MEMBERS} files: not read",
                        )
                    )
                    continue
                dest = budget.new_file()
                try:
                    with open(p, "rb") as src:
                        why = _copy_capped(src, dest, budget)
                except OSError as exc:
                    why = f"cannot be read ({exc.strerror})"
                if why:
                    items.append(_bad(str(p), parts, when, why))
                    continue
                items += _expand(Item(str(p), parts, dest, when), 0, budget)
    elif source.is_file():
        with open(source, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise ValueError(f"{source}: expected an LMS download (a .zip or a folder), got a single file")
        try:
            items = _zip_items(source, str(source), (), 0, budget)
        except (zipfile.BadZipFile, zlib.error, OSError, RuntimeError, NotImplementedError) as exc:
            raise ValueError(f"{source}: corrupt zip ({type(exc).__name__}: {str(exc)[:120]})") from None
    else:
        raise FileNotFoundError(f"{source}: no such file or folder")
    if not items:
        raise ValueError(f"{source}: no files in it")
    return items


def strip_wrapper(items: list[Item], assignment_ids: set[str]) -> None:
    """Drop one top folder shared by every file when it is not itself a student folder
    (a student folder holds Moodle names or nbgrader's <student>/<assignment>/ layout)."""
    uploads = list({id(i.upload): i.upload for i in items if i.upload is not None}.values())
    # the layout is the LMS's: judged on what the LMS wrote (an uploaded zip, not what is inside it)
    live = [i for i in uploads + [i for i in items if i.upload is None] if not _junk(i.parts)]
    tops = {i.parts[0] for i in live}
    if not live or len(tops) != 1 or any(lay.student_folder(next(iter(tops))) for lay in LAYOUTS):
        return
    flat = any(all(len(i.parts) == 2 and lay.flat_file(i.parts[1]) for i in live) for lay in LAYOUTS)
    nested = all(len(i.parts) >= 3 for i in live) and not any(i.parts[1] in assignment_ids for i in live)
    if flat or nested:
        for i in items + uploads:
            if i.parts and i.parts[0] in tops and len(i.parts) > 1:
                i.parts = i.parts[1:]


def _junk(parts: tuple) -> bool:
    return any(p == "__MACOSX" or p.startswith("._") or p in (".DS_Store", "Thumbs.db") for p in parts)


def _who(item: Item) -> None:
    """The student: from the path the LMS wrote. A file out of an uploaded zip belongs to the
    uploader, whatever its own name says (a zip must not file work under another student's name)."""
    if item.upload is not None:
        owner = item.upload
        if not owner.student and not owner.status:
            _who(owner)
        if owner.status or not owner.student:
            item.status, item.reason = "bad", "cannot tell the student from the uploaded zip's path"
        else:
            item.student, item.lms_num = owner.student, owner.lms_num
            item.notes.append(f"from {owner.student}'s upload {owner.parts[-1]} (its LMS time counts)")
        return
    for layout in LAYOUTS:
        found = layout.student(item.parts)
        if found:
            item.student, item.lms_num = found
            return
    item.status, item.reason = "bad", "cannot tell the student from the path"


def _stem(name: str) -> tuple[str, int]:
    """File name -> (normalised stem, resubmission number)."""
    base = name
    for ext in (".json", ".txt", ".ipynb"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
    for layout in LAYOUTS:  # the first layout that decorated the name
        if layout.stem(base) != base:
            base = layout.stem(base)
            break
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
        try:
            _classify(item, catalog)
        except Exception as exc:  # noqa: BLE001 - one malformed file is reported; the class goes on
            item.status, item.reason = "bad", f"cannot be read ({type(exc).__name__}: {str(exc)[:120]})"


def _classify(item: Item, catalog: Catalog) -> None:
    if item.status:
        return
    if _junk(item.parts):
        item.status, item.reason = "ignored", "macOS/Windows metadata"
        return
    _who(item)
    if item.status:
        return
    try:
        nb = json.loads(item.data.decode("utf-8-sig"))
    except RecursionError:
        item.status, item.reason = "bad", "JSON nested too deeply (not a notebook)"
        return
    except (UnicodeDecodeError, ValueError):
        item.status, item.reason = "bad", "not JSON (not a notebook)"
        return
    if not (isinstance(nb, dict) and isinstance(nb.get("cells"), list) and nb.get("nbformat") == 4):
        item.status, item.reason = "bad", "JSON but not a Jupyter notebook (nbformat 4)"
        return
    content, named = catalog.by_content(nb), catalog.by_name(item.parts)
    hit = content or named
    if hit is None:
        item.status, item.reason = "bad", "unknown assignment (neither the cells nor the name match)"
        return
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
    with tempfile.TemporaryDirectory(prefix="collect-") as spool:
        return _collect(course, source, Budget(Path(spool)), dry_run)


def _collect(course: Course, source: Path, budget: Budget, dry_run: bool) -> list[Item]:
    items = scan(Path(source), budget)
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
    return when.astimezone(dt.UTC)


def _stamp(path: Path) -> dt.datetime | None:
    try:
        text = path.read_text().strip().removesuffix("UTC").strip()
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.UTC)
    except (OSError, ValueError):
        return None


def write_report(course: Course, items: list[Item]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["status", "student", "assignment", "notebook", "origin", "reason"])
    for i in items:
        w.writerow(
            [i.status, i.student, i.assignment, i.notebook, i.origin, "; ".join([i.reason] + i.notes).strip("; ")]
        )
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
            lines.append(f"  {i.status.upper():9s} {nbutil.terminal_safe(i.origin)}: {nbutil.terminal_safe(why)}")
    return "\n".join(lines)
