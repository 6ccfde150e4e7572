"""An instructor in JupyterLab: Nbgrader -> Formgrader lists the course's assignments.

Lab runs from grading/ (where nbgrader_config.py is) on the course root, as the instructor's
guide says; formgrader then reads solutions/ as the source folder and grading/gradebook.db.
"""

import pytest
from playwright.sync_api import expect

import jlab
from conftest import ROOT, screenshot_path

ASSIGNMENTS = sorted(p.parent.name for p in (ROOT / "solutions").glob("*/*.ipynb"))


def test_formgrader_lists_the_course_assignments(lab, lab_page):
    page = lab_page
    assert ASSIGNMENTS, "no assignment under solutions/"
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    jlab.menu(page, "Nbgrader", "nbgrader:open-formgrader")
    frame = page.frame_locator("#formgrader-iframe iframe")
    names = frame.locator("td.name a")
    for aid in ASSIGNMENTS:
        expect(names.filter(has_text=aid)).to_have_count(1, timeout=60_000)
    listed = sorted(t.strip() for t in names.all_inner_texts())
    assert listed == ASSIGNMENTS, f"formgrader lists {listed}, solutions/ holds {ASSIGNMENTS}"
    # a formgrader that cannot see the course root says so on the page
    expect(frame.locator("body")).not_to_contain_text("not a subdirectory")
    jlab.collapse_left_sidebar(page)
    page.screenshot(path=str(screenshot_path("instructor-formgrader")))
    if page.page_errors:
        pytest.fail(f"JavaScript errors in the page: {page.page_errors}")
