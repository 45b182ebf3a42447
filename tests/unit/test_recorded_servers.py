"""What `creatorflow infra up` recorded is used server by server: a command that needs only
the database or Kafka works while another of the servers (Redis, say) is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.runtime.config import Settings
from shared.runtime.server_urls import STATE_FILE, InfraUrls, recorded_urls, running_urls
from shared.runtime.service import resolve_urls

URLS = InfraUrls("127.0.0.1:9092", "postgresql://u:p@127.0.0.1:5432/db", "redis://127.0.0.1:6379/0")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _settings(root: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings that find servers only through what was recorded under `root`."""
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CREATORFLOW_DATA_DIR", str(root))
    return Settings()


def _record(root: Path, pids: dict[str, int]) -> None:
    state = {
        "urls": {
            "kafka_bootstrap_servers": URLS.kafka_bootstrap_servers,
            "database_url": URLS.database_url,
            "redis_url": URLS.redis_url,
        },
        "processes": {
            name: {"pid": pid, "stop_signal": 15, "log": "x"} for name, pid in pids.items()
        },
    }
    (root / STATE_FILE).write_text(json.dumps(state))


def test_with_redis_down_kafka_and_the_database_are_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alive, dead = os.getpid(), _dead_pid()
    _record(tmp_path, {"kafka": alive, "postgres": alive, "redis": dead})
    assert recorded_urls(tmp_path) == InfraUrls(URLS.kafka_bootstrap_servers, URLS.database_url)
    found = running_urls(_settings(tmp_path, monkeypatch))
    assert found is not None and found.database_url == URLS.database_url
    # A service that does without Redis for a while starts, to connect once it is back.
    settings = _settings(tmp_path, monkeypatch)
    assert resolve_urls(settings, "payouts", uses_redis=True).redis_url == URLS.redis_url


def test_without_the_database_nothing_is_found_and_one_broker_of_three_is_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alive, dead = os.getpid(), _dead_pid()
    _record(tmp_path, {"kafka-1": dead, "kafka-2": alive, "kafka-3": dead, "postgres": dead})
    assert recorded_urls(tmp_path) == InfraUrls(URLS.kafka_bootstrap_servers, "")
    assert running_urls(_settings(tmp_path, monkeypatch)) is None
