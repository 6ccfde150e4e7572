"""Driving JupyterLab 4 like a person does, waiting on states (never on sleeps).

Measured facts behind every wait: /work/shared/notes/jupyterlab-browser.md. In short: open with
`?reset`, scope every selector to the visible notebook panel, "kernel ready" is the kernel name in
the toolbar AND the execution indicator idle (idle alone shows before the kernel is attached, and
"run all" then silently does nothing), run all from the Run menu, "done" is every prompt numbered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Page, expect

NB = ".jp-NotebookPanel:not(.lm-mod-hidden)"
STDERR = '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'

_PROGRESS_JS = """([sel, n]) => {
  const p = document.querySelector(sel);
  if (!p) return false;
  const err = p.querySelector('STDERR_SELECTOR');
  if (err) return {stderr: err.innerText.slice(0, 3000)};
  const prompts = [...p.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
  if (prompts.length !== n) return false;
  if (!prompts.every(e => /^\\[\\d+\\]:$/.test(e.textContent.trim()))) return false;
  const ind = p.querySelector('.jp-Notebook-ExecutionIndicator');
  if (!ind || ind.getAttribute('data-status') !== 'idle') return false;
  return {done: true};
}""".replace("STDERR_SELECTOR", STDERR.replace("'", "\\'"))

# What a student sees of a widget: the slider's readout, and every image and text of the outputs
# the widgets draw into.
_WIDGET_JS = """(sel) => {
  const p = document.querySelector(sel);
  const slider = p.querySelector('.widget-slider');
  const readout = slider ? (slider.querySelector('.widget-readout') || {}).textContent : null;
  const handle = slider ? slider.querySelector('.noUi-handle') : null;
  const outs = [...p.querySelectorAll('.widget-output')];
  const imgs = outs.flatMap(o => [...o.querySelectorAll('img')].map(i => i.src));
  const text = outs.map(o => o.innerText).join('\\n');
  return {readout: readout && readout.trim(), images: imgs, text: text,
          now: handle && Number(handle.getAttribute('aria-valuenow')),
          min: handle && Number(handle.getAttribute('aria-valuemin')),
          max: handle && Number(handle.getAttribute('aria-valuemax'))};
}"""


def code_cell_count(nb_path: Path) -> int:
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    return sum(c["cell_type"] == "code" for c in nb["cells"])


def open_notebook(page: Page, lab, rel_path: str, timeout: float = 90_000):
    page.goto(f"{lab.url}/lab/tree/{quote(rel_path)}?reset&token={lab.token}")
    panel = page.locator(NB)
    expect(panel).to_have_count(1, timeout=timeout)
    wait_kernel_ready(page, timeout)
    collapse_left_sidebar(page)
    return panel


def collapse_left_sidebar(page: Page) -> None:
    """More room for the notebook (and the screenshots): click the open sidebar tab to close it."""
    current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if current.count():
        current.first.click()
        expect(current).to_have_count(0)


def wait_kernel_ready(page: Page, timeout: float = 90_000) -> None:
    panel = page.locator(NB)
    expect(panel.locator(".jp-NotebookPanel-toolbar .jp-KernelName")).to_have_text(
        re.compile(r"Python 3"), timeout=timeout
    )
    expect(panel.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute("data-status", "idle", timeout=timeout)


def wait_idle(page: Page, timeout: float = 60_000) -> None:
    expect(page.locator(NB).locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=timeout
    )


def menu(page: Page, top: str, command: str) -> None:
    page.locator(f".lm-MenuBar-itemLabel:text-is('{top}')").click()
    page.locator(f".lm-Menu-item[data-command='{command}']").click()


def run_all(page: Page, n_code_cells: int, timeout: float) -> None:
    """Run -> Run All Cells, then wait until every prompt is numbered (or a cell wrote to stderr)."""
    menu(page, "Run", "runmenu:run-all")
    state = page.wait_for_function(_PROGRESS_JS, arg=[NB, n_code_cells], timeout=timeout, polling=250).json_value()
    assert "stderr" not in state, f"a cell wrote to stderr or raised:\n{state['stderr']}"


def assert_no_error_outputs(page: Page) -> None:
    panel = page.locator(NB)
    errors = panel.locator(STDERR)
    assert errors.count() == 0, f"stderr / error outputs: {[t[:500] for t in errors.all_inner_texts()]}"
    prompts = panel.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
    assert all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), prompts


def widget_state(page: Page) -> dict:
    return page.evaluate(_WIDGET_JS, NB)


def _wait_widget_redrawn(page: Page, before: dict, timeout: float) -> dict:
    """The readout moved and the drawn output differs; then the kernel is idle again (final state)."""
    page.wait_for_function(
        """([sel, before]) => {
             const now = (WIDGET_JS)(sel);
             return now.readout !== before.readout
                 && (now.images.length >= before.images.length || before.images.length === 0)
                 && (JSON.stringify(now.images) !== JSON.stringify(before.images) || now.text !== before.text);
           }""".replace("WIDGET_JS", _WIDGET_JS),
        arg=[NB, before],
        timeout=timeout,
        polling=200,
    )
    wait_idle(page, timeout)
    return widget_state(page)


def move_slider_with_keyboard(page: Page, timeout: float = 60_000) -> tuple[dict, dict]:
    before = widget_state(page)
    handle = page.locator(NB).locator(".widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    key = "ArrowRight" if before["now"] < before["max"] else "ArrowLeft"
    handle.press(key)
    return before, _wait_widget_redrawn(page, before, timeout)


def drag_slider(page: Page, timeout: float = 60_000) -> tuple[dict, dict]:
    before = widget_state(page)
    slider = page.locator(NB).locator(".widget-slider").first
    track = slider.locator(".noUi-target").first.bounding_box()
    box = slider.locator(".noUi-handle").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # drag a third of the track towards the side with more room
    room_right = track["x"] + track["width"] - x
    dx = track["width"] / 3 * (1 if room_right > track["width"] / 2 else -1)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=12)
    page.mouse.up()
    return before, _wait_widget_redrawn(page, before, timeout)


def set_cell_source(page: Page, index: int, source: str) -> None:
    """Replace the text of cell `index` (0-based, notebook order) as a student would: select all, type.

    `insert_text` sends the text as one input event, so the editor neither auto-indents nor
    closes brackets; what lands in the cell is exactly `source`."""
    cell = page.locator(NB).locator(".jp-Notebook .jp-Cell").nth(index)
    editor = cell.locator(".cm-content")
    cell.scroll_into_view_if_needed()
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(source)
    expect(editor).to_contain_text(source.strip().splitlines()[-1].strip())
    page.keyboard.press("Escape")  # command mode: the next keystrokes go to the notebook, not the cell


def save(page: Page) -> None:
    page.keyboard.press("Control+s")
    expect(page.locator(NB).locator(".jp-mod-dirty")).to_have_count(0)
