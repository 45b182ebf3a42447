"""The behaviour every `MatchingStore` must have; subclassed once per adapter."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.matching.domain.features import FEATURES
from services.matching.domain.ranker import HAND_RANKER, LinearRanker
from services.matching.store.port import (
    Answer,
    Asked,
    Feedback,
    FollowerCount,
    KeptDeal,
    MatchingStore,
    Outcome,
    StoredProfile,
    as_json,
)
from services.matching.translate import profile_payload
from shared.contract.events import CloudEvent, make_event
from shared.contract.money import FxSnapshot
from shared.runtime.kafka import Delivery
from shared.tools.synthetic.population import generate_population, niche_request

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def uid() -> str:
    return uuid.uuid4().hex[:10]


def answer(
    campaign: str, creators: list[str], request_id: str | None = None, brand: str = "brand"
) -> Answer:
    request_id = request_id or f"req-{uid()}"
    return Answer(
        request_id=request_id,
        campaign_id=campaign,
        brand_id=brand,
        model_version=HAND_RANKER.version,
        fx_as_of=T0,
        fx_source="test",
        filtered={"excluded": 1},
        event_id=f"ev-{uid()}",
        suggestions=[
            (cid, rank, 0.5, features_of(rank)) for rank, cid in enumerate(creators, start=1)
        ],
        request=niche_request(
            "baking", request_id=request_id, campaign_id=campaign, seed=1, brand_id=brand
        ),
    )


def features_of(rank: int) -> list[float]:
    """A suggestion's features, each its own value, so that a mix-up of rows or of
    positions within a row shows."""
    return [rank / 10 + position / 1000 for position in range(len(FEATURES))]


def delivered(event: CloudEvent[Any]) -> tuple[CloudEvent[Any], Delivery]:
    return event, Delivery("test.topic", 0, 0, None, b"", ())


class MatchingStoreContract:
    """Subclasses provide `store`."""

    store: MatchingStore

    async def test_the_newest_profile_wins_whatever_the_arrival_order(self) -> None:
        population = generate_population(2, seed=1, id_prefix=f"st{uid()}")
        first, second = (
            profile_payload(population.profiles, 0),
            profile_payload(population.profiles, 1),
        )
        newer = second.model_copy(
            update={"creator_id": first.creator_id, "platform": first.platform, "handle": "@newer"}
        )
        async with self.store.transaction() as tx:
            changed = await tx.upsert_profiles(
                [StoredProfile(first.creator_id, newer, T0 + timedelta(1), "e2")]
            )
            assert changed == {(first.creator_id, newer.platform)}
            stale = await tx.upsert_profiles([StoredProfile(first.creator_id, first, T0, "e1")])
            assert stale == set()
        stored = [p async for chunk in self.store.iter_profiles(1000) for p in chunk]
        mine = [p for p in stored if p.creator_id == first.creator_id]
        assert [p.handle for p in mine] == ["@newer"]
        texts = dict(await self.store.texts())
        assert texts[first.creator_id, newer.platform].startswith(newer.bio)
        # What a replica reads back after another one wrote it: the newest, by id.
        read = await self.store.profiles_of([first.creator_id, f"cr-unknown-{uid()}"])
        assert [(p.creator_id, p.handle) for p in read] == [(first.creator_id, "@newer")]
        assert await self.store.profiles_of([]) == []

    async def test_every_follower_count_is_kept_once_in_time_order(self) -> None:
        a, b = f"cr-{uid()}", f"cr-{uid()}"
        later, earlier = T0 + timedelta(days=9), T0
        async with self.store.transaction() as tx:
            await tx.record_followers(
                [FollowerCount(a, "instagram", later, 48_000), FollowerCount(b, "tiktok", T0, 700)],
            )
            await tx.record_followers(  # late, and one replayed with another count
                [
                    FollowerCount(a, "instagram", earlier, 12_000),
                    FollowerCount(a, "instagram", later, 1),
                    FollowerCount(a, "youtube", later, 900),  # another account: its own history
                ],
            )
        history = await self.store.follower_history([a])
        assert history == {
            (a, "instagram"): [(earlier, 12_000), (later, 48_000)],
            (a, "youtube"): [(later, 900)],
        }
        everyone = await self.store.follower_history()
        assert everyone[a, "instagram"] == history[a, "instagram"]
        assert everyone[b, "tiktok"] == [(T0, 700)]

    async def test_each_platform_account_of_a_creator_is_kept(self) -> None:
        population = generate_population(2, seed=3, id_prefix=f"pa{uid()}")
        insta = profile_payload(population.profiles, 0).model_copy(update={"platform": "instagram"})
        tiktok = profile_payload(population.profiles, 1).model_copy(
            update={"creator_id": insta.creator_id, "platform": "tiktok", "handle": "@tt"}
        )
        async with self.store.transaction() as tx:
            changed = await tx.upsert_profiles(
                [
                    StoredProfile(insta.creator_id, insta, T0, "e1"),
                    StoredProfile(insta.creator_id, tiktok, T0 + timedelta(1), "e2"),
                ],
            )
            assert changed == {(insta.creator_id, "instagram"), (insta.creator_id, "tiktok")}
            # An older TikTok profile replaces neither account.
            stale = tiktok.model_copy(update={"handle": "@old"})
            assert not await tx.upsert_profiles([StoredProfile(insta.creator_id, stale, T0, "e0")])
        read = await self.store.profiles_of([insta.creator_id])
        assert [(p.platform, p.handle) for p in read] == [
            ("instagram", insta.handle),
            ("tiktok", "@tt"),
        ]
        stored = [p async for chunk in self.store.iter_profiles(1) for p in chunk]
        assert [p.platform for p in stored if p.creator_id == insta.creator_id] == [
            "instagram",
            "tiktok",
        ]
        texts = dict(await self.store.texts())
        assert (insta.creator_id, "tiktok") in texts and (insta.creator_id, "instagram") in texts

    async def test_hires_come_from_deals_and_hired_feedback(self) -> None:
        campaign, other, nobody = f"cmp-{uid()}", f"cmp-{uid()}", f"cmp-{uid()}"
        async with self.store.transaction() as tx:
            await tx.record_hire(f"deal-{uid()}", campaign, "cr-a", T0)
            await tx.record_feedback(
                Feedback(("brand-tool", f"fb-{uid()}"), campaign, "cr-b", "hired", None)
            )
            await tx.record_feedback(
                Feedback(("brand-tool", f"fb-{uid()}"), campaign, "cr-c", "declined", None)
            )
            await tx.record_hire(f"deal-{uid()}", other, "cr-d", T0)
            hired = await tx.hired([campaign, other, nobody])
            assert hired == {campaign: {"cr-a", "cr-b"}, other: {"cr-d"}, nobody: frozenset()}

    async def test_another_brands_deals_and_feedback_under_the_campaign_id_do_not_count(
        self,
    ) -> None:
        campaign = f"cmp-{uid()}"
        async with self.store.transaction() as tx:
            await tx.record_hire(f"deal-{uid()}", campaign, "cr-ours", T0, "br-1")
            await tx.record_hire(f"deal-{uid()}", campaign, "cr-theirs", T0, "br-2")
            await tx.record_hire(f"deal-{uid()}", campaign, "cr-unsigned", T0)
            await tx.record_feedback(
                Feedback(("brand-tool", f"fb-{uid()}"), campaign, "cr-fb", "hired", None, "br-2")
            )
            assert await tx.hired([campaign], {campaign: "br-1"}) == {
                campaign: {"cr-ours", "cr-unsigned"}
            }
            assert await tx.hired([campaign], {campaign: "br-2"}) == {
                campaign: {"cr-theirs", "cr-unsigned", "cr-fb"}
            }

    async def test_the_campaign_creator_and_brand_of_each_kept_deal(self) -> None:
        ours, legacy = f"deal-{uid()}", f"deal-{uid()}"
        ours_in, legacy_in = f"cmp-{uid()}", f"cmp-{uid()}"
        async with self.store.transaction() as tx:
            await tx.record_hire(ours, ours_in, "cr-a", T0, "br-1")
            await tx.record_hire(legacy, legacy_in, "cr-b", T0)
            await tx.record_cancellation(f"deal-{uid()}", "br-1", T0)
            assert await tx.kept_deals([ours, legacy, f"deal-{uid()}"]) == {
                ours: KeptDeal(ours_in, "cr-a", "br-1"),
                legacy: KeptDeal(legacy_in, "cr-b", ""),
            }

    async def test_a_deal_cancelled_by_its_brand_no_longer_hires(self) -> None:
        campaign = f"cmp-{uid()}"
        kept, cancelled, early, foreign = (f"deal-{uid()}" for _ in range(4))
        async with self.store.transaction() as tx:
            await tx.record_cancellation(early, "br-1", T0)  # before its deal
            await tx.record_hire(kept, campaign, "cr-a", T0, "br-1")
            await tx.record_hire(cancelled, campaign, "cr-b", T0, "br-1")
            await tx.record_hire(early, campaign, "cr-c", T0, "br-1")
            await tx.record_hire(foreign, campaign, "cr-d", T0, "br-1")
            await tx.record_cancellation(cancelled, "br-1", T0)
            await tx.record_cancellation(cancelled, "br-1", T0)  # sent again
            await tx.record_cancellation(foreign, "br-2", T0)  # not the deal's brand
            assert await tx.hired([campaign]) == {campaign: {"cr-a", "cr-d"}}

    async def test_a_request_is_answered_once_even_twice_in_one_batch(self) -> None:
        first = answer(f"cmp-{uid()}", ["cr-a"])
        async with self.store.transaction() as tx:
            assert await tx.save_answers([first]) == {first.request_id}
            assert await tx.save_answers([first]) == set()
        again = dataclasses.replace(first, event_id="ev-again")
        second = answer(f"cmp-{uid()}", ["cr-b", "cr-c"])
        async with self.store.transaction() as tx:
            recorded = await tx.save_answers([second, again, second])
            assert recorded == {second.request_id}

    async def test_feedback_and_outcomes_become_labels_with_suggestion_features(self) -> None:
        campaign, brand = f"cmp-{uid()}", f"brand-{uid()}"
        async with self.store.transaction() as tx:
            await tx.save_answers([answer(campaign, ["cr-x", "cr-y", "cr-z"], brand=brand)])
            await tx.record_feedback(
                Feedback(("brand-tool", f"fb-{uid()}"), campaign, "cr-x", "hired", None)
            )
            await tx.record_feedback(
                Feedback(("brand-tool", f"fb-{uid()}"), campaign, "cr-y", "declined", None)
            )
            deal = f"deal-{uid()}"
            await tx.record_outcome(Outcome(deal, campaign, "cr-z", Decimal("0.5"), None, T0))
            await tx.record_outcome(  # an older report does not overwrite a newer one
                Outcome(deal, campaign, "cr-z", Decimal("9"), None, T0 - timedelta(1))
            )
        assert (await self.store.label_counts())[brand] == 3
        data = await self.store.training_set(brand)
        assert [round(float(f[0]), 3) for f in data.features] == [0.1, 0.2, 0.3]  # arrival order
        rows = {
            tuple(round(float(x), 4) for x in f): (int(lbl), float(w))
            for f, lbl, w in zip(data.features, data.labels, data.weights, strict=True)
        }
        expected = {rank: tuple(round(x, 4) for x in features_of(rank)) for rank in (1, 2, 3)}
        assert rows[expected[1]] == (1, 2.0)
        assert rows[expected[2]] == (0, 1.0)
        assert rows[expected[3]] == (0, 2.0)
        performance = dict((c, (s, n)) for c, s, n in await self.store.performance(["cr-z"]))
        assert performance["cr-z"] == (0.5, 1)

    async def test_signed_feedback_counts_only_for_its_brands_requests(self) -> None:
        campaign, brand, rival = f"cmp-{uid()}", f"brand-{uid()}", f"brand-{uid()}"
        async with self.store.transaction() as tx:
            assert await tx.campaign_brands([campaign]) == {}
            # Sent before the campaign was answered: kept with their signers.
            for creator, signer in (("cr-a", rival), ("cr-b", brand), ("cr-c", "")):
                await tx.record_feedback(
                    Feedback(
                        ("brand-tool", f"fb-{uid()}"), campaign, creator, "hired", None, signer
                    )
                )
            first = answer(campaign, ["cr-a", "cr-b", "cr-c"], brand=brand)
            await tx.save_answers([first])
            assert await tx.campaign_brands([campaign, "cmp-none"]) == {
                campaign: {first.request_id: brand}
            }
            assert first.request is not None
            assert await tx.answered_for([first.request_id, "req-none"]) == {
                first.request_id: Asked(brand, campaign, as_json(first.request))
            }
            asked = await tx.hired([campaign], {campaign: brand})
            assert asked == {campaign: {"cr-b", "cr-c"}}
            everyone = await tx.hired([campaign])
            assert everyone == {campaign: {"cr-a", "cr-b", "cr-c"}}
        assert (await self.store.label_counts()).get(brand) == 2
        assert rival not in await self.store.label_counts()

    async def test_labels_and_history_are_kept_per_brand(self) -> None:
        mine, theirs = f"brand-{uid()}", f"brand-{uid()}"
        async with self.store.transaction() as tx:
            for brand, creators in ((mine, ["cr-a", "cr-b"]), (theirs, ["cr-c"])):
                campaign = f"cmp-{uid()}"
                await tx.save_answers([answer(campaign, creators, brand=brand)])
                for cid in creators:
                    await tx.record_feedback(
                        Feedback(("brand-tool", f"fb-{uid()}"), campaign, cid, "declined", None)
                    )
        counts = await self.store.label_counts()
        assert (counts[mine], counts[theirs]) == (2, 1)
        assert len(await self.store.training_set(theirs)) == 1
        briefs, shown = await self.store.brand_history(mine, 5)
        assert [b.brand_id for b in briefs] == [mine] and shown == {"cr-a", "cr-b"}

    async def test_a_brand_has_one_live_ranker_and_can_promote_and_roll_back(self) -> None:
        brand = f"brand-{uid()}"
        first, second, refused = (
            LinearRanker(f"lr-{uid()}", {f: w for f in FEATURES}, 0.0) for w in (0.1, 0.2, 0.3)
        )
        await self.store.save_model(first, 40, brand_id=brand, live=True, reason="gate passed")
        await self.store.save_model(second, 80, brand_id=brand, live=True, reason="gate passed")
        await self.store.save_model(
            refused, 120, brand_id=brand, reason="niche precision 0.40", metrics={"p": 0.4}
        )
        stored = await self.store.models(brand)
        assert [(m.ranker, m.status) for m in stored] == [
            (refused, "candidate"), (second, "live"), (first, "retired"),
        ]  # fmt: skip
        assert stored[0].reason == "niche precision 0.40" and stored[0].metrics == {"p": 0.4}
        assert stored[1].labels == 80

        assert (await self.store.promote(refused.version)).status == "live"
        with pytest.raises(ValueError):
            await self.store.promote(refused.version)
        with pytest.raises(LookupError):
            await self.store.promote(f"lr-{uid()}")
        back = await self.store.rollback(brand)
        assert back is not None and back.ranker == second
        back = await self.store.rollback(brand)
        assert back is not None and back.ranker == first
        assert await self.store.rollback(brand) is None  # back on the hand weights
        with pytest.raises(LookupError):
            await self.store.rollback(brand)
        assert [m.status for m in await self.store.models(brand)] == ["rolled_back"] * 3

    async def test_an_event_is_claimed_once_and_a_rollback_forgets_the_claim(self) -> None:
        population = generate_population(2, seed=7, id_prefix=f"cl{uid()}")
        first, second = (
            make_event(profile_payload(population.profiles, i), source=f"tests/{uid()}")
            for i in (0, 1)
        )
        async with self.store.transaction() as tx:
            assert await tx.claim([delivered(first), delivered(first)]) == {first.identity}
            assert await tx.claim([delivered(first)]) == set()
        with pytest.raises(RuntimeError):
            async with self.store.transaction() as tx:
                assert await tx.claim([delivered(second)]) == {second.identity}
                profile = second.data
                await tx.upsert_profiles(
                    [StoredProfile(profile.creator_id, profile, second.time, second.id)]
                )
                raise RuntimeError("the handler failed")
        assert await self.store.profiles_of([second.data.creator_id]) == []
        async with self.store.transaction() as tx:
            claimed = await tx.claim([delivered(first), delivered(second)])
            assert claimed == {second.identity}

    async def test_the_trusted_fx_snapshot_in_force_is_the_latest_before(self) -> None:
        at = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(minutes=int(uid()[:5], 16))
        base, moved, later = (
            FxSnapshot("USD", {"EUR": Decimal(rate)}, at + timedelta(hours=h), "contract")
            for rate, h in (("0.9", 0), ("1.8", 1), ("0.91", 2))
        )
        async with self.store.transaction() as tx:
            assert await tx.save_fx(base, f"fx-{uid()}", Decimal("0.25"))
            assert not await tx.save_fx(base, f"fx-{uid()}", Decimal("0.25"))  # kept once
            await tx.save_fx(later, f"fx-{uid()}", Decimal("0.25"))
            await tx.save_fx(moved, f"fx-{uid()}", Decimal("0.25"))  # late, and suspect
        in_force = await self.store.fx_in_force(moved.as_of)
        assert in_force is not None and in_force.rates == base.rates  # the moved one is not
        in_force = await self.store.fx_in_force(later.as_of)
        assert in_force is not None and in_force.rates == later.rates

    async def test_one_replica_at_a_time_trains(self) -> None:
        async with self.store.retrain_turn() as mine:
            assert mine
            other = type(self.store).__new__(type(self.store))
            other.__dict__.update(self.store.__dict__)  # another replica on the same store
            async with other.retrain_turn() as theirs:
                assert not theirs
        async with self.store.retrain_turn() as mine:
            assert mine
