"""The contract every `Mailer` passes (subclassed per adapter): the SMTP mailer against the
local sink, and the unit tests' fake."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from services.payouts.notifications.sender import Mailer
from services.payouts.notifications.smtp import InDoubt, NotSent


def letter(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "CreatorFlow <payouts@creatorflow.test>"
    message["To"] = to
    message["Subject"] = "Your payout: sent"
    message["Message-ID"] = f"<{to.partition('@')[0]}@creatorflow.test>"
    message.set_content("Status: Sent\n")
    return message


class MailerContract:
    """Subclasses provide `mailer` and `taken` (the messages the server kept) fixtures."""

    @pytest.fixture
    def mailer(self) -> Any:
        raise NotImplementedError

    @pytest.fixture
    def taken(self) -> Any:
        raise NotImplementedError

    async def test_a_message_taken_arrives_once_as_it_was_sent(
        self, mailer: Mailer, taken: list[EmailMessage]
    ) -> None:
        await mailer.send(letter("jane@example.test"))
        assert [(m["To"], m["Message-ID"], m["Subject"]) for m in taken] == [
            ("jane@example.test", "<jane@creatorflow.test>", "Your payout: sent")
        ]
        assert taken[0].get_content() == "Status: Sent\n"

    async def test_a_recipient_refused_for_now_is_not_sent_and_may_be_tried_again(
        self, mailer: Mailer, taken: list[EmailMessage]
    ) -> None:
        with pytest.raises(NotSent) as refused:
            await mailer.send(letter("later@example.test"))
        assert refused.value.retryable and "451" in refused.value.reason
        assert "later@example.test" not in refused.value.reason
        assert taken == []

    async def test_a_recipient_refused_for_good_is_not_sent_and_not_tried_again(
        self, mailer: Mailer, taken: list[EmailMessage]
    ) -> None:
        with pytest.raises(NotSent) as refused:
            await mailer.send(letter("refused@example.test"))
        assert not refused.value.retryable and "550" in refused.value.reason
        assert taken == []

    async def test_a_connection_dropped_after_the_message_leaves_it_in_doubt(
        self, mailer: Mailer, taken: list[EmailMessage]
    ) -> None:
        with pytest.raises(InDoubt):
            await mailer.send(letter("drop@example.test"))
        assert [m["To"] for m in taken] == ["drop@example.test"]  # it was taken after all
