"""Reading the process's Prometheus counters in unit tests: a counter's series by label value,
and how much each grew since an earlier reading."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import REGISTRY


@dataclass(frozen=True)
class LabelledCounter:
    """A counter with one label, every one of whose `values` must have a series."""

    name: str
    label: str
    values: Sequence[str]

    def read(self) -> dict[str, float]:
        """The counter's value for each label value."""
        counts: dict[str, float] = {}
        for value in self.values:
            sample = REGISTRY.get_sample_value(self.name, {self.label: value})
            assert sample is not None, f"no series for {self.label} {value!r}"
            counts[value] = sample
        return counts

    def grown(self, before: dict[str, float]) -> dict[str, float]:
        """How much each label value's series grew since `before` (a `read()`), if at all."""
        after = self.read()
        return {v: after[v] - before[v] for v in self.values if after[v] != before[v]}
