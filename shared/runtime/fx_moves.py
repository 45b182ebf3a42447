"""Whether a new FX snapshot can be trusted: its rates against the last trusted snapshots.

One event on `fx.rates` decides every cross-currency amount, so a feed that publishes a
wrong rate (a typo, a unit slip, a forged event) must not move money. A snapshot is *suspect*
when a rate moved more than a set fraction since the last trusted snapshot, or since the last
trusted snapshot of its own base, or since the trusted snapshot in force a day before it (the
first trusted one, while the feed is younger than a day), or lies outside any real exchange
rate. The day's anchor stops a feed that walks a rate by steps each under the limit: six
steps of 24 % a second apart would otherwise triple it. Suspect snapshots
are stored with the reason; payouts never convert with one (they are held until a trusted
snapshot is in force), tracking and matching skip them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from shared.contract.money import FxSnapshot

# No currency has been worth more than 10^8 or less than 10^-8 units of another (the most
# extreme pairs today are about 10^6 apart): rates beyond that are a unit slip or a forgery.
MIN_RATE: Final = Decimal("1e-8")
MAX_RATE: Final = Decimal("1e8")
# A snapshot is also judged against the trusted one in force this long before it.
ANCHOR_AGE: Final = timedelta(days=1)


def _currencies(snapshot: FxSnapshot) -> set[str]:
    return {snapshot.base, *snapshot.rates}


def suspect_reason(
    snapshot: FxSnapshot, trusted: FxSnapshot | None, max_move: Decimal
) -> str | None:
    """Why `snapshot` must not be used, or None if it can be.

    `trusted` is the latest trusted snapshot before it (None for the first one: only the
    absolute bounds apply). Rates are compared as cross rates against a currency both
    snapshots quote (the trusted snapshot's base when possible), so snapshots with different
    bases compare too. A move is `max(new/old, old/new) - 1`; above `max_move` it is suspect.
    """
    extreme = sorted(c for c, r in snapshot.rates.items() if not MIN_RATE <= r <= MAX_RATE)
    if extreme:
        return (
            f"rates of {', '.join(extreme)} per {snapshot.base} are outside any real exchange "
            f"rate ({MIN_RATE}..{MAX_RATE})"
        )
    if trusted is None:
        return None
    common = _currencies(snapshot) & _currencies(trusted)
    if len(common) < 2:
        return None
    pivot = trusted.base if trusted.base in common else min(common)
    moved = []
    for currency in sorted(common - {pivot}):
        old = trusted.rate(pivot, currency)
        new = snapshot.rate(pivot, currency)
        change = max(new / old, old / new) - 1
        if change > max_move:
            moved.append(f"{currency} {old.normalize():f} -> {new.normalize():f} per {pivot}")
    if not moved:
        return None
    return (
        f"moved more than {max_move:.0%} since the trusted snapshot of "
        f"{trusted.as_of.isoformat()} ({trusted.source}): {'; '.join(moved)}"
    )


def judge(snapshot: FxSnapshot, references: Sequence[FxSnapshot], max_move: Decimal) -> str | None:
    """Why `snapshot` must not be used, or None: `suspect_reason` against each reference in
    turn (`references_for`), the first reason found."""
    if not references:
        return suspect_reason(snapshot, None, max_move)
    for trusted in references:
        reason = suspect_reason(snapshot, trusted, max_move)
        if reason is not None:
            return reason
    return None


def references_for(
    latest: Mapping[str, FxSnapshot], base: str, anchor: FxSnapshot | None = None
) -> list[FxSnapshot]:
    """What a new snapshot of `base` is judged against, given the latest trusted snapshot of
    each base before it: the latest of them all (the one in force), the latest of its own
    base, and `anchor` (the trusted one in force a day before it, `anchor_for`). The second
    matters when the one in force shares fewer than two currencies with it: a USD-based
    snapshot after a GBP-based one quoting only USD would otherwise compare to nothing, and a
    poisoned EUR rate would be trusted."""
    if not latest:
        return []
    references = [_newest(latest.values())]
    for other in (latest.get(base), anchor):
        if other is not None and other not in references:
            references.append(other)
    return references


def anchor_for(history: Sequence[FxSnapshot], snapshot: FxSnapshot) -> FxSnapshot | None:
    """The trusted snapshot in force `ANCHOR_AGE` before `snapshot` among `history` (trusted,
    sorted by `as_of` then source), or the first of them if none is that old."""
    if not history:
        return None
    at = bisect.bisect_right(history, snapshot.as_of - ANCHOR_AGE, key=_as_of)
    if at == 0:
        return history[0]
    # The latest as_of at or before that moment; among its sources, the smallest (_newest).
    same = bisect.bisect_left(history, history[at - 1].as_of, key=_as_of)
    return history[same]


def _as_of(snapshot: FxSnapshot) -> datetime:
    return snapshot.as_of


def latest_by_base(trusted: Iterable[FxSnapshot]) -> dict[str, FxSnapshot]:
    """The latest of `trusted` for each base (latest `as_of`, then the smallest source)."""
    latest: dict[str, FxSnapshot] = {}
    for snapshot in trusted:
        known = latest.get(snapshot.base)
        if known is None or _newest([known, snapshot]) is snapshot:
            latest[snapshot.base] = snapshot
    return latest


def _newest(snapshots: Iterable[FxSnapshot]) -> FxSnapshot:
    # Latest as_of, then the smallest source name (shared.runtime.fx_store.snapshot_at).
    return max(sorted(snapshots, key=lambda s: s.source), key=lambda s: s.as_of)


def rejudged(
    snapshots: Sequence[FxSnapshot], trusted: Iterable[FxSnapshot], max_move: Decimal
) -> list[FxSnapshot]:
    """`snapshots` (sorted by `as_of`, then source) each with its `suspect` reason set against
    the trusted snapshots strictly before it (`references_for`); `trusted` are (at least) the
    latest trusted snapshot of each base before them all, the first trusted one, and every
    trusted snapshot from the one in force `ANCHOR_AGE` before the first of them to
    `ANCHOR_AGE` before the last (their anchors, `anchor_for`).

    Judging every snapshot from a newly stored one onwards makes the verdicts a function of the
    snapshots alone, not of the order in which the feed's events arrived.
    """
    history = sorted(trusted, key=lambda s: (s.as_of, s.source))
    latest = latest_by_base(history)
    judged: list[FxSnapshot] = []
    candidates: dict[str, FxSnapshot] = {}
    trusted_now: list[FxSnapshot] = []  # trusted at this time, added to `history` after it
    for n, snapshot in enumerate(snapshots):
        if n and snapshot.as_of != snapshots[n - 1].as_of:
            latest.update(candidates)
            history.extend(trusted_now)
            candidates, trusted_now = {}, []
        anchor = anchor_for(history, snapshot)
        reason = judge(snapshot, references_for(latest, snapshot.base, anchor), max_move)
        if reason is None:
            # The first trusted one of its base at this time: the smallest source.
            candidates.setdefault(snapshot.base, snapshot)
            trusted_now.append(snapshot)
        judged.append(replace(snapshot, suspect=reason))
    return judged
