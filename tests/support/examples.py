"""Fresh copies of the contract's valid examples, for tests that send many events at once."""

from __future__ import annotations

import uuid
from typing import Any

from shared.contract.events import CloudEvent, event_key
from shared.contract.events.examples import valid_example


def fresh_example(event_type: str, source: str, **data: Any) -> CloudEvent[Any]:
    """The valid example of `event_type` with `data` fields replaced, from `source`, under a
    new id; its subject names the entity, as its key does (else it is a KeyMismatch)."""
    event = valid_example(event_type)
    if data:
        event = event.model_copy(update={"data": event.data.model_copy(update=data)})
    subject = event_key(event).decode()
    return event.model_copy(update={"id": str(uuid.uuid4()), "source": source, "subject": subject})
