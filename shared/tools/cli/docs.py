"""`creatorflow docs asyncapi [--check]`: the services' AsyncAPI documents, from the code;
`creatorflow docs openapi [--check]`: the brand API's OpenAPI document, from its models."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from services.payouts.brand_api.models import openapi_document
from shared.tools.asyncapi import stale_documents, write_documents
from shared.tools.cli.console import console, fail

app = typer.Typer(help="Documents generated from the code.", no_args_is_help=True)

# The checkout's docs/asyncapi (this file is shared/tools/cli/docs.py).
DEFAULT_DIRECTORY = Path(__file__).resolve().parents[3] / "docs" / "asyncapi"
# The brand API's document, served at /brand/v1/openapi.json too.
DEFAULT_OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "brand-api.openapi.json"


def openapi_text() -> str:
    """The brand API's OpenAPI document as committed: sorted keys, two-space indents."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


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


@app.command()
def openapi(
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 if the committed document is out of date."
    ),
    file: Path = typer.Option(DEFAULT_OPENAPI, "--file", help="Where the document lives."),
) -> None:
    """Write docs/brand-api.openapi.json, the brand API's OpenAPI document."""
    text = openapi_text()
    current = file.read_text(encoding="utf-8") if file.is_file() else None
    if check:
        if current != text:
            fail(
                f"out of date: {_shown(file)}",
                hint="run `creatorflow docs openapi` and commit the result",
            )
        console.print(f"{_shown(file)} is up to date.")
        return
    if current == text:
        console.print(f"{_shown(file)} was already up to date.")
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    console.print(f"wrote {_shown(file)}")
