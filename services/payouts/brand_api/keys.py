"""Brands' API keys: `cfk_<key id>_<secret>`, 256 random bits behind a public key id.

A key is printed once (`creatorflow brands api-key add`) and stored only as the SHA-256 of
the whole key (migration 0317): whoever reads the table can call nothing. A fast hash is
enough here, unlike for passwords: the key is random, so there is nothing to guess from its
hash. The key id names the key to operators (`list`, `revoke`) and finds its row; the hash
is then compared in constant time. A revoked key answers 401 at once, on every replica: it
is looked up on each request, by primary key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

PREFIX: Final = "cfk"
SECRET_BYTES: Final = 32  # 256 bits
KEY_ID_BYTES: Final = 6  # 12 hex digits: public, only needs to be unique
# cfk_<12 hex>_<43 characters of token_urlsafe(32)>
_KEY_SHAPE: Final = re.compile(rf"{PREFIX}_([0-9a-f]{{12}})_[A-Za-z0-9_-]{{43}}")
_KEY_ID_SHAPE: Final = re.compile(r"[0-9a-f]{12}")


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id_of(key: str) -> str | None:
    """The key id of a well-formed key, else None (refused unread)."""
    shaped = _KEY_SHAPE.fullmatch(key)
    return None if shaped is None else shaped.group(1)


def well_formed_key_id(key_id: str) -> bool:
    return _KEY_ID_SHAPE.fullmatch(key_id) is not None


@dataclass(frozen=True)
class NewKey:
    key_id: str
    brand_id: str
    key: str  # shown once, stored nowhere


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    brand_id: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Caller:
    """Who a valid key speaks for."""

    key_id: str
    brand_id: str


class UnknownBrand(LookupError):
    """The brand has no deal and no funding that payouts knows of."""


class BrandKeys:
    """The keys in the payouts schema; `pool` is that schema's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def knows_brand(self, brand_id: str) -> bool:
        return bool(
            await self._pool.fetchval(
                """SELECT EXISTS (SELECT 1 FROM payouts_deals WHERE brand_id = $1)
                       OR EXISTS (SELECT 1 FROM payouts_brand_fundings WHERE brand_id = $1)""",
                brand_id,
            )
        )

    async def add(self, brand_id: str, now: datetime) -> NewKey:
        """A new key for a brand payouts knows (else `UnknownBrand`: a mistyped id would give
        a key that sees nothing)."""
        if not await self.knows_brand(brand_id):
            raise UnknownBrand(brand_id)
        while True:
            key_id = secrets.token_hex(KEY_ID_BYTES)
            key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
            added = await self._pool.fetchval(
                """INSERT INTO payouts_brand_api_keys (key_id, brand_id, key_hash, created_at)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
                key_id,
                brand_id,
                key_hash(key),
                now,
            )
            if added:
                return NewKey(key_id, brand_id, key)

    async def revoke(self, key_id: str, now: datetime) -> KeyInfo | None:
        """Revoke the key (a revoked one stays revoked, at its first time); None if unknown."""
        row = await self._pool.fetchrow(
            """UPDATE payouts_brand_api_keys SET revoked_at = coalesce(revoked_at, $2)
               WHERE key_id = $1 RETURNING key_id, brand_id, created_at, revoked_at""",
            key_id,
            now,
        )
        return None if row is None else KeyInfo(**dict(row))

    async def list(self, brand_id: str | None = None) -> list[KeyInfo]:
        rows = await self._pool.fetch(
            """SELECT key_id, brand_id, created_at, revoked_at FROM payouts_brand_api_keys
               WHERE $1::text IS NULL OR brand_id = $1 ORDER BY brand_id, created_at, key_id""",
            brand_id,
        )
        return [KeyInfo(**dict(r)) for r in rows]

    async def caller(self, key: str) -> Caller | None:
        """The brand a live key speaks for; None for a malformed, unknown or revoked key (one
        answer for all: nothing to learn from it)."""
        key_id = key_id_of(key)
        if key_id is None:
            return None
        row = await self._pool.fetchrow(
            """SELECT brand_id, key_hash FROM payouts_brand_api_keys
               WHERE key_id = $1 AND revoked_at IS NULL""",
            key_id,
        )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), key_hash(key)):
            return None
        return Caller(key_id, row["brand_id"])
