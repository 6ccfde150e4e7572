"""A student in JupyterLab: answers a released assignment, runs it, presses nbgrader's Validate.

The answers typed are the reference solutions (the regions between `### BEGIN SOLUTION` and
`### END SOLUTION` of solutions/<id>/<id>.ipynb) put in place of the release's stubs. Then one
answer is made wrong the way students get it wrong, and Validate must show the failing test with
the message of the course's checker, `gradcheck`.
"""

import json
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

import jlab
from conftest import ROOT, screenshot_path

AID = "hw1_matrix_gradients"  # one small assignment: 12 answers, runs in seconds
RELEASES = Path(os.environ.get("BROWSER_ASSIGNMENTS_DIR", ROOT / "assignments"))
STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
# Task 2's classic mistake: the gradient of x^T A x taken as 2 A x, true only for a symmetric A.
WRONG = ("t2-sol", "    return 2 * A @ x  # as if A were symmetric")
VALIDATE_TIMEOUT = 180_000


def src(cell) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def grade_id(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solution_regions(source_nb) -> dict:
    """grade_id -> the lines strictly between BEGIN and END SOLUTION (indentation kept)."""
    regions = {}
    for cell in source_nb["cells"]:
        text = src(cell)
        m = re.search(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*### END SOLUTION", text, re.M | re.S)
        if m and grade_id(cell):
            regions[grade_id(cell)] = m.group(1).rstrip("\n")
    return regions


def answered(release_src: str, region: str) -> str:
    """The release cell with its two stub lines replaced by `region`."""
    lines = release_src.split("\n")
    for k in range(len(lines) - 1):
        if [lines[k].strip(), lines[k + 1].strip()] == STUB:
            return "\n".join(lines[:k] + region.split("\n") + lines[k + 2 :])
    raise AssertionError(f"no '# YOUR CODE HERE' stub in:\n{release_src}")


def expected_failure(release_nb, answer_src: str, test_id: str) -> str:
    """First line of the message the visible test gives for `answer_src`, computed here in Python."""
    test = next(c for c in release_nb["cells"] if grade_id(c) == test_id)
    ns = {}
    exec(compile(answer_src, "<answer>", "exec"), ns)
    try:
        exec(compile(src(test), "<test>", "exec"), ns)
    except AssertionError as e:
        return str(e).strip().splitlines()[0]
    raise AssertionError(f"the wrong answer passes the visible test {test_id}: pick another mistake")


def validate(page, expect_class: str):
    page.locator(jlab.NB).locator(".jp-NotebookPanel-toolbar .validate-button").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog.locator(".jp-Dialog-header")).to_have_text("Validation Results", timeout=VALIDATE_TIMEOUT)
    body = dialog.locator(f".{expect_class}")
    if body.count() == 0:
        pytest.fail(f"Validate did not give {expect_class}:\n{dialog.inner_text()[:3000]}")
    return dialog, body


def close_dialog(page):
    page.locator(".jp-Dialog .jp-mod-accept").click()
    expect(page.locator(".jp-Dialog")).to_have_count(0)


def test_student_answers_runs_all_and_validates(lab, lab_page):
    page = lab_page
    release = RELEASES / AID / f"{AID}.ipynb"
    if not release.exists():
        pytest.fail(
            f"{release.relative_to(ROOT) if release.is_relative_to(ROOT) else release} is missing: run `make release`"
        )
    rel = f"assignments/{AID}/{AID}.ipynb"
    local = lab.root / rel
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(release.read_bytes())  # the committed release, whatever the copy held
    release_nb = json.loads(release.read_text(encoding="utf-8"))
    source_nb = json.loads((ROOT / "solutions" / AID / f"{AID}.ipynb").read_text(encoding="utf-8"))
    regions = solution_regions(source_nb)
    answers = {}
    for k, cell in enumerate(release_nb["cells"]):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            answers[k] = answered(src(cell), regions[meta["grade_id"]])
    assert len(answers) >= 3, f"{rel}: only {len(answers)} answer cells"

    jlab.open_notebook(page, lab, rel)
    for k, text in answers.items():
        jlab.set_cell_source(page, k, text)
    jlab.run_all(page, jlab.code_cell_count(local), 120_000)
    jlab.assert_no_error_outputs(page)

    dialog, body = validate(page, "validation-success")
    expect(body).to_contain_text("Success! Your notebook passes all the tests.")
    page.screenshot(path=str(screenshot_path("student-validate-success")))
    close_dialog(page)
    # Validate saved the notebook first: what was typed is exactly the reference answers
    saved = json.loads(local.read_text(encoding="utf-8"))
    for k, text in answers.items():
        assert src(saved["cells"][k]) == text, f"cell {k} on disk differs from what was typed"

    wrong_id, wrong_line = WRONG
    k = next(i for i, c in enumerate(release_nb["cells"]) if grade_id(c) == wrong_id)
    wrong_src = answered(src(release_nb["cells"][k]), wrong_line)
    message = expected_failure(release_nb, wrong_src, wrong_id.replace("-sol", "-test"))
    assert "gradient check FAILED" in message, message
    jlab.set_cell_source(page, k, wrong_src)
    dialog, body = validate(page, "validation-failed")
    expect(body).to_contain_text("The following cell failed:")
    expect(body).to_contain_text("grad_quadratic")
    expect(body).to_contain_text(message)
    body.get_by_text(message.split(" (")[0]).first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_path("student-validate-failure")))
    close_dialog(page)
