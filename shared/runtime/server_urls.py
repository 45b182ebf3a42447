"""Where a service finds its servers: the environment, completed by `creatorflow infra up`'s.

`creatorflow infra up` (shared/tools/infra) records the URLs and process ids of the embedded
servers it started in `<data dir>/infra.json`; a service started by hand on a developer's
machine reads them from there when its environment names no server. Only this file's format
is shared with the tools: the runtime never starts or stops a server.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from shared.runtime.config import Settings

STATE_FILE = "infra.json"


@dataclass(frozen=True)
class InfraUrls:
    """Where the servers are. `database_url` carries a password: never log it whole.

    Redis is optional: only a service that uses it needs it.
    """

    kafka_bootstrap_servers: str
    database_url: str
    redis_url: str | None = None

    def as_env(self) -> dict[str, str]:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "DATABASE_URL": self.database_url,
        }
        if self.redis_url is not None:
            env["REDIS_URL"] = self.redis_url
        return env


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def recorded_urls(data_dir: Path, *, stopped_redis: bool = False) -> InfraUrls | None:
    """The URLs `creatorflow infra up` recorded under `data_dir`, of the servers still running
    ('' for Kafka or the database, None for Redis, when it stopped): a command that needs
    only the database works while Redis is down. With `stopped_redis`, Redis's URL even when
    it stopped: a service that does without Redis for a while connects once it is back."""
    path = data_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        urls = InfraUrls(**raw["urls"])
        alive = {name: pid_alive(int(p["pid"])) for name, p in raw["processes"].items()}
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is unreadable ({error}); remove it and start again") from error

    def running(server: str) -> bool:
        # A 3-broker cluster answers while one of its brokers is down.
        return any(up for name, up in alive.items() if name.split("-")[0] == server)

    return InfraUrls(
        urls.kafka_bootstrap_servers if running("kafka") else "",
        urls.database_url if running("postgres") else "",
        urls.redis_url if stopped_redis or running("redis") else None,
    )


def running_urls(
    settings: Settings, service: str | None = None, *, stopped_redis: bool = False
) -> InfraUrls | None:
    """Server URLs from the environment, completed by `creatorflow infra up`'s if running
    (Redis's even when stopped, with `stopped_redis`); None without a Kafka and a database.
    With `service`, its own database if it has one (`<SERVICE>_DATABASE_URL`)."""
    recorded = recorded_urls(settings.data_dir, stopped_redis=stopped_redis)
    kafka = settings.kafka_bootstrap_servers or (recorded and recorded.kafka_bootstrap_servers)
    database = (settings.database_url_of(service) if service else None) or (
        settings.database_url.get_secret_value()
        if settings.database_url
        else (recorded and recorded.database_url)
    )
    redis = (
        settings.redis_url.get_secret_value()
        if settings.redis_url
        else (recorded and recorded.redis_url)
    )
    if not (kafka and database):
        return None
    return InfraUrls(kafka, database, redis or None)
