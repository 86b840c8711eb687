"""The notebooks as a learner uses them: JupyterLab in chromium, Run All, then clicks and typing."""

from __future__ import annotations

import re
import time
from urllib.parse import unquote

import pytest
from browserkit import Server
from labpage import image_bytes, open_notebook, output_with, run_all
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_a_customer_registered_through_the_form_shows_its_event_and_bad_commands_are_refused(
    lab: Server, page: Page
) -> None:
    open_notebook(page, lab, "01-commands-and-events.ipynb")
    run_all(page)

    form = output_with(page, "Send RegisterCustomer")
    form.get_by_label("customer_id", exact=True).fill("c-77")
    form.get_by_label("name", exact=True).fill("Edsger Dijkstra")
    form.get_by_label("address", exact=True).fill("77 Shortest Path")
    form.get_by_role("button", name="Send RegisterCustomer").click()
    result = form.locator(".widget-html").last  # the result, under the Send button
    expect(result).to_contain_text("accepted")
    expect(result.locator("tr", has_text="CustomerRegistered")).to_contain_text("customer-c-77")
    expect(result).to_contain_text('"name":"Edsger Dijkstra"')

    # The same customer again breaks a rule: the service answers rejected, with its reason.
    form.get_by_role("button", name="Send RegisterCustomer").click()
    expect(result).to_contain_text("rejected")
    expect(result).to_contain_text("customer 'c-77' is already registered")
    expect(result.locator("tr", has_text="CommandRejected")).to_have_count(1)

    form.scroll_into_view_if_needed()


def test_the_cascade_notebook_draws_its_mermaid_graph_as_svg(lab: Server, page: Page) -> None:
    open_notebook(page, lab, "03-cascades.ipynb")
    run_all(page)

    graph = page.locator(".jp-RenderedMermaid").first
    graph.scroll_into_view_if_needed()
    expect(graph).not_to_have_class(re.compile("jp-mod-warning"))  # mermaid could not parse it
    picture = graph.locator("img[src^='data:image/svg+xml']")
    expect(picture).to_be_visible()
    svg = unquote(picture.get_attribute("src") or "").split(",", 1)[1]
    assert "<svg" in svg and svg.rstrip().endswith("</svg>"), svg[:200]
    for label in ("CustomerDeleted", "OrderCancelled", "CommandRejected"):
        assert label in svg, f"{label} is not drawn in the graph"
    assert picture.evaluate("img => img.naturalWidth") > 100  # the browser decoded a real picture


def test_moving_the_history_slider_redraws_the_plot(lab: Server, page: Page) -> None:
    open_notebook(page, lab, "04-time-travel.ipynb")
    run_all(page)

    scrubber = output_with(page, "After event").first
    scrubber.scroll_into_view_if_needed()
    caption = scrubber.get_by_text(re.compile(r"After event \d+ of \d+"))
    expect(caption).to_contain_text(re.compile(r"After event (\d+) of \1:"))  # at the end
    last = int(re.findall(r"\d+", caption.inner_text())[0])
    plot = scrubber.locator("img")
    before = image_bytes(plot)

    handle = scrubber.locator(".noUi-handle")
    handle.focus()
    for _ in range(6):
        handle.press("ArrowLeft")
    expect(caption).to_contain_text(f"After event {last - 6} of {last}: orders ")
    expect(page.get_by_text(f"After event {last - 6} of {last}")).to_have_count(2)  # both views
    deadline = time.monotonic() + 15
    while image_bytes(plot) == before and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    after = image_bytes(plot)
    assert after != before, "the plot did not change when the slider moved"
    assert after.startswith(b"\x89PNG"), after[:16]
