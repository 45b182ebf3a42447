"""The creator payout page on the real PostgreSQL and Redis, driven with httpx: the magic link
(printed by `creatorflow creators link`), what a mail scanner's GET does (nothing), reused,
expired and tampered links, the rate limit, one creator's session against another's payout,
and what the page shows: a settled payout's timeline, a held one's action needed, never a
destination or a token."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from typer.testing import CliRunner

from services.payouts import translate
from services.payouts.creator_page.access import CreatorAccess, Limit, token_hash
from services.payouts.creator_page.web import SESSION_COOKIE, PageConfig, page_app
from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import PayoutAccount
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.money import FxSnapshot, Money
from shared.tools.cli.main import app as creatorflow
from shared.tools.infra import InfraUrls
from tests.unit.payouts.builders import sealed, uid
from tests.unit.payouts.store_contract import terms

pytestmark = pytest.mark.integration

T0: Final = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SNAPSHOT: Final = FxSnapshot("USD", {"EUR": Decimal("0.9")}, T0 - timedelta(hours=1), "ecb")
LEASE: Final = timedelta(seconds=60)
_addresses = (f"10.20.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def account(creator_id: str, destination: str, *, tax_status: str = "verified") -> PayoutAccount:
    return PayoutAccount(
        creator_id, "paypal", sealed(creator_id, destination), "EUR", "W-9", tax_status, T0
    )


class Writer:
    """Stores payouts and their transitions as the service does: state, ledger, and each
    published status in the outbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.db = PostgresPayoutsStore(pool)

    async def deal(self, deal_id: str, creator_id: str, *confirmed: tuple[str, datetime]) -> None:
        async with self.db.transaction() as repo:
            await repo.add_deal(terms(deal_id, creator_id), f"signed-{deal_id}")
            for deliverable, at in confirmed:
                await repo.add_confirmation(deal_id, deliverable, "brand", at)

    async def step(
        self, transition: lifecycle.Transition, at: datetime, previous: str | None
    ) -> lifecycle.Payout:
        payout = transition.payout
        async with self.db.transaction() as repo:
            if previous is None:
                assert await repo.add_payout(payout)
            else:
                await repo.save_payouts([(payout, previous)])  # type: ignore[list-item]
            await repo.post(transition.transfers)
            if transition.publish:
                await repo.enqueue([translate.status_event(payout, at)])
        return payout

    async def create(
        self, deal_id: str, creator_id: str, to: PayoutAccount | None, at: datetime
    ) -> lifecycle.Payout:
        created = lifecycle.create(
            terms(deal_id, creator_id),
            "fee",
            "",
            Money.of("100.00", "USD"),
            platform_fee_bps=100,
            account=to,
            snapshot=SNAPSHOT,
            now=at,
            fx_at=at,
        )
        return await self.step(created, at, None)

    async def settled(self, deal_id: str, creator_id: str, to: PayoutAccount) -> lifecycle.Payout:
        payout = await self.create(deal_id, creator_id, to, T0 + timedelta(minutes=1))
        claimed = lifecycle.claim(payout, to, T0, LEASE, rail="paypal")
        payout = await self.step(claimed, T0 + timedelta(minutes=1), "scheduled")
        payout = await self.step(
            lifecycle.mark_sent(payout, "PAYOUT-REF-7731"), T0 + timedelta(minutes=2), "scheduled"
        )
        return await self.step(lifecycle.settle(payout), T0 + timedelta(hours=3), "sent")


class Scene:
    """Two creators: `alice` with a settled and a held payout, `bob` with a scheduled one."""

    def __init__(self) -> None:
        self.alice, self.bob = uid("cr-alice"), uid("cr-bob")
        self.alice_deals = (uid("deal-a"), uid("deal-a"))
        self.bob_deal = uid("deal-b")
        # Where their money goes: easy to search for, never to be shown.
        self.alice_destination = f"{uid('alice')}@mail.example"
        self.bob_destination = uid("acct_bob")
        self.payouts: dict[str, lifecycle.Payout] = {}

    async def write(self, pool: asyncpg.Pool) -> None:
        writer = Writer(pool)
        settled_deal, held_deal = self.alice_deals
        alice = account(self.alice, self.alice_destination)
        async with writer.db.transaction() as repo:
            await repo.save_account(alice)
            await repo.save_account(account(self.bob, self.bob_destination))
        await writer.deal(settled_deal, self.alice, ("dl-1", T0 - timedelta(hours=2)), ("dl-2", T0))
        await writer.deal(held_deal, self.alice, ("dl-1", T0))
        await writer.deal(self.bob_deal, self.bob, ("dl-1", T0))
        self.payouts["settled"] = await writer.settled(settled_deal, self.alice, alice)
        # Its tax form was not verified yet when the work was confirmed: held.
        pending = account(self.alice, self.alice_destination, tax_status="pending")
        self.payouts["held"] = await writer.create(held_deal, self.alice, pending, T0)
        self.payouts["bob"] = await writer.create(
            self.bob_deal, self.bob, account(self.bob, self.bob_destination), T0
        )


@pytest.fixture(scope="module")
async def scene(db_pool: asyncpg.Pool) -> Scene:
    scene = Scene()
    await scene.write(db_pool)
    return scene


@pytest.fixture
async def cache(infra: InfraUrls) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()


def client_for(app: object, address: str | None = None) -> httpx.AsyncClient:
    """A browser at its own address, on https (the session cookie is Secure)."""
    transport = httpx.ASGITransport(app=app, client=(address or next(_addresses), 50000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="https://creators.test")


async def new_link(pool: asyncpg.Pool, creator_id: str, *, age: timedelta = timedelta()) -> str:
    link = await CreatorAccess(pool).new_link(
        creator_id, datetime.now(UTC) - age, timedelta(minutes=15)
    )
    return f"/c/link/{link.token}"


async def sign_in(browser: httpx.AsyncClient, path: str) -> httpx.Response:
    opened = await browser.get(path)
    assert opened.status_code == 200 and "Continue" in opened.text
    return await browser.post(path)


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
        assert f"Deal {deal}" in page and f"Deal {deal}" in fragment
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
        others = await browser.get(f"/c/payouts/{scene.payouts['bob'].payout_id}")
        assert others.status_code == 404
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
    address = next(_addresses)
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
