"""Sending one e-mail over SMTP (aiosmtplib), telling apart what the server refused (nothing was
delivered: safe to try again) from what cannot be known (the connection ended while the
message was being handed over).

Errors carry the SMTP reply code or the error's class only: a server's reply text may quote
the recipient's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from pydantic import SecretStr


class NotSent(Exception):
    """The server did not take the message: nothing was delivered. `retryable` when it may
    take it later (a 4xx reply, no connection)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class InDoubt(Exception):
    """The SMTP transaction broke off after the message was handed over: it may have been
    delivered."""


@dataclass(frozen=True)
class SmtpMailer:
    """An SMTP submission server: STARTTLS (required unless `start_tls` is False) and login
    when a username is given."""

    host: str
    port: int
    username: str | None = None
    password: SecretStr | None = None
    start_tls: bool = True
    timeout_seconds: float = 30.0

    async def send(self, message: EmailMessage) -> None:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=None if self.password is None else self.password.get_secret_value(),
            start_tls=self.start_tls,
            timeout=self.timeout_seconds,
        )
        try:
            await client.connect()
        except aiosmtplib.SMTPResponseException as error:
            raise NotSent(f"SMTP {error.code} on connect", retryable=error.code < 500) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise NotSent(type(error).__name__, retryable=True) from None
        try:
            await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [r.code for r in error.recipients]
            raise NotSent(
                f"SMTP {max(codes, default=550)} for the recipient",
                retryable=all(code < 500 for code in codes),
            ) from None
        except aiosmtplib.SMTPResponseException as error:
            # A reply to MAIL, RCPT or the end of DATA: the server kept nothing.
            raise NotSent(f"SMTP {error.code}", retryable=error.code < 500) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise InDoubt(type(error).__name__) from None
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
