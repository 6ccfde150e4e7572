"""requirements.txt and environment.yml pin the same versions; layout is as documented."""

import re

from course import ROOT

PIN = re.compile(r"^\s*-?\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#]+)")


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines):
    out = {}
    for line in lines:
        m = PIN.match(line)
        if m:
            out[norm(m.group(1))] = m.group(2)
    return out


def requirements():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    body = [l for l in lines if l.strip() and not l.lstrip().startswith("#")]
    unpinned = [l for l in body if "==" not in l]
    assert not unpinned, f"requirements.txt: every line must pin an exact version: {unpinned}"
    return pins(body)


def environment_yml():
    text = (ROOT / "environment.yml").read_text()
    conda, pip, section = {}, {}, None
    for line in text.splitlines():
        if re.match(r"^\s*-\s*pip:\s*$", line):
            section = "pip"
            continue
        if re.match(r"^dependencies:", line):
            section = "conda"
            continue
        m = re.match(r"^\s*-\s*([A-Za-z0-9_.\-]+)\s*=\s*=?\s*([^\s#=]+)", line)
        if m and section:
            (pip if section == "pip" else conda)[norm(m.group(1))] = m.group(2)
    return text, conda, pip


def test_requirements_pin_torch_cpu_wheel():
    assert requirements()["torch"] == "2.13.0"


def test_environment_yml_pins_what_requirements_pin():
    req = requirements()
    _, conda, pip = environment_yml()
    both = {**conda, **pip}
    missing = sorted(set(req) - set(both))
    assert not missing, f"environment.yml lacks {missing}"
    differ = {k: (req[k], both[k]) for k in req if both[k] != req[k]}
    assert not differ, f"versions differ (requirements.txt, environment.yml): {differ}"
    extra = sorted(set(both) - set(req) - {"python", "pip"})
    assert not extra, f"environment.yml pins what requirements.txt does not: {extra}"


def test_environment_yml_is_binder_ready():
    text, conda, pip = environment_yml()
    assert re.search(r"^channels:\s*\n\s*-\s*conda-forge", text, re.M)
    assert conda.get("python", "").startswith("3.11")
    assert "-e ./utils" in text or "./utils" in text, "environment.yml must install utils/"


def test_top_level_layout():
    for name in ["lectures", "assignments", "solutions", "grading", "utils", "tests", "benchmarks"]:
        assert (ROOT / name).is_dir(), name
    for name in ["environment.yml", "Makefile", "README.md", ".ci/run", ".gitignore", "requirements.txt"]:
        assert (ROOT / name).is_file(), name
    ignored = (ROOT / ".gitignore").read_text()
    for pattern in [".venv/", "grading/gradebook.db", "grading/submitted/", ".ipynb_checkpoints/"]:
        assert pattern in ignored, pattern


def test_site_stack_is_pinned_in_both_and_installed():
    """`make site` is built with exactly these (requirements.txt and environment.yml agree, above)."""
    from importlib.metadata import version

    req = requirements()
    for name in ["sphinx", "myst-parser", "myst-nb", "pydata-sphinx-theme", "sphinx-book-theme"]:
        assert name in req, f"requirements.txt must pin {name} (the site's stack)"
        assert version(name) == req[name], f"installed {name} {version(name)} != pinned {req[name]}: make install"
