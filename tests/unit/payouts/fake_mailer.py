"""An in-memory `Mailer` for unit tests. It answers by the recipient's local part as the local
SMTP sink of the integration tests does (tests/support/smtp_sink.py), and both pass
tests/unit/payouts/mailer_contract.py."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

from services.payouts.notifications.smtp import InDoubt, NotSent


class FakeMailer:
    """`messages`: every message taken. `stall`: while set, `send` never returns and takes
    nothing (a server that hangs: the sender is stopped there, in doubt)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.stall = False
        self.stalled = asyncio.Event()  # set once a send stalls

    async def send(self, message: EmailMessage) -> None:
        local = str(message["To"]).partition("@")[0]
        if local.startswith("later"):
            raise NotSent("SMTP 451 for the recipient", retryable=True)
        if local.startswith("refused"):
            raise NotSent("SMTP 550 for the recipient", retryable=False)
        if self.stall:
            self.stalled.set()
            await asyncio.Event().wait()
        self.messages.append(message)
        if local.startswith("drop"):
            raise InDoubt("SMTPServerDisconnected")
