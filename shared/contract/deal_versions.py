"""Which version of a deal's terms is in force, as every consumer of `deal.signed`,
`deal.amended` and `deal.cancelled` must decide it (docs/architecture.md §3, amendments).

`deal.signed` is version 1 and each `deal.amended` a later one. An amendment never changes
who the deal is between or its currency, and one sent after the deal's cancellation never
counts. Each service keeps its own terms type; both satisfy `DealVersion`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol, TypeVar


class DealVersion(Protocol):
    """What deciding the terms in force reads of one version of a deal's terms."""

    @property
    def deal_id(self) -> str: ...

    @property
    def campaign_id(self) -> str: ...

    @property
    def creator_id(self) -> str: ...

    @property
    def brand_id(self) -> str: ...

    @property
    def currency(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def sent_at(self) -> datetime | None: ...


Terms = TypeVar("Terms", bound=DealVersion)

# What an amendment may never change, as named in a refusal.
_FIXED_BY_SIGNING: tuple[tuple[str, Callable[[DealVersion], str]], ...] = (
    ("data.campaign_id", lambda t: t.campaign_id),
    ("data.creator_id", lambda t: t.creator_id),
    ("data.brand_id", lambda t: t.brand_id),
    ("data.fee.currency", lambda t: t.currency),
)


def changed_identity(terms: DealVersion, amended: DealVersion) -> str | None:
    """Why `amended` cannot be a version of the deal `terms` states (the field it changes and
    how), or None: the campaign, creator, brand and fee currency are fixed when it is signed."""
    for name, value in _FIXED_BY_SIGNING:
        if value(amended) != value(terms):
            return (
                f"{name}: {value(amended)!r} differs from deal {terms.deal_id}'s "
                f"{value(terms)!r}; an amendment never changes it"
            )
    return None


def highest_version(signed: Terms, versions: Iterable[Terms], ended: datetime | None) -> Terms:
    """The highest version among `signed` and the `versions` that may amend it
    (`changed_identity`) and were not sent after the deal ended at `ended` (None: never
    cancelled); the same whatever order they arrived in."""
    best = signed
    for amended in versions:
        late = ended is not None and amended.sent_at is not None and amended.sent_at > ended
        if (
            amended.version > best.version
            and not late
            and changed_identity(signed, amended) is None
        ):
            best = amended
    return best
