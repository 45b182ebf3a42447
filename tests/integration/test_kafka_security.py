"""Every CreatorFlow client against an Apache Kafka that requires TLS and authentication, with
least-privilege ACLs: one node (shared.tools.infra.apache_kafka with a shared.tools.infra.kafka_tls
security) listening with mutual TLS and with SASL_SSL (SCRAM-SHA-512), certificates made
here. The commands run as a user would run them, and a service as a process.

Needs Java and Maven like every Apache Kafka test: runs in `make test-kafka`
(CREATORFLOW_KAFKA=apache), skipped in `make test`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity

from shared.contract.events import DealSigned, Topic, encode, make_event
from shared.contract.events.examples import deal, order_redeemed, valid_example
from shared.runtime.config import KafkaKind, Settings
from shared.runtime.kafka import client_options
from shared.tools.infra import EmbeddedInfra, InfraError, InfraUrls
from shared.tools.infra.apache_kafka import ApacheKafkaCluster
from shared.tools.infra.kafka_jars import default_cache_dir, kafka_jars, require_tools
from shared.tools.infra.kafka_tls import (
    CertificateAuthority,
    ClusterSecurity,
    certificate_pem,
    key_pem,
)
from shared.tools.infra.kafka_tls import make_cluster_security as make_security
from shared.tools.infra.process import stop_together
from shared.tools.infra.service_processes import ServiceProcesses
from shared.tools.kafka_acls import least_privilege_acls

SETTINGS = Settings()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        SETTINGS.kafka is not KafkaKind.APACHE or bool(SETTINGS.kafka_bootstrap_servers),
        reason="starts an Apache Kafka of its own, like every Apache Kafka test: make test-kafka "
        "(CREATORFLOW_KAFKA=apache, Java and Maven)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin"
PRINCIPALS = (ADMIN, "matching", "tracking", "payouts", "brand", "shop")
LISTENERS = ("sasl_ssl", "mtls")
COMMAND_SECONDS = 120


@dataclass(frozen=True)
class SecuredKafka:
    cluster: ApacheKafkaCluster
    security: ClusterSecurity

    def env(self, listener: str, principal: str) -> dict[str, str]:
        """The KAFKA_* settings of `principal` on `listener`, as an operator would set them."""
        client = self.security.client(principal)
        common = {"KAFKA_SSL_CAFILE": str(self.security.ca_file)}
        if listener == "sasl_ssl":
            return common | {
                "KAFKA_BOOTSTRAP_SERVERS": self.cluster.sasl_bootstrap_servers,
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": principal,
                "KAFKA_SASL_PASSWORD": client.password,
            }
        return common | {
            "KAFKA_BOOTSTRAP_SERVERS": self.cluster.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CERTFILE": str(client.certfile),
            "KAFKA_SSL_KEYFILE": str(client.keyfile),
        }

    def admin_security(self) -> BaseSecurity:
        admin = self.security.client(ADMIN)
        context = create_ssl_context(
            cafile=str(self.security.ca_file),
            certfile=str(admin.certfile),
            keyfile=str(admin.keyfile),
        )
        return BaseSecurity(ssl_context=context)


def process_env(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its Kafka settings, plus `settings`: one broker, so
    one replica, and the idempotent producer as `make test-kafka` runs it."""
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CREATORFLOW_KAFKA"))
    }
    one_broker = {"KAFKA_REPLICATION_FACTOR": "1", "KAFKA_IDEMPOTENT_PRODUCER": "true"}
    return inherited | one_broker | dict(settings)


def creatorflow(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.tools.cli", *args],
        env=process_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args[3:]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    try:
        java = require_tools("java", "mvn")["java"]
    except InfraError as error:
        pytest.skip(str(error))
    jars = kafka_jars(SETTINGS.cache_dir or default_cache_dir())
    root = tmp_path_factory.mktemp("secured-kafka")
    security = make_security(root / "tls", PRINCIPALS, super_users=[ADMIN])
    cluster = ApacheKafkaCluster(root / "kafka", 1, jars, java, security=security)
    cluster.prepare()
    node = cluster.nodes[0]
    process = cluster.start_node(node, detached=False)
    try:
        cluster.wait_ready({node.name: process}, 1)
        yield SecuredKafka(cluster, security)
    finally:
        stop_together([process], 0.0)


@pytest.fixture(scope="module")
def acls_applied(secured: SecuredKafka) -> None:
    """The operator's set-up: topics created and the least-privilege ACLs applied by the
    admin principal, both with the project's commands."""
    admin = secured.env("mtls", ADMIN) | {"KAFKA_PARTITIONS": "1"}
    succeeded(creatorflow(admin, "topics", "create"))
    out = succeeded(creatorflow(admin, "kafka", "acls", "--apply"))
    assert f"Applied {len(least_privilege_acls())} ACLs" in out


@pytest.mark.parametrize("listener", LISTENERS)
def test_every_command_works_through_the_listener(
    secured: SecuredKafka, acls_applied: None, listener: str
) -> None:
    env = secured.env(listener, ADMIN) | {"KAFKA_PARTITIONS": "1"}
    assert "0 created" in succeeded(creatorflow(env, "topics", "create"))
    assert "published 5 creator profiles" in succeeded(
        creatorflow(env, "seed", "creators", "--count", "5", "--seed", "3", "--id-prefix", listener)
    )
    assert "published FX rates" in succeeded(creatorflow(env, "seed", "fx"))
    order = _order(f"ord-{listener}-{uuid.uuid4().hex[:8]}", promo_code="NOPE")
    orders = secured.cluster.directory / f"orders-{listener}.jsonl"
    orders.write_bytes(encode(order) + b"\n")
    assert "Sent 1 event(s)" in succeeded(
        creatorflow(env, "produce", Topic.TRACKING_ORDERS, str(orders))
    )
    shown = succeeded(
        creatorflow(env, "tail", Topic.TRACKING_ORDERS, "--from-beginning", "--no-follow")
    )
    assert order.id in shown
    listed = succeeded(creatorflow(env, "dlq", "list", Topic.TRACKING_ORDERS))
    assert f"{Topic.TRACKING_ORDERS}.dlq" in listed


def _order(order_id: str, *, promo_code: str, brand_id: str = "br-12") -> Any:
    data = order_redeemed().model_copy(
        update={"order_id": order_id, "promo_code": promo_code, "brand_id": brand_id}
    )
    return make_event(data, source="tests/kafka-security", id=order_id)


def _other_ca(directory: Path) -> Path:
    path = directory / "other-ca.pem"
    path.write_bytes(certificate_pem(CertificateAuthority.new("someone-else").certificate))
    return path


def _stranger(directory: Path) -> tuple[Path, Path]:
    """A client certificate for `admin` signed by a CA the brokers do not trust."""
    issued = CertificateAuthority.new("someone-else").issue(ADMIN)
    certfile, keyfile = directory / "stranger.pem", directory / "stranger.key"
    certfile.write_bytes(certificate_pem(issued.certificate))
    keyfile.write_bytes(key_pem(issued.key))
    return certfile, keyfile


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "refused the login of 'admin' with SCRAM-SHA-512"),
        ("unknown user", "refused the login of 'nobody' with SCRAM-SHA-512"),
        ("untrusted broker CA", "presented a certificate this client does not trust"),
        ("no client certificate", "closed the connection after the TLS handshake"),
        ("client certificate of another CA", "closed the connection after the TLS handshake"),
    ],
)
def test_a_refused_client_stops_at_once_with_one_line_and_no_secret(
    secured: SecuredKafka, tmp_path: Path, case: str, expected: str
) -> None:
    wrong_password = f"not-it-{uuid.uuid4().hex[:6]}"
    env = secured.env("sasl_ssl", ADMIN)
    if case == "wrong password":
        env["KAFKA_SASL_PASSWORD"] = wrong_password
    elif case == "unknown user":
        env |= {"KAFKA_SASL_USERNAME": "nobody", "KAFKA_SASL_PASSWORD": wrong_password}
    elif case == "untrusted broker CA":
        env["KAFKA_SSL_CAFILE"] = str(_other_ca(tmp_path))
    elif case == "no client certificate":
        env = secured.env("mtls", ADMIN)
        del env["KAFKA_SSL_CERTFILE"], env["KAFKA_SSL_KEYFILE"]
    else:
        env = secured.env("mtls", ADMIN)
        certfile, keyfile = _stranger(tmp_path)
        env |= {"KAFKA_SSL_CERTFILE": str(certfile), "KAFKA_SSL_KEYFILE": str(keyfile)}
    for command in (("tail", Topic.TRACKING_ORDERS, "--no-follow"), ("topics", "create")):
        started = time.monotonic()
        result = creatorflow(env, *command)
        took = time.monotonic() - started
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert expected in lines[0]
        output = result.stdout + result.stderr
        for secret in (wrong_password, secured.security.client(ADMIN).password):
            assert secret not in output
        assert took < 30, f"{command} took {took:.0f}s to give up"
        print(f"\n{case}, {command[0]}: {lines[0]} ({took:.1f}s)")


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_shop_writes_orders_and_nothing_else(
    secured: SecuredKafka, acls_applied: None, listener: str
) -> None:
    env = secured.env(listener, "shop")
    order = _order(f"ord-shop-{listener}-{uuid.uuid4().hex[:8]}", promo_code="SHOP10")
    orders = secured.cluster.directory / f"shop-{listener}.jsonl"
    orders.write_bytes(encode(order) + b"\n")
    assert "Sent 1 event(s)" in succeeded(
        creatorflow(env, "produce", Topic.TRACKING_ORDERS, str(orders))
    )
    confirmation = secured.cluster.directory / "confirmation.jsonl"
    confirmation.write_bytes(encode(valid_example("deliverable.confirmed")) + b"\n")
    payout = secured.cluster.directory / "payout.jsonl"
    payout.write_bytes(encode(valid_example("payout.sent")) + b"\n")
    for topic, file in (
        (Topic.DELIVERABLES_CONFIRMED, confirmation),
        (Topic.PAYOUTS_STATUS, payout),
    ):
        refused = creatorflow(env, "produce", topic, str(file))
        assert refused.returncode == 1
        assert f"TopicAuthorizationFailed ({topic})" in refused.stderr
    # Nor may it read what brands read.
    refused = creatorflow(env, "tail", Topic.PAYOUTS_STATUS, "--no-follow")
    assert f"TopicAuthorizationFailed ({Topic.PAYOUTS_STATUS})" in refused.stderr


@pytest.fixture(scope="module")
def databases(
    secured: SecuredKafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InfraUrls]:
    """PostgreSQL and Redis for the service (Kafka is the secured cluster)."""
    only_kafka = Settings.model_validate(
        {"KAFKA_BOOTSTRAP_SERVERS": secured.cluster.sasl_bootstrap_servers}
    )
    stack = EmbeddedInfra(tmp_path_factory.mktemp("servers"), only_kafka, durable=False)
    with stack:
        assert stack.urls is not None
        yield stack.urls


async def _first(
    secured: SecuredKafka, topic: str, matches: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first event of `topic` that `matches`, read as the admin."""
    consumer = AIOKafkaConsumer(
        topic,
        **client_options(secured.cluster.bootstrap_servers, secured.admin_security()),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(90):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for event in (json.loads(r.value) for r in records if r.value):
                        if matches(event):
                            return event
    finally:
        await consumer.stop()


@pytest.mark.parametrize("listener", LISTENERS)
async def test_a_service_works_with_its_acls_only(
    secured: SecuredKafka, acls_applied: None, databases: InfraUrls, listener: str
) -> None:
    """tracking, as its own least-privilege principal, consumes a brand's deal and a shop's
    order and publishes the deal's attribution, which the brand reads back."""
    run = f"{listener}-{uuid.uuid4().hex[:6]}"
    code = f"CODE{uuid.uuid4().hex[:6].upper()}"
    signed: DealSigned = deal().model_copy(
        update={"deal_id": f"deal-{run}", "promo_codes": (code,)}
    )
    deals = secured.cluster.directory / f"deal-{run}.jsonl"
    deals.write_bytes(encode(make_event(signed, source="tests/brand", id=run)) + b"\n")
    orders = secured.cluster.directory / f"order-{run}.jsonl"
    orders.write_bytes(encode(_order(f"ord-{run}", promo_code=code)) + b"\n")
    succeeded(
        creatorflow(secured.env(listener, "brand"), "produce", Topic.CAMPAIGN_DEALS, str(deals))
    )
    succeeded(
        creatorflow(secured.env(listener, "shop"), "produce", Topic.TRACKING_ORDERS, str(orders))
    )

    env = secured.env(listener, "tracking") | {
        "DATABASE_URL": databases.database_url,
        "REDIS_URL": databases.redis_url,
    }
    lines: list[str] = []
    services = ServiceProcesses(["tracking"], process_env(env), lambda _, line: lines.append(line))
    try:
        await services.start(ready_seconds=120)
        attribution = await _first(
            secured,
            Topic.TRACKING_ATTRIBUTION,
            lambda e: e["data"]["deal_id"] == signed.deal_id and e["data"]["orders"] == 1,
        )
    except TimeoutError:
        pytest.fail("no attribution with the order:\n" + "\n".join(lines[-30:]))
    finally:
        await services.stop()
    assert attribution["data"]["revenue"] == {"amount": "64.90", "currency": "USD"}
    shown = succeeded(
        creatorflow(
            secured.env(listener, "brand"),
            "tail",
            Topic.TRACKING_ATTRIBUTION,
            "--from-beginning",
            "--no-follow",
        )
    )
    assert signed.deal_id in shown
    assert not [line for line in lines if "AuthorizationFailed" in line], "\n".join(lines)


async def test_a_refused_service_exits_at_once_saying_why(
    secured: SecuredKafka, databases: InfraUrls
) -> None:
    wrong = f"not-it-{uuid.uuid4().hex[:6]}"
    env = secured.env("sasl_ssl", "tracking") | {
        "KAFKA_SASL_PASSWORD": wrong,
        "DATABASE_URL": databases.database_url,
        "REDIS_URL": databases.redis_url,
    }
    lines: list[str] = []
    services = ServiceProcesses(["tracking"], process_env(env), lambda _, line: lines.append(line))
    started = time.monotonic()
    try:
        with pytest.raises(InfraError, match="exited with code 2"):
            await services.start(ready_seconds=60)
    finally:
        await services.stop()
    assert time.monotonic() - started < 30
    said = [line for line in lines if "refused the login of 'tracking' with SCRAM-SHA-512" in line]
    assert len(said) == 1, "\n".join(lines)
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    for secret in (wrong, secured.security.client("tracking").password):
        assert not [line for line in lines if secret in line]


async def test_a_service_without_its_acls_says_what_was_refused(
    secured: SecuredKafka, acls_applied: None, databases: InfraUrls
) -> None:
    """Run as the shop, which may read nothing: each service is refused at start, when it
    reads the signing-key registry before any input, and exits saying what was refused (the
    orchestrator starts it again once the ACLs are in place)."""
    env = secured.env("mtls", "shop") | {
        "DATABASE_URL": databases.database_url,
        "REDIS_URL": databases.redis_url,
    }
    lines: list[str] = []
    services = ServiceProcesses(
        ["matching", "tracking"],
        process_env(env),
        lambda label, line: lines.append(f"{label} {line}"),
    )
    try:
        for name in ("matching", "tracking"):
            service = await services.launch(name)
            assert await asyncio.wait_for(service.process.wait(), 60) == 2, "\n".join(lines)
    finally:
        await services.stop()
    refused = "Kafka's ACLs refused this client: TopicAuthorizationFailed (operator.signing-keys)"
    assert [line for line in lines if line.startswith("matching") and refused in line]
    assert [line for line in lines if line.startswith("tracking") and refused in line]
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
