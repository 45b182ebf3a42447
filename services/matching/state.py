"""What a matching replica keeps in memory, and its upkeep: the index rebuilt from the
store at start-up and refitted as it grows, each brand's ranker loaded, trained and judged.

All of it can be rebuilt from PostgreSQL. The handlers (`handlers.py`) change it only after
their unit of work committed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog

from services.matching.domain.follower_history import largest_jump
from services.matching.domain.index import CreatorIndex
from services.matching.domain.learning import Verdict, learn_brand
from services.matching.domain.ranker import HAND_RANKER, LinearRanker
from services.matching.settings import MatchingSettings
from services.matching.store.port import MatchingStore
from services.matching.translate import match_query, profile_columns
from shared.contract.money import FxSnapshot

log = structlog.get_logger(__name__)


@dataclass
class MatchingState:
    """What the service keeps in memory; all of it can be rebuilt from Postgres."""

    index: CreatorIndex
    rankers: dict[str, LinearRanker] = field(default_factory=dict)
    """Each brand's live ranker; a brand without one is ranked by the hand weights."""
    labels_at_training: dict[str, int] = field(default_factory=dict)
    """Per brand, the label count its last ranker (live or not) was trained on."""
    trained_at: float = field(default_factory=time.monotonic)
    labels_seen: int = -1
    """Labels received at the last retraining check (-1: none made yet)."""
    fx: FxSnapshot | None = None

    def ranker_for(self, brand_id: str) -> LinearRanker:
        return self.rankers.get(brand_id, HAND_RANKER)


class MatchingService:
    """A replica's memory (`state`) and its upkeep, read from and written to `store`."""

    def __init__(
        self, store: MatchingStore, settings: MatchingSettings, state: MatchingState
    ) -> None:
        self._store = store
        self._settings = settings
        self.scoring = settings.scoring()
        self.state = state
        # Held while the index changes, and while it is read outside a worker thread.
        self.index_lock = asyncio.Lock()

    async def judge_follower_history(self, creator_ids: list[str] | None) -> None:
        history = await self._store.follower_history(creator_ids)
        jumps = {account: largest_jump(points) for account, points in history.items()}
        self.state.index.record_follower_jumps(jumps)

    async def refit(self) -> None:
        """Refit the vectoriser and anomaly model on every stored creator, off the event loop."""
        index = self.state.index
        rows_and_texts = [
            (index.account_row(*account), text) for account, text in await self._store.texts()
        ]
        texts = [(row, text) for row, text in rows_and_texts if row is not None]
        rows = np.array([row for row, _ in texts], dtype=np.int64)
        started = time.perf_counter()
        await asyncio.to_thread(index.refit, [text for _, text in texts], rows)
        log.info(
            "matching index refitted",
            creators=len(index),
            seconds=round(time.perf_counter() - started, 2),
        )

    async def rebuild(self) -> None:
        """Load every stored creator, performance, the latest FX snapshot and ranker."""
        started = time.perf_counter()
        index = await self._load_index()
        for creator_id, roas_total, deals in await self._store.performance():
            index.record_performance(creator_id, roas_total, deals)
        self.state.index = index
        await self.judge_follower_history(None)
        self.state.fx = await self._store.fx_in_force(datetime.now(UTC))
        await self.load_models(history=True)
        log.info(
            "matching index ready",
            creators=len(index),
            seconds=round(time.perf_counter() - started, 2),
            brand_rankers=len(self.state.rankers),
        )

    async def _load_index(self) -> CreatorIndex:
        """Every stored profile in a new index, chunk by chunk, fitted once at the end."""
        total = await self._store.count_profiles()
        index = CreatorIndex(seed=self._settings.seed)
        texts: list[str] = []
        rows: list[np.ndarray[Any, Any]] = []
        loaded = 0
        async for chunk in self._store.iter_profiles(self._settings.rebuild_chunk):
            columns = profile_columns(chunk)
            written, picks = index.upsert(columns, encode_text=False)
            texts += [columns.text(int(i)) for i in picks]
            rows.append(written)
            loaded += len(chunk)
            log.info(
                "matching index rebuild",
                loaded=loaded,
                total=total,
                percent=round(100 * loaded / max(total, 1)),
            )
        if loaded:
            await asyncio.to_thread(index.refit, texts, np.concatenate(rows))
        return index

    async def load_models(self, *, history: bool = False) -> None:
        """Put in use every brand's live ranker, as stored (promotions and rollbacks made
        with `creatorflow matching models` take effect here); with `history`, also learn
        how many labels each brand's last ranker was trained on."""
        live = await self._store.models(status="live")
        self.state.rankers = {m.brand_id: m.ranker for m in live if m.brand_id is not None}
        for m in await self._store.models() if history else ():
            if m.brand_id is not None:
                trained = self.state.labels_at_training.get(m.brand_id, 0)
                self.state.labels_at_training[m.brand_id] = max(trained, m.labels)

    async def retrain_once(self) -> list[tuple[LinearRanker, Verdict]]:
        """Train a ranker for each brand with enough new labels (or when the schedule is due),
        judge it with the promotion gate and store it; only a promoted one is used."""
        due = time.monotonic() - self.state.trained_at >= self._settings.retrain_interval_seconds
        received = await self._store.label_count()  # cheap: per brand only when it moved
        if received == self.state.labels_seen and not due:
            return []
        self.state.labels_seen = received
        trained = []
        for brand_id, labels in sorted((await self._store.label_counts()).items()):
            new = labels - self.state.labels_at_training.get(brand_id, 0)
            if labels < self._settings.learning_min_labels or new <= 0:
                continue
            if new < self._settings.retrain_every_labels and not due:
                continue
            outcome = await self._train_brand(brand_id, labels)
            if outcome is not None:
                trained.append(outcome)
        if due:
            self.state.trained_at = time.monotonic()
        return trained

    async def _train_brand(self, brand_id: str, labels: int) -> tuple[LinearRanker, Verdict] | None:
        data = await self._store.training_set(brand_id)
        briefs, shown = await self._store.brand_history(
            brand_id, self._settings.learning_probe_requests
        )
        queries = [match_query(b) for b in briefs]
        current = self.state.ranker_for(brand_id)
        version = f"lr-{brand_id}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{labels}"
        # Like the refit, the fit runs in a worker thread and only reads the index.
        learned = await asyncio.to_thread(
            learn_brand,
            data, queries, shown, current, self.state.index, self.state.fx, self.scoring,
            self._settings.learning(), version=version,
        )  # fmt: skip
        self.state.labels_at_training[brand_id] = labels
        if learned is None:
            return None  # nothing to learn from yet (one outcome only): wait for more labels
        ranker, verdict = learned
        await self._store.save_model(
            ranker, labels, brand_id=brand_id, live=verdict.promote, reason=verdict.reason,
            metrics=verdict.metrics,
        )  # fmt: skip
        if verdict.promote:
            self.state.rankers[brand_id] = ranker
            log.info("matching ranker promoted", brand_id=brand_id, model_version=version,
                     reason=verdict.reason, labels=len(data))  # fmt: skip
        else:
            log.warning("matching ranker stored, not used", brand_id=brand_id,
                        model_version=version, reason=verdict.reason, labels=len(data))  # fmt: skip
        return ranker, verdict

    async def retrain_loop(self) -> None:
        """Pick up promotions and rollbacks; train in one replica at a time, which first
        learns what the others trained (so a brand's labels are trained on once)."""
        while True:
            await asyncio.sleep(self._settings.retrain_check_seconds)
            async with self._store.retrain_turn() as mine:
                if not mine:
                    await self.load_models()
                    continue
                await self.load_models(history=True)
                await self.retrain_once()
