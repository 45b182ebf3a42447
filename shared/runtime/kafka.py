"""Kafka wiring: the broker factory, topic creation, publishing, and consumption that never
loses a valid message nor blocks a partition on a poison one.

What happens to a message whose handling fails (docs/architecture.md §2):

- unparseable or schema-invalid (`EventDecodeError`), or a business-rule violation
  (`EventRejected`): straight to `<topic>.dlq` with the reason in headers, original bytes as
  value; the partition moves on;
- transient (database, cache or broker unreachable): retried with capped exponential backoff,
  forever, never skipped; the offset is not committed meanwhile;
- anything else (most likely a bug): retried `max_attempts` times, then dead-lettered so one
  bad message cannot stall its partition; the DLQ keeps it for `creatorflow dlq replay`.

Offsets are committed only after the handler returned (FastStream `AckPolicy.ACK`, and the
handler raises nothing but cancellation), i.e. after the handler's database commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import ssl
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypedDict

import aiokafka.errors
import asyncpg
import redis.exceptions
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.security import parse_security
from faststream.message import StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.contract.errors import EventRejected, TransientError
from shared.contract.events import (
    CONTENT_TYPE,
    TOPICS,
    CloudEvent,
    EventDecodeError,
    Topic,
    check_key,
    check_not_future,
    decode,
    dlq_topic,
    encode,
    event_key,
    mask_secrets,
    secret_fields_of_topic,
    spec_for_type,
)
from shared.contract.signing import Signer
from shared.runtime.config import SaslMechanism, Settings
from shared.runtime.observability import (
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_FAILED,
    HANDLER_SECONDS,
)

log = structlog.get_logger(__name__)

DLQ_HEADER_PREFIX = "dlq."
MASKED_FIELDS_HEADER = f"{DLQ_HEADER_PREFIX}masked.fields"
_TOPIC_ALREADY_EXISTS = 36
_TOPIC_AUTHORIZATION_FAILED = 29
# How long the broker may hold a fetch that finds no data. Kafka answers early when data
# arrives; the embedded broker waits the full time, which would add up to this much latency
# to every event. 20 ms keeps idle consumers cheap (~50 fetches/s) and latency low on both.
FETCH_MAX_WAIT_MS = 20
# How long a rebalance waits for a member to finish its batch in flight and rejoin. aiokafka's
# default is the session timeout (10 s): Apache Kafka then drops a member whose batch takes
# longer (a slow or briefly unreachable database), its commit fails, and the partitions' next
# holder applies the batch again. The embedded broker does not enforce this timeout.
REBALANCE_TIMEOUT_MS = 60_000
_DLQ_VALUE_LIMIT = 512 * 1024
_DEAD_LETTER_IDS = uuid.UUID("5d1e7c2a-3f4b-4c8e-9a61-0b7d2e4f8c35")
# Bytes a producer batches per partition. aiokafka's default (16 KiB) is less than one
# suggestion of 50 creators (~33 KB): every such event was then a batch of its own, and a
# partition has one batch in flight at a time, so the outbox relay's 24 answers took one
# broker round trip each. Half the 1 MiB request and message limits, with room for overhead.
MAX_BATCH_BYTES = 512 * 1024
_TOPICS_KNOWN_SECONDS = 30.0


class KafkaSecurityError(ValueError):
    """The TLS files named by the settings cannot be loaded."""


class KafkaAccessError(RuntimeError):
    """No broker lets this client in as configured. The message is one line a user can act
    on, naming the settings to check and never a secret. `refused`: a broker answered and
    turned the credentials or certificate down (trying again will not help); otherwise no
    broker could be reached."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


def access_refused(error: BaseException, options: Mapping[str, Any]) -> bool:
    """Whether a failed connection is a refusal (login, certificate, protocol) rather than
    a broker out of reach."""
    if isinstance(
        error,
        aiokafka.errors.SaslAuthenticationFailed
        | aiokafka.errors.UnsupportedSaslMechanismError
        | ssl.SSLError,
    ):
        return True
    # Closed by a broker during the handshake; a PLAINTEXT one may just be stopping.
    closed = isinstance(error, aiokafka.errors.KafkaConnectionError) and "closed" in str(error)
    return closed and options.get("security_protocol", "PLAINTEXT") != "PLAINTEXT"


_SASL: Mapping[SaslMechanism, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    SaslMechanism.PLAIN: SASLPlaintext,
    SaslMechanism.SCRAM_SHA_256: SASLScram256,
    SaslMechanism.SCRAM_SHA_512: SASLScram512,
}


def kafka_security(settings: Settings) -> BaseSecurity | None:
    """How every Kafka client of the project authenticates and encrypts: the one mapping from
    the `KAFKA_SECURITY_PROTOCOL`/`KAFKA_SASL_*`/`KAFKA_SSL_*` settings (validated there).

    FastStream brokers take the result as `security=`; raw aiokafka clients get the same
    through `client_options`. None means PLAINTEXT.
    """
    protocol = settings.kafka_security_protocol
    context = _ssl_context(settings) if protocol.uses_tls else None
    if not protocol.uses_sasl:
        return None if context is None else BaseSecurity(ssl_context=context)
    assert settings.kafka_sasl_username and settings.kafka_sasl_password
    sasl = _SASL[settings.kafka_sasl_mechanism_or_default]
    return sasl(
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=context is not None,
    )


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    key_password = settings.kafka_ssl_key_password
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            password=None if key_password is None else key_password.get_secret_value(),
        )
    except (ssl.SSLError, OSError) as error:
        files = {
            "KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
        }
        named = ", ".join(f"{k}={v}" for k, v in files.items() if v is not None) or "no files"
        raise KafkaSecurityError(f"cannot load the Kafka TLS files ({named}): {error}") from None
    return context


def client_options(bootstrap_servers: str, security: BaseSecurity | None = None) -> dict[str, Any]:
    """Keyword arguments for a raw aiokafka client (producer, consumer, admin), with the
    security FastStream would apply for the same `security` object."""
    return {"bootstrap_servers": bootstrap_servers, **parse_security(security)}


def ends_client(
    bootstrap_servers: str, security: BaseSecurity | None = None, *, client_id: str | None = None
) -> AIOKafkaConsumer:
    """A consumer that only asks for partitions' ends (`end_offsets`) and never fetches.

    A reader asks its ends on a client like this one: on the reader's own connection the
    question would queue behind its pending fetch, which the broker holds for up to the fetch
    wait when nothing new has arrived."""
    named = {} if client_id is None else {"client_id": client_id}
    return AIOKafkaConsumer(
        **client_options(bootstrap_servers, security), **named, enable_auto_commit=False
    )


async def start_both(reader: AIOKafkaConsumer, ends: AIOKafkaConsumer) -> None:
    """Start a reader and its `ends_client`; if the second fails, the first is stopped."""
    await reader.start()
    try:
        await ends.start()
    except BaseException:
        await reader.stop()
        raise


def access_failure(error: BaseException, bootstrap_servers: str, options: Mapping[str, Any]) -> str:
    """One line saying why connecting with `options` (client_options) to `bootstrap_servers`
    failed with `error`, and which settings to check. Only names and paths are quoted: the
    password is never part of it."""
    where = f"Kafka at {bootstrap_servers}"
    mechanism = options.get("sasl_mechanism")
    if isinstance(error, aiokafka.errors.SaslAuthenticationFailed):
        user = options.get("sasl_plain_username")
        return (
            f"{where} refused the login of {user!r} with {mechanism}: check "
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    if isinstance(error, aiokafka.errors.UnsupportedSaslMechanismError):
        return f"{where} does not accept {mechanism}: set KAFKA_SASL_MECHANISM to one it enables"
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"{where} presented a certificate this client does not trust "
            f"({error.verify_message}): set KAFKA_SSL_CAFILE to the CA that signed the brokers'"
        )
    reason = getattr(error, "reason", None) or ""
    if isinstance(error, ssl.SSLError) and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
        return (
            f"{where} refused this client's certificate ({reason}): set KAFKA_SSL_CERTFILE and "
            "KAFKA_SSL_KEYFILE to a certificate its CA signed"
        )
    if isinstance(error, ssl.SSLError):
        return (
            f"TLS with {where} failed ({reason or error}): is KAFKA_SECURITY_PROTOCOL the "
            "listener's protocol?"
        )
    protocol = options.get("security_protocol", "PLAINTEXT")
    if isinstance(error, aiokafka.errors.KafkaConnectionError) and "closed" in str(error):
        if protocol == "SSL":
            # A listener that requires a client certificate closes the connection when none,
            # or one its CA did not sign, is sent (TLS 1.3 tells the client no more).
            return (
                f"{where} closed the connection after the TLS handshake: it wants a client "
                "certificate its CA signed (KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE), or its "
                f"listener is not {protocol} (KAFKA_SECURITY_PROTOCOL)"
            )
        return (
            f"{where} closed the connection: is its listener {protocol} (KAFKA_SECURITY_PROTOCOL)?"
        )
    detail = str(error).removeprefix(f"{type(error).__name__}: ") or "no reason given"
    return f"cannot connect to {where} ({protocol}): {type(error).__name__}: {detail}"


async def check_kafka_access(
    bootstrap_servers: str, security: BaseSecurity | None, *, timeout_ms: int = 10_000
) -> None:
    """Connect to the bootstrap servers as every client would (TLS handshake, SASL login,
    one request) and return once one lets us in; raise `KafkaAccessError` otherwise.

    aiokafka logs why each connection failed and then raises a bare "Unable to bootstrap":
    this keeps the reason, so a command or service can stop with it.
    """
    options = client_options(bootstrap_servers, security)
    first: BaseException | None = None
    for server in bootstrap_list(bootstrap_servers):
        host, _, port = server.rpartition(":")
        try:
            connection = await create_conn(
                host,
                int(port),
                request_timeout_ms=timeout_ms,
                ssl_context=options.get("ssl_context"),
                security_protocol=options.get("security_protocol", "PLAINTEXT"),
                sasl_mechanism=options.get("sasl_mechanism"),
                sasl_plain_username=options.get("sasl_plain_username"),
                sasl_plain_password=options.get("sasl_plain_password"),
            )
        except (OSError, aiokafka.errors.KafkaError, TimeoutError) as error:
            first = first or error
            continue
        connection.close()
        return
    assert first is not None, "no bootstrap server given"
    message = access_failure(first, bootstrap_servers, options)
    raise KafkaAccessError(message, refused=access_refused(first, options))


# What a cluster with ACLs answers a principal that may not do what it asked.
AUTHORIZATION_ERRORS: tuple[type[aiokafka.errors.KafkaError], ...] = (
    aiokafka.errors.TopicAuthorizationFailedError,
    aiokafka.errors.GroupAuthorizationFailedError,
    aiokafka.errors.ClusterAuthorizationFailedError,
)


def authorization_failure(error: BaseException) -> str:
    """One line naming what the cluster's ACLs refused (the topic or group, if known)."""
    kind = type(error).__name__.removesuffix("Error")
    what = ", ".join(str(arg) for arg in error.args if str(arg))
    return f"Kafka's ACLs refused this client: {kind}" + (f" ({what})" if what else "")


def bootstrap_list(bootstrap_servers: str) -> list[str]:
    """`host:port,host:port` as a list: FastStream takes a string for one server only."""
    return [server.strip() for server in bootstrap_servers.split(",") if server.strip()]


def make_broker(settings: Settings, bootstrap_servers: str, **options: Any) -> KafkaBroker:
    """A FastStream broker for `bootstrap_servers` (one or several, comma-separated, as in
    KAFKA_BOOTSTRAP_SERVERS) labelled with the service name."""
    return KafkaBroker(
        bootstrap_list(bootstrap_servers),
        client_id=settings.service_name,
        # Acknowledged only once every in-sync replica has it: with acks=1 a leader that dies
        # right after answering loses the write (replicated Kafka; one broker has one replica).
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        max_batch_size=MAX_BATCH_BYTES,
        security=kafka_security(settings),
        **options,
    )


def min_insync_replicas(replication_factor: int) -> int:
    """Replicas that must have a write before the broker acknowledges it (with acks=all): two
    when there are several, so one broker may be down without refusing writes or keeping an
    acknowledged write on a single disk."""
    return min(2, replication_factor)


# Topics whose records are kept for ever: the signing-key registry is read whole by every
# service at start, so a key deleted by retention would refuse its owner's events.
_KEPT: Final[dict[str, dict[str, str]]] = {
    Topic.OPERATOR_SIGNING_KEYS: {"retention.ms": "-1", "retention.bytes": "-1"},
}
# Topics whose records carry the broker's time, not the sender's: a deal.cancelled takes
# effect no earlier than its arrival (less the clock skew), so a brand cannot date one back
# before orders that already earned commission (Delivery.not_before).
_ARRIVAL_TIMED: Final[dict[str, dict[str, str]]] = {
    Topic.CAMPAIGN_DEALS: {"message.timestamp.type": "LogAppendTime"},
}


def topic_config(topic: str) -> dict[str, str]:
    """The settings a contract topic is created with, beyond its replication."""
    return _KEPT.get(topic, {}) | _ARRIVAL_TIMED.get(topic, {})


async def settings_not_applied(
    bootstrap_servers: str, security: BaseSecurity | None = None
) -> list[tuple[str, str, str, str]]:
    """(topic, setting, wanted, found) for each setting of `topic_config` an existing topic
    lacks: a topic created before the setting was, which `ensure_topics` leaves as it is.
    A setting the broker does not report (the embedded broker reports none) is left out."""
    wanted = {topic: config for topic in TOPICS if (config := topic_config(topic))}
    admin = AIOKafkaAdminClient(**client_options(bootstrap_servers, security))
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in wanted]
        )
    finally:
        await admin.close()
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for _, _, _, topic, entries in response.resources:
            found[topic] = {entry[0]: entry[1] for entry in entries}
    return [
        (topic, key, value, actual)
        for topic, config in wanted.items()
        for key, value in config.items()
        if (actual := found.get(topic, {}).get(key)) is not None and actual != value
    ]


async def ensure_topics(
    bootstrap_servers: str,
    *,
    partitions: int,
    replication_factor: int,
    topics: Iterable[str] = TOPICS,
    security: BaseSecurity | None = None,
    skip_unauthorized: bool = False,
) -> list[str]:
    """Create every topic and its DLQ (one partition) if missing, each with
    `replication_factor` replicas and `min_insync_replicas` of them; returns those created.
    Existing topics are left as they are.

    On a cluster with ACLs a client sees only the topics it may use, and may not create any
    (an operator's admin principal does: deploy/SECURITY.md). With `skip_unauthorized`, the
    topics the broker refuses to create for that reason are left to the operator instead of
    failing: a service needs only its own, which the operator creates first.
    """
    config = {"min.insync.replicas": str(min_insync_replicas(replication_factor))}
    wanted = [
        NewTopic(t, partitions, replication_factor, topic_configs=config | topic_config(t))
        for t in topics
    ]
    wanted += [
        NewTopic(dlq_topic(t.name), 1, replication_factor, topic_configs=config) for t in wanted
    ]
    admin = AIOKafkaAdminClient(**client_options(bootstrap_servers, security))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        refused: set[str] = set()
        if missing:
            response = await admin.create_topics(missing)
            ignored = {0, _TOPIC_ALREADY_EXISTS}
            if skip_unauthorized:
                ignored.add(_TOPIC_AUTHORIZATION_FAILED)
            refused = {
                name
                for name, code, _ in response.topic_errors
                if code == _TOPIC_AUTHORIZATION_FAILED
            }
            failed = [
                f"{name}: {message or code}"
                for name, code, message in response.topic_errors
                if code not in ignored
            ]
            if failed:
                raise RuntimeError("could not create topics: " + "; ".join(failed))
        known = [t.name for t in wanted if t.name not in refused]
        await _wait_until_every_broker_knows(admin, known)
    finally:
        await admin.close()
    return [t.name for t in missing if t.name not in refused]


async def _wait_until_every_broker_knows(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> None:
    """Return once every broker's metadata lists `topics` with a leader for each partition.

    Apache Kafka answers CreateTopics once its controller has the topics; each broker learns
    them a moment later. A client that asks a broker for partitions in between (a consumer
    assigning itself a topic's partitions) finds none. The embedded broker knows at once.
    """
    deadline = time.monotonic() + _TOPICS_KNOWN_SECONDS
    unknown: list[str] = list(topics)
    while time.monotonic() < deadline:
        unknown = []
        # aiokafka's admin client has no public call that asks one given broker.
        for broker in admin._client.cluster.brokers():
            metadata = await admin._send_request_to_node(broker.nodeId, MetadataRequest(topics))
            for topic in metadata.to_object()["topics"]:
                partitions = topic["partitions"]
                if (
                    topic["error_code"]
                    or not partitions
                    or min(p["leader"] for p in partitions) < 0
                ):
                    unknown.append(f"{topic['topic']} on broker {broker.nodeId}")
        if not unknown:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(
        f"topics not known to every broker after {_TOPICS_KNOWN_SECONDS:.0f}s: {unknown[:5]}"
    )


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """The partitions of `topics` that exist now, for a consumer that assigns them itself.

    A started consumer knows the partitions of no topic on Apache Kafka: aiokafka bootstraps
    with a metadata request for an empty topic list, which Apache Kafka answers with none and
    the embedded broker with all. So ask for every topic's metadata first.
    """
    # aiokafka has no public call that refreshes the consumer's own metadata.
    await consumer._client.force_metadata_update()
    topics = list(topics)
    unseen = [topic for topic in topics if not consumer.partitions_for_topic(topic)]
    if unseen:
        # A listing of every topic leaves out those the cluster's ACLs hide from this client;
        # asked by name, the broker says which are refused rather than missing.
        client = consumer._client
        # Never auto-created: a cluster that creates topics on request must not here.
        request = MetadataRequest(unseen, allow_auto_topic_creation=False)
        metadata = await client.send(client.get_random_node(), request)
        refused = [
            topic["topic"]
            for topic in metadata.to_object()["topics"]
            if topic["error_code"] == _TOPIC_AUTHORIZATION_FAILED
        ]
        if refused:
            raise aiokafka.errors.TopicAuthorizationFailedError(", ".join(refused))
    return [
        TopicPartition(topic, partition)
        for topic in topics
        for partition in sorted(consumer.partitions_for_topic(topic) or ())
    ]


async def publish_event(broker: KafkaBroker, event: CloudEvent[Any]) -> None:
    """Publish to the event type's topic, keyed by its entity so its events stay in order."""
    spec = spec_for_type(event.type)
    await broker.publish(
        encode(event),
        topic=spec.topic,
        key=event_key(event),
        headers={"content-type": CONTENT_TYPE},
    )


@dataclass(frozen=True)
class Delivery:
    """Where a consumed message came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    # Who signed the event, once its signature was checked (shared.runtime.trust): the party
    # and owner id of the key, e.g. a brand; None when unsigned. Not part of where it came from.
    signed_by: Signer | None = field(default=None, compare=False)
    # The record's Kafka timestamp (ms since the epoch): when it reached our broker, or when
    # its producer sent it (the topic's timestamp type). None when unknown.
    timestamp_ms: int | None = field(default=None, compare=False)
    # The earliest time the event may take effect at: that timestamp less the clock skew
    # allowed, set by the consumer on topics that carry the broker's append time
    # (campaign.deals), so a sender cannot date a cancellation back past it.
    not_before: datetime | None = field(default=None, compare=False)

    @classmethod
    def of(cls, message: KafkaMessage) -> Delivery:
        record = message.raw_message
        assert not isinstance(record, tuple), "a batch message: use subscribe_event_batches"
        return cls.of_record(record)

    @classmethod
    def of_record(cls, record: ConsumerRecord[Any, Any]) -> Delivery:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value or b"",
            tuple(record.headers or ()),
            timestamp_ms=record.timestamp,
        )

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class RetryPolicy:
    initial_seconds: float = 0.1
    max_seconds: float = 10.0
    max_attempts: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.retry_initial_seconds,
            settings.retry_max_seconds,
            settings.handler_max_attempts,
        )

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so restarted replicas do not retry in step."""
        ceiling = min(self.max_seconds, self.initial_seconds * 2 ** min(attempt, 30))
        return random.uniform(ceiling / 2, ceiling)


_TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    aiokafka.errors.KafkaConnectionError,
    aiokafka.errors.KafkaTimeoutError,
)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, _TRANSIENT)


def dead_letter_correlation_id(delivery: Delivery) -> str:
    """The `correlation_id` of a record's dead letters: the record's own if it has one, else
    one derived from where it was read, so the copies each consuming service dead-letters of
    one record share it."""
    for name, value in delivery.headers:
        if name == "correlation_id" and value:
            return value.decode("utf-8", "replace")
    where = f"{delivery.topic}/{delivery.partition}/{delivery.offset}"
    return str(uuid.uuid5(_DEAD_LETTER_IDS, where))


class DeadLetters:
    """Sends failed messages to `<topic>.dlq`: original key and bytes, the reason in headers.

    Secret fields of the topic's events (a payout destination) are masked in the copy and the
    masked paths listed in `dlq.masked.fields`; such a record cannot be replayed as is.
    """

    def __init__(self, broker: KafkaBroker, *, service: str, retry: RetryPolicy) -> None:
        self._broker = broker
        self._service = service
        self._retry = retry

    async def send(self, delivery: Delivery, error_class: str, message: str) -> None:
        headers = {
            **{name: value.decode("utf-8", "replace") for name, value in delivery.headers},
            f"{DLQ_HEADER_PREFIX}error.class": error_class,
            f"{DLQ_HEADER_PREFIX}error.message": message[:2000],
            f"{DLQ_HEADER_PREFIX}source.topic": delivery.topic,
            f"{DLQ_HEADER_PREFIX}source.partition": str(delivery.partition),
            f"{DLQ_HEADER_PREFIX}source.offset": str(delivery.offset),
            f"{DLQ_HEADER_PREFIX}service": self._service,
            f"{DLQ_HEADER_PREFIX}failed.at": datetime.now(UTC).isoformat(),
        }
        # The original's own, or what the copy is: its bytes as they came (else the client
        # library sends an empty content-type).
        headers.setdefault("content-type", "application/octet-stream")
        value, masked = mask_secrets(delivery.topic, delivery.value)
        if masked:
            headers[MASKED_FIELDS_HEADER] = ",".join(masked)
        if len(value) > _DLQ_VALUE_LIMIT:
            # Oversized originals would be refused by the broker again; keep the head.
            headers[f"{DLQ_HEADER_PREFIX}original.bytes"] = str(len(value))
            value = value[:_DLQ_VALUE_LIMIT]
        attempt = 0
        while True:
            try:
                await self._broker.publish(
                    value,
                    topic=dlq_topic(delivery.topic),
                    key=delivery.key,
                    headers=headers,
                    correlation_id=dead_letter_correlation_id(delivery),
                )
                break
            except Exception as error:
                if not is_transient(error):
                    raise
                attempt += 1
                log.warning("dlq publish failed, retrying", source=str(delivery), error=repr(error))
                await asyncio.sleep(self._retry.delay(attempt))
        EVENTS_DEAD_LETTERED.labels(delivery.topic).inc()
        log.warning(
            "event dead-lettered",
            source=str(delivery),
            error_class=error_class,
            reason=message[:300],
        )


EventHandler = Callable[[CloudEvent[Any], Delivery], Awaitable[None]]
BatchHandler = Callable[[Sequence[tuple[CloudEvent[Any], Delivery]]], Awaitable[None]]


def dispatch_by_type(handlers: Mapping[str, EventHandler]) -> EventHandler:
    """One handler per event type; valid events of other types are acknowledged untouched."""

    async def dispatch(event: CloudEvent[Any], delivery: Delivery) -> None:
        handler = handlers.get(event.type)
        if handler is not None:
            await handler(event, delivery)

    return dispatch


# Checks that an event's sender was entitled to send it (shared.runtime.trust); raises
# EventRejected when not. Given the decoded event and its raw bytes; returns who signed it,
# None if unsigned.
SenderCheck = Callable[[CloudEvent[Any], bytes], Awaitable[Signer | None]]


class SafeConsumer:
    """Applies the failure policy in this module's docstring around event handlers."""

    def __init__(
        self,
        dead_letters: DeadLetters,
        retry: RetryPolicy,
        *,
        max_bytes: int = 1_048_576,
        max_clock_skew: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        check_sender: SenderCheck | None = None,
        counted: bool = True,
    ) -> None:
        # False for a second reader of records a counted consumer also reads (a follower,
        # shared.runtime.follow): each record is counted in the metrics once.
        self.counted = counted
        self.dead_letters = dead_letters
        self.retry = retry
        self.max_bytes = max_bytes
        self.max_clock_skew = max_clock_skew
        self.clock = clock
        self.check_sender = check_sender

    async def handle(self, delivery: Delivery, handler: EventHandler) -> None:
        """Decode one message and run `handler` on it under the failure policy."""
        started = time.perf_counter()
        decoded = await self.decode([delivery])
        if decoded:
            event = decoded[0][0]
            await self._call(lambda: handler(event, delivery), [delivery], give_up=False)
        HANDLER_SECONDS.labels(delivery.topic).observe(time.perf_counter() - started)

    async def handle_batch(self, deliveries: Sequence[Delivery], handler: BatchHandler) -> None:
        """Decode a batch, dead-letter the undecodable, hand the rest over in one call.

        A batch that fails for a non-transient reason is split in halves, recursively, so only
        the poison events reach the DLQ and the rest is still handled in batches, in order.
        """
        started = time.perf_counter()
        good = await self.decode(deliveries)
        if good:
            await self.apply(good, handler)
        for topic in {d.topic for d in deliveries} if self.counted else ():
            HANDLER_SECONDS.labels(topic).observe(time.perf_counter() - started)

    async def apply(
        self, batch: Sequence[tuple[CloudEvent[Any], Delivery]], handler: BatchHandler
    ) -> None:
        """Run `handler` on decoded events under the failure policy, bisecting on failure."""
        sources = [d for _, d in batch]
        if await self._call(lambda: handler(batch), sources, give_up=len(batch) > 1):
            return
        middle = len(batch) // 2
        await self.apply(batch[:middle], handler)
        await self.apply(batch[middle:], handler)

    def _with_not_before(self, delivery: Delivery) -> Delivery:
        # Only where the broker dates records: elsewhere the sender's time bounds nothing,
        # and the hot topics (orders, post metrics) are spared the work.
        if delivery.topic not in _ARRIVAL_TIMED:
            return delivery
        if delivery.timestamp_ms is None or delivery.timestamp_ms <= 0:
            return delivery
        arrived = datetime.fromtimestamp(delivery.timestamp_ms / 1000, UTC)
        return dataclasses.replace(delivery, not_before=arrived - self.max_clock_skew)

    async def decode(
        self, deliveries: Sequence[Delivery]
    ) -> list[tuple[CloudEvent[Any], Delivery]]:
        """The decodable messages as events; the others are dead-lettered."""
        good = []
        now = self.clock()
        for delivery in deliveries:
            try:
                event = decode(delivery.topic, delivery.value, max_bytes=self.max_bytes)
                check_not_future(event, now, self.max_clock_skew)
                check_key(event, delivery.key)
                delivery = self._with_not_before(delivery)
                if self.check_sender is not None:
                    signed_by = await self.check_sender(event, delivery.value)
                    if signed_by is not None:
                        delivery = dataclasses.replace(delivery, signed_by=signed_by)
            except EventDecodeError as error:
                self._failed(delivery.topic, error.error_class)
                await self.dead_letters.send(delivery, error.error_class, error.reason)
                continue
            except EventRejected as error:
                # The sender was not entitled to send it: refused before any handler sees it.
                self._failed(delivery.topic, type(error).__name__)
                await self.dead_letters.send(delivery, type(error).__name__, error.reason)
                continue
            except Exception as error:
                # A value the codec failed to classify is still poison, and must not escape:
                # an exception leaving the subscriber would be acknowledged and the message lost.
                error_class = type(error).__name__
                self._failed(delivery.topic, error_class)
                await self.dead_letters.send(delivery, error_class, f"undecodable: {error}")
                continue
            good.append((event, delivery))
        return good

    def _failed(self, topic: str, error_class: str) -> None:
        if self.counted:
            EVENTS_FAILED.labels(topic, error_class).inc()

    async def _call(
        self, call: Callable[[], Awaitable[None]], deliveries: list[Delivery], *, give_up: bool
    ) -> bool:
        """Run `call` under the retry policy and return True once the messages are dealt with
        (handled, or dead-lettered). With `give_up`, return False instead of dead-lettering."""
        where = str(deliveries[0]) if len(deliveries) == 1 else f"batch of {len(deliveries)}"
        topics = Counter(d.topic for d in deliveries)
        # An unexpected error's text may quote the event (a payout destination): on topics
        # with secret fields only its class and stack frames are kept.
        secret = any(secret_fields_of_topic(topic) for topic in topics)
        unexpected_failures = 0
        transient_failures = 0
        while True:
            try:
                await call()
                for topic, count in topics.items() if self.counted else ():
                    EVENTS_CONSUMED.labels(topic).inc(count)
                return True
            except Exception as error:
                error_class = type(error).__name__
                for topic in topics:
                    self._failed(topic, error_class)
                if isinstance(error, EventRejected):
                    reason = error.reason
                elif is_transient(error):
                    transient_failures += 1
                    delay = self.retry.delay(transient_failures)
                    log.warning(
                        "transient failure, retrying", where=where, error=repr(error), delay=delay
                    )
                    await asyncio.sleep(delay)
                    continue
                else:
                    unexpected_failures += 1
                    if unexpected_failures < self.retry.max_attempts:
                        if secret:
                            log.error(
                                "handler failed, retrying",
                                where=where,
                                error_class=error_class,
                                frames="".join(traceback.format_tb(error.__traceback__)),
                            )
                        else:
                            log.exception("handler failed, retrying", where=where)
                        await asyncio.sleep(self.retry.delay(unexpected_failures))
                        continue
                    text = "" if secret else f": {error}"
                    reason = f"{error_class}{text} (after {unexpected_failures} attempts)"
                if give_up:
                    return False
                for delivery in deliveries:
                    await self.dead_letters.send(delivery, error_class, reason)
                return True


async def _undecoded(message: StreamMessage[Any]) -> None:
    """Skip FastStream's body decoding: our handlers read the raw record through `decode`,
    and decoding each body as JSON first cost more than our own validation."""
    return None


def count_from_zero(topics: Iterable[str], consumer: SafeConsumer) -> None:
    """Give each input topic's consumed and dead-lettered series their 0 at once.

    Prometheus' `increase()` and `rate()` take a series' first sample as its start: a counter
    first exported at 1 has grown by nothing, so the first event dead-lettered on a topic
    after a (re)start would never raise deploy/prometheus/alerts.yml's DeadLettersGrowing.
    """
    if not consumer.counted:
        return  # a second reader of the same records (shared.runtime.follow)
    for topic in topics:
        EVENTS_CONSUMED.labels(topic)
        EVENTS_DEAD_LETTERED.labels(topic)


class _GroupMember(TypedDict):
    group_id: str
    auto_offset_reset: Literal["earliest"]
    ack_policy: AckPolicy
    fetch_max_wait_ms: int
    rebalance_timeout_ms: int
    group_instance_id: str | None


def _group_member(
    group_id: str, fetch_max_wait_ms: int, group_instance_id: str | None
) -> _GroupMember:
    """How a service's consumer joins its group, one message or a batch at a time alike: from
    the earliest offset, acknowledging each message once it is handled."""
    return _GroupMember(
        group_id=group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        fetch_max_wait_ms=fetch_max_wait_ms,
        rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        group_instance_id=group_instance_id,
    )


def subscribe_events(
    broker: KafkaBroker,
    topics: Sequence[str],
    *,
    group_id: str,
    handler: EventHandler,
    consumer: SafeConsumer,
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
    group_instance_id: str | None = None,
) -> None:
    """One consumer over `topics`, one message at a time, committing after each.

    A service uses one consumer (one group) for all its input topics: every new group member
    costs a rebalance, and the embedded broker delays a new group's first join by seconds.
    """

    count_from_zero(topics, consumer)

    @broker.subscriber(
        *topics,
        decoder=_undecoded,
        **_group_member(group_id, fetch_max_wait_ms, group_instance_id),
    )
    async def consume(message: KafkaMessage) -> None:
        await consumer.handle(Delivery.of(message), handler)


def subscribe_event_batches(
    broker: KafkaBroker,
    topics: Sequence[str],
    *,
    group_id: str,
    handler: BatchHandler,
    consumer: SafeConsumer,
    max_records: int = 500,
    batch_timeout_ms: int = 50,
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
    group_instance_id: str | None = None,
) -> None:
    """One consumer over `topics` in batches (one database transaction per batch).

    With `group_instance_id` (Settings.group_instance_id) the member is static: restarted under
    the same id, it gets its partitions back without waiting for its old session to expire."""

    count_from_zero(topics, consumer)

    @broker.subscriber(
        *topics,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        decoder=_undecoded,
        **_group_member(group_id, fetch_max_wait_ms, group_instance_id),
    )
    async def consume(message: KafkaMessage) -> None:
        records = message.raw_message
        deliveries = [Delivery.of_record(r) for r in records]
        await consumer.handle_batch(deliveries, handler)
