"""`creatorflow matching models list|promote|rollback` against the test database."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from services.matching.cli import matching
from services.matching.domain.features import FEATURES, HAND_WEIGHTS
from services.matching.domain.ranker import LinearRanker
from services.matching.store.postgres import PostgresMatchingStore
from shared.tools.infra import InfraUrls

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(infra: InfraUrls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", infra.database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", infra.kafka_bootstrap_servers)
    monkeypatch.setenv("REDIS_URL", infra.redis_url)


def invoke(*args: str) -> Result:
    # The commands run their own event loop (asyncio.run), so not on the test's loop thread.
    return CliRunner().invoke(matching, ["models", *args], env={"COLUMNS": "250"})


async def test_a_brand_s_rankers_are_listed_promoted_and_rolled_back(
    cli_env: None, db_pool: asyncpg.Pool
) -> None:
    brand = f"brand-cli-{uuid.uuid4().hex[:8]}"
    store = PostgresMatchingStore(db_pool)
    live = LinearRanker(f"lr-{brand}-1", {**HAND_WEIGHTS, "engagement": 0.3}, -0.1)
    refused = LinearRanker(f"lr-{brand}-2", {f: 0.1 for f in FEATURES}, 0.0)
    await store.save_model(live, 60, brand_id=brand, live=True, reason="held-out AUC 0.81")
    await store.save_model(refused, 90, brand_id=brand, reason="niche precision 0.40 < 0.95")

    listed = await asyncio.to_thread(invoke, "list", "--brand", brand)
    assert listed.exit_code == 0, listed.output
    assert "niche precision 0.40 < 0.95" in listed.output and "candidate" in listed.output
    assert "engagement +0.18" in listed.output and "live" in listed.output

    promoted = await asyncio.to_thread(invoke, "promote", refused.version)
    assert promoted.exit_code == 0, promoted.output
    assert f"{refused.version} is now live for brand {brand}" in promoted.output
    assert "the promotion gate had refused it: niche precision 0.40 < 0.95" in promoted.output
    again = await asyncio.to_thread(invoke, "promote", refused.version)
    assert again.exit_code == 1 and "already live" in again.output
    unknown = await asyncio.to_thread(invoke, "promote", f"lr-{brand}-nope")
    assert unknown.exit_code == 1 and "no stored ranker" in unknown.output

    back = await asyncio.to_thread(invoke, "rollback", brand)
    assert back.exit_code == 0 and f"back on {live.version}" in back.output
    back = await asyncio.to_thread(invoke, "rollback", brand)
    assert back.exit_code == 0 and "back on hand-v1" in back.output
    nothing = await asyncio.to_thread(invoke, "rollback", brand)
    assert nothing.exit_code == 1 and "no live ranker" in nothing.output
    none = await asyncio.to_thread(invoke, "list", "--brand", f"{brand}-none")
    assert none.exit_code == 0 and "ranked by hand-v1" in none.output
