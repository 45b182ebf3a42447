"""Reading settings at a command's start, with errors a user can act on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from faststream.security import BaseSecurity
from pydantic import ValidationError

from shared.runtime.config import Settings, settings_problems
from shared.runtime.kafka import (
    AUTHORIZATION_ERRORS,
    KafkaAccessError,
    KafkaSecurityError,
    authorization_failure,
    check_kafka_access,
)
from shared.runtime.kafka import kafka_security as security_of
from shared.tools.cli.console import fail
from shared.tools.infra import running_urls

# Embedded servers are found through the data directory they were started with.
_WHERE_EMBEDDED = (
    "if they run already, run this from the directory they were started in, or set "
    "CREATORFLOW_DATA_DIR to theirs"
)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        fail(
            f"invalid settings: {settings_problems(error)}",
            hint="check the environment variables in README.md",
        )


def database_url(service: str) -> str:
    """`service`'s database: `<SERVICE>_DATABASE_URL`, DATABASE_URL, or the embedded database
    `creatorflow up` or `infra up` started."""
    settings = load_settings()
    configured = settings.database_url_of(service)
    if configured is not None:
        return configured
    urls = running_urls(settings, service)
    if urls is None:
        fail(
            "no database to talk to",
            hint=(
                "set DATABASE_URL, or start the embedded servers: creatorflow up (or infra up); "
                f"{_WHERE_EMBEDDED}"
            ),
        )
    return urls.database_url


def bootstrap_servers() -> str:
    """KAFKA_BOOTSTRAP_SERVERS, or the embedded broker `creatorflow infra up` started."""
    settings = load_settings()
    if settings.kafka_bootstrap_servers:
        return settings.kafka_bootstrap_servers
    urls = running_urls(settings)
    if urls is None:
        fail(
            "no Kafka to talk to",
            hint=(
                "set KAFKA_BOOTSTRAP_SERVERS, or start the embedded one: creatorflow infra up; "
                f"{_WHERE_EMBEDDED}"
            ),
        )
    return urls.kafka_bootstrap_servers


def kafka_security() -> BaseSecurity | None:
    """TLS and SASL for Kafka clients, from KAFKA_SECURITY_PROTOCOL and friends."""
    try:
        return security_of(load_settings())
    except KafkaSecurityError as error:
        fail(str(error), hint="check the KAFKA_SSL_* variables in README.md")


def kafka_client() -> tuple[str, BaseSecurity | None]:
    """Bootstrap servers and security for a command's Kafka clients, once a broker has let
    this client in: a refused login or certificate stops the command with one line."""
    bootstrap = bootstrap_servers()
    security = kafka_security()
    try:
        asyncio.run(_check_access(bootstrap, security))
    except KafkaAccessError as error:
        # A refusal's message names the settings to check; no answer at all may be no broker.
        unreachable = "is KAFKA_BOOTSTRAP_SERVERS right? `creatorflow up` runs a local one"
        fail(str(error), hint=None if error.refused else unreachable)
    return bootstrap, security


async def _check_access(bootstrap: str, security: BaseSecurity | None) -> None:
    # A broker that refuses the TLS handshake leaves aiokafka's reader future failed and
    # never retrieved; asyncio would log it with a traceback when it is collected, after the
    # one line the command prints. The handler stays with this loop, collected or not.
    asyncio.get_running_loop().set_exception_handler(_quiet_refused_connections)
    await check_kafka_access(bootstrap, security)


def _quiet_refused_connections(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    unretrieved = context.get("message") == "Future exception was never retrieved"
    if not (unretrieved and isinstance(context.get("exception"), OSError)):
        loop.default_exception_handler(context)


@contextlib.contextmanager
def kafka_refusals() -> Iterator[None]:
    """Stop the command with one line when the cluster's ACLs refuse what it asked."""
    try:
        yield
    except AUTHORIZATION_ERRORS as error:
        fail(
            authorization_failure(error),
            hint="`creatorflow kafka acls` lists what each principal may read and write",
        )
