"""Automatic deliverable confirmation.

A post fulfils a deliverable of a deal when it counts for the deal (posts.post_belongs_to_deal),
was posted within the deal period [starts_at, ends_at], is of the deliverable's kind and
carries every required tag (case-insensitive; caption hashtags count). A deliverable of
`count` n needs n distinct posts, and a post confirms at most one deliverable unit of a deal.

Per kind, deliverables are filled strictly in (due_by, deliverable_id) order: the next one is
confirmed once enough unused fulfilling posts exist, and a later one never jumps ahead of an
earlier unconfirmed one. So which deliverables end up confirmed depends only on how many
fulfilling posts there are, not on the order they arrived in. Posts are used earliest first
(posted_at, post_id). A confirmation, automatic or manual, is final and happens once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from services.tracking.domain.deals import DealTerms, DeliverableSpec
from services.tracking.domain.posts import PostSnapshot, normalise_tag, post_belongs_to_deal

AUTO: Final = "auto"
"""`confirmed_by` of confirmations made by tracking."""


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A deliverable confirmed with `post_ids` (empty for a manual one naming no post)."""

    deal_id: str
    deliverable_id: str
    post_ids: tuple[str, ...]
    confirmed_by: str
    confirmed_at: datetime
    # When the post snapshot that completed it reached CreatorFlow, if this confirmation was
    # made on that snapshot's arrival (for the post -> payout latency); None otherwise.
    post_received_at: datetime | None = None

    @property
    def post_id(self) -> str | None:
        """The post that completed the deliverable (the last one used), if any."""
        return self.post_ids[-1] if self.post_ids else None


@dataclass(frozen=True, slots=True)
class DeliverableState:
    """A deal with deliverables still open, the posts that count for it and what is
    already confirmed (deliverable_id -> post ids used)."""

    deal: DealTerms
    posts: tuple[PostSnapshot, ...]
    confirmed: Mapping[str, tuple[str, ...]]

    def all_confirmed_with(self, confirmations: Iterable[Confirmation]) -> bool:
        done = set(self.confirmed) | {c.deliverable_id for c in confirmations}
        return all(d.deliverable_id in done for d in self.deal.deliverables)


def fulfils(post: PostSnapshot, deal: DealTerms, deliverable: DeliverableSpec) -> bool:
    """Whether `post` can count towards `deliverable` of `deal` (module docstring rule)."""
    required = {normalise_tag(tag) for tag in deal.required_tags}
    return (
        post_belongs_to_deal(post, deal)
        and deal.runs_at(post.posted_at)
        and post.kind == deliverable.kind
        and required <= post.tags
    )


def confirmations_due(state: DeliverableState, now: datetime) -> list[Confirmation]:
    """New automatic confirmations for `state.deal`, stamped `now`; none once the deal is
    cancelled (those made before stay)."""
    deal = state.deal
    if deal.cancelled_at is not None:
        return []
    used = {post_id for post_ids in state.confirmed.values() for post_id in post_ids}
    free = sorted(
        (post for post in state.posts if post.post_id not in used),
        key=lambda post: (post.posted_at, post.post_id),
    )
    new: list[Confirmation] = []
    blocked_kinds: set[str] = set()
    for deliverable in sorted(deal.deliverables, key=lambda d: (d.due_by, d.deliverable_id)):
        if deliverable.deliverable_id in state.confirmed or deliverable.kind in blocked_kinds:
            continue
        fitting = [post for post in free if fulfils(post, deal, deliverable)]
        if len(fitting) < deliverable.count:
            blocked_kinds.add(deliverable.kind)
            continue
        chosen = fitting[: deliverable.count]
        free = [post for post in free if post not in chosen]
        new.append(
            Confirmation(
                deal.deal_id,
                deliverable.deliverable_id,
                tuple(post.post_id for post in chosen),
                AUTO,
                now,
            )
        )
    return new
