"""The least-privilege ACLs follow the services' own topic declarations and the brands' and
shops' contract in the README; the cluster enforcing them runs in
tests/integration/test_kafka_security.py (`make test-kafka`)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.payouts.app import make_setup as make_payouts_setup
from services.tracking.app import make_setup
from shared.contract.events import TOPICS, Topic, dlq_topic
from shared.tools.asyncapi import service_group, service_topics
from shared.tools.cli.main import app
from shared.tools.infra.service_processes import SERVICES
from shared.tools.kafka_acls import (
    Acl,
    Operation,
    PatternType,
    Principals,
    ResourceType,
    least_privilege_acls,
    service_acls,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _names(acls: list[Acl], principal: str, kind: ResourceType, operation: Operation) -> set[str]:
    return {
        a.resource_name
        for a in acls
        if a.principal == principal and a.resource_type is kind and a.operation is operation
    }


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reads_its_inputs_and_writes_its_outputs_and_their_dead_letters(
    service: str,
) -> None:
    inputs, outputs = service_topics(service)
    acls = least_privilege_acls()
    who = f"User:{service}"
    # Every service reads the signing-key registry, without a group.
    assert _names(acls, who, ResourceType.TOPIC, Operation.READ) == {
        *inputs,
        Topic.OPERATOR_SIGNING_KEYS,
    }
    assert _names(acls, who, ResourceType.TOPIC, Operation.WRITE) == {
        *outputs,
        *(dlq_topic(t) for t in inputs),
    }
    assert _names(acls, who, ResourceType.GROUP, Operation.READ) == {service_group(service)}
    assert {(a.resource_type, a.operation) for a in acls if a.principal == who} <= {
        (ResourceType.TOPIC, Operation.READ),
        (ResourceType.TOPIC, Operation.WRITE),
        (ResourceType.GROUP, Operation.READ),
    }


def test_a_new_input_topic_in_the_code_changes_the_acls(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.tracking.app as tracking

    monkeypatch.setattr(tracking, "INPUT_TOPICS", (*tracking.INPUT_TOPICS, Topic.CREATOR_PROFILES))
    acls = service_acls("tracking", "tracking")
    assert Acl("User:tracking", ResourceType.TOPIC, "creator.profiles", Operation.READ) in acls
    assert Acl("User:tracking", ResourceType.TOPIC, "creator.profiles.dlq", Operation.WRITE) in acls


def test_the_services_subscribe_with_the_groups_the_acls_name() -> None:
    assert inspect.signature(make_setup).parameters["group_id"].default == "tracking"
    assert inspect.signature(make_payouts_setup).parameters["group_id"].default == "payouts"
    assert [service_group(s) for s in SERVICES] == list(SERVICES)


def _readme_topics(heading: str) -> set[str]:
    """The topics of the README table whose header starts with `heading` ("For brands")."""
    table = README.read_text().split(f"| {heading} |", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([a-z.-]+)` \|", table, flags=re.MULTILINE))


def test_a_brand_writes_and_reads_what_the_readme_tells_brands() -> None:
    acls = least_privilege_acls()
    writes = _names(acls, "User:brand", ResourceType.TOPIC, Operation.WRITE)
    reads = _names(acls, "User:brand", ResourceType.TOPIC, Operation.READ)
    assert (
        writes
        == _readme_topics("you produce")
        == {
            "brand.match-requests",
            "match.feedback",
            "campaign.deals",
            "brand.funding",
            "deliverables.confirmed",
        }
    )
    assert (
        reads
        == _readme_topics("you consume")
        == {
            "match.suggestions",
            "tracking.attribution",
            "tracking.campaign-attribution",
            "payouts.status",
        }
    )
    group = [
        a for a in acls if a.principal == "User:brand" and a.resource_type is ResourceType.GROUP
    ]
    assert group == [
        Acl("User:brand", ResourceType.GROUP, "brand", Operation.READ, PatternType.PREFIXED)
    ]


def test_a_shop_writes_orders_and_clicks_only() -> None:
    acls = [a for a in least_privilege_acls() if a.principal == "User:shop"]
    assert acls == [
        Acl("User:shop", ResourceType.TOPIC, "tracking.orders", Operation.WRITE),
        Acl("User:shop", ResourceType.TOPIC, "tracking.clicks", Operation.WRITE),
    ]


def test_onboarding_collectors_and_fx_feeds_write_their_topics_only() -> None:
    writes = {
        (a.principal, a.resource_name)
        for a in least_privilege_acls()
        if a.principal in {"User:onboarding", "User:collector", "User:fx-feed"}
        and a.operation is Operation.WRITE
    }
    assert writes == {
        ("User:onboarding", "creator.payout-accounts"),
        ("User:collector", "creator.profiles"),
        ("User:collector", "tracking.post-metrics"),
        ("User:fx-feed", "fx.rates"),
    }
    inputs = {topic for service in SERVICES for topic in service_topics(service)[0]}
    written = {a.resource_name for a in least_privilege_acls() if a.operation is Operation.WRITE}
    assert inputs <= written, f"input topics nobody may write: {sorted(inputs - written)}"


def test_no_party_may_create_or_touch_a_topic_it_does_not_use() -> None:
    acls = least_privilege_acls()
    assert {a.operation for a in acls} == {Operation.READ, Operation.WRITE}
    named = {a.resource_name for a in acls if a.resource_type is ResourceType.TOPIC}
    assert named <= {*TOPICS, *(dlq_topic(t) for t in TOPICS)}
    assert len(set(acls)) == len(acls)


def test_principal_names_are_options() -> None:
    principals = Principals(
        services={"matching": "svc-m", "tracking": "svc-t", "payouts": "svc-p"},
        brand="acme",
        shop="bakery-shop",
        operator="ops",
        onboarding="kyc",
        collector="scraper",
        fx_feed="ecb",
    )
    who = {a.principal for a in least_privilege_acls(principals)}
    names = ("svc-m", "svc-t", "svc-p", "acme", "bakery-shop", "ops", "kyc", "scraper", "ecb")
    assert who == {f"User:{n}" for n in names}
    result = CliRunner().invoke(app, ["kafka", "acls", "--tracking", "svc-t", "--brand", "acme"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert ["ALLOW", "User:svc-t", "READ", "group", "tracking"] in lines
    assert ["ALLOW", "User:acme", "READ", "group", "acme", "(prefix)"] in lines
    assert not [line for line in lines if {"User:tracking", "User:brand"} & set(line)]
    assert f"{len(least_privilege_acls())} ACLs; --apply creates them" in result.output


def test_only_operators_write_the_signing_key_registry() -> None:
    """A key registered by anyone else could sign as anyone: the topic's ACL is its authority."""
    writers = {
        a.principal
        for a in least_privilege_acls()
        if a.resource_name == Topic.OPERATOR_SIGNING_KEYS and a.operation is Operation.WRITE
    }
    assert writers == {"User:operator"}


def test_operators_read_the_registry_their_keys_commands_read_first() -> None:
    operator = {
        a.operation
        for a in least_privilege_acls()
        if a.principal == "User:operator" and a.resource_name == Topic.OPERATOR_SIGNING_KEYS
    }
    assert operator == {Operation.READ, Operation.WRITE}
