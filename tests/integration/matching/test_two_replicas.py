"""Two matching replicas on the real embedded Kafka and PostgreSQL.

They share the consumer group, so requests (and profile events) are split between them, and
each follows the profile topic whole, so each keeps every creator in its index. Each request
is answered once; a request that arrives together with new profiles is answered with them,
whichever replica gets it; and once one replica stops, the other answers with every profile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

import pytest

from services.matching.app import SERVICE, make_setup
from services.matching.schema import SCHEMA
from services.matching.settings import MatchingSettings
from services.matching.state import MatchingService
from services.matching.translate import profile_payload
from shared.contract.events import MatchRequested, Topic, make_event
from shared.runtime.service import Background, Resources, ServiceRuntime
from shared.tools.infra import InfraUrls
from shared.tools.synthetic.population import Population, generate_population, niche_request
from tests.integration.matching.answers import Answers
from tests.support.kafka_io import produce_events
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN = uuid.uuid4().hex[:8]
SETTINGS = MatchingSettings(retrain_check_seconds=0.3)
BAKING = 0  # index of "baking" in NICHE_NAMES


class Replica:
    def __init__(self, stack: AsyncExitStack) -> None:
        self.stack = stack
        self.service: MatchingService | None = None
        self.resources: Resources | None = None

    def holds(self, topic: str) -> set[int]:
        """The partitions of `topic` this replica's group consumer holds now."""
        assert self.resources is not None
        group = self.resources.kafka_consumers()[0]
        return (
            set()
            if group is None
            else {tp.partition for tp in group.assignment() if tp.topic == topic}
        )

    def indexes(self, population: Population) -> bool:
        assert self.service is not None
        row_of = self.service.state.index.row_of
        return all(cid in row_of for cid in population.profiles.creator_id)


async def start_replica(infra: InfraUrls) -> Replica:
    replica = Replica(AsyncExitStack())

    def started(service: MatchingService) -> None:
        replica.service = service

    matching = make_setup(settings=SETTINGS, started=started)

    async def setup(resources: Resources) -> Sequence[Background]:
        replica.resources = resources
        return await matching(resources)

    await replica.stack.enter_async_context(
        ServiceRuntime(SERVICE, setup, schema=SCHEMA, urls=infra)
    )
    return replica


@pytest.fixture
async def answers(infra: InfraUrls) -> AsyncIterator[Answers]:
    reader = Answers(infra.kafka_bootstrap_servers, group_id=f"replicas-test-{RUN}")
    await reader.start()
    try:
        yield reader
    finally:
        await reader.stop()


def baking_request(name: str, exclude: list[str]) -> MatchRequested:
    """A baking brief that never suggests `exclude`: only new creators can answer it."""
    return niche_request(
        "baking",
        request_id=f"req-{RUN}-{name}",
        campaign_id=f"cmp-{RUN}-{name}",
        seed=3,
        limit=20,
        exclude=tuple(exclude),
    )


def baking(population: Population) -> list[str]:
    ids = population.profiles.creator_id
    return [ids[i] for i in range(len(population)) if population.niche[i] == BAKING]


def profile_events(population: Population) -> list[Any]:
    return [
        make_event(profile_payload(population.profiles, i), source="tests/collector")
        for i in range(len(population))
    ]


async def test_two_replicas_each_keep_every_creator_and_answer_each_request_once(
    infra: InfraUrls, topics: None, answers: Answers
) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    first, second = (
        generate_population(120, seed=21, id_prefix=f"r1{RUN}"),
        generate_population(120, seed=22, id_prefix=f"r2{RUN}"),
    )
    together, later = (
        generate_population(120, seed=23, id_prefix=f"r3{RUN}"),
        generate_population(120, seed=24, id_prefix=f"r4{RUN}"),
    )
    one = await start_replica(infra)
    try:
        two = await start_replica(infra)
    except BaseException:
        await one.stack.aclose()
        raise
    try:
        await _story(bootstrap, one, two, answers, first, second, together, later)
    finally:
        await one.stack.aclose()
        await two.stack.aclose()


async def _story(
    bootstrap: str,
    one: Replica,
    two: Replica,
    answers: Answers,
    first: Population,
    second: Population,
    together: Population,
    later: Population,
) -> None:

    async def split() -> bool:  # the group gave each replica its share of the requests
        held = [one.holds(Topic.BRAND_MATCH_REQUESTS), two.holds(Topic.BRAND_MATCH_REQUESTS)]
        return all(held) and not held[0] & held[1] and len(held[0] | held[1]) >= 2

    await eventually(split, what="requests split between the two replicas")
    # Profiles too are split by the group: each replica's consumer writes only its share.
    assert one.holds(Topic.CREATOR_PROFILES) != two.holds(Topic.CREATOR_PROFILES)

    await produce_events(bootstrap, profile_events(first))

    async def both_index_first() -> bool:
        return one.indexes(first) and two.indexes(first)

    await eventually(both_index_first, what="every creator in both replicas' indexes")

    # Requests on every partition: each answered once, by one of the two.
    requests = [baking_request(f"once-{n}", []) for n in range(8)]
    await produce_events(bootstrap, [make_event(r, source="tests/brand") for r in requests])
    for request in requests:
        answer = await answers.wait_for(request.request_id)
        assert answer.suggestions, answer.filtered
    await asyncio.sleep(1.0)  # room for a second answer, were there one
    await answers.read()
    assert [len(answers.by_request[r.request_id]) for r in requests] == [1] * len(requests)

    # New profiles and a request sent together: whichever replica takes the request has
    # read the profiles published before it.
    excluded = baking(first)
    request = baking_request("together", excluded)
    await produce_events(
        bootstrap, [*profile_events(together), make_event(request, source="tests/brand")]
    )
    answer = await answers.wait_for(request.request_id)
    assert {s.creator_id for s in answer.suggestions} & set(baking(together)), answer

    await produce_events(bootstrap, profile_events(second))

    async def both_index_second() -> bool:
        return one.indexes(second) and two.indexes(second)

    await eventually(both_index_second, what="the new creators in both replicas' indexes")
    await one.stack.aclose()  # the first replica goes away
    # The second replica answers alone, from an index that has every creator, the ones
    # the first replica's consumer wrote included.
    excluded += baking(together)
    request = baking_request("after-stop", excluded)
    await produce_events(bootstrap, [make_event(request, source="tests/brand")])
    answer = await answers.wait_for(request.request_id)
    assert {s.creator_id for s in answer.suggestions} & set(baking(second)), answer
    assert not {s.creator_id for s in answer.suggestions} & set(excluded)
    # And it keeps up alone.
    await produce_events(bootstrap, profile_events(later))

    async def indexes_later() -> bool:
        return two.indexes(later)

    await eventually(indexes_later, what="profiles sent after the stop indexed")
