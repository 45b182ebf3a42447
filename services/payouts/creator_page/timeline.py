"""What the creator page shows, from payouts' own records: per deal its confirmed work, and per
payout a timeline confirmed -> scheduled -> sent -> settled (or held, failed, returned), the
amounts, the rail, and in plain words what to do when it waits.

Pure: the read side (`read.py`) hands in payouts, confirmations and the status events each
payout published; nothing here does I/O. Nothing here shows a payout destination or a raw
provider or hold message (they may quote an account or an email): only codes mapped to words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from services.payouts.domain.accounts import HoldCode
from services.payouts.domain.amounts import SAME_CURRENCY
from services.payouts.domain.lifecycle import Payout
from shared.contract.money import Money, shown_rate


@dataclass(frozen=True)
class Action:
    """Why a payout waits and what the creator can do about it, in plain words."""

    title: str
    what_to_do: str
    needs_you: bool = True  # "Action needed", or only "Why it waits"


HOLD_ACTIONS: Final[Mapping[HoldCode, Action]] = {
    HoldCode.NO_ACCOUNT: Action(
        "We don't know where to pay you yet.",
        "Add a payout account (Stripe, PayPal or Wise) in your onboarding profile. This "
        "payout is released automatically as soon as it is saved.",
    ),
    HoldCode.TAX_FORM: Action(
        "Your tax form is missing or not verified yet.",
        "Submit a W-9 (US persons) or a W-8BEN / W-8BEN-E (everyone else) in your onboarding "
        "profile. This payout is released automatically once the form is verified.",
    ),
    HoldCode.FX_RATE: Action(
        "We are waiting for an exchange rate for your currency.",
        "Nothing to do: it is converted and sent as soon as the rate is published.",
        needs_you=False,
    ),
    HoldCode.FX_SUSPECT: Action(
        "The latest exchange rate looked wrong, so we did not use it.",
        "Nothing to do: it is converted and sent as soon as a trusted rate is published.",
        needs_you=False,
    ),
    HoldCode.STALE_FX: Action(
        "The exchange rate on file was out of date when your work was confirmed.",
        "Nothing to do: it is converted at the first rate published after your work was "
        "confirmed, then sent.",
        needs_you=False,
    ),
    HoldCode.AMOUNT_CHECK: Action(
        "Our safety check on the amount stopped this payout before any money moved.",
        "Nothing to do: our team has been alerted and looks into it. Contact support if it "
        "is still waiting after two business days.",
        needs_you=False,
    ),
    HoldCode.DESTINATION_COOLOFF: Action(
        "Your payout destination changed recently, so we wait before paying to it.",
        "If you made the change, nothing to do: it is paid when the waiting period ends. If "
        "you did not, contact support at once.",
        needs_you=False,
    ),
    HoldCode.AWAITING_FUNDS: Action(
        "The brand has not yet paid in the money for this payout.",
        "Nothing to do: it is sent as soon as the brand's funds arrive. Contact the brand if "
        "it waits for long.",
        needs_you=False,
    ),
    HoldCode.RAIL_UNAVAILABLE: Action(
        "Your payout method is not available right now.",
        "Choose another payout method in your onboarding profile, or wait: it is sent as "
        "soon as the method is available again.",
    ),
}
FAILED_ACTION: Final = Action(
    "The transfer did not go through.",
    "Check your payout account in your onboarding profile: once it is updated, the payout "
    "is sent again automatically. Contact support if it fails again.",
)
UNKNOWN_HOLD: Final = Action(
    "This payout is held.",
    "Nothing to do for now: our team has been alerted. Contact support if it is still "
    "waiting after two business days.",
    needs_you=False,
)
RETURNED_ACTION: Final = Action(
    "The money came back: the receiving account refused it.",
    "Check your payout account in your onboarding profile: once it is updated, the payout "
    "is sent again automatically.",
)

# How long each rail usually takes from sending to arrival (the rails' own published
# figures); the page shows "usually arrives by", never a promise.
TYPICAL_ARRIVAL: Final[Mapping[str, timedelta]] = {
    "stripe": timedelta(days=2),
    "paypal": timedelta(hours=1),
    "wise": timedelta(days=1),
}
DEFAULT_ARRIVAL: Final = timedelta(days=3)
RAIL_NAMES: Final[Mapping[str, str]] = {"stripe": "Stripe", "paypal": "PayPal", "wise": "Wise"}


@dataclass(frozen=True)
class StatusEvent:
    """One published status of a payout (`payout.<status>`), in publication order."""

    payout_id: str
    status: str
    at: datetime


@dataclass(frozen=True)
class Step:
    label: str
    at: datetime | None  # None: not reached yet
    state: str  # "done", "current", "problem" or "next"
    current: bool = False  # where the payout stands now


@dataclass(frozen=True)
class PayoutView:
    payout_id: str
    title: str
    status: str  # what the creator reads: "Held", "Sent", ...
    tone: str  # "ok", "wait", "problem"
    steps: tuple[Step, ...]
    net: Money | None
    gross: Money
    platform_fee: Money
    recovered: Money | None
    fx: str | None  # "1 USD = 0.9 EUR (ecb, 1 Apr 2025 16:00 UTC)"
    rail: str | None
    reference: str | None
    expected_arrival: datetime | None
    action: Action | None
    # A payout waiting out a destination's cool-off: when the wait ends and it is paid.
    waits_until: datetime | None = None


@dataclass(frozen=True)
class DealView:
    deal_id: str
    confirmed: tuple[tuple[str, datetime], ...]  # (deliverable, when), in time order
    payouts: tuple[PayoutView, ...] = field(default=())
    # Commission taken back after refunds (clawbacks): the creator's share of each, which
    # later payouts repay ("Repaid from an earlier adjustment").
    taken_back: tuple[Money, ...] = field(default=())


def when(moment: datetime | None) -> str:
    """A time as the page prints it (UTC, unambiguous in every locale)."""
    return "" if moment is None else moment.strftime("%d %b %Y %H:%M UTC")


def deal_views(
    payouts: Sequence[Payout],
    confirmations: Mapping[str, Mapping[str, datetime]],
    events: Sequence[StatusEvent],
    cooling_off_until: datetime | None = None,
) -> list[DealView]:
    """One view per deal (newest activity first), each with its payouts' timelines and the
    commission its clawbacks took back (a clawback sends nothing: it is repaid from later
    payouts, whose "Repaid from an earlier adjustment" it explains). `cooling_off_until` is
    when the creator's new destination may be paid (their account's), if it is cooling off."""
    history: dict[str, list[StatusEvent]] = {}
    for event in events:
        history.setdefault(event.payout_id, []).append(event)
    by_deal: dict[str, list[PayoutView]] = {}
    taken_back: dict[str, list[Money]] = {}
    for payout in payouts:
        if payout.kind == "clawback":
            taken_back.setdefault(payout.deal_id, []).append(payout.creator_share)
            by_deal.setdefault(payout.deal_id, [])
            continue
        view = payout_view(
            payout,
            confirmations.get(payout.deal_id, {}),
            history.get(payout.payout_id, []),
            cooling_off_until,
        )
        by_deal.setdefault(payout.deal_id, []).append(view)
    views = [
        DealView(
            deal_id,
            tuple(sorted(confirmations.get(deal_id, {}).items(), key=lambda kv: kv[1])),
            tuple(views),
            tuple(taken_back.get(deal_id, ())),
        )
        for deal_id, views in by_deal.items()
    ]
    return sorted(views, key=_latest, reverse=True)


def _latest(deal: DealView) -> datetime:
    moments = [s.at for p in deal.payouts for s in p.steps if s.at is not None]
    moments += [at for _, at in deal.confirmed]
    return max(moments, default=_EPOCH)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def payout_view(
    payout: Payout,
    confirmed: Mapping[str, datetime],
    history: Sequence[StatusEvent],
    cooling_off_until: datetime | None = None,
) -> PayoutView:
    status, tone, action = _now(payout, history)
    cooling_off = (
        payout.status == "held"
        and payout.hold is not None
        and payout.hold.code == HoldCode.DESTINATION_COOLOFF
    )
    net = payout.net
    return PayoutView(
        payout_id=payout.payout_id,
        title=_title(payout),
        status=status,
        tone=tone,
        steps=_steps(payout, confirmed, history),
        net=net,
        gross=payout.gross,
        platform_fee=payout.platform_fee,
        recovered=payout.recovered,
        fx=_fx_text(payout),
        rail=RAIL_NAMES.get(payout.rail or "", payout.rail),
        reference=payout.provider_ref,
        expected_arrival=_expected_arrival(payout, history),
        action=action,
        waits_until=cooling_off_until if cooling_off else None,
    )


def _title(payout: Payout) -> str:
    if payout.kind == "commission":
        return "Commission" + (f" ({payout.milestone})" if payout.milestone else "")
    return "Fee" + (f" for {payout.milestone}" if payout.milestone else "")


def _returned(history: Sequence[StatusEvent]) -> bool:
    """Whether the last status is a failure that came after the payout was sent."""
    return len(history) >= 2 and history[-1].status == "failed" and history[-2].status == "sent"


def _now(payout: Payout, history: Sequence[StatusEvent]) -> tuple[str, str, Action | None]:
    """The status in words, its tone, and what to do if anything."""
    hold_code = payout.hold.code if payout.status == "held" and payout.hold else None
    return status_words(payout.status, hold_code, returned=_returned(history))


def status_words(
    status: str, hold_code: str | None, *, returned: bool = False
) -> tuple[str, str, Action | None]:
    """A status in the words the page uses, its tone, and what to do if anything (also what
    the payout e-mails say: services/payouts/notifications/content.py). `hold_code` is why a
    held payout waits; `returned`, a failure that came after the payout was sent."""
    if status == "held":
        action = HOLD_ACTIONS.get(HoldCode(hold_code)) if hold_code in _HOLD_CODES else None
        return "Held", "wait", action or UNKNOWN_HOLD
    if status == "failed":
        if returned:
            return "Returned", "problem", RETURNED_ACTION
        return "Failed", "problem", FAILED_ACTION
    words = {"scheduled": "Scheduled", "sent": "Sent", "settled": "Arrived"}
    return words[status], "ok", None


_HOLD_CODES: Final = frozenset(c.value for c in HoldCode)


def money_text(value: Money) -> str:
    """An amount as the page and the e-mails print it: `1,234.50 EUR`."""
    return f"{value.amount:,f} {value.currency}"


_LABELS: Final = {
    "scheduled": "Payout scheduled",
    "held": "Held",
    "sent": "Sent",
    "settled": "Arrived in your account",
    "failed": "Failed",
}


def _steps(
    payout: Payout, confirmed: Mapping[str, datetime], history: Sequence[StatusEvent]
) -> tuple[Step, ...]:
    if payout.kind == "commission":
        first = Step("Commission decided", payout.fx_at, "done")
    else:
        last = max(confirmed.values(), default=payout.fx_at)
        first = Step("Work confirmed", last, "done")
    steps = [first]
    previous = ""
    for event in history:
        label = _LABELS.get(event.status, event.status)
        if event.status == "failed" and previous == "sent":
            label = "Returned"
        problem = event.status in ("held", "failed")
        steps.append(Step(label, event.at, "problem" if problem else "done"))
        previous = event.status
    if payout.status != "settled":
        last_step = steps[-1]
        steps[-1] = Step(last_step.label, last_step.at, _current_state(last_step), current=True)
    return tuple(steps) + _to_come(payout)


def _current_state(step: Step) -> str:
    return "problem" if step.state == "problem" else "current"


def _to_come(payout: Payout) -> tuple[Step, ...]:
    """The steps still ahead of the payout."""
    if payout.status in ("held", "failed", "scheduled"):
        return (Step("Sent", None, "next"), Step("Arrived in your account", None, "next"))
    if payout.status == "sent":
        return (Step("Arrived in your account", None, "next"),)
    return ()


def _fx_text(payout: Payout) -> str | None:
    fx, net = payout.fx, payout.net
    if fx is None or net is None:
        return None
    if fx.source == SAME_CURRENCY or net.currency == payout.gross.currency:
        return f"no conversion ({net.currency})"
    source = f" ({fx.source}, {when(fx.as_of)})" if fx.as_of else f" ({fx.source})"
    return f"1 {payout.gross.currency} = {shown_rate(fx.rate)} {net.currency}{source}"


def _expected_arrival(payout: Payout, history: Sequence[StatusEvent]) -> datetime | None:
    """When a sent payout usually arrives: its sending time plus its rail's usual delay."""
    if payout.status != "sent":
        return None
    sent = next((e.at for e in reversed(history) if e.status == "sent"), None)
    if sent is None:
        return None
    return sent + TYPICAL_ARRIVAL.get(payout.rail or "", DEFAULT_ARRIVAL)
