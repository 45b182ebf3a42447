"""Creators' payout e-mails on the real PostgreSQL and a local SMTP server (aiosmtpd): the
SMTP mailer passes the mailers' contract; a payout going scheduled -> sent -> settled gives
one e-mail per change, each with a fresh link that opens the creator's page; replayed events
and a restarted sender give no second one; a sender stopped in the middle of an SMTP
transaction leaves that e-mail unsent for good and counted `unknown`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any, Final

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.payouts.app import units_of_work
from services.payouts.creator_page.access import token_hash
from services.payouts.dispatcher import Dispatcher, utc_now
from services.payouts.handlers import PayoutPolicy
from services.payouts.notifications import link_issuer
from services.payouts.notifications.sender import EmailSender
from services.payouts.notifications.smtp import SmtpMailer
from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.schedules import SettlementPoller
from services.payouts.settings import PayoutsSettings
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.events import CloudEvent
from shared.contract.money import Money
from tests.support.smtp_sink import SmtpSink, smtp_sink
from tests.support.waiting import eventually
from tests.unit.payouts.builders import (
    DESTINATIONS,
    PLENTY,
    account,
    confirmed,
    deal_signed,
    funded,
    uid,
)
from tests.unit.payouts.harness import delivery
from tests.unit.payouts.mailer_contract import MailerContract

pytestmark = pytest.mark.integration

SENDER: Final = "CreatorFlow <payouts@creatorflow.test>"
SETTINGS: Final = PayoutsSettings(page_url="https://pay.creatorflow.test")
LEASE: Final = timedelta(seconds=90)
_LINK: Final = re.compile(r"https://pay\.creatorflow\.test/c/link/([A-Za-z0-9_-]{43})")


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with smtp_sink() as running:
        yield running


def mailer_for(sink: SmtpSink, timeout_seconds: float = 10.0) -> SmtpMailer:
    return SmtpMailer(sink.host, sink.port, start_tls=False, timeout_seconds=timeout_seconds)


class TestSmtpMailer(MailerContract):
    @pytest.fixture
    def mailer(self, sink: SmtpSink) -> SmtpMailer:
        return mailer_for(sink)

    @pytest.fixture
    def taken(self, sink: SmtpSink) -> list[EmailMessage]:
        return sink.messages


class Payouts:
    """The payouts service's consumer, dispatcher, settlement poll and e-mail sender on the
    module's PostgreSQL, with the sandbox rail."""

    def __init__(self, pool: asyncpg.Pool, mailer: SmtpMailer) -> None:
        self.pool = pool
        self.db = PostgresPayoutsStore(pool)
        self.mailer = mailer
        policy = PayoutPolicy()
        provider = SandboxProvider()
        self._consume = units_of_work(self.db, policy, lambda: None, destinations=DESTINATIONS)
        self.dispatcher = Dispatcher(self.db, provider, policy, destinations=DESTINATIONS)
        self.settlement = SettlementPoller(self.db, provider, policy, interval_seconds=1)
        self.sender = self.new_sender()

    def new_sender(self, clock: Any = utc_now) -> EmailSender:
        """The sender of a (re)started service."""
        return EmailSender(
            self.db,
            self.mailer,
            link_issuer(self.pool, SETTINGS),
            sender=SENDER,
            clock=clock,
            lease=LEASE,
        )

    async def consume(self, *events: CloudEvent[Any]) -> None:
        await self._consume([(e, delivery(e)) for e in events])

    async def states(self, creator_id: str) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT state FROM payouts_emails WHERE creator_id = $1 ORDER BY changed_at",
            creator_id,
        )
        return [r["state"] for r in rows]


async def owed_fee(payouts: Payouts, address: str | None) -> tuple[str, list[CloudEvent[Any]]]:
    """A funded deal whose fee becomes owed to a creator with `address`; the events."""
    deal, creator, brand = uid("deal"), uid("cr"), uid("br")
    events = [
        funded(brand, Money.of(PLENTY, "USD"), funding_id=uid("fund")),
        account(creator, currency="USD", form="W-9", email=address),
        deal_signed(deal, creator, brand_id=brand),
        confirmed(deal, "dl-1"),
        confirmed(deal, "dl-2"),
    ]
    await payouts.consume(*events)
    return creator, events


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("creatorflow_payout_emails_total", {"outcome": outcome}) or 0


async def test_one_email_per_change_with_a_fresh_link_and_none_again_after_replays(
    db_pool: asyncpg.Pool, sink: SmtpSink
) -> None:
    payouts = Payouts(db_pool, mailer_for(sink))
    address = f"{uid('jane')}@example.test"
    creator, events = await owed_fee(payouts, address)
    assert await payouts.sender.round() >= 1
    assert await payouts.dispatcher.dispatch_once() >= 1
    assert await payouts.sender.round() >= 1
    assert await payouts.settlement.run_once() >= 1
    assert await payouts.sender.round() >= 1
    mine = [m for m in sink.messages if m["To"] == address]
    assert [str(m["Subject"]).rsplit(": ", 1)[1] for m in mine] == [
        "scheduled",
        "sent",
        "arrived",
    ]
    assert len({m["Message-ID"] for m in mine}) == 3
    # Each e-mail carries its own link, a working one of this creator's.
    tokens = [_LINK.findall(m.get_content()) for m in mine]
    assert all(len(found) == 1 for found in tokens) and len({t[0] for t in tokens}) == 3
    for (token,) in tokens:
        row = await db_pool.fetchrow(
            "SELECT creator_id, used_at, expires_at - created_at AS lifetime "
            "FROM payouts_creator_links WHERE token_hash = $1",
            token_hash(token),
        )
        assert row is not None and row["creator_id"] == creator and row["used_at"] is None
        assert row["lifetime"] <= timedelta(minutes=15)
    # The same events again (a replay), another dispatch and poll, a restarted sender.
    await payouts.consume(*events)
    await payouts.dispatcher.dispatch_once()
    await payouts.settlement.run_once()
    await payouts.sender.round()
    await payouts.new_sender().round()
    assert len([m for m in sink.messages if m["To"] == address]) == 3
    assert await payouts.states(creator) == ["sent", "sent", "sent"]


async def test_a_sender_stopped_mid_transaction_never_sends_that_email(
    db_pool: asyncpg.Pool, sink: SmtpSink
) -> None:
    """A server that takes the connection and never answers holds the sender inside its SMTP
    transaction; the sender is stopped there (as a killed process would be)."""
    hung_connections: list[asyncio.StreamWriter] = []

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung_connections.append(writer)

    silent = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    unknown_before = counted("unknown")
    try:
        payouts = Payouts(db_pool, SmtpMailer("127.0.0.1", port, start_tls=False))
        address = f"{uid('jane')}@example.test"
        creator, _ = await owed_fee(payouts, address)
        stopped = asyncio.create_task(payouts.sender.round())

        async def sending() -> bool:
            return await payouts.states(creator) == ["sending"]

        await eventually(sending, 30, what="the e-mail committed as sending")
        stopped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopped
    finally:
        silent.close()
        for writer in hung_connections:
            writer.close()
    # Restarted, with a server that works: within the lease nothing is decided, after it
    # the e-mail is `unknown` and stays unsent.
    restarted = Payouts(db_pool, mailer_for(sink))
    await restarted.new_sender().round()
    assert await restarted.states(creator) == ["sending"]
    later = restarted.new_sender(clock=lambda: utc_now() + LEASE)
    await later.round()
    assert await restarted.states(creator) == ["unknown"]
    assert counted("unknown") - unknown_before == 1
    await restarted.new_sender(clock=lambda: utc_now() + 2 * LEASE).round()
    assert [m for m in sink.messages if m["To"] == address] == []
    assert await restarted.states(creator) == ["unknown"]


async def test_a_creator_without_an_address_gets_no_row(db_pool: asyncpg.Pool) -> None:
    payouts = Payouts(db_pool, SmtpMailer("127.0.0.1", 9, start_tls=False))
    before = counted("no_address")
    creator, _ = await owed_fee(payouts, None)
    assert await payouts.states(creator) == []
    assert counted("no_address") - before == 1
