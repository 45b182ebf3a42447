"""The behaviour every `MatchingStore` must have; subclassed once per adapter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.matching.features import FEATURES
from services.matching.population import generate_population
from services.matching.ranker import HAND_RANKER, LinearRanker
from services.matching.store import Answer, MatchingStore, Outcome, StoredProfile

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def uid() -> str:
    return uuid.uuid4().hex[:10]


def answer(campaign: str, creators: list[str], request_id: str | None = None) -> Answer:
    return Answer(
        request_id=request_id or f"req-{uid()}",
        campaign_id=campaign,
        brand_id="brand",
        model_version=HAND_RANKER.version,
        fx_as_of=T0,
        fx_source="test",
        filtered={"excluded": 1},
        event_id=f"ev-{uid()}",
        suggestions=[
            (cid, rank, 0.5, [float(rank) / 10] * len(FEATURES))
            for rank, cid in enumerate(creators, start=1)
        ],
    )


class MatchingStoreContract:
    """Subclasses provide `store` and `transaction()` (an async context giving a connection)."""

    store: MatchingStore

    def transaction(self) -> Any:
        raise NotImplementedError

    async def test_the_newest_profile_wins_whatever_the_arrival_order(self) -> None:
        population = generate_population(2, seed=1, id_prefix=f"st{uid()}")
        first, second = population.profiles.profile(0), population.profiles.profile(1)
        newer = second.model_copy(update={"creator_id": first.creator_id, "handle": "@newer"})
        async with self.transaction() as conn:
            changed = await self.store.upsert_profiles(
                conn, [StoredProfile(first.creator_id, newer, T0 + timedelta(1), "e2")]
            )
            assert changed == {first.creator_id}
            stale = await self.store.upsert_profiles(
                conn, [StoredProfile(first.creator_id, first, T0, "e1")]
            )
            assert stale == set()
        stored = [p async for chunk in self.store.iter_profiles(1000) for p in chunk]
        mine = [p for p in stored if p.creator_id == first.creator_id]
        assert [p.handle for p in mine] == ["@newer"]
        texts = dict(await self.store.texts())
        assert texts[first.creator_id].startswith(newer.bio)

    async def test_hires_come_from_deals_and_hired_feedback(self) -> None:
        campaign = f"cmp-{uid()}"
        async with self.transaction() as conn:
            await self.store.record_hire(conn, f"deal-{uid()}", campaign, "cr-a", T0)
            await self.store.record_feedback(
                conn, ("brand-tool", f"fb-{uid()}"), campaign, "cr-b", "hired", None
            )
            await self.store.record_feedback(
                conn, ("brand-tool", f"fb-{uid()}"), campaign, "cr-c", "declined", None
            )
            await self.store.record_hire(conn, f"deal-{uid()}", "other", "cr-d", T0)
            assert await self.store.hired(conn, campaign) == {"cr-a", "cr-b"}

    async def test_a_request_is_answered_once(self) -> None:
        first = answer(f"cmp-{uid()}", ["cr-a"])
        async with self.transaction() as conn:
            assert await self.store.save_answer(conn, first)
            assert not await self.store.save_answer(conn, first)

    async def test_feedback_and_outcomes_become_labels_with_suggestion_features(self) -> None:
        campaign = f"cmp-{uid()}"
        before = await self.store.label_count()
        async with self.transaction() as conn:
            await self.store.save_answer(conn, answer(campaign, ["cr-x", "cr-y", "cr-z"]))
            await self.store.record_feedback(
                conn, ("brand-tool", f"fb-{uid()}"), campaign, "cr-x", "hired", None
            )
            await self.store.record_feedback(
                conn, ("brand-tool", f"fb-{uid()}"), campaign, "cr-y", "declined", None
            )
            deal = f"deal-{uid()}"
            await self.store.record_outcome(
                conn, Outcome(deal, campaign, "cr-z", Decimal("0.5"), None, T0)
            )
            await self.store.record_outcome(  # an older report does not overwrite a newer one
                conn, Outcome(deal, campaign, "cr-z", Decimal("9"), None, T0 - timedelta(1))
            )
        assert await self.store.label_count() == before + 3
        data = await self.store.training_set()
        rows = {
            tuple(round(float(x), 3) for x in f): (int(lbl), float(w))
            for f, lbl, w in zip(data.features, data.labels, data.weights, strict=True)
        }
        assert rows[(0.1,) * len(FEATURES)] == (1, 2.0)
        assert rows[(0.2,) * len(FEATURES)] == (0, 1.0)
        assert rows[(0.3,) * len(FEATURES)] == (0, 2.0)
        performance = dict((c, (s, n)) for c, s, n in await self.store.performance(["cr-z"]))
        assert performance["cr-z"] == (0.5, 1)

    async def test_the_latest_ranker_is_loaded_back(self) -> None:
        ranker = LinearRanker(f"lr-{uid()}", {f: 0.1 for f in FEATURES}, -0.3)
        await self.store.save_model(ranker, 42)
        assert await self.store.latest_model() == (ranker, 42)
