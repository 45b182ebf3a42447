import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.tracking.app import SERVICE, make_setup
from services.tracking.schema import SCHEMA
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from tests.integration.isolated import infra, schema_pool, topics

db_pool = schema_pool(SCHEMA)


@pytest.fixture(scope="module")
async def service(infra: InfraUrls, topics: None) -> AsyncIterator[ServiceRuntime]:
    """The tracking service, one instance for the test module, under a group of its own."""
    group = f"tracking-test-{uuid.uuid4().hex[:8]}"
    async with ServiceRuntime(
        SERVICE, make_setup(group_id=group), schema=SCHEMA, urls=infra
    ) as runtime:
        yield runtime


@pytest.fixture
def pool(service: ServiceRuntime) -> asyncpg.Pool:
    """The running service's database pool."""
    assert service.resources is not None
    return service.resources.pool


__all__ = ["db_pool", "infra", "pool", "service", "topics"]
