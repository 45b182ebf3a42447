"""Matching past one machine, simulated: the index split into N shards by creator (as profile
partitions would split it), a query scattered to every shard and the shards' top-K gathered.

One population is indexed whole, and again as N shards (a creator goes to shard
crc32(creator_id) % N, standing in for its profile partition's owner). For each query it times
the whole index, then each shard alone, and merges the shards' top-K by score. Shards would
run in parallel on their own machines, so a scattered query takes the slowest shard plus the
merge (printed as "scatter-gather"); the sum of the shards is the CPU it costs in all. Each
shard fits its own text weights (TF-IDF) and anomaly model on its creators, as a real shard
would, so the merged top-K is compared with the whole index's (overlap). The Kafka hops of a
real scatter (request to every shard, answers back) are not in these figures: the Kafka
section of bench_matching.py measures that round trip.

Usage: python bench/bench_matching_shards.py [--size 100000] [--shards 1,2,4,8] [--queries 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import zlib
from typing import Any

import numpy as np
from bench_matching import FX, TOP, add_long_tail, percentile, requests

from services.matching.domain.index import CreatorIndex
from services.matching.domain.profiles import ProfileColumns
from services.matching.domain.ranker import HAND_RANKER
from services.matching.domain.scoring import RankedCreator, ScoringSettings, match
from services.matching.translate import match_query
from shared.tools.synthetic.population import generate_population


def take(columns: ProfileColumns, rows: list[int]) -> ProfileColumns:
    """The profiles at `rows`, as columns."""
    picked: dict[str, Any] = {}
    for f in dataclasses.fields(columns):
        value = getattr(columns, f.name)
        picked[f.name] = value[rows] if isinstance(value, np.ndarray) else [value[i] for i in rows]
    return ProfileColumns(**picked)


def gather(answers: list[list[RankedCreator]], top: int) -> list[RankedCreator]:
    """The best `top` of the shards' answers, by score."""
    merged = [c for answer in answers for c in answer]
    merged.sort(key=lambda c: -c.score)
    return merged[:top]


def run(size: int, shard_counts: list[int], queries: int) -> None:
    population = generate_population(size, seed=7)
    add_long_tail(population.profiles.bio, 4, seed=size)
    columns = population.profiles
    whole = CreatorIndex.build(columns, seed=1)
    settings = ScoringSettings()
    made = [match_query(r) for r in requests(queries, seed=5)]
    for query in made[:3]:  # warm-up
        match(whole, query, HAND_RANKER, FX, settings)
    single: list[float] = []
    best: list[set[str]] = []
    for query in made:
        started = time.perf_counter()
        result = match(whole, query, HAND_RANKER, FX, settings)
        single.append((time.perf_counter() - started) * 1000)
        best.append({c.creator_id for c in result.creators})
    s50, s99 = statistics.median(single), percentile(single, 99)
    print(f"\n== {size:,} creators, top-{TOP}, {queries} queries ==")
    print(f"one index: median {s50:.1f} ms, p99 {s99:.1f} ms")
    for count in shard_counts:
        owner = [zlib.crc32(cid.encode()) % count for cid in columns.creator_id]
        shards = [
            CreatorIndex.build(take(columns, [i for i, o in enumerate(owner) if o == s]), seed=1)
            for s in range(count)
        ]
        for shard in shards:  # warm-up
            for query in made[:3]:
                match(shard, query, HAND_RANKER, FX, settings)
        latency: list[float] = []
        cpu: list[float] = []
        overlap: list[float] = []
        for query, expected in zip(made, best, strict=True):
            times, answers = [], []
            for shard in shards:
                started = time.perf_counter()
                answers.append(match(shard, query, HAND_RANKER, FX, settings).creators)
                times.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            merged = gather(answers, TOP)
            merge_ms = (time.perf_counter() - started) * 1000
            latency.append(max(times) + merge_ms)
            cpu.append(sum(times) + merge_ms)
            overlap.append(len({c.creator_id for c in merged} & expected) / max(len(expected), 1))
        l50, l99 = statistics.median(latency), percentile(latency, 99)
        print(
            f"{count} shard(s) of ~{size // count:,}: scatter-gather median {l50:.1f} ms "
            f"p99 {l99:.1f} ms ({l50 / s50:.2f}x / {l99 / s99:.2f}x one index) | "
            f"CPU in all median {statistics.median(cpu):.1f} ms "
            f"({statistics.median(cpu) / s50:.2f}x) | top-{TOP} overlap with one index "
            f"{float(np.mean(overlap)):.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--shards", default="1,2,4,8")
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args()
    run(args.size, [int(s) for s in args.shards.split(",")], args.queries)


if __name__ == "__main__":
    main()
