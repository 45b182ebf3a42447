"""The creator payout page on the real PostgreSQL and Redis, driven with httpx: the magic link
(printed by `creatorflow creators link`), what a mail scanner's GET does (nothing), reused,
expired and tampered links, the rate limit, one creator's session against another's payout,
and what the page shows: a settled payout's timeline, a held one's action needed, never a
destination or a token."""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as redis
from typer.testing import CliRunner

from services.payouts.creator_page.access import CreatorAccess, Limit, token_hash
from services.payouts.creator_page.web import SESSION_COOKIE, PageConfig, page_app
from services.payouts.domain import lifecycle
from shared.contract.money import Money
from shared.tools.cli.main import app as creatorflow
from shared.tools.infra import InfraUrls
from tests.integration.payouts import creator_scene
from tests.integration.payouts.creator_scene import ADDRESSES, Scene, client_for, new_link, sign_in
from tests.unit.payouts.builders import uid
from tests.unit.payouts.store_contract import terms

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def scene(db_pool: asyncpg.Pool) -> Scene:
    scene = Scene()
    await scene.write(db_pool)
    return scene


async def test_a_link_printed_without_the_page_configured_says_where_it_assumes_it(
    infra: InfraUrls, scene: Scene
) -> None:
    env = {"DATABASE_URL": infra.database_url, "PAYOUTS_PAGE_PORT": None, "PAYOUTS_PAGE_URL": None}
    printed = await asyncio.to_thread(
        CliRunner().invoke, creatorflow, ["creators", "link", scene.alice], env=env
    )
    assert printed.exit_code == 0, printed.output
    assert "http://127.0.0.1:8090/c/link/" in printed.output
    assert "warning: PAYOUTS_PAGE_PORT and PAYOUTS_PAGE_URL are not set here" in printed.output


async def test_operators_print_a_link_and_the_creator_gets_in_by_clicking(
    infra: InfraUrls, db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    env = {
        "DATABASE_URL": infra.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
        "PAYOUTS_PAGE_URL": "https://pay.creatorflow.test/",
    }
    printed = await asyncio.to_thread(
        CliRunner().invoke, creatorflow, ["creators", "link", scene.alice], env=env
    )
    assert printed.exit_code == 0, printed.output
    assert "warning" not in printed.output
    url = re.search(r"https://pay\.creatorflow\.test(/c/link/([A-Za-z0-9_-]{43}))", printed.output)
    assert url is not None, printed.output
    path, token = url.group(1), url.group(2)
    stored = await db_pool.fetchrow(
        "SELECT creator_id, expires_at - created_at AS lifetime, used_at "
        "FROM payouts_creator_links WHERE token_hash = $1",
        token_hash(token),
    )
    assert stored is not None and stored["creator_id"] == scene.alice
    assert stored["lifetime"] <= timedelta(minutes=15)

    async with client_for(page_app(db_pool, cache)) as browser:
        # A mail scanner fetches the link: a page with a button, nothing used up.
        for _ in range(3):
            prefetched = await browser.get(path)
            assert prefetched.status_code == 200 and "Continue" in prefetched.text
            assert token not in prefetched.text and scene.alice not in prefetched.text
        assert (
            await db_pool.fetchval(
                "SELECT used_at FROM payouts_creator_links WHERE token_hash = $1", token_hash(token)
            )
            is None
        )

        redeemed = await browser.post(path)
        assert redeemed.status_code == 303
        assert redeemed.headers["location"] == "/c/payouts"
        cookie = redeemed.headers["set-cookie"]
        for attribute in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
            assert attribute.lower() in cookie.lower(), cookie
        session = browser.cookies[SESSION_COOKIE]
        assert (
            await db_pool.fetchval(
                "SELECT creator_id FROM payouts_creator_sessions WHERE token_hash = $1",
                token_hash(session),
            )
            == scene.alice
        )

        page = await browser.get("/c/payouts")
        assert page.status_code == 200 and scene.alice in page.text
        assert token not in page.text and session not in page.text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"

        # Used once: the same link again opens nothing, even in the same browser.
        again = await browser.post(path)
        assert again.status_code == 410 and "cannot be used" in again.text
        assert scene.alice_deals[0] not in again.text


async def test_the_page_shows_timelines_amounts_and_what_to_do(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    async with client_for(page_app(db_pool, cache)) as browser:
        await sign_in(browser, await new_link(db_pool, scene.alice))
        page = (await browser.get("/c/payouts")).text
        fragment = (await browser.get("/c/payouts/list")).text

    assert '<html lang="en">' in page and 'name="viewport"' in page
    assert 'data-poll="/c/payouts/list"' in page and 'src="/c/static/poll.js"' in page
    settled, held = scene.payouts["settled"], scene.payouts["held"]
    # Both deals, with their payouts; the fragment the page polls holds the same.
    for deal in scene.alice_deals:
        assert f"Deal <bdi>{deal}</bdi>" in page and f"Deal <bdi>{deal}</bdi>" in fragment
    settled_card = _card(page, settled.payout_id)
    for shown in (
        'Fee: <span class="status">Arrived</span>',
        "Work confirmed",
        '<time datetime="2026-03-02T09:30:00+00:00">02 Mar 2026 09:30 UTC</time>',  # dl-2
        "Payout scheduled",
        "Sent",
        '<time datetime="2026-03-02T09:32:00+00:00">',
        "Arrived in your account",
        '<time datetime="2026-03-02T12:30:00+00:00">',
        "89.10 EUR",  # (100 USD less 1 %) at 0.9
        "1 USD = 0.9 EUR (ecb",
        "1.00 USD",  # the platform fee
        "PayPal",
        "PAYOUT-REF-7731",
    ):
        assert shown in settled_card, shown
    assert "Action needed" not in settled_card

    held_card = _card(page, held.payout_id)
    assert '<span class="status">Held</span>' in held_card
    assert "Action needed" in held_card
    assert "Your tax form is missing or not verified yet." in held_card
    assert "Submit a W-9" in held_card
    assert "not yet" in held_card  # sent and arrived are still to come

    # Never where the money goes, nor anyone else's payouts.
    for text in (page, fragment):
        assert scene.alice_destination not in text and scene.bob_destination not in text
        assert scene.bob not in text and scene.bob_deal not in text


async def test_commission_taken_back_is_shown_with_its_deal(
    db_pool: asyncpg.Pool, cache: redis.Redis
) -> None:
    """A clawback sends nothing, but the creator's later payouts repay it: the page says so
    where they look for the deal."""
    creator, deal = uid("cr-carol"), uid("deal-c")
    writer = creator_scene.Writer(db_pool)
    await writer.deal(deal, creator, ("dl-1", creator_scene.T0))
    await writer.settled(deal, creator, creator_scene.account(creator, uid("carol")))
    taken = lifecycle.clawback(
        terms(deal, creator), "adjustment-1", Money.of("5.00", "USD"), Money.of("0.05", "USD")
    )
    await writer.step(taken, creator_scene.T0 + timedelta(days=1), None)
    async with client_for(page_app(db_pool, cache)) as browser:
        await sign_in(browser, await new_link(db_pool, creator))
        page = (await browser.get("/c/payouts")).text
    assert f"Deal <bdi>{deal}</bdi>" in page
    assert "Commission taken back: 4.95 USD" in page
    assert "repaid from your next payouts" in page


async def test_a_payout_waiting_out_a_cool_off_says_when_it_is_paid(
    db_pool: asyncpg.Pool, cache: redis.Redis
) -> None:
    """A new destination cools off before it is paid: the creator sees until when."""
    creator, deal = uid("cr-dave"), uid("deal-d")
    until = creator_scene.T0 + timedelta(hours=24)
    to = replace(creator_scene.account(creator, uid("dave")), cooling_off_until=until)
    writer = creator_scene.Writer(db_pool)
    async with writer.db.transaction() as repo:
        await repo.save_account(to)
    await writer.deal(deal, creator, ("dl-1", creator_scene.T0))
    held = await writer.create(deal, creator, to, creator_scene.T0)
    assert held.status == "held" and held.hold is not None
    async with client_for(page_app(db_pool, cache)) as browser:
        await sign_in(browser, await new_link(db_pool, creator))
        card = _card((await browser.get("/c/payouts")).text, held.payout_id)
    assert "Your payout destination changed recently" in card
    assert (
        'Paid from <time datetime="2026-03-03T09:30:00+00:00">03 Mar 2026 09:30 UTC</time>' in card
    )


def _card(page: str, payout_id: str) -> str:
    start = page.index(f'aria-labelledby="po-{payout_id}"')
    return page[start : page.index("</article>", start)]


async def test_one_creators_session_never_reads_anothers_payout(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    async with client_for(page_app(db_pool, cache)) as browser:
        await sign_in(browser, await new_link(db_pool, scene.alice))
        own = await browser.get(f"/c/payouts/{scene.payouts['held'].payout_id}")
        assert own.status_code == 200 and "Action needed" in own.text
        # Under the page's h1, the payout is a section of its own, with no link to itself.
        assert f'<h2 id="po-{scene.payouts["held"].payout_id}">' in own.text
        assert "Details of payout" not in own.text
        others = await browser.get(f"/c/payouts/{scene.payouts['bob'].payout_id}")
        assert others.status_code == 404
        assert '<a href="/c/payouts">Back to your payouts</a>' in others.text
        assert scene.bob not in others.text and scene.bob_deal not in others.text
        assert "100.00 USD" not in others.text

    async with client_for(page_app(db_pool, cache)) as stranger:
        bobs = f"/c/payouts/{scene.payouts['bob'].payout_id}"
        for path in ("/c/payouts", "/c/payouts/list", bobs):
            refused = await stranger.get(path)
            assert refused.status_code == 401 and scene.bob not in refused.text
        stranger.cookies.set(SESSION_COOKIE, "x" * 43, domain="creators.test")
        assert (await stranger.get("/c/payouts")).status_code == 401


async def test_expired_tampered_and_unknown_links_open_nothing(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    expired = await new_link(db_pool, scene.alice, age=timedelta(minutes=16))
    fresh = await new_link(db_pool, scene.alice)
    last = fresh[-1]
    tampered = fresh[:-1] + ("A" if last != "A" else "B")
    for path in (expired, tampered, fresh[:-5], "/c/link/" + "Q" * 43, "/c/link/nonsense"):
        async with client_for(page_app(db_pool, cache)) as browser:
            refused = await browser.post(path)
            assert refused.status_code == 410, path
            assert "cannot be used" in refused.text
            assert SESSION_COOKIE not in browser.cookies
            assert scene.alice_deals[0] not in refused.text
    # The untouched original still works: a tampered copy used nothing up.
    async with client_for(page_app(db_pool, cache)) as browser:
        assert (await browser.post(fresh)).status_code == 303


async def test_redemptions_are_rate_limited_per_link_and_per_address(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    config = PageConfig(per_ip=Limit(4, 60), per_link=Limit(2, 600))
    app = page_app(db_pool, cache, config)
    # One link hammered from many addresses: the link's limit.
    link = "/c/link/" + "L" * 42 + "x"
    answers = []
    for _ in range(3):
        async with client_for(app) as browser:
            answers.append(await browser.post(link))
    assert [a.status_code for a in answers] == [410, 410, 429]
    assert 0 < int(answers[-1].headers["retry-after"]) <= 600
    # One address trying many links: the address's limit, which holds for a good link too.
    address = next(ADDRESSES)
    async with client_for(app, address) as browser:
        codes = [(await browser.post("/c/link/" + f"{n:043d}")).status_code for n in range(4)]
        assert codes == [410] * 4
        good = await browser.post(await new_link(db_pool, scene.alice))
        assert good.status_code == 429 and 0 < int(good.headers["retry-after"]) <= 60
        assert scene.alice not in good.text
    async with client_for(app) as elsewhere:
        assert (await elsewhere.post(await new_link(db_pool, scene.alice))).status_code == 303


async def test_without_redis_links_wait_and_are_not_used_up(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port}/0")
    link = await new_link(db_pool, scene.alice)
    try:
        async with client_for(page_app(db_pool, unreachable)) as browser:
            refused = await browser.post(link)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "60"
            assert SESSION_COOKIE not in browser.cookies
    finally:
        await unreachable.aclose()
    async with client_for(page_app(db_pool, cache)) as browser:
        assert (await browser.post(link)).status_code == 303


async def test_sessions_end_when_they_expire_or_the_creator_signs_out(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: Scene
) -> None:
    config = PageConfig(session_lifetime=timedelta(hours=1))
    now = [datetime.now(UTC)]
    app = page_app(db_pool, cache, config, clock=lambda: now[0])
    async with client_for(app) as browser:
        await sign_in(browser, await new_link(db_pool, scene.alice))
        assert (await browser.get("/c/payouts")).status_code == 200
        now[0] += timedelta(hours=1, seconds=1)
        assert (await browser.get("/c/payouts")).status_code == 401

    async with client_for(page_app(db_pool, cache)) as browser:
        await sign_in(browser, await new_link(db_pool, scene.alice))
        session = browser.cookies[SESSION_COOKIE]
        out = await browser.post("/c/sign-out")
        assert out.status_code == 200 and SESSION_COOKIE not in browser.cookies
        browser.cookies.set(SESSION_COOKIE, session, domain="creators.test")
        assert (await browser.get("/c/payouts")).status_code == 401

    async with client_for(page_app(db_pool, cache)) as browser:
        await sign_in(browser, await new_link(db_pool, scene.alice))  # 12 hours, kept

    # A sweep an hour from now deletes what has expired by then: every link (15 minutes at
    # most), not the 12-hour sessions.
    link = await new_link(db_pool, scene.alice)
    later = datetime.now(UTC) + timedelta(hours=1)
    sessions = await db_pool.fetchval(
        "SELECT count(*) FROM payouts_creator_sessions WHERE expires_at > $1", later
    )
    assert sessions > 0
    assert await CreatorAccess(db_pool).forget_expired(later) > 0
    assert await db_pool.fetchval("SELECT count(*) FROM payouts_creator_links") == 0
    assert await db_pool.fetchval("SELECT count(*) FROM payouts_creator_sessions") == sessions
    async with client_for(page_app(db_pool, cache)) as browser:
        assert (await browser.post(link)).status_code == 410
