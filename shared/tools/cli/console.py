"""Terminal output shared by the commands."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
errors = Console(stderr=True)


def fail(message: str, *, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print an error a user can act on and exit non-zero."""
    report(message, hint=hint)
    raise typer.Exit(code)


def report(message: str, *, hint: str | None = None) -> None:
    """Print an error a user can act on (`fail` also exits)."""
    # Messages quote user input and commands such as `pip install 'x[extra]'`: not markup.
    # One line however long, so the reason stays on the line that says "error".
    errors.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        errors.print(f"[dim]hint:[/] {escape(hint)}")
