"""The payouts store's port: what the handlers, the dispatcher and the schedules read and write.

Everything a handler does happens inside one `PayoutsStore.transaction()`: the inbox claim,
the state change, the ledger postings and the outbox events commit or roll back together. The
transaction (`PayoutsTransaction`) is the `Transaction` of the unit of work
(shared.runtime.unit_of_work): `claim` and `enqueue`, and payouts' own reads and writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from services.payouts.domain.accounts import HoldCode, PayoutAccount
from services.payouts.domain.brand_view import AttributionFigures
from services.payouts.domain.escrow import Funding
from services.payouts.domain.ledger import Transfer
from services.payouts.domain.ledger_check import PostedTransfer
from services.payouts.domain.lifecycle import Payout, PayoutStatus
from services.payouts.domain.statements import DatedPayout
from services.payouts.domain.terms import Cancellation, Confirmation, DealTerms
from services.payouts.notices import DueEmail, EmailState, Notice
from shared.contract.events import CloudEvent, EventIdentity
from shared.contract.money import FxSnapshot, Money
from shared.runtime.kafka import Delivery

LockMode = Literal["shared", "exclusive"]


class PayoutsTransaction(Protocol):
    """Reads and writes of one transaction. Methods named `*_for_update` lock what they return
    until the transaction ends (rows locked by another transaction are skipped where noted)."""

    async def claim(self, events: Sequence[tuple[CloudEvent[Any], Delivery]]) -> set[EventIdentity]:
        """Record the events as processed in the store's inbox (under the store's consumer
        name); return the identities seen for the first time."""
        ...

    async def lock(
        self,
        *,
        fx: LockMode | None = None,
        deal_ids: Iterable[str] = (),
        creator_ids: Iterable[str] = (),
        brand_ids: Iterable[str] = (),
    ) -> None:
        """Serialise, until commit, the transactions that touch the same FX snapshot, deals,
        creators or brands' escrow. Always take them in this order (FX, then deals, then
        creators, then brands), and each kind at most once per transaction, so two
        transactions cannot deadlock.

        Creating or releasing payouts takes FX shared; storing a snapshot takes it exclusive.
        Whatever draws on or credits a brand's escrow (creating payouts, fundings, clawbacks)
        takes the brand's lock, so two transactions never spend the same funds.
        """
        ...

    async def add_funding(self, funding: Funding, event_id: str) -> bool:
        """Keep the funding unless its `funding_id` is known (False: nothing written)."""
        ...

    async def funding(self, funding_id: str) -> Funding | None: ...

    async def fundings_of(self, brand_id: str) -> list[Funding]:
        """The brand's fundings, earliest `funded_at` first."""
        ...

    async def escrow_balances(self, brand_ids: Iterable[str]) -> dict[tuple[str, str], Decimal]:
        """The escrow of these brands per (brand, currency), as their postings leave it."""
        ...

    async def awaiting_funds(self, brand_ids: Iterable[str]) -> list[Payout]:
        """The brands' payouts held `awaiting_funds` (not locked: under the brands' locks
        nothing else changes them)."""
        ...

    async def payouts_of_brand(self, brand_id: str) -> list[Payout]:
        """The brand's payouts (clawbacks included), oldest first."""
        ...

    async def add_deal(self, terms: DealTerms, event_id: str) -> bool: ...

    async def deal(self, deal_id: str) -> DealTerms | None: ...

    async def deals(self, deal_ids: Iterable[str]) -> dict[str, DealTerms]: ...

    async def add_deal_version(self, terms: DealTerms, event_id: str) -> bool:
        """Keep version `terms.version` of a deal's terms (its `deal.signed` or an amendment,
        possibly received before the deal); the first received of a version is kept. True if
        new."""
        ...

    async def deal_versions(self, deal_id: str) -> list[DealTerms]:
        """Every version kept for the deal (`add_deal_version`), lowest first."""
        ...

    async def save_terms(self, terms: DealTerms) -> None:
        """Put `terms` in force for the stored deal: its version, fee, rate, deliverables,
        period and cancellation (the fee schedule and the parties never change)."""
        ...

    async def add_cancellation(self, cancellation: Cancellation, event_id: str) -> bool:
        """Keep a cancellation (possibly before its deal), the earliest per deal and brand;
        True if new."""
        ...

    async def cancellations(self, deal_id: str) -> list[Cancellation]:
        """The cancellations kept for the deal, whoever sent them."""
        ...

    async def fee_paid(self, deal_ids: Iterable[str]) -> dict[str, dict[str, Money]]:
        """Each deal's fee payouts created so far: deal -> milestone -> gross."""
        ...

    async def add_confirmation(
        self,
        deal_id: str,
        deliverable_id: str,
        confirmed_by: str,
        confirmed_at: datetime,
        signed_by: str = "",
        post_received_at: datetime | None = None,
    ) -> bool:
        """Keep a confirmation; `signed_by` is the brand that signed it ('' if unsigned),
        `post_received_at` when the post that completed it reached us, if known.
        Confirmations by different signers are kept apart: one never hides another."""
        ...

    async def confirmed(self, deal_id: str) -> Mapping[str, datetime]:
        """The deal's confirmed deliverables and when each was (first) confirmed, counting
        only confirmations unsigned or signed by the deal's brand."""
        ...

    async def confirmations_of(
        self, deal_ids: Iterable[str]
    ) -> dict[str, dict[tuple[str, str], datetime]]:
        """Every stored confirmation of these deals, whoever signed it: deal ->
        (deliverable_id, signed_by) -> confirmed_at; every deal asked is a key."""
        ...

    async def add_confirmations(self, confirmations: Sequence[Confirmation]) -> None:
        """Keep new confirmations at once, none of them stored yet (`confirmations_of`, read
        under the deals' locks): one that is raises StaleUpdate."""
        ...

    async def post_arrivals(self, deal_ids: Iterable[str]) -> dict[tuple[str, datetime], datetime]:
        """(deal, confirmed_at) -> when the post that completed that confirmation reached us,
        for the deals' confirmations that know it, counting only those that `confirmed`
        counts."""
        ...

    async def save_account(self, account: PayoutAccount) -> bool:
        """Store the account unless a newer version (by `updated_at`) is already stored."""
        ...

    async def accounts(self, creator_ids: Iterable[str]) -> dict[str, PayoutAccount]: ...

    async def in_flight(self, creator_id: str) -> bool:
        """Whether the creator has payouts not sent yet (held, scheduled, or failed: a failed
        payout is retried when the account changes)."""
        ...

    async def cooled_off_for_update(self, now: datetime, limit: int) -> list[Payout]:
        """Payouts held for a destination cool-off that ended by `now` (locked; rows locked
        elsewhere skipped)."""
        ...

    async def save_attribution(
        self,
        deal_id: str,
        revenue: Money,
        as_of: datetime,
        figures: AttributionFigures | None = None,
        *,
        sequence: int | None = None,
    ) -> bool:
        """Keep the newest attribution per deal (`domain.commission.replaces`), its figures
        with it; each one kept is the deal's next revision (the first is 1)."""
        ...

    async def attributions(self, deal_ids: Iterable[str]) -> dict[str, Attribution]:
        """The attribution kept for each of these deals that has one."""
        ...

    async def attribution_figures(self, deal_ids: Iterable[str]) -> dict[str, AttributionFigures]:
        """The figures of the attribution kept for each of these deals that has them."""
        ...

    async def deals_of_brand(
        self, brand_id: str, *, campaign_id: str | None = None, creator_id: str | None = None
    ) -> list[DealTerms]:
        """The brand's deals (of one campaign, or with one creator, when given), by deal id."""
        ...

    async def save_fx(self, snapshot: FxSnapshot, event_id: str, max_move: Decimal) -> bool:
        """Store the snapshot unless it is stored already (True when new), then judge it and
        the later ones (shared.runtime.fx_moves.rejudged, `max_move`): their `suspect` reasons."""
        ...

    async def fx_in_force(self, when: datetime) -> FxSnapshot | None:
        """The snapshot in force at `when`: the latest by `as_of` at or before it, trusted or
        not (a suspect one holds the payouts that need it), ties by the smallest source."""
        ...

    async def fx_first_after(
        self, after: datetime, until: datetime, currencies: Sequence[str]
    ) -> FxSnapshot | None:
        """The first trusted snapshot with `after < as_of <= until` that quotes every one of
        `currencies` (as its base or a rate), ties by the smallest source."""
        ...

    async def add_payout(self, payout: Payout) -> bool:
        """Insert; False (and nothing written) if its business key already has a payout.

        Raises FeeCeilingExceeded if a fee payout would take the deal's fee payouts above its
        fee (or has no stored deal, or another currency): enforced by the store itself."""
        ...

    async def payout_grosses(
        self, deal_ids: Iterable[str]
    ) -> dict[str, dict[tuple[str, str], Money]]:
        """Per deal asked (none: empty), the gross of each of its payouts by business key
        (kind, milestone): the keys taken, and the fee paid so far, in one read."""
        ...

    async def add_payouts(self, payouts: Sequence[Payout]) -> None:
        """Store new payouts at once, none of whose business keys exists (`payout_grosses`, read
        under the deals' locks): one that does raises StaleUpdate. Raises FeeCeilingExceeded
        as `add_payout` does."""
        ...

    async def payout(self, payout_id: str) -> Payout | None:
        """One payout, read without a lock."""
        ...

    async def payouts_for_update(self, payout_ids: Sequence[str]) -> list[Payout]: ...

    async def claim_webhook(self, rail: str, event_id: str, received_at: datetime) -> bool:
        """Record a rail's webhook event as applied in this transaction; False (nothing
        written) if it was recorded before: a duplicate delivery."""
        ...

    async def payout_of_transfer(self, rail: str, provider_ref: str) -> str | None:
        """The payout whose current transfer on `rail` is `provider_ref`, or None. A payout
        recorded without a rail was sent through Stripe (providers.rails.LEGACY_RAIL)."""
        ...

    async def held_for_update(
        self, *, creator_ids: Sequence[str] | None = None, codes: Sequence[HoldCode] = ()
    ) -> list[Payout]:
        """Held payouts of these creators (all creators if None) with one of `codes`."""
        ...

    async def failed_for_update(self, creator_ids: Sequence[str]) -> list[Payout]:
        """Failed payouts of these creators (locked)."""
        ...

    async def due_for_update(self, now: datetime, limit: int) -> list[Payout]:
        """Scheduled payouts due at `now`, oldest first, skipping ones locked elsewhere."""
        ...

    async def sent_due_for_update(self, now: datetime, limit: int) -> list[tuple[Payout, int]]:
        """Sent payouts whose rail is due to be asked about them at `now`, in the order they
        were sent, each with how often it was asked since it was last sent, skipping ones
        locked elsewhere."""
        ...

    async def settlement_checks_ahead(self, next_checks: Mapping[str, datetime]) -> None:
        """When to ask the rail again about each of these payouts (by id), counting one more
        check; a payout no longer sent is left alone."""
        ...

    async def save_payouts(self, changes: Sequence[tuple[Payout, PayoutStatus]]) -> None:
        """Write each payout; the row must still have the given previous status."""
        ...

    async def commission_due_for_update(
        self, closed_before: datetime, final_before: datetime, limit: int
    ) -> list[DealTerms]:
        """Deals with a commission rate whose attribution window closed at or before
        `closed_before` and whose commission is not decided yet, or was decided on another
        attribution revision than the latest while the window closed after `final_before`
        (later, the commission is final). Earliest closed first, skipping ones locked
        elsewhere."""
        ...

    async def commission_decided(self, revisions: Mapping[str, int]) -> None:
        """Each deal's commission now follows its attribution revision in `revisions` (0: no
        attribution)."""
        ...

    async def commission_booked(self, deal_ids: Iterable[str]) -> dict[str, list[Payout]]:
        """The commission payouts and clawbacks of each of these deals (in no particular order;
        a deal without any has none listed)."""
        ...

    async def post(self, transfers: Sequence[Transfer], *, wake_dispatchers: bool = False) -> None:
        """Append the transfers to the ledger; with `wake_dispatchers`, wake every dispatcher
        once this transaction commits (payouts became due)."""
        ...

    async def enqueue(self, events: Sequence[CloudEvent[Any]]) -> None:
        """Queue events in the outbox of this transaction, and for each payout status change
        of a creator with an e-mail address, its e-mail (`notices.py`; one per
        event id, a change enqueued again adds none). Changes of creators without an address
        are counted (`creatorflow_payout_emails_total{outcome="no_address"}`)."""
        ...

    # Creators' payout e-mails (notices.py: the states and why).
    async def claim_emails(self, now: datetime, lease: timedelta, limit: int) -> list[DueEmail]:
        """Up to `limit` pending e-mails due at `now`, earliest first, skipping rows locked
        elsewhere, each leased to a new claim until `now + lease`: no other claim takes it
        meanwhile. With each, the creator's address now (None: it has none any more)."""
        ...

    async def start_email(self, event_id: str, claim_id: str, until: datetime) -> bool:
        """Mark the e-mail `sending` until `until` (one more attempt) if `claim_id` still
        holds it and it is pending; False (nothing written) otherwise."""
        ...

    async def end_email(
        self,
        event_id: str,
        state: EmailState,
        at: datetime,
        *,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        """Record how a pending or sending e-mail ended: `sent`, `failed`, `unknown`, or
        `pending` again (claimable from `retry_at`); False if it was neither (e.g. taken as
        `unknown` meanwhile)."""
        ...

    async def emails_in_doubt(self, now: datetime) -> list[Notice]:
        """Mark `unknown` the e-mails left `sending` past their lease (their sender stopped
        between starting the SMTP transaction and recording its end), and return them: they
        are never sent again."""
        ...

    async def emails_of(self, payout_id: str) -> list[tuple[Notice, EmailState]]:
        """The payout's e-mails and their states, in the order of the changes."""
        ...

    # Reporting (read-only).
    async def payouts_of(self, creator_id: str | None = None) -> list[Payout]:
        """Payouts of one creator (or all), oldest first."""
        ...

    async def settled_between(self, start: datetime, end: datetime) -> list[Payout]:
        """Payouts settled now whose (latest) settlement was posted to the ledger at or after
        `start`, before `end`: one returned after it settled is not counted, and one settled
        again after a return counts when it was settled again."""
        ...

    async def dated_payouts_of(self, creator_id: str) -> list[DatedPayout]:
        """The creator's payouts (clawbacks included) with when each became owed (`fx_at`,
        else when it was recorded) and, while settled, when its latest settlement was posted
        (as `settled_between` dates it); earliest owed first."""
        ...

    async def transfers(self, payout_ids: Sequence[str] | None = None) -> list[PostedTransfer]:
        """Recorded transfers (of these payouts, or all), in posting order."""
        ...

    async def balances(
        self, accounts: Sequence[str] | None = None
    ) -> dict[tuple[str, str], Decimal]:
        """Sum of postings per (account, currency), computed by the database."""
        ...


@dataclass(frozen=True)
class Attribution:
    """The latest attributed revenue of a deal (net of refunds) and its revision."""

    revenue: Money
    revision: int


class PayoutsStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[PayoutsTransaction]: ...

    def snapshot(self) -> AbstractAsyncContextManager[PayoutsTransaction]:
        """A read-only view of one moment, for reports and checks that read several tables:
        writes committed meanwhile are not seen (each read of a transaction may see them)."""
        ...


class FeeCeilingExceeded(RuntimeError):
    """A fee payout that would pay a deal more than its fee: a bug, never a valid state."""


class StaleUpdate(RuntimeError):
    """A payout changed under us (its status is not what the transition started from)."""
