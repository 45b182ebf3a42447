"""The e-mail a creator gets for each payout status change (docs/architecture.md §11).

One `Notice` per `payout.<status>` event payouts publishes, keyed by that event's id: a
replayed change repeats the id and is one notice still. Its e-mail goes through the states
below, each committed before the next step, so that a crash never sends it twice:

    pending ──claim (lease)──▶ pending, leased ──start──▶ sending ──SMTP──▶ sent
       ▲                                                    │
       └────── refused by the server, tries left ◀──────────┤──▶ failed (refused for good)
                                                            └──▶ unknown (stopped mid-send)

Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import SecretStr

from shared.contract.events import CloudEvent, PayoutStatusChanged
from shared.contract.money import Money

EmailState = Literal["pending", "sending", "sent", "failed", "unknown"]
EMAIL_STATES: Final[tuple[EmailState, ...]] = ("pending", "sending", "sent", "failed", "unknown")


@dataclass(frozen=True)
class Notice:
    """One payout status change, as its e-mail tells it."""

    event_id: str  # the `payout.<status>` event's id: one notice per change
    payout_id: str
    creator_id: str
    status: str
    # The creator's share: converted (`net`, in the creator's currency) or, while the payout
    # is not converted yet, before conversion in the deal's currency.
    amount: Money
    converted: bool
    changed_at: datetime
    kind: str | None = None  # fee, commission (None: not said)
    hold_code: str | None = None  # why a held payout waits
    returned: bool = False  # a failure that came after the payout was sent

    def message_id(self, domain: str) -> str:
        """The e-mail's Message-ID, derived from the change (payout, status, event id): sent
        again, the same message has the same id, so mail clients show it once."""
        digest = hashlib.sha256(
            f"{self.payout_id}\x1f{self.status}\x1f{self.event_id}".encode()
        ).hexdigest()[:40]
        return f"<payout-{self.status}-{digest}@{domain}>"


@dataclass(frozen=True)
class DueEmail:
    """A notice claimed for sending: to `email` (None: the creator has no address now),
    held by `claim_id` until its lease ends."""

    notice: Notice
    email: SecretStr | None
    claim_id: str
    attempts: int  # SMTP transactions started for it before this one
    # The creator's new destination may be paid from then (their account's, now), if it cools off.
    cooling_off_until: datetime | None = None


def notice_of(
    event: CloudEvent[Any], *, hold_code: str | None, previous_status: str | None
) -> Notice | None:
    """The notice of a `payout.<status>` event, or None for any other event. A clawback's
    amount is what the creator owes back (its share, repaid from later payouts). `hold_code`
    is the payout's, when held; `previous_status` the status it published before this one,
    if any."""
    data = event.data
    if not isinstance(data, PayoutStatusChanged):
        return None
    if data.net is not None:
        amount, converted = data.net, True
    else:
        amount = data.gross - (data.platform_fee or Money.zero(data.gross.currency))
        if data.recovered is not None:
            amount = amount - data.recovered
        converted = False
    return Notice(
        event_id=event.id,
        payout_id=data.payout_id,
        creator_id=data.creator_id,
        status=data.status,
        amount=amount,
        converted=converted,
        changed_at=event.time,
        kind=data.kind,
        hold_code=hold_code if data.status == "held" else None,
        returned=data.status == "failed" and previous_status in ("sent", "settled"),
    )
