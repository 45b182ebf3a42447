"""The per-stage summary both payout benchmarks print: p50 and p99 of each measured stage."""

from __future__ import annotations

from shared.tools.latency_floor import stage_lines, stage_quantiles


def test_stages_without_samples_are_left_out_and_lines_are_in_milliseconds() -> None:
    summary = stage_quantiles({"poll": [0.01, 0.02, 0.03], "consume": [0.1], "relay": []})
    assert summary == {
        "stage_poll": 0.02,
        "stage_consume": 0.1,
        "stage99_poll": 0.03,
        "stage99_consume": 0.1,
    }
    assert stage_lines({"p50": 1.0, **summary}, lead="  confirmed -> sent, ") == [
        "  confirmed -> sent, p50 per stage (ms): poll 20.0, consume 100.0",
        "  confirmed -> sent, p99 per stage (ms): poll 30.0, consume 100.0",
    ]
