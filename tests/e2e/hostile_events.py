"""Hostile Kafka values for every input topic, each with the DLQ reason the contract gives it.

Valid events are the contract's examples (`valid_example`) turned into plain JSON dicts with
fresh ids, so each test owns its entities. Every bad value is built from a valid one by one
change, so the reason the consumer gives names exactly that change.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from shared.contract.events import EventType, Topic, encode, spec_for_type, specs_for_topic
from shared.contract.events.examples import valid_example

Document = dict[str, Any]

# One type per input topic: what the valid neighbours and the bad values are made of.
TYPE_OF_TOPIC: Final[dict[str, str]] = {
    Topic.CREATOR_PROFILES: EventType.CREATOR_PROFILE_UPSERTED,
    Topic.CREATOR_PAYOUT_ACCOUNTS: EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED,
    Topic.BRAND_MATCH_REQUESTS: EventType.MATCH_REQUESTED,
    Topic.MATCH_FEEDBACK: EventType.MATCH_FEEDBACK,
    Topic.CAMPAIGN_DEALS: EventType.DEAL_SIGNED,
    Topic.BRAND_FUNDING: EventType.BRAND_FUNDED,
    Topic.TRACKING_POST_METRICS: EventType.POST_METRICS_OBSERVED,
    Topic.TRACKING_ORDERS: EventType.ORDER_REDEEMED,
    Topic.TRACKING_CLICKS: EventType.LINK_CLICKED,
    Topic.TRACKING_ATTRIBUTION: EventType.ATTRIBUTION_UPDATED,
    Topic.DELIVERABLES_CONFIRMED: EventType.DELIVERABLE_CONFIRMED,
    Topic.FX_RATES: EventType.FX_RATES_PUBLISHED,
}

# Where each type carries money, and a list with a contract maximum (path, the maximum).
MONEY_PATH: Final[dict[str, tuple[str, ...]]] = {
    EventType.CREATOR_PROFILE_UPSERTED: ("rate_card", "post"),
    EventType.MATCH_REQUESTED: ("budget_per_creator",),
    EventType.DEAL_SIGNED: ("fee",),
    EventType.BRAND_FUNDED: ("amount",),
    EventType.ORDER_REDEEMED: ("amount",),
    EventType.ATTRIBUTION_UPDATED: ("spend",),
}
LONG_LIST: Final[dict[str, tuple[tuple[str, ...], int]]] = {
    EventType.CREATOR_PROFILE_UPSERTED: (("topics",), 50),
    EventType.MATCH_REQUESTED: (("exclude_creator_ids",), 10_000),
    EventType.DEAL_SIGNED: (("promo_codes",), 50),
    EventType.POST_METRICS_OBSERVED: (("tags",), 100),
}
# A field of a type on another topic, to send an event to the wrong topic.
FOREIGN_TYPE: Final = {
    topic: EventType.DEAL_SIGNED if topic != Topic.CAMPAIGN_DEALS else EventType.ORDER_REDEEMED
    for topic in TYPE_OF_TOPIC
}
OVERSIZED_BYTES: Final = 1_048_576 + 64 * 1024


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def example(event_type: str) -> Document:
    """The contract's example of `event_type` as a JSON dict, with a fresh event id."""
    document: Document = json.loads(encode(valid_example(event_type)))
    document["id"] = str(uuid.uuid4())
    return document


def key_of(document: Document) -> bytes:
    """The Kafka key the contract gives `document` (its key field), or b'?' if it has none."""
    try:
        spec = spec_for_type(document["type"])
        return str(document["data"][spec.key_field]).encode()
    except (KeyError, TypeError, LookupError):
        return b"?"


def to_bytes(document: Document) -> bytes:
    # Python's json writes NaN and Infinity tokens for non-finite floats, as hostile
    # producers do; allow_nan stays on deliberately.
    return json.dumps(document).encode()


FAR_FUTURE: Final = "9999-12-31T23:59:59Z"


@dataclass(frozen=True)
class Bad:
    """A value a consumer of `topic` must dead-letter: the DLQ's error class and a fragment
    its message must contain."""

    case: str
    topic: str
    key: bytes
    value: bytes
    error_class: str
    reason: str


def _at(document: Document, path: tuple[str, ...]) -> Any:
    node: Any = document["data"]
    for part in path:
        node = node[part]
    return node


def _set(document: Document, path: tuple[str, ...], value: Any) -> Document:
    changed = copy.deepcopy(document)
    node: Any = changed["data"]
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


def bad_values(topic: str) -> list[Bad]:
    """Every hostile class that the v1 contract refuses on `topic`."""
    event_type = TYPE_OF_TOPIC[topic]
    spec = spec_for_type(event_type)
    base = example(event_type)
    key = key_of(base)
    field = spec.key_field
    cases: list[tuple[str, bytes, str, str]] = [
        ("not JSON", b'{"specversion": "1.0", "data": {', "InvalidJSON", "not valid JSON"),
        ("binary garbage", bytes(range(256)) * 4, "InvalidJSON", "not valid JSON"),
        ("JSON array", b"[1, 2, 3]", "SchemaViolation", "not an array"),
        ("JSON string", b'"deal.signed"', "SchemaViolation", "not a string"),
        (
            "key field as a number",
            to_bytes(_set(base, (field,), 12345)),
            "SchemaViolation",
            f"data.{field}",
        ),
        (
            "envelope id as an object",
            to_bytes({**base, "id": {"nested": True}}),
            "SchemaViolation",
            "id: Input should be a valid string",
        ),
        (
            "required data field missing",
            to_bytes({**base, "data": {k: v for k, v in base["data"].items() if k != field}}),
            "SchemaViolation",
            f"data.{field}: required field is missing",
        ),
        (
            "no data at all",
            to_bytes({k: v for k, v in base.items() if k != "data"}),
            "SchemaViolation",
            "data: required field is missing",
        ),
        (
            "huge string",
            to_bytes(_set(base, (field,), "x" * 200_000)),
            "SchemaViolation",
            f"data.{field}",
        ),
        ("NaN token", to_bytes(_set(base, (field,), float("nan"))), "InvalidJSON", f"data.{field}"),
        (
            "Infinity token",
            to_bytes(_set(base, (field,), float("-inf"))),
            "InvalidJSON",
            f"data.{field}: NaN and Infinity are not JSON",
        ),
        (
            "time without a zone",
            to_bytes({**base, "time": "2025-04-01T12:00:00"}),
            "SchemaViolation",
            "time: timestamp has no time zone",
        ),
        (
            "time not a timestamp",
            to_bytes({**base, "time": 1743508800}),
            "SchemaViolation",
            "time: must be an RFC 3339 timestamp",
        ),
        (
            "specversion 0.3",
            to_bytes({**base, "specversion": "0.3"}),
            "SchemaViolation",
            "specversion: Input should be '1.0' (got '0.3')",
        ),
        (
            "unknown event type",
            to_bytes({**base, "type": "deal.exploded"}),
            "UnknownEventType",
            "'deal.exploded' is not a v1 event type",
        ),
        (
            "another topic's event type",
            to_bytes(example(FOREIGN_TYPE[topic])),
            "WrongTopic",
            f"belongs on topic '{spec_for_type(FOREIGN_TYPE[topic]).topic}'",
        ),
        (
            "unknown envelope attribute",
            to_bytes({**base, "priority": "urgent"}),
            "SchemaViolation",
            "priority: unknown field",
        ),
        (
            "oversized message",
            to_bytes(_set(base, (field,), "y" * OVERSIZED_BYTES)),
            "TooLarge",
            "the limit is 1048576 bytes",
        ),
    ]
    if spec.external:
        cases.append(
            (
                "unknown data field",
                to_bytes(_set(base, ("discount_hack",), True)),
                "SchemaViolation",
                "data.discount_hack: unknown field",
            )
        )
    if event_type in LONG_LIST:
        path, maximum = LONG_LIST[event_type]
        items = [f"item-{n}" for n in range(maximum + 1)]
        dotted = "data." + ".".join(path)
        cases.append(
            ("over-long list", to_bytes(_set(base, path, items)), "SchemaViolation", dotted)
        )
    if event_type in MONEY_PATH:
        path = MONEY_PATH[event_type]
        dotted = "data." + ".".join(path)
        currency = _at(base, path)["currency"]
        for case, money, reason in (
            ("negative money", {"amount": "-450.00", "currency": currency}, ": -450.00"),
            ("amount with an exponent", {"amount": "1e30", "currency": currency}, ".amount"),
            ("absurd amount", {"amount": "99999999999999999", "currency": currency}, ": absurd"),
            ("money as a JSON number", {"amount": 450.0, "currency": currency}, ".amount"),
            ("unknown currency", {"amount": "450.00", "currency": "XYZ"}, ".currency"),
            ("currency in lower case", {"amount": "450.00", "currency": "usd"}, ".currency"),
            ("money without currency", {"amount": "450.00"}, ".currency: required"),
        ):
            value = to_bytes(_set(base, path, money))
            cases.append((case, value, "SchemaViolation", dotted + reason))
    # Sent with the key of the example's entity (or a valid neighbour's): another entity's id.
    other = "SEK" if field == "base" else "another-entity"
    cases.append(
        (
            "entity id not the Kafka key",
            to_bytes({**_set(base, (field,), other), "subject": other}),
            "KeyMismatch",
            f"is not data.{field} '{other}'",
        )
    )
    if spec.newest_by is not None:
        # Where the newest version wins, a time in the future would outrank every later one.
        path = () if spec.newest_by == "time" else (spec.newest_by,)
        future = {**base, "time": FAR_FUTURE} if not path else _set(base, path, FAR_FUTURE)
        where = "time" if not path else f"data.{spec.newest_by}"
        cases.append(
            ("deciding time far in the future", to_bytes(future), "FutureDated", f"{where}: 9999")
        )
    if event_type == EventType.FX_RATES_PUBLISHED:
        for case, rates, reason in (
            ("negative FX rate", {"EUR": "-0.92"}, "data.rates.EUR: Input should be greater"),
            ("FX rate with an exponent", {"EUR": "1e30"}, "data.rates.EUR: must be a plain"),
            ("FX rate as a JSON number", {"EUR": 0.92}, "data.rates.EUR: must be a decimal"),
            ("FX rate in an unknown currency", {"XYZ": "1.5"}, "data.rates.XYZ (key): unknown"),
        ):
            cases.append((case, to_bytes(_set(base, ("rates",), rates)), "SchemaViolation", reason))
    return [Bad(case, topic, key, value, cls, reason) for case, value, cls, reason in cases]


def odd_but_valid(topic: str) -> list[tuple[str, Document]]:
    """Values the contract accepts although they look wrong; consumers must process them."""
    event_type = TYPE_OF_TOPIC[topic]
    offset = {**example(event_type), "time": "2025-04-01T14:00:00+02:00"}
    cases = [("time with an offset", offset)]
    if spec_for_type(event_type).newest_by != "time":
        # Only where the envelope's time decides the newest version is a future one refused.
        cases.append(("time far in the future", {**example(event_type), "time": FAR_FUTURE}))
    if not spec_for_type(event_type).external:
        # Between our own services unknown data fields are tolerated (docs/architecture.md §3).
        cases.append(("unknown field between services", _set(example(event_type), ("v2",), 1)))
    return cases


# Random mutations for the fuzz test ------------------------------------------------------

Mutation = Callable[[random.Random, bytes], bytes]


def _flip_byte(rng: random.Random, raw: bytes) -> bytes:
    at = rng.randrange(len(raw))
    return raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1 :]


def _truncate(rng: random.Random, raw: bytes) -> bytes:
    return raw[: rng.randrange(len(raw))]


def _splice(rng: random.Random, raw: bytes) -> bytes:
    token = rng.choice([b"NaN", b"-Infinity", b"null", b"[]", b"{}", b'"', b"1e999", b"\x00"])
    at = rng.randrange(len(raw))
    return raw[:at] + token + raw[at:]


def _replace_json_value(rng: random.Random, raw: bytes) -> bytes:
    document = json.loads(raw)
    node: Any = document
    path: list[Any] = []
    while isinstance(node, dict | list) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        node = node[key]
    replacement: Any = rng.choice(
        [
            None,
            True,
            -1,
            0,
            2**70,
            1.5,
            float("nan"),
            "",
            "x" * rng.choice([1, 129, 5001]),
            "-1.00",
            "1e5",
            "2025-01-01T00:00:00",
            "9999-12-31T23:59:59Z",
            [],
            {},
            ["a"] * 120,
        ]
    )
    if not path:
        return json.dumps(replacement).encode()
    parent: Any = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = replacement
    return json.dumps(document).encode()


def _drop_json_field(rng: random.Random, raw: bytes) -> bytes:
    document = json.loads(raw)
    target = document if rng.random() < 0.4 else document["data"]
    if target:
        del target[rng.choice(list(target))]
    return json.dumps(document).encode()


MUTATIONS: Final[tuple[Mutation, ...]] = (
    _flip_byte,
    _truncate,
    _splice,
    _replace_json_value,
    _replace_json_value,
    _drop_json_field,
)


def mutated(rng: random.Random, topic: str) -> bytes:
    """A valid event of `topic` (any of its types) changed by one to three random mutations."""
    event_type = rng.choice([spec.type for spec in specs_for_topic(topic)])
    raw = to_bytes(example(event_type))
    for _ in range(rng.randint(1, 3)):
        if not raw:
            break
        try:
            raw = rng.choice(MUTATIONS)(rng, raw)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raw = _flip_byte(rng, raw) if raw else raw
    return raw
