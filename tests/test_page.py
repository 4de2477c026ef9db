"""The analyst's page, end to end: `ledger serve --demo` and a real headless Chromium.

Skipped, with the reason, where no Chromium is on PATH or Playwright is not installed.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.commands import RegisterSource
from tests import factories
from tests.browser import (
    CHROMIUM,
    CONTRAST_SCRIPT,
    DEPLOYMENT,
    LEDGER,
    NO_CHROMIUM,
    STATUS,
    TROOPS,
    UNLABELLED_SCRIPT,
    LiveServer,
    StartingServer,
    assertion_body,
    chromium_context,
    free_port,
)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)"
)
expect = sync_api.expect

SCREENSHOT = Path("/tmp/ledger-page.png")
LIVE_SUBJECT = "page-test.live"


def span(low: str, high: str) -> str:
    """A range as the page writes it: low, an en dash, high."""
    return f"{low}\N{EN DASH}{high}"


ESTIMATE = f'[data-property="{TROOPS}"] .estimate'
STATUS_ROW = f'tr[data-property="{STATUS}"]'


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StartingServer]]:
    """Two servers, started together while the browser starts: `public` (public reads;
    written to only on a subject of its own) and `private` (reads need a token)."""
    started = {
        name: StartingServer(tmp_path_factory.mktemp(f"page-{name}"), public_read=public)
        for name, public in (("public", True), ("private", False))
    }
    yield started
    for starting in started.values():
        starting.stop()


@pytest.fixture
def server(servers: dict[str, StartingServer]) -> LiveServer:
    return servers["public"].server()


@pytest.fixture(scope="module")
def browser(
    servers: dict[str, StartingServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with chromium_context(tmp_path_factory.mktemp("chromium-profile")) as context:
        context.set_default_timeout(8000)
        yield context


class Watched:
    """A page, with every request it made and every script error it met."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )

    def check(self, base: str) -> None:
        assert self.errors == []
        outside = [url for url in self.requests if not url.startswith(base + "/")]
        assert outside == [], "the page asked an outside host"


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    page = browser.new_page()
    yield Watched(page)
    page.close()


def open_page(watched: Watched, server: LiveServer, query: str = "") -> Any:
    page = watched.page
    page.goto(f"{server.base}/{query}")
    expect(page.locator(ESTIMATE)).to_be_visible()
    return page


def test_the_page_shows_the_seeds_answers(watched: Watched, server: LiveServer) -> None:
    page = open_page(watched, server)
    expect(page).to_have_title(f"{DEPLOYMENT} · OSINT ledger")
    expect(page.locator(f'#subjects a[data-subject="{DEPLOYMENT}"]')).to_be_visible()
    expect(page.locator(f'#subjects a[data-subject="{DEPLOYMENT}"]')).to_have_attribute(
        "aria-current", "page"
    )
    expect(page.locator("#subject-heading")).to_have_text(DEPLOYMENT)

    quantity = page.locator(f'[data-property="{TROOPS}"]')
    expect(quantity.locator(".estimate")).to_have_text(span("13,000", "15,000"))
    expect(quantity.locator(".spread")).to_have_text(span("10,000", "12,000"))
    expect(quantity.locator(".basis li")).to_have_count(2)
    expect(quantity.locator("table.claimants tbody tr")).to_have_count(3)
    expect(quantity.locator("table.claimants")).to_contain_text("usually reliable")
    # the chart: a band per step of the estimate and a mark per claimant's figure
    expect(quantity.locator("figure.chart svg[role=img] rect.band")).to_have_count(2)
    expect(quantity.locator("figure.chart svg g.point")).to_have_count(3)
    # kept to the plot, off the axis labels
    expect(quantity.locator("figure.chart svg g[clip-path] > g.point")).to_have_count(3)

    status = page.locator(STATUS_ROW)
    expect(status.locator(".status-value")).to_have_text("confirmed")
    expect(status.locator(".since")).to_have_text("2025-04-28")
    expect(status.locator(".by")).to_contain_text("Kim Jong Un")

    entry = page.locator('[data-assertion="ap-2025-04-28.troops-fall-2024"]')
    expect(entry.locator("blockquote")).to_contain_text("about 10,000-12,000 troops")
    expect(entry.locator(".claimants-line")).to_contain_text(
        "U.S. intelligence officials (us-intel; reliability B: usually reliable)"
    )
    expect(entry.locator(".document")).to_contain_text(
        "“North Korea confirms it sent troops to Russia”, Associated Press, published 2025-04-28"
    )
    expect(entry.locator(".change")).to_have_text(
        f"Estimate: no estimate → {span('10,000', '12,000')}"
    )
    # each entry's details say whose they are to a screen reader (ten alike were not)
    expect(entry.locator("summary")).to_have_text(
        "More about this assertion ap-2025-04-28.troops-fall-2024"
    )

    page.screenshot(path=str(SCREENSHOT))
    watched.check(server.base)


def test_the_tabs_title_names_the_subject_and_the_point_in_time(
    watched: Watched, server: LiveServer
) -> None:
    page = open_page(watched, server, f"?subject={DEPLOYMENT}&as_of=2024&seq=20")
    expect(page).to_have_title(f"{DEPLOYMENT} · stated by 2024 · at event 20 · OSINT ledger")
    page.click("#reset")
    expect(page).to_have_title(f"{DEPLOYMENT} · OSINT ledger")
    watched.check(server.base)


def test_as_of_requeries_and_the_url_keeps_it(watched: Watched, server: LiveServer) -> None:
    page = open_page(watched, server)
    page.fill("#as-of", "2025-02")
    page.press("#as-of", "Enter")
    expect(page.locator(ESTIMATE)).to_have_text(span("10,000", "12,000"))
    expect(page).to_have_url(re.compile(r"[?&]as_of=2025-02(&|$)"))
    expect(page.locator(STATUS_ROW).locator(".status-value")).to_have_text("reported")
    expect(page.locator("#notice")).to_contain_text("claims stated by 2025-02")

    page.reload()
    expect(page.locator("#as-of")).to_have_value("2025-02")
    expect(page.locator(ESTIMATE)).to_have_text(span("10,000", "12,000"))

    page.go_back()  # the view before the as-of: everything
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    expect(page.locator("#as-of")).to_have_value("")
    watched.check(server.base)


def test_a_time_the_ledger_cannot_read_is_named_and_the_view_stays(
    watched: Watched, server: LiveServer
) -> None:
    page = open_page(watched, server)
    page.fill("#as-of", "2025-13")
    page.press("#as-of", "Enter")
    expect(page.locator("#as-of-error")).to_contain_text("invalid time '2025-13'")
    expect(page.locator("#as-of")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    assert "as_of" not in page.url
    watched.errors.clear()  # the browser logs the 422 itself


def test_a_link_to_a_name_no_subject_can_have_says_so_and_offers_the_list(
    watched: Watched, server: LiveServer
) -> None:
    page = watched.page
    page.goto(f"{server.base}/?subject=North-Korea")
    expect(page.locator("#error")).to_contain_text("No subject can be named “North-Korea”")
    expect(page.locator("#error")).to_contain_text("1 to 128 of a-z")
    expect(page.locator("#error")).not_to_contain_text("regex")
    expect(page.locator("#subject-heading")).to_have_text("No view yet")  # not "Loading…"
    expect(page.locator("#live-state")).to_have_text("Not following the log yet: no view is shown.")
    page.locator(f'#subjects a[data-subject="{DEPLOYMENT}"]').click()
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    expect(page.locator("#error")).to_have_text("")
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    watched.errors.clear()  # the browser logs the first load's 422 itself


def test_the_ledger_as_it_knew_at_a_seq(watched: Watched, server: LiveServer) -> None:
    head = server.get("/v1/log/head")["size"]
    page = open_page(watched, server, f"?subject={DEPLOYMENT}&seq=14")
    expect(page.locator("#seq-range")).to_have_attribute("max", str(head))
    expect(page.locator("#seq")).to_have_value("14")
    expect(page.locator(ESTIMATE)).to_have_text(span("10,000", "12,000"))
    expect(page.locator(".entry")).to_have_count(1)

    # by keyboard: the slider to its end follows the latest again, and the URL drops seq
    page.focus("#seq-range")
    page.keyboard.press("End")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    expect(page).not_to_have_url(re.compile(r"seq="))

    page.fill("#seq", "20")
    page.press("#seq", "Enter")
    expect(page).to_have_url(re.compile(r"[?&]seq=20(&|$)"))
    page.reload()
    expect(page.locator("#seq")).to_have_value("20")
    expect(page.locator("#seq-range")).to_have_value("20")

    # a value typed past the head is refused beside the box, and the view stays, whether
    # Enter was pressed in the box or Show clicked
    page.fill("#seq", "9999")
    page.press("#seq", "Enter")
    expect(page.locator("#seq-error")).to_contain_text("9999 is past the log's last event")
    expect(page.locator("#seq")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"[?&]seq=20(&|$)"))
    page.fill("#seq", "8888")
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page.locator("#seq-error")).to_contain_text("8888 is past the log's last event")
    expect(page.locator("#seq")).to_have_value("8888")
    expect(page.locator("#seq")).to_be_focused()
    # the head typed is a position kept as given (new events do not move the view)
    page.fill("#seq", str(head))
    page.press("#seq", "Enter")
    expect(page).to_have_url(re.compile(rf"[?&]seq={head}(&|$)"))
    expect(page.locator("#seq-error")).to_have_text("")
    page.fill("#seq", "14")
    page.press("#seq", "Enter")
    expect(page).to_have_url(re.compile(r"[?&]seq=14(&|$)"))
    # Back brings the box back with the view even while it has the focus
    page.focus("#seq")
    page.go_back()
    expect(page.locator("#seq")).to_have_value(str(head))
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    # said from the point gone back to, not from the view at seq 14 still on screen
    expect(page.locator("#notice")).to_have_text(
        f"Showing every claim, as known from the log up to event {head} of {head}."
    )

    # a link's seq that is no log position is said, and the latest shown
    for bad, said in (("abc", "the link's seq=abc"), (str(head + 50), "past the log's last")):
        page.goto(f"{server.base}/?subject={DEPLOYMENT}&seq={bad}")
        expect(page.locator("#seq-error")).to_contain_text(said)
        expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    watched.check(server.base)


def test_a_links_known_at_shows_what_the_ledger_held_then(
    watched: Watched, server: LiveServer
) -> None:
    """The API takes `known_at` beside `seq`: a link with it shows the view at the log
    position it names (fixed, as a link's seq is), and the URL then gives that seq."""
    subject = "page-test.known-at-link"  # after the seed's subject: the first shown stays it
    receipts = [
        server.post(
            "/v1/assertions",
            {
                "subject": subject,
                "property": TROOPS,
                "value": {"low": low, "high": low + 100},
                "claimants": ["us-intel"],
                "stated_at": "2025-01",
                "document": {"publisher": "P", "published_at": "2025-01-01"},
                "quote": f"About {low}.",
            },
        )
        for low in (100, 300)
    ]
    first, second = receipts
    assert first["recorded_at"] < second["recorded_at"]
    page = open_page(watched, server, f"?subject={subject}&known_at={first['recorded_at']}")
    expect(page).to_have_url(re.compile(rf"[?&]seq={first['seq']}(&|$)"))
    assert "known_at" not in page.url
    expect(page.locator("#seq")).to_have_value(str(first["seq"]))
    expect(page.locator(ESTIMATE)).to_have_text(span("100", "200"))
    server.post(  # recorded after the link's moment: not seen
        "/v1/assertions/" + first["assertion_id"] + "/retract", {"reason": "a test"}
    )
    page.reload()
    expect(page.locator(ESTIMATE)).to_have_text(span("100", "200"))

    page.goto(f"{server.base}/?subject={subject}&known_at=yesterday")
    expect(page.locator("#seq-error")).to_contain_text(
        "The link's known_at=yesterday is not a time the ledger reads"
    )
    expect(page.locator("#seq")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(ESTIMATE)).to_have_text(span("300", "400"))  # the latest
    watched.errors.clear()  # the browser logs the 422 itself


def test_steps_of_the_slider_in_a_row_are_one_entry_of_the_history(
    watched: Watched, server: LiveServer
) -> None:
    """Five presses of an arrow key on the slider read five views, but Back goes to where
    they began: the reader does not press Back five times to leave them."""
    page = open_page(watched, server, f"?subject={DEPLOYMENT}")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    page.focus("#seq-range")
    head = int(page.locator("#seq-range").get_attribute("max") or 0)
    for step in range(1, 6):  # each read before the next press, as a reader steps through
        page.keyboard.press("ArrowLeft")
        expect(page).to_have_url(re.compile(rf"seq={head - step}\b"))
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"seq="))
    expect(page.locator("#seq-range")).to_have_value(str(head))
    watched.check(server.base)


def test_the_controls_never_disagree_with_the_view(watched: Watched, server: LiveServer) -> None:
    """Enter in a box fires its change and the form's submit: one refused value must not
    leave the controls saying one point and the view showing another, nor an error for a
    value no longer in the box."""
    page = open_page(watched, server, f"?subject={DEPLOYMENT}")
    page.fill("#as-of", "2025-02-30")
    page.press("#as-of", "Enter")
    expect(page.locator("#as-of-error")).to_contain_text("Not a time the ledger reads")
    page.fill("#seq", "14")
    page.press("#seq", "Enter")  # refused too: the as-of box still holds the bad time
    page.fill("#as-of", "")
    page.click("#controls button[type=submit]")
    expect(page).to_have_url(re.compile(r"[?&]seq=14(&|$)"))
    expect(page.locator(ESTIMATE)).to_have_text(span("10,000", "12,000"))
    expect(page.locator("#as-of-error")).to_have_text("")
    expect(page.locator("#subject .meta")).to_contain_text("the log up to event 14 of")

    page.click("#reset")
    expect(page).not_to_have_url(re.compile(r"seq="))
    page.fill("#as-of", "last fall")
    page.press("#as-of", "Enter")
    expect(page.locator("#as-of-error")).to_contain_text("Not a time the ledger reads")
    page.click("#reset")  # the view is already the latest of every claim
    expect(page.locator("#as-of-error")).to_have_text("")
    expect(page.locator("#as-of")).not_to_have_attribute("aria-invalid", "true")
    watched.errors.clear()  # the browser logs the 422s itself
    watched.check(server.base)


def test_the_page_is_accessible(watched: Watched, server: LiveServer) -> None:
    page = open_page(watched, server)
    assert page.evaluate(UNLABELLED_SCRIPT) == []
    assert page.evaluate(CONTRAST_SCRIPT) == []
    assert page.locator("h1").count() == 1
    expect(page.locator("h3")).to_have_text(["Estimates", "Statuses", "Timeline"])
    expect(page.locator("#notice")).to_have_attribute("aria-live", "polite")
    expect(page.locator("table.statuses th[scope=col]").first).to_be_visible()

    # the keyboard reaches the controls, and focus is visible
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "as-of":
            break
    expect(page.locator("#as-of")).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")

    # readable on a laptop: nothing wider than the window
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    watched.check(server.base)


def test_new_events_show_without_a_reload(watched: Watched, server: LiveServer) -> None:
    page = open_page(watched, server)
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    page.evaluate("window.__notReloaded = true")

    # a new subject joins the list
    first = server.post(
        "/v1/assertions",
        assertion_body(subject=LIVE_SUBJECT, value={"low": 100, "high": 200}, stated_at="2025-01"),
    )
    link = page.locator(f'#subjects a[data-subject="{LIVE_SUBJECT}"]')
    expect(link).to_contain_text("1 assertion, 1 property")
    link.click()
    expect(page.locator("#subject-heading")).to_have_text(LIVE_SUBJECT)
    expect(page.locator("#subject-heading")).to_be_focused()
    expect(page.locator(ESTIMATE)).to_have_text(span("100", "200"))
    expect(page).to_have_url(re.compile(rf"[?&]subject={re.escape(LIVE_SUBJECT)}(&|$)"))

    # a new assertion on the subject in view: the estimate, timeline and chart follow
    second = server.post("/v1/assertions", assertion_body(subject=LIVE_SUBJECT))
    expect(page.locator(ESTIMATE)).to_have_text(span("14,000", "16,000"))
    entry = page.locator(f'[data-assertion="{second["assertion_id"]}"]')
    expect(entry.locator("blockquote")).to_have_text(
        "Officials now put the number at about 15,000 troops."
    )
    expect(entry.locator(".mark-new")).to_be_visible()
    expect(entry.locator(".document a")).to_have_attribute("href", "https://example.org/troops")
    expect(page.locator("#notice")).to_contain_text("Updated: 1 new event")
    expect(page.locator("figure.chart svg[role=img] rect.band")).to_have_count(2)

    # a retraction: the view steps back, the entry stays, marked
    server.post(f"/v1/assertions/{second['assertion_id']}/retract", {"reason": "test entry"})
    expect(page.locator(ESTIMATE)).to_have_text(span("100", "200"))
    expect(entry.locator(".mark-retracted")).to_contain_text("test entry")
    expect(page.locator(f'[data-assertion="{first["assertion_id"]}"]')).to_be_visible()

    # an event on another subject: this view is the same at the new head, and says so
    server.post("/v1/assertions", assertion_body(subject=f"{LIVE_SUBJECT}-other"))
    head = server.get("/v1/log/head")["size"]
    expect(page.locator("#seq-text")).to_contain_text(f"{head} of {head}")
    expect(page.locator(".known-from").first).to_have_text(f"the whole log ({head} events)")

    assert page.evaluate("window.__notReloaded") is True
    watched.check(server.base)


def test_a_new_grade_of_a_source_the_view_names_is_announced(
    watched: Watched, server: LiveServer
) -> None:
    subject, source = "page-test.regraded", "page-test-regraded"
    server.post(
        "/v1/sources", {"id": source, "name": "Regraded", "kind": "media", "reliability": "B"}
    )
    server.post("/v1/assertions", assertion_body(subject=subject, claimants=[source]))
    page = watched.page
    page.goto(f"{server.base}/?subject={subject}")
    claimant = page.locator(".claimant .rel").first
    expect(claimant).to_have_text(f"({source}; reliability B: usually reliable)")
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    changed = httpx.patch(
        f"{server.base}/v1/sources/{source}", json={"reliability": "D"}, headers=server.auth()
    )
    assert changed.status_code == 200, changed.text
    expect(page.locator("#notice")).to_have_text(
        f"Source Regraded changed (reliability) at event {changed.json()['seq']}."
    )
    expect(claimant).to_have_text(f"({source}; reliability D: not usually reliable)")
    watched.check(server.base)


def test_a_live_event_outside_the_as_of_shown_is_not_announced(
    watched: Watched, server: LiveServer
) -> None:
    """A claim stated after the view's as_of leaves the view as it was: the page takes it
    in without saying "Updated"; one stated by then is announced."""
    subject = "page-test.as-of-notice"
    server.post("/v1/assertions", assertion_body(subject=subject, stated_at="2025-01"))
    page = open_page(watched, server, f"?subject={subject}&as_of=2025-02")
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    later = server.post("/v1/assertions", assertion_body(subject=subject, stated_at="2025-06"))
    expect(page.locator("#seq-text")).to_contain_text(f"{later['seq']} of {later['seq']}")
    expect(page.locator(f'[data-assertion="{later["assertion_id"]}"]')).to_have_count(0)
    expect(page.locator("#notice")).not_to_contain_text("Updated")
    inside = server.post("/v1/assertions", assertion_body(subject=subject, stated_at="2025-02"))
    expect(page.locator("#notice")).to_have_text(
        f"Updated: 1 new event on {subject} ({TROOPS}), up to event {inside['seq']}."
    )
    watched.check(server.base)


def test_a_live_update_keeps_the_readers_place(watched: Watched, server: LiveServer) -> None:
    """A panel the reader opened stays open and the keyboard focus stays where it was when
    new events redraw the subject; a view kept at a position says the log's new size in
    every place it gives it; a dispute says who stands on which side."""
    subject = "page-test.place"
    first, _ = (  # on the same day, one confirms and the other denies
        server.post(
            "/v1/assertions",
            assertion_body(
                subject=subject,
                property="base.status",
                value={"status": value},
                mode=None,
                claimants=[claimant],
                stated_at="2025-03",
            ),
        )
        for value, claimant in (("confirmed", "kr-jcs"), ("denied", "us-intel"))
    )
    page = watched.page
    page.goto(f"{server.base}/?subject={subject}")
    row = page.locator('tr[data-property="base.status"]')
    expect(row.locator(".status-value")).to_have_text("disputed")
    expect(row.locator(".by")).to_have_text(re.compile(r"^confirmed: .+; denied: .+$"))

    entry = page.locator(f'[data-assertion="{first["assertion_id"]}"]')
    entry.locator("summary").click()
    expect(entry.locator("details")).to_have_attribute("open", "")
    entry.locator("summary").focus()
    server.post("/v1/assertions", assertion_body(subject=subject, stated_at="2025-04"))
    expect(page.locator("#notice")).to_contain_text("Updated: 1 new event")
    expect(entry.locator("details")).to_have_attribute("open", "")
    expect(entry.locator("summary")).to_be_focused()
    # a subject's link in the list keeps the focus too
    link = page.locator(f'#subjects a[data-subject="{subject}"]')
    link.focus()
    server.post("/v1/assertions", assertion_body(subject=subject, stated_at="2025-04-02"))
    expect(page.locator("#notice")).to_contain_text("up to event")
    expect(link).to_contain_text("4 assertions")
    expect(link).to_be_focused()

    # kept at a position: the meta line and the controls give the same size of the log
    head = server.get("/v1/log/head")["size"]
    page.fill("#seq", str(head - 1))
    page.press("#seq", "Enter")
    expect(page.locator("#subject .meta")).to_contain_text(f"up to event {head - 1} of {head}")
    server.post("/v1/assertions", assertion_body(subject=subject, stated_at="2025-05"))
    expect(page.locator("#subject .meta")).to_contain_text(f"up to event {head - 1} of {head + 1}")
    expect(page.locator("#seq-text")).to_have_text(f"{head - 1} of {head + 1}")
    watched.check(server.base)


def test_reads_with_a_token_typed_into_the_page(
    watched: Watched, servers: dict[str, StartingServer]
) -> None:
    server = servers["private"].server()
    assert httpx.get(f"{server.base}/v1/subjects").status_code == 401
    page = watched.page
    page.goto(server.base + "/")
    expect(page.locator("#error")).to_contain_text("needs a token")
    expect(page.locator("#token")).to_be_focused()

    page.fill("#token", server.token)
    page.press("#token", "Enter")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    assert page.evaluate("sessionStorage.getItem('ledger.token')") == server.token
    assert page.evaluate("localStorage.length") == 0
    assert server.token not in page.url

    # EventSource cannot send the header: the page streams through fetch() instead
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    receipt = server.post("/v1/assertions", assertion_body())
    expect(page.locator(f'[data-assertion="{receipt["assertion_id"]}"]')).to_be_visible()
    expect(page.locator(ESTIMATE)).to_have_text(span("14,000", "16,000"))

    page.reload()  # the tab keeps the token
    expect(page.locator(ESTIMATE)).to_have_text(span("14,000", "16,000"))
    page.click("#token-box summary")  # Escape closes the box, as a dialog, onto its opener
    expect(page.locator("#token")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#token")).to_be_hidden()
    expect(page.locator("#token-box summary")).to_be_focused()
    page.click("#token-box summary")
    page.click("#token-forget")
    expect(page.locator("#error")).to_contain_text("needs a token")
    # nothing read with the token stays on screen, nor is the list said to be empty
    expect(page.locator("#subject-heading")).to_have_text("Reads need a token")
    expect(page.locator("#subjects-empty")).to_be_hidden()
    assert page.locator("#as-of-choices option").count() == 0
    expect(page.locator(ESTIMATE)).to_have_count(0)
    expect(page.locator("#subjects a")).to_have_count(0)

    page.fill("#token", "ldg_not-a-token")  # a refused token is dropped, never "in use"
    page.press("#token", "Enter")
    expect(page.locator("#error")).to_contain_text("The token was refused")
    expect(page.locator("#token-box summary")).to_have_text("Access token")
    assert page.evaluate("sessionStorage.getItem('ledger.token')") is None
    watched.errors.clear()  # the browser logs the 401s itself
    watched.check(server.base)


def test_without_a_stream_the_page_polls_for_events(
    watched: Watched, servers: dict[str, StartingServer]
) -> None:
    server = servers["private"].server()
    subject = "page-test.polled"
    page = watched.page
    page.route("**/v1/events/stream*", lambda route: route.abort())
    page.add_init_script(f"sessionStorage.setItem('ledger.token', {json.dumps(server.token)})")
    server.post(
        "/v1/assertions",
        assertion_body(subject=subject, value={"low": 100, "high": 200}, stated_at="2025-01"),
    )
    page.goto(f"{server.base}/?subject={subject}")
    expect(page.locator(ESTIMATE)).to_have_text(span("100", "200"))
    expect(page.locator("#live-state")).to_have_text("Live: checking for new events every 2 s")

    server.post("/v1/assertions", assertion_body(subject=subject))
    expect(page.locator(ESTIMATE)).to_have_text(span("14,000", "16,000"))
    watched.errors.clear()  # the browser logs the aborted stream itself
    watched.check(server.base)


def test_the_feed_starts_once_a_bad_as_of_in_the_url_is_fixed(
    watched: Watched, server: LiveServer
) -> None:
    subject = "page-test.after-bad-as-of"
    page = watched.page
    page.goto(f"{server.base}/?subject={DEPLOYMENT}&as_of=2025-13")
    expect(page.locator("#as-of-error")).to_contain_text("invalid time '2025-13'")
    expect(page.locator("#as-of")).to_have_value("2025-13")
    expect(page.locator("#subject-heading")).to_have_text("No view yet")  # not "Loading…"

    page.fill("#as-of", "")
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    expect(page.locator("#seq-text")).to_contain_text("the latest")
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    assert any("/v1/events/stream" in url for url in watched.requests)

    server.post(
        "/v1/assertions",
        assertion_body(subject=subject, value={"low": 100, "high": 200}, stated_at="2025-01"),
    )
    expect(page.locator(f'#subjects a[data-subject="{subject}"]')).to_contain_text("1 assertion")
    watched.errors.clear()  # the browser logs the first load's 422 itself
    watched.check(server.base)


def test_a_refused_time_keeps_its_message_while_the_view_moves_on(
    watched: Watched, server: LiveServer
) -> None:
    """A load after a refused "as stated by" time (a live event, another subject) cleared
    its message, leaving the refused text in the box beside a view at another time."""
    other = "page-test.after-a-refused-time"
    server.post("/v1/assertions", assertion_body(subject=other, stated_at="2025-01"))
    page = open_page(watched, server, f"?subject={DEPLOYMENT}&as_of=2025-02")
    page.fill("#as-of", "2025-3")
    page.press("#as-of", "Enter")
    expect(page.locator("#as-of-error")).to_contain_text("Not a time the ledger reads")
    page.locator(f'#subjects a[data-subject="{other}"]').click()
    expect(page.locator("#subject-heading")).to_have_text(other)
    expect(page.locator("#as-of")).to_have_value("2025-3")
    expect(page.locator("#as-of-error")).to_contain_text("Not a time the ledger reads")
    expect(page.locator("#as-of")).to_have_attribute("aria-invalid", "true")
    page.fill("#as-of", "2025-02")  # the view's own time again: nothing is wrong any more
    page.press("#as-of", "Enter")
    expect(page.locator("#as-of-error")).to_have_text("")
    watched.errors.clear()  # the browser logs the 422 itself
    watched.check(server.base)


def test_a_link_to_one_assertion_lands_on_it(watched: Watched, server: LiveServer) -> None:
    entry = "a-ap-2025-04-28.deployment-confirmed-kim"
    page = watched.page
    page.goto(f"{server.base}/?subject={DEPLOYMENT}#{entry}")
    expect(page.locator(f'[id="{entry}"]')).to_be_in_viewport()
    assert page.evaluate("window.scrollY") > 0
    page.goto(f"{server.base}/?subject={DEPLOYMENT}#a-%ZZ")  # not percent-encoded text
    expect(page.locator(ESTIMATE)).to_be_visible()
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    watched.check(server.base)  # and no script error


def test_a_links_as_of_is_read_as_the_box_reads_it(watched: Watched, server: LiveServer) -> None:
    """The box trims what is typed into it; a link's as_of with spaces around it (as a
    copy and paste gives it) was sent as it was, and refused."""
    page = watched.page
    page.goto(f"{server.base}/?subject={DEPLOYMENT}&as_of=%202024%20")
    expect(page.locator(ESTIMATE)).to_have_text(span("10,000", "12,000"))
    expect(page.locator("#as-of")).to_have_value("2024")
    expect(page.locator("#as-of-error")).to_have_text("")
    watched.check(server.base)


def test_hostile_text_stays_in_its_place(watched: Watched, server: LiveServer) -> None:
    """A name with an unclosed right-to-left override cannot reorder its neighbours, a
    quote keeps its line breaks and wraps however long its words, one with direction
    controls is marked as reading other than it holds, and ids stay unique
    where properties or assertion ids differ only by `.`/`-` or a suffix."""
    subject = "hostile-subject"
    # the API refuses such a name now; a ledger may hold one from an earlier version
    with factories.ledger(server.log.parent / "l.db") as store:
        factories.run(store, RegisterSource(id="rlo-src", name="Agency \u202e", kind="official"))
    refused = httpx.post(
        f"{server.base}/v1/sources",
        json={"id": "rlo-src2", "name": "Agency \u202e", "kind": "official"},
        headers=server.auth(),
    )
    assert refused.status_code == 422
    document = {"publisher": "P", "published_at": "2025-01-01"}
    for assertion_id, prop, quote in [
        ("d1", "troops.deployed", "first line\nsecond line"),
        ("d1-h", "troops-deployed", "W" * 3000),
        ("d2", "troops.reversed", "plain words \u202ereversed text\u2066"),
    ]:
        server.post(
            "/v1/assertions",
            {
                "assertion_id": assertion_id,
                "subject": subject,
                "property": prop,
                "value": {"low": 100, "high": 200},
                "claimants": ["rlo-src", "us-intel"],
                "stated_at": "2025-01",
                "document": document,
                "quote": quote,
            },
        )
    titled = {"publisher": "P", "published_at": "2025-01-01", "title": "a \u202eheadline"}
    server.post(
        "/v1/assertions",
        assertion_body(
            assertion_id="d3", subject=subject, property="troops.titled", document=titled
        ),
    )
    page = watched.page
    page.goto(f"{server.base}/?subject={subject}")
    expect(page.locator('[data-assertion="d3"] .direction-note')).to_have_text(
        "This document's title holds a character (U+202E) that turns the direction of the "
        "text after it: on screen it may read other than the characters it holds."
    )
    entry = page.locator('[data-assertion="d1"]')
    expect(entry.locator("blockquote")).to_contain_text("first line")
    duplicated = page.evaluate(
        "() => { const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);"
        " return ids.filter((id, i) => ids.indexOf(id) !== i); }"
    )
    assert duplicated == []
    isolated = page.evaluate(
        "() => [...document.querySelectorAll('.claimant')].every((e) =>"
        " getComputedStyle(e).unicodeBidi === 'isolate'"
        " && e.querySelector('bdi') !== null)"
    )
    assert isolated
    quote = entry.locator("blockquote")
    assert quote.evaluate("(e) => getComputedStyle(e).whiteSpace") == "pre-line"
    # a quote may hold direction controls (the document's own words): the page says so
    expect(page.locator('[data-assertion="d2"] .direction-note')).to_contain_text(
        "(U+202E, U+2066) that turn the direction of the text after them"
    )
    expect(entry.locator(".direction-note")).to_have_count(0)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 20
    watched.check(server.base)


def test_a_correction_marks_the_original_only_from_its_own_statement_time(
    watched: Watched, server: LiveServer
) -> None:
    """Before a correction's `stated_at` the original holds (the contract's rule), so at an
    earlier `as_of` it counts and is not marked superseded."""
    subject = "corrected-subject"
    base = {
        "subject": subject,
        "property": "troops.deployed",
        "claimants": ["us-intel"],
        "document": {"publisher": "P", "published_at": "2025-06-01"},
        "quote": "q",
    }
    server.post(
        "/v1/assertions",
        {**base, "assertion_id": "x2", "value": {"low": 1, "high": 2}, "stated_at": "2025-02"},
    )
    server.post(
        "/v1/assertions",
        {
            **base,
            "assertion_id": "x6",
            "value": {"low": 5, "high": 6},
            "stated_at": "2025-05",
            "supersedes": "x2",
        },
    )
    page = watched.page
    page.goto(f"{server.base}/?subject={subject}&as_of=2025-03")
    original = page.locator('[data-assertion="x2"]')
    expect(original.locator(".change")).to_be_visible()  # it counts
    expect(original.locator(".mark-superseded")).to_have_count(0)
    expect(original.locator(".mark-later")).to_have_text("Corrected by x6, stated after this point")
    expect(original.locator(".mark-later a")).to_have_count(0)  # x6 is not on the page
    page.goto(f"{server.base}/?subject={subject}")
    original = page.locator('[data-assertion="x2"]')
    expect(original.locator(".mark-superseded")).to_have_text("Superseded by x6")
    expect(original.locator(".change")).to_have_count(0)
    watched.check(server.base)


def test_an_original_that_counts_again_says_why(watched: Watched, server: LiveServer) -> None:
    """The contract's liveness: an assertion is superseded only by one that counts. So when
    a correction is itself corrected, the original counts again: the page says so beside
    it instead of showing it as if nothing had corrected it."""
    subject = "chain-subject"
    base = assertion_body(subject=subject, claimants=["us-intel"])
    for n, supersedes in (("c1", None), ("c2", "c1"), ("c3", "c2")):
        value = {"low": int(n[1]) * 1000, "high": int(n[1]) * 1000 + 1}
        body = {**base, "assertion_id": n, "value": value, "stated_at": f"2025-0{n[1]}"}
        server.post("/v1/assertions", {**body, "supersedes": supersedes} if supersedes else body)
    page = watched.page
    page.goto(f"{server.base}/?subject={subject}")
    first = page.locator('[data-assertion="c1"]')
    expect(first.locator(".mark-restored")).to_have_text(
        "Counts again: its correction c2 was itself corrected by c3"
    )
    expect(first.locator(".change")).to_be_visible()  # it counts: that is the rule
    expect(page.locator('[data-assertion="c2"] .mark-superseded')).to_have_text("Superseded by c3")
    expect(page.locator('[data-assertion="c3"] .marks')).to_have_count(0)
    # the chart's band is the estimate at each month, c2's month included, though c2 no
    # longer counts: a correction stated later does not reach back
    expect(page.locator("figure.chart rect.band title")).to_have_text(
        [f"From 2025-0{n}: {span(f'{n},000', f'{n},001')}" for n in (1, 2, 3)]
    )

    # c3 retracted: c2 counts and supersedes c1 again; c1 is not marked as brought back,
    # and c2 says why it counts though c3 names it
    server.post("/v1/assertions/c3/retract", {"reason": "wrong entry"})
    page.reload()
    expect(page.locator('[data-assertion="c1"] .mark-superseded')).to_have_text("Superseded by c2")
    expect(page.locator('[data-assertion="c2"] .change')).to_be_visible()
    expect(page.locator('[data-assertion="c1"] .mark-restored')).to_have_count(0)
    expect(page.locator('[data-assertion="c2"] .mark-restored')).to_have_text(
        "Counts: its correction c3 was retracted"
    )

    # c2 ranked deprecated: c1 counts again, and says so
    server.post("/v1/assertions/c2/rank", {"rank": "deprecated", "reason": "judged wrong"})
    page.reload()
    expect(page.locator('[data-assertion="c1"] .mark-restored')).to_have_text(
        "Counts: its correction c2 is deprecated"
    )
    expect(page.locator('[data-assertion="c1"] .change')).to_be_visible()
    watched.check(server.base)


def new_key(db: Path, role: str, name: str | None = None) -> str:
    """A key made by `ledger keys create`: its token, the last line it prints."""
    args = [str(LEDGER), "keys", "create", "--role", role, "--db", str(db)]
    args += [] if name is None else ["--name", name]
    created = subprocess.run(args, capture_output=True, text=True, check=True)
    return created.stdout.strip().splitlines()[-1]


def test_the_first_subject_of_an_empty_ledger_shows_as_it_arrives(
    watched: Watched, tmp_path: Path
) -> None:
    db, port = tmp_path / "empty.db", free_port()
    auth = {"Authorization": f"Bearer {new_key(db, 'admin')}"}
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(LEDGER), "serve", "--public-read", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=base, headers=auth, timeout=10) as http:
            for _ in range(300):
                try:
                    if http.get("/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            page = watched.page
            page.goto(f"{base}/")
            expect(page.locator("#subject-heading")).to_have_text("No subject chosen")
            expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
            source = {"id": "s1", "name": "Source one", "kind": "official"}
            assert http.post("/v1/sources", json=source).status_code == 201
            time.sleep(0.5)  # the source arrives alone, in a batch of its own
            body = assertion_body(subject="first-subject", claimants=["s1"])
            assert http.post("/v1/assertions", json=body).status_code == 201
            expect(page.locator("#subject-heading")).to_have_text("first-subject")
            expect(page.locator(ESTIMATE)).to_have_text(span("14,000", "16,000"))
            expect(page).to_have_url(re.compile(r"[?&]subject=first-subject(&|$)"))  # shareable
        watched.check(base)
    finally:
        process.terminate()
        process.wait(10)


def test_a_server_out_of_reach_is_said_so_and_the_controls_keep_the_view(
    watched: Watched, server: LiveServer
) -> None:
    page = open_page(watched, server, f"?subject={DEPLOYMENT}")
    page.route("**/v1/**", lambda route: route.abort())  # as if the server were down
    page.fill("#as-of", "2025-01")
    page.press("#as-of", "Enter")
    expect(page.locator("#error")).to_contain_text("The server cannot be reached")
    expect(page.locator("#as-of")).to_have_value("")  # the view shown is still every claim
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    page.unroute("**/v1/**")
    page.fill("#as-of", "2024")
    page.press("#as-of", "Enter")
    expect(page.locator(ESTIMATE)).to_have_text(span("10,000", "12,000"))
    expect(page.locator("#error")).to_have_text("")
    watched.errors.clear()  # the browser logs the aborted requests itself
    watched.check(server.base)


def test_a_server_error_on_a_change_puts_the_controls_back_to_the_view(
    watched: Watched, server: LiveServer
) -> None:
    """A 500 on the reads of a new point: the view stays, and so do the controls (they
    showed the new point while the view was the old one, and the retry read the old)."""
    page = open_page(watched, server, f"?subject={DEPLOYMENT}")
    body = '{"status": 500, "title": "Internal Server Error", "detail": "broken"}'
    page.route(
        "**/v1/subjects/*/timeline**",
        lambda route: route.fulfill(status=500, body=body, content_type="application/problem+json"),
    )
    page.fill("#as-of", "2024")
    page.press("#as-of", "Enter")
    expect(page.locator("#error")).to_contain_text("HTTP 500")
    expect(page.locator("#as-of")).to_have_value("")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    page.unroute("**/v1/subjects/*/timeline**")
    # read again, as shown: within the backoff (2 s, then twice as long after each failure
    # while the route was still there, whatever the machine's pace)
    expect(page.locator("#error")).to_have_text("", timeout=35_000)
    # the controls and the view agree: the old point, or the new one where the change was
    # asked again once the server answered (Enter sends both a change and a submit, and the
    # second waits its turn behind the first)
    box = page.locator("#as-of").input_value()
    assert box in ("", "2024"), box
    expect(page.locator(ESTIMATE)).to_have_text(
        span("13,000", "15,000") if box == "" else span("10,000", "12,000")
    )
    expect(page.locator("#as-of")).to_have_value(box)
    watched.errors.clear()
    watched.check(server.base)


def test_a_first_read_that_fails_is_read_again_once_the_server_answers(
    watched: Watched, server: LiveServer
) -> None:
    """A 500 on the first read of the subject list left "Loading" up for good: the page
    reads again (2 s later, then longer) and shows the view once the server answers."""
    page = watched.page
    failing = {"500": "application/problem+json"}

    def fail(route: Any) -> None:
        body = '{"status": 500, "title": "Internal Server Error", "detail": "broken"}'
        route.fulfill(status=500, body=body, content_type=failing["500"])

    page.route("**/v1/subjects?**", fail)
    page.route("**/v1/subjects", fail)
    page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    expect(page.locator("#error")).to_contain_text("HTTP 500")
    page.unroute("**/v1/subjects?**")
    page.unroute("**/v1/subjects")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"), timeout=35_000)
    expect(page.locator("#error")).to_have_text("")
    expect(page.locator("#live-state")).to_contain_text("Live", timeout=35_000)
    watched.errors.clear()  # the browser logs the failed requests itself
    watched.check(server.base)


def test_back_while_the_server_is_away_shows_the_links_view_once_it_is_back(
    watched: Watched, server: LiveServer
) -> None:
    """Back while the server cannot be reached put the URL and the controls at the entry
    gone back to, and the view stayed at the one before for good: it is read again."""
    page = open_page(watched, server, f"?subject={DEPLOYMENT}")
    page.fill("#as-of", "2024")
    page.press("#as-of", "Enter")
    expect(page.locator(ESTIMATE)).to_have_text(span("10,000", "12,000"))
    page.click("#reset")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    page.route("**/v1/**", lambda route: route.abort())
    page.go_back()
    expect(page.locator("#as-of")).to_have_value("2024")
    expect(page.locator("#error")).to_contain_text("The server cannot be reached")
    page.unroute("**/v1/**")
    expect(page.locator(ESTIMATE)).to_have_text(span("10,000", "12,000"), timeout=35_000)
    expect(page.locator("#error")).to_have_text("")
    watched.errors.clear()
    watched.check(server.base)


def test_the_token_form_fits_a_phone_screen(
    watched: Watched, servers: dict[str, StartingServer]
) -> None:
    server = servers["private"].server()
    page = watched.page
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(server.base + "/")
    expect(page.locator("#token")).to_be_focused()  # the page asks for a token
    box = page.locator(".token-form").bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 375
    watched.errors.clear()  # the browser logs the 401s itself
    watched.check(server.base)


def test_a_key_revoked_while_the_page_is_open_asks_for_another(
    watched: Watched, servers: dict[str, StartingServer]
) -> None:
    server = servers["private"].server()
    db = server.log.parent / "l.db"
    token = new_key(db, "reader", "to-revoke")
    page = watched.page
    page.goto(server.base + "/")
    page.fill("#token", token)
    page.press("#token", "Enter")
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    subprocess.run(
        [str(LEDGER), "keys", "revoke", "to-revoke", "--db", str(db)],
        check=True,
        capture_output=True,
    )
    time.sleep(1.5)  # past the server's one-second cache of keys
    server.post("/v1/assertions", assertion_body(subject="revoked-subject"))
    expect(page.locator("#error")).to_contain_text("The token was refused", timeout=15000)
    expect(page.locator("#token")).to_be_focused()
    expect(page.locator("#live-state")).to_have_text("Not connected: reads need a token")
    watched.errors.clear()  # the browser logs the 401s itself
    watched.check(server.base)


def test_a_feed_started_again_without_reopening_holds_the_log_to_its_last_event(
    watched: Watched, server: LiveServer
) -> None:
    """On a public ledger a revoked token stops the feed; going back then reads without it
    and starts the feed again from the last event seen, which must be held to that
    event's hash, not to the one the page opened at (that said "replaced")."""
    db = server.log.parent / "l.db"
    token = new_key(db, "reader", "to-revoke-public")
    page = watched.page
    page.add_init_script(f"sessionStorage.setItem('ledger.token', {json.dumps(token)})")
    page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    moved = "page-test.head-moved"
    server.post("/v1/assertions", assertion_body(subject=moved))
    page.locator(f'#subjects a[data-subject="{moved}"]').click()
    expect(page.locator("#subject-heading")).to_have_text(moved)
    subprocess.run(
        [str(LEDGER), "keys", "revoke", "to-revoke-public", "--db", str(db)],
        check=True,
        capture_output=True,
    )
    time.sleep(1.5)  # past the server's one-second cache of keys
    server.post("/v1/assertions", assertion_body(subject=f"{moved}-again"))
    expect(page.locator("#error")).to_contain_text("The token was refused", timeout=15000)
    page.go_back()  # read again without the token, which the page no longer holds
    expect(page.locator(ESTIMATE)).to_be_visible()
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    page.wait_for_timeout(500)
    expect(page.locator("#notice")).not_to_contain_text("replaced")
    watched.errors.clear()  # the browser logs the 401s itself
    watched.check(server.base)


@pytest.mark.parametrize("answer", ["past the head", "no event"])
def test_a_log_replaced_between_the_opening_reads_is_read_again(
    watched: Watched, server: LiveServer, answer: str
) -> None:
    """Opening reads the log's size, then its last event: a log replaced by a shorter one
    between the two answers a 422 naming `after`, or no event at all. Either is read
    again, not shown as a failure (the 422) or followed from event 0 (no event)."""
    page = watched.page
    asked: list[str] = []

    def last_event(route: Any) -> None:
        asked.append(route.request.url)
        if len(asked) > 1:
            route.continue_()
        elif answer == "no event":
            route.fulfill(
                status=200, content_type="application/json", body='{"items": [], "next": null}'
            )
        else:
            problem = {
                "status": 422,
                "title": "Invalid input",
                "detail": "after: past the head",
                "errors": [{"field": "after", "message": "is past the log's head"}],
            }
            route.fulfill(
                status=422, content_type="application/problem+json", body=json.dumps(problem)
            )

    page.route(re.compile(r"/v1/events\?after=\d+&limit=1$"), last_event)
    page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    expect(page.locator(ESTIMATE)).to_be_visible()
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    assert len(asked) >= 2
    expect(page.locator("#error")).to_have_text("")
    head = server.get("/v1/log/head")["size"]
    expect(page.locator("#seq-range")).to_have_attribute("max", str(head))
    watched.errors.clear()  # the browser logs the 422 itself
    watched.check(server.base)


def test_a_refused_read_stops_the_live_feed_until_a_token_is_given(
    watched: Watched, server: LiveServer
) -> None:
    """A 403 on a read asks for a token and says "Not connected": events that arrive after
    it must not redraw a view the page no longer reads."""
    subject = "page-test.refused"
    server.post("/v1/assertions", assertion_body(subject=subject))
    page = open_page(watched, server, f"?subject={subject}")
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    forbidden = json.dumps({"status": 403, "title": "Forbidden", "detail": "not for this key"})

    def refuse(route: Any) -> None:
        route.fulfill(status=403, content_type="application/problem+json", body=forbidden)

    page.route("**/v1/subjects?*", refuse)
    server.post("/v1/assertions", assertion_body(subject=subject, stated_at="2025-05"))
    expect(page.locator("#live-state")).to_have_text("Not connected: reads need a token")
    expect(page.locator("#subject-heading")).to_have_text("Reads need a token")
    page.unroute("**/v1/subjects?*")
    server.post("/v1/assertions", assertion_body(subject=subject, stated_at="2025-06"))
    page.wait_for_timeout(2500)  # a live feed still open would have redrawn by now
    expect(page.locator("#subject-heading")).to_have_text("Reads need a token")
    expect(page.locator("#live-state")).to_have_text("Not connected: reads need a token")
    watched.errors.clear()  # the browser logs the 403 itself


def _table_boxes(page: Any) -> list[dict[str, Any]]:
    """Each table's scroll box: whether it overflows, and what makes it a region."""
    boxes: list[dict[str, Any]] = page.eval_on_selector_all(
        ".table-scroll",
        """boxes => boxes.map(b => ({
            table: b.querySelector("table").className,
            overflows: b.scrollWidth > b.clientWidth,
            width: b.clientWidth,
            role: b.getAttribute("role"),
            tabindex: b.getAttribute("tabindex"),
            label: b.getAttribute("aria-label"),
            caption: b.querySelector("caption").textContent,
        }))""",
    )
    return boxes


def test_long_addresses_and_a_narrow_screen_never_widen_the_page(
    watched: Watched, server: LiveServer
) -> None:
    """320 px, the narrowest screen WCAG reflow asks for: the controls wrap, and a document
    address with no title (shown as the address itself) wraps instead of widening it."""
    subject = "page-test.narrow"
    url = "https://en.yna.co.kr/view/AEN20250428000351315?section=nk/nk&site=major_news01&x=1"
    document = {"publisher": "Yonhap", "published_at": "2025-04-28", "url": url}
    server.post("/v1/assertions", assertion_body(subject=subject, document=document))
    long_id = "a" * 128  # named in "Rests on:", and a property name without a break
    server.post(
        "/v1/assertions",
        assertion_body(
            subject=subject, assertion_id=long_id, property="casualties.killed_or_wounded"
        ),
    )
    page = watched.page
    page.set_viewport_size({"width": 1280, "height": 700})
    page.goto(f"{server.base}/?subject={subject}")
    expect(page.locator(ESTIMATE)).to_have_text(span("14,000", "16,000"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the page is {width} px wide on a 1280 px screen"
    page.set_viewport_size({"width": 320, "height": 700})
    page.reload()
    expect(page.locator(ESTIMATE)).to_have_text(span("14,000", "16,000"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 320, f"the page is {width} px wide on a 320 px screen"
    latest = page.locator("#seq-latest").bounding_box()
    assert latest is not None
    assert latest["x"] + latest["width"] <= 320
    watched.check(server.base)


def test_a_chart_over_decades_labels_a_few_years_and_keeps_large_figures_whole(
    watched: Watched, server: LiveServer
) -> None:
    subject = "page-test.decades"
    server.post("/v1/assertions", assertion_body(subject=subject, stated_at="1950"))
    big = {"low": 1_200_000_000, "high": 1_500_000_000}
    server.post("/v1/assertions", assertion_body(subject=subject, stated_at="2025", value=big))
    page = watched.page
    page.goto(f"{server.base}/?subject={subject}")
    expect(page.locator(ESTIMATE)).to_have_text(span("1,200,000,000", "1,500,000,000"))
    labels = page.locator("figure.chart .time-axis text").all_text_contents()
    assert 3 <= len(labels) <= 9, labels  # a year every 10, not one a year run together
    years = [int(label) for label in labels]
    assert years == sorted(years)
    assert len({b - a for a, b in itertools.pairwise(years)}) == 1  # evenly spaced
    # every figure on the value axis is inside the drawing, its first digits too
    lefts = page.eval_on_selector_all(
        "figure.chart .axis:not(.time-axis) text", "ts => ts.map(t => t.getBBox().x)"
    )
    assert lefts
    assert min(lefts) >= 0, lefts
    watched.check(server.base)


def test_every_best_figure_is_a_solid_mark_and_the_key_sits_by_its_names(
    watched: Watched, server: LiveServer
) -> None:
    """The fifth to eighth claimants seen were drawn with hollow marks, which the caption
    keeps for a range given without a best figure; and each mark of the key stood ~140 px
    from its name (the chart's least width applied to its 14 px drawings)."""
    subject = "page-test.six-claimants"
    claimants = ["us-intel", "kr-intel", "ua-intel", "kr-military", "kr-jcs", "ua-zelenskyy"]
    for n, claimant in enumerate(claimants):
        best = {"low": 1000 + n, "high": 3000 + n, "best": 2000 + n}
        server.post(
            "/v1/assertions",
            assertion_body(subject=subject, claimants=[claimant], value=best, stated_at="2025"),
        )
    unsure = {"low": 500, "high": 900}
    server.post(
        "/v1/assertions",
        assertion_body(subject=subject, claimants=["ap"], value=unsure, stated_at="2025-06"),
    )
    page = watched.page
    page.goto(f"{server.base}/?subject={subject}")
    expect(page.locator(ESTIMATE)).to_have_text(span("500", "900"))
    marks = page.eval_on_selector_all(
        "figure.chart g.point",
        "gs => gs.map(g => [g.querySelector('title').textContent,"
        " g.lastElementChild.getAttribute('fill')])",
    )
    assert len(marks) == 7, marks
    for title, fill in marks:  # solid: a best figure; hollow: a range without one
        assert (fill == "#ffffff") == ("best" not in title), (title, fill)
    keys = page.eval_on_selector_all(
        "figure.chart .legend li",
        "ls => ls.map(l => [l.querySelector('svg').getBoundingClientRect().width,"
        " l.textContent.trim()])",
    )
    assert len(keys) == 8, keys  # the band, then each claimant
    assert all(width < 20 for width, _ in keys), keys
    looks = page.eval_on_selector_all(
        "figure.chart .legend li svg [data-shape]",
        "ms => ms.map(m => m.getAttribute('data-shape') + ' ' + m.getAttribute('stroke'))",
    )
    shapes = {look.split()[0] for look in looks}
    assert len(looks) == 7, looks
    assert len(shapes) == 7, looks  # told apart by shape as well as by colour
    watched.check(server.base)


def test_an_ungraded_source_and_a_long_status_property_read_as_they_should(
    watched: Watched, server: LiveServer
) -> None:
    subject = "page-test.ungraded"
    server.post("/v1/sources", {"id": "page-test-ungraded", "name": "Ungraded", "kind": "media"})
    prop = "status." + "verylongpropertyname." * 4 + "end"  # no hyphen to break at
    server.post(
        "/v1/assertions",
        assertion_body(
            subject=subject,
            property=prop,
            value={"status": "reported"},
            claimants=["page-test-ungraded"],
            mode=None,
        ),
    )
    page = watched.page
    page.set_viewport_size({"width": 760, "height": 900})
    page.goto(f"{server.base}/?subject={subject}")
    row = page.locator(f'tr[data-property="{prop}"]')
    expect(row.locator(".status-value")).to_have_text("reported")
    expect(page.locator(".claimant .rel").first).to_have_text(
        "(page-test-ungraded; reliability not graded)"
    )
    box = page.locator("table.statuses").locator("xpath=..")
    assert box.evaluate("b => b.scrollWidth <= b.clientWidth"), "the table is wider than its box"
    page.set_viewport_size({"width": 1280, "height": 900})
    watched.check(server.base)


def _chart_text(page: Any) -> list[dict[str, Any]]:
    """Each axis label of the first chart as drawn on screen: its text and box."""
    boxes: list[dict[str, Any]] = page.eval_on_selector_all(
        "figure.chart .axis text",
        """ts => ts.map(t => {
            const r = t.getBoundingClientRect();
            return {text: t.textContent, time: t.closest(".time-axis") !== null,
                    left: r.left, right: r.right, height: r.height};
        })""",
    )
    return boxes


def test_a_chart_on_a_phone_keeps_its_text_readable_and_redraws_when_the_window_widens(
    watched: Watched, server: LiveServer
) -> None:
    """A chart drawn 760 units wide and scaled down to a 320 px screen had text ~4 px tall
    and month labels run together; it is drawn at the width it gets, again on a resize."""
    subject = "page-test.phone-chart"
    for month in range(1, 13):  # a figure a month over a year: a label a month if room
        value = {"low": 1000 * month, "high": 1000 * month + 500}
        server.post(
            "/v1/assertions",
            assertion_body(subject=subject, stated_at=f"2025-{month:02d}-15", value=value),
        )
    page = watched.page
    page.set_viewport_size({"width": 320, "height": 700})
    page.goto(f"{server.base}/?subject={subject}")
    expect(page.locator(ESTIMATE)).to_have_text(span("12,000", "12,500"))
    narrow = _chart_text(page)
    assert narrow
    assert min(t["height"] for t in narrow) >= 11, narrow  # 12 px text, not scaled down
    times = [t for t in narrow if t["time"]]
    assert len(times) >= 2, times
    for a, b in itertools.pairwise(times):  # the time labels never run into each other
        assert a["right"] + 4 <= b["left"], (a, b)
    assert page.evaluate("document.documentElement.scrollWidth") <= 320

    page.set_viewport_size({"width": 1366, "height": 900})
    drawn_at = """() => {
        const figure = document.querySelector("figure.chart");
        const shown = figure.querySelector("svg").getBoundingClientRect().width;
        return [Number(figure.dataset.width), Math.round(shown)];
    }"""
    page.wait_for_function(f"() => {{ const [d, s] = ({drawn_at})(); return d === s && d > 320; }}")
    wide = _chart_text(page)
    assert min(t["height"] for t in wide) >= 11
    assert max(t["height"] for t in wide) <= 20, wide  # and not scaled up either
    assert len([t for t in wide if t["time"]]) > len(times)  # more room, more labels
    watched.check(server.base)


def test_the_page_fits_a_phone_screen_and_wide_tables_scroll_in_their_own_box(
    watched: Watched, server: LiveServer
) -> None:
    page = watched.page
    page.set_viewport_size({"width": 375, "height": 740})
    open_page(watched, server, f"?subject={DEPLOYMENT}")
    expect(page.locator(STATUS_ROW)).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width} px wide on a 375 px screen"
    boxes = _table_boxes(page)
    assert {b["table"] for b in boxes} == {"claimants", "statuses"}
    assert any(b["overflows"] for b in boxes if b["table"] == "claimants")
    for box in boxes:
        assert box["width"] <= 375
        # a box that scrolls is a region the keyboard can reach, named by its caption
        wanted = ("region", "0", box["caption"]) if box["overflows"] else (None, None, None)
        assert (box["role"], box["tabindex"], box["label"]) == wanted, box

    page.set_viewport_size({"width": 1366, "height": 900})  # wide: nothing to scroll
    expect(page.locator(".table-scroll[tabindex]")).to_have_count(0)
    assert not any(b["overflows"] for b in _table_boxes(page))
    watched.check(server.base)


def test_a_seq_that_is_not_a_whole_number_is_named_beside_the_box(
    watched: Watched, server: LiveServer
) -> None:
    page = open_page(watched, server, f"?subject={DEPLOYMENT}&seq=14")
    asked = len(watched.requests)
    for typed in ("3.5", "-2", "3,5", "1e3"):
        page.fill("#seq", typed)
        page.click("#controls button[type=submit]")  # Show: the box gets the focus back
        expect(page.locator("#seq-error")).to_contain_text(f"{typed} is not a whole number")
        expect(page.locator("#seq-error")).to_have_attribute("role", "alert")
        expect(page.locator("#seq")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#seq")).to_be_focused()
    sent = [url for url in watched.requests[asked:] if "seq=" in url and "seq=14" not in url]
    assert sent == [], "a seq the server would refuse was sent"
    page.go_back()  # the box shows the view again: the message about what was typed goes
    page.go_forward()
    expect(page.locator("#seq")).to_have_value("14")
    expect(page.locator("#seq-error")).to_have_text("")
    expect(page).to_have_url(re.compile(r"[?&]seq=14(&|$)"))
    expect(page.locator("#error")).to_have_text("")

    page.fill("#seq", "20")  # a good value clears the message and is shown
    page.press("#seq", "Enter")
    expect(page).to_have_url(re.compile(r"[?&]seq=20(&|$)"))
    expect(page.locator("#seq-error")).to_have_text("")
    expect(page.locator("#seq")).not_to_have_attribute("aria-invalid", "true")

    page.fill("#seq", "")  # an empty box and Show: the latest, not event 0
    page.click("#controls button[type=submit]")
    expect(page).not_to_have_url(re.compile(r"seq="))
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    watched.check(server.base)


TROOP_ESTIMATE = re.compile(rf"/v1/subjects/[^/]+/estimates/{re.escape(TROOPS)}(\?|$)")


def _limit_reads(
    page: Any, refusals: int, retry_after: str, reads: re.Pattern[str] = TROOP_ESTIMATE
) -> list[float]:
    """Answer the first `refusals` of the `reads` (the troop estimate's, unless told) with
    a 429 asking to wait `retry_after`; let later ones through. Returns when each of those
    reads was asked."""
    asked: list[float] = []

    def handle(route: Any) -> None:
        asked.append(time.monotonic())
        if len(asked) <= refusals:
            route.fulfill(
                status=429,
                headers={"Retry-After": retry_after, "Content-Type": "application/problem+json"},
                body=json.dumps(
                    {
                        "status": 429,
                        "title": "Too many requests",
                        "detail": "over 5 requests a minute",
                    }
                ),
            )
        else:
            route.continue_()

    page.route(reads, handle)
    return asked


def test_a_read_over_the_rate_limit_waits_as_the_server_asks_then_shows_the_view(
    watched: Watched, server: LiveServer
) -> None:
    page = watched.page
    asked = _limit_reads(page, 2, "1")
    page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    expect(page.locator("#notice")).to_contain_text("reading again in 1 s")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    expect(page.locator("#notice")).not_to_contain_text("reading again")
    expect(page.locator("#error")).to_have_text("")
    assert len(asked) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(asked)]
    assert min(gaps) >= 0.9, f"asked again before the server's Retry-After: {gaps}"
    watched.errors.clear()  # the browser logs the 429s itself
    watched.check(server.base)


def test_a_read_still_refused_after_waiting_says_so_and_when_to_try(
    watched: Watched, server: LiveServer
) -> None:
    page = watched.page
    asked = _limit_reads(page, 99, "1")
    page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    expect(page.locator("#error")).to_contain_text("still refused after this page waited 3 times")
    expect(page.locator("#error")).to_contain_text("over 5 requests a minute")
    expect(page.locator("#notice")).not_to_contain_text("reading again")  # no longer waiting
    assert len(asked) == 4  # the first read and three after waiting: not a loop
    watched.errors.clear()
    watched.check(server.base)


@pytest.mark.parametrize("first_open_refused", [False, True], ids=["on reconnecting", "at once"])
def test_the_live_feed_over_the_rate_limit_reconnects_when_the_server_says(
    watched: Watched, servers: dict[str, StartingServer], first_open_refused: bool
) -> None:
    server = servers["private"].server()
    page = watched.page
    streams: list[float] = []

    def stream(route: Any) -> None:
        streams.append(time.monotonic())
        if len(streams) == 1 and not first_open_refused:  # a stream that ends at once
            route.fulfill(
                status=200, headers={"Content-Type": "text/event-stream"}, body=": hi\n\n"
            )
        elif len(streams) == (1 if first_open_refused else 2):
            route.fulfill(
                status=429,
                headers={"Retry-After": "4", "Content-Type": "application/problem+json"},
                body=json.dumps({"status": 429, "title": "Too many requests"}),
            )
        else:
            route.continue_()

    page.route("**/v1/events/stream*", stream)
    page.goto(server.base + "/")
    page.fill("#token", server.token)
    page.press("#token", "Enter")
    expect(page.locator(ESTIMATE)).to_be_visible()
    opens = 2 if first_open_refused else 3
    deadline = time.monotonic() + 15
    while len(streams) < opens and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    assert len(streams) == opens
    wait = streams[-1] - streams[-2]
    assert wait >= 3.9, f"reconnected {wait:.1f} s after a 429 that asked for 4 s"
    # (a read of one event before each connection checks that the log is the same one)
    polls = [url for url in watched.requests if "/v1/events?" in url and "limit=1000" in url]
    assert polls == [], "the feed fell back to polling, which spends the same budget"
    watched.errors.clear()  # the browser logs the 401s and the 429 itself
    watched.check(server.base)


def test_the_notice_stays_while_any_read_still_waits(watched: Watched, server: LiveServer) -> None:
    page = watched.page
    _limit_reads(page, 1, "1", re.compile(r"/v1/subjects/[^/]+/timeline(\?|$)"))
    sources = _limit_reads(page, 1, "4", re.compile(r"/v1/sources(\?|$)"))
    started = time.monotonic()
    page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    expect(page.locator("#notice")).to_contain_text("reading again in")
    page.wait_for_timeout(2500)  # the timeline's read went through; the sources' still waits
    expect(page.locator("#notice")).to_contain_text("reading again in")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    expect(page.locator("#notice")).not_to_contain_text("reading again")
    assert len(sources) == 2
    assert sources[1] - started >= 3.9
    watched.errors.clear()
    watched.check(server.base)


def test_a_wait_longer_than_a_minute_is_not_waited_for(
    watched: Watched, server: LiveServer
) -> None:
    page = watched.page
    asked = _limit_reads(page, 99, "120")
    page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    expect(page.locator("#error")).to_contain_text("try again in 120 s")
    expect(page.locator("#error")).not_to_contain_text("waited")
    assert len(asked) == 1
    watched.errors.clear()
    watched.check(server.base)


def _copy_then(tmp_path: Path, *commands: Any) -> tuple[Path, int]:
    """A backup of the server's ledger (`l.db`) with `commands` run on it: another ledger
    that shares the log's start. Returns its path and its size."""
    db, other = tmp_path / "l.db", tmp_path / "other.db"
    backup = subprocess.run(
        [str(LEDGER), "backup", str(other), "--db", str(db)], capture_output=True, check=False
    )
    assert backup.returncode == 0, backup.stderr
    with factories.ledger(other) as store:
        if commands:
            factories.run(store, *commands)
        return other, store.size()


def _serve_instead(starting: StartingServer, ledger: Path) -> StartingServer:
    """Stop `starting`, put `ledger` in place of its file, and start a server on it at the
    same port (an operator restoring a file under an open page)."""
    folder = starting.log.parent
    starting.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{folder / 'l.db'}{suffix}").unlink(missing_ok=True)
    ledger.rename(folder / "l.db")
    return StartingServer(folder, public_read=starting.public_read, port=starting.port)


def _unexpected(errors: list[str]) -> list[str]:
    """The page's errors but the refused connections the browser logs while a server is
    away (and the 422s it logs itself)."""
    return [e for e in errors if "Failed to load resource" not in e and "ERR_" not in e]


@pytest.mark.parametrize("public_read", [True, False], ids=["event-source", "fetch-stream"])
def test_a_ledger_restored_from_an_older_backup_is_read_again(
    watched: Watched, tmp_path: Path, public_read: bool
) -> None:
    """The server's log is replaced, under an open page, by a backup holding fewer events
    than the page has seen. Resuming after its old head would skip the next events the new
    log gets; the server refuses that (a 422 naming `after`) and the page reads it again."""
    starting = StartingServer(tmp_path, public_read=public_read)
    server = starting.server()
    backup, older = _copy_then(tmp_path)
    server.post("/v1/assertions", assertion_body())
    server.post("/v1/assertions", assertion_body(subject=LIVE_SUBJECT))
    newer = server.get("/v1/log/head")["size"]

    page = watched.page
    if public_read:
        page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    else:
        page.goto(f"{server.base}/?subject={DEPLOYMENT}")
        page.fill("#token", server.token)
        page.press("#token", "Enter")
    expect(page.locator(ESTIMATE)).to_have_text(span("14,000", "16,000"))
    expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")
    expect(page.locator("#seq-range")).to_have_attribute("max", str(newer))

    restarted = _serve_instead(starting, backup)
    try:
        server = restarted.server()
        expect(page.locator("#notice")).to_contain_text(
            f"no longer reaches event {newer}: it was replaced", timeout=15000
        )
        expect(page.locator("#seq-range")).to_have_attribute("max", str(older))
        expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
        expect(page.locator("#live-state")).to_have_text("Live: new events show as they arrive")

        # followed from the restored head: the next event (seq older + 1) shows
        receipt = server.post("/v1/assertions", assertion_body(value={"low": 1, "high": 2}))
        expect(page.locator(f'[data-assertion="{receipt["assertion_id"]}"]')).to_be_visible()
        expect(page.locator(ESTIMATE)).to_have_text(span("1", "2"))
    finally:
        restarted.stop()
    assert _unexpected(watched.errors) == []


@pytest.mark.parametrize(
    ("public_read", "polled"),
    [(True, False), (False, False), (False, True)],
    ids=["event-source", "fetch-stream", "polling"],
)
def test_a_ledger_replaced_by_another_as_long_is_read_again(
    watched: Watched, tmp_path: Path, public_read: bool, polled: bool
) -> None:
    """The server's log is replaced, under an open page, by another ledger's that holds as
    many events or more: no resume point is refused, and only the hash of the last event
    the page followed tells the two apart. Followed on, the page would mix two ledgers."""
    starting = StartingServer(tmp_path, public_read=public_read)
    server = starting.server()
    other, longer = _copy_then(  # the same start, then other events
        tmp_path,
        *(
            factories.quantity(
                100 + n,
                200 + n,
                stated_at="2025-07",
                subject=DEPLOYMENT,
                prop=TROOPS,
                claimants=("kr-jcs",),
            )
            for n in range(3)
        ),
    )
    server.post("/v1/assertions", assertion_body())
    server.post("/v1/assertions", assertion_body(subject=LIVE_SUBJECT))
    seen = server.get("/v1/log/head")["size"]
    assert longer > seen

    page = watched.page
    if polled:  # no stream: it polls, and each poll checks the event it read last
        page.route("**/v1/events/stream*", lambda route: route.abort())
    page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    if not public_read:
        page.fill("#token", server.token)
        page.press("#token", "Enter")
    expect(page.locator(ESTIMATE)).to_have_text(span("14,000", "16,000"))
    live = "checking for new events every 2 s" if polled else "new events show as they arrive"
    expect(page.locator("#live-state")).to_have_text(f"Live: {live}")

    restarted = _serve_instead(starting, other)
    try:
        restarted.server()
        expect(page.locator("#notice")).to_contain_text(
            f"event {seen} is not the one this page read", timeout=15000
        )
        expect(page.locator("#seq-range")).to_have_attribute("max", str(longer))
        expect(page.locator(ESTIMATE)).to_have_text(span("102", "202"))
        expect(page.locator("#live-state")).to_have_text(f"Live: {live}")
    finally:
        restarted.stop()
    assert _unexpected(watched.errors) == []


def test_a_ledger_replaced_before_the_feed_starts_is_read_again(
    watched: Watched, tmp_path: Path
) -> None:
    """The feed starts with the first view shown, which a link's bad as_of holds back: the
    log it then follows is held to the last event the page read on opening, not to
    whatever the server holds by then."""
    starting = StartingServer(tmp_path, public_read=True)
    starting.server()
    other, _ = _copy_then(  # the same events, then one more
        tmp_path,
        factories.quantity(
            5, 6, stated_at="2025-07", subject=DEPLOYMENT, prop=TROOPS, claimants=("kr-jcs",)
        ),
    )
    starting.server().post("/v1/assertions", assertion_body(subject=LIVE_SUBJECT))
    page = watched.page
    page.goto(f"{starting.server().base}/?subject={DEPLOYMENT}&as_of=2025-13")
    expect(page.locator("#subject-heading")).to_have_text("No view yet")

    restarted = _serve_instead(starting, other)
    try:
        restarted.server()
        page.fill("#as-of", "")
        page.get_by_role("button", name="Show", exact=True).click()
        expect(page.locator("#notice")).to_contain_text(
            "is not the one this page read", timeout=15000
        )
        expect(page.locator(ESTIMATE)).to_have_text(span("5", "6"))
    finally:
        restarted.stop()
    assert _unexpected(watched.errors) == []


def test_while_the_views_catch_up_the_page_never_calls_them_the_whole_log(
    watched: Watched, server: LiveServer
) -> None:
    """An import appending beside the server leaves the views behind the log's head: the
    page says how far they reach, not "the whole log". (The views are made to lag here by
    answering the timeline as if read five events before the head.)"""
    page = watched.page
    sizes: list[int] = []
    timeline = re.compile(r"/v1/subjects/[^/?]+/timeline(\?.*)?$")

    def behind(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        sizes.append(body["seq"])
        route.fulfill(response=response, json={**body, "seq": body["seq"] - 5})

    page.route(timeline, behind)
    page.goto(f"{server.base}/?subject={DEPLOYMENT}")
    expect(page.locator(ESTIMATE)).to_have_text(span("13,000", "15,000"))
    size = sizes[0]
    meta = page.locator("#subject .meta")
    expect(meta).to_contain_text(f"the log up to event {size - 5} of {size}, while the views")
    expect(meta).not_to_contain_text("whole log")
    page.unroute(timeline)
    page.reload()
    expect(page.locator("#subject .meta")).to_contain_text(f"the whole log ({size} events)")
    watched.check(server.base)
