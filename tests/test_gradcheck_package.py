"""gradcheck is a proper package: `python -m build` makes a wheel and an sdist that install and work
in a clean virtual environment (numpy only, no torch), with one version source and its metadata."""

import email
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from course import ROOT

UTILS = ROOT / "utils"


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """Build from a copy of utils/ (the source tree is never written to)."""
    tmp = tmp_path_factory.mktemp("gcbuild")
    src = tmp / "utils"
    shutil.copytree(
        UTILS,
        src,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache"),
    )
    out = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    wheels, sdists = list((tmp / "dist").glob("*.whl")), list((tmp / "dist").glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list((tmp / "dist").iterdir())
    return wheels[0], sdists[0]


def _version_in_source() -> str:
    for line in (UTILS / "gradcheck" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("no __version__ in gradcheck/__init__.py")


def test_one_version_source_and_metadata(dist):
    wheel, _ = dist
    project = tomllib.loads((UTILS / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    version = _version_in_source()
    assert wheel.name == f"gradcheck-{version}-py3-none-any.whl"
    assert f"## {version}" in (UTILS / "CHANGELOG.md").read_text(), "CHANGELOG.md has no entry for this version"
    with zipfile.ZipFile(wheel) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(meta_name))
        assert any(n.endswith("licenses/LICENSE") for n in z.namelist()), z.namelist()
        assert not any(n.startswith(("tests/", "gradcheck/tests")) for n in z.namelist())
    assert meta["Version"] == version and meta["License-Expression"] == "MIT"
    required = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert required == ["numpy>=1.22"], required
    assert meta.get_all("Project-URL") and meta.get_all("Classifier")


@pytest.mark.parametrize("which", ["wheel", "sdist"])
def test_installs_and_works_in_a_clean_venv(dist, tmp_path, which):
    artefact = dist[0]
    if which == "sdist":  # the sdist alone builds the package (with the course's setuptools)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                str(tmp_path / "from_sdist"),
                str(dist[1]),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        (artefact,) = (tmp_path / "from_sdist").glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps", str(artefact)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # numpy (the one dependency) from the course environment, appended after the venv's own
    # site-packages: its .pth files (the editable gradcheck among them) are not processed
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "course_numpy.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = (
        "import sys, numpy as np, gradcheck as gc\n"
        f"assert gc.__file__.startswith({str(venv)!r}), gc.__file__\n"
        f"assert gc.__version__ == {_version_in_source()!r}\n"
        "A = np.arange(12.0).reshape(4, 3) / 7; x = np.ones(3)\n"
        "r = gc.check_gradient(lambda x: np.sum(np.sin(A @ x)), lambda x: A.T @ np.cos(A @ x), x)\n"
        "assert r.passed, str(r)\n"
        "assert 'torch' not in sys.modules, 'importing gradcheck must not import torch'\n"
        "print('ok', r.method, r.n_evals)\n"
    )
    out = subprocess.run([str(py), "-I", "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("ok complex"), out.stdout + out.stderr
