"""The sandboxed kernel learns no host path of the repository, of the venv or of the grader's work root
(issue 10: "show it only what it needs"), wherever it looks: mount tables, /proc, its own Python."""

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HAVE_SANDBOX = __import__("shutil").which("bwrap") is not None and os.geteuid() == 0
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
