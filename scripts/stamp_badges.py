"""Stamp the "Open in Colab" badge and the Colab setup cell into every notebook.

Both are generated from ``course.toml``; never edit them by hand. Lectures and solutions
(sources of the student releases) are stamped; a solution's badge points at its release path
under ``assignments/``, so the release generated from it carries the right badge.

    python scripts/stamp_badges.py          # rewrite what is stale
    python scripts/stamp_badges.py --check  # exit 1 and list notebooks that are stale
"""
from __future__ import annotations

import argparse
import sys

from course import colab_url, lecture_notebooks, pip_spec, read_nb, source_notebooks, write_nb
from course import ROOT, hub_settings, nbgitpuller_url

BADGE_TAG = "colab-badge"
SETUP_TAG = "colab-setup"
BADGE_IMG = "https://colab.research.google.com/assets/colab-badge.svg"


def badge_source(nb_path) -> str:
    badge = f"[![Open In Colab]({BADGE_IMG})]({colab_url(nb_path)})"
    # Lectures only: on a hub, assignments come through nbgrader's Assignments tab (hub/README.md).
    if hub_settings()["url"] and is_lecture(nb_path):
        badge += f" [Open on your JupyterHub]({nbgitpuller_url(nb_path)})"
    return badge


def is_lecture(nb_path) -> bool:
    from pathlib import Path
    return Path(nb_path).resolve().relative_to(ROOT).parts[0] == "lectures"


def setup_source() -> str:
    return "\n".join([
        "# Setup (stamped from course.toml by scripts/stamp_badges.py; do not edit by hand).",
        "# On Colab: install the course package `gradcheck` and enable widgets. Locally: nothing to do.",
        "import sys",
        'if "google.colab" in sys.modules:',
        "    import os, subprocess",
        f'    spec = os.environ.get("GRADCHECK_PIP_SPEC", "{pip_spec()}")',
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec], check=True)',
        "    from google.colab import output",
        "    output.enable_custom_widget_manager()",
    ])


def _tagged(nb: dict, tag: str):
    for i, cell in enumerate(nb["cells"]):
        if tag in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def _src(cell) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def stamp(nb: dict, nb_path) -> dict:
    """Return the notebook with an up-to-date badge cell first and setup cell second."""
    cells = nb["cells"]
    badge = {"cell_type": "markdown", "id": "colab-badge", "metadata": {"tags": [BADGE_TAG]},
             "source": badge_source(nb_path)}
    i = _tagged(nb, BADGE_TAG)
    if i is None:
        cells.insert(0, badge)
    else:
        old = cells.pop(i)
        badge["id"] = old.get("id", badge["id"])
        badge["metadata"] = {**old.get("metadata", {}), "tags": old["metadata"]["tags"]}
        cells.insert(0, badge)
    j = _tagged(nb, SETUP_TAG)
    if j is None:
        setup = {"cell_type": "code", "id": "colab-setup", "metadata": {"tags": [SETUP_TAG]},
                 "execution_count": None, "outputs": [], "source": setup_source()}
        cells.insert(1, setup)
    else:
        setup = cells.pop(j)
        setup["source"] = setup_source()
        cells.insert(1, setup)
    return nb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale notebooks")
    ap.add_argument("notebooks", nargs="*", help="default: lectures and solutions")
    args = ap.parse_args(argv)
    from pathlib import Path
    paths = [Path(p) for p in args.notebooks] or lecture_notebooks() + source_notebooks()
    stale = []
    for path in paths:
        nb = read_nb(path)
        before = [(_src(c), c.get("metadata", {}).get("tags")) for c in nb["cells"][:2]]
        stamped = stamp(nb, path)
        after = [(_src(c), c.get("metadata", {}).get("tags")) for c in stamped["cells"][:2]]
        if before != after:
            stale.append(path)
            if not args.check:
                write_nb(path, stamped)
    for p in stale:
        print(("stale: " if args.check else "stamped: ") + str(p))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
