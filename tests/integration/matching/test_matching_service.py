"""The matching service on the real embedded Kafka, Postgres and Redis.

Profiles, FX rates, a deal and requests go in through a plain aiokafka producer, as outside
producers send them; answers are read back from `match.suggestions` and the DLQ.
"""

from __future__ import annotations

import gc
import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np
import pytest

from services.matching.app import SERVICE, make_setup
from services.matching.schema import SCHEMA
from services.matching.settings import MatchingSettings
from services.matching.state import MatchingService
from services.matching.translate import profile_payload
from shared.contract.events import (
    CreatorProfileUpserted,
    DealAmended,
    DealCancelled,
    DealSigned,
    Deliverable,
    FxRatesPublished,
    MatchFeedback,
    MatchRequested,
    Suggestion,
    Topic,
    dlq_topic,
    encode,
    make_event,
)
from shared.contract.events.vocabulary import Platform
from shared.contract.money import Money
from shared.contract.signing import Party
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from shared.tools.infra.smoke import read_dead_letters
from shared.tools.signing import PartyKeys
from shared.tools.synthetic.population import (
    NICHE_NAMES,
    Population,
    generate_population,
    niche_request,
)
from tests.integration.matching.answers import Answers
from tests.support.kafka_io import produce, produce_events
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = MatchingSettings(retrain_every_labels=20, retrain_check_seconds=0.3)
RUN = uuid.uuid4().hex[:8]
POPULATION_SIZE = 400


class Running:
    def __init__(self, service: MatchingService, population: Population, answers: Answers) -> None:
        self.service = service
        self.population = population
        self.answers = answers


@pytest.fixture(scope="module")
async def running(infra: InfraUrls, topics: None) -> AsyncIterator[Running]:
    captured: list[MatchingService] = []

    setup = make_setup(settings=SETTINGS, started=captured.append)

    population = generate_population(POPULATION_SIZE, seed=11, id_prefix=f"it{RUN}")
    answers = Answers(infra.kafka_bootstrap_servers, group_id=f"matching-test-{RUN}")
    async with ServiceRuntime(SERVICE, setup, schema=SCHEMA, urls=infra):
        service = captured[0]
        await answers.start()
        try:
            profiles = [
                make_event(profile_payload(population.profiles, i), source="tests/collector")
                for i in range(len(population))
            ]
            fx = FxRatesPublished(
                base="USD",
                rates={"EUR": Decimal("0.92"), "GBP": Decimal("0.79"), "CAD": Decimal("1.36"),
                       "AUD": Decimal("1.52"), "INR": Decimal("83.1"), "SEK": Decimal("10.5"),
                       "BRL": Decimal("5.05"), "MXN": Decimal("17.1"), "JPY": Decimal("150.2")},
                as_of=datetime.now(UTC),
                source=f"tests-{RUN}",
            )  # fmt: skip
            await produce_events(
                infra.kafka_bootstrap_servers,
                [*profiles, make_event(fx, source="tests/fx")],
            )

            async def indexed() -> bool:
                index = service.state.index
                return all(cid in index.row_of for cid in population.profiles.creator_id) and (
                    service.state.fx is not None and service.state.fx.source == fx.source
                )

            await eventually(indexed)
            yield Running(service, population, answers)
        finally:
            await answers.stop()


def deal(campaign_id: str, creator_id: str) -> DealSigned:
    now = datetime.now(UTC)
    return DealSigned(
        deal_id=f"deal-{uuid.uuid4().hex[:8]}",
        campaign_id=campaign_id,
        brand_id="brand-it",
        creator_id=creator_id,
        fee=Money(Decimal("100.00"), "USD"),
        commission_rate=Decimal("0"),
        promo_codes=(),
        deliverables=(Deliverable(deliverable_id="d1", kind="post", count=1, due_by=now),),
        required_tags=(),
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
        attribution_window_days=0,
    )


async def stored_profiles(
    pool: asyncpg.Pool, suggestions: tuple[Suggestion, ...]
) -> dict[str, CreatorProfileUpserted]:
    """The stored profile of each suggested creator's account whose figures it shows."""
    rows = await pool.fetch(
        "SELECT creator_id, platform, profile::text AS p FROM matching_creators"
        " WHERE creator_id = ANY($1)",
        [s.creator_id for s in suggestions],
    )
    shown = {(s.creator_id, s.platforms[0]) for s in suggestions}
    return {
        r["creator_id"]: CreatorProfileUpserted.model_validate_json(r["p"])
        for r in rows
        if (r["creator_id"], r["platform"]) in shown
    }


async def test_the_index_rebuilt_at_start_is_out_of_the_cyclic_collector_s_sight(
    running: Running,
) -> None:
    """At 100k creators every full collection walked the index's ~500k objects, 0.2-1 s in
    the middle of the requests being answered; frozen at start, it is walked no more."""
    assert gc.get_freeze_count() > 0
    assert not any(tracked is running.service.state.index for tracked in gc.get_objects())


async def test_a_cancelled_deal_no_longer_counts_its_creator_as_hired(
    running: Running, infra: InfraUrls, db_pool: asyncpg.Pool
) -> None:
    """Cancelled by its brand, a deal no longer excludes its creator from the campaign's
    suggestions; an amendment changes nothing, and a cancellation by another brand is
    refused (dead-lettered, as the other services do)."""
    population = running.population
    campaign = f"cmp-{RUN}-cancelled"
    ids = population.profiles.creator_id
    baking = [ids[i] for i in range(len(population)) if population.niche[i] == 0]
    freed, still = deal(campaign, baking[5]), deal(campaign, baking[6])
    amended = DealAmended(**dict(freed), version=2)
    changes = [
        DealCancelled(deal_id=freed.deal_id, brand_id=freed.brand_id, reason="withdrawn"),
        DealCancelled(deal_id=still.deal_id, brand_id="brand-rival", reason="not mine"),
    ]
    await produce_events(
        infra.kafka_bootstrap_servers,
        [
            make_event(changes[0], source="tests/brand"),  # before its deal: kept
            *(make_event(d, source="tests/brand") for d in (freed, still, amended)),
            make_event(changes[1], source="tests/rival"),
        ],
    )

    async def recorded() -> bool:
        query = """SELECT (SELECT count(*) FROM matching_hires WHERE campaign_id = $1)
                        + (SELECT count(*) FROM matching_cancelled_deals
                           WHERE deal_id = ANY($2::text[]))"""
        return await db_pool.fetchval(query, campaign, [freed.deal_id, still.deal_id]) == 3

    await eventually(recorded, what="both hires and the brand's own cancellation stored")

    async def refused() -> bool:
        found = await read_dead_letters(
            infra.kafka_bootstrap_servers, [dlq_topic(Topic.CAMPAIGN_DEALS)], service=SERVICE
        )
        return any(
            letter.key == still.deal_id.encode() and "not_the_deal_owner" in letter.reason
            for letter in found
        )

    await eventually(refused, what="the rival's cancellation dead-lettered by matching")
    request = niche_request(
        "baking",
        request_id=f"req-{RUN}-cancelled",
        campaign_id=campaign,
        seed=3,
        limit=50,
        brand_id=freed.brand_id,
    )
    await produce_events(infra.kafka_bootstrap_servers, [make_event(request, source="tests/brand")])
    answer = await running.answers.wait_for(request.request_id)
    assert answer.filtered.get("already_hired") == 1
    assert still.creator_id not in {s.creator_id for s in answer.suggestions}


async def test_request_gets_explained_suggestions_that_respect_every_filter(
    running: Running, infra: InfraUrls, db_pool: asyncpg.Pool
) -> None:
    population = running.population
    campaign = f"cmp-{RUN}-filters"
    ids = population.profiles.creator_id
    baking = [ids[i] for i in range(len(population)) if population.niche[i] == 0]
    excluded, hired = baking[:2], baking[2]
    await produce_events(
        infra.kafka_bootstrap_servers, [make_event(deal(campaign, hired), source="tests/brand")]
    )

    async def hire_recorded() -> bool:
        return bool(
            await db_pool.fetchval(
                "SELECT count(*) FROM matching_hires WHERE campaign_id = $1", campaign
            )
        )

    await eventually(hire_recorded)
    budget = Money(Decimal("900.00"), "EUR")
    request = niche_request(
        "baking",
        request_id=f"req-{RUN}-filters",
        campaign_id=campaign,
        seed=3,
        budget=budget,
        limit=10,
        tiers=("nano", "micro"),
        platforms=("instagram", "tiktok"),
        countries=("US", "GB", "CA", "AU", "IN"),
        exclude=tuple(excluded),
        brand_id="brand-it",  # the deal's brand: another brand's deals do not hire for it
    )
    await produce_events(infra.kafka_bootstrap_servers, [make_event(request, source="tests/brand")])
    answer = await running.answers.wait_for(request.request_id)

    assert answer.campaign_id == campaign and answer.model_version
    assert answer.suggestions, answer.filtered
    assert answer.filtered["excluded"] == 2
    assert answer.filtered["already_hired"] == 1
    assert answer.filtered["likely_fake"] >= 1
    profiles = await stored_profiles(db_pool, answer.suggestions)
    assert [s.rank for s in answer.suggestions] == list(range(1, len(answer.suggestions) + 1))
    for suggestion in answer.suggestions:
        assert math.isclose(sum(suggestion.explanation.values()), suggestion.score, abs_tol=1e-9)
        assert suggestion.creator_id not in {*excluded, hired}
        assert suggestion.tier in ("nano", "micro")
        assert suggestion.estimated_cost.currency == "EUR"
        assert suggestion.estimated_cost <= budget
        profile = profiles[suggestion.creator_id]
        assert profile.platform in ("instagram", "tiktok")
        shares = profile.audience.countries
        assert sum(shares.get(c, 0.0) for c in request.target_audience.countries) >= 0.2
        if suggestion.creator_id in ids:
            assert not population.is_fake[ids.index(suggestion.creator_id)]
    row = await db_pool.fetchrow(
        "SELECT fx_source, model_version FROM matching_requests WHERE request_id = $1",
        request.request_id,
    )
    assert row["fx_source"] == f"tests-{RUN}" and row["model_version"] == answer.model_version


async def test_a_request_s_hard_filters_shape_the_answer_and_are_counted(
    running: Running, infra: InfraUrls, db_pool: asyncpg.Pool
) -> None:
    request = niche_request(
        "fitness", request_id=f"req-{RUN}-hard", campaign_id=f"cmp-{RUN}-hard", seed=5, limit=20
    )
    data = request.model_dump(mode="json")
    data["target_audience"].update(age=["18-24", "25-34"], gender="any")
    data["filters"] = {
        "followers": {"min": 2_000, "max": 400_000},
        "engagement_rate": {"min": 0.01, "max": 0.2},
        "creator_countries": ["US", "GB", "IN", "DE", "BR"],
        "min_audience_age_share": 0.4,
    }
    request = MatchRequested.model_validate(data)
    await produce_events(infra.kafka_bootstrap_servers, [make_event(request, source="tests/brand")])
    answer = await running.answers.wait_for(request.request_id)

    assert answer.suggestions, answer.filtered
    for reason in ("outside_follower_range", "outside_engagement_range",
                   "outside_creator_country", "audience_age_mismatch"):  # fmt: skip
        assert answer.filtered.get(reason, 0) > 0, (reason, answer.filtered)
    profiles = await stored_profiles(db_pool, answer.suggestions)
    for suggestion in answer.suggestions:
        profile = profiles[suggestion.creator_id]
        assert 2_000 <= profile.followers <= 400_000
        assert 0.01 <= suggestion.engagement_rate <= 0.2
        assert profile.country in ("US", "GB", "IN", "DE", "BR")
        ages = profile.audience.age
        assert ages.get("18-24", 0.0) + ages.get("25-34", 0.0) >= 0.4 - 1e-6


async def test_a_follower_jump_in_a_creator_s_history_is_a_flag_with_its_reason(
    running: Running, infra: InfraUrls, db_pool: asyncpg.Pool
) -> None:
    population = running.population
    gaming = population.niche == population_niche("gaming")
    followers = population.profiles.followers
    micro = (followers > 20_000) & (followers < 100_000)
    i = int(np.flatnonzero(gaming & micro & ~population.is_fake)[0])
    profile = profile_payload(population.profiles, i)
    # The count of two weeks ago arrives after the current profile, as collectors may send it.
    earlier = make_event(
        profile.model_copy(update={"followers": profile.followers // 4}),
        source="tests/collector",
        time=datetime.now(UTC) - timedelta(days=14),
    )
    await produce_events(infra.kafka_bootstrap_servers, [earlier])

    async def flagged() -> bool:
        row = running.service.state.index.row_of[profile.creator_id]
        return bool(running.service.state.index.columns.trust_flags[row] & 2)

    await eventually(flagged)
    history = await db_pool.fetch(
        "SELECT followers FROM matching_follower_history WHERE creator_id = $1"
        " ORDER BY observed_at",
        profile.creator_id,
    )
    assert [r["followers"] for r in history] == [profile.followers // 4, profile.followers]
    request = niche_request(
        "gaming", request_id=f"req-{RUN}-spike", campaign_id=f"cmp-{RUN}-spike", seed=2,
        limit=200,
    )  # fmt: skip
    await produce_events(infra.kafka_bootstrap_servers, [make_event(request, source="tests/brand")])
    answer = await running.answers.wait_for(request.request_id)
    spiked = {s.creator_id: s for s in answer.suggestions}[profile.creator_id]
    assert "follower_spike" in spiked.flags
    assert "4.0x" in spiked.flag_reasons["follower_spike"]
    assert spiked.explanation["engagement"] == 0.0 == spiked.explanation["authenticity"]
    others = [s for s in answer.suggestions if s.creator_id != profile.creator_id]
    assert others and all("follower_spike" not in s.flags for s in others)


async def test_a_creator_s_accounts_on_two_platforms_give_one_suggestion_naming_both(
    running: Running, infra: InfraUrls, db_pool: asyncpg.Pool
) -> None:
    population = running.population

    def travel_request(suffix: str, platforms: tuple[Platform, ...]) -> MatchRequested:
        return niche_request(
            "travel", request_id=f"req-{RUN}-{suffix}", campaign_id=f"cmp-{RUN}-{suffix}",
            seed=6, limit=200, platforms=platforms,
        )  # fmt: skip

    probe = travel_request("accounts-probe", ())
    await produce_events(infra.kafka_bootstrap_servers, [make_event(probe, source="tests/b")])
    suggested = (await running.answers.wait_for(probe.request_id)).suggestions
    assert suggested
    ids = population.profiles.creator_id
    first = profile_payload(population.profiles, ids.index(suggested[0].creator_id))
    other = next(p for p in ("youtube", "tiktok", "instagram") if p != first.platform)
    second = first.model_copy(
        update={"platform": other, "handle": f"{first.handle}.{other}",
                "avg_likes": first.avg_likes * 0.7}
    )  # fmt: skip
    await produce_events(
        infra.kafka_bootstrap_servers, [make_event(second, source="tests/collector")]
    )

    async def both_indexed() -> bool:
        accounts = running.service.state.index.accounts_of(first.creator_id)
        return set(accounts) == {first.platform, other}

    await eventually(both_indexed)
    stored = await db_pool.fetch(
        "SELECT platform FROM matching_creators WHERE creator_id = $1 ORDER BY platform",
        first.creator_id,
    )
    assert [r["platform"] for r in stored] == sorted([first.platform, other])

    anywhere = travel_request("accounts", ())
    only_other = travel_request("accounts-one", (other,))
    await produce_events(
        infra.kafka_bootstrap_servers,
        [make_event(r, source="tests/brand") for r in (anywhere, only_other)],
    )
    answer = await running.answers.wait_for(anywhere.request_id)
    mine = [s for s in answer.suggestions if s.creator_id == first.creator_id]
    assert len(mine) == 1, answer.filtered
    assert set(mine[0].platforms) == {first.platform, other}
    shown_handle = {first.platform: first.handle, other: second.handle}[mine[0].platforms[0]]
    assert mine[0].handle == shown_handle
    one = await running.answers.wait_for(only_other.request_id)
    (on_other,) = [s for s in one.suggestions if s.creator_id == first.creator_id]
    assert on_other.platforms == (other,) and on_other.handle == second.handle
    assert on_other.score <= mine[0].score


def population_niche(name: str) -> int:
    return NICHE_NAMES.index(name)


async def test_invalid_requests_land_in_the_dlq_with_reasons(
    running: Running, infra: InfraUrls
) -> None:
    key = f"cmp-{RUN}-invalid"
    zero_budget = niche_request(
        "pets", request_id=f"req-{RUN}-zero", campaign_id=key, seed=1,
        budget=Money(Decimal("0.00"), "USD"),
    )  # fmt: skip
    no_niche = niche_request("pets", request_id=f"req-{RUN}-empty", campaign_id=key, seed=2)
    no_niche = no_niche.model_copy(
        update={"niche": no_niche.niche.model_copy(update={"description": "", "keywords": ()})}
    )
    stop_words = no_niche.model_copy(
        update={
            "request_id": f"req-{RUN}-stop-words",
            "niche": no_niche.niche.model_copy(
                update={"description": "for the and of", "keywords": ("it",)}
            ),
        }
    )
    no_rate = niche_request(
        "pets", request_id=f"req-{RUN}-chf", campaign_id=key, seed=4,
        budget=Money(Decimal("900.00"), "CHF"),
    )  # fmt: skip
    valid = niche_request("pets", request_id=f"req-{RUN}-valid", campaign_id=key, seed=3)
    schema_broken = make_event(valid, source="tests/brand").model_dump(mode="json")
    schema_broken["data"]["limit"] = 0
    bad_filter = make_event(valid, source="tests/brand").model_dump(mode="json")
    bad_filter["data"]["filters"] = {"followers": {"min": 90_000, "max": 1_000}}
    await produce(
        infra.kafka_bootstrap_servers,
        [
            (Topic.BRAND_MATCH_REQUESTS, key.encode(), json.dumps(schema_broken).encode()),
            (Topic.BRAND_MATCH_REQUESTS, key.encode(), json.dumps(bad_filter).encode()),
            *[
                (Topic.BRAND_MATCH_REQUESTS, key.encode(), encode(make_event(r, source="t")))
                for r in (zero_budget, no_niche, stop_words, no_rate, valid)
            ],
        ],
    )
    await running.answers.wait_for(valid.request_id)
    # A budget currency the FX snapshot lacks is answered at once, never retried.
    answered = await running.answers.wait_for(no_rate.request_id)
    assert answered.suggestions == () and answered.filtered["no_fx_rate"] > 0

    async def letters() -> list[Any]:
        found = await read_dead_letters(
            infra.kafka_bootstrap_servers, [dlq_topic(Topic.BRAND_MATCH_REQUESTS)], service=SERVICE
        )
        return [letter for letter in found if letter.key == key.encode()]

    await eventually(lambda: _has(letters, 5))
    schema = [x.reason for x in await letters() if x.error_class == "SchemaViolation"]
    assert any("limit" in reason for reason in schema), schema
    assert any("filters" in r and "min 90000 is above max 1000" in r for r in schema), schema
    rejected = [
        letter.reason for letter in await letters() if letter.error_class == "EventRejected"
    ]
    assert any("budget_per_creator" in reason for reason in rejected)
    assert sum(reason.startswith("niche:") for reason in rejected) == 2
    assert all(letter.error_class != "FxRateMissing" for letter in await letters())
    for request_id in (zero_budget.request_id, no_niche.request_id, stop_words.request_id):
        assert request_id not in running.answers.by_request


async def _has(letters: Callable[[], Awaitable[list[Any]]], count: int) -> bool:
    return len(await letters()) >= count


async def test_a_brand_s_feedback_trains_its_own_ranker_stored_with_the_gate_s_verdict(
    running: Running, infra: InfraUrls, db_pool: asyncpg.Pool
) -> None:
    population = running.population
    ids = population.profiles.creator_id
    brand = f"brand-{RUN}-learns"
    feedback = []
    for k, niche in enumerate(("fitness", "travel")):
        campaign = f"cmp-{RUN}-learn-{k}"
        request = niche_request(
            niche, request_id=f"req-{RUN}-learn-{k}", campaign_id=campaign, seed=k, limit=20,
            brand_id=brand,
        )  # fmt: skip
        await produce_events(
            infra.kafka_bootstrap_servers, [make_event(request, source="tests/brand")]
        )
        answer = await running.answers.wait_for(request.request_id)
        for s in answer.suggestions:
            good = s.creator_id in ids and population.quality[ids.index(s.creator_id)] > 0.5
            decision = "hired" if good else "declined"
            data = MatchFeedback(
                campaign_id=campaign, creator_id=s.creator_id, decision=decision, reason=""
            )
            feedback.append(make_event(data, source="tests/brand"))
    await produce_events(infra.kafka_bootstrap_servers, feedback)

    async def trained() -> bool:
        return bool(await db_pool.fetchval(
            "SELECT count(*) FROM matching_models WHERE brand_id = $1", brand
        ))  # fmt: skip

    await eventually(trained)
    row = await db_pool.fetchrow(
        "SELECT version, status, labels, reason, metrics::text AS metrics FROM matching_models"
        " WHERE brand_id = $1",
        brand,
    )
    assert row["labels"] >= len(feedback) and row["reason"]
    assert "held_out_auc" in json.loads(row["metrics"])
    assert row["status"] in ("live", "candidate")
    expected = row["version"] if row["status"] == "live" else "hand-v1"
    for k, (who, niche) in enumerate(((brand, "gaming"), (f"brand-{RUN}-other", "gaming"))):
        request = niche_request(
            niche, request_id=f"req-{RUN}-after-{k}", campaign_id=f"cmp-{RUN}-after-{k}", seed=9,
            brand_id=who,
        )  # fmt: skip
        await produce_events(
            infra.kafka_bootstrap_servers, [make_event(request, source="tests/brand")]
        )
        answer = await running.answers.wait_for(request.request_id)
        assert answer.model_version == (expected if who == brand else "hand-v1")
        for s in answer.suggestions:
            assert math.isclose(sum(s.explanation.values()), s.score, abs_tol=1e-9)


async def test_feedback_counts_only_from_the_brand_whose_campaign_it_is(
    running: Running, infra: InfraUrls, db_pool: asyncpg.Pool
) -> None:
    """Feedback names no brand: another brand's "hired" on a campaign is dead-lettered
    (`not_the_owner`) and hides nobody from the campaign's next answer; sent before the
    campaign was answered, it is kept but does not count for the campaign's brand."""
    bootstrap = infra.kafka_bootstrap_servers
    keys = PartyKeys(source="tests/operator")
    brand, rival = f"brand-{RUN}-owns", f"brand-{RUN}-rival"
    campaign, early_campaign = f"cmp-{RUN}-owned", f"cmp-{RUN}-owned-early"

    def request(campaign_id: str, n: int) -> Any:
        brief = niche_request(
            "fitness", request_id=f"req-{RUN}-owned-{n}", campaign_id=campaign_id, seed=5,
            limit=10, brand_id=brand,
        )  # fmt: skip
        return keys.sign(make_event(brief, source="tests/brand"))

    def feedback(campaign_id: str, creator_id: str, signer: str) -> Any:
        data = MatchFeedback(
            campaign_id=campaign_id, creator_id=creator_id, decision="hired", reason=""
        )
        return keys.sign(make_event(data, source="tests/brand"), owner=signer)

    first = request(campaign, 1)
    keys.key(Party.BRAND, rival)
    # Registered (acknowledged by every replica) before anything it signs is sent: sent in
    # one go, the request can reach the service before the key is below the registry's end.
    await produce_events(bootstrap, keys.registrations())
    await produce_events(bootstrap, [first])
    answer = await running.answers.wait_for(first.data.request_id)
    assert len(answer.suggestions) >= 2, answer.filtered
    stolen, own = answer.suggestions[0].creator_id, answer.suggestions[1].creator_id
    rival_says = feedback(campaign, stolen, rival)
    brand_says = feedback(campaign, own, brand)
    early_rival = feedback(early_campaign, stolen, rival)
    await produce_events(bootstrap, [rival_says, brand_says, early_rival])

    async def letters() -> list[Any]:
        found = await read_dead_letters(
            bootstrap, [dlq_topic(Topic.MATCH_FEEDBACK)], service=SERVICE
        )
        return [x for x in found if x.key in (campaign.encode(), early_campaign.encode())]

    async def settled() -> bool:
        kept = await db_pool.fetchval(
            "SELECT count(*) FROM matching_feedback WHERE event_id = ANY($1)",
            [brand_says.id, early_rival.id],
        )
        return kept == 2 and len(await letters()) >= 1

    await eventually(settled, what="the brand's feedback kept, the rival's refused")
    [letter] = await letters()
    assert letter.error_class == "Untrusted"
    assert letter.reason.startswith("not_the_owner"), letter.reason
    assert json.loads(letter.value)["id"] == rival_says.id
    assert not await db_pool.fetchval(
        "SELECT count(*) FROM matching_feedback WHERE event_id = $1", rival_says.id
    )

    again = await running.answers.wait_for(
        (await _send(bootstrap, request(campaign, 2))).data.request_id
    )
    creators = {s.creator_id for s in again.suggestions}
    assert own not in creators, "the brand's own hire is excluded"
    assert stolen in creators, "another brand's feedback hid a creator"
    early = await running.answers.wait_for(
        (await _send(bootstrap, request(early_campaign, 3))).data.request_id
    )
    assert stolen in {s.creator_id for s in early.suggestions}, (
        "feedback another brand sent before the campaign was answered hid a creator"
    )


async def _send(bootstrap: str, event: Any) -> Any:
    await produce_events(bootstrap, [event])
    return event
