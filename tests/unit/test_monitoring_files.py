"""The Prometheus alert rules and the Grafana dashboard in deploy/ are well formed and name only
metrics (and labels) that the services export; every alert has its runbook section.

promtool is not at hand, so expressions are checked lexically: brackets balance, and every
metric name in them (identifiers that are not functions, keywords, grouping or matcher labels)
is one of the series the services' metric definitions produce, with the labels they have.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import services.matching.app
import services.payouts.app
import services.tracking.app
from shared.runtime import observability
from tests.support.yaml_files import load_yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "creatorflow-dashboard.json"
RUNBOOK = DEPLOY.parent / "docs" / "runbook.md"

assert services.matching.app and services.payouts.app and services.tracking.app  # registered

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_SELECTOR = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\s*(\{[^{}]*\})?\s*(\()?")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")


def exported() -> dict[str, set[str]]:
    """Every series name the registry can export -> the labels it carries (`le` on buckets)."""
    labels = {
        m._name: set(m._labelnames)  # the definitions' own label names
        for m in vars(observability).values()
        if isinstance(m, MetricWrapperBase)
    }
    names: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            carried = set(labels.get(family.name, set()))
            carried |= {"le"} if suffix == "_bucket" else set()
            carried |= {label for s in family.samples for label in s.labels}
            names[family.name + suffix] = carried
    return names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, labels matched on) of each series selector in a PromQL expression."""
    for opening, closing in ("()", "[]", "{}"):
        assert expr.count(opening) == expr.count(closing), f"unbalanced {opening}{closing}: {expr}"
    text = _RANGES.sub("", _GROUPING.sub("", _STRINGS.sub('""', expr)))
    found = []
    for match in _SELECTOR.finditer(text):
        name, matchers, call = match.groups()
        if call or name.lower() in _KEYWORDS:
            continue  # a function or aggregation, or an operator
        found.append((name, set(_MATCHER_LABEL.findall(matchers or ""))))
    return found


def check(expr: str, where: str) -> list[str]:
    known = exported()
    found = selectors(expr)
    problems = [] if found else [f"{where}: no metric in {expr!r}"]
    for name, matched in found:
        if name not in known:
            problems.append(f"{where}: {name} is not exported")
        elif matched - known[name]:
            problems.append(f"{where}: {name} has no label {sorted(matched - known[name])}")
    return problems


def rules() -> list[dict[str, Any]]:
    document = load_yaml(ALERTS)
    assert set(document) == {"groups"}
    every = []
    for group in document["groups"]:
        assert group["name"] and group["rules"], group
        every += group["rules"]
    return every


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_the_lexer_finds_names_and_matched_labels_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, topic) (rate(a_seconds_bucket{topic=~"x|y"}'
        '[5m] offset 1h))) > 2 and on (topic) b_total unless sum without (le) (c{d!="e"})'
    )
    assert selectors(expr) == [
        ("a_seconds_bucket", {"topic"}),
        ("b_total", set()),
        ("c", {"d"}),
    ]
    assert check("rate(creatorflow_no_such_metric_total[5m])", "x") == [
        "x: creatorflow_no_such_metric_total is not exported"
    ]
    assert check('creatorflow_consumer_lag{status="sent"}', "x") == [
        "x: creatorflow_consumer_lag has no label ['status']"
    ]
    with pytest.raises(AssertionError, match="unbalanced"):
        selectors("sum(rate(creatorflow_events_consumed_total[5m])")


def test_every_alert_is_complete_and_names_exported_metrics() -> None:
    every = rules()
    names = [rule["alert"] for rule in every]
    assert len(names) == len(set(names)), "alert names repeat"
    problems = []
    for rule in every:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert annotations["summary"].strip() and annotations["description"].strip(), rule
        problems += check(rule["expr"], rule["alert"])
    assert problems == []


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped,
    spaces as hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE)
    }


def test_every_alert_points_at_its_own_runbook_section() -> None:
    runbook = RUNBOOK.read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\S+)$", runbook, flags=re.MULTILINE))
    names = {rule["alert"] for rule in rules()}
    assert sections == names, "runbook sections and alerts differ"
    for rule in rules():
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{rule['alert'].lower()}"
    # Links between sections land on one too.
    linked = set(re.findall(r"\]\(#([\w-]+)\)", runbook))
    assert linked and linked <= anchors(runbook), linked - anchors(runbook)


def test_the_alerts_cover_latency_lag_dead_letters_and_the_ledger() -> None:
    named = {name for rule in rules() for name, _ in selectors(rule["expr"])}
    assert {
        "creatorflow_payout_confirmation_to_sent_seconds_bucket",
        "creatorflow_payout_post_to_sent_seconds_bucket",
        "creatorflow_consumer_lag",
        "creatorflow_events_dead_lettered_total",
        "creatorflow_ledger_check_problems",
        "creatorflow_events_consumed_total",
    } <= named


def test_every_dashboard_query_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    targets = dashboard_targets()
    assert targets
    problems = [p for where, expr in targets for p in check(expr, where)]
    assert problems == []
    shown = {name for _, expr in targets for name, _ in selectors(expr)}
    alerted = {name for rule in rules() for name, _ in selectors(rule["expr"])}
    assert alerted <= shown, f"alerted on, not on the dashboard: {sorted(alerted - shown)}"


def test_the_dashboard_imports_with_one_data_source_and_panels_side_by_side() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    inputs = {f"${{{i['name']}}}" for i in dashboard["__inputs"] if i["pluginId"] == "prometheus"}
    assert len(inputs) == 1
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        for part in (panel, *panel["targets"]):
            assert part["datasource"] == {"type": "prometheus", "uid": next(iter(inputs))}
        assert [t["refId"] for t in panel["targets"]] == [
            chr(ord("A") + i) for i in range(len(panel["targets"]))
        ], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]  # Grafana's grid is 24 wide
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells
