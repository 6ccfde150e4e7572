"""The course on a real JupyterHub, end to end, as its users would do it in Chromium.

1. the instructor logs in, has Formgrader in the Nbgrader menu, releases hw1 in Formgrader;
2. student A fetches hw1 in the Assignments tab, types the reference answers, Validate says
   success, submits; student B submits the blank release, then types a wrong answer and resubmits;
3. root collects from the exchange (`make collect FROM=exchange`), `make autograde` (sandboxed),
   `make feedback`; the instructor releases the feedback in Formgrader;
4. A fetches feedback and sees full marks; B sees the gradcheck message of the failing test and the
   score of the LATEST submission; neither page holds a hidden test;
5. from A's own kernel: B's home, B's submission, every feedback page, the instructor's course
   folder (solutions, gradebook) and B's server are all out of reach.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import expect
from test_student_validate import WRONG, answered, expected_failure, grade_id, solution_regions, src

import jlab
from conftest import AID, ROOT, shot_name
from coursegrader import nbutil

NB_REL = f"{AID}/{AID}.ipynb"
RELEASE = ROOT / "assignments" / AID / f"{AID}.ipynb"
SOURCE = ROOT / "solutions" / AID / f"{AID}.ipynb"
LONG = 180_000  # ms: a server start or a grading step on a loaded 2-core machine


# Student B's second submission: task 1 right, task 2 with the classic mistake, the rest left blank.
B_RIGHT = "t1-sol"


def answers(only: set | None = None, wrong: bool = False) -> dict[int, str]:
    """cell index -> what the student types: the reference answers (of `only` cells; WRONG made wrong)."""
    release, regions = nbutil.read_nb(RELEASE), solution_regions(nbutil.read_nb(SOURCE))
    out = {}
    for k, cell in enumerate(release["cells"]):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code" and (only is None or meta["grade_id"] in only):
            region = regions[meta["grade_id"]]
            if wrong and meta["grade_id"] == WRONG[0]:
                region = WRONG[1]
            out[k] = answered(src(cell), region)
    return out


def points(grade_ids: set | None = None) -> float:
    """Points of hw1's test cells (of those testing `grade_ids` answers)."""
    cells = [c for c in nbutil.read_nb(SOURCE)["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    return sum(
        float(c["metadata"]["nbgrader"]["points"])
        for c in cells
        if grade_ids is None or grade_id(c).replace("-test", "-sol") in grade_ids
    )


# ---------------------------------------------------------------------------------------------
# a person in front of the browser


def login(contexts, browser, hub, user: str):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
    contexts.append(ctx)
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.passwords[user])
    page.click("#login_submit")
    page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=LONG)
    expect(page.locator(".lm-MenuBar-itemLabel:text-is('Nbgrader')")).to_be_visible(timeout=LONG)
    return page


def nbgrader_menu(page) -> list[str]:
    """The commands of the Nbgrader menu (the menu is closed again)."""
    page.locator(".lm-MenuBar-itemLabel:text-is('Nbgrader')").click()
    items = page.locator(".lm-Menu-item[data-command^='nbgrader:']")
    expect(items.first).to_be_visible()
    # a plugin that is disabled leaves its item in the DOM, hidden (Lumino: lm-mod-hidden / empty label)
    commands = page.evaluate("""() => [...document.querySelectorAll(".lm-Menu-item[data-command^='nbgrader:']")]
        .filter(e => e.offsetParent !== null && e.innerText.trim()).map(e => e.dataset.command)""")
    page.locator("#jp-main-dock-panel").click(position={"x": 5, "y": 400})  # closes the menu (and the menu bar)
    expect(page.locator(".lm-Menu")).to_have_count(0)
    return commands


def assignments_tab(page):
    page.locator(".lm-MenuBar-itemLabel:text-is('Nbgrader')").click()
    page.locator(".lm-Menu-item[data-command='nbgrader:open-assignment-list']").click()
    panel = page.locator("#nbgrader-assignment-list")
    expect(panel).to_be_visible()
    return panel


def click_in_list(panel, list_id: str, label: str, then: str):
    """Press the `label` button of hw1 in one of the tab's lists; wait for the list `then` to show it."""
    row = panel.locator(f"#{list_id} .list_item:has-text('{AID}')").first
    button = row.locator(f"button:text-is('{label}')")
    expect(button).to_be_enabled(timeout=LONG)
    button.click()
    expect(panel.locator(f"#{then} .list_item:has-text('{AID}')").first).to_be_visible(timeout=LONG)


def open_notebook(page, hub, user: str, rel: str):
    page.goto(f"{hub.url}/user/{user}/lab/tree/{quote(rel)}?reset")
    expect(page.locator(jlab.NB)).to_have_count(1, timeout=LONG)
    jlab.wait_kernel_ready(page, LONG)


def type_answers(page, typed: dict[int, str], save: bool = True) -> None:
    for k, text in typed.items():
        jlab.set_cell_source(page, k, text)
    if save:  # (Validate saves by itself: a second save right after the first can raise "File Changed")
        jlab.save(page)


def formgrader_row(page, hub):
    page.goto(f"{hub.url}/user/{hub.instructor}/formgrader/manage_assignments")
    row = page.locator(f"tr:has(td.name:has-text('{AID}'))")
    expect(row).to_have_count(1, timeout=LONG)
    return row


def confirm_modal(page, text: str):
    modal = page.locator(".modal.in, .modal.show")
    expect(modal.first).to_contain_text(text, timeout=LONG)
    modal.first.locator("button:has-text('Close'), .close").first.click()


def submissions(hub, student: str) -> list[Path]:
    inbound = hub.exchange / hub.course_id / "inbound"
    return sorted(p for p in inbound.iterdir() if p.name.startswith(f"{student}+{AID}+"))


def make(hub, *args) -> str:
    """A make target of the instructor's course folder, run by root as the grading node runs it."""
    env = {**os.environ, "EXCHANGE": str(hub.exchange), "CI": os.environ.get("CI", "")}
    # the repository's .venv, as it is (INSTALL_INPUTS empty: never reinstalled from the copy)
    r = subprocess.run(
        ["make", "--no-print-directory", "-C", str(hub.course), f"VENV={ROOT / '.venv'}", "INSTALL_INPUTS=", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


PROBE = r"""
import json, os
result = {}
for label, path in PATHS.items():
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        result[label] = "READ"
    except PermissionError:
        result[label] = "denied"
    except FileNotFoundError:
        result[label] = "missing"
print("PROBE " + json.dumps(result))
"""


def test_course_on_the_hub(hub, browser, contexts):
    started = time.monotonic()
    inst, (a, b) = hub.instructor, hub.students
    total, b_latest = points(), points({B_RIGHT})
    assert 0 < b_latest < total

    # 1. the instructor: Formgrader is there, hw1 released from it ------------------------------
    ip = login(contexts, browser, hub, inst)
    menu = nbgrader_menu(ip)
    assert {"nbgrader:open-formgrader", "nbgrader:open-course-list"} <= set(menu), menu
    row = formgrader_row(ip, hub)
    expect(ip.locator("td.name")).to_have_count(len(list((ROOT / "solutions").glob("*/*.ipynb"))))
    row.locator(".release a").click()
    confirm_modal(ip, f"Successfully released '{AID}'")
    expect(formgrader_row(ip, hub).locator(".status")).to_contain_text("released")
    ip.screenshot(path=str(shot_name("hub-instructor-formgrader")))
    assert (hub.exchange / hub.course_id / "outbound" / AID / f"{AID}.ipynb").is_file()
    print(f"  {time.monotonic() - started:5.0f} s  instructor released hw1", flush=True)

    # 2. student A: fetch, answer, Validate, submit ---------------------------------------------
    pa = login(contexts, browser, hub, a)
    assert nbgrader_menu(pa) == ["nbgrader:open-assignment-list"], "a student sees only the Assignments tab"
    assert pa.request.get(f"{hub.url}/user/{a}/formgrader").status == 404
    tab = assignments_tab(pa)
    click_in_list(tab, "released_assignments_list", "Fetch", "fetched_assignments_list")
    open_notebook(pa, hub, a, NB_REL)
    type_answers(pa, answers(), save=False)
    pa.locator(jlab.NB).locator(".jp-NotebookPanel-toolbar .validate-button").click()
    dialog = pa.locator(".jp-Dialog")
    expect(dialog.locator(".jp-Dialog-header")).to_have_text("Validation Results", timeout=LONG)
    expect(dialog.locator(".validation-success")).to_contain_text("Success! Your notebook passes all the tests.")
    dialog.locator(".jp-mod-accept").click()
    tab = assignments_tab(pa)
    click_in_list(tab, "fetched_assignments_list", "Submit", "submitted_assignments_list")
    pa.screenshot(path=str(shot_name("hub-student-assignments")))
    assert len(submissions(hub, a)) == 1
    print(f"  {time.monotonic() - started:5.0f} s  student A validated and submitted", flush=True)

    # student B: the blank release first, then a wrong answer
    pb = login(contexts, browser, hub, b)
    tab = assignments_tab(pb)
    click_in_list(tab, "released_assignments_list", "Fetch", "fetched_assignments_list")
    click_in_list(tab, "fetched_assignments_list", "Submit", "submitted_assignments_list")
    open_notebook(pb, hub, b, NB_REL)
    type_answers(pb, answers(only={B_RIGHT, WRONG[0]}, wrong=True))
    tab = assignments_tab(pb)
    click_in_list(tab, "fetched_assignments_list", "Submit", "submitted_assignments_list")
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ UTC$")
    expect(tab.locator("#submitted_assignments_list").get_by_text(stamp)).to_have_count(2, timeout=LONG)
    assert len(submissions(hub, b)) == 2
    print(f"  {time.monotonic() - started:5.0f} s  student B submitted twice", flush=True)

    # 3. grading: collect from the exchange, sandboxed autograde, feedback; release it ----------
    out = make(hub, "collect", "FROM=exchange")
    report = (hub.course / "grading" / "reports" / "collect.csv").read_text()
    assert re.search(rf"^collected,{a},{AID},", report, re.M), report
    assert re.search(rf"^collected,{b},{AID},", report, re.M), report
    assert re.search(rf"^duplicate,{b},{AID},", report, re.M), report  # B's first submission
    latest_b = submissions(hub, b)[-1]
    assert (
        (hub.course / "grading" / "submitted" / b / AID / "timestamp.txt")
        .read_text()
        .startswith(latest_b.name.split("+")[2][:19])
    ), "the latest submission's time is kept"
    make(hub, "autograde")
    make(hub, "feedback")
    subprocess.run(["chown", "-R", f"{inst}:", str(hub.course)], check=True)  # back to the instructor
    row = formgrader_row(ip, hub)
    expect(row.locator(".num-submissions")).to_have_text("2")
    row.locator(".release-feedback a").click()
    confirm_modal(ip, "Successfully released feedback")
    print(f"  {time.monotonic() - started:5.0f} s  collect, autograde, feedback, released", flush=True)

    # 4. students fetch their feedback -------------------------------------------------------
    hidden = nbutil.secret_lines(nbutil.read_nb(SOURCE))["hidden"]
    assert hidden, "hw1 has hidden tests: the check below could not fail otherwise"
    a_typed = {line.strip() for text in answers().values() for line in text.split("\n")}
    assert hidden - a_typed, "every hidden-test line is one A typed: the check below could not fail"
    pages = {}
    for user, page in [(a, pa), (b, pb)]:
        page.goto(f"{hub.url}/user/{user}/lab?reset")
        tab = assignments_tab(page)
        fetch = tab.locator("#submitted_assignments_list button:text-is('Fetch Feedback')").first
        expect(fetch).to_be_visible(timeout=LONG)
        fetch.click()
        expect(tab.locator("#submitted_assignments_list").get_by_text("(view feedback)").first).to_be_visible(
            timeout=LONG
        )
        if user == a:
            page.screenshot(path=str(shot_name("hub-student-feedback-fetched")))
        folder = hub.home(user) / AID / "feedback"
        stamps = sorted(p.name for p in folder.iterdir())
        page.goto(f"{hub.url}/user/{user}/files/{AID}/feedback/{quote(stamps[-1])}/{AID}.html")
        text = page.locator("body").inner_text()
        pages[user] = text
        # a hidden test's line the student wrote too (`X_inv = np.linalg.inv(X)`) is the student's
        submitted = hub.course / "grading" / "submitted" / user / AID / f"{AID}.ipynb"
        own = {line.strip() for c in nbutil.read_nb(submitted)["cells"] for line in src(c).split("\n")}
        shown = {line.strip() for line in text.split("\n")}
        assert not (hidden & shown) - own, f"hidden test lines in {user}'s feedback: {(hidden & shown) - own}"
    assert re.search(rf"Score: {total:g}(\.0)? / {total:g}", pages[a]), pages[a][:1500]
    assert re.search(rf"Score: {b_latest:g}(\.0)? / {total:g}", pages[b]), pages[b][:1500]
    release_nb = nbutil.read_nb(RELEASE)
    k = next(i for i, c in enumerate(release_nb["cells"]) if grade_id(c) == WRONG[0])
    message = expected_failure(
        release_nb, answered(src(release_nb["cells"][k]), WRONG[1]), WRONG[0].replace("-sol", "-test")
    )
    assert "gradient check FAILED" in message and message.split(" (")[0] in pages[b], pages[b][:3000]
    pb.get_by_text(message.split(" (")[0]).first.scroll_into_view_if_needed()
    pb.screenshot(path=str(shot_name("hub-student-feedback")))
    print(f"  {time.monotonic() - started:5.0f} s  students read their feedback", flush=True)

    # 5. isolation, tried from student A's own kernel ---------------------------------------------
    b_home, i_course = hub.home(b), hub.course
    inbound = hub.exchange / hub.course_id / "inbound"
    targets = {
        "B's home": b_home,
        "B's notebook": b_home / NB_REL,
        "B's feedback": b_home / AID / "feedback",
        "B's nbgrader cache (submission secrets)": b_home / ".local" / "share" / "jupyter" / "nbgrader_cache",
        "the exchange's inbound (every submission)": inbound,
        "the exchange's feedback pages": hub.exchange / hub.course_id / "feedback",
        "the instructor's home": hub.home(inst),
        "solutions/": i_course / "solutions" / AID / f"{AID}.ipynb",
        "the gradebook": i_course / "grading" / "gradebook.db",
        "B's collected submission": i_course / "grading" / "submitted" / b / AID / f"{AID}.ipynb",
        "B's feedback page (instructor's copy)": i_course / "grading" / "feedback" / b / AID / f"{AID}.html",
    }
    for label, path in targets.items():
        assert path.exists(), f"{label}: {path} does not exist, the probe would prove nothing"
    probe = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": f"PATHS = {json.dumps({k: str(v) for k, v in targets.items()})}\n" + PROBE,
            }
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (hub.home(a) / "probe.ipynb").write_text(json.dumps(probe))
    subprocess.run(["chown", f"{a}:", str(hub.home(a) / "probe.ipynb")], check=True)
    open_notebook(pa, hub, a, "probe.ipynb")
    jlab.run_all(pa, 1, LONG)
    out = pa.locator(jlab.NB).locator(".jp-OutputArea-output").first.inner_text()
    result = json.loads(out.split("PROBE ", 1)[1])
    assert result == {label: "denied" for label in targets}, result
    # A's browser session cannot enter B's server
    r = pa.request.get(f"{hub.url}/user/{b}/api/contents", max_redirects=0)
    assert r.status in (302, 403), r.status
    print(f"  {time.monotonic() - started:5.0f} s  isolation checked", flush=True)
