"""Terminal output shared by the commands."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)


def fail(message: str, *, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print an error a user can act on and exit non-zero."""
    errors.print(f"[bold red]error:[/] {message}")
    if hint:
        errors.print(f"[dim]hint:[/] {hint}")
    raise typer.Exit(code)
