"""TF-IDF niche vectors of every creator, queryable by sparse products over a query's columns.

Columns are niche terms (`niche_terms`: stems, synonyms and translations as one concept), so
a brief and a bio meet on meaning rather than on exact words; a brief's typo is read as the
closest term creators use.

Rows live in a *base* matrix (CSR for reading rows, CSC for reading the few columns a query
touches) plus a small *overlay* of rows changed since the base was built. A query reads the
base through the query's columns only, then overwrites the overlaid rows; when the overlay
grows past a share of the index it is folded into a new base. Refitting the vectoriser (when
the index has doubled since the last fit, or 1 % of it was written with words the vocabulary
lacks) re-encodes every row.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from services.matching.domain.niche_terms import (
    NearestTerm,
    NicheTerms,
    content_words,
    default_terms,
)

__all__ = ["NicheQuery", "NicheVectors", "content_words", "make_vectorizer"]

_MAX_FIT_DOCUMENTS: Final = 200_000
_COMPACT_SHARE: Final = 0.05
_COMPACT_MINIMUM: Final = 2_000
_NEAREST_MEMO_LIMIT: Final = 100_000
TYPO_SIMILARITY: Final = 0.5
"""Least trigram cosine for a brief's unknown term to be read as a vocabulary term."""


def make_vectorizer(terms: NicheTerms | None = None) -> TfidfVectorizer:
    """Niche terms (see `niche_terms`), sublinear tf, L2-normalised float32 rows."""
    return TfidfVectorizer(
        analyzer=terms or default_terms(), sublinear_tf=True, min_df=1, dtype=np.float32
    )


@dataclass(frozen=True)
class NicheQuery:
    """A brief as a niche vector, with what each of its columns was read from."""

    vector: sp.csr_matrix
    """1 x vocabulary, L2-normalised (zero when no term of the brief is known)."""
    labels: dict[int, str]
    """Column -> the brief's word, with the term it was read as when that differs
    ("pups ~ puppy", "sourdugh ~ sourdough")."""

    def matched(self, rows: sp.csr_matrix, most: int = 5) -> list[tuple[str, ...]]:
        """For each of `rows`, the labels of the columns it shares with this query, largest
        product first."""
        if self.vector.nnz == 0 or rows.shape[1] != self.vector.shape[1]:
            return [()] * rows.shape[0]
        weights = np.zeros(self.vector.shape[1], dtype=np.float32)
        weights[self.vector.indices] = self.vector.data
        products = rows.data * weights[rows.indices]
        shared = products != 0
        count = rows.shape[0]
        # Every row's shared columns in one sort (by row, largest product, column), then
        # each row's first `most`: one pass instead of a sort per row.
        owner = np.repeat(np.arange(count), np.diff(rows.indptr))[shared]
        columns, values = rows.indices[shared], products[shared]
        order = np.lexsort((columns, -values, owner))
        owner, columns = owner[order], columns[order]
        place = np.arange(len(owner)) - np.searchsorted(owner, owner)
        found: list[list[str]] = [[] for _ in range(count)]
        for row, column in zip(
            owner[place < most].tolist(), columns[place < most].tolist(), strict=True
        ):
            found[row].append(self.labels[column])
        return [tuple(labels) for labels in found]


class NicheVectors:
    """Niche vectors for rows 0..size-1; rows without text are zero vectors."""

    def __init__(
        self,
        *,
        seed: int = 0,
        terms: NicheTerms | None = None,
        typo_similarity: float | None = TYPO_SIMILARITY,
    ) -> None:
        self.terms = terms or default_terms()
        self.typo_similarity = typo_similarity
        """None: a brief's unknown terms are ignored, never read as a close vocabulary term."""
        self.vectorizer: TfidfVectorizer | None = None
        self._nearest: NearestTerm | None = None
        self._nearest_seen: dict[str, str | None] = {}
        self.fitted_documents = 0
        # Rows written since the last fit with a word the vocabulary lacks: those words match
        # nothing (a new niche's creators are invisible to a brief naming it) until a refit.
        self.unseen_word_rows = 0
        self._seed = seed
        self._base_csr: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        self._base_csc: sp.csc_matrix = sp.csc_matrix((0, 0), dtype=np.float32)
        self._overlay_position: dict[int, int] = {}
        self._overlay_rows: list[sp.csr_matrix] = []
        self._overlay_cache: tuple[npt.NDArray[np.int64], sp.csr_matrix] | None = None

    @property
    def vocabulary_size(self) -> int:
        return 0 if self.vectorizer is None else len(self.vectorizer.vocabulary_)

    @property
    def overlay_size(self) -> int:
        return len(self._overlay_position)

    def fit(self, texts: Sequence[str], rows: npt.NDArray[np.int64], size: int) -> None:
        """Fit the vectoriser on `texts` (a seeded sample if there are many) and encode them as
        rows `rows` of a fresh base with `size` rows; rows not given are zero."""
        vectorizer = make_vectorizer(self.terms)
        sample: Sequence[str] = texts
        if len(texts) > _MAX_FIT_DOCUMENTS:
            picks = np.random.default_rng(self._seed).choice(
                len(texts), _MAX_FIT_DOCUMENTS, replace=False
            )
            sample = [texts[i] for i in picks]
        try:
            vectorizer.fit(sample)
        except ValueError:  # only stop words or no text at all: nothing to match on yet
            return
        encoded = sp.csr_matrix(vectorizer.transform(texts), dtype=np.float32)
        placement = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, np.arange(len(rows)))),
            shape=(size, len(rows)),
        )
        self.vectorizer = vectorizer
        self._nearest = None
        self._nearest_seen = {}
        if self.typo_similarity is not None:
            self._nearest = NearestTerm(
                vectorizer.get_feature_names_out().tolist(), min_similarity=self.typo_similarity
            )
        self.fitted_documents = len(texts)
        self.unseen_word_rows = 0
        # Every row was re-encoded with the new vocabulary: older overlay rows are obsolete.
        self._overlay_position.clear()
        self._overlay_rows.clear()
        self._overlay_cache = None
        self._set_base(sp.csr_matrix(placement @ encoded))

    def encode(self, texts: Sequence[str]) -> sp.csr_matrix:
        """TF-IDF rows of `texts` with the current vocabulary (unknown words are ignored)."""
        if self.vectorizer is None:
            return sp.csr_matrix((len(texts), 0), dtype=np.float32)
        return sp.csr_matrix(self.vectorizer.transform(texts), dtype=np.float32)

    def encode_query(self, text: str) -> NicheQuery:
        """A brief's vector, weighted as the rows are (sublinear tf x idf, L2); a term no
        creator uses counts as the closest vocabulary term if one is close enough."""
        vectorizer = self.vectorizer  # one vocabulary throughout, even if a refit lands
        if vectorizer is None:
            return NicheQuery(sp.csr_matrix((1, 0), dtype=np.float32), {})
        vocabulary: dict[str, int] = vectorizer.vocabulary_
        columns = len(vocabulary)
        read = self.terms.read(text)
        unknown = sorted({term for _, term in read if term not in vocabulary})
        nearest = self._nearest_terms(unknown)
        counts: Counter[int] = Counter()
        labels: dict[int, str] = {}
        for word, term in read:
            known = term if term in vocabulary else nearest.get(term)
            if known is None or known not in vocabulary:  # a refit may have just replaced it
                continue
            column = vocabulary[known]
            counts[column] += 1
            shown = self.terms.shown.get(known, known)
            labels.setdefault(column, word if shown == word else f"{word} ~ {shown}")
        ordered = sorted(counts)
        weights = (1.0 + np.log(np.array([counts[c] for c in ordered], dtype=np.float64))) * (
            vectorizer.idf_[ordered]
        )
        norm = float(np.linalg.norm(weights)) or 1.0
        vector = sp.csr_matrix(
            ((weights / norm).astype(np.float32), ordered, [0, len(ordered)]),
            shape=(1, columns),
        )
        return NicheQuery(vector, labels)

    def _nearest_terms(self, unknown: list[str]) -> dict[str, str | None]:
        """Each unknown term's closest vocabulary term, remembered until the next fit (briefs
        repeat their unknown words: "campaign", "brand")."""
        # Local references: a refit in a worker thread replaces both, never mutates them.
        nearest, seen = self._nearest, self._nearest_seen
        if nearest is None:
            return {}
        if len(seen) > _NEAREST_MEMO_LIMIT:
            seen.clear()
        asked = [term for term in unknown if term not in seen]
        if asked:
            seen.update(zip(asked, nearest(asked), strict=True))
        return {term: seen.get(term) for term in unknown}

    def set_rows(self, rows: npt.NDArray[np.int64], texts: Sequence[str], size: int) -> None:
        """Replace the vectors of `rows` (new rows included) with the encoding of `texts`."""
        if self.vectorizer is None:
            return
        encoded = self.encode(texts)
        vocabulary = self.vectorizer.vocabulary_
        self.unseen_word_rows += sum(
            any(term not in vocabulary for term in self.terms(text)) for text in texts
        )
        for i, row in enumerate(rows.tolist()):
            position = self._overlay_position.get(row)
            if position is None:
                self._overlay_position[row] = len(self._overlay_rows)
                self._overlay_rows.append(encoded[i])
            else:
                self._overlay_rows[position] = encoded[i]
        self._overlay_cache = None
        if self.overlay_size > max(_COMPACT_MINIMUM, _COMPACT_SHARE * size):
            self.compact(size)

    def compact(self, size: int) -> None:
        """Fold the overlay into a new base of `size` rows."""
        if not self._overlay_position:
            return
        rows, overlay = self._overlay()
        base = self._base_csr
        columns = self.vocabulary_size
        if base.shape != (size, columns):
            base = _resized(base, size, columns)
        keep = np.ones(size, dtype=np.float32)
        keep[rows] = 0.0
        placement = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, np.arange(len(rows)))),
            shape=(size, len(rows)),
        )
        merged = sp.diags(keep, format="csr") @ base + placement @ _resized(
            overlay, len(rows), columns
        )
        self._overlay_position.clear()
        self._overlay_rows.clear()
        self._overlay_cache = None
        self._set_base(sp.csr_matrix(merged, dtype=np.float32))

    def similarity(self, query: sp.csr_matrix, size: int) -> npt.NDArray[np.float32]:
        """Cosine similarity of every row with `query` (an L2-normalised 1 x vocabulary row)."""
        scores: npt.NDArray[np.float32] = self.similarity_many([query], size)[0]
        return scores

    def similarity_many(
        self, queries: Sequence[sp.csr_matrix], size: int
    ) -> npt.NDArray[np.float32]:
        """(queries x size) cosine similarities of every row with each of `queries`.

        The base is read query by query, each through its own columns. One product over
        the columns any of them uses multiplies every query by each of those columns and
        leaves a rows x queries result to transpose: for 24 briefs at 100k creators that
        took about twice as long (measured with `bench/bench_matching.py`). Each row's sum
        runs over the same columns in the same (ascending) order either way, a column the
        query lacks adding zero, so the scores are the same to the bit."""
        scores = np.zeros((len(queries), size), dtype=np.float32)
        if self.vectorizer is None or not queries:
            return scores
        stacked = sp.csr_matrix(sp.vstack(queries), dtype=np.float32)
        if stacked.nnz == 0:
            return scores
        stacked.sum_duplicates()  # ascending columns within each query
        base_rows = min(self._base_csc.shape[0], size)
        if base_rows and self._base_csc.shape[1]:
            for i, (start, end) in enumerate(itertools.pairwise(stacked.indptr)):
                if start < end:
                    own = self._base_csc[:, stacked.indices[start:end]]
                    scores[i, :base_rows] = (own @ stacked.data[start:end])[:base_rows]
        if self._overlay_position:
            rows, overlay = self._overlay()
            scores[:, rows] = (overlay @ stacked.T.toarray()).T
        return scores

    def rows(self, rows: npt.NDArray[np.int64]) -> sp.csr_matrix:
        """The vectors of `rows`, in that order."""
        columns = self.vocabulary_size
        base_rows = self._base_csr.shape[0]
        if base_rows and self._base_csr.shape[1] == columns:
            picked = sp.csr_matrix(self._base_csr[np.minimum(rows, base_rows - 1)])
        else:
            picked = sp.csr_matrix((len(rows), columns), dtype=np.float32)
        replaced = [
            (i, self._overlay_position.get(row))
            for i, row in enumerate(rows.tolist())
            if row >= base_rows or row in self._overlay_position
        ]
        if not replaced:
            return picked
        keep = np.ones(len(rows), dtype=np.float32)
        keep[[i for i, _ in replaced]] = 0.0
        found = [(i, p) for i, p in replaced if p is not None]
        result = sp.diags(keep, format="csr") @ picked
        if found:
            vectors = sp.vstack([_resized(self._overlay_rows[p], 1, columns) for _, p in found])
            placement = sp.csr_matrix(
                (np.ones(len(found), dtype=np.float32), ([i for i, _ in found], range(len(found)))),
                shape=(len(rows), len(found)),
            )
            result = result + placement @ vectors
        return sp.csr_matrix(result, dtype=np.float32)

    def memory_bytes(self) -> int:
        total = 0
        for matrix in (self._base_csr, self._base_csc):
            total += matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
        return total

    def _set_base(self, base: sp.csr_matrix) -> None:
        base.sort_indices()
        self._base_csr = base
        self._base_csc = base.tocsc()

    def _overlay(self) -> tuple[npt.NDArray[np.int64], sp.csr_matrix]:
        if self._overlay_cache is None:
            rows = np.fromiter(self._overlay_position, dtype=np.int64)
            positions = list(self._overlay_position.values())
            stacked = sp.csr_matrix(
                sp.vstack([self._overlay_rows[p] for p in positions]), dtype=np.float32
            )
            self._overlay_cache = (rows, stacked)
        return self._overlay_cache


def _resized(matrix: sp.csr_matrix, rows: int, columns: int) -> sp.csr_matrix:
    """`matrix` padded with zero rows/columns (never cut) to `rows` x `columns`."""
    if matrix.shape == (rows, columns):
        return matrix
    resized = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    resized.resize((max(rows, matrix.shape[0]), max(columns, matrix.shape[1])))
    return resized
