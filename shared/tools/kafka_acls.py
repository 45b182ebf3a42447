"""Least-privilege Kafka ACLs for every party of CreatorFlow, derived from the code.

- each service reads its input topics (`INPUT_TOPICS` of `services.<name>.app`) in its own
  consumer group (`GROUP_ID`), writes its output topics (`OUTPUT_TOPICS`) and the dead-letter
  topics of its inputs (where `DeadLetters` puts what it cannot apply);
- a brand writes the topics of the event types it sends and reads those of the answers it
  gets (README, "For brands"), in consumer groups whose names start with its principal;
- a shop writes the topics of order and click events;
- the onboarding party writes creators' payout accounts; a collector, the creator profiles and
  post metrics it observes (which confirm deliverables, so release fees); an FX feed, the
  rates;
- an operator alone writes the signing-key registry (`creatorflow keys`, which reads it
  too), which every service reads whole, without a consumer group (shared/runtime/trust.py).

Topic creation is left to an operator's admin principal (`creatorflow topics create`): no
party here may create, delete or reconfigure a topic. Kafka lets READ and WRITE imply
DESCRIBE, and WRITE on any topic the idempotent producer's id.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ClusterAuthorizationFailedError, KafkaError, for_code
from aiokafka.protocol.admin import CreateAclsRequest
from faststream.security import BaseSecurity

from shared.contract.events import EventType, Topic, dlq_topic, spec_for_type
from shared.runtime.kafka import client_options
from shared.tools.asyncapi import service_group, service_topics
from shared.tools.infra.service_processes import SERVICES


# Numeric codes of Kafka's ACL protocol (org.apache.kafka.common.acl / resource).
class ResourceType(IntEnum):
    TOPIC = 2
    GROUP = 3


class Operation(IntEnum):
    READ = 3
    WRITE = 4


class PatternType(IntEnum):
    LITERAL = 3
    PREFIXED = 4


_ALLOW: Final = 3
_ANY_HOST: Final = "*"

# What a brand sends and reads back, by event type: the topics follow from the registry.
BRAND_SENDS: Final = (
    EventType.MATCH_REQUESTED,
    EventType.MATCH_FEEDBACK,
    EventType.DEAL_SIGNED,
    EventType.ATTRIBUTION_MODEL_SET,
    EventType.BRAND_FUNDED,
    EventType.DELIVERABLE_CONFIRMED,
)
BRAND_RECEIVES: Final = (
    EventType.MATCH_SUGGESTED,
    EventType.ATTRIBUTION_UPDATED,
    EventType.CAMPAIGN_ATTRIBUTION_UPDATED,
    *(t for t in EventType if t.startswith("payout.")),
)
SHOP_SENDS: Final = (
    EventType.ORDER_REDEEMED,
    EventType.ORDER_REFUNDED,
    EventType.LINK_CLICKED,
)
ONBOARDING_SENDS: Final = (EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED,)
COLLECTOR_SENDS: Final = (EventType.CREATOR_PROFILE_UPSERTED, EventType.POST_METRICS_OBSERVED)
FX_FEED_SENDS: Final = (EventType.FX_RATES_PUBLISHED,)


def topics_of(types: Iterable[str]) -> tuple[str, ...]:
    """The topics `types` are published on, each once, in order."""
    return tuple(dict.fromkeys(spec_for_type(t).topic for t in types))


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule for any host."""

    principal: str  # e.g. User:tracking
    resource_type: ResourceType
    resource_name: str
    operation: Operation
    pattern: PatternType = PatternType.LITERAL

    def __str__(self) -> str:
        prefixed = " (prefix)" if self.pattern is PatternType.PREFIXED else ""
        resource = self.resource_type.name.lower()
        return (
            f"{self.principal:<20} {self.operation.name:<5} {resource:<5} "
            f"{self.resource_name}{prefixed}"
        )


@dataclass(frozen=True)
class Principals:
    """The user names each party authenticates as (SASL user, or certificate CN)."""

    services: Mapping[str, str] = field(default_factory=lambda: {s: s for s in SERVICES})
    brand: str = "brand"
    shop: str = "shop"
    operator: str = "operator"
    onboarding: str = "onboarding"
    collector: str = "collector"
    fx_feed: str = "fx-feed"


def user(name: str) -> str:
    return f"User:{name}"


def service_acls(service: str, principal: str) -> list[Acl]:
    inputs, outputs = service_topics(service)
    who = user(principal)
    acls = [Acl(who, ResourceType.TOPIC, topic, Operation.READ) for topic in inputs]
    acls.append(Acl(who, ResourceType.GROUP, service_group(service), Operation.READ))
    acls.append(Acl(who, ResourceType.TOPIC, Topic.OPERATOR_SIGNING_KEYS, Operation.READ))
    writes = dict.fromkeys([*outputs, *(dlq_topic(topic) for topic in inputs)])
    acls += [Acl(who, ResourceType.TOPIC, topic, Operation.WRITE) for topic in writes]
    return acls


def brand_acls(principal: str) -> list[Acl]:
    who = user(principal)
    acls = [Acl(who, ResourceType.TOPIC, t, Operation.WRITE) for t in topics_of(BRAND_SENDS)]
    acls += [Acl(who, ResourceType.TOPIC, t, Operation.READ) for t in topics_of(BRAND_RECEIVES)]
    acls.append(
        Acl(who, ResourceType.GROUP, principal, Operation.READ, pattern=PatternType.PREFIXED)
    )
    return acls


def writer_acls(principal: str, sends: Iterable[str]) -> list[Acl]:
    """WRITE on the topics of the event types `sends`, and nothing else."""
    who = user(principal)
    return [Acl(who, ResourceType.TOPIC, t, Operation.WRITE) for t in topics_of(sends)]


def shop_acls(principal: str) -> list[Acl]:
    return writer_acls(principal, SHOP_SENDS)


def operator_acls(principal: str) -> list[Acl]:
    """The registry's writer reads it too: every `creatorflow keys` command reads it whole
    first (the owner of a key, whether it is revoked)."""
    who = user(principal)
    return [
        Acl(who, ResourceType.TOPIC, Topic.OPERATOR_SIGNING_KEYS, operation)
        for operation in (Operation.READ, Operation.WRITE)
    ]


def least_privilege_acls(principals: Principals = Principals()) -> list[Acl]:
    """Every ACL CreatorFlow's parties need, and nothing more."""
    acls = []
    for service in SERVICES:
        acls += service_acls(service, principals.services[service])
    acls += brand_acls(principals.brand)
    acls += shop_acls(principals.shop)
    acls += writer_acls(principals.onboarding, ONBOARDING_SENDS)
    acls += writer_acls(principals.collector, COLLECTOR_SENDS)
    acls += writer_acls(principals.fx_feed, FX_FEED_SENDS)
    acls += operator_acls(principals.operator)
    return acls


class AclError(RuntimeError):
    """The cluster refused to create ACLs (the message says which and why)."""


async def apply_acls(
    bootstrap_servers: str, security: BaseSecurity | None, acls: Sequence[Acl]
) -> None:
    """Create `acls` on the cluster (existing ones are left as they are). The principal of
    `security` must be allowed to alter the cluster's ACLs (a super user, or ALTER on it)."""
    admin = AIOKafkaAdminClient(**client_options(bootstrap_servers, security))
    await admin.start()
    try:
        node = admin._client.get_random_node()  # any broker forwards them to the controller
        failed = []
        for acl in acls:
            request = CreateAclsRequest(
                acl.resource_type,
                acl.resource_name,
                acl.pattern,
                acl.principal,
                _ANY_HOST,
                acl.operation,
                _ALLOW,
            )
            try:
                with _quiet("aiokafka.conn"):
                    response = await admin._send_request_to_node(node, request)
            except KafkaError as error:
                raise AclError(
                    f"the cluster did not take the ACLs ({type(error).__name__}): a broker "
                    "without an authorizer, such as the embedded one, closes the connection"
                ) from error
            for code, _message in response.creation_responses:
                if code == ClusterAuthorizationFailedError.errno:
                    raise AclError(
                        "the configured principal may not alter the cluster's ACLs "
                        "(ClusterAuthorizationFailed)"
                    )
                if code:
                    # The broker's own message describes its request objects, not the cause.
                    failed.append(
                        f"{acl.principal} {acl.operation.name} {acl.resource_name}: "
                        f"{for_code(code).__name__}"
                    )
        if failed:
            raise AclError(f"{len(failed)} ACL(s) refused: " + "; ".join(failed[:3]))
    finally:
        await admin.close()


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Silence `logger` for a request whose failure the caller reports itself (aiokafka logs
    a closed connection with a traceback before raising)."""
    target = logging.getLogger(logger)
    was = target.disabled
    target.disabled = True
    try:
        yield
    finally:
        target.disabled = was
