"""The port between the tracking handler and its storage.

One `TrackingTransaction` is one database transaction: the unit of work's inbox claim and outbox
(shared.runtime.unit_of_work.Transaction) and tracking's reads and writes. Every method is
set-based (one call per batch, not per event) and everything done through it commits or rolls
back together. The PostgreSQL adapter (`postgres.py`) and the in-memory store (`memory.py`)
pass the same contract tests (tests/unit/tracking/store_contract.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from services.tracking.domain.attribution import DealAttribution, DealFacts
from services.tracking.domain.campaigns import (
    CampaignAttribution,
    CampaignFacts,
    UnattributedChange,
)
from services.tracking.domain.credit import Click, ModelSetting
from services.tracking.domain.deals import Cancellation, DealTerms
from services.tracking.domain.deliverables import Confirmation, DeliverableState
from services.tracking.domain.leaks import (
    CodeJudgement,
    Evidence,
    LeakedOrders,
    LeakOrder,
    LeakThresholds,
    LeakTotals,
)
from services.tracking.domain.orders import ClickFacts, Order, OrderOutcome, Refund
from services.tracking.domain.posts import PostSnapshot
from shared.contract.money import FxSnapshot
from shared.runtime.unit_of_work import Transaction, TransactionalStore


def one_per_deal(attributions: Sequence[DealAttribution]) -> None:
    """Refuse two attributions of one deal for `TrackingTransaction.published`: each is
    numbered one more than its deal's last, so a second would reuse its number."""
    deals = [a.deal_id for a in attributions]
    if len(set(deals)) != len(deals):
        raise ValueError("published: one attribution per deal")


@dataclass(frozen=True, slots=True)
class DealsAdded:
    """`added`: deals stored now. `repeated`: ids already stored with the same terms.
    `conflicting`: ids already stored with different terms (nothing was changed)."""

    added: list[DealTerms]
    repeated: set[str]
    conflicting: set[str]


@dataclass(frozen=True, slots=True)
class OrderContext:
    """Everything an order's outcome depends on, and the outcome stored now (None if the
    order was never evaluated)."""

    order: Order
    refunds: tuple[Refund, ...]
    candidates: tuple[DealTerms, ...]
    snapshot: FxSnapshot | None
    current: OrderOutcome | None
    # The order's clicks, their deals and the campaigns' model settings (domain.credit).
    clicks: ClickFacts = field(default_factory=ClickFacts)


@dataclass(frozen=True, slots=True)
class LeakFacts:
    """What the leaked-code rules read of one deal: its terms, its reach (the summed reach of
    its posts' latest snapshots), its campaign's policy, the orders its promo codes chose it
    for (attributed or waiting for a rate, refunded or not) and which of those are flagged
    suspected now.

    `judgements`: per promo code, the judgement stored for it when it still stands
    (CodeJudgement.resumable, and no order up to its `through` joined or left the code since);
    the code's `orders` are then only domain.leaks.orders_to_read. A code without one has
    all its orders."""

    deal: DealTerms
    reach: int
    policy: LeakedOrders
    orders: tuple[LeakOrder, ...]
    suspected: frozenset[str]
    judgements: Mapping[str, CodeJudgement] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeakAlert:
    """One rule fired on one promo code of a deal (`evidence`: where it first fired)."""

    deal_id: str
    promo_code: str
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class AffectedOrders:
    """The stored orders whose outcome a batch may change: those in `order_ids`, using one of
    `promo_codes`, (when `converted_since` is set) occurred at or after it and converted or
    waiting for a rate, with the visitor or the click of one of `clicks`, or whose deal is in
    one of `campaign_ids`."""

    order_ids: Collection[str] = ()
    promo_codes: Collection[str] = ()
    converted_since: datetime | None = None
    clicks: Collection[Click] = ()
    campaign_ids: Collection[str] = ()

    def __bool__(self) -> bool:
        """Whether any stored order can be affected."""
        return self.converted_since is not None or any(
            (self.order_ids, self.promo_codes, self.clicks, self.campaign_ids)
        )


class TrackingTransaction(Transaction, Protocol):
    """One batch's transaction: `claim` and `enqueue` (Transaction), and tracking's state."""

    async def exclude_other_batches(self) -> None:
        """Wait until no other transaction holds this lock, and hold it until this one ends.

        What one batch derives from another's entities (a deal's posts, an order's deal or
        refunds) is read from what is committed: two batches applied at once, one with a
        deal and one with its post, would each miss the other's half."""
        ...

    async def deals_with_codes(self, promo_codes: Collection[str]) -> list[DealTerms]:
        """Stored deals carrying any of `promo_codes`."""
        ...

    async def add_deals(self, deals: Sequence[DealTerms]) -> DealsAdded:
        """Store deals not stored yet (deal ids unique within `deals`). A deal sent again is
        compared with its signed terms (version 1), not with those in force."""
        ...

    async def deals(self, deal_ids: Collection[str]) -> dict[str, DealTerms]:
        """The terms in force of the stored deals among `deal_ids`."""
        ...

    async def keep_deal_changes(
        self, versions: Sequence[DealTerms], cancellations: Sequence[Cancellation]
    ) -> None:
        """Keep versions of deals' terms (the first received of each version per deal) and
        cancellations (the earliest per deal and brand), their deals stored or not."""
        ...

    async def deal_changes(
        self, deal_ids: Collection[str]
    ) -> dict[str, tuple[list[DealTerms], list[Cancellation]]]:
        """Every version (lowest first) and cancellation kept of each deal in `deal_ids` that
        has any."""
        ...

    async def save_terms(self, deals: Sequence[DealTerms]) -> None:
        """Put these terms in force for their stored deals (codes, window, fee, rate,
        deliverables, version, cancellation); when each deal was signed stays."""
        ...

    async def add_fx_snapshots(
        self, snapshots: Sequence[tuple[FxSnapshot, str]], max_move: Decimal
    ) -> list[FxSnapshot]:
        """Store (snapshot, event_id) pairs and judge them and the later ones
        (shared.runtime.fx_store.save_judged); return the snapshots that were new."""
        ...

    async def upsert_posts(self, posts: Sequence[PostSnapshot]) -> list[PostSnapshot]:
        """Merge each snapshot into its post (domain.posts.merge_snapshot; post ids unique
        within `posts`); return the merged posts that changed."""
        ...

    async def deals_of_creators(self, creator_ids: Collection[str]) -> list[DealTerms]: ...

    async def posts_of_creators(self, creator_ids: Collection[str]) -> list[PostSnapshot]:
        """The latest snapshot of every post of these creators."""
        ...

    async def replace_memberships(
        self, post_ids: Collection[str], pairs: Collection[tuple[str, str]]
    ) -> set[str]:
        """Make `pairs` (deal_id, post_id) the only deals of `post_ids`; return every deal id
        that had or now has one of these posts."""
        ...

    async def add_memberships(self, pairs: Collection[tuple[str, str]]) -> set[str]:
        """Add (deal_id, post_id) pairs; return the deal ids that gained a post."""
        ...

    async def new_order_contexts(self, orders: Sequence[Order]) -> list[OrderContext]:
        """The context (as `orders_to_evaluate` gives it) of each order in `orders` whose id
        is not stored yet; `current` is None."""
        ...

    async def add_orders(
        self, orders: Sequence[Order], outcomes: Sequence[OrderOutcome] | None = None
    ) -> set[str]:
        """Store orders whose id is new (ids unique within `orders`), with their outcomes if
        given (`outcomes[i]` is that of `orders[i]`); return the ids stored."""
        ...

    async def add_refunds(self, refunds: Collection[Refund]) -> set[str]:
        """Store refunds not seen before; return the order ids that got a new refund."""
        ...

    async def orders_to_evaluate(self, affected: AffectedOrders) -> list[OrderContext]:
        """The stored orders `affected` names, each with its refunds, candidate deals, the FX
        snapshot in force at `occurred_at` (shared.runtime.fx_store.snapshot_at semantics),
        its stored credits and its click facts."""
        ...

    async def stored_orders(self, order_ids: Collection[str]) -> dict[str, Order]:
        """The stored orders among `order_ids`, by id."""
        ...

    async def stored_clicks(self, click_ids: Collection[str]) -> dict[str, Click]:
        """The stored clicks among `click_ids`, by id."""
        ...

    async def add_clicks(self, clicks: Sequence[Click]) -> list[Click]:
        """Store clicks whose id is new (ids unique within `clicks`); return those stored."""
        ...

    async def clicks_on_deals(self, deal_ids: Collection[str]) -> list[Click]:
        """Every stored click on one of `deal_ids`."""
        ...

    async def save_model_settings(self, settings: Sequence[ModelSetting]) -> list[ModelSetting]:
        """Keep the newest setting per (campaign, brand) (ModelSetting.newer_than); return
        the settings that are now the newest and were not before."""
        ...

    async def brands_of_campaigns(self, campaign_ids: Collection[str]) -> dict[str, set[str]]:
        """The brands of the stored deals of each campaign in `campaign_ids`."""
        ...

    async def deals_of_campaigns(self, campaigns: Collection[tuple[str, str]]) -> set[str]:
        """The ids of the stored deals of each (campaign, brand)."""
        ...

    async def save_order_outcomes(self, outcomes: Sequence[OrderOutcome]) -> None:
        """Store each order's outcome, its credits replacing those it had."""
        ...

    async def add_manual_confirmations(self, confirmations: Sequence[Confirmation]) -> set[str]:
        """Store confirmations of deliverables not confirmed yet; return their deal ids."""
        ...

    async def keep_early_confirmations(
        self, confirmations: Sequence[tuple[Confirmation, str]]
    ) -> None:
        """Keep confirmations of deals not stored yet, each with the brand that signed it
        ('' if none did), until the deal arrives; one per (deal, deliverable, signer)."""
        ...

    async def take_early_confirmations(self, deals: Sequence[DealTerms]) -> set[str]:
        """Store, as confirmations, the kept early ones of `deals` that were unsigned or
        signed by the deal's brand, and forget all of theirs; return the deals confirmed."""
        ...

    async def deal_facts(self, deal_ids: Collection[str]) -> list[DealFacts]:
        """Summed posts and orders of each stored deal in `deal_ids`."""
        ...

    async def leak_facts(
        self, deal_ids: Collection[str], thresholds: LeakThresholds = LeakThresholds()
    ) -> list[LeakFacts]:
        """The LeakFacts of each stored deal in `deal_ids`, judged under `thresholds`."""
        ...

    async def save_leak_judgements(
        self, judgements: Collection[tuple[str, str, CodeJudgement]]
    ) -> None:
        """Store the judgement of each (deal, promo code), replacing the one stored."""
        ...

    async def mark_leak_suspects(
        self, suspected: Collection[str], cleared: Collection[str]
    ) -> set[str]:
        """Flag the orders `suspected` as suspected leaked and those `cleared` as not; return
        every deal credited by an order whose flag changed."""
        ...

    async def add_leak_alerts(self, alerts: Sequence[LeakAlert]) -> list[LeakAlert]:
        """Record alerts of (deal, code, rule) never recorded before (one per key within
        `alerts`); return those recorded now, in the order given."""
        ...

    async def leak_totals(self, deal_ids: Collection[str]) -> dict[str, LeakTotals]:
        """The LeakTotals of each deal in `deal_ids` that has a suspected order or credits
        one (the others have none): withheld under its campaign's `withhold` policy."""
        ...

    async def save_attributions(
        self, attributions: Sequence[DealAttribution]
    ) -> list[DealAttribution]:
        """Store each deal's attribution; return those that differ from what was stored."""
        ...

    async def published(self, attributions: Sequence[DealAttribution]) -> list[DealAttribution]:
        """`attributions` (stored, one per deal) as they are published: each `as_of` no
        earlier than the one published last for its deal, and recorded as that one (figures
        worked out again under a new model or new terms may reflect older inputs of their own
        than those they replace), and each numbered one more than its deal's last: consumers
        keep the greatest `sequence`."""
        ...

    async def add_unattributed(self, changes: Sequence[UnattributedChange]) -> set[str]:
        """Add `changes` to the running totals of each brand's unattributed orders (per brand
        and currency: orders and amount); return the brands changed."""
        ...

    async def campaigns_of_deals(self, deal_ids: Collection[str]) -> set[tuple[str, str]]:
        """The (campaign, brand) of each stored deal in `deal_ids`."""
        ...

    async def campaigns_of_brands(self, brand_ids: Collection[str]) -> set[tuple[str, str]]:
        """Every (campaign, brand) with a stored deal of one of `brand_ids`."""
        ...

    async def campaigns_converted_since(self, since: datetime) -> set[tuple[str, str]]:
        """The stored campaign attributions that convert a currency (CampaignAttribution.
        converted) and reflect inputs up to `since` or later (`as_of >= since`): those a
        snapshot dated `since` may change."""
        ...

    async def campaign_facts(self, campaigns: Collection[tuple[str, str]]) -> list[CampaignFacts]:
        """The CampaignFacts of each (campaign, brand) with a stored deal attribution: its
        deals' stored attributions and fees summed per currency, the currency of its first
        signed deal (earliest signed_at, then smallest deal id), the trusted snapshot in
        force at its as_of (only when a currency must be converted) and its brand's
        unattributed totals."""
        ...

    async def save_campaign_attributions(
        self, campaigns: Sequence[CampaignAttribution]
    ) -> list[CampaignAttribution]:
        """Store each campaign's attribution (one per campaign and brand) whose figures differ
        from those stored; return those, each with its `sequence`: 1 for the campaign's first,
        then one more than the one stored."""
        ...

    async def open_deliverables(self, deal_ids: Collection[str]) -> list[DeliverableState]:
        """Deals in `deal_ids` with a deliverable not confirmed yet, their posts and
        confirmations."""
        ...

    async def add_auto_confirmations(
        self, confirmations: Sequence[Confirmation]
    ) -> list[Confirmation]:
        """Store confirmations of deliverables not confirmed yet; return those stored."""
        ...

    async def close_deals(self, deal_ids: Collection[str]) -> None:
        """Mark deals whose deliverables are all confirmed (no more matching needed)."""
        ...


class TrackingStore(TransactionalStore[TrackingTransaction], Protocol):
    """Transactions (`transaction()`), and the reads of the operator's campaign report."""

    async def campaign_attributions(
        self, campaign_id: str, brand_id: str | None = None
    ) -> list[DealAttribution]:
        """The stored attribution of every deal of the campaign (of `brand_id`'s deals only,
        if given: brands may share a campaign id), by deal id."""
        ...

    async def campaign_brands(self, campaign_id: str) -> set[str]:
        """The brands whose stored deals carry this campaign id."""
        ...
