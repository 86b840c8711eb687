"""What a person does in JupyterLab, as Playwright steps: open a notebook, run all, wait."""

from __future__ import annotations

import base64
import time

from browserkit import Server
from playwright.sync_api import Locator, Page, expect

# Every code cell shows a number in its prompt once it ran; "[*]" while queued or running.
RUN_STATE = """() => {
    const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
    const prompt = cell => cell.querySelector('.jp-InputPrompt').textContent;
    const ran = cells.filter(cell => /\\[\\d+\\]/.test(prompt(cell)));
    const last = ran.length ? ran[ran.length - 1] : null;
    return {
        cells: cells.length,
        done: ran.length,
        queued: cells.filter(cell => /\\[\\*\\]/.test(prompt(cell))).length,
        error: /Traceback|Error/.test(last ? last.querySelector('.jp-OutputArea').textContent : '')
            ? last.textContent.slice(0, 3000) : null,
    };
}"""


def open_notebook(page: Page, lab: Server, name: str) -> None:
    """Open `name` in a new JupyterLab workspace (no other tabs) and wait for its kernel to idle."""
    workspace = name.removesuffix(".ipynb")
    page.goto(lab.address(f"lab/workspaces/{workspace}/tree/{name}", "reset"))
    expect(page.locator(".jp-NotebookPanel .jp-Notebook")).to_be_visible(timeout=60_000)
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    kernel_dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    expect(idle.or_(kernel_dialog).first).to_be_visible(timeout=60_000)
    if kernel_dialog.is_visible():  # asked before the kernel specs arrived: take the default
        kernel_dialog.get_by_role("button", name="Select").click()
    expect(idle).to_have_count(1, timeout=60_000)


def menu(page: Page, *path: str) -> None:
    """Click through the menu bar, e.g. menu(page, "Run", "Run All Cells"); wait until it closed."""
    page.locator(".lm-MenuBar-item", has_text=path[0]).first.click()
    for label in path[1:]:
        item = page.locator(".lm-Menu .lm-Menu-item").filter(
            has=page.locator(".lm-Menu-itemLabel", has_text=label)
        )
        expect(item.first).to_be_visible()
        item.first.hover()
        item.first.click()
    expect(page.locator(".lm-Menu")).to_have_count(0)


def run_all(page: Page, timeout: float = 120) -> float:
    """Clear every output, Run → Run All Cells, wait until each code cell ran; the seconds taken.

    Fails with the traceback if a cell raised.
    """
    menu(page, "Edit", "Clear Outputs of All Cells")
    expect(page.locator(".jp-Notebook .jp-OutputArea-output")).to_have_count(0)
    started = time.monotonic()
    menu(page, "Run", "Run All Cells")
    if not _started_running(page):  # the click went astray (a menu still closing): once more
        menu(page, "Run", "Run All Cells")
    stopped_polls = 0
    while time.monotonic() - started < timeout:
        state = page.evaluate(RUN_STATE)
        if state["cells"] and state["done"] == state["cells"]:
            expect(
                page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
            ).to_have_count(1)
            return time.monotonic() - started
        # Nothing queued but cells left over: a cell failed and JupyterLab stopped the run.
        stopped_polls = stopped_polls + 1 if state["done"] and not state["queued"] else 0
        if stopped_polls >= 8:
            raise AssertionError(f"Run All stopped after cell {state['done']}:\n{state['error']}")
        page.wait_for_timeout(250)
    raise AssertionError(f"Run All did not finish in {timeout} s: {page.evaluate(RUN_STATE)}")


def _started_running(page: Page, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE)
        if state["queued"] or state["done"] or state["error"]:
            return True
        page.wait_for_timeout(100)
    return False


def output_with(page: Page, text: str) -> Locator:
    """The cell output that contains `text` (a button's label, a title...)."""
    return page.locator(".jp-OutputArea-output").filter(has_text=text)


IMAGE_BYTES = """async img => {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let text = '';
    for (const byte of bytes) text += String.fromCharCode(byte);
    return btoa(text);
}"""


def image_bytes(image: Locator) -> bytes:
    """The bytes the page shows in an <img> (a widget's blob: or a data: URL)."""
    return base64.b64decode(image.evaluate(IMAGE_BYTES))
