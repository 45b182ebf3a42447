"""Bytes on Kafka <-> typed CloudEvents, and the Kafka key of an event.

`decode` is the only way a consumer should read a value: everything it refuses raises
EventDecodeError, whose `error_class` and `reason` go into the DLQ headers.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pydantic_core
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from shared.contract.events.envelope import SPEC_VERSION, CloudEvent, envelope_for
from shared.contract.events.registry import (
    TOPICS,
    UnknownEventType,
    secret_fields_of_topic,
    spec_for_type,
    specs_for_topic,
    type_for_data,
)
from shared.contract.events.types import PATTERN_MESSAGES
from shared.contract.signing import sign_document

MAX_EVENT_BYTES: Final = 1_048_576
_MAX_REASON_CHARS: Final = 500  # room for `_MAX_ERRORS_NAMED` errors and the count
_MAX_VALUE_CHARS: Final = 60
# A reason names this many of an event's errors, then counts the rest.
_MAX_ERRORS_NAMED: Final = 3

_JSON_KINDS: Final[dict[type, str]] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}

_FRIENDLIER_MESSAGES: Final = {
    "extra_forbidden": "unknown field; this event type does not accept it in v1",
    "missing": "required field is missing",
}


class EventDecodeError(ValueError):
    """A Kafka value that is not a valid v1 event of its topic.

    `error_class` is one of InvalidJSON, SchemaViolation, UnknownEventType, WrongTopic,
    TooLarge, KeyMismatch, FutureDated; `reason` is one line naming the field and the value.
    """

    def __init__(self, error_class: str, reason: str) -> None:
        self.error_class = error_class
        self.reason = _truncate(reason, _MAX_REASON_CHARS)
        super().__init__(f"{error_class}: {self.reason}")


def decode(topic: str, raw: bytes, *, max_bytes: int = MAX_EVENT_BYTES) -> CloudEvent[Any]:
    """The event in `raw`, read from `topic`, with `.data` typed by its event type.

    Raises EventDecodeError for a value over `max_bytes`, invalid JSON (including NaN and
    Infinity tokens), an envelope or data that breaks the v1 contract, a type that is not
    registered or that belongs to another topic. Data is validated in pydantic's JSON mode,
    so e.g. a money amount sent as a JSON number is refused.
    """
    if len(raw) > max_bytes:
        raise EventDecodeError(
            "TooLarge", f"message is {len(raw)} bytes; the limit is {max_bytes} bytes"
        )
    if topic not in TOPICS:
        raise EventDecodeError("WrongTopic", f"{topic!r} is not a v1 topic")
    document = _parse_json(raw)
    if not isinstance(document, dict):
        raise EventDecodeError(
            "SchemaViolation",
            f"the value must be a JSON object (a CloudEvent), not {_JSON_KINDS[type(document)]}",
        )
    event = _decode_valid(topic, raw, document.get("type"))
    if event is not None:
        return event
    # Something is wrong with the value: find out what, envelope first, then data.
    try:
        envelope = CloudEvent[Any].model_validate(document)
    except ValidationError as exc:
        raise EventDecodeError("SchemaViolation", _describe(exc, topic)) from None
    try:
        spec = spec_for_type(envelope.type)
    except UnknownEventType:
        carried = ", ".join(spec.type for spec in specs_for_topic(topic))
        raise EventDecodeError(
            "UnknownEventType",
            f"type: {envelope.type!r} is not a v1 event type; {topic} carries {carried}",
        ) from None
    if spec.topic != topic:
        raise EventDecodeError(
            "WrongTopic", f"type: '{spec.type}' belongs on topic '{spec.topic}', not {topic!r}"
        )
    try:
        event = envelope_for(spec.data_model).model_validate_json(raw)
    except ValidationError as exc:
        raise EventDecodeError("SchemaViolation", _describe(exc, topic)) from None
    published_as = type_for_data(event.data)
    if published_as != event.type:
        raise EventDecodeError(
            "SchemaViolation",
            f"data.status: {event.data.status!r} does not match type {event.type!r}",
        )
    return event


def check_key(event: CloudEvent[Any], key: bytes | None) -> None:
    """Refuse an event whose Kafka key or envelope `subject` is not its entity id (the key
    field of its type, e.g. `deal_id`): with another key, one entity's events land on
    different partitions and lose their order. Raises EventDecodeError("KeyMismatch")."""
    spec = spec_for_type(event.type)
    expected = event_key(event)
    if key != expected:
        shown = "missing" if key is None else repr(_truncate(key.decode("utf-8", "replace"), 60))
        raise EventDecodeError(
            "KeyMismatch",
            f"Kafka key {shown} is not data.{spec.key_field} {expected.decode()!r}: key every "
            f"{event.type} by its {spec.key_field} so its events stay in order",
        )
    if event.subject is not None and event.subject != expected.decode():
        raise EventDecodeError(
            "KeyMismatch",
            f"subject: {_truncate(event.subject, 60)!r} is not data.{spec.key_field} "
            f"{expected.decode()!r}",
        )


def check_not_future(event: CloudEvent[Any], now: datetime, max_skew: timedelta) -> None:
    """Refuse an event whose deciding time (`EventSpec.newest_by`) is later than `now` plus
    `max_skew` (clocks of producers and consumers differ a little, never by much).

    Where the newest version wins (an FX snapshot, a payout account), a time in the future would
    outrank every correct version sent after it. Raises EventDecodeError("FutureDated").
    """
    field = spec_for_type(event.type).newest_by
    if field is None:
        return
    when = event.time if field == "time" else getattr(event.data, field)
    if when > now + max_skew:
        where = field if field == "time" else f"data.{field}"
        raise EventDecodeError(
            "FutureDated",
            f"{where}: {when.isoformat()} is in the future (now {now.isoformat()}, skew "
            f"allowed {max_skew.total_seconds():g} s): it would outrank every later version",
        )


def _decode_valid(topic: str, raw: bytes, event_type: object) -> CloudEvent[Any] | None:
    """The event in `raw` if it is a valid v1 event of `topic` whose type is `event_type`,
    else None (the caller then works out why, with the envelope checked before the data).

    One validation pass for a valid value: validating the whole event succeeds exactly when
    the envelope (the same fields, `data` aside) and then the typed data both would.
    """
    if not isinstance(event_type, str):
        return None
    try:
        spec = spec_for_type(event_type)
    except UnknownEventType:
        return None
    if spec.topic != topic:
        return None
    try:
        event = envelope_for(spec.data_model).model_validate_json(raw)
    except ValidationError:
        return None
    if event.type != event_type or type_for_data(event.data) != event_type:
        return None
    return event


_SIGNATURE_ATTRIBUTES: Final = frozenset({"sigkeyid", "signature"})


# Each record's value is one whole event: CloudEvents' Kafka binding in structured mode, which
# a record says with this header (an SDK reading it without the header takes binary mode).
CONTENT_TYPE: Final = "application/cloudevents+json; charset=UTF-8"
RECORD_HEADERS: Final[list[tuple[str, bytes]]] = [("content-type", CONTENT_TYPE.encode())]


def encode(event: CloudEvent[Any]) -> bytes:
    """Compact JSON of `event`: money and ratios as decimal strings, times in UTC with Z.
    The signature attributes appear only when set."""
    unset = {name for name in _SIGNATURE_ATTRIBUTES if getattr(event, name) is None}
    return event.model_dump_json(exclude=unset or None).encode()


def sign_event(event: CloudEvent[Any], key: Ed25519PrivateKey) -> CloudEvent[Any]:
    """`event` signed by `key` (shared/contract/signing.py): its encoding verifies."""
    document = sign_document(json.loads(encode(event)), key)
    return event.model_copy(update={name: document[name] for name in _SIGNATURE_ATTRIBUTES})


def make_event(
    data: BaseModel,
    *,
    type: str | None = None,
    source: str,
    id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent[Any]:
    """A CloudEvent around `data`.

    `type` defaults to the type of `data`'s model (for payouts, `payout.<data.status>`), `id`
    to a new UUID4, `time` to now in UTC, and `subject` is the value of the key field.
    Raises UnknownEventType or ValueError if `type` and `data` do not belong together.
    """
    event_type = type if type is not None else type_for_data(data)
    spec = spec_for_type(event_type)
    if not isinstance(data, spec.data_model) or type_for_data(data) != event_type:
        raise ValueError(f"{type_for_data(data)!r} data cannot be published as {event_type!r}")
    return envelope_for(spec.data_model)(
        specversion=SPEC_VERSION,
        id=id if id is not None else str(uuid.uuid4()),
        source=source,
        type=event_type,
        time=time if time is not None else datetime.now(UTC),
        subject=str(getattr(data, spec.key_field)),
        data=data,
    )


def event_key(event: CloudEvent[Any]) -> bytes:
    """The Kafka key of `event`: its key field's value (e.g. deal_id) as UTF-8."""
    spec = spec_for_type(event.type)
    return str(getattr(event.data, spec.key_field)).encode()


def _parse_json(raw: bytes) -> Any:
    try:
        return pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        problem = str(exc)
    try:
        lenient = pydantic_core.from_json(raw, allow_inf_nan=True)
    except ValueError:
        raise EventDecodeError("InvalidJSON", f"not valid JSON: {problem}") from None
    path = _first_non_finite(lenient, ()) or ()
    raise EventDecodeError(
        "InvalidJSON",
        f"{_format_path(path) or 'value'}: NaN and Infinity are not JSON; send a finite number",
    )


def _first_non_finite(value: Any, path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    children: Sequence[tuple[str | int, Any]] = ()
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        found = _first_non_finite(child, (*path, key))
        if found is not None:
            return found
    return None


def _describe(error: ValidationError, topic: str) -> str:
    """Each of the first `_MAX_ERRORS_NAMED` errors (field, what is wrong, the value given),
    and how many more there are: fixing the first alone must not just reveal the next."""
    errors = error.errors(include_url=False)
    named = [_describe_one(e, topic) for e in errors[:_MAX_ERRORS_NAMED]]
    reason = " | ".join(named)
    if len(errors) > len(named):
        reason += f" [+{len(errors) - len(named)} more]"
    return reason


def _describe_one(error: ErrorDetails, topic: str) -> str:
    message = _FRIENDLIER_MESSAGES.get(error["type"], error["msg"]).removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        message = PATTERN_MESSAGES.get(str(error.get("ctx", {}).get("pattern")), message)
    reason = f"{_format_path(error['loc']) or 'value'}: {message}"
    bad_value = error.get("input")
    # The reason goes to logs and DLQs: a secret field's value is never quoted, valid or not,
    # nor an unknown field's (a misspelt secret, personal data the contract has no field for).
    secret = not secret_fields_of_topic(topic).isdisjoint(map(str, error["loc"]))
    unknown = error["type"] == "extra_forbidden"
    if (
        error["type"] != "missing"
        and not isinstance(bad_value, dict | list | tuple)
        and not secret
        and not unknown
    ):
        quoted = _truncate(repr(bad_value), _MAX_VALUE_CHARS)
        # Not twice: many messages quote the text they refuse already.
        if not (isinstance(bad_value, str) and quoted in message):
            reason += f" (got {quoted})"
    return reason


def _format_path(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            path += f".{part}" if path else part
    return path


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
