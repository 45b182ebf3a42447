"""The unit tests' fake mailer passes the same contract as the SMTP mailer."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from tests.unit.payouts.fake_mailer import FakeMailer
from tests.unit.payouts.mailer_contract import MailerContract


class TestFakeMailer(MailerContract):
    @pytest.fixture
    def mailer(self) -> FakeMailer:
        return FakeMailer()

    @pytest.fixture
    def taken(self, mailer: FakeMailer) -> list[EmailMessage]:
        return mailer.messages
