"""Hygiene of every notebook a student sees: lectures (stored with outputs) and releases."""

import json
import re

import pytest

import stamp_badges
from course import ROOT, colab_url, lecture_notebooks, read_nb, release_notebooks, source_notebooks, src

LECTURES = lecture_notebooks()
STUDENT_FACING = LECTURES + release_notebooks()
ABSOLUTE_PATH = re.compile(r"(?<![\w.])(/work/|/root/|/home/\w+|/tmp/(?!ipykernel_)|[A-Z]:\\\\Users)")


def ids(paths):
    return [p.relative_to(ROOT).as_posix() for p in paths]


def test_lectures_are_numbered_from_01_without_gaps():
    numbers = [int(p.name[:2]) for p in LECTURES]
    assert len(LECTURES) >= 8 and numbers == list(range(1, len(LECTURES) + 1)), [p.name for p in LECTURES]


def test_every_lecture_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in LECTURES if f"](lectures/{p.name})" not in readme]
    assert len(LECTURES) >= 6 and not missing, f"README's lecture table lacks {missing}"


@pytest.mark.parametrize("path", STUDENT_FACING, ids=ids(STUDENT_FACING))
def test_badge_points_at_own_path_and_setup_cell_present(path):
    nb = read_nb(path)
    first, second = nb["cells"][0], nb["cells"][1]
    assert stamp_badges.BADGE_TAG in first["metadata"].get("tags", []), "first cell must be the Colab badge"
    assert f"]({colab_url(path)})" in src(first), f"badge must point at {colab_url(path)}"
    assert (ROOT / colab_url(path).split("/blob/", 1)[1].split("/", 1)[1]).exists()
    assert stamp_badges.SETUP_TAG in second["metadata"].get("tags", []), "second cell must be the setup cell"
    assert src(second) == stamp_badges.setup_source(nb), "setup cell is stale: run `make badges`"


def test_stamps_are_current():
    stale = [p for p in LECTURES + source_notebooks() if stamp_badges.main(["--check", str(p)]) != 0]
    assert not stale, f"run `make badges`: {stale}"


@pytest.mark.parametrize("path", STUDENT_FACING, ids=ids(STUDENT_FACING))
def test_kernel_size_and_paths(path):
    nb = read_nb(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert path.stat().st_size < 2_000_000, f"{path.name} is {path.stat().st_size} bytes"
    text = json.dumps([c["source"] for c in nb["cells"]] + [c.get("outputs", []) for c in nb["cells"]])
    hit = ABSOLUTE_PATH.search(text)
    assert hit is None, f"absolute path {hit.group(0)!r} in {path.name}"


@pytest.mark.parametrize("path", LECTURES, ids=ids(LECTURES))
def test_lecture_executed_in_order_without_errors(path):
    nb = read_nb(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"execution counts {counts}: run `make lectures`"
    for k, cell in enumerate(code, 1):
        for out in cell["outputs"]:
            assert out["output_type"] != "error", f"code cell {k} stored an error"
            assert out.get("name") != "stderr", f"code cell {k} wrote to stderr: {''.join(out['text'])[:200]}"


@pytest.mark.parametrize("path", LECTURES, ids=ids(LECTURES))
def test_lecture_has_the_required_parts(path):
    nb = read_nb(path)
    md = "\n".join(src(c) for c in nb["cells"] if c["cell_type"] == "markdown").lower()
    for part in ("learning goals", "summary", "exercises", "references"):
        assert part in md, f"{path.name} has no '{part}' section"
    assert any(
        o.get("data", {}).get("image/png") for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]
    ), f"{path.name} has no figure"


HINT, ANSWER = "<details><summary>Hint</summary>", "<details><summary>Answer</summary>"


@pytest.mark.parametrize("path", LECTURES, ids=ids(LECTURES))
def test_every_exercise_has_a_hint_and_a_worked_answer(path):
    """In the markdown cell with '## Exercises', every numbered item (a line starting with '1. ', '2. ', …) holds
    a collapsed hint and then a collapsed answer; a code cell after it runs the checks of the answers."""
    cells = read_nb(path)["cells"]
    start = next(
        (k for k, c in enumerate(cells) if c["cell_type"] == "markdown" and re.search(r"^## Exercises", src(c), re.M)),
        None,
    )
    assert start is not None, f"{path.name} has no '## Exercises' markdown cell"
    section = re.split(r"^## ", src(cells[start]).split("## Exercises", 1)[1], flags=re.M)[0]
    items = re.split(r"^\d+\.\s", section, flags=re.M)[1:]
    assert items, f"{path.name}: no numbered exercises under '## Exercises'"
    for k, item in enumerate(items, 1):
        hint, answer = item.find(HINT), item.find(ANSWER)
        assert 0 <= hint < answer, (
            f"{path.name}, exercise {k}: needs `{HINT}…</details>` and then `{ANSWER}…</details>`"
        )
        assert item.count("</details>") >= 2, f"{path.name}, exercise {k}: a <details> block is not closed"
    assert any(c["cell_type"] == "code" for c in cells[start + 1 :]), (
        f"{path.name}: no code cell after the exercises (the answers' numbers and formulas are checked there)"
    )
