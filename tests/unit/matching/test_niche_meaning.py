"""Briefs match on meaning: plurals, synonyms, typos and Spanish or Portuguese words."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from services.matching.domain.index import CreatorIndex
from services.matching.domain.niche_synonyms import CONCEPTS
from services.matching.domain.niche_terms import NearestTerm, NicheTerms
from services.matching.domain.niche_vectors import NicheQuery, NicheVectors
from services.matching.domain.ranker import HAND_RANKER
from services.matching.domain.scoring import MatchResult, ScoringSettings
from shared.contract.events import Niche
from shared.tools.synthetic.evaluation import precision_at, rank, request_for
from shared.tools.synthetic.population import NICHE_NAMES, Population

# Briefs a brand could send for each niche, none in the words its creators use verbatim.
REWORDED: dict[str, tuple[str, ...]] = {
    "pets": (
        "Clickers for obedient pups and doggies",
        "Adiestramiento de perros y perritos, adopción de mascotas",
        "Filhotes, cães e gatos para adoção",
        "Puppys and kittns grooming",
    ),
    "baking": (
        "Bakers baking sourdoughs, croissants and cakes",
        "Panaderías: recetas de masa y harina",
        "Padaria: bolos, pães e fermento",
        "Sourdugh and croisant bakery",
    ),
    "fitness": (
        "Workouts for lifters building muscles and strength",
        "Entrenador de gimnasio: ejercicios de fuerza",
        "Treinos de musculação e força na academia",
        "Strenght workuot at the gym",
    ),
    "travel": (
        "Backpackers booking flights to beaches and cities",
        "Viajes de mochilero, vuelos baratos y playas",
        "Viagens, praias e trilhas",
        "Backpaking itinerery",
    ),
    "beauty": (
        "Maquillaje y cuidado de la piel",
        "Maquiagem, batom e unhas",
        "Makup tutorials and skincre",
    ),
    "gaming": ("Videojuegos y jugadores", "Gamers streaming games on consoles", "Speedrn gamming"),
    "finance": (
        "Finanzas personales: ahorro, inversiones y deudas",
        "Investimentos, dividendos e aposentadoria",
        "Investors saving money in stocks",
    ),
    "gardening": ("Jardinería: semillas, compostaje y huerto", "Gardeners growing veggies"),
    "parenting": ("Mamás y bebés: crianza", "Moms and dads of toddlers and newborns"),
    "tech": ("Reseñas de auriculares y portátiles", "Earbuds and phones reviewed"),
    "fashion": ("Moda y estilo: ropa vintage", "Thrifted outfits and sneakers"),
    "nutrition": ("Nutricionista: dieta vegana y batidos", "Dietitians making salads"),
}


def test_inflections_synonyms_and_translations_read_as_one_term() -> None:
    terms = NicheTerms()
    assert terms("Clickers for obedient pups and doggies") == [
        *terms("clicker obedience"), *terms("puppy dog")
    ]  # fmt: skip
    assert terms("baristas lattes") == terms("barista latte")
    assert terms("perros, cães, cachorros") == terms("dog") * 3
    assert terms("Panadería panaderia") == terms("baking baking")
    assert terms("cuidado de la piel") == terms("skincare")


def test_stop_words_of_every_language_are_no_terms() -> None:
    assert NicheTerms()("for the de la com os y") == []


def test_the_words_only_reading_keeps_exact_words() -> None:
    assert NicheTerms.words_only()("Pups and doggies, panadería") == [
        "pups",
        "doggies",
        "panadería",
    ]


def test_no_synonym_is_read_as_another_concept_than_its_own() -> None:
    terms = NicheTerms()
    for name, synonyms in CONCEPTS.items():
        for synonym in synonyms:
            assert terms(synonym) == terms(name), (synonym, name)


def test_a_typo_is_read_as_the_closest_term_but_short_or_distant_words_are_not() -> None:
    nearest = NearestTerm(["sourdough", "croissant", "workout", "bake"], min_similarity=0.5)
    assert nearest(["sourdugh", "croisant", "workot", "bakr", "clicker"]) == [
        "sourdough",
        "croissant",
        "workout",
        None,
        None,
    ]


def test_a_word_sharing_one_trigram_with_a_term_is_not_read_as_it() -> None:
    # "beginners" (the term "beginn") and "best" share " be" alone: a cosine of 1/sqrt(6 x 4),
    # not the 0.5 of a query normalised over the trigrams the vocabulary knows.
    nearest = NearestTerm(["best", "bread", "wardrob"], min_similarity=0.5)
    assert nearest(["beginn", "bestt"]) == [None, "best"]


def test_a_brief_is_weighted_like_a_bio_of_the_same_words(index: CreatorIndex) -> None:
    text = "sourdough bread bread flour"
    vectorizer = index.niche.vectorizer
    assert vectorizer is not None
    query = index.niche.encode_query(text).vector.toarray()
    np.testing.assert_allclose(query, vectorizer.transform([text]).toarray(), rtol=1e-6)


@pytest.fixture(scope="module")
def words_only_index(population: Population) -> CreatorIndex:
    """The index as niches were read before terms: exact words, no typo reading."""
    niche = NicheVectors(seed=5, terms=NicheTerms.words_only(), typo_similarity=None)
    return CreatorIndex.build(population.profiles, seed=5, niche=niche)


def _answer(index: CreatorIndex, niche: str, brief: str, seed: int) -> MatchResult:
    request = request_for(NICHE_NAMES.index(niche), seed)
    reworded = request.model_copy(update={"niche": Niche(description=brief, keywords=())})
    return rank(index, reworded, HAND_RANKER, ScoringSettings())


def test_clickers_for_obedient_pups_and_doggies_finds_dog_creators_and_says_why(
    population: Population, index: CreatorIndex, words_only_index: CreatorIndex
) -> None:
    brief = "Clickers for obedient pups and doggies"
    before = _answer(words_only_index, "pets", brief, seed=1)
    after = _answer(index, "pets", brief, seed=1)
    pets = NICHE_NAMES.index("pets")
    assert len(before.creators) == 0
    assert before.filtered["off_niche"] > 0
    assert len(after.creators) == 20
    assert precision_at(after, population, pets, 20) >= 0.95
    assert set(after.creators[0].matched_terms) <= {"pups ~ puppy", "doggies ~ dog"}
    assert all(c.matched_terms for c in after.creators)


def test_reworded_briefs_find_their_niche_far_better_than_exact_words(
    population: Population, index: CreatorIndex, words_only_index: CreatorIndex
) -> None:
    before, after = [], []
    for niche, briefs in REWORDED.items():
        for seed, brief in enumerate(briefs):
            truth = NICHE_NAMES.index(niche)
            old = _answer(words_only_index, niche, brief, seed)
            new = _answer(index, niche, brief, seed)
            before.append(precision_at(old, population, truth, 20))
            after.append(precision_at(new, population, truth, 20))
            assert after[-1] >= 0.8, (brief, after[-1])
    print(
        f"reworded briefs ({len(after)}): precision@20 exact words {np.mean(before):.3f}, "
        f"terms {np.mean(after):.3f} (worst {min(after):.2f})"
    )
    assert np.mean(after) >= 0.95
    assert np.mean(after) - np.mean(before) >= 0.3


def test_matched_terms_are_each_rows_shared_columns_largest_product_first_at_most_five() -> None:
    rng = np.random.default_rng(5)
    width = 40
    query_columns = np.arange(0, width, 2)  # the brief uses every even column
    query = NicheQuery(
        sp.csr_matrix(
            (np.ones(len(query_columns), dtype=np.float32), (np.zeros(20, int), query_columns)),
            shape=(1, width),
        ),
        {int(c): f"term-{c}" for c in query_columns},
    )
    dense = rng.choice([0.0, 0.25, 0.5, 1.0], size=(30, width), p=[0.6, 0.1, 0.1, 0.2])
    dense[3] = 0.0  # a row sharing nothing
    dense[4, 1::2] = 1.0  # only odd columns: nothing shared either
    dense[4, ::2] = 0.0
    rows = sp.csr_matrix(dense.astype(np.float32))

    def one_by_one(row: np.ndarray) -> tuple[str, ...]:
        shared = [(float(row[c]), int(c)) for c in query_columns if row[c] != 0]
        shared.sort(key=lambda pair: (-pair[0], pair[1]))  # ties: the lower column first
        return tuple(f"term-{c}" for _, c in shared[:5])

    found = query.matched(rows)
    assert found == [one_by_one(row) for row in dense]
    assert found[3] == () and found[4] == ()
    assert max(len(terms) for terms in found) == 5
