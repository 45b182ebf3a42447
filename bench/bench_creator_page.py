"""Creator page benchmark: how long the payouts page takes with 10,000 payouts in the database.

Starts embedded PostgreSQL and Redis, writes `--payouts` fee payouts as the service writes
them (state, ledger, each status in the outbox: the page's timeline) for creators with
`--per-creator` deals each (60 % arrived, 30 % scheduled, 10 % held), then serves the page
with uvicorn on loopback and, for `--requests` signed-in creators picked at random, one at a
time over HTTP:

1. floor: the page's stylesheet from the same server (no database), p50/p95;
2. the payouts page (`/c/payouts`), p50/p95/max, and its p95 as a ratio to the floor's.

Usage: python bench/bench_creator_page.py [--payouts 10000] [--per-creator 20] [--requests 300]
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio as redis
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from command_line import run_with_options  # bench/ is the script's directory
from servers import quiet_logs  # bench/ is the script's directory

from services.payouts.creator_page.access import CreatorAccess, Limit
from services.payouts.creator_page.web import SESSION_COOKIE, PageConfig, page_app
from services.payouts.schema import SCHEMA
from shared.runtime.config import Settings
from shared.runtime.db import create_pool, migrate
from shared.tools.infra import EmbeddedInfra
from shared.tools.infra.process import free_port
from shared.tools.latency_floor import quantile
from tests.integration.payouts.creator_scene import T0, Writer, account
from tests.unit.payouts.builders import uid

WRITERS = 8  # creators written at once


async def write_creator(writer: Writer, creator_id: str, deals: int) -> None:
    """`deals` deals of one creator, each with its fee payout: arrived, scheduled or held."""
    to = account(creator_id, f"{creator_id}@mail.example")
    pending = account(creator_id, f"{creator_id}@mail.example", tax_status="pending")
    async with writer.db.transaction() as repo:
        await repo.save_account(to)
    for n in range(deals):
        deal_id = uid("deal")
        at = T0 + timedelta(hours=n)
        await writer.deal(deal_id, creator_id, ("dl-1", at))
        share = n % 10
        if share < 6:
            await writer.settled(deal_id, creator_id, to)
        else:
            await writer.create(deal_id, creator_id, to if share < 9 else pending, at)


async def fill(pool: asyncpg.Pool, payouts: int, per_creator: int) -> list[str]:
    writer = Writer(pool)
    creators = [uid("cr") for _ in range(payouts // per_creator)]
    todo = iter(creators)
    written = 0

    async def work() -> None:
        nonlocal written
        for creator_id in todo:
            await write_creator(writer, creator_id, per_creator)
            written += per_creator
            if written % 1000 == 0:
                print(f"  {written:,}/{payouts:,} payouts written", flush=True)

    await asyncio.gather(*(work() for _ in range(WRITERS)))
    return creators


async def timed(call: Callable[[], Awaitable[httpx.Response]], times: int) -> list[float]:
    took = []
    for _ in range(times):
        began = time.perf_counter()
        answer = await call()
        took.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.status_code
    return took


def line(name: str, took: list[float]) -> str:
    ms = sorted(t * 1000 for t in took)
    return (
        f"{name:<28} p50 {quantile(ms, 0.5):7.1f} ms   p95 {quantile(ms, 0.95):7.1f} ms   "
        f"max {ms[-1]:7.1f} ms"
    )


async def signed_in(http: httpx.AsyncClient, pool: asyncpg.Pool, creator_id: str) -> str:
    link = await CreatorAccess(pool).new_link(creator_id, datetime.now(UTC), timedelta(minutes=15))
    redeemed = await http.post(f"/c/link/{link.token}")
    assert redeemed.status_code == 303, redeemed.status_code
    return redeemed.cookies[SESSION_COOKIE]


async def main(payouts: int, per_creator: int, requests: int) -> None:
    quiet_logs()
    with (
        tempfile.TemporaryDirectory(prefix="creatorflow-bench-page-") as root,
        EmbeddedInfra(Path(root), Settings(), durable=False) as infra,
    ):
        urls = infra.urls
        assert urls is not None
        pool = await create_pool(urls.database_url, schema=SCHEMA.name, max_size=WRITERS + 2)
        cache = redis.Redis.from_url(urls.redis_url)
        try:
            await migrate(pool, SCHEMA)
            began = time.perf_counter()
            creators = await fill(pool, payouts, per_creator)
            print(f"wrote {payouts:,} payouts in {time.perf_counter() - began:.0f} s")
            await measure(pool, cache, creators, requests)
        finally:
            await cache.aclose()
            await pool.close()


async def measure(
    pool: asyncpg.Pool, cache: redis.Redis, creators: list[str], requests: int
) -> None:
    port = free_port()
    # One address signs every creator in: its redemption limit is lifted for the benchmark.
    config = PageConfig(per_ip=Limit(10_000, 60))
    app = page_app(pool, cache, config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.05)
    try:
        # http: the session cookie is Secure, so it is sent back by hand.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            sessions = [
                await signed_in(http, pool, creator)
                for creator in random.Random(7).sample(creators, min(len(creators), 50))
            ]
            http.cookies.clear()
            picks = random.Random(11)

            async def page() -> httpx.Response:
                cookie = {SESSION_COOKIE: picks.choice(sessions)}
                return await http.get("/c/payouts", cookies=cookie)

            async def stylesheet() -> httpx.Response:
                return await http.get("/c/static/page.css")

            await timed(page, 20)  # warm up: connections, templates, plans
            floor = await timed(stylesheet, requests)
            pages = await timed(page, requests)
    finally:
        server.should_exit = True
        await serving
    print(line("floor: static file, same server", floor))
    print(line("/c/payouts", pages))
    ratio = quantile(sorted(pages), 0.95) / quantile(sorted(floor), 0.95)
    print(f"page p95 / floor p95: {ratio:.1f}x")


if __name__ == "__main__":
    run_with_options(main, __doc__, payouts=10_000, per_creator=20, requests=300)
