"""Colab: the setup cell installs the course package and nothing heavy; notebooks need no repo files.

The main test plays a Colab session without Colab: a fresh virtual environment whose preinstalled
packages are the course's minus `gradcheck` (Colab has numpy, torch, matplotlib, ipywidgets, not
our package), a stand-in `google.colab` module imported at kernel start (as on Colab), an empty
working folder (a notebook opened from GitHub on Colab comes alone), and $GRADCHECK_PIP_SPEC
pointing the setup cell's pip install at a copy of the local utils/ instead of GitHub. Then the
lecture's first checks run and must print what the stored notebook printed.
"""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import stamp_badges
from course import ROOT, lecture_notebooks, pip_spec, read_nb, release_notebooks, settings, source_notebooks, src

LECTURE = ROOT / "lectures" / "01_rank_and_regularization.ipynb"
STUDENT_FACING = lecture_notebooks() + release_notebooks()
ALL_NOTEBOOKS = lecture_notebooks() + source_notebooks() + release_notebooks()
CONFIRMATION = re.compile(r"^(OK:|✓)|passed", re.M)


def ids(paths):
    return [p.relative_to(ROOT).as_posix() for p in paths]


def stdout_of(outputs) -> str:
    return "".join(
        "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
        for o in outputs
        if o["output_type"] == "stream" and o["name"] == "stdout"
    )


# ------------------------------------------------------------------------------------------------
# The setup cell itself


def test_setup_cell_installs_only_gradcheck_from_the_repository():
    setup = stamp_badges.setup_source()
    s = settings()
    assert pip_spec() == (f"gradcheck @ git+https://github.com/{s['slug']}@{s['branch']}#subdirectory=utils")
    assert f'"{pip_spec()}"' in setup
    installs = re.findall(r"pip.*install", setup)
    assert len(installs) == 1, f"one pip install only, found {installs}"
    for heavy in ("torch", "numpy", "matplotlib", "ipywidgets", "scipy", "jupyter"):
        assert heavy not in setup, f"the setup cell must not install {heavy}: Colab has it"
    assert 'if "google.colab" in sys.modules:' in setup
    assert "enable_custom_widget_manager()" in setup


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=ids(ALL_NOTEBOOKS))
def test_no_other_cell_installs_packages(path):
    for k, cell in enumerate(read_nb(path)["cells"]):
        if cell["cell_type"] != "code" or stamp_badges.SETUP_TAG in cell["metadata"].get("tags", []):
            continue
        assert not re.search(r"(^|\s)[!%]\s*(pip|conda|apt)|pip\s+install|subprocess", src(cell), re.M), (
            f"cell {k} installs something: only the stamped setup cell may"
        )


def test_setup_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)

    def forbidden(*args, **kwargs):
        raise AssertionError(f"the setup cell ran {args} outside Colab")

    monkeypatch.setattr(subprocess, "run", forbidden)
    exec(compile(stamp_badges.setup_source(), "<setup cell>", "exec"), {})


# ------------------------------------------------------------------------------------------------
# A Colab session, played locally

STUB_OUTPUT = '''"""Stand-in for google.colab.output: records that the custom widget manager was enabled."""
enabled = False


def enable_custom_widget_manager():
    global enabled
    enabled = True
'''


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A kernel that looks like Colab's: returns (kernel name, JUPYTER_PATH entry, empty workdir, venv)."""
    base = tmp_path_factory.mktemp("colab")
    venv = base / "venv"
    # --without-pip: pip comes with the preinstalled packages, as on Colab; installs go to this venv
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    preinstalled = base / "preinstalled"
    preinstalled.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.lower().startswith(("gradcheck", "coursetests", "__editable__")) or entry.suffix == ".pth":
            continue
        (preinstalled / entry.name).symlink_to(entry)
    stub = base / "stub"
    (stub / "google" / "colab").mkdir(parents=True)
    (stub / "google" / "__init__.py").write_text("")
    (stub / "google" / "colab" / "__init__.py").write_text("from . import output  # noqa: F401\n")
    (stub / "google" / "colab" / "output.py").write_text(STUB_OUTPUT)
    # Colab imports google.colab before the first cell runs
    (stub / "sitecustomize.py").write_text("import google.colab  # noqa: F401\n")
    # pip builds in the source folder (build/, *.egg-info): never in the repository's utils/
    utils = base / "utils"
    shutil.copytree(
        ROOT / "utils",
        utils,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__", ".pytest_cache", ".hypothesis", "tests"),
    )
    coursetests = base / "coursetests"
    shutil.copytree(
        ROOT / "coursetests", coursetests, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__")
    )
    python = venv / "bin" / "python"
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in",
        "language": "python",
        "env": {
            "PYTHONPATH": f"{stub}{os.pathsep}{preinstalled}",
            "GRADCHECK_PIP_SPEC": str(utils),
            "COURSETESTS_PIP_SPEC": str(coursetests),
            # offline: numpy is "preinstalled", setuptools too (no isolated build env);
            # pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation
            "PIP_NO_INDEX": "1",
            "PIP_NO_BUILD_ISOLATION": "0",
            "PIP_ROOT_USER_ACTION": "ignore",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "OPENBLAS_NUM_THREADS": "1",
        },
    }
    kernel_dir = base / "jupyter" / "kernels" / "colab-standin"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps(spec))
    workdir = base / "content"  # Colab's working folder: empty
    workdir.mkdir()
    return "colab-standin", base / "jupyter", workdir, venv


def first_checks(nb: dict) -> list[dict]:
    """Code cells after the setup cell, up to the first one whose stored output confirms a check."""
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or stamp_badges.SETUP_TAG in cell["metadata"].get("tags", []):
            continue
        cells.append(cell)
        if CONFIRMATION.search(stdout_of(cell["outputs"])):
            return cells
    raise AssertionError("no code cell of the lecture prints a confirmation")


def test_colab_session_installs_gradcheck_and_runs_the_first_checks(colab, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    kernel, jupyter_path, workdir, venv = colab
    nb = read_nb(LECTURE)
    setup = next(c for c in nb["cells"] if stamp_badges.SETUP_TAG in c["metadata"].get("tags", []))
    checks = first_checks(nb)
    before = (
        "import importlib.util, sys\n"
        "assert 'google.colab' in sys.modules, 'the stand-in is not imported at start'\n"
        "assert importlib.util.find_spec('gradcheck') is None, 'gradcheck must not be preinstalled'"
    )
    after = (
        "import gradcheck, google.colab.output\n"
        "print(gradcheck.__file__)\n"
        "print('widget manager enabled:', google.colab.output.enabled)"
    )
    cells = [
        nbformat.v4.new_code_cell(before),
        nbformat.v4.new_code_cell(src(setup)),
        nbformat.v4.new_code_cell(after),
    ] + [nbformat.v4.new_code_cell(src(c)) for c in checks]
    run = nbformat.v4.new_notebook(cells=cells)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    NotebookClient(run, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(workdir)}}).execute()

    for k, cell in enumerate(run.cells):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell {k}: {errors[0].ename}: {errors[0].evalue}"
    installed = stdout_of(run.cells[2].outputs).splitlines()
    assert Path(installed[0]).is_relative_to(venv), f"gradcheck imported from {installed[0]}, not the fresh venv"
    assert installed[1] == "widget manager enabled: True"
    for cell, stored in zip(run.cells[3:], checks):
        assert stdout_of(cell.outputs) == stdout_of(stored["outputs"]), (
            f"on 'Colab' this cell prints something else than the stored lecture:\n{src(stored)[:300]}"
        )
    assert CONFIRMATION.search(stdout_of(run.cells[-1].outputs))


def test_colab_session_runs_hw2s_visible_tests_from_coursetests(colab, monkeypatch):
    """hw2's test cells import the course package coursetests: its setup cell installs it on Colab too."""
    import nbformat
    from nbclient import NotebookClient

    kernel, jupyter_path, workdir, venv = colab
    release = read_nb(ROOT / "assignments" / "hw2_backprop" / "hw2_backprop.ipynb")
    source = read_nb(ROOT / "solutions" / "hw2_backprop" / "hw2_backprop.ipynb")
    by_id = {(c["metadata"].get("nbgrader") or {}).get("grade_id"): src(c) for c in source["cells"]}
    test = next(src(c) for c in release["cells"] if (c["metadata"].get("nbgrader") or {}).get("grade_id") == "a1-test")
    setup = next(src(c) for c in release["cells"] if stamp_badges.SETUP_TAG in c["metadata"].get("tags", []))
    cells = [setup, "import coursetests, numpy as np\nprint(coursetests.__file__)", by_id["a1-sol"], test]
    run = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    NotebookClient(run, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(workdir)}}).execute()
    for k, cell in enumerate(run.cells):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell {k}: {errors[0].ename}: {errors[0].evalue}"
    assert Path(stdout_of(run.cells[1].outputs).strip()).is_relative_to(venv), "coursetests not from the fresh venv"
    assert stdout_of(run.cells[3].outputs) == "forward_univariate: tests passed\n"


# ------------------------------------------------------------------------------------------------
# No notebook reads a file a Colab session does not have

READERS = re.compile(
    r"\b(open|np\.load|np\.loadtxt|np\.genfromtxt|np\.fromfile|pd\.read_\w+|read_csv|imread|"
    r"loadmat|torch\.load|Image\.open|read_text|read_bytes|json\.load|pickle\.load)\s*\("
)
LOCAL_MD_REF = re.compile(
    r"!\[[^\]]*\]\((?!https?://|data:|attachment:)([^)\s]+)|<img[^>]+src=[\"'](?!https?://|data:)([^\"']+)"
)


def _string_literals(code: str):
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(code))
    except SyntaxError:
        return []
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


@pytest.mark.parametrize("path", STUDENT_FACING, ids=ids(STUDENT_FACING))
def test_notebook_reads_no_repository_file(path):
    """On Colab a notebook comes alone: no data files, no sibling modules, no local images."""
    nb = read_nb(path)
    problems = []
    for k, cell in enumerate(nb["cells"]):
        text = src(cell)
        if cell["cell_type"] == "markdown":
            for m in LOCAL_MD_REF.finditer(text):
                problems.append(f"cell {k}: local image {m.group(1) or m.group(2)}")
            continue
        if cell["cell_type"] != "code" or stamp_badges.SETUP_TAG in cell["metadata"].get("tags", []):
            continue
        if re.search(r"^\s*%(run|load)\b", text, re.M):
            problems.append(f"cell {k}: %run / %load of a local file")
        for literal in _string_literals(text):
            if not literal or "\n" in literal or len(literal) > 200 or literal in (".", ".."):
                continue
            for base in (path.parent, ROOT):
                candidate = base / literal
                if "/" in literal or "." in Path(literal).name:
                    try:
                        if candidate.exists() and candidate.resolve() != path.resolve():
                            problems.append(f"cell {k}: refers to the repository file {literal!r}")
                            break
                    except OSError:
                        pass
        for m in READERS.finditer(text):
            problems.append(f"cell {k}: reads a file with {m.group(1)}(...)")
    assert not problems, "\n".join(problems)
