"""A small generated population and its index, shared by the matching unit tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.matching.domain.index import CreatorIndex
from shared.contract.money import FxSnapshot
from shared.tools.synthetic.population import Population, generate_population, reference_fx


@pytest.fixture(scope="session")
def population() -> Population:
    return generate_population(3000, seed=5)


@pytest.fixture(scope="session")
def index(population: Population) -> CreatorIndex:
    return CreatorIndex.build(population.profiles, seed=5)


@pytest.fixture(scope="session")
def fx() -> FxSnapshot:
    return reference_fx(datetime(2025, 1, 1, tzinfo=UTC))
