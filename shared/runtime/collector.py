"""The cyclic garbage collector's settings for a service that applies events in batches.

A batch makes many short-lived objects, freed by reference counting when it ends. With
Python's default thresholds the collector also walked them, and every object the imports
made, several times a batch, and each full collection paused the event loop with the batch,
the dispatcher's rail calls and the relay waiting behind it: in payouts 65-110 ms, about ten
times over a benchmark run (`bench/bench_payouts.py`). Frozen imports and a high first
threshold leave the collector to run when memory really grows, which still collects cycles.
"""

from __future__ import annotations

import gc
from typing import Final

THRESHOLDS: Final = (1_000_000, 20, 100)


def collect_rarely() -> None:
    """Freeze what the process holds now (its imports) and raise the thresholds; call once,
    before the service starts."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
