"""Secret data fields (typed `SecretStr` in the contract) kept out of copies made outside their
topic: a dead letter keeps the value with those fields replaced, never the secret.

The fields are found by name anywhere in the JSON document, not only where the contract puts
them: a dead letter is by definition a value that may not follow the contract. A value that
does not parse at all, on a topic whose events carry secrets, is withheld whole, since the
secret could be anywhere in it.
"""

from __future__ import annotations

import json
from typing import Any, Final

from shared.contract.events.registry import secret_fields_of_topic

MASKED: Final = "***"
WITHHELD: Final = "*"
"""The masked path reported when the whole value was withheld."""


def mask_secrets(topic: str, value: bytes) -> tuple[bytes, tuple[str, ...]]:
    """`value` with the secret fields of `topic`'s events replaced by MASKED, and the paths
    replaced (e.g. `data.destination`); `(b"", (WITHHELD,))` for a value that is not JSON.
    Values without secret fields come back as they were, byte for byte."""
    names = secret_fields_of_topic(topic)
    if not names:
        return value, ()
    masked: list[str] = []
    try:
        document = _mask(json.loads(value), names, "", masked)
    except (ValueError, RecursionError):  # not JSON, invalid UTF-8, or nested too deep
        return b"", (WITHHELD,)
    if not masked:
        return value, ()
    return json.dumps(document, separators=(",", ":")).encode(), tuple(masked)


def _mask(node: Any, names: frozenset[str], path: str, masked: list[str]) -> Any:
    if isinstance(node, dict):
        result = {}
        for key, child in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key in names and child is not None:  # null (an optional one absent) hides nothing
                result[key] = MASKED
                masked.append(where)
            else:
                result[key] = _mask(child, names, where, masked)
        return result
    if isinstance(node, list):
        return [_mask(child, names, f"{path}[{i}]", masked) for i, child in enumerate(node)]
    return node
