"""What a payout e-mail says: the status in the page's words (`creator_page.timeline`), the
amount in the creator's currency, what to do when the payout waits on them, and a fresh link
to the page. Plain text; nothing but the link opens anything, and no destination, hold reason
or provider message is ever in it (they may quote an account or an address).

Pure: the sender (`sender.py`) hands in the notice, the link and the addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Final

from services.payouts.creator_page.timeline import money_text, status_words, when
from services.payouts.domain.accounts import HoldCode
from services.payouts.notices import Notice

_WHAT: Final = {"fee": "fee", "commission": "commission"}


@dataclass(frozen=True)
class Link:
    url: str
    expires_at: datetime


CLAWBACK_WORDS: Final = "Commission taken back after a refund"
CLAWBACK_NOTE: Final = "repaid from your next payouts in this currency; nothing is charged to you"


def subject(notice: Notice) -> str:
    if notice.kind == "clawback":
        return f"commission taken back: {money_text(notice.amount)}, {CLAWBACK_NOTE}"
    words, _, action = status_words(notice.status, notice.hold_code, returned=notice.returned)
    what = _WHAT.get(notice.kind or "", "payout")
    prefix = "Action needed: " if action is not None and action.needs_you else ""
    return f"{prefix}your {what} payout of {money_text(notice.amount)}: {words.lower()}"


def body(notice: Notice, link: Link, paid_from: datetime | None = None) -> str:
    """The e-mail's text; `paid_from` is when a new destination's cool-off ends, said beside
    a payout held for it (while it has not ended)."""
    words, _, action = status_words(notice.status, notice.hold_code, returned=notice.returned)
    amount = money_text(notice.amount)
    if notice.kind == "clawback":
        # Commission paid on sales later refunded: owed back, not a payout that moves money.
        words, action, amount = CLAWBACK_WORDS, None, f"{amount} ({CLAWBACK_NOTE})"
    elif not notice.converted:
        # The rate is the one locked when the payout became owed (README, "In your currency,
        # exactly"), however long it waits.
        commission = notice.kind == "commission"
        owed = "your commission was decided" if commission else "your work was confirmed"
        amount += f" (before conversion to your currency, at the rates in force when {owed})"
    lines = [
        "Hello,",
        "",
        f"Your payout {notice.payout_id} changed on {when(notice.changed_at)}.",
        "",
        f"Status: {words}",
        f"Amount: {amount}",
    ]
    if action is not None:
        heading = "Action needed" if action.needs_you else "Why it waits"
        lines += ["", f"{heading}: {action.title}", action.what_to_do]
        if notice.hold_code == HoldCode.DESTINATION_COOLOFF and paid_from is not None:
            lines.append(f"Paid from {when(paid_from)}.")
    lines += [
        "",
        "See all your payouts and their timelines:",
        link.url,
        "",
        f"This link opens your payout page once, until {when(link.expires_at)}. "
        "If it has expired, the next update brings a new one, or ask us for one.",
        "",
        "CreatorFlow payouts",
    ]
    return "\n".join(lines) + "\n"


def message(
    notice: Notice,
    link: Link,
    *,
    sender: str,
    to: str,
    now: datetime,
    paid_from: datetime | None = None,
) -> EmailMessage:
    """The e-mail of one notice, with a Message-ID derived from the change (`Notice.message_id`):
    the same change always gives the same id. `paid_from` as for `body`."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to
    email["Subject"] = subject(notice)
    email["Date"] = format_datetime(now)
    email["Message-ID"] = notice.message_id(sender_domain(sender))
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(body(notice, link, paid_from))
    return email


def sender_domain(sender: str) -> str:
    """The domain of the sender's address (`"CreatorFlow <payouts@example.com>"` ->
    `example.com`), for Message-IDs."""
    _, address = parseaddr(sender)
    return address.rpartition("@")[2] or "localhost"
