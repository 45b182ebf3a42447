"""The matching store's port: the values it keeps and the transaction the unit of work runs
(shared/runtime/unit_of_work.py, docs/architecture.md §8).

A batch's writes go through a `MatchingTransaction` (inbox claim, the service's tables, the
outbox, all in one database transaction); reads of committed state and the rankers' own
changes go through the `MatchingStore`. `postgres.py` is the adapter, `memory.py` the fake;
both pass tests/unit/matching/store_contract.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

import numpy as np

from services.matching.domain.features import FEATURES
from services.matching.domain.profiles import Account
from services.matching.domain.ranker import (
    LABELS,
    OUTCOME_WEIGHT,
    PROFITABLE_ROAS,
    LinearRanker,
    TrainingSet,
)
from shared.contract.events import CreatorProfileUpserted, EventIdentity, MatchRequested
from shared.contract.money import FxSnapshot
from shared.runtime.unit_of_work import Transaction


@dataclass(frozen=True)
class StoredProfile:
    creator_id: str
    profile: CreatorProfileUpserted
    event_time: datetime
    event_id: str

    @property
    def account(self) -> Account:
        return self.creator_id, self.profile.platform


def as_json(request: MatchRequested) -> dict[str, object]:
    """A request's data as JSON values, as the store keeps it: what two requests under one
    id are compared by."""
    data: dict[str, object] = json.loads(request.model_dump_json())
    return data


@dataclass(frozen=True)
class Asked:
    """A request id as answered: its brand, its campaign and the request's data (as JSON
    values; None for a request answered before requests were kept)."""

    brand_id: str
    campaign_id: str
    request: dict[str, object] | None


@dataclass(frozen=True)
class Answer:
    """One `match.suggested` as recorded for learning and audit."""

    request_id: str
    campaign_id: str
    brand_id: str
    model_version: str
    fx_as_of: datetime | None
    fx_source: str | None
    filtered: dict[str, int]
    event_id: str
    suggestions: Sequence[tuple[str, int, float, Sequence[float]]]
    """(creator_id, rank, score, features in FEATURES order) per suggestion."""
    request: MatchRequested | None = None
    """The request answered: a brand's past briefs are the probes of its promotion gate."""


ModelStatus = Literal["candidate", "live", "retired", "rolled_back"]


@dataclass(frozen=True)
class StoredModel:
    """A ranker as stored: whose it is, whether it is in use, and why."""

    ranker: LinearRanker
    brand_id: str | None
    status: ModelStatus
    labels: int
    reason: str
    metrics: dict[str, float]
    trained_at: datetime


@dataclass(frozen=True)
class Outcome:
    """Realised performance of one deal, from `attribution.updated`."""

    deal_id: str
    campaign_id: str
    creator_id: str
    roas: Decimal | None
    cpe: Decimal | None
    as_of: datetime


@dataclass(frozen=True)
class Feedback:
    """A brand's verdict on a suggested creator, from `match.feedback`."""

    event: EventIdentity
    campaign_id: str
    creator_id: str
    decision: str
    request_id: str | None
    signed_by: str = ""
    """The brand that signed it; '' if unsigned."""


@dataclass(frozen=True)
class FollowerCount:
    creator_id: str
    platform: str
    observed_at: datetime
    followers: int


@dataclass(frozen=True, slots=True)
class KeptDeal:
    """What matching keeps of a signed deal: who is hired for which campaign, by whom ('' for
    a deal kept before deals carried a brand)."""

    campaign_id: str
    creator_id: str
    brand_id: str


class MatchingTransaction(Transaction, Protocol):
    """One unit of work's writes (and the reads that must see them): `claim` and `enqueue`
    of the runtime's transaction, and matching's own tables."""

    async def upsert_profiles(self, profiles: Sequence[StoredProfile]) -> set[Account]:
        """Store profiles newer than the stored ones of the same account (creator and
        platform); returns the accounts that changed."""
        ...

    async def record_followers(self, observations: Sequence[FollowerCount]) -> None:
        """Keep each follower count by (account, event time); a repeat is kept once."""
        ...

    async def record_hire(
        self, deal_id: str, campaign_id: str, creator_id: str, at: datetime, brand_id: str = ""
    ) -> None: ...

    async def record_cancellation(self, deal_id: str, brand_id: str, at: datetime) -> None:
        """Keep a deal's cancellation by `brand_id` (before its deal too; the first kept)."""
        ...

    async def kept_deals(self, deal_ids: Collection[str]) -> dict[str, KeptDeal]:
        """Each deal of `deal_ids` whose `deal.signed` is kept."""
        ...

    async def hired(
        self, campaign_ids: Collection[str], brands: Mapping[str, str] | None = None
    ) -> dict[str, frozenset[str]]:
        """Per campaign asked, the creators with a signed deal not cancelled by its brand, or
        a `hired` feedback, for it. With `brands` (the brand asking, per campaign), another
        brand's deals and feedback under the same campaign id do not count."""
        ...

    async def campaign_brands(self, campaign_ids: Collection[str]) -> dict[str, dict[str, str]]:
        """Per campaign with answered requests, the brand of each request (by request id)."""
        ...

    async def answered_for(self, request_ids: Collection[str]) -> dict[str, Asked]:
        """What each of these request ids was answered for, where it was."""
        ...

    async def save_answers(self, answers: Sequence[Answer]) -> set[str]:
        """Record answers; returns the request ids recorded. An answer to a request answered
        before (or earlier in `answers`) is not recorded."""
        ...

    async def record_feedback(self, feedback: Feedback) -> None:
        """Keep a brand's feedback (once per event); signed feedback counts (hires, labels)
        only for requests of the brand that signed it."""
        ...

    async def record_outcome(self, outcome: Outcome) -> None:
        """Keep the deal's latest attribution (by as_of)."""
        ...

    async def save_fx(self, snapshot: FxSnapshot, event_id: str, max_move: Decimal) -> bool:
        """Store an FX snapshot unless it is there (True when new) and judge it and every
        later one (shared.runtime.fx_store.save_judged)."""
        ...


class MatchingStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[MatchingTransaction]:
        """A new transaction: committed when the block exits normally, else rolled back."""
        ...

    def retrain_turn(self) -> AbstractAsyncContextManager[bool]:
        """Whether this replica may train rankers now (one replica at a time), held for the
        block."""
        ...

    async def fx_in_force(self, when: datetime) -> FxSnapshot | None:
        """The latest trusted FX snapshot with `as_of <= when`, or None."""
        ...

    async def count_profiles(self) -> int: ...

    async def profiles_of(self, creator_ids: Sequence[str]) -> list[CreatorProfileUpserted]:
        """The stored profiles of every account of `creator_ids` (unknown ids left out), in
        (creator_id, platform) order."""
        ...

    def iter_profiles(self, chunk: int) -> AsyncIterator[list[CreatorProfileUpserted]]:
        """Every stored profile, in (creator_id, platform) order, `chunk` at a time."""
        ...

    async def texts(self) -> list[tuple[Account, str]]:
        """(account, niche text) of every stored account."""
        ...

    async def performance(
        self, creator_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float, int]]:
        """(creator_id, sum of ROAS, deals with a ROAS) per creator (all creators if None)."""
        ...

    async def follower_history(
        self, creator_ids: Sequence[str] | None = None
    ) -> dict[Account, list[tuple[datetime, int]]]:
        """(event time, followers) per account of the creators, oldest first (all if None)."""
        ...

    async def label_count(self) -> int:
        """Feedback and outcomes received, matched to a suggestion or not (a cheap count)."""
        ...

    async def label_counts(self) -> dict[str, int]:
        """Labels (feedback + outcomes on suggested creators) per brand."""
        ...

    async def training_set(self, brand_id: str | None = None) -> TrainingSet:
        """Feedback and outcomes joined with the features each creator had when suggested,
        in the order they arrived; only the brand's when `brand_id` is given."""
        ...

    async def brand_history(
        self, brand_id: str, requests: int
    ) -> tuple[list[MatchRequested], frozenset[str]]:
        """The brand's latest `requests` requests (oldest first) and every creator it was
        ever suggested."""
        ...

    async def save_model(
        self,
        ranker: LinearRanker,
        labels: int,
        *,
        brand_id: str | None = None,
        live: bool = False,
        reason: str = "",
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Store a ranker; `live` makes it the brand's ranker and retires the one in use."""
        ...

    async def models(
        self, brand_id: str | None = None, *, status: ModelStatus | None = None
    ) -> list[StoredModel]:
        """Stored rankers, newest first; only the brand's and of that status when given."""
        ...

    async def promote(self, version: str) -> StoredModel:
        """Put a stored brand ranker in use; LookupError if unknown, ValueError if it has no
        brand or is already live."""
        ...

    async def rollback(self, brand_id: str) -> StoredModel | None:
        """Take the brand's live ranker out of use and put back the one live before it
        (None: the brand is back on the hand weights); LookupError if none is live."""
        ...


def training_set_of(rows: Sequence[tuple[Sequence[float], int, float]]) -> TrainingSet:
    """(features, label, weight) rows as the arrays a ranker trains on."""
    return TrainingSet(
        np.array([r[0] for r in rows], dtype=np.float32).reshape(len(rows), len(FEATURES)),
        np.array([r[1] for r in rows], dtype=np.int8),
        np.array([r[2] for r in rows], dtype=np.float32),
    )


def decision_label(decision: str) -> tuple[int, float]:
    return LABELS[decision]  # type: ignore[index]


def outcome_label(roas: Decimal) -> tuple[int, float]:
    return (1 if roas >= Decimal(str(PROFITABLE_ROAS)) else 0), OUTCOME_WEIGHT


def check_promotable(model: StoredModel) -> None:
    """Raise ValueError unless `model` can be put in use by an operator."""
    if model.brand_id is None:
        raise ValueError(
            f"{model.ranker.version} was trained for every brand at once; only a brand's own "
            "ranker can be put in use"
        )
    if model.status == "live":
        raise ValueError(f"{model.ranker.version} is already live for {model.brand_id}")
