"""The synthetic population: reproducible, valid events, the requested share of fakes."""

from __future__ import annotations

import numpy as np

from services.matching.translate import profile_payload
from shared.contract.events import CreatorProfileUpserted
from shared.tools.synthetic.population import NICHE_NAMES, Population, generate_population


def test_the_same_seed_gives_the_same_population() -> None:
    first, second = generate_population(200, seed=9), generate_population(200, seed=9)
    assert first.profiles.bio == second.profiles.bio
    assert np.array_equal(first.is_fake, second.is_fake)
    assert first.profiles.bio != generate_population(200, seed=10).profiles.bio


def test_every_generated_profile_is_a_valid_event(population: Population) -> None:
    profiles = [profile_payload(population.profiles, i) for i in range(len(population))]
    assert all(isinstance(p, CreatorProfileUpserted) for p in profiles)
    assert len({p.creator_id for p in profiles}) == len(profiles)


def test_fakes_are_ten_percent_and_every_niche_is_populated(population: Population) -> None:
    assert int(population.is_fake.sum()) == len(population) // 10
    assert set(np.unique(population.niche)) == set(range(len(NICHE_NAMES)))
    assert (population.quality[population.is_fake] == 0).all()
