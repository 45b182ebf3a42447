"""Creator profiles in columns: what the index ingests, whatever they came from.

Events, database rows and the synthetic population all become a `ProfileColumns` batch, so
the index has one way in. Columns are plain lists (text, maps) and numpy arrays (numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.contract.events import Audience, CreatorProfileUpserted, GenderSplit
from shared.contract.events.vocabulary import AGE_BUCKETS, AgeBucket, DeliverableKind, Platform
from shared.contract.money import Money

GENDERS: Final = ("female", "male", "other")

Account = tuple[str, str]
"""(creator id, platform): one creator's account on one platform, what a profile describes."""


@dataclass(frozen=True)
class ProfileColumns:
    """A batch of creator profiles, one entry per creator in every column."""

    creator_id: list[str]
    handle: list[str]
    platform: list[Platform]
    followers: npt.NDArray[np.int64]
    avg_likes: npt.NDArray[np.float64]
    avg_comments: npt.NDArray[np.float64]
    avg_shares: npt.NDArray[np.float64]
    avg_views: npt.NDArray[np.float64]
    posts_last_30d: npt.NDArray[np.int64]
    bio: list[str]
    topics: list[tuple[str, ...]]
    country: list[str]
    language: list[str]
    audience_countries: list[dict[str, float]]
    audience_age: npt.NDArray[np.float32]
    """Shares per creator and AGE_BUCKETS entry, shape (n, 7)."""
    audience_gender: npt.NDArray[np.float32]
    """Shares per creator and GENDERS entry, shape (n, 3)."""
    rate_card: list[dict[DeliverableKind, Money]]
    payout_currency: list[str]

    def __len__(self) -> int:
        return len(self.creator_id)

    def text(self, i: int) -> str:
        """What the niche vectoriser reads for creator `i`."""
        return profile_text(self.bio[i], self.topics[i])

    def texts(self) -> list[str]:
        return [self.text(i) for i in range(len(self))]

    @classmethod
    def from_profiles(cls, profiles: Sequence[CreatorProfileUpserted]) -> ProfileColumns:
        def floats(name: str) -> npt.NDArray[np.float64]:
            return np.array([getattr(p, name) for p in profiles], dtype=np.float64)

        return cls(
            creator_id=[p.creator_id for p in profiles],
            handle=[p.handle for p in profiles],
            platform=[p.platform for p in profiles],
            followers=np.array([p.followers for p in profiles], dtype=np.int64),
            avg_likes=floats("avg_likes"),
            avg_comments=floats("avg_comments"),
            avg_shares=floats("avg_shares"),
            avg_views=floats("avg_views"),
            posts_last_30d=np.array([p.posts_last_30d for p in profiles], dtype=np.int64),
            bio=[p.bio for p in profiles],
            topics=[tuple(p.topics) for p in profiles],
            country=[p.country for p in profiles],
            language=[p.language for p in profiles],
            audience_countries=[dict(p.audience.countries) for p in profiles],
            audience_age=np.array(
                [[p.audience.age.get(b, 0.0) for b in AGE_BUCKETS] for p in profiles],
                dtype=np.float32,
            ).reshape(len(profiles), len(AGE_BUCKETS)),
            audience_gender=np.array(
                [
                    [p.audience.gender.female, p.audience.gender.male, p.audience.gender.other]
                    for p in profiles
                ],
                dtype=np.float32,
            ).reshape(len(profiles), len(GENDERS)),
            rate_card=[dict(p.rate_card) for p in profiles],
            payout_currency=[p.payout_currency for p in profiles],
        )

    def profile(self, i: int) -> CreatorProfileUpserted:
        """Creator `i` as the event payload (validated)."""
        ages: dict[AgeBucket, float] = {
            bucket: float(share)
            for bucket, share in zip(AGE_BUCKETS, self.audience_age[i], strict=True)
            if share > 0
        }
        female, male, other = (float(v) for v in self.audience_gender[i])
        return CreatorProfileUpserted(
            creator_id=self.creator_id[i],
            handle=self.handle[i],
            platform=self.platform[i],
            followers=int(self.followers[i]),
            avg_likes=float(self.avg_likes[i]),
            avg_comments=float(self.avg_comments[i]),
            avg_shares=float(self.avg_shares[i]),
            avg_views=float(self.avg_views[i]),
            posts_last_30d=int(self.posts_last_30d[i]),
            bio=self.bio[i],
            topics=self.topics[i],
            country=self.country[i],
            language=self.language[i],
            audience=Audience(
                countries=self.audience_countries[i],
                age=ages,
                gender=GenderSplit(female=female, male=male, other=other),
            ),
            rate_card=self.rate_card[i],
            payout_currency=self.payout_currency[i],
        )


def profile_text(bio: str, topics: Sequence[str]) -> str:
    """What the niche vectoriser reads of a creator: its bio and topics."""
    return f"{bio} {' '.join(topics)}"


def quoted_price(rate_card: dict[DeliverableKind, Money], deliverable: str) -> Money | None:
    """The price of `deliverable` on the rate card, else its cheapest entry in the card's
    first currency, else None (no rate card)."""
    if not rate_card:
        return None
    if deliverable in rate_card:
        return rate_card[deliverable]
    first_currency = next(iter(rate_card.values())).currency
    return min(
        (price for price in rate_card.values() if price.currency == first_currency),
        key=lambda price: price.amount,
    )
