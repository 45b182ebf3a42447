"""`creatorflow brands api-key add|revoke|list`: brands' keys to the brand API
(docs/architecture.md §12)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, TypeVar

import typer
from rich.table import Table

from services.payouts.brand_api.keys import BrandKeys, KeyInfo, UnknownBrand, well_formed_key_id
from services.payouts.schema import SCHEMA
from shared.tools.cli.console import console, errors, fail
from shared.tools.cli.database import on_database

COMMAND_NAME: Final = "brands"

app = typer.Typer(help="Brands: keys to the brand API.", no_args_is_help=True)
api_key = typer.Typer(help="A brand's API keys: add, revoke, list.", no_args_is_help=True)
app.add_typer(api_key, name="api-key")

T = TypeVar("T")


def _run(work: Callable[[BrandKeys], Awaitable[T]]) -> T:
    return on_database(SCHEMA.name, lambda pool: work(BrandKeys(pool)))


@api_key.command("add")
def add_command(
    brand: str = typer.Option(..., "--brand", help="The brand id the key reads for."),
) -> None:
    """Print a new API key of the brand, once: only its hash is kept. Send it to the brand."""
    if not brand.strip():
        fail("--brand is empty")

    async def add(keys: BrandKeys) -> tuple[str, str] | None:
        try:
            new = await keys.add(brand, datetime.now(UTC))
        except UnknownBrand:
            return None
        return new.key_id, new.key

    added = _run(add)
    if added is None:
        fail(
            f"payouts knows no brand {brand} (no deal, no funding)",
            hint="check the id: a key is given to a brand with a deal or a funding",
        )
    key_id, key = added
    # The key alone on stdout (a script can take it), the advice on stderr.
    print(key)
    errors.print(
        f"Key id {key_id} (revoke with: creatorflow brands api-key revoke {key_id}). "
        "This is the only time the key is shown.",
        style="dim",
    )


@api_key.command("revoke")
def revoke_command(key_id: str) -> None:
    """Revoke a key by its id (the part after `cfk_`): it answers 401 from the next request."""
    if not well_formed_key_id(key_id):
        fail(f"{key_id!r} is not a key id", hint="a key id is 12 hex digits; see `list`")
    revoked = _run(lambda keys: keys.revoke(key_id, datetime.now(UTC)))
    if revoked is None:
        fail(f"no API key has the id {key_id}")
    assert revoked.revoked_at is not None
    console.print(
        f"revoked {key_id} of brand {revoked.brand_id} "
        f"(since {revoked.revoked_at:%Y-%m-%d %H:%M:%S} UTC)"
    )


@api_key.command("list")
def list_command(
    brand: str | None = typer.Option(None, "--brand", help="Only this brand's keys."),
) -> None:
    """The keys (ids, never the keys) with their brand, when added and whether revoked."""

    async def listed(store: BrandKeys) -> list[KeyInfo] | None:
        keys = await store.list(brand)
        if brand is not None and not keys and not await store.knows_brand(brand):
            return None
        return keys

    keys = _run(listed)
    if keys is None:
        fail(
            f"payouts knows no brand {brand} (no deal, no funding)",
            hint="check the id; without --brand every brand's keys are listed",
        )
    table = Table("key id", "brand", "added (UTC)", "revoked (UTC)")
    for key in keys:
        revoked = "" if key.revoked_at is None else f"{key.revoked_at:%Y-%m-%d %H:%M}"
        table.add_row(key.key_id, key.brand_id, f"{key.created_at:%Y-%m-%d %H:%M}", revoked)
    console.print(table)
