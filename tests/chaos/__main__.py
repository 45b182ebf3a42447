"""`python -m tests.chaos [--deals N]`: the fault suite at full scale (what `make chaos` runs)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shared.runtime.config import Settings
from tests.chaos.faults import FaultPlan
from tests.chaos.run import ChaosReport, chaos, summary
from tests.chaos.workload import ChaosConfig

console = Console()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--deals", type=int, default=5000, help="two confirmations each")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--publish-seconds", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=3, help="kill -9 per service")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Settings().data_dir / "chaos",
        help="servers' data and each run's services.log (replaced on each run)",
    )
    args = parser.parse_args()
    # The harness's own Kafka clients retry through broker faults; their per-attempt errors
    # would bury the progress lines (the services' output goes to services.log).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    config = ChaosConfig(deals=args.deals, seed=args.seed)
    began = time.monotonic()

    def say(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - began:6.1f}s[/] {message}")

    report = asyncio.run(
        chaos(
            config,
            lambda window: FaultPlan(window, seed=args.seed, kills_per_service=args.kills),
            args.publish_seconds,
            say,
            args.dir,
        )
    )
    show(report)
    console.print(f"service output of each run: {args.dir}/clean/services.log, chaos/services.log")
    return 0 if report.ok else 1


def show(report: ChaosReport) -> None:
    runs = Table(title="Runs", title_justify="left")
    runs.add_column("")
    runs.add_column("clean")
    runs.add_column("chaos")
    clean, chaotic = summary(report.clean), summary(report.chaos)
    for key in clean:
        runs.add_row(key, clean[key], chaotic[key])
    console.print(runs)
    faults = Table(title="Faults (chaos run)", title_justify="left")
    faults.add_column("at (from the first record)")
    faults.add_column("fault")
    faults.add_column("")
    for fault in sorted(report.chaos.faults, key=lambda f: f.began):
        faults.add_row(f"{fault.began - report.chaos.started:5.1f} s", fault.what, fault.detail)
    console.print(faults)
    checks = Table(title="Checks (chaos run)", title_justify="left")
    checks.add_column("check")
    checks.add_column("result")
    checks.add_column("")
    for check in report.checks:
        checks.add_row(check.name, check.value, "[green]ok[/]" if check.ok else "[red]FAIL[/]")
    console.print(checks)
    for run in (report.clean, report.chaos):
        if run.unexpected_exits:
            console.print(f"[yellow]{run.name}: exits nobody asked for:[/]")
            for line in run.unexpected_exits:
                console.print(f"  {line}")
    if not report.ok:
        console.print("[red]chaos: FAILED[/]; last service output of the chaos run:")
        for line in report.chaos.log_tail:
            console.print(line, markup=False, highlight=False)


if __name__ == "__main__":
    sys.exit(main())
