"""The collector's settings for the batch-applying services."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from shared.runtime.collector import THRESHOLDS, collect_rarely


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_freezes_what_is_held_and_raises_the_thresholds() -> None:
    gc.unfreeze()
    held = [[index] for index in range(1000)]  # containers the collector tracks
    collect_rarely()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() >= len(held)


@pytest.mark.parametrize("service", ["tracking", "payouts"])
def test_the_batch_services_run_with_it(service: str) -> None:
    """Their entry points set it before the service starts (checked without starting one)."""
    program = (
        "import gc, runpy, shared.runtime.service as s\n"
        "s.run_service = lambda *a, **k: print(gc.get_threshold(), gc.get_freeze_count() > 0)\n"
        f"runpy.run_module('services.{service}', run_name='__main__')\n"
    )
    ran = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"{THRESHOLDS} True"
