"""An in-memory `PayoutsStore` for unit tests; it passes the same contract as PostgreSQL.

Transactions run one at a time and roll back (restore a copy of the state) on error.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import SecretStr

from services.payouts.domain.accounts import HoldCode, PayoutAccount
from services.payouts.domain.brand_view import AttributionFigures
from services.payouts.domain.commission import replaces
from services.payouts.domain.escrow import Funding, awaits_funds, escrow_balances
from services.payouts.domain.ledger import Transfer, TransferKind, brand_escrow
from services.payouts.domain.ledger_check import PostedTransfer
from services.payouts.domain.lifecycle import Payout, PayoutStatus
from services.payouts.domain.statements import DatedPayout
from services.payouts.domain.terms import Cancellation, Confirmation, DealTerms
from services.payouts.notices import DueEmail, EmailState, Notice, notice_of
from services.payouts.providers.rails import LEGACY_RAIL
from services.payouts.store.port import Attribution, FeeCeilingExceeded, LockMode, StaleUpdate
from shared.contract.events import CloudEvent, EventIdentity, PayoutStatusChanged
from shared.contract.money import FxSnapshot, Money
from shared.runtime.fx_moves import rejudged
from shared.runtime.inbox import Claimed, claim_in
from shared.runtime.kafka import Delivery
from shared.runtime.observability import PAYOUT_EMAILS

_V = TypeVar("_V")


def _in_key_order(kept: Mapping[Any, _V]) -> list[_V]:
    """The values of `kept` ordered by key, as PostgreSQL's ORDER BY on the key column lists
    them (a deal's versions, its cancellations by brand)."""
    return [kept[k] for k in sorted(kept)]


@dataclass(frozen=True)
class EmailRow:
    """A `payouts_emails` row (migration 0315)."""

    notice: Notice
    state: EmailState
    not_before: datetime
    attempts: int = 0
    claim_id: str | None = None
    error: str | None = None
    finished_at: datetime | None = None


@dataclass
class MemoryState:
    processed: dict[tuple[str, str, str], Claimed] = field(default_factory=dict)
    deals: dict[str, DealTerms] = field(default_factory=dict)
    # deal -> version -> terms, and deal -> brand -> cancellation (kept before the deal too)
    deal_versions: dict[str, dict[int, DealTerms]] = field(default_factory=dict)
    cancellations: dict[str, dict[str, Cancellation]] = field(default_factory=dict)
    # deal -> the attribution revision its commission was last decided on
    commission_decided: dict[str, int] = field(default_factory=dict)
    # deal -> (deliverable, signer) -> when
    confirmations: dict[str, dict[tuple[str, str], datetime]] = field(default_factory=dict)
    # (deal, deliverable, signer) -> when the post that completed it reached us
    post_arrivals: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    accounts: dict[str, PayoutAccount] = field(default_factory=dict)
    # deal -> (revenue, as_of, revision, sequence)
    attribution: dict[str, tuple[Money, datetime, int, int | None]] = field(default_factory=dict)
    attribution_figures: dict[str, AttributionFigures] = field(default_factory=dict)
    fx: dict[tuple[str, datetime, str], FxSnapshot] = field(default_factory=dict)
    payouts: dict[str, Payout] = field(default_factory=dict)  # insertion order = creation
    business_keys: set[tuple[str, str, str]] = field(default_factory=set)
    sent_order: list[str] = field(default_factory=list)
    # payout id -> (when its rail is asked again, how often it was asked), while it is sent
    settle_checks: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    transfers: list[PostedTransfer] = field(default_factory=list)
    posted_at: dict[str, datetime] = field(default_factory=dict)  # by transfer id
    added_at: dict[str, datetime] = field(default_factory=dict)  # by payout id
    outbox: list[CloudEvent[Any]] = field(default_factory=list)
    notifications: int = 0
    webhooks: set[tuple[str, str]] = field(default_factory=set)  # (rail, event id)
    fundings: dict[str, Funding] = field(default_factory=dict)
    emails: dict[str, EmailRow] = field(default_factory=dict)  # by event id

    def snapshot(self) -> MemoryState:
        """A copy deep enough to roll back to: the values themselves are immutable."""
        copied = MemoryState(**{k: copy.copy(v) for k, v in self.__dict__.items()})
        copied.confirmations = {k: dict(v) for k, v in self.confirmations.items()}
        return copied


class MemoryPayoutsTransaction:
    def __init__(self, state: MemoryState, consumer: str = "payouts") -> None:
        self._s = state
        self._consumer = consumer

    async def claim(self, events: Sequence[tuple[CloudEvent[Any], Delivery]]) -> set[EventIdentity]:
        return claim_in(self._s.processed, self._consumer, events)

    async def lock(
        self,
        *,
        fx: LockMode | None = None,
        deal_ids: Iterable[str] = (),
        creator_ids: Iterable[str] = (),
        brand_ids: Iterable[str] = (),
    ) -> None:
        return None  # transactions are serial already

    async def add_funding(self, funding: Funding, event_id: str) -> bool:
        if funding.funding_id in self._s.fundings:
            return False
        self._s.fundings[funding.funding_id] = funding
        return True

    async def funding(self, funding_id: str) -> Funding | None:
        return self._s.fundings.get(funding_id)

    async def fundings_of(self, brand_id: str) -> list[Funding]:
        mine = (f for f in self._s.fundings.values() if f.brand_id == brand_id)
        return sorted(mine, key=lambda f: (f.funded_at, f.funding_id))

    async def escrow_balances(self, brand_ids: Iterable[str]) -> dict[tuple[str, str], Decimal]:
        accounts = {brand_escrow(b) for b in brand_ids}
        postings = [p for t in self._s.transfers for p in t.postings if p.account in accounts]
        return escrow_balances(postings)

    async def awaiting_funds(self, brand_ids: Iterable[str]) -> list[Payout]:
        brands = set(brand_ids)
        waiting = (p for p in self._s.payouts.values() if p.brand_id in brands and awaits_funds(p))
        return sorted(waiting, key=lambda p: (p.brand_id, p.fx_at, p.payout_id))

    async def payouts_of_brand(self, brand_id: str) -> list[Payout]:
        return [p for p in self._s.payouts.values() if p.brand_id == brand_id]

    async def add_deal(self, terms: DealTerms, event_id: str) -> bool:
        if terms.deal_id in self._s.deals:
            return False
        self._s.deals[terms.deal_id] = replace(terms, sent_at=None)
        return True

    async def deal(self, deal_id: str) -> DealTerms | None:
        return self._s.deals.get(deal_id)

    async def deals(self, deal_ids: Iterable[str]) -> dict[str, DealTerms]:
        return {d: self._s.deals[d] for d in set(deal_ids) if d in self._s.deals}

    async def add_deal_version(self, terms: DealTerms, event_id: str) -> bool:
        versions = self._s.deal_versions.setdefault(terms.deal_id, {})
        if terms.version in versions:
            return False
        versions[terms.version] = terms
        return True

    async def deal_versions(self, deal_id: str) -> list[DealTerms]:
        return _in_key_order(self._s.deal_versions.get(deal_id, {}))

    async def save_terms(self, terms: DealTerms) -> None:
        stored = self._s.deals[terms.deal_id]
        self._s.deals[terms.deal_id] = replace(
            terms,
            sent_at=None,
            campaign_id=stored.campaign_id,
            brand_id=stored.brand_id,
            creator_id=stored.creator_id,
            fee_schedule=stored.fee_schedule,
        )

    async def add_cancellation(self, cancellation: Cancellation, event_id: str) -> bool:
        kept = self._s.cancellations.setdefault(cancellation.deal_id, {})
        known = kept.get(cancellation.brand_id)
        if known is not None and known.cancelled_at <= cancellation.cancelled_at:
            return False
        kept[cancellation.brand_id] = cancellation
        return True

    async def cancellations(self, deal_id: str) -> list[Cancellation]:
        return _in_key_order(self._s.cancellations.get(deal_id, {}))

    async def fee_paid(self, deal_ids: Iterable[str]) -> dict[str, dict[str, Money]]:
        asked = set(deal_ids)
        paid: dict[str, dict[str, Money]] = {d: {} for d in asked}
        for p in self._s.payouts.values():
            if p.deal_id in asked and p.kind == "fee":
                paid[p.deal_id][p.milestone] = p.gross
        return paid

    async def add_confirmation(
        self,
        deal_id: str,
        deliverable_id: str,
        confirmed_by: str,
        confirmed_at: datetime,
        signed_by: str = "",
        post_received_at: datetime | None = None,
    ) -> bool:
        confirmed = self._s.confirmations.setdefault(deal_id, {})
        if (deliverable_id, signed_by) in confirmed:
            return False
        confirmed[(deliverable_id, signed_by)] = confirmed_at
        if post_received_at is not None:
            self._s.post_arrivals[(deal_id, deliverable_id, signed_by)] = post_received_at
        return True

    async def confirmed(self, deal_id: str) -> Mapping[str, datetime]:
        deal = self._s.deals.get(deal_id)
        owners = {"", deal.brand_id} if deal is not None else {""}
        first: dict[str, datetime] = {}
        for (deliverable_id, signer), at in self._s.confirmations.get(deal_id, {}).items():
            if signer in owners and (deliverable_id not in first or at < first[deliverable_id]):
                first[deliverable_id] = at
        return first

    async def confirmations_of(
        self, deal_ids: Iterable[str]
    ) -> dict[str, dict[tuple[str, str], datetime]]:
        return {d: dict(self._s.confirmations.get(d, {})) for d in set(deal_ids)}

    async def add_confirmations(self, confirmations: Sequence[Confirmation]) -> None:
        for c in confirmations:
            if not await self.add_confirmation(
                c.deal_id,
                c.deliverable_id,
                c.confirmed_by,
                c.confirmed_at,
                c.signed_by,
                c.post_received_at,
            ):
                raise StaleUpdate(f"confirmation stored meanwhile: {c.deal_id}/{c.deliverable_id}")

    async def post_arrivals(self, deal_ids: Iterable[str]) -> dict[tuple[str, datetime], datetime]:
        arrivals: dict[tuple[str, datetime], datetime] = {}
        for deal_id in set(deal_ids):
            deal = self._s.deals.get(deal_id)
            owners = {"", deal.brand_id} if deal is not None else {""}
            for (deliverable_id, signer), at in self._s.confirmations.get(deal_id, {}).items():
                arrived = self._s.post_arrivals.get((deal_id, deliverable_id, signer))
                if signer in owners and arrived is not None:
                    key = (deal_id, at)
                    arrivals[key] = min(arrived, arrivals.get(key, arrived))
        return arrivals

    async def save_account(self, account: PayoutAccount) -> bool:
        known = self._s.accounts.get(account.creator_id)
        if known is not None and known.updated_at > account.updated_at:
            return False
        self._s.accounts[account.creator_id] = account
        return True

    async def accounts(self, creator_ids: Iterable[str]) -> dict[str, PayoutAccount]:
        return {c: self._s.accounts[c] for c in set(creator_ids) if c in self._s.accounts}

    async def in_flight(self, creator_id: str) -> bool:
        return any(
            p.creator_id == creator_id and p.status in ("held", "scheduled", "failed")
            for p in self._s.payouts.values()
        )

    async def cooled_off_for_update(self, now: datetime, limit: int) -> list[Payout]:
        def ended(creator_id: str) -> bool:
            account = self._s.accounts.get(creator_id)
            until = None if account is None else account.cooling_off_until
            return account is not None and (until is None or until <= now)

        held = [
            p
            for p in self._s.payouts.values()
            if p.status == "held"
            and p.hold is not None
            and p.hold.code is HoldCode.DESTINATION_COOLOFF
            and ended(p.creator_id)
        ]
        return sorted(held, key=lambda p: p.payout_id)[:limit]

    async def save_attribution(
        self,
        deal_id: str,
        revenue: Money,
        as_of: datetime,
        figures: AttributionFigures | None = None,
        *,
        sequence: int | None = None,
    ) -> bool:
        known = self._s.attribution.get(deal_id)
        if known is not None and not replaces(known[1], known[3], as_of, sequence):
            return False
        revision = 1 if known is None else known[2] + 1
        self._s.attribution[deal_id] = (revenue, as_of, revision, sequence)
        if figures is None:
            self._s.attribution_figures.pop(deal_id, None)
        else:
            self._s.attribution_figures[deal_id] = figures
        return True

    async def attributions(self, deal_ids: Iterable[str]) -> dict[str, Attribution]:
        known = self._s.attribution
        return {d: Attribution(known[d][0], known[d][2]) for d in set(deal_ids) if d in known}

    async def attribution_figures(self, deal_ids: Iterable[str]) -> dict[str, AttributionFigures]:
        known = self._s.attribution_figures
        return {d: known[d] for d in set(deal_ids) if d in known}

    async def deals_of_brand(
        self, brand_id: str, *, campaign_id: str | None = None, creator_id: str | None = None
    ) -> list[DealTerms]:
        return sorted(
            (
                d
                for d in self._s.deals.values()
                if d.brand_id == brand_id
                and campaign_id in (None, d.campaign_id)
                and creator_id in (None, d.creator_id)
            ),
            key=lambda d: d.deal_id,
        )

    async def save_fx(self, snapshot: FxSnapshot, event_id: str, max_move: Decimal) -> bool:
        key = (snapshot.base, snapshot.as_of, snapshot.source)
        if key in self._s.fx:
            return False
        self._s.fx[key] = snapshot
        # As shared.runtime.fx_store.save_judged: this one and every later one judged again.
        trusted = [s for s in self._s.fx.values() if s.as_of < snapshot.as_of and s.suspect is None]
        later = sorted(
            (s for s in self._s.fx.values() if s.as_of >= snapshot.as_of),
            key=lambda s: (s.as_of, s.source),
        )
        for verdict in rejudged(later, trusted, max_move):
            self._s.fx[(verdict.base, verdict.as_of, verdict.source)] = verdict
        return True

    async def fx_in_force(self, when: datetime) -> FxSnapshot | None:
        return self._latest_fx(lambda s: s.as_of <= when)

    async def fx_first_after(
        self, after: datetime, until: datetime, currencies: Sequence[str]
    ) -> FxSnapshot | None:
        candidates = [
            s
            for s in self._s.fx.values()
            if after < s.as_of <= until
            and s.suspect is None
            and all(c == s.base or c in s.rates for c in currencies)
        ]
        return min(candidates, key=lambda s: (s.as_of, s.source), default=None)

    def _latest_fx(self, where: Callable[[FxSnapshot], bool]) -> FxSnapshot | None:
        candidates = [s for s in self._s.fx.values() if where(s)]
        if not candidates:
            return None
        return min(candidates, key=lambda s: (-s.as_of.timestamp(), s.source))

    async def add_payout(self, payout: Payout) -> bool:
        key = (payout.deal_id, payout.kind, payout.milestone)
        if key in self._s.business_keys or payout.payout_id in self._s.payouts:
            return False
        if payout.kind == "fee":
            self._check_fee_ceiling(payout)
        self._s.business_keys.add(key)
        self._s.payouts[payout.payout_id] = payout
        # As PostgreSQL's created_at: the wall clock, whatever clock the caller runs on.
        self._s.added_at[payout.payout_id] = datetime.now(UTC)
        return True

    def _check_fee_ceiling(self, payout: Payout) -> None:
        # As the PostgreSQL trigger payouts_fee_within_deal does.
        terms = self._s.deals.get(payout.deal_id)
        if terms is None or terms.currency != payout.gross.currency:
            raise FeeCeilingExceeded(
                f"fee payout {payout.payout_id} does not match a stored deal {payout.deal_id}"
            )
        paid = sum(
            (
                p.gross.amount
                for p in self._s.payouts.values()
                if p.deal_id == payout.deal_id and p.kind == "fee"
            ),
            Decimal(0),
        )
        if paid + payout.gross.amount > terms.fee.amount:
            raise FeeCeilingExceeded(
                f"fee payouts of deal {payout.deal_id} would add up to "
                f"{paid + payout.gross.amount} {terms.currency}, above its fee of {terms.fee}"
            )

    async def payout_grosses(
        self, deal_ids: Iterable[str]
    ) -> dict[str, dict[tuple[str, str], Money]]:
        grosses: dict[str, dict[tuple[str, str], Money]] = {d: {} for d in deal_ids}
        for p in self._s.payouts.values():
            if p.deal_id in grosses:
                grosses[p.deal_id][(p.kind, p.milestone)] = p.gross
        return grosses

    async def add_payouts(self, payouts: Sequence[Payout]) -> None:
        for payout in payouts:
            if not await self.add_payout(payout):
                raise StaleUpdate(f"payout stored meanwhile: {payout.payout_id}")

    async def payout(self, payout_id: str) -> Payout | None:
        return self._s.payouts.get(payout_id)

    async def payouts_for_update(self, payout_ids: Sequence[str]) -> list[Payout]:
        return [self._s.payouts[i] for i in sorted(set(payout_ids)) if i in self._s.payouts]

    async def claim_webhook(self, rail: str, event_id: str, received_at: datetime) -> bool:
        if (rail, event_id) in self._s.webhooks:
            return False
        self._s.webhooks.add((rail, event_id))
        return True

    async def payout_of_transfer(self, rail: str, provider_ref: str) -> str | None:
        found = sorted(
            p.payout_id
            for p in self._s.payouts.values()
            if p.provider_ref == provider_ref and (p.rail or LEGACY_RAIL) == rail
        )
        return found[0] if found else None

    async def held_for_update(
        self, *, creator_ids: Sequence[str] | None = None, codes: Sequence[HoldCode] = ()
    ) -> list[Payout]:
        return sorted(
            (
                p
                for p in self._s.payouts.values()
                if p.status == "held"
                and p.hold is not None
                and p.hold.code in codes
                and (creator_ids is None or p.creator_id in creator_ids)
            ),
            key=lambda p: p.payout_id,
        )

    async def failed_for_update(self, creator_ids: Sequence[str]) -> list[Payout]:
        failed = (
            p
            for p in self._s.payouts.values()
            if p.status == "failed" and p.creator_id in creator_ids
        )
        return sorted(failed, key=lambda p: p.payout_id)

    async def due_for_update(self, now: datetime, limit: int) -> list[Payout]:
        due = [
            p
            for p in self._s.payouts.values()
            if p.status == "scheduled"
            and p.next_attempt_at is not None
            and p.next_attempt_at <= now
        ]
        return sorted(due, key=lambda p: p.next_attempt_at or now)[:limit]

    async def sent_due_for_update(self, now: datetime, limit: int) -> list[tuple[Payout, int]]:
        due = []
        for payout in (self._s.payouts[i] for i in self._s.sent_order):
            check_at, checks = self._s.settle_checks.get(payout.payout_id, (None, 0))
            if payout.status == "sent" and (check_at is None or check_at <= now):
                due.append((payout, checks))
        return due[:limit]

    async def settlement_checks_ahead(self, next_checks: Mapping[str, datetime]) -> None:
        for payout_id, check_at in next_checks.items():
            payout = self._s.payouts.get(payout_id)
            if payout is not None and payout.status == "sent":
                _, checks = self._s.settle_checks.get(payout_id, (None, 0))
                self._s.settle_checks[payout_id] = (check_at, checks + 1)

    async def save_payouts(self, changes: Sequence[tuple[Payout, PayoutStatus]]) -> None:
        for payout, previous in changes:
            known = self._s.payouts.get(payout.payout_id)
            if known is None or known.status != previous:
                raise StaleUpdate(f"payouts changed meanwhile: {payout.payout_id}")
            self._s.payouts[payout.payout_id] = payout
            if payout.status == "sent" and previous != "sent":
                # A retried payout is sent again: it moves to the end, as its updated_at does.
                if payout.payout_id in self._s.sent_order:
                    self._s.sent_order.remove(payout.payout_id)
                self._s.sent_order.append(payout.payout_id)
                self._s.settle_checks.pop(payout.payout_id, None)

    async def commission_due_for_update(
        self, closed_before: datetime, final_before: datetime, limit: int
    ) -> list[DealTerms]:
        def open_(d: DealTerms) -> bool:
            decided = self._s.commission_decided.get(d.deal_id)
            if decided is None:
                return True
            known = self._s.attribution.get(d.deal_id)
            latest = 0 if known is None else known[2]
            return d.attribution_closes_at > final_before and latest != decided

        due = [
            d
            for d in self._s.deals.values()
            if d.commission_rate > 0 and d.attribution_closes_at <= closed_before and open_(d)
        ]
        return sorted(due, key=lambda d: d.attribution_closes_at)[:limit]

    async def commission_decided(self, revisions: Mapping[str, int]) -> None:
        self._s.commission_decided.update(revisions)

    async def commission_booked(self, deal_ids: Iterable[str]) -> dict[str, list[Payout]]:
        wanted = set(deal_ids)
        booked: dict[str, list[Payout]] = {}
        for p in self._s.payouts.values():
            if p.deal_id in wanted and p.kind in ("commission", "clawback"):
                booked.setdefault(p.deal_id, []).append(p)
        return booked

    async def post(self, transfers: Sequence[Transfer], *, wake_dispatchers: bool = False) -> None:
        if wake_dispatchers:
            self._s.notifications += 1
        known = {t.transfer_id for t in self._s.transfers}
        for transfer in transfers:
            owners = self._s.fundings if transfer.kind is TransferKind.FUNDING else self._s.payouts
            if transfer.transfer_id in known or transfer.payout_id not in owners:
                raise ValueError(f"transfer {transfer.transfer_id} refused (duplicate or orphan)")
            known.add(transfer.transfer_id)
            # As PostgreSQL's now(): the wall clock, whatever clock the caller runs on.
            self._s.posted_at[transfer.transfer_id] = datetime.now(UTC)
            self._s.transfers.append(
                PostedTransfer(
                    transfer.transfer_id, transfer.payout_id, transfer.kind.value, transfer.postings
                )
            )

    async def enqueue(self, events: Sequence[CloudEvent[Any]]) -> None:
        self._queue_emails(events)
        known = {e.id for e in self._s.outbox}
        self._s.outbox += [e for e in events if e.id not in known]

    def _queue_emails(self, events: Sequence[CloudEvent[Any]]) -> None:
        failures = {
            e.data.payout_id
            for e in events
            if isinstance(e.data, PayoutStatusChanged) and e.data.status == "failed"
        }
        last = {  # what each payout published before (a failure after `sent` is a return)
            e.data.payout_id: e.data.status
            for e in self._s.outbox
            if isinstance(e.data, PayoutStatusChanged) and e.data.payout_id in failures
        }
        for event in events:
            data = event.data
            if not isinstance(data, PayoutStatusChanged):
                continue
            notice = notice_of(
                event, hold_code=data.hold_code, previous_status=last.get(data.payout_id)
            )
            last[data.payout_id] = data.status
            if notice is None or notice.event_id in self._s.emails:
                continue
            account = self._s.accounts.get(data.creator_id)
            if account is None or account.email is None:
                PAYOUT_EMAILS.labels(outcome="no_address").inc()
                continue
            self._s.emails[notice.event_id] = EmailRow(notice, "pending", notice.changed_at)

    async def claim_emails(self, now: datetime, lease: timedelta, limit: int) -> list[DueEmail]:
        due = sorted(
            (r for r in self._s.emails.values() if r.state == "pending" and r.not_before <= now),
            key=lambda r: (r.not_before, r.notice.changed_at, r.notice.event_id),
        )[:limit]
        claimed = []
        for row in due:
            leased = replace(row, not_before=now + lease, claim_id=str(uuid.uuid4()))
            self._s.emails[row.notice.event_id] = leased
            account = self._s.accounts.get(row.notice.creator_id)
            email = SecretStr(account.email) if account and account.email else None
            until = account.cooling_off_until if account else None
            claimed.append(DueEmail(row.notice, email, str(leased.claim_id), row.attempts, until))
        return sorted(claimed, key=lambda d: (d.notice.changed_at, d.notice.event_id))

    async def start_email(self, event_id: str, claim_id: str, until: datetime) -> bool:
        row = self._s.emails.get(event_id)
        if row is None or row.state != "pending" or row.claim_id != claim_id:
            return False
        self._s.emails[event_id] = replace(
            row, state="sending", not_before=until, attempts=row.attempts + 1
        )
        return True

    async def end_email(
        self,
        event_id: str,
        state: EmailState,
        at: datetime,
        *,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        row = self._s.emails.get(event_id)
        if row is None or row.state not in ("sending", "pending"):
            return False
        self._s.emails[event_id] = replace(
            row,
            state=state,
            error=error,
            finished_at=None if state == "pending" else at,
            not_before=retry_at or row.not_before,
            claim_id=None,
        )
        return True

    async def emails_in_doubt(self, now: datetime) -> list[Notice]:
        rows = self._s.emails.values()
        doubtful = [r for r in rows if r.state == "sending" and r.not_before <= now]
        for row in doubtful:
            self._s.emails[row.notice.event_id] = replace(
                row, state="unknown", finished_at=now, error="sender stopped while sending"
            )
        return [r.notice for r in doubtful]

    async def emails_of(self, payout_id: str) -> list[tuple[Notice, EmailState]]:
        rows = [r for r in self._s.emails.values() if r.notice.payout_id == payout_id]
        return [(r.notice, r.state) for r in sorted(rows, key=lambda r: r.notice.changed_at)]

    async def payouts_of(self, creator_id: str | None = None) -> list[Payout]:
        return [
            p for p in self._s.payouts.values() if creator_id is None or p.creator_id == creator_id
        ]

    async def settled_between(self, start: datetime, end: datetime) -> list[Payout]:
        last: dict[str, datetime] = {}
        for t in self._s.transfers:
            if t.kind == "settlement":
                at = self._s.posted_at[t.transfer_id]
                last[t.payout_id] = max(at, last.get(t.payout_id, at))
        return sorted(
            (
                self._s.payouts[i]
                for i, at in last.items()
                if start <= at < end and self._s.payouts[i].status == "settled"
            ),
            key=lambda p: (p.creator_id, p.payout_id),
        )

    async def dated_payouts_of(self, creator_id: str) -> list[DatedPayout]:
        settled: dict[str, datetime] = {}
        for t in self._s.transfers:
            if t.kind == "settlement":
                at = self._s.posted_at[t.transfer_id]
                settled[t.payout_id] = max(at, settled.get(t.payout_id, at))
        dated = [
            DatedPayout(
                p,
                p.fx_at or self._s.added_at[p.payout_id],
                settled.get(p.payout_id) if p.status == "settled" else None,
            )
            for p in self._s.payouts.values()
            if p.creator_id == creator_id
        ]
        return sorted(dated, key=lambda d: (d.owed_at, d.payout.payout_id))

    async def transfers(self, payout_ids: Sequence[str] | None = None) -> list[PostedTransfer]:
        return [t for t in self._s.transfers if payout_ids is None or t.payout_id in payout_ids]

    async def balances(
        self, accounts: Sequence[str] | None = None
    ) -> dict[tuple[str, str], Decimal]:
        result: dict[tuple[str, str], Decimal] = {}
        for transfer in self._s.transfers:
            for p in transfer.postings:
                if accounts is None or p.account in accounts:
                    key = (p.account, p.amount.currency)
                    result[key] = result.get(key, Decimal(0)) + p.amount.amount
        return result


class MemoryPayoutsStore:
    """`PayoutsStore` in memory; `state` is there for assertions."""

    def __init__(self, consumer: str = "payouts") -> None:
        self.state = MemoryState()
        self.consumer = consumer
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[MemoryPayoutsTransaction]:
        async with self._lock:
            frozen = self.state.snapshot()
        yield MemoryPayoutsTransaction(frozen, self.consumer)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryPayoutsTransaction]:
        async with self._lock:
            saved = self.state.snapshot()
            try:
                yield MemoryPayoutsTransaction(self.state, self.consumer)
            except BaseException:
                self.state.__dict__.update(saved.__dict__)
                raise
