"""environment.yml builds on Binder (repo2docker's conda build pack) into the course's environment.

repo2docker conventions checked here, as repo2docker applies them:
- with environment.yml present, requirements.txt is ignored: environment.yml must be complete;
- a `binder/` or `.binder/` folder would make repo2docker ignore the root files;
- a local pip requirement (`-e ./utils`) makes repo2docker copy the whole repository before the
  environment is built (its `is_local_pip_requirement` rule: the path starts with "."), so utils/
  is there to install;
- the Python version is read from a `python=X.Y` dependency.
tests/test_environment.py checks that the pins equal requirements.txt's.
"""

import os
import re
import tomllib

import pytest
import yaml

from course import ROOT, settings

TORCH_CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
PIN = re.compile(r"^[A-Za-z0-9_.\-\[\]]+==[^\s=]+$")


@pytest.fixture(scope="module")
def env():
    with open(ROOT / "environment.yml", encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict), "environment.yml must be a mapping"
    return data


def pip_section(env):
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one `- pip:` section"
    return sections[0]


def test_structure(env):
    assert set(env) <= {"name", "channels", "dependencies"}, f"unexpected keys {set(env)}"
    assert env["channels"] == ["conda-forge"], "conda-forge only: mixing channels makes solves slow and fragile"
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "pip" in conda, "`pip` must be a conda dependency for the pip section to be installed"
    for dep in conda:
        if dep != "pip":
            assert re.fullmatch(r"[a-z0-9_.\-]+=[\d.]+", dep), f"conda dependency {dep!r} is not pinned"


def test_python_version_matches_the_course(env):
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and re.match(r"python\s*=", d)]
    assert pythons == ["python=3.11"], pythons
    requires = tomllib.loads((ROOT / "utils" / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires.startswith(">=3.") and int(requires.split(".")[1]) <= 11, requires


def test_pip_section_is_pinned(env):
    for line in pip_section(env):
        if line == TORCH_CPU_INDEX or line.startswith("-e ./"):
            continue
        assert PIN.match(line), f"pip line {line!r}: pin an exact version (name==x.y.z)"


def test_torch_comes_from_the_cpu_index(env):
    lines = pip_section(env)
    if any(line.startswith("torch==") for line in lines):
        assert TORCH_CPU_INDEX in lines, "without the CPU index, Binder downloads the multi-GB CUDA build"


def test_utils_is_installed_and_repo2docker_stages_it(env):
    local = [line for line in pip_section(env) if line.startswith("-e ")]
    assert local == ["-e ./utils", "-e ./coursetests"], f"install the course packages from the repository: {local}"
    for line, name in zip(local, ("gradcheck", "coursetests")):
        path = line.split(None, 1)[1]
        # repo2docker copies the whole repository before building only for a local requirement
        assert path.startswith("."), "a path repo2docker does not see as local is installed before it is copied"
        project = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]
        assert project["name"] == name


def test_no_config_that_overrides_the_root_files():
    for name in ("binder", ".binder"):
        assert not (ROOT / name).exists(), f"{name}/ would make repo2docker ignore environment.yml at the root"
    for name in ("Dockerfile", "runtime.txt", "Project.toml", "install.R"):
        assert not (ROOT / name).exists(), f"{name} changes how repo2docker builds; environment.yml is the spec"
    post_build = ROOT / "postBuild"
    if post_build.exists():
        assert os.access(post_build, os.X_OK), "postBuild must be executable"


def test_readme_has_binder_badge_next_to_colab():
    s = settings()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    binder = re.findall(rf"https://mybinder\.org/v2/gh/{re.escape(s['slug'])}/{re.escape(s['branch'])}\S*", readme)
    colab = re.findall(
        rf"https://colab\.research\.google\.com/github/{re.escape(s['slug'])}/blob/{re.escape(s['branch'])}/\S*", readme
    )
    assert binder, "README.md has no Binder badge for this repository and branch"
    assert colab, "README.md has no Colab badge for this repository and branch"
