"""The demo's last step: a link to one creator's payout page and, with `--open`, the page
served from the demo's database until Ctrl-C (services/payouts/creator_page/)."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as redis
import uvicorn

from services.payouts.creator_page.web import page_app
from services.payouts.creators_cli import link_url, make_link
from services.payouts.schema import SCHEMA
from services.payouts.settings import DEFAULT_PAGE_PORT, PayoutsSettings
from shared.runtime.db import create_pool
from shared.tools.demo.flow import Observed
from shared.tools.infra import InfraUrls


def creator_to_show(observed: Observed) -> str | None:
    """A creator whose fee payout was held (for a tax form) and then paid, so the page shows
    a full timeline; else any creator with a fee payout."""
    histories = list(observed.fee_payouts().values())
    for history in histories:
        statuses = [status.status for status, _ in history]
        if statuses[0] == "held" and statuses[-1] in ("sent", "settled"):
            return history[0][0].creator_id
    return histories[0][0][0].creator_id if histories else None


def page_settings() -> PayoutsSettings:
    """The payouts settings with the page on its port (PAYOUTS_PAGE_PORT, else 8090)."""
    settings = PayoutsSettings()
    if settings.page_port is None:
        settings = settings.model_copy(update={"page_port": DEFAULT_PAGE_PORT})
    return settings


async def demo_link(urls: InfraUrls, creator_id: str, settings: PayoutsSettings) -> str | None:
    pool = await create_pool(urls.database_url, schema=SCHEMA.name, min_size=1, max_size=1)
    try:
        link = await make_link(pool, creator_id, settings, datetime.now(UTC))
    finally:
        await pool.close()
    return None if link is None else link_url(settings, link)


async def serve_page(urls: InfraUrls, settings: PayoutsSettings) -> None:
    """Serve the creator page until Ctrl-C (uvicorn stops on SIGINT)."""
    assert urls.redis_url is not None and settings.page_port is not None
    pool = await create_pool(urls.database_url, schema=SCHEMA.name, min_size=1, max_size=4)
    cache = redis.Redis.from_url(urls.redis_url)
    try:
        config = uvicorn.Config(
            page_app(pool, cache),
            host=settings.page_host,
            port=settings.page_port,
            log_level="warning",
            lifespan="off",
        )
        await uvicorn.Server(config).serve()
    finally:
        await cache.aclose()
        await pool.close()
