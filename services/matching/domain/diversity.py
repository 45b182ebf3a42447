"""Maximal marginal relevance: a top-k that is relevant and not twenty copies of one creator."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def mmr(
    relevance: npt.NDArray[np.floating],
    similarity: npt.NDArray[np.floating],
    k: int,
    trade_off: float,
) -> list[int]:
    """Indices of `k` items picked greedily by trade_off * rel - (1 - trade_off) * max_sim.

    `relevance` is rescaled to [0, 1] first so `trade_off` means the same whatever the score
    scale; `similarity` is the pairwise cosine similarity of the items. trade_off = 1 keeps the
    relevance order; 0 picks the most dissimilar items after the first.
    """
    if not 0.0 <= trade_off <= 1.0:
        raise ValueError(f"trade_off must be in [0, 1], got {trade_off}")
    count = len(relevance)
    k = min(k, count)
    if k == 0:
        return []
    spread = float(relevance.max() - relevance.min())
    rel = (relevance - relevance.min()) / spread if spread > 0 else np.ones(count)
    wanted = trade_off * rel
    penalty = 1.0 - trade_off
    closest = np.zeros(count)
    gain = np.empty(count)
    picked: list[int] = []
    for _ in range(k):  # in place: this loop runs limit times per request
        np.multiply(closest, penalty, out=gain)
        np.subtract(wanted, gain, out=gain)
        best = int(np.argmax(gain))
        picked.append(best)
        wanted[best] = -np.inf  # never picked again: its gain stays -inf
        np.maximum(closest, similarity[best], out=closest)
    return picked
