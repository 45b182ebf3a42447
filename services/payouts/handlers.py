"""What payouts does with each input event, plus the scheduled commission decision.

`consume` is the handler of the unit of work (shared.runtime.unit_of_work): it takes the
batch's locks, translates each new event to domain values (translate.py) and hands it to its
handler (`on_deal_signed`, ...). Every handler runs inside one transaction of the store and
records what it changed in a `PendingChanges`: what the batch's confirmations read is read
for all of them at once and kept current in memory, and the confirmations and payouts they
create are written together before any other event reads them (other payout writes happen at
once); ledger transfers and status events are written together before the transaction
commits, and counted once it committed. The dispatcher, the schedules, the
webhooks and the operators' commands change payouts through a `PendingChanges` too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

import structlog

from services.payouts import translate
from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import (
    FX_HOLDS,
    RELEASED_BY_ACCOUNTS,
    PayoutAccount,
    RawDestination,
    SealedDestination,
    cooling_off_until,
)
from services.payouts.domain.amounts import commission, needs_later_rate
from services.payouts.domain.commission import (
    AttributedRevenue,
    CommissionStep,
    next_commission_step,
)
from services.payouts.domain.escrow import (
    Funding,
    FundingKey,
    awaits_funds,
    funding_key,
    funding_order,
    place_of,
)
from services.payouts.domain.ledger import (
    Transfer,
    TransferKind,
    creator_receivable,
    escrow_of,
    receivable_of,
)
from services.payouts.domain.lifecycle import (
    DEFAULT_FX_MAX_AGE,
    Payout,
    PayoutStatus,
    Rates,
    RetrySchedule,
    Transition,
    payout_id_for,
)
from services.payouts.domain.terms import (
    Cancellation,
    Confirmation,
    DealTerms,
    FeeSchedule,
    PayoutKind,
    cancelled_at,
    commission_due,
    confirmed_in_time,
    fee_due,
    in_force,
    payable_since,
)
from services.payouts.store.port import PayoutsStore, PayoutsTransaction
from services.payouts.translate import Seal
from shared.contract.deal_versions import changed_identity
from shared.contract.errors import EventRejected, TransientError
from shared.contract.events import CloudEvent, EventIdentity, EventType
from shared.contract.money import FxSnapshot, Money, MoneyError
from shared.contract.signing import RejectReason
from shared.runtime.observability import (
    PAYOUT_DESTINATION_COOLOFFS,
    PAYOUT_TRANSITIONS,
    STALE_AMENDMENTS,
)
from shared.runtime.trust import Untrusted
from shared.runtime.unit_of_work import Handler, NewEvents, UnitOfWork

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PayoutPolicy:
    """The business settings the handlers apply (from `PayoutsSettings`)."""

    platform_fee_bps: int = 0
    # The schedule a deal gets when it is first stored; stored deals keep theirs.
    fee_schedule: FeeSchedule = "on_completion"
    retry: RetrySchedule = field(default_factory=lambda: RetrySchedule(1.0, 300.0, 5))
    lease: timedelta = timedelta(seconds=60)
    commission_grace: timedelta = timedelta(hours=1)
    # After the window closes, late orders and refunds adjust a decided commission this long.
    commission_adjustable: timedelta = timedelta(days=30)
    # A rate moving more than this fraction against the last trusted snapshot makes the new
    # snapshot suspect (shared.runtime.fx_moves): payouts that need it are held.
    fx_max_move: Decimal = Decimal("0.25")
    # A destination changed while payouts are in flight is paid to only after this long.
    destination_cool_off: timedelta = timedelta(hours=24)
    # A payout's FX snapshot may be this much older than the moment its rate is locked at;
    # older, the payout waits (`stale_fx`) for the first fresh one.
    fx_max_age: timedelta = DEFAULT_FX_MAX_AGE


_NO_SNAPSHOT: Final = object()


def _add_postings(
    balances: dict[str, dict[str, Decimal]],
    owner_of: Callable[[str], str | None],
    transfer: Transfer,
    only: set[str] | None = None,
) -> None:
    """Add the transfer's postings to `balances` (owner -> currency -> amount): to the owners
    read into it already, those in `only` alone if given. `owner_of` names an account's owner."""
    for posting in transfer.postings:
        owner = owner_of(posting.account)
        if owner is None or owner not in balances:
            continue
        if only is None or owner in only:
            held = balances[owner]
            currency = posting.amount.currency
            held[currency] = held.get(currency, Decimal(0)) + posting.amount.amount


@dataclass
class PendingChanges:
    """The changes of one transaction of the store, and what it read: `flush` writes them,
    `committed` counts them once the transaction committed; `scheduled` tells whether a
    dispatcher should wake."""

    repo: PayoutsTransaction
    policy: PayoutPolicy
    now: datetime
    # Encrypts payout destinations; only the consumer, which stores accounts, needs one.
    seal: Seal | None = None
    # A stored destination under the current key (it may be under the previous one while
    # the key rotates), so its fingerprint compares with a new account's.
    reseal: Callable[[str, SealedDestination], SealedDestination] | None = None
    # The brand that signed each event of the batch, once checked (shared.runtime.trust);
    # events signed by our own services (tracking's confirmations) or unsigned are absent.
    signers: Mapping[EventIdentity, str] = field(default_factory=dict)
    # The earliest time each event of the batch may take effect at (Delivery.not_before).
    not_before: Mapping[EventIdentity, datetime] = field(default_factory=dict)
    # The creators whose locks the transaction holds, where the caller knows them: releasing
    # a payout that waited for funds needs its creator's lock (it converts and repays).
    creators_locked: frozenset[str] | None = None
    # The (brand, currency) a run of fundings credited whose waiting payouts are not released
    # yet: `consume` releases them once the run ends (`release_unreleased`).
    unreleased: tuple[str, str] | None = None
    transfers: list[Transfer] = field(default_factory=list)
    events: list[CloudEvent[Any]] = field(default_factory=list)
    scheduled: int = 0
    cool_offs: int = 0  # destinations that started cooling off
    # Brands' escrow per brand -> currency as stored when first read (under the brand's lock),
    # and per (brand, currency) with payouts waiting for funds, the first of them in the
    # funding order: kept up to date below.
    _escrow: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    _waiting: dict[tuple[str, str], FundingKey] = field(default_factory=dict)
    _snapshot: object = _NO_SNAPSHOT
    _snapshots_at: dict[datetime, FxSnapshot | None] = field(default_factory=dict)
    # Creators' receivable balances (what they owe from clawbacks) per (creator, currency):
    # read from the store once per transaction, then kept up to date with each transfer.
    _receivables: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    _receivable_moves: list[Transfer] = field(default_factory=list)  # clawbacks, recoveries
    # Deals (None: not stored), creators' accounts, and deals' confirmations and payouts'
    # business keys as read under their locks (`read_ahead` reads a whole batch's at once),
    # kept current as the transaction changes them. Confirmations and payouts of the deals
    # read ahead are written together (`write_new`), before anything reads them back.
    _deals: dict[str, DealTerms | None] = field(default_factory=dict)
    _accounts: dict[str, PayoutAccount | None] = field(default_factory=dict)
    _confirmations: dict[str, dict[tuple[str, str], datetime]] = field(default_factory=dict)
    _payout_keys: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    # Deals' fee payouts created so far (milestone -> gross), those not written yet included:
    # the fee still owed is the fee in force less all of them.
    _fee_paid: dict[str, dict[str, Money]] = field(default_factory=dict)
    _new_confirmations: list[Confirmation] = field(default_factory=list)
    _new_payouts: list[Payout] = field(default_factory=list)

    async def read_ahead(
        self,
        *,
        deal_ids: Iterable[str] = (),
        creator_ids: Iterable[str] = (),
        brand_ids: Iterable[str] = (),
    ) -> None:
        """Read at once what handling many events reads one at a time: the deals, their
        confirmations and payouts' business keys, the creators' accounts and receivables, the
        brands' escrow. Callers hold the locks of all of them."""
        deal_ids = set(deal_ids)
        if missing_deals := deal_ids - set(self._deals):
            stored = await self.repo.deals(missing_deals)
            self._deals.update({d: stored.get(d) for d in missing_deals})
        if missing_deals := deal_ids - set(self._confirmations):
            await self.write_new()
            self._confirmations.update(await self.repo.confirmations_of(missing_deals))
            grosses = await self.repo.payout_grosses(missing_deals)
            for deal_id, of_deal in grosses.items():
                self._payout_keys[deal_id] = set(of_deal)
                self._fee_paid[deal_id] = {m: g for (k, m), g in of_deal.items() if k == "fee"}
        creator_ids = set(creator_ids)
        if missing := creator_ids - set(self._accounts):
            accounts = await self.repo.accounts(missing)
            self._accounts.update({c: accounts.get(c) for c in missing})
        await self.read_receivables(creator_ids)
        deals = (self._deals[d] for d in deal_ids)
        await self._read_escrow({*brand_ids, *(d.brand_id for d in deals if d is not None)})

    async def deal(self, deal_id: str) -> DealTerms | None:
        """The deal's stored terms (None if not stored); callers hold the deal's lock."""
        if deal_id not in self._deals:
            self._deals[deal_id] = await self.repo.deal(deal_id)
        return self._deals[deal_id]

    def know_deals(self, deals: Mapping[str, DealTerms | None]) -> None:
        """Deals just read under their locks (None: not stored), so they are not read again."""
        self._deals.update(deals)

    def forget_deal(self, deal_id: str) -> None:
        """The deal may have been stored meanwhile: its terms are read again."""
        self._deals.pop(deal_id, None)

    async def fee_paid(self, deal_id: str) -> Mapping[str, Money]:
        """The deal's fee payouts created so far, this transaction's included (milestone ->
        gross). Callers hold the deal's lock."""
        if deal_id not in self._fee_paid:
            await self.write_new()
            self._fee_paid.update(await self.repo.fee_paid([deal_id]))
        return self._fee_paid[deal_id]

    async def account(self, creator_id: str) -> PayoutAccount | None:
        """The creator's stored account; callers hold the creator's lock."""
        if creator_id not in self._accounts:
            stored = await self.repo.accounts([creator_id])
            self._accounts[creator_id] = stored.get(creator_id)
        return self._accounts[creator_id]

    def forget_account(self, creator_id: str) -> None:
        self._accounts.pop(creator_id, None)

    async def confirmed(self, terms: DealTerms) -> Mapping[str, datetime]:
        """The deal's confirmed deliverables (`PayoutsTransaction.confirmed`): when each was
        first confirmed, unsigned or signed by the deal's brand. Callers hold the deal's lock."""
        stored = self._confirmations.get(terms.deal_id)
        if stored is None:
            await self.write_new()
            return await self.repo.confirmed(terms.deal_id)
        first: dict[str, datetime] = {}
        for (deliverable_id, signed_by), at in stored.items():
            counts = signed_by in ("", terms.brand_id)
            if counts and (deliverable_id not in first or at < first[deliverable_id]):
                first[deliverable_id] = at
        return first

    async def add_confirmation(self, data: Confirmation) -> None:
        """Keep the confirmation unless one of the deliverable by the same signer is kept
        (`PayoutsTransaction.add_confirmation`)."""
        stored = self._confirmations.get(data.deal_id)
        if stored is None:
            await self.repo.add_confirmation(
                data.deal_id,
                data.deliverable_id,
                data.confirmed_by,
                data.confirmed_at,
                data.signed_by,
                data.post_received_at,
            )
        elif (data.deliverable_id, data.signed_by) not in stored:
            stored[(data.deliverable_id, data.signed_by)] = data.confirmed_at
            self._new_confirmations.append(data)

    async def write_new(self) -> None:
        """Write the confirmations and payouts kept for later, one statement each."""
        if self._new_confirmations:
            await self.repo.add_confirmations(self._new_confirmations)
            self._new_confirmations = []
        if self._new_payouts:
            await self.repo.add_payouts(self._new_payouts)
            self._new_payouts = []

    async def fx(self) -> FxSnapshot | None:
        """The snapshot in force now: a snapshot dated later is not in force yet."""
        if self._snapshot is _NO_SNAPSHOT:
            self._snapshot = await self.repo.fx_in_force(self.now)
        assert self._snapshot is None or isinstance(self._snapshot, FxSnapshot)
        return self._snapshot

    def forget_fx(self) -> None:
        self._snapshot = _NO_SNAPSHOT
        self._snapshots_at.clear()

    async def rates(self, at: datetime, currencies: tuple[str, str]) -> Rates:
        """The snapshots a conversion between `currencies` locked `at` (at or before now) may
        use: the one in force then, and the first trusted one after it if that one is not
        usable (`amounts.locked_conversion`)."""
        in_force = await self.fx()
        if in_force is not None and in_force.as_of > at:
            # Not in force yet at `at`: the usual case (confirmed after the latest snapshot)
            # needs no query.
            if at not in self._snapshots_at:
                self._snapshots_at[at] = await self.repo.fx_in_force(at)
            in_force = self._snapshots_at[at]
        max_age = self.policy.fx_max_age
        later = None
        if needs_later_rate(in_force, at, currencies, max_age):
            later = await self.repo.fx_first_after(at, self.now, currencies)
        return Rates(in_force, later, max_age)

    async def read_receivables(self, creator_ids: Iterable[str]) -> None:
        """Read the stored receivable balances of these creators (one query for many)."""
        # Asked once per payout: look up each creator, never copy what was read.
        missing = sorted({c for c in creator_ids if c not in self._receivables})
        if not missing:
            return
        stored = await self.repo.balances([creator_receivable(c) for c in missing])
        for creator_id in missing:
            account = creator_receivable(creator_id)
            self._receivables[creator_id] = {c: v for (a, c), v in stored.items() if a == account}
        for transfer in self._receivable_moves:  # collected before the first read
            _add_postings(self._receivables, receivable_of, transfer, only=set(missing))

    async def recoverable(self, creator_id: str, currency: str) -> Money:
        """What the creator still owes from clawbacks in `currency` (zero or more), this
        transaction's transfers included. Callers hold the creator's lock (or FX exclusively),
        so no other transaction repays the same debt meanwhile."""
        await self.read_receivables([creator_id])
        balance = self._receivables[creator_id].get(currency, Decimal(0))
        return Money.of(max(-balance, Decimal(0)), currency)

    async def _read_escrow(self, brand_ids: Iterable[str]) -> None:
        missing = sorted({b for b in brand_ids if b not in self._escrow})
        if not missing:
            return
        await self.write_new()  # payouts waiting for funds among them
        stored = await self.repo.escrow_balances(missing)
        for brand_id in missing:
            self._escrow[brand_id] = {c: v for (b, c), v in stored.items() if b == brand_id}
        for transfer in self.transfers:  # collected before the first read
            _add_postings(self._escrow, escrow_of, transfer, only=set(missing))
        for payout in await self.repo.awaiting_funds(missing):
            self._wait(payout)

    async def escrow(self, brand_id: str, currency: str) -> Money:
        """The brand's escrow in `currency`, this transaction's transfers included. Callers
        hold the brand's lock, so no other transaction draws on it meanwhile."""
        await self._read_escrow([brand_id])
        return Money.of(self._escrow[brand_id].get(currency, Decimal(0)), currency)

    async def unfunded(self, brand_id: str, gross: Money, key: FundingKey) -> str | None:
        """Why a new payout of `gross`, at `key` in the funding order, may not draw on the
        brand's escrow now, or None: it must hold enough, and no earlier payout of the brand
        in that currency may wait for funds (a later one waiting does not hold it back)."""
        balance = await self.escrow(brand_id, gross.currency)  # reads the waiting ones too
        first = self._waiting.get((brand_id, gross.currency))
        if first is not None and first < key:
            return (
                f"earlier payouts of brand {brand_id} wait for funds in {gross.currency}; "
                "it is paid after them"
            )
        if balance < gross:
            return f"brand {brand_id}'s escrow does not cover {gross} yet"
        return None

    def _wait(self, payout: Payout) -> None:
        pair = (payout.brand_id, payout.gross.currency)
        key = place_of(payout)
        self._waiting[pair] = min(key, self._waiting.get(pair, key))

    def _collect(self, transition: Transition) -> None:
        self.transfers += transition.transfers
        payout = transition.payout
        if awaits_funds(payout):
            self._wait(payout)
        for transfer in transition.transfers:
            _add_postings(self._escrow, escrow_of, transfer)
            if transfer.kind in (TransferKind.CLAWBACK, TransferKind.RECOVERY):
                self._receivable_moves.append(transfer)
                _add_postings(self._receivables, receivable_of, transfer)
        if transition.publish:
            payout = transition.payout
            self.events.append(translate.status_event(payout, self.now))
        if transition.payout.status == "scheduled":
            self.scheduled += 1

    async def created(self, transition: Transition) -> bool:
        """Store a new payout unless its business key exists; True if it was new."""
        payout = transition.payout
        keys = self._payout_keys.get(payout.deal_id)
        if keys is None:
            if not await self.repo.add_payout(payout):
                return False
        elif (payout.kind, payout.milestone) in keys:
            return False
        else:
            keys.add((payout.kind, payout.milestone))
            self._new_payouts.append(payout)
        if payout.kind == "fee" and payout.deal_id in self._fee_paid:
            self._fee_paid[payout.deal_id][payout.milestone] = payout.gross
        self._collect(transition)
        return True

    def none_waiting(self, brand_id: str, currency: str) -> None:
        """Every payout of the brand that waited for funds in `currency` was released."""
        self._waiting.pop((brand_id, currency), None)

    def first_waiting(self, payout: Payout) -> None:
        """`payout` is the first in the funding order of those of its brand and currency that
        still wait for funds (the ones before it were released)."""
        self._waiting[(payout.brand_id, payout.gross.currency)] = place_of(payout)

    def funded(self, funding: Funding) -> None:
        """Credit a new funding to the brand's escrow (posted by `flush`)."""
        transfer = funding.transfer()
        self.transfers.append(transfer)
        _add_postings(self._escrow, escrow_of, transfer)

    async def changed(self, transitions: Sequence[tuple[Transition, PayoutStatus]]) -> None:
        """Store payouts that moved on from the given previous statuses."""
        await self.write_new()
        await self.repo.save_payouts([(t.payout, previous) for t, previous in transitions])
        for transition, _ in transitions:
            self._collect(transition)

    async def post(self) -> None:
        """Write the ledger transfers, and wake every dispatcher at commit if payouts became
        due; the status events are the caller's to enqueue (`flush`, or the unit of work)."""
        await self.write_new()
        await self.repo.post(self.transfers, wake_dispatchers=bool(self.scheduled))

    async def flush(self) -> None:
        """Write the ledger transfers and enqueue the status events: the last step of every
        transaction that changes payouts outside the consumer (dispatcher rounds, schedules,
        webhooks, operators)."""
        await self.post()
        await self.repo.enqueue(self.events)

    def committed(self) -> None:
        """Count what the transaction changed, once it committed: each status event published
        (the one place every transition passes through) and each destination cool-off begun. A
        transaction rolled back counts nothing; its retry counts once."""
        for event in self.events:
            PAYOUT_TRANSITIONS.labels(status=event.data.status).inc()
        if self.cool_offs:
            PAYOUT_DESTINATION_COOLOFFS.inc(self.cool_offs)


@asynccontextmanager
async def payout_transaction(
    db: PayoutsStore, policy: PayoutPolicy, now: datetime
) -> AsyncIterator[PendingChanges]:
    """A transaction that changes payouts outside the consumer (the dispatcher, the schedules,
    the webhooks, an operator's command): the block's changes are written when it ends
    normally (`PendingChanges.flush`), committed, and then counted; an exception rolls all
    of it back and counts nothing."""
    async with db.transaction() as repo:
        changes = PendingChanges(repo, policy, now)
        yield changes
        await changes.flush()
    changes.committed()


async def _rates_for(
    changes: PendingChanges, at: datetime, currency: str, account: PayoutAccount | None
) -> Rates:
    # Without an account the creator's currency is unknown: the payout is held anyway, and
    # converted at its release.
    return await changes.rates(
        min(at, changes.now), (currency, currency if account is None else account.currency)
    )


async def _create_fee_payouts(changes: PendingChanges, terms: DealTerms) -> None:
    """Create the fee payouts the terms in force owe and no payout covers yet (`fee_due`);
    confirmations after a cancellation pay nothing."""
    confirmed = confirmed_in_time(terms, await changes.confirmed(terms))
    due = fee_due(terms, confirmed.keys(), await changes.fee_paid(terms.deal_id))
    if not due.overpaid.is_zero():
        log.warning(
            "fee payouts already exceed the fee in force: nothing more is paid",
            deal_id=terms.deal_id,
            version=terms.version,
            fee=str(terms.fee),
            overpaid=str(due.overpaid),
        )
    if not due.unpaid.is_zero():
        log.warning(
            "fee raised after the deal's fee was paid: the difference is not paid",
            deal_id=terms.deal_id,
            version=terms.version,
            fee=str(terms.fee),
            unpaid=str(due.unpaid),
        )
    if not due.milestones:
        return
    account = await changes.account(terms.creator_id)
    for milestone in due.milestones:
        # The fee's rate is that of the moment its work was confirmed.
        fx_at = payable_since(terms, milestone, confirmed)
        await _owe(changes, terms, "fee", milestone.milestone, milestone.amount, fx_at, account)


async def _owe(
    changes: PendingChanges,
    terms: DealTerms,
    kind: PayoutKind,
    milestone: str,
    gross: Money,
    fx_at: datetime,
    account: PayoutAccount | None,
    platform_fee: Money | None = None,
) -> None:
    """Create the payout of `gross` owed since `fx_at` (its rate is locked then) unless its
    business key has one: drawn from the brand's escrow if it covers it, repaying what the
    creator owes first."""
    rates = await _rates_for(changes, fx_at, terms.currency, account)
    transition = lifecycle.create(
        terms,
        kind,
        milestone,
        gross,
        platform_fee_bps=changes.policy.platform_fee_bps,
        account=account,
        snapshot=rates.in_force,
        now=changes.now,
        platform_fee=platform_fee,
        recoverable=await changes.recoverable(terms.creator_id, terms.currency),
        fx_at=fx_at,
        later=rates.later,
        fx_max_age=rates.max_age,
        # Where it stands in the funding order: owed at fx_at, never later than now.
        unfunded=await changes.unfunded(
            terms.brand_id,
            gross,
            funding_key(min(fx_at, changes.now), payout_id_for(terms.deal_id, kind, milestone)),
        ),
    )
    await changes.created(transition)


async def on_deal_signed(changes: PendingChanges, signed: DealTerms, event_id: str) -> None:
    """Store the deal's terms with the fee schedule in force now (the first version wins and
    keeps its schedule), put in force what was kept for it (amendments, cancellation) and pay
    what is already confirmed. A re-sent deal with other terms is rejected."""
    await changes.repo.add_deal(signed, event_id)
    await changes.repo.add_deal_version(signed, event_id)
    changes.forget_deal(signed.deal_id)
    versions = await changes.repo.deal_versions(signed.deal_id)
    if not versions or not versions[0].same_terms(signed):
        raise EventRejected(
            f"deal.signed {signed.deal_id!r} was already received with different terms: "
            "send deal.amended with a higher version to change your deal's terms; a deal id "
            "names one deal of one brand, so choose ids of your own (your brand id as a prefix)"
        )
    await _create_fee_payouts(changes, await _put_in_force(changes, signed.deal_id, versions))


async def _put_in_force(
    changes: PendingChanges, deal_id: str, versions: list[DealTerms] | None = None
) -> DealTerms:
    """Store as the deal's terms those in force given every version and cancellation kept
    for it (`in_force`, `cancelled_at`): the same whatever order they arrived in. `versions`:
    the deal's versions when the caller has just read them."""
    stored = await changes.deal(deal_id)
    assert stored is not None
    if versions is None:
        versions = await changes.repo.deal_versions(deal_id)
    signed = next((v for v in versions if v.version == 1), stored)
    signed = replace(signed, fee_schedule=stored.fee_schedule, cancelled_at=None)
    ended = cancelled_at(signed, await changes.repo.cancellations(deal_id))
    wanted = in_force(replace(signed, cancelled_at=ended), versions)
    if wanted != stored:
        await changes.repo.save_terms(wanted)
        changes.forget_deal(deal_id)
    return wanted


async def on_deal_amended(changes: PendingChanges, amended: DealTerms, event_id: str) -> None:
    """Keep the amendment; if the deal is stored and it is the highest version (and not sent
    after a cancellation), put it in force and pay what it makes payable. One that changes
    the campaign, creator, brand or currency is refused; a stale one is ignored."""
    terms = await changes.deal(amended.deal_id)
    if terms is not None and (why := changed_identity(terms, amended)) is not None:
        if amended.brand_id != terms.brand_id:
            raise Untrusted(RejectReason.NOT_THE_DEAL_OWNER, why)
        raise EventRejected(why)
    await changes.repo.add_deal_version(amended, event_id)
    if terms is None:
        log.info("amendment kept until its deal arrives", deal_id=amended.deal_id)
        return
    before = terms.version
    terms = await _put_in_force(changes, amended.deal_id)
    if amended.version <= before or terms.version != amended.version:
        STALE_AMENDMENTS.labels(service="payouts").inc()
        log.info(
            "stale amendment ignored",
            deal_id=amended.deal_id,
            version=amended.version,
            in_force=terms.version,
            cancelled=terms.cancelled_at is not None,
        )
        return
    await _create_fee_payouts(changes, terms)


async def on_deal_cancelled(
    changes: PendingChanges, cancellation: Cancellation, event_id: str
) -> None:
    """Keep the cancellation; once the deal is stored, it ends at the cancellation's time.
    Payouts created before stay; confirmations dated later are refused from now on."""
    terms = await changes.deal(cancellation.deal_id)
    if terms is not None and cancellation.brand_id != terms.brand_id:
        raise Untrusted(
            RejectReason.NOT_THE_DEAL_OWNER,
            f"data.brand_id: deal {terms.deal_id} is brand {terms.brand_id}'s, not "
            f"{cancellation.brand_id}'s",
        )
    await changes.repo.add_cancellation(cancellation, event_id)
    if terms is None:
        log.info("cancellation kept until its deal arrives", deal_id=cancellation.deal_id)
        return
    await _put_in_force(changes, cancellation.deal_id)


async def on_deliverable_confirmed(changes: PendingChanges, data: Confirmation) -> None:
    """Record the confirmation; create the fee payouts it makes payable.

    A confirmation signed by another brand than the deal's is refused; one that arrives
    before its deal is kept apart with its signer and counts only if that is the deal's brand
    (the store's `confirmed`), so it can neither pay nor block the deal's own confirmation.
    """
    terms = await changes.deal(data.deal_id)
    signed_by = data.signed_by
    if terms is not None and signed_by and signed_by != terms.brand_id:
        raise Untrusted(
            RejectReason.NOT_THE_DEAL_OWNER,
            f"deal {data.deal_id} is brand {terms.brand_id}'s; this confirmation is signed by "
            f"brand {signed_by}",
        )
    if terms is not None and data.deliverable_id not in terms.deliverable_ids:
        raise EventRejected(
            f"data.deliverable_id: {data.deliverable_id!r} is not a deliverable of deal "
            f"{data.deal_id} (it has {', '.join(sorted(terms.deliverable_ids))})"
        )
    if (
        terms is not None
        and terms.cancelled_at is not None
        and data.confirmed_at > terms.cancelled_at
    ):
        raise EventRejected(
            f"data.confirmed_at: {data.confirmed_at.isoformat()} is after deal {data.deal_id} "
            f"was cancelled (deal.cancelled at {terms.cancelled_at.isoformat()}); nothing "
            "confirmed after a cancellation is paid"
        )
    await changes.add_confirmation(data)
    if terms is None:
        # Nothing to pay yet; an operator asked about it finds it in the log.
        log.info(
            "confirmation kept until its deal arrives",
            deal_id=data.deal_id,
            deliverable_id=data.deliverable_id,
        )
        return
    await _create_fee_payouts(changes, terms)


async def release_held(
    changes: PendingChanges, held: Sequence[Payout], accounts: Mapping[str, PayoutAccount]
) -> None:
    """Release these held payouts where they are payable now (callers hold the creators' locks)."""
    await _release(changes, held, accounts)


async def _release(
    changes: PendingChanges, held: Sequence[Payout], accounts: Mapping[str, PayoutAccount]
) -> None:
    transitions = []
    await changes.read_receivables({p.creator_id for p in held})
    repaid: dict[tuple[str, str], Money] = {}  # by the releases of this loop, not yet collected
    for payout in held:
        key = (payout.creator_id, payout.gross.currency)
        recoverable = await changes.recoverable(*key) - repaid.get(key, Money.zero(key[1]))
        account = accounts.get(payout.creator_id)
        rates = await _rates_for(changes, payout.fx_at or changes.now, key[1], account)
        transition = lifecycle.release(
            payout,
            account,
            rates.in_force,
            changes.now,
            recoverable,
            later=rates.later,
            fx_max_age=rates.max_age,
        )
        if transition.payout != payout:
            transitions.append((transition, payout.status))
            for transfer in transition.transfers:
                if transfer.kind == TransferKind.RECOVERY:
                    repaid[key] = repaid.get(key, Money.zero(key[1])) + transfer.postings[1].amount
    await changes.changed(transitions)


async def on_payout_account_upserted(changes: PendingChanges, account: PayoutAccount) -> None:
    """Store the account (unless a newer one is stored) and release what it makes payable."""
    creator_id = account.creator_id
    previous = (await changes.repo.accounts([creator_id])).get(creator_id)
    if previous is not None and changes.reseal is not None:
        resealed = changes.reseal(previous.creator_id, previous.destination)
        previous = replace(previous, destination=resealed)
    until = cooling_off_until(
        previous,
        account,
        in_flight=await changes.repo.in_flight(creator_id),
        now=changes.now,
        cool_off=changes.policy.destination_cool_off,
    )
    account = replace(account, cooling_off_until=until)
    changes.forget_account(creator_id)
    if not await changes.repo.save_account(account):
        return
    if until is not None and (previous is None or previous.cooling_off_until != until):
        changes.cool_offs += 1
        log.warning(
            "payout destination changed with payouts in flight: cooling off",
            creator_id=creator_id,
            until=until.isoformat(),
        )
    # Scheduled payouts are held when the dispatcher claims them; held ones here, judged on
    # `account` as just stored: all that decides payability comes with the event, but the
    # cool-off set above (state kept apart would have to be read back first).
    held = await changes.repo.held_for_update(creator_ids=[creator_id], codes=RELEASED_BY_ACCOUNTS)
    await _release(changes, held, {account.creator_id: account})
    # A failed payout is still owed: a changed account is the creator's answer to it.
    failed = await changes.repo.failed_for_update([creator_id])
    await changes.changed([(await _retried(changes, p, account), p.status) for p in failed])


async def _retried(
    changes: PendingChanges, payout: Payout, account: PayoutAccount | None
) -> lifecycle.Transition:
    """`lifecycle.retry`, with the rates locked at the payout's `fx_at` read only when the
    account is in another currency than the payout's converted amount."""
    rates = None
    if lifecycle.in_another_currency(payout, account):
        rates = await _rates_for(
            changes, payout.fx_at or changes.now, payout.creator_share.currency, account
        )
    return lifecycle.retry(payout, account, changes.now, rates)


class PayoutNotFound(LookupError):
    """No payout has the id asked for."""


async def retry_payout(changes: PendingChanges, payout_id: str) -> Payout:
    """Retry one failed payout now (an operator's decision); returns it as retried. Raises
    PayoutNotFound, or InvalidTransition when it is not failed."""
    found = await changes.repo.payout(payout_id)
    if found is None:
        raise PayoutNotFound(payout_id)
    # Under the creator's lock, as an account update retries it too.
    await changes.repo.lock(fx="shared", creator_ids=[found.creator_id])
    [payout] = await changes.repo.payouts_for_update([payout_id])
    account = (await changes.repo.accounts([payout.creator_id])).get(payout.creator_id)
    transition = await _retried(changes, payout, account)
    await changes.changed([(transition, payout.status)])
    return transition.payout


async def release_cooled_off(changes: PendingChanges, limit: int) -> int:
    """Release payouts whose creator's destination cool-off has ended; returns how many were
    looked at."""
    held = await changes.repo.cooled_off_for_update(changes.now, limit)
    if not held:
        return 0
    # Releasing converts, and converting repays what a creator owes: under the creators'
    # locks, as the consumer and the dispatcher take them.
    creators = {p.creator_id for p in held}
    await changes.repo.lock(fx="shared", creator_ids=creators)
    await _release(changes, held, await changes.repo.accounts(creators))
    return len(held)


async def on_attribution_updated(changes: PendingChanges, data: AttributedRevenue) -> None:
    """Keep the newest attribution per deal: the base of its commission, and with it the
    figures the brand API shows."""
    await changes.repo.save_attribution(
        data.deal_id, data.revenue, data.as_of, data.figures, sequence=data.sequence
    )


async def on_fx_rates_published(
    changes: PendingChanges, snapshot: FxSnapshot, event_id: str
) -> None:
    """Store (and judge) the snapshot, and release payouts that waited for a trusted rate."""
    # Already stored (the same snapshot sent again under another event id): the payouts held
    # for a rate are re-checked all the same.
    await changes.repo.save_fx(snapshot, event_id, changes.policy.fx_max_move)
    changes.forget_fx()
    held = await changes.repo.held_for_update(codes=FX_HOLDS)
    accounts = await changes.repo.accounts({p.creator_id for p in held})
    await _release(changes, held, accounts)


class CreatorsNotLocked(TransientError):
    """A payout waiting for funds appeared between reading whose creators to lock and taking
    the brand's lock: the batch runs again with its creator locked too."""


async def on_brand_funded(changes: PendingChanges, funding: Funding, event_id: str) -> None:
    """Credit the brand's escrow once per `funding_id`, and mark the escrow for
    `release_unreleased`, which releases the brand's payouts that waited for funds in that
    currency, in order of confirmation, while the escrow covers them. Not released here:
    releasing after each of many fundings reads every waiting payout each time; releasing once
    after all of them releases the same payouts (the same prefix of the same order, covered by
    the same total).

    The same funding id sent again with other terms is refused: a funding never changes."""
    if not await changes.repo.add_funding(funding, event_id):
        known = await changes.repo.funding(funding.funding_id)
        if known != funding:
            credited = (
                ""
                if known is None
                else f" (brand_id {known.brand_id}, amount {known.amount}, "
                f"funded_at {known.funded_at.isoformat()})"
            )
            raise EventRejected(
                f"data.funding_id: {funding.funding_id!r} was already credited with other terms"
                f"{credited}; a funding is never amended: send a new funding_id"
            )
        return
    changes.funded(funding)
    changes.unreleased = (funding.brand_id, funding.amount.currency)


async def release_unreleased(changes: PendingChanges, before: CloudEvent[Any] | None) -> None:
    """Release what the fundings just applied cover (`on_brand_funded`), unless `before` (the
    next event; None at the end of the batch) is one more funding of the same escrow: every
    other event sees the payouts released as if after each funding."""
    pending = changes.unreleased
    if pending is None or (before is not None and _escrow_funded(before) == pending):
        return
    changes.unreleased = None
    await changes.write_new()
    await release_funded(changes, *pending)


def _escrow_funded(event: CloudEvent[Any]) -> tuple[str, str] | None:
    if event.type != EventType.BRAND_FUNDED:
        return None
    return event.data.brand_id, event.data.amount.currency


async def release_funded(
    changes: PendingChanges, brand_id: str, currency: str, *, unless_unlocked: bool = False
) -> int:
    """Release the brand's payouts waiting for funds in `currency`, earliest confirmed first,
    each drawing its gross, stopping at the first the escrow does not cover (callers hold the
    brand's lock and the creators'). Returns how many were released.

    A waiting payout whose creator's lock is not held raises CreatorsNotLocked, or with
    `unless_unlocked` releases nothing: the brand's next funding will."""
    waiting = funding_order(
        p for p in await changes.repo.awaiting_funds([brand_id]) if p.gross.currency == currency
    )
    creators = {p.creator_id for p in waiting}
    if changes.creators_locked is not None and not creators <= changes.creators_locked:
        if unless_unlocked:
            return 0
        raise CreatorsNotLocked(
            f"brand {brand_id}: payouts of creators {sorted(creators - changes.creators_locked)} "
            "started waiting for funds meanwhile"
        )
    accounts = await changes.repo.accounts(creators)
    await changes.read_receivables(creators)
    released = 0
    for payout in await _locked_in_order(changes, waiting):
        if await changes.escrow(brand_id, currency) < payout.gross:
            changes.first_waiting(payout)
            return released
        account = accounts.get(payout.creator_id)
        rates = await _rates_for(changes, payout.fx_at or changes.now, currency, account)
        transition = lifecycle.fund(
            payout,
            account,
            rates.in_force,
            changes.now,
            await changes.recoverable(payout.creator_id, currency),
            later=rates.later,
            fx_max_age=rates.max_age,
        )
        await changes.changed([(transition, payout.status)])
        released += 1
    changes.none_waiting(brand_id, currency)
    return released


async def _locked_in_order(changes: PendingChanges, waiting: Sequence[Payout]) -> list[Payout]:
    ids = [p.payout_id for p in waiting]
    locked = {p.payout_id: p for p in await changes.repo.payouts_for_update(ids)}
    return [locked[p.payout_id] for p in waiting if awaits_funds(locked[p.payout_id])]


# Each input event type: translated at the door (translate.py), then applied by its handler.
Apply = Callable[[PendingChanges, CloudEvent[Any]], Awaitable[None]]
# The locks an event takes before any event of its batch is applied (`lock_batch`): its deal's
# (with the deal's creator and brand), its creator's, its brand's (the ids its data names),
# and "fx": the FX lock held exclusively.
Lock = Literal["deal", "creator", "brand", "fx"]


@dataclass(frozen=True)
class Step:
    """How payouts applies one input event type: `apply` translates it and hands it to its
    `on_<event>` handler, which reads and changes only what `locks` cover (no lock at all is
    a choice too, and says so where the step is listed)."""

    apply: Apply
    locks: frozenset[Lock]


def _step(apply: Apply, *locks: Lock) -> Step:
    return Step(apply, frozenset(locks))


async def _deal_signed(changes: PendingChanges, event: CloudEvent[Any]) -> None:
    terms = translate.deal_terms(event.data, changes.policy.fee_schedule, event.time)
    await on_deal_signed(changes, terms, event.id)


async def _deal_amended(changes: PendingChanges, event: CloudEvent[Any]) -> None:
    terms = translate.deal_terms(event.data, changes.policy.fee_schedule, event.time)
    await on_deal_amended(changes, terms, event.id)


async def _deal_cancelled(changes: PendingChanges, event: CloudEvent[Any]) -> None:
    floor = changes.not_before.get(event.identity)
    ended = translate.cancellation(event.data, event.time, floor)
    await on_deal_cancelled(changes, ended, event.id)  # refuses another brand's first
    if ended.cancelled_at != event.time:
        log.warning(
            "cancellation dated before it reached the broker: it ends the deal from then",
            deal_id=ended.deal_id,
            dated=event.time.isoformat(),
            ends_at=ended.cancelled_at.isoformat(),
        )


async def _brand_funded(changes: PendingChanges, event: CloudEvent[Any]) -> None:
    # Released by `consume` once the run of this escrow's fundings ends.
    await on_brand_funded(changes, translate.funding(event.data), event.id)


async def _deliverable_confirmed(changes: PendingChanges, event: CloudEvent[Any]) -> None:
    signed_by = changes.signers.get(event.identity)
    await on_deliverable_confirmed(changes, translate.confirmation(event.data, signed_by))


async def _payout_account_upserted(changes: PendingChanges, event: CloudEvent[Any]) -> None:
    if changes.seal is None:
        raise RuntimeError("payout accounts are stored only by a consumer that seals them")
    try:
        account = translate.payout_account(event.data, updated_at=event.time, seal=changes.seal)
    except RawDestination as refused:
        raise EventRejected(str(refused)) from None
    await on_payout_account_upserted(changes, account)


async def _attribution_updated(changes: PendingChanges, event: CloudEvent[Any]) -> None:
    await on_attribution_updated(changes, translate.attributed_revenue(event.data))


async def _fx_rates_published(changes: PendingChanges, event: CloudEvent[Any]) -> None:
    await on_fx_rates_published(changes, translate.fx_snapshot(event.data), event.id)


STEPS: Final[Mapping[str, Step]] = {
    EventType.DEAL_SIGNED: _step(_deal_signed, "deal", "creator", "brand"),
    # An amendment may pay fees (its creator's account and receivables, its brand's escrow).
    EventType.DEAL_AMENDED: _step(_deal_amended, "deal", "creator", "brand"),
    # A cancellation pays nothing: its deal's lock is enough.
    EventType.DEAL_CANCELLED: _step(_deal_cancelled, "deal"),
    EventType.BRAND_FUNDED: _step(_brand_funded, "brand"),
    EventType.DELIVERABLE_CONFIRMED: _step(_deliverable_confirmed, "deal"),
    EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED: _step(_payout_account_upserted, "creator"),
    # Stored for the commission round, which takes its own locks (`decide_commissions`).
    EventType.ATTRIBUTION_UPDATED: _step(_attribution_updated),
    EventType.FX_RATES_PUBLISHED: _step(_fx_rates_published, "fx"),
}


def _locking(events: Sequence[CloudEvent[Any]], lock: Lock) -> list[CloudEvent[Any]]:
    return [e for e in events if lock in STEPS[e.type].locks]


@dataclass(frozen=True)
class BatchLocks:
    """What `lock_batch` locked: the creators, and the batch's deals as read under their
    locks (None: not stored)."""

    creators: frozenset[str]
    deals: Mapping[str, DealTerms | None]


async def lock_batch(repo: PayoutsTransaction, events: Sequence[CloudEvent[Any]]) -> BatchLocks:
    """Take the locks a batch of input events needs, in the store's order (FX, deals, creators,
    brands: `PayoutsTransaction.lock`)."""
    deal_ids = {e.data.deal_id for e in _locking(events, "deal")}
    has_fx = bool(_locking(events, "fx"))
    await repo.lock(fx="exclusive" if has_fx else "shared", deal_ids=deal_ids)
    stored = await repo.deals(deal_ids) if deal_ids else {}
    deals = stored.values()
    creators = {d.creator_id for d in deals}
    creators |= {e.data.creator_id for e in _locking(events, "creator")}
    brands = {d.brand_id for d in deals}
    brands |= {e.data.brand_id for e in _locking(events, "brand")}
    funded = {e.data.brand_id for e in events if e.type == EventType.BRAND_FUNDED}
    # A funding releases the brand's waiting payouts: their creators are locked too (read
    # before the brand's lock; one that starts waiting meanwhile makes the batch run again:
    # CreatorsNotLocked).
    if funded:
        creators |= {p.creator_id for p in await repo.awaiting_funds(funded)}
    await repo.lock(creator_ids=creators, brand_ids=brands)
    return BatchLocks(frozenset(creators), {d: stored.get(d) for d in deal_ids})


def consume(
    policy: PayoutPolicy,
    *,
    seal: Seal,
    reseal: Callable[[str, SealedDestination], SealedDestination],
    on_scheduled: Callable[[], None],
) -> Handler[PayoutsTransaction]:
    """The unit of work's handler for payouts' input events: one `PendingChanges` per
    batch, each new event applied in arrival order; its status events are published through
    the unit of work, and after the commit its changes are counted and, if payouts became due,
    `on_scheduled` wakes the dispatcher."""

    async def handle(new: NewEvents, uow: UnitOfWork[PayoutsTransaction]) -> None:
        events = new.of_type(*STEPS)
        if not events:
            return
        locks = await lock_batch(uow.tx, events)
        changes = PendingChanges(
            uow.tx,
            policy,
            uow.now,
            seal=seal,
            reseal=reseal,
            signers=new.brand_signers(),
            not_before=new.not_before(),
            creators_locked=locks.creators,
        )
        changes.know_deals(locks.deals)
        # One read each for what the events would read one by one (all of it locked now);
        # their confirmations and payouts are written together, before any other event.
        await changes.read_ahead(
            deal_ids={e.data.deal_id for e in _locking(events, "deal")},
            creator_ids=changes.creators_locked or (),
        )
        for event in events:
            await release_unreleased(changes, event)
            if event.type != EventType.DELIVERABLE_CONFIRMED:
                await changes.write_new()
            await STEPS[event.type].apply(changes, event)
        await release_unreleased(changes, None)
        await changes.post()
        uow.publish(changes.events)
        uow.after_commit(changes.committed)
        if changes.scheduled:
            uow.after_commit(on_scheduled)

    return handle


async def decide_commissions(changes: PendingChanges, limit: int) -> int:
    """Make the commission of deals whose attribution window (plus grace) closed follow their
    latest attributed revenue: rate x revenue, in the deal currency, less what earlier
    decisions booked (`next_commission_step`): the whole commission first, then a top-up or a
    clawback whenever a late order or refund changed the revenue, until the adjustment period
    (`commission_adjustable` after the close) is over. Deals whose revenue cannot be converted
    yet stay undecided for the next round. Returns the number of deals decided."""
    closed_before = changes.now - changes.policy.commission_grace
    final_before = changes.now - changes.policy.commission_adjustable
    due = await changes.repo.commission_due_for_update(closed_before, final_before, limit)
    brands = {d.brand_id for d in due}
    # A clawback gives money back to the brand's escrow: the payouts waiting for it may draw
    # on it, under their creators' locks too (read before the brands' lock).
    waiting = {p.creator_id for p in await changes.repo.awaiting_funds(brands)}
    creators = {d.creator_id for d in due} | waiting
    await changes.repo.lock(
        fx="shared", deal_ids=[d.deal_id for d in due], creator_ids=creators, brand_ids=brands
    )
    changes.creators_locked = frozenset(creators)
    due = [t for t in due if commission_due(t, changes.now, changes.policy.commission_grace)]
    # Read for the whole round at once: one deal's booking changes no other deal's.
    deal_ids = [t.deal_id for t in due]
    attributions = await changes.repo.attributions(deal_ids)
    booked = await changes.repo.commission_booked(deal_ids)
    credited: set[tuple[str, str]] = set()
    decided: dict[str, int] = {}
    for terms in due:
        latest = attributions.get(terms.deal_id)
        owed = Money.zero(terms.currency)
        if latest is not None:
            try:
                owed = commission(
                    latest.revenue, terms.commission_rate, terms.currency, await changes.fx()
                )
            except MoneyError as error:  # FxRateMissing among them: try again next round
                log.warning("commission not decided yet", deal_id=terms.deal_id, error=str(error))
                continue
        step = next_commission_step(
            owed, booked.get(terms.deal_id, []), changes.policy.platform_fee_bps
        )
        if step is not None:
            await _book_commission(changes, terms, step)
            if step.kind == "clawback":
                credited.add((terms.brand_id, terms.currency))
        decided[terms.deal_id] = 0 if latest is None else latest.revision
    await changes.repo.commission_decided(decided)
    for brand_id, currency in sorted(credited):
        await release_funded(changes, brand_id, currency, unless_unlocked=True)
    return len(decided)


async def _book_commission(changes: PendingChanges, terms: DealTerms, step: CommissionStep) -> None:
    if step.kind == "clawback":
        await changes.created(
            lifecycle.clawback(terms, step.milestone, step.gross, step.platform_fee)
        )
        return
    account = (await changes.repo.accounts([terms.creator_id])).get(terms.creator_id)
    # A commission is owed from the moment it is decided: its rate is locked now.
    gross, fee = step.gross, step.platform_fee
    await _owe(changes, terms, "commission", step.milestone, gross, changes.now, account, fee)
