"""The service's retraining: per brand, through the gate, stored with its verdict."""

from __future__ import annotations

from services.matching.domain.features import FEATURES
from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import HAND_RANKER
from services.matching.domain.scoring import ScoringSettings, match
from services.matching.settings import MatchingSettings
from services.matching.state import MatchingService, MatchingState
from services.matching.store.memory import MemoryMatchingStore
from services.matching.store.port import Answer, Feedback
from services.matching.translate import match_query
from shared.contract.money import FxSnapshot
from shared.tools.synthetic.population import NICHE_NAMES, niche_request

SETTINGS = MatchingSettings(retrain_every_labels=40, learning_min_labels=30)
ENGAGED = 0.045


async def answer_and_judge(
    store: MemoryMatchingStore, index: CreatorIndex, fx: FxSnapshot, brand: str, seed: int
) -> None:
    """The brand asks, is answered by the hand ranker, hires the highly engaged creators."""
    request = niche_request(
        NICHE_NAMES[seed % 3 * 3], request_id=f"req-{brand}-{seed}",
        campaign_id=f"cmp-{brand}-{seed}", seed=seed, tiers=("micro",), brand_id=brand,
    )  # fmt: skip
    result = match(index, match_query(request), HAND_RANKER, fx, ScoringSettings())
    async with store.transaction() as tx:
        await tx.save_answers([Answer(
            request.request_id, request.campaign_id, brand, HAND_RANKER.version, None, None, {},
            f"ev-{seed}",
            [(c.creator_id, c.rank, c.score, [c.features[f] for f in FEATURES])
             for c in result.creators],
            request=request,
        )])  # fmt: skip
        for c in result.creators:
            decision = "hired" if c.engagement_rate >= ENGAGED else "declined"
            event = (f"{brand}-tool", f"fb-{seed}-{c.creator_id}")
            await tx.record_feedback(
                Feedback(event, request.campaign_id, c.creator_id, decision, None)
            )


async def test_only_the_brand_that_gave_feedback_gets_a_ranker_stored_with_its_verdict(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    store = MemoryMatchingStore()
    service = MatchingService(store, SETTINGS, MatchingState(index, fx=fx))
    for seed in range(6):
        await answer_and_judge(store, index, fx, "brand-a", seed)
    await answer_and_judge(store, index, fx, "brand-b", 99)  # 20 labels: too few to learn

    trained = await service.retrain_once()
    assert len(trained) == 1
    ranker, verdict = trained[0]
    assert verdict.promote, verdict.reason
    stored = await store.models()
    assert [(m.brand_id, m.ranker.version, m.status) for m in stored] == [
        ("brand-a", ranker.version, "live")
    ]
    assert stored[0].reason == verdict.reason and "held_out_auc" in stored[0].metrics
    assert service.state.ranker_for("brand-a") == ranker
    assert service.state.ranker_for("brand-b") == HAND_RANKER
    assert ranker.weights["engagement"] > HAND_RANKER.weights["engagement"]
    assert await service.retrain_once() == []  # nothing new since

    await store.rollback("brand-a")  # as `creatorflow matching models rollback` does
    await service.load_models()
    assert service.state.ranker_for("brand-a") == HAND_RANKER
