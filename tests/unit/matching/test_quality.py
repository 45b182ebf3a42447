"""Ranking quality on a generated population with 10 % fakes, against its latent truth."""

from __future__ import annotations

from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import HAND_RANKER, train_ranker
from services.matching.domain.scoring import ScoringSettings
from shared.tools.synthetic.evaluation import evaluate, simulate_feedback
from shared.tools.synthetic.population import Population, generate_population


def test_precision_at_20_is_at_least_095_and_no_fake_reaches_a_top_20(
    population: Population, index: CreatorIndex
) -> None:
    report = evaluate(index, population, HAND_RANKER, ScoringSettings(), requests=36, seed=1)
    print(
        f"hand weights: precision@20 {report.precision_at_20:.3f} "
        f"(worst {report.worst_precision_at_20:.2f}), fakes in top-20: {report.fakes_in_top_20}"
    )
    assert population.is_fake.mean() == 0.1
    assert report.precision_at_20 >= 0.95
    assert report.fakes_in_top_20 == 0


def test_a_ranker_learned_from_simulated_feedback_beats_the_hand_weights_on_ndcg() -> None:
    population = generate_population(4000, seed=3)
    index = CreatorIndex.build(population.profiles, seed=3)
    settings = ScoringSettings()
    feedback = simulate_feedback(index, population, HAND_RANKER, settings, requests=150, seed=5)
    learned = train_ranker(feedback, version="lr-simulated")
    hand = evaluate(index, population, HAND_RANKER, settings, requests=40, seed=99)
    trained = evaluate(index, population, learned, settings, requests=40, seed=99)
    print(
        f"NDCG@20 hand weights {hand.ndcg_at_20:.3f}, learned {trained.ndcg_at_20:.3f} "
        f"({len(feedback)} labels)"
    )
    assert trained.ndcg_at_20 > hand.ndcg_at_20
    assert trained.fakes_in_top_20 == 0
