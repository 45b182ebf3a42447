"""The `creatorflow` command: every command group in one Typer app."""

from __future__ import annotations

import importlib

import typer
from pydantic import ValidationError

from shared.runtime.config import settings_problems
from shared.runtime.observability import configure_logging
from shared.tools.cli import db, demo, dlq, docs, events, infra, kafka_admin, keys, topics, up
from shared.tools.cli.console import report

app = typer.Typer(
    name="creatorflow",
    help="CreatorFlow: micro-influencer matching, attribution and instant creator payouts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(infra.app, name="infra")
app.add_typer(topics.app, name="topics")
app.add_typer(kafka_admin.app, name="kafka")
app.add_typer(db.app, name="db")
app.add_typer(dlq.app, name="dlq")
app.add_typer(docs.app, name="docs")
app.add_typer(keys.app, name="keys")
app.command("demo")(demo.demo)
app.command("produce")(events.produce)
app.command("tail")(events.tail)
app.command("up")(up.up)
app.command("verify")(keys.verify_command)
app.command("serve")(up.serve)

# Each service may contribute command groups from `services/<name>/cli.py`: an `app` (named
# COMMAND_NAME, else the service), or several as COMMAND_GROUPS {name: app}.
for _service in ("matching", "tracking", "payouts"):
    try:
        _module = importlib.import_module(f"services.{_service}.cli")
    except ModuleNotFoundError as _missing:
        if _missing.name != f"services.{_service}.cli":
            raise
        continue
    _groups = getattr(_module, "COMMAND_GROUPS", None) or {
        getattr(_module, "COMMAND_NAME", _service): _module.app
    }
    for _name, _group in _groups.items():
        app.add_typer(_group, name=_name)


def main() -> None:
    # Commands talk to the user through rich on stdout; library logs only matter when wrong.
    configure_logging("creatorflow", level="WARNING")
    try:
        app()
    except ValidationError as error:
        if not error.title.endswith("Settings"):  # only the environment is the user's to fix
            raise
        report(
            f"invalid settings ({error.title}): {settings_problems(error)}",
            hint="check the environment variables in README.md",
        )
        raise SystemExit(1) from None
