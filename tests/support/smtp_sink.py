"""A local SMTP server for the payout e-mails' tests (aiosmtpd, in the test's event loop): it
keeps what it receives, and answers by the recipient's local part as a real server might:
`later...` 451 at RCPT (try again), `refused...` 550 at RCPT, `drop...` takes the message and
then drops the connection before answering (the sender cannot know it was taken). The fake
of unit tests (tests/unit/payouts/fake_mailer.py) behaves the same; both pass
tests/unit/payouts/mailer_contract.py."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class SmtpSink:
    """`messages`: every message taken, in order, as parsed e-mails."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.host = "127.0.0.1"
        self.port = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        local = address.partition("@")[0]
        if local.startswith("later"):
            return "451 4.3.0 Mailbox busy, try again later"
        if local.startswith("refused"):
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        # Stored with local line endings, as a mailbox keeps it (SMTP sends CRLF).
        parsed = email.message_from_bytes(content.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        if any(r.partition("@")[0].startswith("drop") for r in envelope.rcpt_tos):
            assert server.transport is not None
            server.transport.abort()
        return "250 OK"


@asynccontextmanager
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    """A running sink on a free port of 127.0.0.1 (no TLS, no login)."""
    sink = SmtpSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="sink.test", data_size_limit=1_000_000), sink.host, 0
    )
    sink.port = server.sockets[0].getsockname()[1]
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()
