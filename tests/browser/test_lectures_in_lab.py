"""Every lecture, as a student uses it in JupyterLab: open, Run All, no errors, play with the widget."""

import json

import pytest

import jlab
from conftest import ROOT, screenshot_path

LECTURES = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
RUN_ALL_TIMEOUT = 150_000  # ms; a lecture runs in 5-30 s alone, longer on a busy machine


def has_slider(nb_path) -> bool:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return "Slider(" in code


@pytest.mark.parametrize("nb_path", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_runs_all_and_its_widget_responds(lab, lab_page, nb_path):
    page = lab_page
    rel = nb_path.relative_to(ROOT).as_posix()
    jlab.open_notebook(page, lab, rel)
    jlab.run_all(page, jlab.code_cell_count(lab.root / rel), RUN_ALL_TIMEOUT)
    jlab.assert_no_error_outputs(page)

    if not has_slider(nb_path):
        page.screenshot(path=str(screenshot_path(nb_path.stem)))
        pytest.fail(f"{rel} has no ipywidgets slider: every lecture needs one to play with")
    before, after_key = jlab.move_slider_with_keyboard(page)
    assert after_key["readout"] != before["readout"], "the arrow key did not move the slider"
    assert (after_key["images"], after_key["text"]) != (before["images"], before["text"]), (
        "the slider moved (keyboard) but the output did not change"
    )
    assert after_key["images"], "the widget's output shows no figure"

    _, after_drag = jlab.drag_slider(page)
    assert after_drag["readout"] != after_key["readout"], "dragging did not move the slider"
    assert (after_drag["images"], after_drag["text"]) != (after_key["images"], after_key["text"]), (
        "the slider moved (drag) but the output did not change"
    )
    jlab.assert_no_error_outputs(page)

    page.locator(jlab.NB).locator(".widget-slider").first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_path(nb_path.stem)))
