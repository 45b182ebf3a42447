"""The creator payout page in a real browser (Chromium, driven by Playwright) over a real HTTP
server, PostgreSQL and Redis: a creator opens the magic link and clicks Continue, reads a
settled payout's timeline and a held one's action needed, watches the held payout turn into
sent while the page is open (the page refreshes itself), and downloads a statement.

Screenshots of each step are kept under `.creatorflow/test-artifacts/browser/` for a person
to look at. Chromium comes from the system (Debian: `apt-get install chromium`; `.ci/run`
installs it); without it the module is skipped with that advice.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg
import pytest
import redis.asyncio as redis
import uvicorn
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from services.payouts.creator_page.web import SESSION_COOKIE, PageConfig, page_app
from shared.tools.infra.process import free_port
from tests.integration.payouts.creator_scene import Scene, Writer, account, new_link

pytestmark = pytest.mark.integration

ROOT: Final = Path(__file__).resolve().parents[3]
SCREENSHOTS: Final = ROOT / ".creatorflow" / "test-artifacts" / "browser"
CHROMIUM: Final = os.environ.get("CHROMIUM") or next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
# The page refreshes its payouts every `poll_seconds` (at least 5, poll.js); a status change
# shows within one refresh, so this leaves room for a slow machine.
SEEN_WITHIN_MS: Final = 30_000

if CHROMIUM is None:
    pytest.skip(
        "the browser test needs Chromium (Debian/Ubuntu: apt-get install chromium; or set "
        "CHROMIUM to its path)",
        allow_module_level=True,
    )


@dataclass(frozen=True)
class Site:
    url: str


@pytest.fixture(scope="module")
async def scene(db_pool: asyncpg.Pool) -> Scene:
    scene = Scene()
    await scene.write(db_pool)
    return scene


@pytest.fixture
async def site(db_pool: asyncpg.Pool, cache: redis.Redis) -> AsyncIterator[Site]:
    """The page served over HTTP on loopback (a secure context, so its Secure cookie holds)."""
    port = free_port()
    app = page_app(db_pool, cache, PageConfig(poll_seconds=5))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the page's server stopped during start-up"
        await asyncio.sleep(0.05)
    yield Site(f"http://localhost:{port}")
    server.should_exit = True
    await serving


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


async def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def card(page: Page, payout_id: str) -> Locator:
    return page.locator(f"article[aria-labelledby='po-{payout_id}']")


async def signed_in(browser: Browser, site: Site, link: str, **device: Any) -> Page:
    """A creator's browser (`device`: Playwright's context options) that opened `link` and
    clicked Continue."""
    page = await (await browser.new_context(accept_downloads=True, **device)).new_page()
    await page.goto(site.url + link)
    await expect(page.get_by_role("button", name="Continue")).to_be_visible()
    await shot(page, "1-magic-link")
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(site.url + "/c/payouts")
    return page


async def test_a_creator_signs_in_by_clicking_and_reads_the_timelines(
    db_pool: asyncpg.Pool, browser: Browser, site: Site, scene: Scene
) -> None:
    link = await new_link(db_pool, scene.alice)
    page = await signed_in(browser, site, link)

    # The token is gone from the address bar; the session is a cookie scripts cannot read.
    assert link.rsplit("/", 1)[1] not in page.url
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies[SESSION_COOKIE]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""

    settled = card(page, scene.payouts["settled"].payout_id)
    await expect(settled.locator(".status")).to_have_text("Arrived")
    await expect(settled).to_contain_text("Arrived in your account")
    await expect(settled).to_contain_text("89.10 EUR")
    await expect(settled).to_contain_text("PAYOUT-REF-7731")
    held = card(page, scene.payouts["held"].payout_id)
    await expect(held.locator(".status")).to_have_text("Held")
    await expect(held.locator(".action")).to_contain_text("Action needed")
    await expect(held.locator(".action")).to_contain_text("Submit a W-9")
    print(f"screenshot of the page: {await shot(page, '2-settled-and-held')}")

    text = await page.inner_text("body")
    assert scene.alice_destination not in text and scene.bob not in text

    # The link worked once: a second browser that opens it gets nothing.
    other = await (await browser.new_context()).new_page()
    await other.goto(site.url + link)
    await other.get_by_role("button", name="Continue").click()
    await expect(other.locator("body")).to_contain_text("cannot be used")
    assert SESSION_COOKIE not in {c["name"] for c in await other.context.cookies()}


async def test_the_page_reads_on_a_phone(
    db_pool: asyncpg.Pool, browser: Browser, site: Site, scene: Scene
) -> None:
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
    page = await signed_in(browser, site, await new_link(db_pool, scene.alice), **phone)
    held = card(page, scene.payouts["held"].payout_id)
    await expect(held.locator(".action")).to_be_visible()
    # Nothing wider than the screen: no sideways scrolling to read an amount or a reason.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    print(f"screenshot on a phone: {await shot(page, '2b-phone')}")


async def test_a_held_payout_turns_into_sent_while_the_page_is_open(
    db_pool: asyncpg.Pool, browser: Browser, site: Site
) -> None:
    scene = Scene()
    await scene.write(db_pool)
    page = await signed_in(browser, site, await new_link(db_pool, scene.alice))
    held = card(page, scene.payouts["held"].payout_id)
    await expect(held.locator(".status")).to_have_text("Held")
    await shot(page, "3-held-before")

    # The creator's tax form is verified; the service releases and sends the payout.
    verified = account(scene.alice, scene.alice_destination)
    await Writer(db_pool).released_and_sent(scene.payouts["held"], verified, datetime.now(UTC))

    await expect(held.locator(".status")).to_have_text("Sent", timeout=SEEN_WITHIN_MS)
    await expect(held).not_to_contain_text("Action needed")
    await expect(held).to_contain_text("PAYOUT-REF-9904")
    print(f"screenshot of the page: {await shot(page, '4-held-now-sent')}")


async def test_a_refresh_keeps_what_the_reader_opened_and_says_what_changed(
    db_pool: asyncpg.Pool, browser: Browser, site: Site
) -> None:
    """The refresh moves nothing while nothing changed (the server answers 304), and a change
    keeps the deal the reader opened and the link they were on, and is said in the status
    line (WCAG 2.4.3, 4.1.3)."""
    scene = Scene()
    await scene.write(db_pool)
    page = await signed_in(browser, site, await new_link(db_pool, scene.alice))
    await page.get_by_role("button", name="Pause updates").click()
    resume = page.get_by_role("button", name="Resume updates")
    await expect(resume).to_have_attribute("aria-pressed", "true")
    await resume.click()
    held = card(page, scene.payouts["held"].payout_id)
    deal = page.locator("section.deal").filter(has=held)
    await deal.locator("summary").click()
    link = held.get_by_role("link")
    await link.focus()

    def the_refresh(response: Any) -> bool:
        return str(response.url).endswith("/c/payouts/list")

    unchanged = await page.wait_for_event("response", the_refresh, timeout=SEEN_WITHIN_MS)
    assert unchanged.status == 304
    verified = account(scene.alice, scene.alice_destination)
    await Writer(db_pool).released_and_sent(scene.payouts["held"], verified, datetime.now(UTC))

    await expect(held.locator(".status")).to_have_text("Sent", timeout=SEEN_WITHIN_MS)
    await expect(deal.locator("details")).to_have_attribute("open", "")
    await expect(link).to_be_focused()
    await expect(page.get_by_role("status")).to_contain_text("Sent")


async def test_a_creator_downloads_a_statement(
    db_pool: asyncpg.Pool, browser: Browser, site: Site, scene: Scene
) -> None:
    page = await signed_in(browser, site, await new_link(db_pool, scene.alice))
    await page.get_by_role("link", name="Statements and yearly earnings summaries").click()
    await page.wait_for_url(site.url + "/c/statements")
    await shot(page, "5-statements")

    async with page.expect_download() as started:
        await page.get_by_role("link", name="March 2026 statement (CSV)").click()
    download = await started.value
    assert download.suggested_filename.endswith(".csv")
    path = await download.path()
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    settled = scene.payouts["settled"].payout_id
    assert settled in {row.get("payout_id") for row in rows}, rows
    assert all(scene.alice_destination not in str(row) for row in rows)
