"""The sandboxed kernel learns no host path of the repository, of the venv or of the grader's work root
(issue 10: "show it only what it needs"), wherever it looks: mount tables, /proc, its own Python."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HAVE_SANDBOX = shutil.which("bwrap") is not None and os.geteuid() == 0
if not HAVE_SANDBOX and os.environ.get("CI") == "true":
    raise RuntimeError("CI=true but bubblewrap is missing or not root: `apt-get install -y bubblewrap` (.ci/run does)")
pytestmark = pytest.mark.skipif(not HAVE_SANDBOX, reason="bubblewrap (bwrap) missing or not root")

# Everything the kernel can read that could name a host path; each read bounded (READ bytes).
PROBE = r"""
import glob, json, os, site, sys, traceback
READ = 1 << 20
def read(path, n=READ):
    try:
        with open(path, 'rb') as fh:
            return fh.read(n).decode('utf-8', 'replace')
    except OSError as e:
        return ''
def tb(f):
    try:
        f()
    except Exception:
        return traceback.format_exc()
    return ''
import numpy, gradcheck, coursetests
found = {}
for name in ('mountinfo', 'mounts', 'maps', 'environ', 'cmdline', 'cgroup', 'status'):
    found['/proc/self/' + name] = read('/proc/self/' + name)
found['/proc/1/cmdline'] = read('/proc/1/cmdline')
found['/proc/self/fd'] = repr({f: os.readlink('/proc/self/fd/' + f) for f in os.listdir('/proc/self/fd')
                              if os.path.islink('/proc/self/fd/' + f)})
found['os.environ'] = repr(dict(os.environ))
found['sys'] = repr([sys.executable, sys.prefix, sys.exec_prefix, sys.path, sys.argv, site.getsitepackages(),
                     site.ENABLE_USER_SITE])
found['__file__'] = repr([numpy.__file__, gradcheck.__file__, coursetests.__file__, os.__file__])
found['traceback numpy'] = tb(lambda: numpy.linalg.inv(numpy.zeros((2, 2))))
found["traceback gradcheck"] = tb(lambda: gradcheck.check_gradient(None, None, None))
found['pyvenv.cfg'] = read(sys.prefix + '/pyvenv.cfg')
found['bin'] = repr(os.listdir(sys.prefix + '/bin'))
files = []
for sp in site.getsitepackages() + sys.path:
    files += glob.glob(sp + '/*.pth') + glob.glob(sp + '/__editable__*')
    files += glob.glob(sp + '/*.dist-info/RECORD') + glob.glob(sp + '/*.dist-info/direct_url.json')
    files += glob.glob(sp + '/*.egg-link')
files += glob.glob(sys.prefix + '/share/jupyter/kernels/*/kernel.json') + glob.glob(sys.prefix + '/etc/jupyter/**', recursive=True)
for mod in (numpy, gradcheck, coursetests):  # compiled modules carry the path they were compiled at
    files += glob.glob(os.path.dirname(mod.__file__) + '/__pycache__/*.pyc')[:20]
for f in sorted(set(files))[:2000]:
    found[f] = read(f, 256 << 10)
hits = []
for where, text in found.items():  # (the grader keeps 200k characters of output: scan here)
    text = text.replace(RUNDIR, '<rundir>')  # the one host path the kernel needs: its sockets
    for path in FORBIDDEN:
        i = text.find(path)
        if i >= 0:
            hits.append(f'{where}: {path!r} in …{text[max(0, i - 80) : i + 80]!r}')
print(json.dumps({'hits': hits, 'mountinfo': found['/proc/self/mountinfo'], 'n': len(found),
                  'seen': [found['traceback numpy'], found['__file__'], found['sys']],
                  'torch': tb(lambda: __import__('torch'))[-600:]}))
"""


@pytest.fixture(scope="module")
def probed():
    from sandboxgrader.session import Session

    s = Session(slot=92, hidden_modules=("torch",)).start()
    try:
        forbidden = [str(ROOT), os.path.realpath(ROOT), sys.prefix, os.path.realpath(sys.prefix), s.kernel.workroot]
        code = f"RUNDIR = {s.kernel.rundir!r}\nFORBIDDEN = {sorted(set(forbidden))!r}\n" + PROBE
        r = s.run_cell(code, timeout=120)
        assert r.status == "ok", (r.ename, r.evalue)
        out = "".join(o.get("text", "") for o in r.outputs if o["output_type"] == "stream")
        yield json.loads(out)
    finally:
        s.shutdown()


def test_the_kernel_learns_no_host_path_of_the_repo_venv_or_work_root(probed):
    """The repo (as called and real), the venv, the grader's work root (but the kernel's own run
    directory, where its sockets are) appear nowhere the kernel can read."""
    assert probed["n"] > 30 and "/opt/venv" in probed["mountinfo"]  # the probe read what it should
    tb, files, paths = probed["seen"]
    assert 'File "/opt/venv/lib/python3.11/site-packages/numpy/' in tb, tb  # library code, neutral paths
    assert "/opt/course/gradcheck/__init__.py" in files and "/opt/venv/lib/python3.11/site-packages" in paths
    assert not probed["hits"], "\n".join(probed["hits"])


def test_mount_table_names_no_host_path(probed):
    """A bind mount's 4th field is its source's path inside its filesystem: every source is neutral."""
    roots = [line.split()[3:5] for line in probed["mountinfo"].splitlines()]
    assert ["/", "/proc"] in roots, roots
    for root, mountpoint in roots:
        for path in (str(ROOT), os.path.realpath(ROOT), os.path.realpath(sys.prefix)):
            assert path not in root, (root, mountpoint)


def test_hidden_modules_stay_hidden(probed):
    assert "ImportError" in probed["torch"] and "not available" in probed["torch"], probed["torch"]


# ------------------------------------------------------------------------- the runtime image itself


def test_the_grader_uses_runtime_images_not_the_fallback():
    """The fallback (host paths bound, visible in mountinfo) is for machines where no image can be
    made; CI must not be one of them."""
    from sandboxgrader.kernel import python_layout

    layout = python_layout()
    if layout.fallback:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the sandbox fell back to binding host paths: {layout.fallback}")
        pytest.skip(f"no runtime image here: {layout.fallback}")
    assert layout.image and not layout.blank
    for host, _ in layout.binds:
        assert not host.startswith((str(ROOT), os.path.realpath(sys.prefix))), host


def test_the_fallback_binds_host_paths_and_blanks_what_names_them(monkeypatch, capsys, tmp_path):
    from sandboxgrader import kernel, runtime

    def refuse(*_):
        raise runtime.NoImage("read-only filesystem (simulated)")

    monkeypatch.setattr(runtime, "venv_image", refuse)
    monkeypatch.setattr(runtime, "course_image", refuse)
    monkeypatch.setattr(kernel, "_warned", set())
    layout = kernel.python_layout()
    assert layout.image is None and "simulated" in layout.fallback
    assert (os.path.realpath(sys.prefix), "/opt/venv") in layout.binds
    assert any("__editable__" in p for p in layout.blank)
    assert "WARNING" in capsys.readouterr().err
    files = str(tmp_path)
    argv = kernel.bwrap_argv(1, "/h", "/r", kernel.Limits(), [sys.executable], files, ("torch",))
    assert f"{files}/blocked-torch.py" in argv and "/opt/venv/bin" in argv  # today's binds, blanks, bin/


def fake_venv(where: Path) -> Path:
    """A small venv with everything that names its host path: scripts, pyvenv.cfg, an editable
    finder and its .pth, direct_url.json, compiled modules."""
    import py_compile

    venv = where / "venv"
    sp = venv / "lib" / "python3.11" / "site-packages"
    (sp / "mod").mkdir(parents=True)
    (venv / "lib64").symlink_to("lib")
    (venv / "bin").mkdir()
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / "tool").write_text(f"#!{venv}/bin/python\n")
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\ncommand = /usr/bin/python -m venv {venv}\n")
    (sp / "mod" / "__init__.py").write_text("def boom():\n    raise ValueError('x')\n")
    py_compile.compile(str(sp / "mod" / "__init__.py"), doraise=True)
    (sp / "__editable___c_finder.py").write_text(f"MAPPING = {{'c': '{ROOT}/c'}}\n")
    py_compile.compile(str(sp / "__editable___c_finder.py"), doraise=True)
    (sp / "__editable__.c.pth").write_text("import __editable___c_finder\n")
    (sp / "local.pth").write_text(f"{ROOT}/somewhere\n")
    (venv / "share" / "kernels").mkdir(parents=True)
    (venv / "share" / "kernels" / "kernel.json").write_text(f'{{"argv": ["{venv}/bin/python", "-m", "k"]}}')
    (sp / "c-1.dist-info").mkdir()
    (sp / "c-1.dist-info" / "direct_url.json").write_text(f'{{"url": "file://{ROOT}/c", "dir_info": {{}}}}')
    return venv


def test_an_image_is_hard_links_with_every_host_path_removed(tmp_path, monkeypatch):
    import marshal

    from sandboxgrader import runtime

    monkeypatch.setattr(runtime, "images_root", lambda source: str(tmp_path / "images"))
    venv = fake_venv(tmp_path)
    before = {p: p.read_bytes() for p in venv.rglob("*") if p.is_file() and not p.is_symlink()}
    image = Path(runtime.venv_image(str(venv), sys.executable))
    assert image.parent == tmp_path / "images" and (image / "blocked.py").exists()
    copy = image / "venv"
    sp = copy / "lib" / "python3.11" / "site-packages"
    assert (sp / "mod" / "__init__.py").stat().st_ino == (
        venv / "lib/python3.11/site-packages/mod/__init__.py"
    ).stat().st_ino
    assert os.listdir(copy / "bin") == ["python"] and os.readlink(copy / "bin" / "python") == sys.executable
    assert "command" not in (copy / "pyvenv.cfg").read_text() and "home" in (copy / "pyvenv.cfg").read_text()
    for blank in ("__editable___c_finder.py", "__editable__.c.pth", "local.pth", "c-1.dist-info/direct_url.json"):
        assert (sp / blank).read_bytes() == b"", blank
    assert not list((sp / "__pycache__").glob("__editable__*"))
    assert (copy / "share" / "kernels" / "kernel.json").read_text() == '{"argv": ["/opt/venv/bin/python", "-m", "k"]}'
    (pyc,) = (sp / "mod" / "__pycache__").glob("*.pyc")
    co = marshal.loads(pyc.read_bytes()[16:])
    assert co.co_filename == "/opt/venv/lib/python3.11/site-packages/mod/__init__.py"
    assert co.co_consts[0].co_filename == co.co_filename  # nested code objects too
    for p in [*copy.rglob("*"), image / "blocked.py"]:  # what the kernel sees (not the image's notes)
        if p.is_file() and not p.is_symlink():
            assert str(venv).encode() not in p.read_bytes() and str(ROOT).encode() not in p.read_bytes(), p
    after = {p: p.read_bytes() for p in before}
    assert after == before  # nothing was written through a hard link into the venv
    assert runtime.venv_image(str(venv), sys.executable) == str(image)  # unchanged venv: the same image


def test_two_graders_at_once_share_one_image_and_a_change_makes_a_new_one(tmp_path):
    import subprocess

    venv = fake_venv(tmp_path)
    images = tmp_path / "images"
    code = (
        "import sys; from sandboxgrader import runtime\n"
        f"runtime.images_root = lambda source: {str(images)!r}\n"
        f"print(runtime.venv_image({str(venv)!r}, sys.executable))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "grading")}
    run = [sys.executable, "-c", code]
    (images / ".venv-0123-killed" / "venv").mkdir(parents=True)  # a build killed half-way
    procs = [subprocess.Popen(run, stdout=subprocess.PIPE, env=env, text=True) for _ in range(2)]
    paths = {p.communicate()[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1 and os.path.isdir(paths.pop())
    (old,) = [p for p in os.listdir(images) if p.startswith("venv-") and not p.endswith(".inuse")]
    assert not [p for p in os.listdir(images) if p.startswith(".venv-")]  # no half-built image left
    (venv / "lib" / "python3.11" / "site-packages" / "newpkg").mkdir()  # pip installed something
    new = subprocess.run(run, capture_output=True, env=env, text=True, check=True).stdout.strip()
    assert os.path.isdir(os.path.join(new, "venv", "lib", "python3.11", "site-packages", "newpkg"))
    assert not os.path.exists(images / old)  # the old image of this venv, used by nobody, is gone
    other = fake_venv(tmp_path / "other")  # another checkout's venv, then that checkout deleted
    gone = subprocess.run(
        [sys.executable, "-c", code.replace(str(venv), str(other))], capture_output=True, env=env, text=True
    )
    assert gone.returncode == 0 and len(os.listdir(images)) == 5, os.listdir(images)  # 2 images, 2 locks, .build
    shutil.rmtree(other)
    (venv / "lib" / "python3.11" / "site-packages" / "newpkg2").mkdir()
    subprocess.run(run, capture_output=True, env=env, text=True, check=True)
    assert not os.path.exists(gone.stdout.strip()) and not os.path.exists(new)
