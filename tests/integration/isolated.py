"""Fresh servers for each test module of a service.

Tests of one service share state through its schema and the topics in ways they must not
mix: the latest FX snapshot is the service's, one outbox relay leads per schema, and
consumer groups read topics from the beginning. Embedded servers start in about a second, so
every service test module gets its own. (With external servers configured, modules share them.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from shared.runtime.db import ServiceSchema
from shared.tools.infra import InfraUrls
from tests.conftest import create_topics, embedded_servers, migrated_pool


@pytest.fixture(scope="module")
def infra() -> Iterator[InfraUrls]:
    yield from embedded_servers()


@pytest.fixture(scope="module")
async def topics(infra: InfraUrls) -> None:
    await create_topics(infra)


def schema_pool(schema: ServiceSchema) -> Callable[..., Any]:
    """A module-scoped `db_pool` fixture on `schema`, the schema of the service under test."""

    @pytest.fixture(scope="module")
    async def db_pool(infra: InfraUrls) -> AsyncIterator[asyncpg.Pool]:
        async for pool in migrated_pool(infra, schema):
            yield pool

    return db_pool
