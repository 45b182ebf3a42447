"""Matching's answers as a brand reads them: every `match.suggested` on the topic from its
start, by request id (duplicates kept, so that a test can count them)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from shared.contract.events import MatchSuggested, Topic, decode
from tests.support.waiting import eventually


class Answers:
    def __init__(self, bootstrap: str, group_id: str) -> None:
        self._consumer = AIOKafkaConsumer(
            Topic.MATCH_SUGGESTIONS,
            bootstrap_servers=bootstrap,
            group_id=group_id,
            auto_offset_reset="earliest",
        )
        self.by_request: dict[str, list[MatchSuggested]] = {}

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def read(self) -> None:
        """Take what arrived since the last read (waiting up to 200 ms for something)."""
        batch = await self._consumer.getmany(timeout_ms=200)
        for records in batch.values():
            for record in records:
                event = decode(record.topic, record.value or b"")
                self.by_request.setdefault(event.data.request_id, []).append(event.data)

    async def wait_for(self, request_id: str, seconds: float = 45.0) -> MatchSuggested:
        """The first answer to `request_id`; AssertionError if none came within `seconds`."""

        async def answered() -> bool:
            await self.read()
            return request_id in self.by_request

        await eventually(answered, seconds, what=f"an answer to {request_id}")
        return self.by_request[request_id][0]
