"""The kernel's Python as a runtime image at a neutral path: no host path of the repo or the venv.

A bind mount shows its source's path inside its filesystem in ``/proc/self/mountinfo`` (the 4th
field), whatever its destination: binding ``/work/course/.venv`` at ``/opt/venv`` still tells the
kernel ``/work/course/.venv``. So the sandbox binds sources whose own path says nothing: an image
at ``<mount point of the venv's filesystem>/.sandboxgrader/`` made of

- ``venv-<fingerprint>/venv``: hard links of the venv's files (same filesystem: no copy, built in
  about a second for 1.9 GB), except what names a host path -- ``bin/`` holds only the interpreter's
  link (the scripts' ``#!`` lines name the venv), ``pyvenv.cfg`` loses its ``command`` line, editable
  finders, ``.pth`` files and ``direct_url.json`` naming a host path are empty, and every compiled
  module (``.pyc``) is rewritten with ``co_filename`` under :data:`VENV_IN_SANDBOX` (they record the
  path they were compiled at), any other text file naming the venv (a kernelspec) names
  :data:`VENV_IN_SANDBOX` instead; ``blocked.py``, the ``__init__`` of a hidden module;
- ``course-<fingerprint>/<name>``: copies of the course packages (editable installs in the repo),
  compiled as if they lived in :data:`COURSE_IN_SANDBOX`.

An image is never changed once made: a change of the venv (any of its directories) or of a course
package (any file) gives a new fingerprint and a new image, built in a temporary folder and
renamed into place (two graders at once: one builds under a lock, the other waits and uses it).
Images of the same source that no grader uses any more (a shared ``flock`` marks use) are removed.
Where no image can be made (the venv's filesystem is read-only, no hard links), :func:`venv_image`
returns None with the reason, and the caller falls back to binding the host paths, with a warning.
"""

from __future__ import annotations

import compileall
import fcntl
import hashlib
import importlib.util
import marshal
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

VENV_IN_SANDBOX = "/opt/venv"  # the host's venv, seen under a neutral name
COURSE_IN_SANDBOX = "/opt/course"  # the course packages when they are editable installs in the repo
FORMAT = "3"  # the image layout: a change here makes every image anew
REPO = os.path.realpath(Path(__file__).resolve().parents[2])
BLOCKED = (
    "{name} is not available in this assignment's grading kernel: the task asks for it to be done "
    "by hand (see the assignment's rules)"
)

_lock = threading.Lock()  # one build at a time in this process (other processes: a flock)
_held: dict[str, object] = {}  # image path -> its open use lock (shared flock for our lifetime)
_cache: dict[tuple, str] = {}  # (kind, fingerprint) -> image path


class NoImage(RuntimeError):
    """No runtime image can be made here (the reason is the message)."""


def fs_root(path: str) -> str:
    """The mount point of the filesystem ``path`` is on (hard links cannot leave it)."""
    path = os.path.realpath(path)
    dev = os.stat(path).st_dev
    while path != "/" and os.stat(os.path.dirname(path)).st_dev == dev:
        path = os.path.dirname(path)
    return path


def images_root(source: str) -> str:
    return os.path.join(fs_root(source), ".sandboxgrader")


def venv_fingerprint(venv: str) -> str:
    """Changes when anything of the venv is added, removed or renamed (every directory's mtime:
    pip writes new files and renames; an in-place write needs no new image, the links share it)."""
    h = hashlib.sha256(f"{FORMAT} {sys.version} {os.path.realpath(venv)} {REPO}".encode())
    for d, dirs, _files in os.walk(venv):
        dirs.sort()
        st = os.stat(d)
        h.update(f"{os.path.relpath(d, venv)} {st.st_mtime_ns} {st.st_ino}\n".encode())
    for name in ("pyvenv.cfg",):
        st = os.stat(os.path.join(venv, name))
        h.update(f"{name} {st.st_mtime_ns} {st.st_size} {st.st_ino}\n".encode())
    return h.hexdigest()[:16]


def _quick(venv: str) -> tuple:
    """What pip always changes (site-packages gains or loses a folder): the key of this process's
    cache of :func:`venv_fingerprint` (a full walk, ~0.15 s for 1.9 GB, done once per change)."""
    paths = [venv, os.path.join(venv, "pyvenv.cfg"), os.path.join(venv, "bin")]
    paths += [str(p) for p in Path(venv).glob("lib*/python*/site-packages")]
    return tuple((p, os.stat(p).st_mtime_ns, os.stat(p).st_ino) for p in paths)


_fingerprints: dict[tuple, str] = {}


def course_fingerprint(packages: dict[str, str]) -> str:
    """Changes with any file of a course package (size, mtime, inode: editors write either way)."""
    h = hashlib.sha256(f"{FORMAT} {sys.version}".encode())
    for name, src in sorted(packages.items()):
        h.update(f"{name} {os.path.realpath(src)}\n".encode())
        for d, dirs, files in os.walk(src):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for f in sorted(files):
                st = os.stat(os.path.join(d, f))
                h.update(
                    f"{os.path.relpath(os.path.join(d, f), src)} {st.st_size} {st.st_mtime_ns} {st.st_ino}\n".encode()
                )
    return h.hexdigest()[:16]


def _replace(path: str, data: bytes) -> None:
    """New content under ``path`` without writing through a hard link into the venv itself."""
    tmp = path + ".sg-tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    if os.path.exists(path):
        shutil.copymode(path, tmp)
    else:
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _names_host_path(path: str, host: tuple) -> bool:
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
    except OSError:
        return False
    return any(h.encode() in data for h in host)


def _fix_code(co, old: str, new: str):
    consts = tuple(_fix_code(c, old, new) if isinstance(c, type(_fix_code.__code__)) else c for c in co.co_consts)
    fn = co.co_filename
    if fn == old or fn.startswith(old + os.sep):
        fn = new + fn[len(old) :]
    return co.replace(co_filename=fn, co_consts=consts)


def _rewrite_pycs(top: str, old: str, new: str) -> int:
    """Every compiled module under ``top`` names ``new`` instead of ``old`` (the header, with the
    source's mtime and size, stays valid: the sources are the same files)."""
    n = 0
    magic = importlib.util.MAGIC_NUMBER
    old_b = old.encode()
    for d, _, files in os.walk(top):
        for f in files:
            if not f.endswith(".pyc"):
                continue
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                data = fh.read()
            if old_b not in data:
                continue
            if data[:4] != magic:  # another Python's: useless here, and unreadable
                os.unlink(p)
                continue
            _replace(p, data[:16] + marshal.dumps(_fix_code(marshal.loads(data[16:]), old, new)))
            n += 1
    return n


def _sanitize_site(venv: str, host: tuple) -> None:
    """Empty what names a host path in site-packages: editable finders, .pth files, direct_url.json."""
    for sp in sorted({p.resolve() for p in Path(venv).glob("lib*/python*/site-packages")}):
        for entry in sorted(sp.iterdir()):
            name = entry.name
            if entry.is_file() and (name.startswith("__editable__") or name.endswith((".pth", ".egg-link"))):
                if name.startswith("__editable__") or _names_host_path(str(entry), host):
                    _replace(str(entry), b"")
            elif name.endswith(".dist-info") and (entry / "direct_url.json").exists():
                du = entry / "direct_url.json"
                if _names_host_path(str(du), host) or b'"editable": true' in du.read_bytes():
                    _replace(str(du), b"")
        for pyc in (sp / "__pycache__").glob("__editable__*.pyc"):  # compiled finders name the repo
            os.unlink(pyc)


def _scrub_files(top: str, venv: str, host: tuple) -> list[str]:
    """Every other file under ``top`` that names a host path: a text file gets ``venv`` replaced by
    :data:`VENV_IN_SANDBOX` (a kernelspec stays valid), or is emptied if it names another host path;
    a binary one is left alone (changing it could break a library) and returned, to be reported."""
    found = [h.encode() for h in host]
    binary = []
    for d, _, files in os.walk(top):
        for f in files:
            p = os.path.join(d, f)
            if f.endswith(".pyc") or os.path.islink(p) or not os.path.isfile(p) or os.path.getsize(p) == 0:
                continue
            with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
                if not any(m.find(h) >= 0 for h in found):
                    continue
                data = m[:] if len(m) < (1 << 20) else None
            try:
                text = data.decode() if data is not None else None
            except UnicodeDecodeError:
                text = None
            if text is None:
                binary.append(os.path.relpath(p, top))
                continue
            text = text.replace(venv, VENV_IN_SANDBOX)
            _replace(p, b"" if any(h in text for h in host) else text.encode())
    return binary


def _build_venv(tmp: str, venv: str, python: str) -> None:
    dest = os.path.join(tmp, "venv")
    subprocess.run(["cp", "-al", "--", venv, dest], check=True, capture_output=True)
    if os.stat(os.path.join(dest, "pyvenv.cfg")).st_ino != os.stat(os.path.join(venv, "pyvenv.cfg")).st_ino:
        raise NoImage("cp -al did not make hard links")
    shutil.rmtree(os.path.join(dest, "bin"))  # the scripts' #! lines name the host venv
    os.mkdir(os.path.join(dest, "bin"), 0o755)
    os.symlink(python, os.path.join(dest, "bin", "python"))
    cfg = os.path.join(dest, "pyvenv.cfg")
    with open(cfg) as fh:
        _replace(cfg, "".join(line for line in fh if not line.startswith("command")).encode())
    host = (os.path.realpath(venv), REPO)
    _sanitize_site(dest, host)
    _rewrite_pycs(dest, os.path.realpath(venv), VENV_IN_SANDBOX)
    binary = _scrub_files(dest, os.path.realpath(venv), host)
    if binary:
        print(f"sandboxgrader: WARNING: binary files of the venv name its host path: {binary[:10]}", file=sys.stderr)
    with open(os.path.join(tmp, "blocked.py"), "w") as fh:  # a hidden module's __init__.py
        fh.write(f"raise ImportError({BLOCKED!r}.format(name=__name__.partition('.')[0]))\n")
    os.chmod(os.path.join(tmp, "blocked.py"), 0o644)


def _build_course(tmp: str, packages: dict[str, str]) -> None:
    for name, src in packages.items():
        dest = os.path.join(tmp, name)
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        compileall.compile_dir(dest, ddir=f"{COURSE_IN_SANDBOX}/{name}", quiet=2, workers=1)


def _use(path: str, root: str) -> bool:
    """Hold a shared lock on the image for this process's life (cleanup skips images in use)."""
    if path in _held:
        return os.path.isdir(path)
    fh = open(os.path.join(root, os.path.basename(path) + ".inuse"), "a")
    fcntl.flock(fh, fcntl.LOCK_SH)
    if not os.path.isdir(path):  # removed before we held it
        fh.close()
        return False
    _held[path] = fh
    return True


def _cleanup(root: str, kind: str, source: str, keep: str) -> None:
    """Remove the images of ``kind`` that no process holds and that are this source's older ones
    or whose source is gone (a deleted checkout's)."""
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if not entry.startswith(kind + "-") or entry.endswith(".inuse") or path == keep:
            continue
        try:
            with open(os.path.join(path, "source")) as fh:
                theirs = fh.read()
        except OSError:
            continue
        if theirs != source and all(os.path.exists(p) for p in theirs.split(" ")):
            continue
        with open(path + ".inuse", "a") as lk:
            try:
                fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # in use by a grader
            shutil.rmtree(path, ignore_errors=True)
            os.unlink(path + ".inuse")


def _image(kind: str, fingerprint: str, anchor: str, source: str, build) -> str:
    """The image ``<root>/<kind>-<fingerprint>``: made if missing (in a temporary folder, renamed)."""
    key = (kind, fingerprint)
    with _lock:
        if key in _cache and os.path.isdir(_cache[key]):
            return _cache[key]
        root = images_root(anchor)
        try:
            os.makedirs(root, mode=0o711, exist_ok=True)
        except OSError as exc:
            raise NoImage(f"cannot create {root}: {exc}") from None
        path = os.path.join(root, f"{kind}-{fingerprint}")
        if not (os.path.isdir(path) and _use(path, root)):
            with open(os.path.join(root, ".build.lock"), "a") as lk:
                fcntl.flock(lk, fcntl.LOCK_EX)  # another grader may be making the same image
                for stale in os.listdir(root):  # a build killed half-way (builds run under this lock)
                    if stale.startswith((".venv-", ".course-")):
                        shutil.rmtree(os.path.join(root, stale), ignore_errors=True)
                if not os.path.isdir(path):
                    tmp = tempfile.mkdtemp(prefix=f".{kind}-{fingerprint}-", dir=root)
                    try:
                        build(tmp)
                        with open(os.path.join(tmp, "source"), "w") as fh:
                            fh.write(source)
                        os.chmod(tmp, 0o755)
                        os.rename(tmp, path)
                    except (OSError, subprocess.CalledProcessError, NoImage) as exc:
                        shutil.rmtree(tmp, ignore_errors=True)
                        if not os.path.isdir(path):
                            err = getattr(exc, "stderr", b"") or b""
                            raise NoImage(
                                f"cannot build {path}: {exc} {err.decode(errors='replace')}".strip()
                            ) from None
                if not _use(path, root):
                    raise NoImage(f"{path} vanished while in use")
                _cleanup(root, kind, source, path)
        _cache[key] = path
        return path


def venv_image(venv: str, python: str) -> str:
    """The venv image (``<image>/venv``, ``<image>/blocked.py``) for the venv as it is now."""
    venv = os.path.realpath(venv)
    quick = _quick(venv)
    if quick not in _fingerprints:
        _fingerprints[quick] = venv_fingerprint(venv)
    fp = _fingerprints[quick]
    return _image("venv", fp, venv, venv, lambda tmp: _build_venv(tmp, venv, python))


def course_image(packages: dict[str, str]) -> str:
    """Copies of the course packages (``<image>/<name>``), compiled for :data:`COURSE_IN_SANDBOX`."""
    anchor = next(iter(packages.values()))
    fp = course_fingerprint(packages)
    source = " ".join(os.path.realpath(p) for p in sorted(packages.values()))
    return _image("course", fp, anchor, source, lambda tmp: _build_course(tmp, packages))
