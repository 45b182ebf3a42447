"""Payout accounts and whether a creator can be paid now."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

# Forms that let a payer skip backup withholding: W-9 (US persons), W-8BEN (foreign
# individuals), W-8BEN-E (foreign entities). "other" is not accepted for automatic payouts.
ACCEPTED_TAX_FORMS: Final = frozenset({"W-9", "W-8BEN", "W-8BEN-E"})

# What a raw account number looks like: digits with separators, or an IBAN. Destinations must be
# provider tokens (or encrypted references); raw numbers are refused so they are never stored.
_RAW_ACCOUNT_NUMBER: Final = re.compile(r"[0-9 \-]{6,}|[A-Z]{2}[0-9]{2}[A-Z0-9 ]{10,40}")


class HoldCode(StrEnum):
    """Why a payout is held; each is cleared by a different later event."""

    NO_ACCOUNT = "no_account"  # cleared by creator.payout-account.upserted
    TAX_FORM = "tax_form"  # cleared by an account event with a verified accepted form
    FX_RATE = "fx_rate"  # cleared by fx.rates.published with the missing rate
    # The snapshot in force is suspect (shared.runtime.fx_moves): cleared by a trusted snapshot.
    FX_SUSPECT = "fx_suspect"
    # The snapshot in force when the payout became owed was too old (PAYOUTS_FX_MAX_AGE_SECONDS):
    # cleared by the first trusted snapshot published after that moment.
    STALE_FX = "stale_fx"
    # The converted amount does not match the share times the recorded rate: never sent; an
    # operator investigates (it means a bug or a changed row, not a late event).
    AMOUNT_CHECK = "amount_check"
    # The destination changed while payouts were in flight: cleared when the cool-off ends.
    DESTINATION_COOLOFF = "destination_cooloff"
    # The rail of the account's method is not configured (services/payouts/providers/rails.py):
    # cleared when the service starts with it configured, or the account names another method.
    RAIL_UNAVAILABLE = "rail_unavailable"
    # The brand's escrow in the payout's deal currency does not cover its gross amount (or
    # earlier payouts of the brand in that currency wait already): cleared by brand.funded.
    # Nothing is drawn from the escrow meanwhile.
    AWAITING_FUNDS = "awaiting_funds"


RELEASED_BY_ACCOUNTS: Final = tuple(c for c in HoldCode if c is not HoldCode.AWAITING_FUNDS)
"""Holds that a creator's account update may clear: all but `awaiting_funds`, released in
order of confirmation by the brand's fundings alone (domain/escrow.py)."""


FX_HOLDS: Final = (HoldCode.FX_RATE, HoldCode.FX_SUSPECT, HoldCode.STALE_FX)
"""Holds that a new FX snapshot may clear."""


@dataclass(frozen=True)
class Hold:
    code: HoldCode
    reason: str


class RawDestination(ValueError):
    """The destination looks like a raw bank account number, not a provider token."""


@dataclass(frozen=True)
class SealedDestination:
    """A provider token encrypted for storage (services/payouts/destinations.py): opaque here,
    opened only for the provider call."""

    data: bytes = field(repr=False)
    # A keyed digest of (creator, destination): tells a changed destination from a re-sent
    # one without opening either. None for destinations stored before it existed.
    fingerprint: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PayoutAccount:
    """Where a creator is paid. The destination (a provider token) is kept sealed."""

    creator_id: str
    method: str
    destination: SealedDestination
    currency: str
    tax_form_type: str
    tax_form_status: str
    updated_at: datetime
    # Payouts to this destination wait until then (a destination changed with payouts in
    # flight: `cooling_off_until`).
    cooling_off_until: datetime | None = None
    # The creator's fallback rail and its destination (sealed), if any: used only after the
    # main rail refused a payout with an error proving nothing was executed.
    fallback_method: str | None = None
    fallback_destination: SealedDestination | None = None
    # Where the creator's payout notifications go (personal data: never logged), if given.
    email: str | None = field(default=None, repr=False)


def looks_like_account_number(destination: str) -> bool:
    """Whether a destination looks like a raw bank account number rather than a provider
    token: such a destination is refused, so it is never stored."""
    return _RAW_ACCOUNT_NUMBER.fullmatch(destination.strip()) is not None


def cooling_off_until(
    previous: PayoutAccount | None,
    new: PayoutAccount,
    *,
    in_flight: bool,
    now: datetime,
    cool_off: timedelta,
) -> datetime | None:
    """Until when payouts to `new` must wait: a destination (or method) that changes while
    payouts are in flight is the classic takeover of a creator's money, so the change waits
    `cool_off` (long enough for the creator or an operator to notice). The same destination
    sent again keeps a running cool-off; a first account, or a change with nothing in flight,
    waits for nothing."""
    if previous is None:
        return None
    old, fresh = previous.destination.fingerprint, new.destination.fingerprint
    changed = previous.method != new.method or (old is not None and old != fresh)
    # A new fallback is as much a new place for the money to go as a new destination.
    if new.fallback_destination is not None:
        before = previous.fallback_destination
        changed = (
            changed
            or previous.fallback_method != new.fallback_method
            or (before is None or before.fingerprint != new.fallback_destination.fingerprint)
        )
    if not changed:
        return previous.cooling_off_until
    if in_flight and cool_off > timedelta(0):
        return now + cool_off
    return None


def hold_for(account: PayoutAccount | None, now: datetime) -> Hold | None:
    """Why a payout to this account must wait at `now`, or None when it can be paid now."""
    if account is None:
        return Hold(HoldCode.NO_ACCOUNT, "no payout account on file")
    if account.tax_form_type not in ACCEPTED_TAX_FORMS:
        return Hold(
            HoldCode.TAX_FORM,
            f"tax form {account.tax_form_type} is not accepted; need W-9, W-8BEN or W-8BEN-E",
        )
    if account.tax_form_status != "verified":
        return Hold(
            HoldCode.TAX_FORM,
            f"tax form {account.tax_form_type} is {account.tax_form_status}, not verified",
        )
    if account.cooling_off_until is not None and now < account.cooling_off_until:
        return Hold(
            HoldCode.DESTINATION_COOLOFF,
            "the payout destination changed while payouts were in flight; they are paid to "
            f"it from {account.cooling_off_until.isoformat()} (any other change, even back, "
            "waits as long again)",
        )
    return None
