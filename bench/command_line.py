"""Running a benchmark from the command line: its options, with their defaults, and the word
it prints for whether a goal was met."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable


def run_with_options(main: Callable[..., Awaitable[None]], doc: str, **defaults: float) -> None:
    """Run `main` with one command-line option per keyword of `defaults` (`latency_ms` is
    `--latency-ms`), of its default's type; `--help` shows the first line of `doc`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in defaults.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    asyncio.run(main(**vars(parser.parse_args())))


def verdict(met: bool) -> str:
    """How every benchmark says whether this run met a goal."""
    return "met" if met else "NOT met"
