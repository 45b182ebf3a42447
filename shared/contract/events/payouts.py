"""`payout.*` events: each change of a payout's status."""

from __future__ import annotations

from pydantic import Field

from shared.contract.events.payload import InternalPayload
from shared.contract.events.types import Id, Name, PositiveDecimal, ShortText, UtcDatetime
from shared.contract.events.vocabulary import PayoutHoldCode, PayoutKind, PayoutStatus
from shared.contract.money import NonNegativeMoney


class PayoutStatusChanged(InternalPayload):
    """`payout.<status>`: the payout reached `status`; the event type is `payout.<status>`.

    `gross` is in the deal's currency, `net` in the creator's payout currency, and `fx_rate`
    is units of the net currency per unit of the gross currency (1 when they are the same).
    A payout held before it could be converted (no account, tax form or trusted rate yet) has
    neither `net` nor `fx_rate`: its currency and rate are not known yet.
    """

    payout_id: Id = Field(
        description="Payout id.", examples=["po_5b1e0c9a7d2f4e6b8a3c1d0e9f8a7b6c"]
    )
    deal_id: Id = Field(description="Deal paid; the Kafka key.", examples=["deal-42"])
    creator_id: Id = Field(description="Creator paid.", examples=["cr-1001"])
    gross: NonNegativeMoney = Field(
        description="Amount owed, in the deal currency.",
        examples=[{"amount": "450.00", "currency": "USD"}],
    )
    fx_rate: PositiveDecimal | None = Field(
        default=None,
        description=(
            "Net currency units per gross currency unit, from the rates snapshot used; "
            "absent while the payout is held before conversion."
        ),
        examples=["0.9215"],
    )
    net: NonNegativeMoney | None = Field(
        default=None,
        description=(
            "Amount paid, in the creator's payout currency; absent while the payout is held "
            "before conversion (the currency or rate is not known yet)."
        ),
        examples=[{"amount": "414.68", "currency": "EUR"}],
    )
    status: PayoutStatus = Field(description="New status.", examples=["sent"])
    reason: ShortText | None = Field(
        default=None,
        description="Why, for held and failed payouts.",
        examples=["tax form not verified"],
    )
    # Optional since v1.7: a held payout's reason as a code a program can act on.
    hold_code: PayoutHoldCode | None = Field(
        default=None,
        description=(
            "For a held payout, why as a code: no_account, tax_form (not verified or not "
            "accepted), fx_rate (no rate for the currency), fx_suspect (the rates in force are "
            "suspect), stale_fx (they were too old when the payout became owed), amount_check "
            "(an operator investigates), destination_cooloff (the destination changed while "
            "payouts were in flight), rail_unavailable (the account's rail is not configured) "
            "or awaiting_funds (the brand's escrow does not cover it yet). A payout whose hold "
            "changes (e.g. from no_account to tax_form) is announced again by a new payout.held, "
            "so the latest one says what it waits for. Absent for every other status; `reason` "
            "says the same in words."
        ),
        examples=["tax_form"],
    )
    provider_ref: Id | None = Field(
        default=None, description="Payment provider reference, once sent.", examples=["tr_91ab"]
    )
    # Optional since v1.1: the rest of what a creator's statement shows.
    # An enum since v1.7 (before: any name; only these three were ever published).
    kind: PayoutKind | None = Field(
        default=None,
        description=(
            "What is paid: fee, commission (a deal may have several commission payouts: the "
            "first when its attribution window closes, then top-ups after late orders) or "
            "clawback (commission paid on revenue later refunded, owed back by the creator: "
            "it moves no money to them; published once, as payout.settled, whose `gross` "
            "returned to the brand's escrow, with no `net`)."
        ),
        examples=["fee"],
    )
    platform_fee: NonNegativeMoney | None = Field(
        default=None,
        description="Platform fee kept from `gross`, in the deal currency.",
        examples=[{"amount": "22.50", "currency": "USD"}],
    )
    fx_as_of: UtcDatetime | None = Field(
        default=None,
        description="When the rates snapshot used for `fx_rate` was fixed.",
        examples=["2025-04-01T16:00:00Z"],
    )
    fx_source: Name | None = Field(
        default=None, description="Feed of the rates snapshot used.", examples=["ecb"]
    )
    # Optional since v1.2: commission follows attribution after the window closes.
    recovered: NonNegativeMoney | None = Field(
        default=None,
        description=(
            "Part of the creator's share (`gross` - `platform_fee`, deal currency) kept to "
            "repay commission clawed back after a late refund; `net` converts the rest. "
            "Absent when nothing was kept."
        ),
        examples=[{"amount": "27.00", "currency": "USD"}],
    )

    @property
    def event_type(self) -> str:
        """The CloudEvent type this status is published as."""
        return f"payout.{self.status}"
