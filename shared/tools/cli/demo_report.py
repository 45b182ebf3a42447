"""What `creatorflow demo` prints, and the JSON summary it can write, from a `DemoReport`.

Every figure shown comes from the services' events; the "check" columns compare them with the
scenario's own ground truth (shared.tools.demo.scenario), computed without the services.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from services.payouts.providers.sandbox import RETURNED_REASON
from shared.contract.events import (
    AttributionUpdated,
    CampaignAttributionUpdated,
    PayoutStatusChanged,
)
from shared.contract.money import Money
from shared.tools.demo.flow import DemoReport, awaits_funds
from shared.tools.demo.scenario import SHOWCASE, STRAY_ORDERS, DealTruth, Hire

OK = "[green]✓[/]"
WRONG = "[bold red]✗[/]"


@dataclass(frozen=True)
class Checks:
    attribution_ok: list[str]
    attribution_wrong: list[str]
    payouts_ok: list[str]
    payouts_wrong: list[str]
    leak_wrong: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.attribution_wrong and not self.payouts_wrong and not self.leak_wrong


def attribution_matches(seen: AttributionUpdated | None, truth: DealTruth) -> bool:
    if seen is None:
        return False
    return (
        seen.posts == truth.posts
        and seen.likes == truth.likes
        and seen.comments == truth.comments
        and seen.shares == truth.shares
        and seen.reach == truth.reach
        and seen.impressions == truth.impressions
        and seen.orders == truth.orders
        and seen.revenue == truth.revenue
    )


def fee_payout(report: DemoReport, hire: Hire) -> list[PayoutStatusChanged]:
    """Status history of the fee payout of `hire`'s deal, in the order seen."""
    for history in report.observed.fee_payouts().values():
        if history[0][0].deal_id == hire.deal.deal_id:
            return [p for p, _ in history]
    return []


def checks(report: DemoReport, platform_fee_bps: int) -> Checks:
    a_ok: list[str] = []
    a_wrong: list[str] = []
    p_ok: list[str] = []
    p_wrong: list[str] = []
    for hire in report.hires:
        deal_id = hire.deal.deal_id
        seen = report.observed.attribution.get(deal_id)
        (a_ok if attribution_matches(seen, report.activity.truth[deal_id]) else a_wrong).append(
            deal_id
        )
        expected = report.scenario.expected_net(hire, platform_fee_bps)
        good = paid_as_expected(report, hire, expected) and _waited_as_told(report, hire)
        (p_ok if good else p_wrong).append(deal_id)
    flagged, leak_good = leak_showcase(report)
    return Checks(a_ok, a_wrong, p_ok, p_wrong, [] if leak_good else [flagged])


def leak_showcase(report: DemoReport) -> tuple[str, bool]:
    """The leaked code as tracking flagged it, and whether that is the scenario's truth: one
    alert, for that code, by the coupon-site rule; that deal alone flagged, with as many
    suspected orders as the truth says."""
    truth = report.activity.leak
    if truth is None:
        return "no code leaked in this scenario", not report.observed.leaks
    hire = next(h for h in report.hires if h.deal.deal_id == truth.deal_id)
    attribution = report.observed.attribution.get(truth.deal_id)
    flagged = {d for d, a in report.observed.attribution.items() if a.leak_suspected}
    alerts = [(a.deal_id, a.promo_code, a.rule) for a in report.observed.leaks]
    suspected = None if attribution is None else attribution.suspected_orders
    good = (
        alerts == [(truth.deal_id, truth.promo_code, "coupon_site")]
        and flagged == {truth.deal_id}
        and suspected == truth.suspected_orders
    )
    if not report.observed.leaks:
        return f"{truth.promo_code} of {hire.handle}: not flagged", good
    alert = report.observed.leaks[0]
    evidence = "; ".join(
        f"{e.orders} of {e.considered} {_LEAK_EVIDENCE[e.rule]}"
        if e.rule != "burst"
        else f"{e.orders} {_LEAK_EVIDENCE[e.rule]} (reach {e.reach:,})"
        for e in alert.evidence
    )
    policy = {"credit": "still credited", "withhold": "withheld"}[alert.leaked_orders]
    return (
        f"{alert.promo_code} of {hire.handle} flagged, {evidence}; {suspected} orders from "
        f"then on suspected, {policy} (campaign policy)",
        good,
    )


_LEAK_EVIDENCE = {
    "coupon_site": "orders from coupon sites",
    "outside_audience": "orders shipped outside the audience countries",
    "burst": "orders within an hour",
}


def paid_as_expected(report: DemoReport, hire: Hire, expected: Money) -> bool:
    """Sent once for the expected amount; the returned creator's payout twice (returned and
    sent again)."""
    history = fee_payout(report, hire)
    if hire is report.hires[SHOWCASE.returned(len(report.hires))]:
        return returned_and_resent(history, expected)
    sent = [p for p in history if p.status == "sent"]
    return len(sent) == 1 and sent[0].net == expected


def returned_and_resent(history: list[PayoutStatusChanged], expected: Money) -> bool:
    """Sent, returned by the bank with its reason, then sent again (a new chapter of the
    same payout) once the account was fixed, each time for the whole expected amount."""
    statuses = [p.status for p in history]
    sent = [p for p in history if p.status == "sent"]
    failed = [p for p in history if p.status == "failed"]
    return (
        len(sent) == 2
        and all(p.net == expected for p in sent)
        and len(failed) == 1
        and failed[0].reason == RETURNED_REASON
        and statuses.index("sent") < statuses.index("failed") < len(statuses) - 1
        and statuses[-1] in ("sent", "settled")
    )


def rails_showcase(report: DemoReport, platform_fee_bps: int) -> list[tuple[str, str, bool]]:
    """(what, the payout as seen, matches the scenario's truth) for the payouts that show the
    rails: one through PayPal, one through Wise, one returned and sent again."""
    n = len(report.hires)
    rows = []
    for what, index in (
        ("PayPal payout", SHOWCASE.paypal),
        ("Wise payout", SHOWCASE.wise),
        ("returned, re-sent", SHOWCASE.returned(n)),
    ):
        hire = report.hires[index]
        history = fee_payout(report, hire)
        expected = report.scenario.expected_net(hire, platform_fee_bps)
        sent = [p for p in history if p.status == "sent"]
        good = paid_as_expected(report, hire, expected)
        path = " → ".join(p.status for p in history) or "nothing seen"
        amount = _money(sent[-1].net) if sent and sent[-1].net is not None else "-"
        rows.append((what, f"{hire.handle} {amount}: {path}", good))
    return rows


def _waited_as_told(report: DemoReport, hire: Hire) -> bool:
    """The fee the brand funded late waited for its funds, before it was sent; no other did."""
    history = fee_payout(report, hire)
    waited = [n for n, p in enumerate(history) if awaits_funds(p)]
    sent = [n for n, p in enumerate(history) if p.status == "sent"]
    if hire.deal.deal_id != report.scenario.waits_for_funds(report.hires):
        return not waited
    return bool(waited) and bool(sent) and waited[0] < sent[0]


def _ratio(value: Decimal | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:.{places}f}"


def _money(value: Money) -> str:
    """Amount with its currency code, compact enough for narrow terminals."""
    return f"{value.amount:,} {value.currency}"


def _layout(column: str) -> dict[str, Any]:
    """Handles stay whole on narrow terminals; numbers align right."""
    if column == "creator":
        return {"justify": "left", "no_wrap": True, "min_width": 15}
    return {"justify": "left" if column == "status" else "right"}


def shortlist_table(report: DemoReport) -> Table:
    answer = report.shortlist
    table = Table(
        title=f"Shortlist for {answer.campaign_id} (model {answer.model_version})",
        title_justify="left",
        caption="filtered out: "
        + ", ".join(f"{reason} {count:,}" for reason, count in answer.filtered.items()),
    )
    for column in ("#", "creator", "ER %", "est. cost", "score", "why (top 2) · flags"):
        table.add_column(column, justify="right" if column in ("#", "ER %", "score") else "left")
    hired = {h.deal.creator_id for h in report.hires}
    for s in answer.suggestions[: max(len(report.hires), 10)]:
        top = sorted(s.explanation.items(), key=lambda kv: -abs(kv[1]))[:2]
        why = ", ".join(f"{name} {value:+.2f}" for name, value in top)
        flags = f"\n[dim]{', '.join(s.flags)}[/]" if s.flags else ""
        mark = "[bold]" if s.creator_id in hired else "[dim]"
        table.add_row(
            str(s.rank),
            f"{mark}{s.handle}[/]",
            f"{s.engagement_rate * 100:.1f}",
            _money(s.estimated_cost),
            f"{s.score:.3f}",
            why + flags,
        )
    return table


def _check(a: AttributionUpdated | None, truth: DealTruth) -> str:
    return OK if attribution_matches(a, truth) else WRONG


def attribution_tables(report: DemoReport) -> tuple[Table, Table]:
    """Reach and engagement, then sales and returns, per creator and for the campaign."""
    reach = Table(title="Attribution: reach and engagement", title_justify="left")
    for column in ("creator", "posts", "reach", "likes", "ER %", "CPM", "CPE", "check"):
        reach.add_column(column, **_layout(column))
    sales = Table(title="Attribution: sales and returns", title_justify="left")
    for column in ("creator", "orders", "revenue", "spend", "ROAS", "ROI %", "check"):
        sales.add_column(column, **_layout(column))
    for hire in report.hires:
        a = report.observed.attribution.get(hire.deal.deal_id)
        check = _check(a, report.activity.truth[hire.deal.deal_id])
        if a is None:
            reach.add_row(hire.handle, *["-"] * 6, check)
            sales.add_row(hire.handle, *["-"] * 5, check)
            continue
        er = None if a.engagement_rate is None else a.engagement_rate * 100
        reach.add_row(
            hire.handle,
            str(a.posts),
            f"{a.reach:,}",
            f"{a.likes:,}",
            _ratio(er),
            _ratio(a.cpm),
            _ratio(a.cpe, 3),
            check,
        )
        sales.add_row(
            hire.handle,
            str(a.orders),
            _money(a.revenue),
            _money(a.spend),
            _ratio(a.roas),
            _ratio(a.roi_pct, 1),
            check,
        )
    # The campaign as tracking publishes it (campaign.attribution.updated), checked against
    # the sum of its deals' figures and the shop's orders of unknown codes.
    c = campaign_of(report)
    check = OK if campaign_matches(report) else WRONG
    reach.add_section()
    sales.add_section()
    if c is None:
        reach.add_row("[bold]campaign[/]", *["-"] * 6, check)
        sales.add_row("[bold]campaign[/]", *["-"] * 5, check)
        return reach, sales
    er = None if c.engagement_rate is None else c.engagement_rate * 100
    reach.add_row(
        "[bold]campaign[/]",
        str(c.posts),
        f"{c.reach:,}",
        f"{c.likes:,}",
        _ratio(er),
        _ratio(c.cpm),
        _ratio(c.cpe, 3),
        check,
    )
    sales.add_row(
        "[bold]campaign[/]",
        str(c.orders),
        "-" if c.revenue is None else _money(c.revenue),
        "-" if c.spend is None else _money(c.spend),
        _ratio(c.roas),
        _ratio(c.roi_pct, 1),
        check,
    )
    unknown = ", ".join(_money(m) for m in c.unattributed_revenue) or "nothing"
    sales.caption = (
        f"campaign: version {c.sequence}, in {c.reporting_currency}; "
        f"{c.unattributed_orders} orders of the brand with unknown codes ({unknown})"
    )
    return reach, sales


def campaign_of(report: DemoReport) -> CampaignAttributionUpdated | None:
    """The latest campaign.attribution.updated of the hires' campaign."""
    if not report.hires:
        return None
    return report.observed.campaigns.get(report.hires[0].deal.campaign_id)


def campaign_matches(report: DemoReport) -> bool:
    """Whether the campaign's published figures are its deals' summed, with the shop's
    orders of unknown codes counted."""
    c, deals = campaign_of(report), _attributions(report)
    if c is None or len(deals) != len(report.hires):
        return False
    return (
        c.deals == len(deals)
        and c.orders == sum(a.orders for a in deals)
        and c.revenue == sum((a.revenue for a in deals), Money.zero("USD"))
        and c.spend == sum((a.spend for a in deals), Money.zero("USD"))
        and (c.reach, c.likes) == (sum(a.reach for a in deals), sum(a.likes for a in deals))
        and c.unattributed_orders == STRAY_ORDERS
    )


def payouts_table(report: DemoReport, platform_fee_bps: int) -> Table:
    table = Table(title="Creator fee payouts (from payouts.status)", title_justify="left")
    for column in ("creator", "fee", "rate", "paid", "status", "check"):
        table.add_column(column, **_layout(column))
    for hire in report.hires:
        history = fee_payout(report, hire)
        expected = report.scenario.expected_net(hire, platform_fee_bps)
        if not history:
            fee = _money(hire.deal.fee)
            table.add_row(hire.handle, fee, "-", "-", "not paid", f"{WRONG} {_money(expected)}")
            continue
        last = history[-1]
        statuses = [p.status for p in history]
        status = last.status + (" [dim](was held)[/]" if "held" in statuses else "")
        good = paid_as_expected(report, hire, expected) and _waited_as_told(report, hire)
        if any(awaits_funds(p) for p in history):
            status = last.status + " [dim](waited for the brand's funds)[/]"
        table.add_row(
            hire.handle,
            _money(last.gross),
            "-" if last.fx_rate is None else f"{last.fx_rate:.4f}",
            "-" if last.net is None else _money(last.net),
            status,
            OK if good else f"{WRONG} {_money(expected)}",
        )
    return table


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[
        min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))
    ]


def latency_line(report: DemoReport) -> str:
    values = report.confirm_to_sent_ms
    if not values:
        return "confirmation → payout.sent: no unheld payout to measure"
    p50, p99 = _percentiles(values)
    return (
        f"confirmation → payout.sent over {len(values)} payouts: p50 {p50:.0f} ms, "
        f"p99 {p99:.0f} ms, max {max(values):.0f} ms"
    )


def post_latency_line(report: DemoReport) -> str:
    """post observed → payout.sent, and on a second line the raw floor of the same three
    Kafka hops measured in the same run."""
    values = report.post_to_sent_ms
    if not values:
        line = "post observed → payout.sent: no unheld payout confirmed on a post to measure"
    else:
        p50, p99 = _percentiles(values)
        line = (
            f"post observed → deliverable confirmed → payout.sent over {len(values)} payouts: "
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
        )
    if not report.floor_ms:
        return f"{line}\nraw floor of those 3 Kafka hops not measured: {report.floor_error}"
    floor50, floor99 = _percentiles(report.floor_ms)
    line += (
        f"\nraw floor of those 3 Kafka hops (bare clients, this run): p50 {floor50:.1f} ms, "
        f"p99 {floor99:.1f} ms"
    )
    if values:
        line += f"; {p50 / floor50:.0f}x the floor at p50, {p99 / floor99:.0f}x at p99"
    return line


def print_report(console: Console, report: DemoReport, platform_fee_bps: int) -> Checks:
    console.print(shortlist_table(report))
    for table in attribution_tables(report):
        console.print(table)
    console.print(payouts_table(report, platform_fee_bps))
    return checks(report, platform_fee_bps)


def summary(report: DemoReport, result: Checks, platform_fee_bps: int = 0) -> dict[str, Any]:
    """The figures an automated check needs, as JSON-ready values."""
    currencies = sorted(
        {
            p.net.currency
            for h in report.hires
            for p in fee_payout(report, h)
            if p.status == "sent" and p.net is not None
        }
    )
    return {
        "creators": report.config.creators,
        "hires": len(report.hires),
        "events_published": report.events_published,
        "attribution_matching_truth": len(result.attribution_ok),
        "attribution_wrong": result.attribution_wrong,
        "payouts_correct": len(result.payouts_ok),
        "payouts_wrong": result.payouts_wrong,
        "payout_currencies": currencies,
        "rails_showcase": [
            {"what": what, "seen": seen, "matches_truth": good}
            for what, seen, good in rails_showcase(report, platform_fee_bps)
        ],
        "campaign_matches_deals": campaign_matches(report),
        "leaked_code": dict(zip(("seen", "matches_truth"), leak_showcase(report), strict=True)),
        "confirm_to_sent_ms": report.confirm_to_sent_ms,
        "post_to_sent_ms": report.post_to_sent_ms,
        "floor_ms": report.floor_ms,
        "seconds": report.seconds,
        "observed_totals": {
            "likes": sum(a.likes for a in _attributions(report)),
            "reach": sum(a.reach for a in _attributions(report)),
            "orders": sum(a.orders for a in _attributions(report)),
            "revenue": str(sum((a.revenue for a in _attributions(report)), Money.zero("USD"))),
        },
        "truth_totals": {
            "likes": sum(t.likes for t in report.activity.truth.values()),
            "reach": sum(t.reach for t in report.activity.truth.values()),
            "orders": sum(t.orders for t in report.activity.truth.values()),
            "revenue": str(
                sum((t.revenue for t in report.activity.truth.values()), Money.zero("USD"))
            ),
        },
    }


def _attributions(report: DemoReport) -> list[AttributionUpdated]:
    """The latest attribution of each hired creator's deal, as published by tracking."""
    seen = report.observed.attribution
    return [seen[h.deal.deal_id] for h in report.hires if h.deal.deal_id in seen]
