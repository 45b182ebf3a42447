"""From words to niche terms: what a brief and a bio share when their words differ.

A word becomes a term the same way in bios and briefs: lower case, accents folded
("panadería" -> "panaderia"), English, Spanish and Portuguese stop words dropped, stemmed by
the English Snowball stemmer so that inflections meet ("lattes" and "latte", "obedient" and
"obedience"), and a synonym or translation read as its concept (`niche_synonyms`: "pups" and
"filhote" are "puppy"). A brief's term that no creator uses is then read as the closest
vocabulary term by character trigrams, when one is close enough (`NearestTerm`): a typo such
as "sourdugh" still finds "sourdough".
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import snowballstemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize

from services.matching.domain.niche_synonyms import CONCEPTS, STOP_WORDS_ES_PT

# Words of two or more characters (any script) that start with a letter.
_WORD: Final = re.compile(r"(?u)\b[^\W\d_][^\W_]+\b")
# Each distinct word is read once; past this many the memory is dropped and rebuilt.
_MEMO_LIMIT: Final = 1 << 20


def fold_accents(word: str) -> str:
    """`word` without combining marks: "panadería" -> "panaderia", "cão" -> "cao"."""
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


class NicheTerms:
    """Reads a text as niche terms (callable: the vectoriser's analyzer)."""

    def __init__(
        self,
        *,
        stem: bool = True,
        concepts: Mapping[str, Sequence[str]] = CONCEPTS,
        fold: bool = True,
        stop_words: frozenset[str] = ENGLISH_STOP_WORDS | STOP_WORDS_ES_PT,
    ) -> None:
        self._stemmer = snowballstemmer.stemmer("english") if stem else None
        self._fold = fold
        self._stop_words = stop_words
        self._memo: dict[str, str | None] = {}
        self._concept: dict[str, str] = {}
        self.shown: dict[str, str] = {}
        """A readable word for a term: its concept's name, else the first word read as it."""
        phrases: dict[str, str] = {}
        for name, synonyms in concepts.items():
            term = self._stem(self._folded(name))
            self.shown[term] = name
            for synonym in synonyms:
                if not _WORD.fullmatch(synonym):  # several words: read as one before splitting
                    phrases[synonym] = phrases[self._folded(synonym)] = name
                else:
                    self._concept[self._stem(self._folded(synonym))] = term
        self._phrases = phrases
        alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
        self._phrase = re.compile(rf"\b(?:{alternatives})\b") if phrases else None

    @classmethod
    def words_only(cls) -> NicheTerms:
        """Exact words, English stop words dropped: how niches were read before terms."""
        return cls(stem=False, concepts={}, fold=False, stop_words=ENGLISH_STOP_WORDS)

    def __call__(self, text: str) -> list[str]:
        return [term for _, term in self.read(text)]

    def read(self, text: str) -> list[tuple[str, str]]:
        """(word, term) for each content word of `text`, in order."""
        lowered = text.lower()
        if self._phrase is not None:
            lowered = self._phrase.sub(lambda m: self._phrases[m.group(0)], lowered)
        read = []
        for word in _WORD.findall(lowered):
            term = self._memo.get(word, "")
            if term == "":
                term = self._term(word)
            if term is not None:
                read.append((word, term))
        return read

    def _term(self, word: str) -> str | None:
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        folded = self._folded(word)
        term = None
        if word not in self._stop_words:  # unfolded: "uñas" is no "unas"
            stem = self._stem(folded)
            term = self._concept.get(stem, stem)
            self.shown.setdefault(term, word)
        self._memo[word] = term
        return term

    def _folded(self, word: str) -> str:
        return fold_accents(word) if self._fold else word

    def _stem(self, word: str) -> str:
        if self._stemmer is None:
            return word
        stem: str = self._stemmer.stemWord(word)
        return stem


@functools.cache
def default_terms() -> NicheTerms:
    """The reading of niches used in production (built once: the synonyms table is fixed)."""
    return NicheTerms()


def content_words(text: str) -> list[str]:
    """The terms of `text` the niche vectors match on: stop words and non-words left out."""
    return default_terms()(text)


class NearestTerm:
    """For a term the vocabulary lacks, its closest vocabulary term by character trigrams.

    Similarity is the cosine of the two terms' sets of trigrams (word edges included), so one
    wrong, missing or extra letter in a long word keeps most of its trigrams; short terms
    have too few to tell a typo from another word and are never replaced.
    """

    def __init__(
        self, vocabulary: Sequence[str], *, min_similarity: float, min_length: int = 5
    ) -> None:
        self._terms = list(vocabulary)
        self._min_similarity = min_similarity
        self._min_length = min_length
        self._trigrams = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(3, 3),
            use_idf=False,
            binary=True,
            norm=None,
            dtype=np.float32,
        )
        self._matrix = normalize(self._trigrams.fit_transform(self._terms)).T.tocsr()
        self._analyze = self._trigrams.build_analyzer()

    def __call__(self, terms: Sequence[str]) -> list[str | None]:
        """The closest vocabulary term of each of `terms` (None: none is close enough)."""
        found: list[str | None] = [None] * len(terms)
        asked = [i for i, term in enumerate(terms) if len(term) >= self._min_length]
        if not asked or not self._terms:
            return found
        queries = [terms[i] for i in asked]
        # Each vocabulary term's share of the trigrams in common, over the query's norm from
        # all its trigrams: the vectorizer sees only trigrams the vocabulary has, and a query
        # normalised over those alone would find "beginn" as close to "best" as to itself.
        shared = (self._trigrams.transform(queries) @ self._matrix).toarray()
        sizes = np.array([len(set(self._analyze(q))) for q in queries], dtype=np.float32)
        similarity = shared / np.sqrt(sizes)[:, None]
        best = similarity.argmax(axis=1)
        for i, column, row in zip(asked, best, similarity, strict=True):
            if row[column] >= self._min_similarity:
                found[i] = self._terms[int(column)]
        return found
