from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from services.payouts.schema import SCHEMA
from shared.tools.infra import InfraUrls
from tests.integration.isolated import infra, schema_pool, topics
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.integration.payouts.paypal_server import FakePayPal
from tests.integration.payouts.stripe_server import FakeStripe
from tests.integration.payouts.wise_server import FakeWise

db_pool = schema_pool(SCHEMA)


@pytest.fixture(scope="module")
async def watcher(infra: InfraUrls, topics: None) -> AsyncIterator[StatusWatcher]:
    """Every `payouts.status` event of the test module, collected from the beginning."""
    async with StatusWatcher(infra.kafka_bootstrap_servers) as w:
        yield w


@pytest.fixture
async def cache(infra: InfraUrls) -> AsyncIterator[redis.Redis]:
    """A Redis client of the module's own servers, for the creator page."""
    client = redis.Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def cli_env(infra: InfraUrls, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's commands (`service_setup.invoke`) read this test database."""
    monkeypatch.setenv("DATABASE_URL", infra.database_url)


# Each rail's local server, following its documented API.
@pytest.fixture
async def stripe() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        yield server


@pytest.fixture
async def paypal() -> AsyncIterator[FakePayPal]:
    async with FakePayPal() as server:
        yield server


@pytest.fixture
async def wise() -> AsyncIterator[FakeWise]:
    async with FakeWise() as server:
        yield server


__all__ = ["cli_env", "db_pool", "infra", "paypal", "stripe", "topics", "watcher", "wise"]
