"""Post metric snapshots: which one is current, which deals a post counts for.

Snapshots are cumulative, so a post's numbers are those of its latest snapshot, never a sum.
"Latest" is the greatest (observed_at, event_id): two snapshots observed at the same instant
are ordered by event id, so every delivery order picks the same one. Tags are the union over
all snapshots. A post's creator, kind, posting time and deal are taken from its latest
snapshot; collectors are expected to keep them fixed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Final

from services.tracking.domain.deals import DealTerms
from services.tracking.domain.quotient import rounded_quotient

POST_RATE_PLACES: Final = 12
"""Decimal places kept of one post's engagement rate (round half even)."""

_CAPTION_TAG: Final = re.compile(r"[#@][\w.]*\w")


def normalise_tag(tag: str) -> str:
    """Tags compare case-insensitively: '#AD' and '#ad' are the same tag."""
    return tag.strip().casefold()


def tags_carried(tags: Iterable[str], caption: str | None) -> frozenset[str]:
    """Normalised tags of a post: its tag list plus the #hashtags and @mentions in its caption."""
    found = {normalise_tag(t) for t in tags}
    if caption:
        found.update(normalise_tag(t) for t in _CAPTION_TAG.findall(caption))
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class PostSnapshot:
    """One post's cumulative metrics at `observed_at`; `tags` are normalised."""

    post_id: str
    creator_id: str
    platform: str
    kind: str
    deal_id: str | None
    tags: frozenset[str]
    posted_at: datetime
    observed_at: datetime
    event_id: str
    likes: int
    comments: int
    shares: int
    saves: int
    views: int
    impressions: int
    reach: int
    followers: int

    @property
    def version(self) -> tuple[datetime, str]:
        return (self.observed_at, self.event_id)

    @property
    def engagement_rate(self) -> Decimal | None:
        """(likes + comments + shares) / followers, rounded to POST_RATE_PLACES decimals;
        None when the creator had no followers at observation."""
        if self.followers == 0:
            return None
        return rounded_quotient(
            self.likes + self.comments + self.shares, self.followers, POST_RATE_PLACES
        )


def merge_snapshot(current: PostSnapshot | None, incoming: PostSnapshot) -> PostSnapshot:
    """What is known of a post once `incoming` is seen: the latest snapshot's fields, with
    every tag any snapshot carried (a disclosure once seen stays seen, whatever the order
    snapshots arrive in)."""
    if current is None:
        return incoming
    latest = incoming if incoming.version > current.version else current
    return replace(latest, tags=current.tags | incoming.tags)


def latest_snapshots(snapshots: Iterable[PostSnapshot]) -> list[PostSnapshot]:
    """`snapshots` merged per post (merge_snapshot), one per post_id."""
    # The same fold as merge_snapshot, with one copy per post instead of one per snapshot.
    latest: dict[str, PostSnapshot] = {}
    tags: dict[str, frozenset[str]] = {}
    for snapshot in snapshots:
        post_id = snapshot.post_id
        current = latest.get(post_id)
        if current is None:
            latest[post_id] = snapshot
            tags[post_id] = snapshot.tags
            continue
        if snapshot.version > current.version:
            latest[post_id] = snapshot
        if not snapshot.tags <= tags[post_id]:
            tags[post_id] = tags[post_id] | snapshot.tags
    return [
        post if post.tags == tags[post_id] else replace(post, tags=tags[post_id])
        for post_id, post in latest.items()
    ]


def post_belongs_to_deal(post: PostSnapshot, deal: DealTerms) -> bool:
    """Whether the post's metrics count for `deal`.

    The post must be by the deal's creator. A post that names a deal counts for that deal
    only; a post that names none counts for each of the creator's deals whose period
    [starts_at, ends_at] contains `posted_at`.
    """
    if post.creator_id != deal.creator_id or not deal.live_at(post.posted_at):
        return False  # nothing posted after the deal's cancellation counts
    if post.deal_id is not None:
        return post.deal_id == deal.deal_id
    return deal.runs_at(post.posted_at)


def memberships(posts: Iterable[PostSnapshot], deals: Iterable[DealTerms]) -> set[tuple[str, str]]:
    """Every (deal_id, post_id) pair where the post counts for the deal."""
    by_creator: dict[str, list[DealTerms]] = {}
    for deal in deals:
        by_creator.setdefault(deal.creator_id, []).append(deal)
    return {
        (deal.deal_id, post.post_id)
        for post in posts
        for deal in by_creator.get(post.creator_id, ())
        if post_belongs_to_deal(post, deal)
    }
