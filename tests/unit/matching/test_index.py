"""The columnar index: upserts, incremental niche vectors and the refit policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from services.matching.domain.index import CreatorIndex
from services.matching.domain.niche_vectors import NicheVectors
from services.matching.domain.profiles import ProfileColumns
from shared.tools.synthetic.population import generate_population


def subset(columns: ProfileColumns, picks: list[int]) -> ProfileColumns:
    values = {}
    for field in dataclasses.fields(columns):
        value = getattr(columns, field.name)
        values[field.name] = (
            value[picks] if isinstance(value, np.ndarray) else [value[i] for i in picks]
        )
    return ProfileColumns(**values)


def test_incremental_upserts_score_like_a_fresh_build() -> None:
    population = generate_population(600, seed=2)
    everyone = population.profiles
    fresh = CreatorIndex.build(everyone, seed=2)
    grown = CreatorIndex.build(subset(everyone, list(range(300))), seed=2)
    # The vocabulary is fitted on the first half; give both indexes the same one.
    fresh.niche = NicheVectors(seed=2)
    fresh.niche.vectorizer = grown.niche.vectorizer
    fresh.niche.set_rows(np.arange(600), everyone.texts(), 600)
    fresh.niche.compact(600)
    grown.upsert(subset(everyone, list(range(300, 600))))
    query = grown.niche.encode(["sourdough bread oven baking"])
    assert np.allclose(grown.niche.similarity(query, 600), fresh.niche.similarity(query, 600))
    grown.niche.compact(600)
    assert np.allclose(grown.niche.similarity(query, 600), fresh.niche.similarity(query, 600))
    rows = np.array([5, 450, 2, 599])
    assert np.allclose(grown.niche.rows(rows).toarray(), fresh.niche.rows(rows).toarray())


def test_an_upsert_replaces_a_creator_in_place() -> None:
    population = generate_population(300, seed=4)
    index = CreatorIndex.build(population.profiles, seed=4)
    changed = subset(population.profiles, [7])
    changed.followers[0] = 2_000_000
    changed.bio[0] = "sourdough sourdough croissant"
    rows, _ = index.upsert(changed)
    assert rows.tolist() == [7] and len(index) == 300
    assert index.columns.tier[7] == 3  # mega
    query = index.niche.encode(["croissant sourdough"])
    assert int(np.argmax(index.niche.similarity(query, len(index)))) == 7


def test_refit_is_due_when_the_index_doubled() -> None:
    population = generate_population(500, seed=6)
    index = CreatorIndex.build(subset(population.profiles, list(range(200))), seed=6)
    assert not index.needs_refit()
    index.upsert(subset(population.profiles, list(range(200, 399))))
    assert not index.needs_refit()
    index.upsert(subset(population.profiles, [400]))
    assert index.needs_refit()


def test_performance_reported_before_the_profile_is_kept() -> None:
    population = generate_population(250, seed=8)
    index = CreatorIndex.build(subset(population.profiles, list(range(200))), seed=8)
    late = population.profiles.creator_id[220]
    index.record_performance(late, 9.0, 3)
    index.upsert(subset(population.profiles, [220]))
    row = index.row_of[late]
    assert (index.columns.roas_sum[row], index.columns.roas_count[row]) == (9.0, 3)


def test_a_refit_replaces_rows_encoded_with_the_old_vocabulary() -> None:
    population = generate_population(400, seed=12)
    index = CreatorIndex.build(subset(population.profiles, list(range(100))), seed=12)
    index.upsert(subset(population.profiles, list(range(100, 400))))
    assert index.needs_refit() and index.niche.overlay_size > 0
    everyone = population.profiles
    index.refit(everyone.texts(), np.arange(400, dtype=np.int64))
    query = index.niche.encode(["sourdough bread"])
    scores = index.niche.similarity(query, len(index))
    assert scores.shape == (400,)
    assert index.niche.rows(np.array([0, 399])).shape[1] == index.niche.vocabulary_size


def test_a_creator_of_a_niche_nobody_had_is_found_after_the_refit_it_makes_due() -> None:
    population = generate_population(201, seed=14)
    index = CreatorIndex.build(subset(population.profiles, list(range(100))), seed=14)
    known = subset(population.profiles, [100])
    index.upsert(known)
    assert not index.needs_refit(), "only known words: nothing new to learn"

    newcomer = subset(population.profiles, [200])
    newcomer.bio[0] = "Kombucha brewing, scoby care and fermentation"
    newcomer.topics[0] = ["kombucha"]
    rows, _ = index.upsert(newcomer)
    query = ["kombucha scoby"]
    assert index.niche.encode(query).nnz == 0, "the words are not in the vocabulary yet"
    assert index.needs_refit(), "a row with words the vocabulary lacks makes a refit due"

    everyone = subset(population.profiles, [*range(101), 200])
    everyone.bio[-1], everyone.topics[-1] = newcomer.bio[0], newcomer.topics[0]
    index.refit(everyone.texts(), np.array([*range(101), int(rows[0])], dtype=np.int64))
    assert not index.needs_refit()
    scores = index.niche.similarity(index.niche.encode(query), len(index))
    assert int(np.argmax(scores)) == int(rows[0]) and scores[rows[0]] > 0.3


def test_similarities_of_several_queries_come_out_as_each_alone_overlay_included() -> None:
    population = generate_population(400, seed=8)
    index = CreatorIndex.build(subset(population.profiles, list(range(300))), seed=8)
    index.upsert(subset(population.profiles, list(range(250, 400))))  # overlay rows
    queries = [
        index.niche.encode_query(text).vector
        for text in ("sourdough bread", "gaming esports stream", "dog puppy", "zzz nothing")
    ]
    together = index.niche.similarity_many(queries, len(index))
    assert together.shape == (4, 400)
    for i, one in enumerate(queries):
        assert np.allclose(together[i], index.niche.similarity(one, len(index)))
    assert together[0].argmax() != together[1].argmax()
    assert not together[3].any()


class _ColumnReads:
    """The base's CSC matrix, recording which columns each read takes."""

    def __init__(self, matrix: sp.csc_matrix) -> None:
        self.matrix, self.shape = matrix, matrix.shape
        self.reads: list[list[int]] = []

    def __getitem__(self, key: tuple[slice, np.ndarray]) -> sp.csc_matrix:
        self.reads.append(np.asarray(key[1]).tolist())
        return self.matrix[key]


def test_each_query_reads_the_base_through_its_own_columns_with_the_same_scores() -> None:
    """One product over the union of a batch's columns multiplies every query by every
    column any of them uses: 2.5x the work for 24 briefs at 100k creators. Read query by
    query, the scores are the union product's to the bit, overlay rows included."""
    population = generate_population(400, seed=8)
    index = CreatorIndex.build(subset(population.profiles, list(range(300))), seed=8)
    index.upsert(subset(population.profiles, list(range(250, 400))))  # overlay rows
    texts = ("sourdough bread baking", "gaming esports stream", "zzz nothing", "dog puppy bread")
    queries = [index.niche.encode_query(text).vector for text in texts]
    stacked = sp.csr_matrix(sp.vstack(queries), dtype=np.float32)
    terms = np.unique(stacked.indices)
    base = index.niche._base_csc
    union = np.zeros((len(queries), len(index)), dtype=np.float32)
    union[:, : base.shape[0]] = (base[:, terms] @ stacked[:, terms].T.toarray()).T
    rows, overlay = index.niche._overlay()
    union[:, rows] = (overlay @ stacked.T.toarray()).T

    index.niche._base_csc = reads = _ColumnReads(base)
    scores = index.niche.similarity_many(queries, len(index))

    assert np.array_equal(scores.view(np.uint32), union.view(np.uint32))
    own = [sorted(q.indices.tolist()) for q in queries if q.nnz]
    assert reads.reads == own and len(own) == 3
    assert len(set(own[0]) & set(own[2])) > 0, "two briefs share a column (bread)"
