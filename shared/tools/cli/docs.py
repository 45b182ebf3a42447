"""`creatorflow docs asyncapi [--check]`: the services' AsyncAPI documents, from the code."""

from __future__ import annotations

from pathlib import Path

import typer

from shared.tools.asyncapi import stale_documents, write_documents
from shared.tools.cli.console import console, fail

app = typer.Typer(help="Documents generated from the code.", no_args_is_help=True)

# The checkout's docs/asyncapi (this file is shared/tools/cli/docs.py).
DEFAULT_DIRECTORY = Path(__file__).resolve().parents[3] / "docs" / "asyncapi"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@app.command()
def asyncapi(
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 if a committed document is out of date."
    ),
    directory: Path = typer.Option(
        DEFAULT_DIRECTORY, "--dir", help="Where the <service>.json documents live."
    ),
) -> None:
    """Write docs/asyncapi/<service>.json for matching, tracking and payouts."""
    if check:
        stale = stale_documents(directory)
        if stale:
            fail(
                f"out of date: {', '.join(_shown(p) for p in stale)}",
                hint="run `creatorflow docs asyncapi` and commit the result",
            )
        console.print(f"AsyncAPI documents in {_shown(directory)} are up to date.")
        return
    changed = write_documents(directory)
    for path in changed:
        console.print(f"wrote {_shown(path)}")
    if not changed:
        console.print(f"AsyncAPI documents in {_shown(directory)} were already up to date.")
