"""The committed AsyncAPI documents match the code and describe every topic and event type."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shared.contract.events import Topic, dlq_topic, specs_for_topic
from shared.tools.asyncapi import (
    SERVICES,
    asyncapi_document,
    service_topics,
    stale_documents,
    topic_description,
)
from shared.tools.cli.main import app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "asyncapi"

# What each service publishes, as the design names it; the app modules must agree.
PUBLISHED = {
    "matching": {Topic.MATCH_SUGGESTIONS},
    "tracking": {
        Topic.TRACKING_ATTRIBUTION,
        Topic.TRACKING_CAMPAIGN_ATTRIBUTION,
        Topic.DELIVERABLES_CONFIRMED,
    },
    "payouts": {Topic.PAYOUTS_STATUS},
}


def committed(service: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DOCS / f"{service}.json").read_text(encoding="utf-8"))
    return document


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s (JSON pointers within the document, percent-decoded) to the target."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert part in target, f"unresolved $ref {ref}"
            target = target[part]
        node = target
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def envelopes_of(document: dict[str, Any], channel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Event type to the envelope schema documented for it on `channel`."""
    found = {}
    for message in channel["messages"].values():
        payload = resolve(document, resolve(document, message)["payload"])
        for variant in payload.get("oneOf", [payload]):
            envelope = resolve(document, variant)
            type_schema = envelope["properties"]["type"]
            types = [type_schema["const"]] if "const" in type_schema else type_schema["enum"]
            for event_type in types:
                found[event_type] = envelope
    return found


def test_the_committed_documents_are_the_generated_ones() -> None:
    stale = stale_documents(DOCS)
    assert stale == [], f"out of date: {[p.name for p in stale]}; run `creatorflow docs asyncapi`"


@pytest.mark.parametrize("service", SERVICES)
def test_each_topic_is_a_channel_whose_messages_are_its_event_envelopes(service: str) -> None:
    document = committed(service)
    inputs, outputs = service_topics(service)
    assert inputs and set(outputs) == PUBLISHED[service]
    actions = {
        (resolve(document, op["channel"])["address"], op["action"])
        for op in document["operations"].values()
    }
    expected = {(t, "receive") for t in (*inputs, Topic.OPERATOR_SIGNING_KEYS)}
    expected |= {(t, "send") for t in outputs}
    expected |= {(dlq_topic(t), "send") for t in inputs}
    assert actions == expected
    for channel in document["channels"].values():
        topic = channel["address"]
        if topic.endswith(".dlq"):
            continue  # test_dead_letter_topics_are_documented_with_their_headers
        envelopes = envelopes_of(document, channel)
        specs = specs_for_topic(topic)
        assert set(envelopes) == {spec.type for spec in specs}, topic
        for spec in specs:
            envelope = envelopes[spec.type]
            assert {"specversion", "id", "source", "type", "time", "data"} <= set(
                envelope["required"]
            )
            data = resolve(document, envelope["properties"]["data"])
            assert set(data["properties"]) == set(spec.data_model.model_fields), spec.type
            assert data["description"].startswith((spec.data_model.__doc__ or "")[:20])
            assert f"`{spec.type}`" in channel["description"]
        for message in channel["messages"].values():
            key = resolve(document, message)["bindings"]["kafka"]["key"]
            assert {f"data.{s.key_field}" for s in specs} <= set(
                re.findall(r"data\.\w+", key["description"])
            ), topic


@pytest.mark.parametrize("service", SERVICES)
def test_dead_letter_topics_are_documented_with_their_headers(service: str) -> None:
    document = committed(service)
    inputs, _ = service_topics(service)
    channels = {c["address"]: c for c in document["channels"].values()}
    for topic in inputs:
        channel = channels[dlq_topic(topic)]
        for header in (
            "dlq.error.class",
            "dlq.error.message",
            "dlq.source.offset",
            "correlation_id",
        ):
            assert f"`{header}`" in channel["description"], (topic, header)
        [message] = channel["messages"].values()
        resolved = resolve(document, message)
        payload = resolve(document, resolved["payload"])
        assert (payload["type"], payload["format"]) == ("string", "binary")
        assert {"dlq.error.class", "correlation_id"} <= set(resolved["headers"]["required"])
        assert "own key" in resolved["bindings"]["kafka"]["key"]["description"]


def test_match_requests_show_the_request_fields_under_their_channel() -> None:
    document = committed("matching")
    [channel] = [
        c for c in document["channels"].values() if c["address"] == Topic.BRAND_MATCH_REQUESTS
    ]
    envelope = envelopes_of(document, channel)["match.requested"]
    data = resolve(document, envelope["properties"]["data"])
    assert {"budget_per_creator", "niche", "target_audience", "limit"} <= set(data["properties"])
    assert "budget_per_creator" in data["required"]
    budget = resolve(document, data["properties"]["budget_per_creator"])
    assert set(budget["properties"]) == {"amount", "currency"}


def test_payout_status_documents_every_status_type_on_one_channel() -> None:
    document = committed("payouts")
    [channel] = [c for c in document["channels"].values() if c["address"] == Topic.PAYOUTS_STATUS]
    envelopes = envelopes_of(document, channel)
    assert sorted(envelopes) == sorted(
        ["payout.scheduled", "payout.held", "payout.sent", "payout.failed", "payout.settled"]
    )
    assert len({id(e) for e in envelopes.values()}) == 1  # one payload model, five types


@pytest.mark.parametrize("service", SERVICES)
def test_every_reference_resolves(service: str) -> None:
    document = committed(service)
    for ref in refs(document):
        resolve(document, {"$ref": ref})
    assert asyncapi_document(service)["asyncapi"] == "3.0.0"


def test_check_names_stale_files_and_writes_nothing_then_generate_fixes_them(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    (tmp_path / "tracking.json").write_text("{}\n", encoding="utf-8")
    checked = runner.invoke(app, ["docs", "asyncapi", "--check", "--dir", str(tmp_path)])
    assert checked.exit_code == 1
    for service in SERVICES:
        assert f"{service}.json" in checked.output
    assert "creatorflow docs asyncapi" in checked.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracking.json"]
    assert (tmp_path / "tracking.json").read_text(encoding="utf-8") == "{}\n"

    written = runner.invoke(app, ["docs", "asyncapi", "--dir", str(tmp_path)])
    assert written.exit_code == 0, written.output
    for service in SERVICES:
        assert (tmp_path / f"{service}.json").read_bytes() == (
            DOCS / f"{service}.json"
        ).read_bytes()
    again = runner.invoke(app, ["docs", "asyncapi", "--check", "--dir", str(tmp_path)])
    assert again.exit_code == 0, again.output


def test_a_channel_says_which_key_each_of_its_types_takes() -> None:
    deals = topic_description(Topic.CAMPAIGN_DEALS, "consumes")
    assert "Kafka key: each type's, below." in deals
    assert "`deal.signed` (key data.deal_id)" in deals
    assert "`campaign.attribution-model.set` (key data.campaign_id)" in deals
    orders = topic_description(Topic.TRACKING_ORDERS, "consumes")
    assert "(key " not in orders


def test_a_type_is_not_named_twice_in_its_channel() -> None:
    campaigns = topic_description(Topic.TRACKING_CAMPAIGN_ATTRIBUTION, "publishes")
    assert "- `campaign.attribution.updated`: (since v1.7) one campaign's" in campaigns
