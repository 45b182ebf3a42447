"""Secret data fields (typed `SecretStr` in the contract) kept out of copies made outside their
topic: a dead letter keeps the value with those fields replaced, never the secret.

The fields are found by name anywhere in the JSON document and on any topic, not only where
the contract puts them: a dead letter is by definition a value that may not follow the
contract, and may be an account sent to the wrong topic. On a topic whose events carry
secrets, a key its events do not declare is replaced too, in the envelope, the payload or an
object in it: a misspelt `destinaton`, or an `iban` the contract does not know, may hold
anything. A value that does not parse at all, on such a topic, is withheld whole, since the
secret could be anywhere in it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from shared.contract.events.registry import (
    SECRET_FIELDS,
    declared_fields_of_topic,
    secret_fields_of_topic,
)

MASKED: Final = "***"
WITHHELD: Final = "*"
"""The masked path reported when the whole value was withheld."""

# Which keys of a JSON object, found at a path, are replaced.
_Hidden = Callable[[str, str], bool]


def mask_secrets(topic: str, value: bytes) -> tuple[bytes, tuple[str, ...]]:
    """`value` with the contract's secret fields (and, on a topic whose events carry
    secrets, every key they do not declare) replaced by MASKED, and the paths replaced
    (e.g. `data.destination`); `(b"", (WITHHELD,))` for a value that is not JSON on such a
    topic. Values without such fields come back as they were, byte for byte."""
    carries_secrets = bool(secret_fields_of_topic(topic))
    declared: Mapping[str, frozenset[str]] = (
        declared_fields_of_topic(topic) if carries_secrets else {}
    )

    def hidden(path: str, key: str) -> bool:
        known = declared.get(path)
        return key in SECRET_FIELDS or (known is not None and key not in known)

    masked: list[str] = []
    try:
        document = _mask(json.loads(value), hidden, "", masked)
    except (ValueError, RecursionError):  # not JSON, invalid UTF-8, or nested too deep
        return (b"", (WITHHELD,)) if carries_secrets else (value, ())
    if not masked:
        return value, ()
    return json.dumps(document, separators=(",", ":")).encode(), tuple(masked)


def _mask(node: Any, hidden: _Hidden, path: str, masked: list[str]) -> Any:
    if isinstance(node, dict):
        result = {}
        for key, child in node.items():
            where = f"{path}.{key}" if path else str(key)
            if hidden(path, key) and child is not None:  # null (absent) hides nothing
                result[key] = MASKED
                masked.append(where)
            else:
                result[key] = _mask(child, hidden, where, masked)
        return result
    if isinstance(node, list):
        return [_mask(child, hidden, f"{path}[{i}]", masked) for i, child in enumerate(node)]
    return node
