"""`creatorflow produce` refuses, before sending anything, what every consumer would only
dead-letter without reading its state: a subject that is not the entity id, and a deciding
time in the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from shared.contract.events import EventType, Topic, encode, spec_for_type
from shared.contract.events.examples import valid_example
from shared.tools.cli.main import app


def _produce(tmp_path: Path, topic: Topic, line: bytes) -> str:
    file = tmp_path / "events.jsonl"
    file.write_bytes(line + b"\n")
    done = CliRunner().invoke(app, ["produce", topic.value, str(file)])
    assert done.exit_code == 1, done.output
    assert "nothing sent" in done.output
    return done.output


def test_a_subject_other_than_the_entity_id_is_refused(tmp_path: Path) -> None:
    event = valid_example(EventType.ORDER_REDEEMED).model_copy(update={"subject": "WRONG"})
    output = _produce(tmp_path, spec_for_type(event.type).topic, encode(event))
    assert "KeyMismatch" in output and "'WRONG'" in output


def test_rates_dated_in_the_future_are_refused(tmp_path: Path) -> None:
    example = valid_example(EventType.FX_RATES_PUBLISHED)
    later = datetime.now(UTC) + timedelta(days=400)
    event = example.model_copy(update={"data": example.data.model_copy(update={"as_of": later})})
    output = _produce(tmp_path, Topic.FX_RATES, encode(event))
    assert "FutureDated" in output
