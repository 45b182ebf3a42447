"""The leaked-code step of a tracking batch: judge the codes of the deals a batch touched,
flag their suspected orders, alert once per (code, rule), and attribute the deals with what
their campaigns' policies withhold (docs/architecture.md §10, "Leaked codes").

Everything is derived again from stored facts (the codes' orders, the deals' audience
countries and reach, the campaigns' policies), so the flags do not depend on how events
were ordered or batched. The alerts are recorded in the same transaction as the flags and
enqueued in the outbox with the attribution, so a crash or a replay never sends one twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from services.tracking.domain.attribution import DealAttribution, attribute, with_leaks
from services.tracking.domain.leaks import (
    NO_LEAKS,
    CodeVerdict,
    Evidence,
    LeakThresholds,
    assess_code,
    by_code,
)
from services.tracking.store.port import LeakAlert, LeakFacts, TrackingTx
from services.tracking.translate import SOURCE
from shared.contract.events import (
    CloudEvent,
    LeakEvidence,
    PromoCodeLeakSuspected,
    make_event,
)

_ALERT_IDS: Final = uuid.UUID("1f6b3c52-8d0e-4a7b-b1f4-3e9a6c2d5b80")


@dataclass(frozen=True, slots=True)
class Judged:
    """One code of one deal and the rules' verdict on it."""

    facts: LeakFacts
    promo_code: str
    verdict: CodeVerdict


async def attribute_with_leaks(
    tx: TrackingTx, deal_ids: Collection[str], thresholds: LeakThresholds, *, now: datetime
) -> tuple[list[DealAttribution], list[CloudEvent[Any]]]:
    """The attribution of `deal_ids` (and of every deal an order whose suspicion changed
    credits), and the `promo-code.leak-suspected` alerts of rules that fired for the first
    time, stamped `now`."""
    judged = [
        Judged(
            facts, code, assess_code(orders, facts.deal.audience_countries, facts.reach, thresholds)
        )
        for facts in await tx.leak_facts(deal_ids)
        for code, orders in by_code(facts.orders).items()
    ]
    suspected: set[str] = set()
    cleared: set[str] = set()
    for j in judged:
        suspected |= j.verdict.suspected - j.facts.suspected
        codes_orders = {o.order_id for o in j.facts.orders if o.promo_code == j.promo_code}
        cleared |= (j.facts.suspected & codes_orders) - j.verdict.suspected
    touched = set(deal_ids) | await tx.mark_leak_suspects(suspected, cleared)
    alerted = await tx.add_leak_alerts(
        [
            LeakAlert(j.facts.deal.deal_id, j.promo_code, e)
            for j in judged
            for e in j.verdict.evidence
        ]
    )
    totals = await tx.leak_totals(touched)
    attributions = [
        attribute(with_leaks(facts, totals.get(facts.deal_id, NO_LEAKS)))
        for facts in await tx.deal_facts(touched)
    ]
    verdicts = {(j.facts.deal.deal_id, j.promo_code): j for j in judged}
    alerts = [
        alert_event(verdicts[(a.deal_id, a.promo_code)], a, thresholds, now=now)
        for a in sorted(alerted, key=lambda a: (a.deal_id, a.promo_code, a.evidence.rule))
    ]
    return attributions, alerts


def alert_event(
    judged: Judged, alert: LeakAlert, thresholds: LeakThresholds, *, now: datetime
) -> CloudEvent[Any]:
    """`promo-code.leak-suspected` for the rule of `alert`, with the evidence of every rule
    firing on the code now. Its id derives from (deal, code, rule): it can only ever be
    announced under one id."""
    deal, verdict = judged.facts.deal, judged.verdict
    since = verdict.suspected_since
    assert since is not None, "an alert for a code no rule fired on"
    event_id = uuid.uuid5(
        _ALERT_IDS, f"{deal.deal_id}/{alert.promo_code}/{alert.evidence.rule.value}"
    )
    return make_event(
        PromoCodeLeakSuspected(
            deal_id=deal.deal_id,
            campaign_id=deal.campaign_id,
            brand_id=deal.brand_id,
            creator_id=deal.creator_id,
            promo_code=alert.promo_code,
            rule=alert.evidence.rule.value,
            rules=tuple(r.value for r in verdict.rules),
            evidence=tuple(_evidence(e) for e in verdict.evidence),
            suspected_since=since,
            leaked_orders=judged.facts.policy.value,
            window_days=thresholds.window.days,
        ),
        source=SOURCE,
        id=str(event_id),
        time=now,
    )


def _evidence(e: Evidence) -> LeakEvidence:
    return LeakEvidence(
        rule=e.rule.value,
        order_id=e.order_id,
        window_start=e.window_start,
        window_end=e.window_end,
        orders=e.orders,
        considered=e.considered,
        share=e.share,
        threshold=e.threshold,
        reach=e.reach,
    )
