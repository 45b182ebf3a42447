"""The in-memory tracking store: the port (`store/port.py`) over plain Python collections,
for the unit and property tests.

It follows the port's docstrings; the contract tests (tests/unit/tracking/store_contract.py)
run the same suite against it and the PostgreSQL adapter.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

from services.tracking.domain.attribution import (
    DealAttribution,
    DealFacts,
    Engagement,
    Performance,
    as_published,
)
from services.tracking.domain.campaigns import (
    CampaignAttribution,
    CampaignFacts,
    CurrencyTotals,
    Unattributed,
    UnattributedChange,
    unattributed_totals,
)
from services.tracking.domain.credit import Click, Model, ModelSetting, newest_settings
from services.tracking.domain.deals import Cancellation, DealTerms
from services.tracking.domain.deliverables import Confirmation, DeliverableState
from services.tracking.domain.leaks import (
    CodeJudgement,
    LeakedOrders,
    LeakOrder,
    LeakThresholds,
    LeakTotals,
    judgement_inputs,
    orders_to_read,
)
from services.tracking.domain.orders import (
    ClickFacts,
    Order,
    OrderOutcome,
    OrderStatus,
    Refund,
    in_keeping_order,
)
from services.tracking.domain.posts import PostSnapshot, merge_snapshot
from services.tracking.store.port import (
    AffectedOrders,
    DealsAdded,
    LeakAlert,
    LeakFacts,
    OrderContext,
    one_per_deal,
)
from shared.contract.events import CloudEvent, EventIdentity
from shared.contract.money import FxSnapshot, Money
from shared.runtime.fx_moves import rejudged
from shared.runtime.inbox import Claimed, claim_in
from shared.runtime.unit_of_work import Batch

# The inbox's consumer, named as the service names it in PostgreSQL.
_CONSUMER: Final = "tracking"
K = TypeVar("K")
V = TypeVar("V")


@dataclass
class MemoryState:
    processed: dict[tuple[str, str, str], Claimed] = field(default_factory=dict)
    deals: dict[str, DealTerms] = field(default_factory=dict)
    # Flat keys, so that the shallow copy of `snapshot` rolls them back too.
    deal_versions: dict[tuple[str, int], DealTerms] = field(default_factory=dict)
    cancellations: dict[tuple[str, str], Cancellation] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    snapshots: dict[tuple[str, datetime, str], FxSnapshot] = field(default_factory=dict)
    posts: dict[str, PostSnapshot] = field(default_factory=dict)
    memberships: set[tuple[str, str]] = field(default_factory=set)
    orders: dict[str, Order] = field(default_factory=dict)
    outcomes: dict[str, OrderOutcome] = field(default_factory=dict)
    refunds: set[Refund] = field(default_factory=set)
    confirmations: dict[tuple[str, str], Confirmation] = field(default_factory=dict)
    early: dict[tuple[str, str, str], Confirmation] = field(default_factory=dict)
    attributions: dict[str, DealAttribution] = field(default_factory=dict)
    published_as_of: dict[str, datetime] = field(default_factory=dict)
    published_sequence: dict[str, int] = field(default_factory=dict)
    outbox: list[CloudEvent[Any]] = field(default_factory=list)
    clicks: dict[str, Click] = field(default_factory=dict)
    models: dict[tuple[str, str], ModelSetting] = field(default_factory=dict)
    leak_suspects: set[str] = field(default_factory=set)
    leak_alerts: dict[tuple[str, str, str], LeakAlert] = field(default_factory=dict)
    # Per (deal, promo code): its judgement, and the orders it had up to the last one judged.
    leak_judgements: dict[tuple[str, str], tuple[CodeJudgement, frozenset[str]]] = field(
        default_factory=dict
    )
    # Each brand's unattributed orders per currency: (orders, amount).
    unattributed: dict[tuple[str, str], tuple[int, Decimal]] = field(default_factory=dict)
    campaigns: dict[tuple[str, str], CampaignAttribution] = field(default_factory=dict)

    def snapshot(self) -> MemoryState:
        """A copy to roll back to; the values held are immutable, so copying containers is
        enough."""
        return MemoryState(**{f.name: copy.copy(getattr(self, f.name)) for f in fields(self)})


class MemoryTrackingStore:
    """Tracking state in memory; a transaction rolls back to a copy taken when it began."""

    def __init__(self) -> None:
        self.state = MemoryState()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTrackingTransaction]:
        saved = self.state.snapshot()
        try:
            yield MemoryTrackingTransaction(self.state)
        except BaseException:
            self.state = saved
            raise

    async def campaign_attributions(
        self, campaign_id: str, brand_id: str | None = None
    ) -> list[DealAttribution]:
        deals = self.state.deals
        return sorted(
            (
                a
                for a in self.state.attributions.values()
                if a.campaign_id == campaign_id
                and (brand_id is None or deals[a.deal_id].brand_id == brand_id)
            ),
            key=lambda a: a.deal_id,
        )

    async def campaign_brands(self, campaign_id: str) -> set[str]:
        return {d.brand_id for d in self.state.deals.values() if d.campaign_id == campaign_id}


class MemoryTrackingTransaction:
    """One transaction over the store's state; see the port for what each method promises."""

    def __init__(self, state: MemoryState) -> None:
        self.s = state

    async def claim(self, events: Batch) -> set[EventIdentity]:
        return claim_in(self.s.processed, _CONSUMER, events)

    async def add_deals(self, deals: Sequence[DealTerms]) -> DealsAdded:
        added, repeated, conflicting = [], set(), set()
        for deal in deals:
            known = self.s.deals.get(deal.deal_id)
            signed = self.s.deal_versions.get((deal.deal_id, 1), known)
            if known is None:
                self.s.deals[deal.deal_id] = replace(deal, sent_at=None)
                added.append(deal)
            elif signed is not None and signed.same_terms(deal):
                repeated.add(deal.deal_id)
                if deal.signed_at < known.signed_at:
                    self.s.deals[deal.deal_id] = replace(known, signed_at=deal.signed_at)
            else:
                conflicting.add(deal.deal_id)
        return DealsAdded(added, repeated, conflicting)

    async def deals(self, deal_ids: Collection[str]) -> dict[str, DealTerms]:
        return {d: self.s.deals[d] for d in deal_ids if d in self.s.deals}

    async def keep_deal_changes(
        self, versions: Sequence[DealTerms], cancellations: Sequence[Cancellation]
    ) -> None:
        for version in versions:
            self.s.deal_versions.setdefault((version.deal_id, version.version), version)
        for cancellation in cancellations:
            key = (cancellation.deal_id, cancellation.brand_id)
            known = self.s.cancellations.get(key)
            if known is None or cancellation.cancelled_at < known.cancelled_at:
                self.s.cancellations[key] = cancellation

    async def deal_changes(
        self, deal_ids: Collection[str]
    ) -> dict[str, tuple[list[DealTerms], list[Cancellation]]]:
        found: dict[str, tuple[list[DealTerms], list[Cancellation]]] = {}
        for (deal_id, _), version in sorted(self.s.deal_versions.items()):
            if deal_id in deal_ids:
                found.setdefault(deal_id, ([], []))[0].append(version)
        for (deal_id, _), cancellation in sorted(self.s.cancellations.items()):
            if deal_id in deal_ids:
                found.setdefault(deal_id, ([], []))[1].append(cancellation)
        return found

    async def save_terms(self, deals: Sequence[DealTerms]) -> None:
        for deal in deals:
            known = self.s.deals[deal.deal_id]
            self.s.deals[deal.deal_id] = replace(deal, signed_at=known.signed_at, sent_at=None)

    async def add_fx_snapshots(
        self, snapshots: Sequence[tuple[FxSnapshot, str]], max_move: Decimal
    ) -> list[FxSnapshot]:
        new = []
        for snapshot, _ in snapshots:
            key = (snapshot.base, snapshot.as_of, snapshot.source)
            if key not in self.s.snapshots:
                self.s.snapshots[key] = snapshot
                new.append(snapshot)
                # As shared.runtime.fx_store.save_judged: this one and every later one judged again.
                later = sorted(
                    (s for s in self.s.snapshots.values() if s.as_of >= snapshot.as_of),
                    key=lambda s: (s.as_of, s.source),
                )
                trusted = [
                    s
                    for s in self.s.snapshots.values()
                    if s.as_of < snapshot.as_of and s.suspect is None
                ]
                for verdict in rejudged(later, trusted, max_move):
                    self.s.snapshots[(verdict.base, verdict.as_of, verdict.source)] = verdict
        return new

    async def upsert_posts(self, posts: Sequence[PostSnapshot]) -> list[PostSnapshot]:
        return _store_changed(self.s.posts, posts, lambda p: p.post_id, merge_snapshot)

    async def deals_with_codes(self, promo_codes: Collection[str]) -> list[DealTerms]:
        wanted = set(promo_codes)
        return [d for d in self.s.deals.values() if wanted & set(d.promo_codes)]

    async def deals_of_creators(self, creator_ids: Collection[str]) -> list[DealTerms]:
        return [d for d in self.s.deals.values() if d.creator_id in creator_ids]

    async def posts_of_creators(self, creator_ids: Collection[str]) -> list[PostSnapshot]:
        return [p for p in self.s.posts.values() if p.creator_id in creator_ids]

    async def replace_memberships(
        self, post_ids: Collection[str], pairs: Collection[tuple[str, str]]
    ) -> set[str]:
        gone = {m for m in self.s.memberships if m[1] in post_ids}
        self.s.memberships -= gone
        self.s.memberships |= set(pairs)
        return {deal_id for deal_id, _ in gone | set(pairs)}

    async def add_memberships(self, pairs: Collection[tuple[str, str]]) -> set[str]:
        new = set(pairs) - self.s.memberships
        self.s.memberships |= new
        return {deal_id for deal_id, _ in new}

    async def exclude_other_batches(self) -> None:
        pass  # one transaction at a time here

    async def new_order_contexts(self, orders: Sequence[Order]) -> list[OrderContext]:
        return [self._context(order) for order in orders if order.order_id not in self.s.orders]

    async def add_orders(
        self, orders: Sequence[Order], outcomes: Sequence[OrderOutcome] | None = None
    ) -> set[str]:
        new = set()
        for n, order in enumerate(orders):
            if order.order_id not in self.s.orders:
                self.s.orders[order.order_id] = order
                if outcomes is not None:
                    self.s.outcomes[order.order_id] = outcomes[n]
                new.add(order.order_id)
        return new

    async def add_refunds(self, refunds: Collection[Refund]) -> set[str]:
        known = {r.key for r in self.s.refunds}
        new = set()
        for refund in in_keeping_order(refunds):
            if refund.key not in known:
                known.add(refund.key)
                new.add(refund)
        self.s.refunds |= new
        return {r.order_id for r in new}

    def _snapshot_at(self, when: datetime) -> FxSnapshot | None:
        eligible = [s for s in self.s.snapshots.values() if s.as_of <= when and s.suspect is None]
        if not eligible:
            return None
        # Latest as_of, then the smallest source name (shared.runtime.fx_store.snapshot_at).
        return max(sorted(eligible, key=lambda s: s.source), key=lambda s: s.as_of)

    async def orders_to_evaluate(self, affected: AffectedOrders) -> list[OrderContext]:
        visitors = {c.visitor_id for c in affected.clicks}
        click_ids = {c.click_id for c in affected.clicks}
        contexts = []
        for order in self.s.orders.values():
            current = self.s.outcomes.get(order.order_id)
            if (
                order.order_id in affected.order_ids
                or order.promo_code in affected.promo_codes
                or self._converted_since(order, current, affected.converted_since)
                or order.visitor_id in visitors
                or order.click_id in click_ids
                or self._campaign_of(current) in affected.campaign_ids
            ):
                contexts.append(self._context(order, current))
        return contexts

    @staticmethod
    def _converted_since(
        order: Order, current: OrderOutcome | None, since: datetime | None
    ) -> bool:
        """Whether `order` occurred at or after `since` and was converted or waits for a rate."""
        if since is None or current is None or order.occurred_at < since:
            return False
        return (
            current.status is OrderStatus.PENDING_FX
            or (current.fx is not None and current.fx.as_of is not None)
            or any(c.revenue.currency != order.amount.currency for c in current.credits)
        )

    def _campaign_of(self, current: OrderOutcome | None) -> str | None:
        if current is None or current.deal_id is None:
            return None
        return self.s.deals[current.deal_id].campaign_id

    def _context(self, order: Order, current: OrderOutcome | None = None) -> OrderContext:
        clicks = tuple(
            c
            for c in self.s.clicks.values()
            if (order.visitor_id is not None and c.visitor_id == order.visitor_id)
            or (order.click_id is not None and c.click_id == order.click_id)
        )
        return OrderContext(
            order=order,
            refunds=tuple(r for r in self.s.refunds if r.order_id == order.order_id),
            candidates=tuple(d for d in self.s.deals.values() if order.promo_code in d.promo_codes),
            snapshot=self._snapshot_at(order.occurred_at),
            current=current,
            clicks=ClickFacts(clicks, dict(self.s.deals), dict(self.s.models)),
        )

    async def stored_orders(self, order_ids: Collection[str]) -> dict[str, Order]:
        return {i: self.s.orders[i] for i in set(order_ids) if i in self.s.orders}

    async def stored_clicks(self, click_ids: Collection[str]) -> dict[str, Click]:
        return {i: self.s.clicks[i] for i in set(click_ids) if i in self.s.clicks}

    async def add_clicks(self, clicks: Sequence[Click]) -> list[Click]:
        new = [c for c in clicks if c.click_id not in self.s.clicks]
        for click in new:
            self.s.clicks[click.click_id] = click
        return new

    async def clicks_on_deals(self, deal_ids: Collection[str]) -> list[Click]:
        return [c for c in self.s.clicks.values() if c.deal_id in deal_ids]

    async def save_model_settings(self, settings: Sequence[ModelSetting]) -> list[ModelSetting]:
        changed = []
        for key, setting in newest_settings(settings).items():
            if setting.newer_than(self.s.models.get(key)):
                self.s.models[key] = setting
                changed.append(setting)
        return changed

    async def brands_of_campaigns(self, campaign_ids: Collection[str]) -> dict[str, set[str]]:
        brands: dict[str, set[str]] = {}
        for deal in self.s.deals.values():
            if deal.campaign_id in campaign_ids:
                brands.setdefault(deal.campaign_id, set()).add(deal.brand_id)
        return brands

    async def deals_of_campaigns(self, campaigns: Collection[tuple[str, str]]) -> set[str]:
        return {
            d.deal_id for d in self.s.deals.values() if (d.campaign_id, d.brand_id) in campaigns
        }

    async def save_order_outcomes(self, outcomes: Sequence[OrderOutcome]) -> None:
        for outcome in outcomes:
            self.s.outcomes[outcome.order_id] = outcome

    async def add_manual_confirmations(self, confirmations: Sequence[Confirmation]) -> set[str]:
        return {c.deal_id for c in self._insert(confirmations)}

    async def add_auto_confirmations(
        self, confirmations: Sequence[Confirmation]
    ) -> list[Confirmation]:
        return self._insert(confirmations)

    async def keep_early_confirmations(
        self, confirmations: Sequence[tuple[Confirmation, str]]
    ) -> None:
        for c, signer in confirmations:
            self.s.early.setdefault((c.deal_id, c.deliverable_id, signer), c)

    async def take_early_confirmations(self, deals: Sequence[DealTerms]) -> set[str]:
        brands = {d.deal_id: d.brand_id for d in deals}
        taken = sorted(
            ((key, c) for key, c in self.s.early.items() if key[0] in brands),
            key=lambda item: (item[1].confirmed_at, item[0][2]),
        )
        for key, _ in taken:
            del self.s.early[key]
        valid = [c for (deal_id, _, signer), c in taken if signer in ("", brands[deal_id])]
        return {c.deal_id for c in self._insert(valid)}

    def _insert(self, confirmations: Sequence[Confirmation]) -> list[Confirmation]:
        stored = []
        for c in confirmations:
            key = (c.deal_id, c.deliverable_id)
            if key not in self.s.confirmations:
                self.s.confirmations[key] = c
                stored.append(c)
        return stored

    def _known_deals(self, deal_ids: Collection[str]) -> list[tuple[str, DealTerms]]:
        """(id, terms) of the stored deals among `deal_ids`: every read by deal passes over
        the deals it does not know."""
        return [(i, self.s.deals[i]) for i in deal_ids if i in self.s.deals]

    def _posts_of(self, deal_id: str) -> list[PostSnapshot]:
        """The posts that count for a deal: those its memberships name."""
        return [self.s.posts[p] for d, p in self.s.memberships if d == deal_id]

    async def deal_facts(self, deal_ids: Collection[str]) -> list[DealFacts]:
        facts = []
        for deal_id, deal in self._known_deals(deal_ids):
            posts = self._posts_of(deal_id)
            engagement = sum((Engagement.of_post(p) for p in posts), Engagement())
            outcomes = [o for o in self.s.outcomes.values() if o.deal_id == deal_id]
            revenue = Money.zero(deal.currency)
            times = [deal.signed_at] + [p.observed_at for p in posts]
            orders = 0
            for o in self.s.outcomes.values():
                for credit in o.credits:
                    if credit.deal_id != deal_id:
                        continue
                    revenue = revenue + credit.revenue - credit.refunded
                    orders += not o.fully_refunded
                    times.append(self.s.orders[o.order_id].occurred_at)
                    if o.last_refund_at is not None:
                        times.append(o.last_refund_at)
            setting = self.s.models.get((deal.campaign_id, deal.brand_id))
            facts.append(
                DealFacts(
                    deal_id=deal.deal_id,
                    campaign_id=deal.campaign_id,
                    creator_id=deal.creator_id,
                    fee=deal.fee,
                    commission_rate=deal.commission_rate,
                    engagement=engagement,
                    orders=orders,
                    revenue=revenue,
                    pending_fx_orders=sum(o.status is OrderStatus.PENDING_FX for o in outcomes),
                    as_of=max(times),
                    model=Model.PROMO_CODE if setting is None else setting.model,
                    setting_id="" if setting is None else setting.event_id,
                )
            )
        return facts

    def _policy(self, deal: DealTerms) -> LeakedOrders:
        setting = self.s.models.get((deal.campaign_id, deal.brand_id))
        return LeakedOrders.CREDIT if setting is None else setting.leaked_orders

    async def leak_facts(
        self, deal_ids: Collection[str], thresholds: LeakThresholds = LeakThresholds()
    ) -> list[LeakFacts]:
        facts = []
        for deal_id, deal in self._known_deals(deal_ids):
            reach = sum(p.reach for p in self._posts_of(deal_id))
            inputs = judgement_inputs(deal.audience_countries, thresholds)
            codes: dict[str, list[LeakOrder]] = {}
            for o in self.s.outcomes.values():
                if o.deal_id == deal_id:
                    order = self.s.orders[o.order_id]
                    codes.setdefault(order.promo_code, []).append(
                        LeakOrder(
                            order.order_id,
                            order.occurred_at,
                            order.shipping_country,
                            order.referrer,
                            order.promo_code,
                        )
                    )
            orders: list[LeakOrder] = []
            judgements = {}
            for code, code_orders in codes.items():
                stored = self.s.leak_judgements.get((deal_id, code))
                if stored is not None:
                    judgement, judged = stored
                    through = judgement.through
                    if judged == {o.order_id for o in code_orders if o.key <= through} and (
                        judgement.resumable(inputs, reach, thresholds)
                    ):
                        judgements[code] = judgement
                        code_orders = orders_to_read(code_orders, judgement, thresholds)
                orders += code_orders
            ids = frozenset(o.order_id for o in orders)
            facts.append(
                LeakFacts(
                    deal=deal,
                    reach=reach,
                    policy=self._policy(deal),
                    orders=tuple(orders),
                    suspected=ids & frozenset(self.s.leak_suspects),
                    judgements=judgements,
                )
            )
        return facts

    async def save_leak_judgements(
        self, judgements: Collection[tuple[str, str, CodeJudgement]]
    ) -> None:
        for deal_id, code, judgement in judgements:
            judged = frozenset(
                o.order_id
                for o in self.s.outcomes.values()
                if o.deal_id == deal_id
                and (order := self.s.orders[o.order_id]).promo_code == code
                and (order.occurred_at, order.order_id) <= judgement.through
            )
            self.s.leak_judgements[(deal_id, code)] = (judgement, judged)

    async def mark_leak_suspects(
        self, suspected: Collection[str], cleared: Collection[str]
    ) -> set[str]:
        flagged = set(suspected) - self.s.leak_suspects
        unflagged = (set(cleared) - set(suspected)) & self.s.leak_suspects
        changed = flagged | unflagged
        self.s.leak_suspects = (self.s.leak_suspects - set(cleared)) | set(suspected)
        return {
            c.deal_id
            for order_id in changed
            if (o := self.s.outcomes.get(order_id)) is not None
            for c in o.credits
        }

    async def add_leak_alerts(self, alerts: Sequence[LeakAlert]) -> list[LeakAlert]:
        new = []
        for alert in alerts:
            key = (alert.deal_id, alert.promo_code, alert.evidence.rule.value)
            if key not in self.s.leak_alerts:
                self.s.leak_alerts[key] = alert
                new.append(alert)
        return new

    async def leak_totals(self, deal_ids: Collection[str]) -> dict[str, LeakTotals]:
        totals = {}
        for deal_id, deal in self._known_deals(deal_ids):
            withhold = self._policy(deal) is LeakedOrders.WITHHOLD
            flagged = counted = withheld = 0
            revenue = Decimal(0)
            for order_id in self.s.leak_suspects:
                outcome = self.s.outcomes.get(order_id)
                if outcome is None:
                    continue
                flagged += outcome.deal_id == deal_id
                for credit in outcome.credits:
                    if credit.deal_id == deal_id:
                        counted += not outcome.fully_refunded
                        if withhold:
                            withheld += not outcome.fully_refunded
                            revenue += (credit.revenue - credit.refunded).amount
            if flagged or counted:
                totals[deal_id] = LeakTotals(flagged > 0, counted, withheld, revenue)
        return totals

    async def save_attributions(
        self, attributions: Sequence[DealAttribution]
    ) -> list[DealAttribution]:
        return _store_changed(self.s.attributions, attributions, lambda a: a.deal_id, _latest)

    async def published(self, attributions: Sequence[DealAttribution]) -> list[DealAttribution]:
        one_per_deal(attributions)
        out = []
        for a in attributions:
            if a.deal_id not in self.s.attributions:
                out.append(a)  # never stored: not numbered (as the PostgreSQL store)
                continue
            last = self.s.published_as_of.get(a.deal_id)
            sequence = self.s.published_sequence.get(a.deal_id, 0) + 1
            stamped = as_published(a, last, sequence)
            assert stamped.performance.as_of is not None
            self.s.published_as_of[a.deal_id] = stamped.performance.as_of
            self.s.published_sequence[a.deal_id] = sequence
            out.append(stamped)
        return out

    async def add_unattributed(self, changes: Sequence[UnattributedChange]) -> set[str]:
        brands = set()
        for change in changes:
            key = (change.brand_id, change.amount.currency)
            orders, amount = self.s.unattributed.get(key, (0, Decimal(0)))
            orders, amount = orders + change.orders, amount + change.amount.amount
            if orders == 0 and amount == 0:
                self.s.unattributed.pop(key, None)
            else:
                self.s.unattributed[key] = (orders, amount)
            brands.add(change.brand_id)
        return brands

    async def campaigns_of_deals(self, deal_ids: Collection[str]) -> set[tuple[str, str]]:
        return {
            (d.campaign_id, d.brand_id) for i in deal_ids if (d := self.s.deals.get(i)) is not None
        }

    async def campaigns_of_brands(self, brand_ids: Collection[str]) -> set[tuple[str, str]]:
        return {
            (d.campaign_id, d.brand_id) for d in self.s.deals.values() if d.brand_id in brand_ids
        }

    async def campaigns_converted_since(self, since: datetime) -> set[tuple[str, str]]:
        return {key for key, c in self.s.campaigns.items() if c.converted and c.as_of >= since}

    async def campaign_facts(self, campaigns: Collection[tuple[str, str]]) -> list[CampaignFacts]:
        facts = []
        for campaign_id, brand_id in sorted(campaigns):
            deals = sorted(
                (
                    d
                    for d in self.s.deals.values()
                    if (d.campaign_id, d.brand_id) == (campaign_id, brand_id)
                    and d.deal_id in self.s.attributions
                ),
                key=lambda d: (d.signed_at, d.deal_id),
            )
            if not deals:
                continue
            by_currency: dict[str, CurrencyTotals] = {}
            for deal in deals:
                a = self.s.attributions[deal.deal_id]
                known = by_currency.get(
                    deal.currency,
                    CurrencyTotals(0, Money.zero(deal.currency), Performance.zero(deal.currency)),
                )
                by_currency[deal.currency] = CurrencyTotals(
                    known.deals + 1, known.fees + deal.fee, known.performance + a.performance
                )
            totals = tuple(by_currency[c] for c in sorted(by_currency))
            fact = CampaignFacts(
                campaign_id,
                brand_id,
                deals[0].currency,
                totals,
                unattributed=self._unattributed(brand_id),
            )
            if fact.converted and fact.as_of is not None:
                fact = replace(fact, snapshot=self._snapshot_at(fact.as_of))
            facts.append(fact)
        return facts

    def _unattributed(self, brand_id: str) -> Unattributed:
        mine = {c: v for (b, c), v in self.s.unattributed.items() if b == brand_id}
        return unattributed_totals(
            sum(orders for orders, _ in mine.values()), {c: a for c, (_, a) in mine.items()}
        )

    async def save_campaign_attributions(
        self, campaigns: Sequence[CampaignAttribution]
    ) -> list[CampaignAttribution]:
        return _store_changed(
            self.s.campaigns, campaigns, lambda c: (c.campaign_id, c.brand_id), _next_sequence
        )

    async def open_deliverables(self, deal_ids: Collection[str]) -> list[DeliverableState]:
        states = []
        for deal_id, deal in self._known_deals(deal_ids):
            if deal_id in self.s.closed:
                continue
            posts = tuple(self._posts_of(deal_id))
            confirmed = {
                c.deliverable_id: c.post_ids
                for c in self.s.confirmations.values()
                if c.deal_id == deal_id
            }
            states.append(DeliverableState(deal, posts, confirmed))
        return states

    async def close_deals(self, deal_ids: Collection[str]) -> None:
        self.s.closed |= set(deal_ids)

    async def enqueue(self, events: Sequence[CloudEvent[Any]]) -> None:
        self.s.outbox.extend(events)


def _store_changed(
    table: dict[K, V], items: Iterable[V], key: Callable[[V], K], merge: Callable[[V | None, V], V]
) -> list[V]:
    """Store in `table` what `merge` makes of each item and what it holds under the item's
    key, where that differs, and return what was stored: every write of the port reports
    only what it changed."""
    stored = []
    for item in items:
        current = table.get(key(item))
        merged = merge(current, item)
        if merged != current:
            table[key(item)] = merged
            stored.append(merged)
    return stored


def _latest(_: V | None, incoming: V) -> V:
    """The merge of a write that replaces what is held (an attribution is kept as given)."""
    return incoming


def _next_sequence(
    stored: CampaignAttribution | None, incoming: CampaignAttribution
) -> CampaignAttribution:
    """A campaign's new figures, numbered one past the stored ones (unchanged if the same)."""
    if stored == incoming:
        return incoming
    return replace(incoming, sequence=1 if stored is None else stored.sequence + 1)
