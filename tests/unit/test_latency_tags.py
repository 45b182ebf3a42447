"""The benchmarks' receivers tag the records of one event type by deal, decoding no other."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shared.contract.events import EventDecodeError, Topic, encode
from shared.contract.events.examples import valid_example
from shared.tools.latency_floor import of_type


def _record(value: bytes) -> SimpleNamespace:
    return SimpleNamespace(topic=Topic.PAYOUTS_STATUS.value, value=value)


def test_records_of_the_type_are_tagged_by_deal_and_others_passed_over_undecoded() -> None:
    sent, settled = valid_example("payout.sent"), valid_example("payout.settled")
    ids: dict[str, str] = {}
    tag = of_type("payout.sent", ids)
    assert tag(_record(encode(sent))) == sent.data.deal_id
    assert ids == {sent.data.deal_id: sent.id}
    assert tag(_record(encode(settled))) is None
    assert tag(_record(b"not an event at all")) is None  # never decoded: no error
    with pytest.raises(EventDecodeError):  # naming the type, it is decoded
        tag(_record(b'{"type": "payout.sent"'))
