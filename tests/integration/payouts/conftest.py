from collections.abc import AsyncIterator

import pytest

from services.payouts.schema import SCHEMA
from shared.tools.infra import InfraUrls
from tests.integration.isolated import infra, schema_pool, topics
from tests.integration.payouts.kafka_io import StatusWatcher

db_pool = schema_pool(SCHEMA)


@pytest.fixture(scope="module")
async def watcher(infra: InfraUrls, topics: None) -> AsyncIterator[StatusWatcher]:
    """Every `payouts.status` event of the test module, collected from the beginning."""
    async with StatusWatcher(infra.kafka_bootstrap_servers) as w:
        yield w


__all__ = ["db_pool", "infra", "topics", "watcher"]
