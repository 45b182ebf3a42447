"""Whether a new FX snapshot can be trusted: its rates against the last trusted snapshot.

One event on `fx.rates` decides every cross-currency amount, so a feed that publishes a
wrong rate (a typo, a unit slip, a forged event) must not move money. A snapshot is *suspect*
when a rate moved more than a set fraction since the last trusted snapshot, or lies outside
any real exchange rate. Suspect snapshots are stored with the reason; payouts never convert
with one (they are held until a trusted snapshot is in force), tracking and matching skip them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Final

from shared.contract.money import FxSnapshot

# No currency has been worth more than 10^8 or less than 10^-8 units of another (the most
# extreme pairs today are about 10^6 apart): rates beyond that are a unit slip or a forgery.
MIN_RATE: Final = Decimal("1e-8")
MAX_RATE: Final = Decimal("1e8")


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


def rejudged(
    snapshots: Sequence[FxSnapshot], trusted: FxSnapshot | None, max_move: Decimal
) -> list[FxSnapshot]:
    """`snapshots` (sorted by `as_of`, then source) each with its `suspect` reason set against
    the latest trusted snapshot strictly before it; `trusted` is the one before them all.

    Judging every snapshot from a newly stored one onwards makes the verdicts a function of the
    snapshots alone, not of the order in which the feed's events arrived.
    """
    judged: list[FxSnapshot] = []
    in_force, candidate = trusted, None
    for n, snapshot in enumerate(snapshots):
        if n and snapshot.as_of != snapshots[n - 1].as_of:
            in_force, candidate = candidate or in_force, None
        reason = suspect_reason(snapshot, in_force, max_move)
        if reason is None and candidate is None:
            candidate = snapshot  # the first trusted one at this time: smallest source
        judged.append(replace(snapshot, suspect=reason))
    return judged
