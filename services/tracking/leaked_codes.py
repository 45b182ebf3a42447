"""The leaked-code step of a tracking batch: judge the codes of the deals a batch touched,
flag their suspected orders, alert once per (code, rule), and attribute the deals with what
their campaigns' policies withhold (docs/architecture.md §10, "Leaked codes").

Everything is derived again from stored facts (the codes' orders, the deals' audience
countries and reach, the campaigns' policies), so the flags do not depend on how events
were ordered or batched. A code's judgement is carried on where it still stands
(domain.leaks.CodeJudgement): then only its orders from the rules' lookback before the last
one judged are read, whatever the code's history. The alerts are recorded in the same
transaction as the flags and published (translate.leak_event) with the attribution through
the batch's unit of work, so a crash or a replay never sends one twice.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.tracking.domain.attribution import DealAttribution, attribute, with_leaks
from services.tracking.domain.leaks import (
    NO_LEAKS,
    CodeVerdict,
    LeakThresholds,
    assess_code,
    by_code,
    judgement_inputs,
    judgement_of,
)
from services.tracking.store.port import LeakAlert, LeakFacts, TrackingTransaction
from services.tracking.translate import leak_event
from shared.contract.events import CloudEvent


@dataclass(frozen=True, slots=True)
class Judged:
    """One code of one deal and the rules' verdict on it."""

    facts: LeakFacts
    promo_code: str
    verdict: CodeVerdict


async def attribute_with_leaks(
    tx: TrackingTransaction, deal_ids: Collection[str], thresholds: LeakThresholds, *, now: datetime
) -> tuple[list[DealAttribution], list[CloudEvent[Any]]]:
    """The attribution of `deal_ids` (and of every deal an order whose suspicion changed
    credits), and the `promo-code.leak-suspected` alerts of rules that fired for the first
    time, stamped `now`."""
    judged = []
    judgements = []
    for facts in await tx.leak_facts(deal_ids, thresholds):
        inputs = judgement_inputs(facts.deal.audience_countries, thresholds)
        for code, orders in by_code(facts.orders).items():
            prior = facts.judgements.get(code)
            verdict = assess_code(
                orders, facts.deal.audience_countries, facts.reach, thresholds, prior
            )
            judged.append(Judged(facts, code, verdict))
            judgement = judgement_of(verdict, orders, inputs, facts.reach, prior)
            if judgement is not None:
                judgements.append((facts.deal.deal_id, code, judgement))
    await tx.save_leak_judgements(judgements)
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
    alerts = []
    for alert in sorted(alerted, key=lambda a: (a.deal_id, a.promo_code, a.evidence.rule)):
        j = verdicts[(alert.deal_id, alert.promo_code)]
        alerts.append(
            leak_event(
                j.facts.deal,
                alert.promo_code,
                alert.evidence.rule,
                j.verdict,
                j.facts.policy,
                thresholds,
                now=now,
            )
        )
    return attributions, alerts
