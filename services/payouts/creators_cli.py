"""`creatorflow creators link <creator_id>`: a magic link to one creator's payout page, for
operators to send (docs/architecture.md §11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
import typer

from services.payouts.creator_page.access import CreatorAccess, Link
from services.payouts.creator_page.access import link_url as access_link_url
from services.payouts.schema import SCHEMA
from services.payouts.settings import PayoutsSettings
from shared.tools.cli.console import errors, fail
from shared.tools.cli.database import on_database

COMMAND_NAME: Final = "creators"

app = typer.Typer(help="Creators: links to their payout page.", no_args_is_help=True)


async def make_link(
    pool: asyncpg.Pool, creator_id: str, settings: PayoutsSettings, now: datetime
) -> Link | None:
    """A new link for a creator payouts knows (a deal or a payout account), else None."""
    access = CreatorAccess(pool)
    if not await access.knows(creator_id):
        return None
    return await access.new_link(creator_id, now, timedelta(minutes=settings.page_link_minutes))


def link_url(settings: PayoutsSettings, link: Link) -> str:
    return access_link_url(settings.page_base_url(), link.token)


@app.command("link")
def link_command(creator_id: str) -> None:
    """Print a link that opens the creator's payout page: it works once, within
    PAYOUTS_PAGE_LINK_MINUTES (15 at most). Send it to the creator only."""
    settings = PayoutsSettings()

    link = on_database(
        SCHEMA.name, lambda pool: make_link(pool, creator_id, settings, datetime.now(UTC))
    )
    if link is None:
        fail(f"payouts knows no creator {creator_id} (no deal, no payout account)")
    # Plain print on stdout (a script can take it), the advice on stderr: a terminal must
    # not wrap or style the URL.
    print(link_url(settings, link))
    errors.print(
        f"Works once, until {link.expires_at:%Y-%m-%d %H:%M} UTC. Send it to the creator only.",
        style="dim",
    )
    if settings.page_port is None and settings.page_url is None:
        # This command cannot see the service's settings, only its own environment.
        errors.print(
            "warning: PAYOUTS_PAGE_PORT and PAYOUTS_PAGE_URL are not set here, so the link "
            f"assumes the page at {settings.page_base_url()}; the payouts service serves it "
            "only with PAYOUTS_PAGE_PORT set (`creatorflow up` sets none of its own): set "
            "them here as the service has them",
            style="yellow",
        )
