"""Getting into the creator page without an account: magic links, sessions, rate limits.

A link and a session are each a 256-bit random token, given out once and stored only as its
SHA-256 (migration 0314): whoever reads the tables can open nobody's page. A link is redeemed
once, before it expires (at most 15 minutes), by an explicit POST; the session it is swapped
for reads one creator's payouts and nothing else.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import redis.asyncio as redis

from services.payouts.fixed_window import Limit as Limit
from services.payouts.fixed_window import count_one

TOKEN_BYTES: Final = 32  # 256 bits
MAX_LINK_LIFETIME: Final = timedelta(minutes=15)
# What `secrets.token_urlsafe(32)` gives: 43 characters of the URL-safe base64 alphabet.
_TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def well_formed(token: str) -> bool:
    """Whether `token` could be one of ours (a tampered or truncated one is refused unread)."""
    return _TOKEN_SHAPE.fullmatch(token) is not None


def link_url(base_url: str, token: str) -> str:
    """The address of a link: the page's public base URL (no trailing slash) and the token."""
    return f"{base_url}/c/link/{token}"


@dataclass(frozen=True)
class Link:
    token: str
    creator_id: str
    expires_at: datetime


class CreatorAccess:
    """The links and sessions in the payouts schema; `pool` is that schema's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def knows(self, creator_id: str) -> bool:
        """Whether payouts has a deal or payout account for the creator."""
        return bool(
            await self._pool.fetchval(
                """SELECT EXISTS (SELECT 1 FROM payouts_deals WHERE creator_id = $1)
                       OR EXISTS (SELECT 1 FROM payouts_accounts WHERE creator_id = $1)""",
                creator_id,
            )
        )

    async def new_link(self, creator_id: str, now: datetime, lifetime: timedelta) -> Link:
        if not timedelta(0) < lifetime <= MAX_LINK_LIFETIME:
            raise ValueError(f"a link lives more than 0 and at most {MAX_LINK_LIFETIME}")
        token = new_token()
        await self._pool.execute(
            """INSERT INTO payouts_creator_links (token_hash, creator_id, created_at, expires_at)
               VALUES ($1, $2, $3, $4)""",
            token_hash(token),
            creator_id,
            now,
            now + lifetime,
        )
        return Link(token, creator_id, now + lifetime)

    async def redeem(self, token: str, now: datetime, session_lifetime: timedelta) -> str | None:
        """Use the link once and open a session: the session's token, or None for a link that
        is unknown, expired or used (one answer for all three: nothing to learn from it)."""
        if not well_formed(token):
            return None
        session = new_token()
        async with self._pool.acquire() as conn, conn.transaction():
            creator_id = await conn.fetchval(
                """UPDATE payouts_creator_links SET used_at = $2
                   WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
                   RETURNING creator_id""",
                token_hash(token),
                now,
            )
            if creator_id is None:
                return None
            await conn.execute(
                """INSERT INTO payouts_creator_sessions
                       (token_hash, creator_id, created_at, expires_at)
                   VALUES ($1, $2, $3, $4)""",
                token_hash(session),
                creator_id,
                now,
                now + session_lifetime,
            )
        return session

    async def creator_of(self, session: str | None, now: datetime) -> str | None:
        """The creator a live session belongs to, or None."""
        if session is None or not well_formed(session):
            return None
        found = await self._pool.fetchval(
            """SELECT creator_id FROM payouts_creator_sessions
               WHERE token_hash = $1 AND expires_at > $2""",
            token_hash(session),
            now,
        )
        return None if found is None else str(found)

    async def end_session(self, session: str) -> None:
        await self._pool.execute(
            "DELETE FROM payouts_creator_sessions WHERE token_hash = $1", token_hash(session)
        )

    async def forget_expired(self, now: datetime) -> int:
        """Delete links and sessions past their expiry; returns how many."""
        links = await self._pool.execute(
            "DELETE FROM payouts_creator_links WHERE expires_at <= $1", now
        )
        sessions = await self._pool.execute(
            "DELETE FROM payouts_creator_sessions WHERE expires_at <= $1", now
        )
        return int(links.split()[-1]) + int(sessions.split()[-1])


class RedemptionLimiter:
    """Fixed-window counters in Redis, per client address and per link: guessing or hammering
    links gets a 429 long before it could matter. Counters expire with their window, so what
    Redis loses costs nothing but a fresh window."""

    PREFIX: Final = "creatorflow:payouts:page:redeem"

    def __init__(self, client: redis.Redis, *, per_ip: Limit, per_link: Limit) -> None:
        self._client = client
        self._limits = {"ip": per_ip, "link": per_link}

    async def retry_after(self, ip: str, token: str) -> int | None:
        """Count one attempt; the seconds to wait if it is over a limit, else None."""
        keys = {"ip": ip, "link": hashlib.sha256(token.encode()).hexdigest()}
        wait = 0
        for scope, value in keys.items():
            window = await count_one(
                self._client, f"{self.PREFIX}:{scope}:{value}", self._limits[scope]
            )
            if window.exceeded:
                wait = max(wait, window.reset_seconds)
        return wait or None
