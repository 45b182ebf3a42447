"""Matching's units of work on the in-memory store: one per run of one event type, the
in-memory index changed after each commit, runs applied elsewhere taken from the store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.matching.domain.index import CreatorIndex
from services.matching.handlers import MatchingHandlers, MatchingUnits, runs_of_one_type
from services.matching.settings import MatchingSettings
from services.matching.state import MatchingService, MatchingState
from services.matching.store.memory import MemoryMatchingStore
from services.matching.translate import profile_payload
from shared.contract.errors import EventRejected
from shared.contract.events import CloudEvent, EventType, MatchFeedback, make_event
from shared.contract.signing import Party, Signer
from shared.runtime.kafka import Delivery
from shared.runtime.trust import Untrusted
from shared.tools.synthetic.population import (
    NICHE_NAMES,
    generate_population,
    niche_request,
    reference_fx,
)
from tests.support.examples import fresh_example

FX = reference_fx(datetime(2025, 1, 1, tzinfo=UTC))
Item = tuple[CloudEvent[Any], Delivery]


def delivered(event: CloudEvent[Any], signed_by: Signer | None = None) -> Item:
    return event, Delivery("topic", 0, 0, None, b"", (), signed_by=signed_by)


def replica(store: MemoryMatchingStore) -> tuple[MatchingService, MatchingUnits]:
    settings = MatchingSettings()
    service = MatchingService(store, settings, MatchingState(CreatorIndex(seed=1), fx=FX))
    return service, MatchingUnits("matching", store, MatchingHandlers(service, store))


def profiles_then_a_request(count: int) -> list[Item]:
    population = generate_population(count, seed=3, id_prefix="hd")
    profiles = [
        delivered(make_event(profile_payload(population.profiles, i), source="tests/collector"))
        for i in range(count)
    ]
    niche = NICHE_NAMES[int(population.niche[0])]
    request = niche_request(niche, request_id="req-1", campaign_id="cmp-1", seed=1, limit=5)
    return [*profiles, delivered(make_event(request, source="tests/brand"))]


async def test_a_profile_is_indexed_before_a_later_request_of_its_batch_is_scored() -> None:
    store = MemoryMatchingStore()
    service, units = replica(store)
    batch = profiles_then_a_request(60)
    await units(batch)
    assert len(service.state.index) == 60
    [answer] = store.state.outbox
    suggested = [s.creator_id for s in answer.data.suggestions]
    assert suggested and set(suggested) <= {e.data.creator_id for e, _ in batch[:-1]}


async def test_a_batch_applied_before_answers_nothing_again_and_another_replica_indexes_it() -> (
    None
):
    store = MemoryMatchingStore()
    _, units = replica(store)
    batch = profiles_then_a_request(40)
    await units(batch)
    other, other_units = replica(store)  # a second replica, on the same database
    await other_units(batch)
    assert len(other.state.index) == 40  # taken from the store: another consumer wrote them
    assert len(store.state.outbox) == 1


async def test_feedback_signed_by_another_brand_is_refused_and_leaves_nothing() -> None:
    store = MemoryMatchingStore()
    _, units = replica(store)
    await units(profiles_then_a_request(30))  # brand-synthetic asked for cmp-1
    rival = Signer(Party.BRAND, "brand-rival", "key-1")
    feedback = make_event(
        MatchFeedback(campaign_id="cmp-1", creator_id="hd-0", decision="hired", reason=""),
        source="tests/brand",
    )
    with pytest.raises(Untrusted):
        await units([delivered(feedback, signed_by=rival)])
    assert store.state.feedback == {} and ("matching", *feedback.identity) not in store.state.inbox


async def test_feedback_naming_a_request_of_another_campaign_is_refused() -> None:
    """A request id names one campaign's request: feedback on another campaign under it
    would count a hire where the brand did not mean it. Unknown ids may be answered later."""
    store = MemoryMatchingStore()
    _, units = replica(store)
    await units(profiles_then_a_request(30))  # brand-synthetic's req-1 for cmp-1
    brand = Signer(Party.BRAND, "brand-synthetic", "key-1")

    def feedback(campaign: str, request_id: str) -> Any:
        data = MatchFeedback(
            campaign_id=campaign,
            creator_id="hd-0",
            decision="hired",
            reason="",
            request_id=request_id,
        )
        return make_event(data, source="tests/brand")

    with pytest.raises(EventRejected, match="'req-1' names a request for cmp-1, not cmp-6"):
        await units([delivered(feedback("cmp-6", "req-1"), signed_by=brand)])
    assert store.state.feedback == {}
    await units([delivered(feedback("cmp-1", "req-1"), signed_by=brand)])
    await units([delivered(feedback("cmp-6", "req-not-yet"), signed_by=brand)])
    assert len(store.state.feedback) == 2


def test_a_batch_is_cut_into_runs_of_one_type_in_arrival_order() -> None:
    batch = profiles_then_a_request(3)
    runs = runs_of_one_type([batch[0], batch[3], batch[1], batch[2]])
    assert [[e.type for e, _ in run] for run in runs] == [
        ["creator.profile.upserted"],
        ["match.requested"],
        ["creator.profile.upserted", "creator.profile.upserted"],
    ]


async def test_a_brand_s_hire_hides_the_creator_from_its_requests_answered_with_another_s() -> None:
    """Two brands may ask for the same campaign id in one batch: each answer counts only its
    own brand's `hired` feedback."""
    store = MemoryMatchingStore()
    _, units = replica(store)
    batch = profiles_then_a_request(60)
    await units(batch)  # brand-synthetic asked for cmp-1
    [first] = store.state.outbox
    hired = first.data.suggestions[0].creator_id
    brand = first.data.brand_id
    feedback = make_event(
        MatchFeedback(campaign_id="cmp-1", creator_id=hired, decision="hired", reason=""),
        source="tests/brand",
    )
    await units([delivered(feedback, signed_by=Signer(Party.BRAND, brand, "key-1"))])
    ours, theirs = (
        batch[-1][0].data.model_copy(update={"request_id": request_id, "brand_id": owner})
        for request_id, owner in (("req-2", brand), ("req-3", "brand-rival"))
    )
    await units(
        [
            delivered(make_event(ours, source="tests/brand")),
            delivered(make_event(theirs, source="tests/brand")),
        ]
    )
    answers = {e.data.request_id: e.data for e in store.state.outbox[1:]}
    assert hired not in {s.creator_id for s in answers["req-2"].suggestions}
    assert answers["req-2"].filtered.get("already_hired") == 1
    assert hired in {s.creator_id for s in answers["req-3"].suggestions}


@pytest.mark.parametrize(
    ("field", "value"), [("creator_id", "cr-other"), ("campaign_id", "cmp-other")]
)
async def test_an_amendment_moving_a_kept_deal_is_refused(field: str, value: str) -> None:
    """As payouts and tracking refuse it: an amendment never changes who or what is hired."""
    store = MemoryMatchingStore()
    _, units = replica(store)
    await units([delivered(fresh_example(EventType.DEAL_SIGNED, "tests/brand"))])
    moved = fresh_example(EventType.DEAL_AMENDED, "tests/brand", **{field: value})
    with pytest.raises(EventRejected, match=f"data.{field}: '{value}' differs from deal deal-42"):
        await units([delivered(moved)])
    await units([delivered(fresh_example(EventType.DEAL_AMENDED, "tests/brand"))])


async def test_another_brands_change_of_a_kept_deal_is_refused() -> None:
    """Every service consuming campaign.deals dead-letters its own copy: matching too."""
    store = MemoryMatchingStore()
    _, units = replica(store)
    await units([delivered(fresh_example(EventType.DEAL_SIGNED, "tests/brand"))])  # br-12's
    for change in (EventType.DEAL_AMENDED, EventType.DEAL_CANCELLED):
        rival = fresh_example(change, "tests/rival", brand_id="br-rival")
        with pytest.raises(Untrusted, match="deal deal-42 is brand br-12's, not br-rival's"):
            await units([delivered(rival)])
        await units([delivered(fresh_example(change, "tests/brand"))])
    assert store.state.cancelled == {("deal-42", "br-12")}
    # A change before its deal is kept: the brand is not known yet.
    await units([delivered(fresh_example(EventType.DEAL_CANCELLED, "tests/rival", deal_id="d-9"))])


async def test_a_request_id_naming_another_request_is_refused() -> None:
    """Answers and feedback go by request id: another brand's request, or one with other
    details, under one already answered would otherwise never be answered, without a word."""
    store = MemoryMatchingStore()
    _, units = replica(store)
    batch = profiles_then_a_request(30)
    await units(batch)  # brand-synthetic's req-1 for cmp-1
    asked = batch[-1][0].data
    for change, whose in (
        ({"brand_id": "brand-rival"}, "another brand's request"),
        ({"campaign_id": "cmp-2"}, "a request for cmp-1"),
        ({"limit": asked.limit + 5}, "a request with another limit"),
        (
            {"limit": asked.limit + 1, "diversity": 0.25},
            "a request with another diversity, limit",
        ),
    ):
        other = make_event(asked.model_copy(update=change), source="tests/brand")
        with pytest.raises(EventRejected, match=f"data.request_id: 'req-1' already names {whose}"):
            await units([delivered(other)])
    # Asked again by the same brand for the same campaign: a repeat, not answered again.
    await units([delivered(make_event(asked, source="tests/brand"))])
    assert len(store.state.outbox) == 1
    # Two brands under one new id in one batch: the first is answered, the second refused.
    ours, theirs = (
        make_event(asked.model_copy(update={"request_id": "req-9", "brand_id": b}), source="t")
        for b in ("brand-synthetic", "brand-rival")
    )
    with pytest.raises(EventRejected, match="another brand's request"):
        await units([delivered(ours), delivered(theirs)])
    await units([delivered(ours)])
    assert [e.data.request_id for e in store.state.outbox] == ["req-1", "req-9"]
