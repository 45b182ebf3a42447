"""The tracking handler: what one consumed batch changes, inside the batch's unit of work
(shared.runtime.unit_of_work; docs/architecture.md §8).

The unit of work claims the batch in the inbox and hands over the events not applied before;
the handler translates them (translate.py), applies the domain rules (domain/), writes through
the store's transaction and publishes what changed through the outbox.

Everything a batch changes is derived again from stored state (post memberships, order
outcomes and credits, deal totals, deliverable confirmations) for exactly the entities it
touched, so the result does not depend on how events were ordered or split into batches.
At most one `attribution.updated` per deal leaves per batch, and only when the deal's
figures or its campaign's attribution model changed; likewise at most one
`campaign.attribution.updated` per campaign, summed from its deals' stored figures. So
tracking takes a batch's events together in one handler, set-based, rather than one handler
per event type (`by_type`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final, TypeVar

import structlog

from services.tracking.domain.attribution import DealAttribution
from services.tracking.domain.campaigns import (
    CampaignAttribution,
    UnattributedChange,
    campaign_attribution,
    unattributed_changes,
)
from services.tracking.domain.credit import Click, ModelSetting
from services.tracking.domain.deals import DealTerms, code_clash, in_force
from services.tracking.domain.deliverables import Confirmation, confirmations_due
from services.tracking.domain.leaks import LeakThresholds
from services.tracking.domain.orders import Order, OrderOutcome, evaluate_order
from services.tracking.domain.posts import PostSnapshot, latest_snapshots, memberships
from services.tracking.leaked_codes import attribute_with_leaks
from services.tracking.store.port import AffectedOrders, TrackingTransaction
from services.tracking.translate import (
    BatchInputs,
    attribution_event,
    campaign_attribution_event,
    confirmation_event,
    conflicting_click,
    conflicting_order,
    conflicting_terms,
    read_inputs,
)
from shared.contract.deal_versions import changed_identity
from shared.contract.errors import EventRejected
from shared.contract.events import EventIdentity, EventType
from shared.contract.signing import RejectReason
from shared.runtime.observability import STALE_AMENDMENTS
from shared.runtime.trust import Untrusted
from shared.runtime.unit_of_work import Batch, Handler, NewEvents, UnitOfWork

log = structlog.get_logger(__name__)
T = TypeVar("T", Order, Click)

DEFAULT_FX_MAX_MOVE: Final = Decimal("0.25")
DEFAULT_LEAK_RULES: Final = LeakThresholds()


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch changed: events applied, attribution updates and confirmations queued,
    and campaign attribution updates."""

    applied: int
    attribution_updates: int
    confirmations: int
    campaign_updates: int = 0


@dataclass(frozen=True, slots=True)
class TermsChanged:
    """The deals whose terms in force a batch changed (amended, cancelled, or a new deal
    with changes kept before it), their promo codes before and after, and their creators."""

    deals: dict[str, DealTerms] = field(default_factory=dict)
    promo_codes: set[str] = field(default_factory=set)
    creators: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ReadAhead:
    """What a batch amounts to if none of its events was applied before: worked out without
    the database, so it can be done while the previous batch is applied."""

    ids: tuple[EventIdentity, ...]
    unique: int
    inputs: BatchInputs
    posts: list[PostSnapshot]


def read_ahead(batch: Batch) -> ReadAhead | None:
    """The batch's inputs, assuming every event in it is new; None if they cannot be read
    (`handle_batch` then reads them again and rejects the batch)."""
    ids = tuple(event.identity for event, _ in batch)
    everything = NewEvents.of(batch, set(ids))
    try:
        inputs = read_inputs(
            everything.events,
            everything.brand_signers(),
            everything.shop_brands(),
            everything.not_before(),
        )
    except EventRejected:
        return None
    return ReadAhead(ids, len(everything), inputs, latest_snapshots(inputs.posts))


def make_handler(
    fx_max_move: Decimal = DEFAULT_FX_MAX_MOVE, leak_rules: LeakThresholds = DEFAULT_LEAK_RULES
) -> Handler[TrackingTransaction]:
    """The handler the service's unit of work calls: `handle_batch`, FX snapshots judged
    against `fx_max_move` (FX_MAX_RATE_MOVE), promo codes against `leak_rules`
    (TRACKING_LEAK_*)."""

    async def handle(new: NewEvents, uow: UnitOfWork[TrackingTransaction]) -> None:
        await handle_batch(new, uow, fx_max_move=fx_max_move, leak_rules=leak_rules)

    return handle


async def apply_batch(
    tx: TrackingTransaction,
    batch: Batch,
    *,
    now: datetime,
    ahead: ReadAhead | None = None,
    fx_max_move: Decimal = DEFAULT_FX_MAX_MOVE,
    leak_rules: LeakThresholds = DEFAULT_LEAK_RULES,
) -> BatchResult:
    """Apply `batch` inside `tx`, a transaction the caller holds, as the service's unit of
    work does (inbox claim, `handle_batch`, outbox) but without its metrics: for the tests
    and benchmarks that open the transaction themselves. `ahead` is `read_ahead(batch)`, if
    it was worked out before; `now` stamps what the batch publishes."""
    new = NewEvents.of(batch, await tx.claim(batch), ahead)
    if not new:
        return BatchResult(0, 0, 0)
    uow = UnitOfWork(tx, now)
    result = await handle_batch(new, uow, fx_max_move=fx_max_move, leak_rules=leak_rules)
    await tx.enqueue(uow.published)
    return result


async def handle_batch(
    new: NewEvents,
    uow: UnitOfWork[TrackingTransaction],
    *,
    fx_max_move: Decimal = DEFAULT_FX_MAX_MOVE,
    leak_rules: LeakThresholds = DEFAULT_LEAK_RULES,
) -> BatchResult:
    """Apply the batch's new events; `uow.now` stamps what it publishes. `new.ahead` is
    `read_ahead` of the whole batch, if it was worked out. FX snapshots are judged against
    the last trusted one (`fx_max_move`, shared.runtime.fx_moves); suspect ones are stored
    but never convert an order. `leak_rules` say when a promo code is suspected leaked
    (leaked_codes.attribute_with_leaks).

    Raises EventRejected (the whole transaction must roll back) if a deal arrives with
    terms different from those stored under its id, or with a promo code another brand's
    deal holds at the same time (domain.deals.code_clash); Untrusted if a confirmation is
    signed by another brand than its deal's, or an attribution model set for a campaign
    whose deals are another brand's.
    """
    tx = uow.tx
    # Replicas of the service apply batches at the same time; from here on, one at a time.
    await tx.exclude_other_batches()
    inputs, posts = _inputs_of(new)
    new_deals, touched = await _store_deals(tx, inputs)
    changed = await _store_deal_changes(tx, inputs, new_deals)
    new_deals = [changed.deals.get(d.deal_id, d) for d in new_deals]
    await tx.add_fx_snapshots(inputs.fx, fx_max_move)
    post_pairs, deal_pairs, moved = await _store_posts(tx, posts, new_deals)
    moved |= await _match_posts_again(tx, changed.creators)
    models = await _store_models(tx, inputs)
    order_deals, unattributed = await _store_orders(tx, inputs, new_deals, models, changed)
    touched |= moved | order_deals | set(changed.deals)
    # A new model publishes every deal of its campaign once, changed figures or not.
    touched |= await tx.deals_of_campaigns({(m.campaign_id, m.brand_id) for m in models})
    attributions, leak_alerts = await attribute_with_leaks(tx, touched, leak_rules, now=uow.now)
    updated = await tx.save_attributions(attributions)
    # So do new terms: their deal is announced once, its figures changed or not.
    announced = {a.deal_id for a in updated}
    updated += [a for a in attributions if a.deal_id in set(changed.deals) - announced]
    campaigns = await _attribute_campaigns(
        tx, inputs, attributions, await tx.add_unattributed(unattributed)
    )

    manual = await _store_manual_confirmations(tx, inputs, new_deals)
    to_match = {deal_id for deal_id, _ in post_pairs | deal_pairs}
    to_match |= {d.deal_id for d in new_deals} | manual | set(changed.deals)
    confirmed = _with_post_arrivals(await _confirm_due(tx, to_match, uow.now), new)

    updated = await tx.published(sorted(updated, key=lambda a: a.deal_id))
    uow.publish(
        leak_alerts
        + [attribution_event(a, now=uow.now) for a in updated]
        + [campaign_attribution_event(c, now=uow.now) for c in campaigns]
        + [confirmation_event(c) for c in confirmed]
    )
    return BatchResult(len(new), len(updated), len(confirmed), len(campaigns))


async def _attribute_campaigns(
    tx: TrackingTransaction,
    inputs: BatchInputs,
    attributions: list[DealAttribution],
    brands: set[str],
) -> list[CampaignAttribution]:
    """The campaigns whose figures changed, with their new sequence, by (campaign, brand).

    Touched: the campaigns of the deals attributed again (changed or not: an earlier
    announcement of a deal may change the campaign's first deal), every campaign of the
    brands whose unattributed orders changed, and, with FX snapshots in the batch, the
    campaigns converting a currency whose figures they may change. Each is summed again from
    its deals' stored figures (domain.campaigns), never from its orders.
    """
    campaigns = await tx.campaigns_of_deals({a.deal_id for a in attributions})
    campaigns |= await tx.campaigns_of_brands(brands)
    since = min((s.as_of for s, _ in inputs.fx), default=None)
    if since is not None:
        campaigns |= await tx.campaigns_converted_since(since)
    if not campaigns:
        return []
    figures = [campaign_attribution(facts) for facts in await tx.campaign_facts(campaigns)]
    saved = await tx.save_campaign_attributions(figures)
    return sorted(saved, key=lambda c: (c.campaign_id, c.brand_id))


def _inputs_of(new: NewEvents) -> tuple[BatchInputs, list[PostSnapshot]]:
    """What the new events say, and the latest snapshot of each post."""
    ahead = new.ahead
    if isinstance(ahead, ReadAhead) and len(new) == ahead.unique:
        # Every event is new: the batch is what was read ahead.
        assert ahead.ids == tuple(event.identity for event, _ in new.batch), (
            "read ahead of another batch"
        )
        return ahead.inputs, ahead.posts
    inputs = read_inputs(new.events, new.brand_signers(), new.shop_brands(), new.not_before())
    return inputs, latest_snapshots(inputs.posts)


def _with_post_arrivals(confirmed: list[Confirmation], new: NewEvents) -> list[Confirmation]:
    """Stamp each confirmation made on the arrival of a new post snapshot of this batch with
    when that post reached the broker (the first of its snapshots here), for the post ->
    payout latency. A deliverable of several posts was completed by the one that arrived last.
    A snapshot delivered again (applied before) stamps nothing."""
    fresh = new.identities
    arrived: dict[str, datetime] = {}
    for event, delivery in new.batch:
        if (
            event.type == EventType.POST_METRICS_OBSERVED
            and delivery.timestamp_ms is not None
            and event.identity in fresh
        ):
            at = datetime.fromtimestamp(delivery.timestamp_ms / 1000, UTC)
            post_id = event.data.post_id
            arrived[post_id] = min(at, arrived.get(post_id, at))
    stamped = []
    for confirmation in confirmed:
        times = [arrived[p] for p in confirmation.post_ids if p in arrived]
        stamped.append(
            replace(confirmation, post_received_at=max(times)) if times else confirmation
        )
    return stamped


async def _store_deals(
    tx: TrackingTransaction, inputs: BatchInputs
) -> tuple[list[DealTerms], set[str]]:
    """Store the batch's deals; returns the new ones and the deals to attribute again."""
    deals = await tx.add_deals(list(inputs.deals.values()))
    if deals.conflicting:
        raise EventRejected(conflicting_terms(sorted(deals.conflicting)[0]))
    new_deals = deals.added
    if new_deals:
        holders = await tx.deals_with_codes({c for d in new_deals for c in d.promo_codes})
        for deal in new_deals:
            if (clash := code_clash(deal, holders)) is not None:
                raise EventRejected(clash)
    return new_deals, {d.deal_id for d in new_deals} | deals.repeated


async def _store_deal_changes(
    tx: TrackingTransaction, inputs: BatchInputs, new_deals: list[DealTerms]
) -> TermsChanged:
    """Keep the batch's amendments and cancellations (also those whose deal is not stored
    yet) and put in force the terms that follow from every version and cancellation kept
    (domain.deals.in_force) for the deals they concern and the batch's new deals.

    An amendment changing the campaign, creator, brand or currency of its stored deal, or a
    cancellation by another brand, is refused; one at or below the version in force, or
    sent after the cancellation, is stale: ignored, logged and counted.
    """
    ids = {a.deal_id for a in inputs.amendments} | {c.deal_id for c in inputs.cancellations}
    stored = await tx.deals(ids | {d.deal_id for d in new_deals})
    _check_deal_changes(inputs, stored)
    signed = [d for d in stored.values() if d.version == 1]  # deals kept before versions were
    await tx.keep_deal_changes([*new_deals, *signed, *inputs.amendments], inputs.cancellations)
    wanted: dict[str, DealTerms] = {}
    for deal_id, (versions, cancellations) in (await tx.deal_changes(set(stored))).items():
        current = stored[deal_id]
        first = next((v for v in versions if v.version == 1), current)
        terms = in_force(replace(first, signed_at=current.signed_at), versions, cancellations)
        if terms != current:
            wanted[deal_id] = terms
    for amended in inputs.amendments:
        before = stored.get(amended.deal_id)
        if before is None:
            log.info("amendment kept until its deal arrives", deal_id=amended.deal_id)
            continue
        after = wanted.get(amended.deal_id, before)
        # At or below the version in force before the batch (another amendment under a version
        # already used included), or not the one that came into force: ignored.
        if amended.version <= before.version or after.version != amended.version:
            STALE_AMENDMENTS.labels(service="tracking").inc()
            log.info("stale amendment ignored", deal_id=amended.deal_id, version=amended.version)
    for cancellation in inputs.cancellations:
        if cancellation.deal_id not in stored:
            log.info("cancellation kept until its deal arrives", deal_id=cancellation.deal_id)
    if wanted:
        holders = await tx.deals_with_codes({c for d in wanted.values() for c in d.promo_codes})
        for terms in wanted.values():
            if (clash := code_clash(terms, holders)) is not None:
                raise EventRejected(clash)
        await tx.save_terms(list(wanted.values()))
    codes = {c for d in wanted for c in (*stored[d].promo_codes, *wanted[d].promo_codes)}
    return TermsChanged(wanted, codes, {d.creator_id for d in wanted.values()})


def _check_deal_changes(inputs: BatchInputs, stored: dict[str, DealTerms]) -> None:
    """Refuse an amendment that changes its stored deal's parties or currency, and a
    cancellation by another brand than the deal's."""
    for amended in inputs.amendments:
        deal = stored.get(amended.deal_id)
        if deal is not None and (why := changed_identity(deal, amended)) is not None:
            if amended.brand_id != deal.brand_id:
                raise Untrusted(RejectReason.NOT_THE_DEAL_OWNER, why)
            raise EventRejected(why)
    for cancellation in inputs.cancellations:
        deal = stored.get(cancellation.deal_id)
        if deal is not None and cancellation.brand_id != deal.brand_id:
            raise Untrusted(
                RejectReason.NOT_THE_DEAL_OWNER,
                f"data.brand_id: deal {deal.deal_id} is brand {deal.brand_id}'s, not "
                f"{cancellation.brand_id}'s",
            )


async def _match_posts_again(tx: TrackingTransaction, creator_ids: set[str]) -> set[str]:
    """Which deals the posts of these creators count for, again (their deals' terms
    changed); returns the deals whose posts changed."""
    if not creator_ids:
        return set()
    posts = await tx.posts_of_creators(creator_ids)
    pairs = memberships(posts, await tx.deals_of_creators(creator_ids))
    return await tx.replace_memberships({p.post_id for p in posts}, pairs)


async def _store_manual_confirmations(
    tx: TrackingTransaction, inputs: BatchInputs, new_deals: list[DealTerms]
) -> set[str]:
    """Store the batch's manual confirmations; returns the deals that got one.

    A confirmation names no brand: one signed by another brand than its deal's is refused
    (`not_the_deal_owner`), one of a deliverable its deal does not have rejected, as payouts
    does. One whose deal is not known yet waits apart with its signer until the deal
    arrives, and then counts only if it was unsigned or signed by the deal's brand, so
    another brand's confirmation can neither confirm a deliverable nor block the deal's own
    (or tracking's automatic) confirmation of it.
    """
    confirmed = await tx.take_early_confirmations(new_deals)
    if not inputs.confirmations:
        return confirmed
    deals = await tx.deals({deal_id for deal_id, _, _ in inputs.confirmations})
    known, early = [], []
    for (deal_id, deliverable_id, signer), confirmation in inputs.confirmations.items():
        deal = deals.get(deal_id)
        if deal is None:
            early.append((confirmation, signer))
            continue
        if signer and signer != deal.brand_id:
            raise Untrusted(
                RejectReason.NOT_THE_DEAL_OWNER,
                f"deal {deal_id} is brand {deal.brand_id}'s; this confirmation is signed by "
                f"brand {signer}",
            )
        owed = sorted(d.deliverable_id for d in deal.deliverables)
        if deliverable_id not in owed:
            raise EventRejected(
                f"data.deliverable_id: {deliverable_id!r} is not a deliverable of deal "
                f"{deal_id} (it has {', '.join(owed)})"
            )
        known.append(confirmation)
    await tx.keep_early_confirmations(early)
    return confirmed | await tx.add_manual_confirmations(known)


async def _store_posts(
    tx: TrackingTransaction, posts: list[PostSnapshot], new_deals: list[DealTerms]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]], set[str]]:
    """Which deals each changed post counts for, and which posts each new deal gets; returns
    both sets of (deal, post) pairs and the deals whose posts changed."""
    changed_posts = await tx.upsert_posts(posts)
    post_pairs = memberships(
        changed_posts, await tx.deals_of_creators({p.creator_id for p in changed_posts})
    )
    touched = await tx.replace_memberships({p.post_id for p in changed_posts}, post_pairs)
    deal_pairs = memberships(
        await tx.posts_of_creators({d.creator_id for d in new_deals}), new_deals
    )
    touched |= await tx.add_memberships(deal_pairs)
    return post_pairs, deal_pairs, touched


async def _store_models(tx: TrackingTransaction, inputs: BatchInputs) -> list[ModelSetting]:
    """Store the batch's attribution model settings; returns those now in force.

    A setting names its brand (checked against its signer by shared.runtime.trust); one for
    a campaign whose stored deals are all other brands' is refused (`not_the_deal_owner`).
    Brands may share a campaign id: each sets the model of its own deals there.
    One that arrives before any deal is kept: it only ever applies to its own brand's deals
    of the campaign (domain.credit.setting_for).
    """
    if not inputs.models:
        return []
    brands = await tx.brands_of_campaigns({m.campaign_id for m in inputs.models})
    for setting in inputs.models:
        owners = brands.get(setting.campaign_id, set())
        others = sorted(owners - {setting.brand_id})
        if others and setting.brand_id not in owners:
            raise Untrusted(
                RejectReason.NOT_THE_DEAL_OWNER,
                f"campaign {setting.campaign_id}'s deals are brand {others[0]}'s; this "
                f"attribution model is set by brand {setting.brand_id}",
            )
    return await tx.save_model_settings(inputs.models)


async def _same_as_stored(
    batch: Mapping[str, T],
    new: set[str],
    stored: Callable[[list[str]], Awaitable[dict[str, T]]],
    conflict: Callable[[str], str],
) -> None:
    """Raise EventRejected if an order or click of the batch that is not `new` was stored
    before with other details (`stored` reads them): the same again is a duplicate, ignored.
    One with no brand is the same as one naming a brand: a shop's retry sent after its key
    was bound to its brand is read with that brand (translate.read_inputs), and one sent
    after the binding was widened to several brands is read with none."""
    seen = sorted(batch.keys() - new)
    before = await stored(seen) if seen else {}
    for key in seen:
        if key in before and not _same_but_brand(before[key], batch[key]):
            raise EventRejected(conflict(key))


def _same_but_brand(stored: T, incoming: T) -> bool:
    if stored.brand_id is None or incoming.brand_id is None:
        return replace(stored, brand_id=None) == replace(incoming, brand_id=None)
    return stored == incoming


def _credited(outcome: OrderOutcome | None) -> set[str]:
    """The deals an outcome counts for: its promo code's deal and every credited one."""
    if outcome is None:
        return set()
    deals = {c.deal_id for c in outcome.credits}
    return deals | ({outcome.deal_id} if outcome.deal_id is not None else set())


async def _store_orders(
    tx: TrackingTransaction,
    inputs: BatchInputs,
    new_deals: list[DealTerms],
    models: list[ModelSetting],
    changed: TermsChanged,
) -> tuple[set[str], list[UnattributedChange]]:
    """Store new clicks, orders and refunds, and evaluate again the stored orders they may
    change; returns the deals whose orders changed and how the brands' unattributed orders
    changed (domain.campaigns.unattributed_changes)."""
    # New orders are stored with their outcome, worked out from what is stored now (the
    # batch's deals, clicks, models, snapshots and refunds included).
    refunded = await tx.add_refunds(inputs.refunds)
    clicks = await tx.add_clicks(list(inputs.clicks.values()))
    new_clicks = {c.click_id for c in clicks}
    await _same_as_stored(inputs.clicks, new_clicks, tx.stored_clicks, conflicting_click)
    contexts = await tx.new_order_contexts(list(inputs.orders.values()))
    new_ids = {c.order.order_id for c in contexts}
    await _same_as_stored(inputs.orders, new_ids, tx.stored_orders, conflicting_order)
    evaluated = [
        evaluate_order(c.order, c.refunds, c.candidates, c.snapshot, c.clicks) for c in contexts
    ]
    new_orders = await tx.add_orders([inputs.orders[o.order_id] for o in evaluated], evaluated)
    touched = set().union(*(_credited(o) for o in evaluated if o.order_id in new_orders))
    unattributed = [
        change
        for o in evaluated
        if o.order_id in new_orders
        for change in unattributed_changes(inputs.orders[o.order_id], None, o)
    ]
    # Stored orders whose outcome may have changed: refunded ones, those whose code a new
    # deal carries, converted or waiting ones a snapshot of this batch may now cover, those
    # of the visitors of new clicks or of clicks on new deals, and those of campaigns with a
    # new model. Every snapshot of the batch counts, also one stored before (sent again
    # under another event id): counting only those stored now left orders waiting for ever.
    # Deals whose terms changed: the orders of their codes, old and new, and of their clicks.
    affected = AffectedOrders(
        refunded - new_orders,
        {code for deal in new_deals for code in deal.promo_codes} | changed.promo_codes,
        min((s.as_of for s, _ in inputs.fx), default=None),
        clicks + await tx.clicks_on_deals({d.deal_id for d in new_deals} | set(changed.deals)),
        {m.campaign_id for m in models},
    )
    contexts = await tx.orders_to_evaluate(affected)
    changed_outcomes = []
    for context in contexts:
        outcome = evaluate_order(
            context.order, context.refunds, context.candidates, context.snapshot, context.clicks
        )
        if outcome != context.current:
            changed_outcomes.append(outcome)
            touched |= _credited(context.current) | _credited(outcome)
            unattributed += unattributed_changes(context.order, context.current, outcome)
    await tx.save_order_outcomes(changed_outcomes)
    # An order on a code no deal carries any more (an amendment took it off) is not suspected.
    uncovered = [o.order_id for o in changed_outcomes if o.deal_id is None]
    touched |= await tx.mark_leak_suspects((), uncovered) if uncovered else set()
    return touched, unattributed


async def _confirm_due(
    tx: TrackingTransaction, deal_ids: set[str], now: datetime
) -> list[Confirmation]:
    """Confirm the deliverables of `deal_ids` that are due; close deals with all confirmed."""
    due = []
    closed = []
    for state in await tx.open_deliverables(deal_ids):
        deal_due = confirmations_due(state, now)
        due += deal_due
        if state.all_confirmed_with(deal_due):
            closed.append(state.deal.deal_id)
    confirmed = await tx.add_auto_confirmations(due)
    await tx.close_deals(closed)
    return confirmed
