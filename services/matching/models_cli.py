"""`creatorflow matching models list|promote|rollback`: each brand's rankers, by hand.

The running service reloads the live rankers every `MATCHING_RETRAIN_CHECK_SECONDS`, so a
promotion or a rollback takes effect within seconds, without a restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import typer
from rich.markup import escape
from rich.table import Table

from services.matching.domain.features import FEATURES, HAND_MODEL_VERSION, HAND_WEIGHTS
from services.matching.schema import SCHEMA
from services.matching.store.port import StoredModel
from services.matching.store.postgres import PostgresMatchingStore
from shared.tools.cli.console import console, fail
from shared.tools.cli.database import on_database

app = typer.Typer(
    help="Each brand's rankers: list them, put one in use, roll back.", no_args_is_help=True
)

T = TypeVar("T")


def _run(action: Callable[[PostgresMatchingStore], Awaitable[T]]) -> T:
    try:
        return on_database(SCHEMA.name, lambda pool: action(PostgresMatchingStore(pool)))
    except asyncpg.UndefinedColumnError:
        fail("the matching tables predate per-brand rankers", hint="run: creatorflow db migrate")


def _adjustments(model: StoredModel) -> str:
    """How the ranker's weights differ from the hand weights, largest change first."""
    changes = sorted(
        ((f, model.ranker.weights[f] - HAND_WEIGHTS[f]) for f in FEATURES),
        key=lambda change: -abs(change[1]),
    )
    shown = [f"{f} {d:+.2f}" for f, d in changes if abs(d) >= 0.005][:3]
    return ", ".join(shown) or "none"


@app.command("list")
def list_command(
    brand: str | None = typer.Option(None, "--brand", help="Only this brand's rankers."),
    limit: int = typer.Option(50, min=1, help="Show at most this many, newest first."),
) -> None:
    """Show stored rankers: brand, status, labels, the gate's reason, weight changes."""
    models = _run(lambda store: store.models(brand))
    if not models:
        who = f"brand {brand}" if brand else "any brand"
        console.print(
            f"no ranker stored for {who}: every request is ranked by {HAND_MODEL_VERSION}"
        )
        return
    table = Table(title=f"{len(models)} ranker(s), newest first", title_justify="left")
    for column in ("version", "brand", "status", "labels", "trained at", "why", "vs hand"):
        table.add_column(column, overflow="fold")
    for m in models[:limit]:
        style = {"live": "green", "candidate": "yellow"}.get(m.status, "dim")
        table.add_row(
            m.ranker.version,
            m.brand_id or "(every brand)",
            f"[{style}]{m.status}[/]",
            str(m.labels),
            f"{m.trained_at:%Y-%m-%d %H:%M:%S}",
            m.reason,
            _adjustments(m),
        )
    console.print(table)
    console.print(f"brands without a live ranker are ranked by {HAND_MODEL_VERSION}")


@app.command("promote")
def promote_command(
    version: str = typer.Argument(help="A stored ranker's version (see: models list)."),
) -> None:
    """Put a stored ranker in use for its brand, whatever the gate said (it says so when the
    gate had refused the ranker)."""

    async def promote(store: PostgresMatchingStore) -> tuple[StoredModel | None, StoredModel]:
        before = next((m for m in await store.models() if m.ranker.version == version), None)
        return before, await store.promote(version)

    try:
        before, model = _run(promote)
    except LookupError as error:
        fail(
            str(error),
            hint="see the stored versions: creatorflow matching models list",
        )
    except ValueError as error:
        fail(str(error))
    console.print(f"{model.ranker.version} is now live for brand {model.brand_id}")
    if before is not None and before.status == "candidate":
        # The gate keeps a ranker a candidate when it ranks worse than the one in use.
        console.print(
            f"[yellow]warning:[/] the promotion gate had refused it: {escape(before.reason)}. "
            f"To put back the ranker live before: creatorflow matching models rollback "
            f"{model.brand_id}",
            soft_wrap=True,
        )


@app.command("rollback")
def rollback_command(
    brand: str = typer.Argument(help="The brand whose live ranker to take out of use."),
) -> None:
    """Take a brand's live ranker out of use and put back the one live before it."""
    try:
        back = _run(lambda store: store.rollback(brand))
    except LookupError as error:
        fail(str(error), hint="see: creatorflow matching models list --brand BRAND")
    if back is None:
        console.print(f"brand {brand} is back on {HAND_MODEL_VERSION}")
    else:
        console.print(f"brand {brand} is back on {back.ranker.version}")
