"""Rotating PAYOUTS_DESTINATION_KEY: every stored payout destination sealed again with the
new key, in short batches, while the service runs.

The service runs with the new key as `PAYOUTS_DESTINATION_KEY` and the old one as
`PAYOUTS_DESTINATION_KEY_PREVIOUS`: it seals new destinations with the new key and opens
either. `rotate_destination_key` then re-encrypts the rows still under another key, a batch
per transaction (rows an account update holds are skipped and taken by a later batch), until
none is left; the previous key can then be dropped from the settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from services.payouts.destinations import DestinationCipher
from services.payouts.store.postgres import PostgresPayoutsStore


@dataclass(frozen=True)
class RotationProgress:
    resealed: int
    left: int


async def rotate_destination_key(
    db: PostgresPayoutsStore,
    cipher: DestinationCipher,
    *,
    batch: int = 500,
    progress: Callable[[RotationProgress], None] = lambda _: None,
) -> int:
    """Seal every stored destination with `cipher`'s current key; returns how many were
    resealed. Raises UnreadableDestination if a row is under a key `cipher` does not hold
    (nothing of that batch is changed)."""
    total = 0
    while True:
        done = await db.reseal_destinations(cipher.key_id, cipher.reseal, batch)
        total += done
        left = await db.destinations_not_under(cipher.key_id)
        if done or left == 0:
            progress(RotationProgress(total, left))
        if left == 0:
            return total
        if done == 0:
            # Every row left is held by an account update: it commits in a moment.
            await asyncio.sleep(0.05)
