"""Each input event type names the locks its handler needs (`handlers.STEPS`): a new type
cannot be added without saying which, and a lock is named only where its data carries the id."""

from __future__ import annotations

import pytest

from services.payouts.handlers import STEPS
from shared.contract.events.registry import EventType, spec_for_type


@pytest.mark.parametrize("event_type", sorted(STEPS))
def test_a_step_locks_only_ids_its_event_carries(event_type: str) -> None:
    fields = spec_for_type(event_type).data_model.model_fields
    for lock in STEPS[event_type].locks - {"fx"}:
        assert f"{lock}_id" in fields, f"{event_type} locks {lock} but carries no {lock}_id"


def test_the_steps_without_a_lock_are_the_reviewed_ones() -> None:
    # An attribution is only stored; the commission round that reads it takes its own locks.
    unlocked = {t for t, step in STEPS.items() if not step.locks}
    assert unlocked == {EventType.ATTRIBUTION_UPDATED}
