"""`make collect FROM=exchange`: nbgrader's filesystem exchange (the course's JupyterHub) ->
grading/submitted/<student>/<assignment>/, like an LMS download, then `make autograde` as usual.

The exchange is `$EXCHANGE` or `[hub] exchange` of course.toml; the course id is `[course] id`.
Students' `nbgrader submit` leaves `<exchange>/<course>/inbound/<student>+<assignment>+<UTC time>+<random>/`
(the notebooks, timestamp.txt, submission_secret.txt). What nbgrader documents is kept: the LATEST
submission of each student and assignment is collected (older ones are reported as duplicates),
with its timestamp.txt (autograde computes late penalties from it) and its submission secret
(`nbgrader release_feedback` names the feedback page after it, so only that student finds it).

Collect runs as root and the inbound folder is writable by every student, so nothing in it is
trusted more than nbgrader trusts it, and less where nbgrader is lax:
- a submission whose folder is not owned by the student it names is refused (nbgrader only warns);
- symlinks, devices and oversized files are never followed or copied;
- the submission time is the one claimed in the folder name, unless the folder or a file in it was
  changed later than that (a backdated or edited submission): then the time of that change.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import stat
import tempfile
import tomllib
from pathlib import Path

from . import nbutil
from .collect import MAX_BYTES, Item, _stamp, write_report
from .settings import Course

# nbgrader's submit writes the timestamp first, then copies: its folder may change a little later.
SLACK = dt.timedelta(minutes=10)
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"
MAX_FILES = 200


def exchange_root(course: Course) -> tuple[Path, str]:
    """(exchange root, course id) from $EXCHANGE and the course's course.toml."""
    with open(course.root / "course.toml", "rb") as fh:
        toml = tomllib.load(fh)
    try:
        course_id = toml["course"]["id"]
        root = os.environ.get("EXCHANGE") or toml["hub"]["exchange"]
    except KeyError as exc:
        raise ValueError(
            f"{course.root / 'course.toml'}: missing {exc} (needs [course] id and [hub] exchange)"
        ) from None
    inbound = Path(root) / course_id / "inbound"
    if not inbound.is_dir():
        raise FileNotFoundError(
            f"{inbound}: no inbound folder (has anything been released and submitted "
            f"on the hub? set EXCHANGE=<folder> for another exchange)"
        )
    return Path(root), course_id


def parse_name(name: str) -> tuple[str, str, dt.datetime] | None:
    """`<student>+<assignment>+<timestamp>[+<random>]` -> (student, assignment, UTC time)."""
    parts = name.split("+")
    if len(parts) not in (3, 4) or not parts[0] or not parts[1]:
        return None
    try:
        when = dt.datetime.strptime(parts[2].replace(" UTC", "").strip(), "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None
    return parts[0], parts[1], when.replace(tzinfo=dt.UTC)


def _read_tree(folder: Path) -> tuple[dict[str, bytes], list[str], dt.datetime]:
    """Regular files under `folder` (never through a symlink), what was skipped, the latest ctime."""
    files, skipped = {}, []
    latest = dt.datetime.fromtimestamp(os.lstat(folder).st_ctime, dt.UTC)
    stack = [folder]
    while stack:
        here = stack.pop()
        for entry in sorted(os.scandir(here), key=lambda e: e.name):
            st = entry.stat(follow_symlinks=False)
            rel = Path(entry.path).relative_to(folder).as_posix()
            latest = max(latest, dt.datetime.fromtimestamp(st.st_ctime, dt.UTC))
            if stat.S_ISDIR(st.st_mode):
                stack.append(Path(entry.path))
            elif not stat.S_ISREG(st.st_mode):
                skipped.append(f"{rel} (not a regular file)")
            elif st.st_size > MAX_BYTES:
                skipped.append(f"{rel} (too large: {st.st_size} bytes)")
            elif len(files) >= MAX_FILES:
                skipped.append(f"{rel} (more than {MAX_FILES} files)")
            else:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as fh:
                    files[rel] = fh.read(MAX_BYTES + 1)[:MAX_BYTES]
    return files, skipped, latest


def _owner(st: os.stat_result) -> str:
    try:
        return pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        return f"uid {st.st_uid}"


def scan(inbound: Path, assignments: set[str]) -> list[Item]:
    items = []
    for entry in sorted(os.scandir(inbound), key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        item = Item(entry.path, (entry.name,), b"", dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))
        items.append(item)
        parsed = parse_name(entry.name)
        if not stat.S_ISDIR(st.st_mode):
            item.status, item.reason = "bad", "not a submission folder"
        elif parsed is None:
            item.status, item.reason = "bad", "not named <student>+<assignment>+<time>+<random>"
        elif parsed[1] not in assignments:
            item.student, item.assignment = parsed[0], parsed[1]
            item.status, item.reason = "bad", f"unknown assignment {parsed[1]!r}"
        elif _owner(st) != parsed[0]:
            item.student, item.assignment = parsed[0], parsed[1]
            item.status = "bad"
            item.reason = f"claims to be by {parsed[0]!r} but the folder belongs to {_owner(st)!r}"
        else:
            item.student, item.assignment, item.mtime = parsed
    return items


def collect_exchange(course: Course, dry_run: bool = False) -> list[Item]:
    root, course_id = exchange_root(course)
    items = scan(root / course_id / "inbound", set(course.assignments()))
    groups = {}
    for i in items:
        if not i.status:
            groups.setdefault((i.student, i.assignment), []).append(i)
    for (sid, aid), group in sorted(groups.items()):
        group.sort(key=lambda i: (i.mtime, i.origin), reverse=True)
        keep = group[0]
        for older in group[1:]:
            older.status = "duplicate"
            older.reason = f"an earlier submission of {sid}/{aid}; the latest is collected"
        _collect_one(course, keep, dry_run)
    if not dry_run:
        write_report(course, items)
    return items


def _collect_one(course: Course, item: Item, dry_run: bool) -> None:
    files, skipped, changed = _read_tree(Path(item.origin))
    item.notes += [f"skipped {s}" for s in skipped]
    when = item.mtime
    if changed > when + SLACK:
        item.notes.append(
            f"claims {when:%Y-%m-%d %H:%M} UTC but was changed at {changed:%Y-%m-%d %H:%M} UTC: that time counts"
        )
        when = changed
    notebooks = sorted(n for n in files if n.endswith(".ipynb") and "/" not in n)
    if not notebooks:
        item.status, item.reason = "bad", "no notebook in the submission"
        return
    item.notebook = ", ".join(notebooks)
    files["timestamp.txt"] = (when.strftime(STAMP_FORMAT) + "\n").encode()
    target = course.submitted / item.student / item.assignment
    earlier = _stamp(target / "timestamp.txt") if target.is_dir() else None
    if target.is_dir() and _same(target, files):
        item.status, item.reason = "unchanged", str(target.relative_to(course.root))
        return
    if earlier is not None and earlier > when:
        item.status = "duplicate"
        item.reason = f"older than the copy collected before ({earlier:%Y-%m-%d %H:%M} UTC), which is kept"
        return
    item.status = "collected"
    item.reason = str(target.relative_to(course.root)) + (" (replaced)" if target.exists() else "")
    if not dry_run:
        _replace_dir(target, files)


def _same(target: Path, files: dict[str, bytes]) -> bool:
    have = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    return have == set(files) and all((target / n).read_bytes() == data for n, data in files.items())


def _replace_dir(target: Path, files: dict[str, bytes]) -> None:
    """Build the new submission folder next to the old one, then swap: never half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        for name, data in files.items():
            nbutil.write_atomic(tmp / name, data)
        os.chmod(tmp, 0o755)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
