"""Creator profiles in columns: what the index ingests, whatever they came from.

Events (services/matching/translate.py), database rows and the synthetic population all
become a `ProfileColumns` batch, so the index has one way in. Columns are plain lists
(text, maps) and numpy arrays (numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.contract.events.vocabulary import DeliverableKind, Platform
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
