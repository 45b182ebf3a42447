"""The in-memory creator index: one row per platform account, one numpy array per attribute.

A creator with several platform accounts (Instagram, TikTok, YouTube...) has one row per
account, each with that account's own figures; `owner` ties the rows to their creator, and
scoring shows each creator once, with its best account (services/matching/domain/scoring.py).

Everything the request path needs is a column here, so scoring is a handful of vectorised
operations over the whole index. Rows are appended or overwritten in place by `upsert`; the
arrays grow by doubling. Each row of capacity takes about 160 bytes of arrays, plus the
account's niche vector (held twice: CSR and CSC), its id and handle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from services.matching.domain.authenticity import (
    AccountAnomalyModel,
    AccountNumbers,
    judge,
    trust_flags,
)
from services.matching.domain.engagement_pods import EngagementMix, suspected_pods
from services.matching.domain.features import (
    BENCHMARK_CURRENCY,
    QUOTED_DELIVERABLE,
    benchmark_post_cost,
    engagement_rates,
    tier_codes,
)
from services.matching.domain.follower_history import FollowerJump
from services.matching.domain.niche_vectors import NicheVectors
from services.matching.domain.profiles import Account, ProfileColumns, quoted_price
from shared.contract.events.vocabulary import PLATFORMS, TIERS
from shared.contract.money import Money

AUDIENCE_COUNTRIES_KEPT: Final = 8
"""Countries kept per creator audience (the largest shares); the tail is dropped."""

_MIN_ANOMALY_ACCOUNTS: Final = 200
_ANOMALY_SAMPLE: Final = 50_000
# Rows written with words the vocabulary lacks, as a share of the rows it was fitted on, that
# make a refit due before the index doubles: a new niche's creators become findable soon.
_NEW_WORDS_REFIT_SHARE: Final = 0.01
ColumnView = TypeVar("ColumnView", EngagementMix, AccountNumbers)
"""What the authenticity and pod checks read of the rows they judge."""


class Vocabulary:
    """Stable small-integer codes for strings (countries, languages, currencies)."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []
        for name in known:
            self.code(name)

    def code(self, name: str) -> int:
        found = self.codes.get(name)
        if found is None:
            found = self.codes[name] = len(self.names)
            self.names.append(name)
        return found

    def lookup(self, names: Iterable[str], size: int | None = None) -> npt.NDArray[np.bool_]:
        """Boolean table over codes: True for the codes of `names` (unknown names ignored)."""
        table = np.zeros(max(size or 0, len(self.names), 1), dtype=bool)
        for name in names:
            code = self.codes.get(name)
            if code is not None:
                table[code] = True
        return table


@dataclass
class Columns:
    """The numeric columns of the index (capacity rows; the first `size` are live)."""

    owner: npt.NDArray[np.int32]
    """Number of the account's creator (its position in `CreatorIndex.creators`)."""
    several: npt.NDArray[np.bool_]
    """True when the account's creator has other accounts too (the rows scoring merges)."""
    platform: npt.NDArray[np.int8]
    tier: npt.NDArray[np.int8]
    language: npt.NDArray[np.int16]
    country: npt.NDArray[np.int16]
    """Code (in `CreatorIndex.countries`) of the country the creator is based in."""
    followers: npt.NDArray[np.float32]
    avg_likes: npt.NDArray[np.float32]
    avg_comments: npt.NDArray[np.float32]
    avg_shares: npt.NDArray[np.float32]
    avg_views: npt.NDArray[np.float32]
    posts_last_30d: npt.NDArray[np.float32]
    engagement_rate: npt.NDArray[np.float32]
    audience_country: npt.NDArray[np.int16]
    """Codes of the largest audience countries, (capacity, AUDIENCE_COUNTRIES_KEPT); -1 pads."""
    audience_country_share: npt.NDArray[np.float32]
    audience_known: npt.NDArray[np.float32]
    audience_age: npt.NDArray[np.float32]
    audience_gender: npt.NDArray[np.float32]
    cost_minor: npt.NDArray[np.int64]
    cost_currency: npt.NDArray[np.int16]
    cost_estimated: npt.NDArray[np.bool_]
    authenticity: npt.NDArray[np.float32]
    red_flags: npt.NDArray[np.uint8]
    likely_fake: npt.NDArray[np.bool_]
    follower_spike: npt.NDArray[np.bool_]
    trust_flags: npt.NDArray[np.uint8]
    """Bit mask over authenticity.TRUST_FLAGS."""
    roas_sum: npt.NDArray[np.float64]
    roas_count: npt.NDArray[np.int32]

    @classmethod
    def empty(cls, capacity: int) -> Columns:
        kept = AUDIENCE_COUNTRIES_KEPT
        return cls(
            owner=np.zeros(capacity, np.int32),
            several=np.zeros(capacity, bool),
            platform=np.zeros(capacity, np.int8),
            tier=np.zeros(capacity, np.int8),
            language=np.zeros(capacity, np.int16),
            country=np.zeros(capacity, np.int16),
            followers=np.zeros(capacity, np.float32),
            avg_likes=np.zeros(capacity, np.float32),
            avg_comments=np.zeros(capacity, np.float32),
            avg_shares=np.zeros(capacity, np.float32),
            avg_views=np.zeros(capacity, np.float32),
            posts_last_30d=np.zeros(capacity, np.float32),
            engagement_rate=np.zeros(capacity, np.float32),
            audience_country=np.full((capacity, kept), -1, np.int16),
            audience_country_share=np.zeros((capacity, kept), np.float32),
            audience_known=np.zeros(capacity, np.float32),
            audience_age=np.zeros((capacity, 7), np.float32),
            audience_gender=np.zeros((capacity, 3), np.float32),
            cost_minor=np.zeros(capacity, np.int64),
            cost_currency=np.zeros(capacity, np.int16),
            cost_estimated=np.zeros(capacity, bool),
            authenticity=np.ones(capacity, np.float32),
            red_flags=np.zeros(capacity, np.uint8),
            likely_fake=np.zeros(capacity, bool),
            follower_spike=np.zeros(capacity, bool),
            trust_flags=np.zeros(capacity, np.uint8),
            roas_sum=np.zeros(capacity, np.float64),
            roas_count=np.zeros(capacity, np.int32),
        )

    def grown(self, capacity: int) -> Columns:
        bigger = Columns.empty(capacity)
        for name, array in vars(self).items():
            getattr(bigger, name)[: len(array)] = array
        return bigger

    def nbytes(self) -> int:
        return sum(array.nbytes for array in vars(self).values())


@dataclass
class CreatorIndex:
    """All creators' accounts, columnar. Not thread-safe: one writer, readers on the same
    thread."""

    seed: int = 0
    size: int = 0
    creator_ids: list[str] = field(default_factory=list)
    """The creator of each row (a creator with several accounts appears on several rows)."""
    handles: list[str] = field(default_factory=list)
    row_of: dict[str, int] = field(default_factory=dict)
    """The row of each creator's first indexed account; `accounts_of` gives every account."""
    several_accounts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per creator with more than one account, the row of each (platform -> row); most
    creators have one, and a dict each would cost about 200 bytes a creator."""
    creators: list[str] = field(default_factory=list)
    """Every creator once, in the order first indexed (`Columns.owner` numbers them)."""
    columns: Columns = field(default_factory=lambda: Columns.empty(1024))
    countries: Vocabulary = field(default_factory=Vocabulary)
    languages: Vocabulary = field(default_factory=Vocabulary)
    currencies: Vocabulary = field(default_factory=lambda: Vocabulary([BENCHMARK_CURRENCY]))
    platforms: Vocabulary = field(default_factory=lambda: Vocabulary(PLATFORMS))
    niche: NicheVectors = field(default_factory=NicheVectors)
    anomaly_model: AccountAnomalyModel | None = None
    anomaly_fitted_on: int = 0
    pending_performance: dict[str, tuple[float, int]] = field(default_factory=dict)
    follower_jumps: dict[Account, FollowerJump] = field(default_factory=dict)
    """The follower spike of each account whose history has one."""
    version: int = 0
    """Counts the changes to the rows: what is computed from them is valid for one version."""
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """What scoring computed from the rows of one version and keeps for the next requests
    (services/matching/domain/scoring.py: `SharedWork`)."""

    @classmethod
    def build(
        cls, profiles: ProfileColumns, *, seed: int = 0, niche: NicheVectors | None = None
    ) -> CreatorIndex:
        """An index of `profiles`, with the vectoriser and anomaly model fitted on them
        (`niche`: how texts are read, by default `NicheVectors(seed=seed)`)."""
        index = cls(seed=seed, niche=niche or NicheVectors(seed=seed))
        rows, picks = index.upsert(profiles, encode_text=False)
        index.refit([profiles.text(int(i)) for i in picks], rows)
        return index

    def __len__(self) -> int:
        return self.size

    def upsert(
        self, profiles: ProfileColumns, *, encode_text: bool = True
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Insert or replace `profiles` (the last one wins for a repeated account).

        Returns (rows, picks): the index row written for each profile position in `picks`.

        The anomaly model in place judges the new numbers; text is encoded with the current
        vocabulary (`encode_text=False` leaves it to a `refit` that follows).
        """
        last = {
            (creator_id, platform): i
            for i, (creator_id, platform) in enumerate(
                zip(profiles.creator_id, profiles.platform, strict=True)
            )
        }
        picks = np.fromiter(last.values(), dtype=np.int64, count=len(last))
        rows = np.array(
            [self._row_for(account, profiles.handle[i]) for account, i in last.items()], np.int64
        )
        self._write_numbers(rows, picks, profiles)
        if encode_text and self.niche.vectorizer is not None:
            self.niche.set_rows(rows, [profiles.text(int(i)) for i in picks], self.size)
        self.version += 1
        return rows, picks

    def needs_refit(self) -> bool:
        """True when the vectoriser or anomaly model was fitted on fewer than half the rows, or
        when rows with words the vocabulary lacks reach 1 % of those it was fitted on."""
        fitted = min(self.niche.fitted_documents, self.anomaly_fitted_on or self.size)
        unseen = self.niche.unseen_word_rows >= max(1.0, _NEW_WORDS_REFIT_SHARE * fitted)
        return self.size > 0 and (
            self.niche.vectorizer is None or self.size >= 2 * fitted or unseen
        )

    def refit(self, texts: Sequence[str], rows: npt.NDArray[np.int64]) -> None:
        """Refit the vectoriser on `texts` (of `rows`) and the anomaly model on every row, then
        re-encode and re-judge everything. CPU-heavy: run it off the event loop at scale."""
        self.niche.fit(texts, rows, self.size)
        self._refit_anomaly_model()
        self.version += 1

    def record_performance(self, creator_id: str, roas_sum: float, count: int) -> None:
        """Set a creator's realised ROAS total and number of deals on every account of it
        (kept for later if unknown): deals are signed with a creator, not an account."""
        rows = list(self.accounts_of(creator_id).values())
        if not rows:
            self.pending_performance[creator_id] = (roas_sum, count)
            return
        self.columns.roas_sum[rows] = roas_sum
        self.columns.roas_count[rows] = count
        self.version += 1

    def rows_of(self, creator_ids: Iterable[str]) -> list[int]:
        """The rows of every account of `creator_ids` (unknown ids ignored)."""
        return [row for cid in creator_ids for row in self.accounts_of(cid).values()]

    def record_follower_jumps(self, jumps: dict[Account, FollowerJump]) -> None:
        """Set accounts' largest follower jumps (from their history) and judge them again."""
        rows = []
        for account, jump in jumps.items():
            row = self.account_row(*account)
            if row is None:
                continue  # not indexed: its jump is recorded again with its next profile
            self.columns.follower_spike[row] = jump.is_spike
            if jump.is_spike:  # kept for its reason; most accounts have none to keep
                self.follower_jumps[account] = jump
            else:
                self.follower_jumps.pop(account, None)
            rows.append(row)
        if rows:
            self._judge(np.array(rows, dtype=np.int64))
            self.version += 1

    def engagement_mix(self, rows: slice | npt.NDArray[np.int64]) -> EngagementMix:
        return self._columns_as(EngagementMix, rows)

    def account_numbers(self, rows: slice | npt.NDArray[np.int64]) -> AccountNumbers:
        return self._columns_as(AccountNumbers, rows)

    def _columns_as(
        self, view: type[ColumnView], rows: slice | npt.NDArray[np.int64]
    ) -> ColumnView:
        """`rows` of the columns `view` has fields for (each field is the column of its name)."""
        return view(**{f.name: getattr(self.columns, f.name)[rows] for f in fields(view)})

    def cost(self, row: int) -> Money:
        """The quoted price of one post by the creator at `row`, in its own currency."""
        currency = self.currencies.names[int(self.columns.cost_currency[row])]
        return Money.from_minor(int(self.columns.cost_minor[row]), currency)

    def memory_bytes(self) -> int:
        """Bytes held by the numeric columns and niche vectors (Python strings not counted)."""
        return self.columns.nbytes() + self.niche.memory_bytes()

    def account_row(self, creator_id: str, platform: str) -> int | None:
        return self.accounts_of(creator_id).get(platform)

    def accounts_of(self, creator_id: str) -> dict[str, int]:
        """The row of each platform account of the creator (empty if unknown)."""
        several = self.several_accounts.get(creator_id)
        if several is not None:
            return several
        row = self.row_of.get(creator_id)
        return {} if row is None else {self.platform_of(row): row}

    def platform_of(self, row: int) -> str:
        return self.platforms.names[int(self.columns.platform[row])]

    def _row_for(self, account: Account, handle: str) -> int:
        creator_id, platform = account
        owned = self.accounts_of(creator_id)
        row = owned.get(platform)
        if row is not None:
            self.handles[row] = handle
            return row
        row = self.size
        if row >= len(self.columns.tier):
            self.columns = self.columns.grown(2 * len(self.columns.tier))
        c = self.columns
        c.platform[row] = self.platforms.code(platform)  # written again with the numbers
        if not owned:
            self.row_of[creator_id] = row
            c.owner[row] = len(self.creators)
            self.creators.append(creator_id)
        else:  # another account of a known creator: same creator, same track record
            first = self.row_of[creator_id]
            c.owner[row] = c.owner[first]
            c.roas_sum[row], c.roas_count[row] = c.roas_sum[first], c.roas_count[first]
            c.several[[row, *owned.values()]] = True
            self.several_accounts[creator_id] = {**owned, platform: row}
        self.creator_ids.append(creator_id)
        self.handles.append(handle)
        self.size += 1
        pending = self.pending_performance.pop(creator_id, None)
        if pending is not None:
            c.roas_sum[row], c.roas_count[row] = pending
        return row

    def _write_numbers(
        self, rows: npt.NDArray[np.int64], picks: npt.NDArray[np.int64], p: ProfileColumns
    ) -> None:
        c = self.columns
        followers = p.followers[picks].astype(np.float64)
        tiers = tier_codes(followers)
        c.platform[rows] = [self.platforms.code(p.platform[i]) for i in picks]
        c.tier[rows] = tiers
        c.language[rows] = [self.languages.code(p.language[i]) for i in picks]
        c.country[rows] = [self.countries.code(p.country[i]) for i in picks]
        c.followers[rows] = followers
        c.avg_likes[rows] = p.avg_likes[picks]
        c.avg_comments[rows] = p.avg_comments[picks]
        c.avg_shares[rows] = p.avg_shares[picks]
        c.avg_views[rows] = p.avg_views[picks]
        c.posts_last_30d[rows] = p.posts_last_30d[picks]
        c.engagement_rate[rows] = engagement_rates(
            followers, p.avg_likes[picks], p.avg_comments[picks], p.avg_shares[picks]
        )
        c.audience_age[rows] = p.audience_age[picks]
        c.audience_gender[rows] = p.audience_gender[picks]
        for row, i in zip(rows.tolist(), picks.tolist(), strict=True):
            shares = sorted(p.audience_countries[i].items(), key=lambda kv: -kv[1])
            c.audience_known[row] = sum(share for _, share in shares)
            kept = shares[:AUDIENCE_COUNTRIES_KEPT]
            c.audience_country[row] = -1
            c.audience_country_share[row] = 0.0
            c.audience_country[row, : len(kept)] = [self.countries.code(cc) for cc, _ in kept]
            c.audience_country_share[row, : len(kept)] = [share for _, share in kept]
            price = quoted_price(p.rate_card[i], QUOTED_DELIVERABLE)
            c.cost_estimated[row] = price is None
            if price is None:
                amount = benchmark_post_cost(int(p.followers[i]), TIERS[int(c.tier[row])])
                price = Money(amount.quantize(Decimal(1)), BENCHMARK_CURRENCY)
            c.cost_minor[row] = price.minor_units
            c.cost_currency[row] = self.currencies.code(price.currency)
        self._judge(rows)

    def _judge(self, rows: npt.NDArray[np.int64]) -> None:
        trust = trust_flags(
            suspected_pods(self.engagement_mix(rows)), self.columns.follower_spike[rows]
        )
        self.columns.trust_flags[rows] = trust
        authenticity, flags, fake = judge(self.account_numbers(rows), self.anomaly_model, trust)
        self.columns.authenticity[rows] = authenticity
        self.columns.red_flags[rows] = flags
        self.columns.likely_fake[rows] = fake

    def _refit_anomaly_model(self) -> None:
        everyone = np.arange(self.size, dtype=np.int64)
        if self.size >= _MIN_ANOMALY_ACCOUNTS:
            rng = np.random.default_rng(self.seed)
            sample = everyone
            if self.size > _ANOMALY_SAMPLE:
                sample = np.sort(rng.choice(self.size, _ANOMALY_SAMPLE, replace=False))
            inputs = self.account_numbers(sample).matrix()
            self.anomaly_model = AccountAnomalyModel(random_state=self.seed).fit(inputs)
            self.anomaly_fitted_on = self.size
        self._judge(everyone)
