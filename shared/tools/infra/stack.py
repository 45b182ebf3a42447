"""Embedded Kafka + PostgreSQL + Redis for development, the demo and the tests.

Any server whose URL is configured (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, REDIS_URL) is used
as it is; only the missing ones are started here. Kafka is the embedded Tansu broker (one
process named `kafka`), or with CREATORFLOW_KAFKA=apache a local Apache Kafka cluster (nodes
named `kafka-1`, `kafka-2`, ...).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from shared.runtime.config import DEFAULT_DATABASE_PASSWORD, KafkaKind, Settings
from shared.runtime.server_urls import STATE_FILE, InfraUrls, pid_alive
from shared.tools.infra import postgres_account
from shared.tools.infra.apache_kafka import ApacheKafkaCluster
from shared.tools.infra.files import write_private
from shared.tools.infra.kafka_jars import default_cache_dir, kafka_jars, require_tools
from shared.tools.infra.process import (
    InfraError,
    ServerProcess,
    free_port,
    stop_together,
)
from shared.tools.infra.servers import HOST, POSTGRES_USER, start_kafka, start_postgres, start_redis


@dataclass
class EmbeddedInfra:
    """Starts what is not configured externally; a context manager that stops what it started.

    `detached=True` leaves the servers running after this process exits (`creatorflow infra
    up`); otherwise they die with this process even on `kill -9`. Either way, `announce=True`
    records them in `root/infra.json` while they run, so operator commands (reports,
    statements) find them as they find `creatorflow infra up`'s.
    """

    root: Path
    settings: Settings = field(default_factory=Settings)
    detached: bool = False
    announce: bool = False
    durable: bool = True
    processes: dict[str, ServerProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    urls: InfraUrls | None = None
    apache_kafka: ApacheKafkaCluster | None = None

    def start(self) -> InfraUrls:
        self.root.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        try:
            kafka = self.settings.kafka_bootstrap_servers or self._start_kafka()
            redis = (
                self.settings.redis_url.get_secret_value()
                if self.settings.redis_url
                else self._start_redis()
            )
            database = (
                self.settings.database_url.get_secret_value()
                if self.settings.database_url
                else self._start_postgres()
            )
        except BaseException:
            self.stop()
            raise
        self.urls = InfraUrls(kafka, database, redis)
        if self.detached or self.announce:
            self._write_state(time.monotonic() - began)
        return self.urls

    def _start_kafka(self) -> str:
        if self.settings.kafka is KafkaKind.APACHE:
            return self._start_apache_kafka()
        port = self.ports.setdefault("kafka", free_port())
        self.processes["kafka"] = start_kafka(self.root / "kafka", port, detached=self.detached)
        return f"{HOST}:{port}"

    def _start_apache_kafka(self) -> str:
        java = require_tools("java", "mvn")["java"]
        jars = kafka_jars(self.settings.cache_dir or default_cache_dir())
        cluster = ApacheKafkaCluster(self.root / "kafka", self.settings.kafka_brokers, jars, java)
        self.apache_kafka = cluster
        cluster.prepare()
        for node in cluster.nodes:
            self.processes[node.name] = cluster.start_node(node, detached=self.detached)
        cluster.wait_ready(self.kafka_processes(), len(cluster.nodes))
        return cluster.bootstrap_servers

    def restart_apache_nodes(self, names: list[str], *, brokers: int) -> None:
        """Start the stopped nodes `names` of the Apache Kafka cluster of `brokers` nodes
        under `root`, with their data, while the others run; wait until all are ready."""
        java = require_tools("java", "mvn")["java"]
        jars = kafka_jars(self.settings.cache_dir or default_cache_dir())
        cluster = ApacheKafkaCluster(self.root / "kafka", brokers, jars, java, some_running=True)
        self.apache_kafka = cluster
        started = {}
        try:
            for name in names:
                started[name] = cluster.start_node(cluster.node(name), detached=self.detached)
                self.processes[name] = started[name]
            cluster.wait_ready(self.kafka_processes(), len(cluster.nodes))
        except BaseException:
            # Not recorded in infra.json yet: stopped here, or nothing would stop them.
            stop_together(started.values())
            raise

    def kafka_processes(self) -> dict[str, ServerProcess]:
        return {name: p for name, p in self.processes.items() if _is_kafka(name)}

    def _start_redis(self) -> str:
        port = self.ports.setdefault("redis", free_port())
        self.processes["redis"] = start_redis(self.root / "redis", port, detached=self.detached)
        return f"redis://{HOST}:{port}/0"

    def _start_postgres(self) -> str:
        port = self.ports.setdefault("postgres", free_port())
        self.processes["postgres"] = start_postgres(
            self.root / "postgres" / "data",
            port,
            DEFAULT_DATABASE_PASSWORD,
            detached=self.detached,
            durable=self.durable,
        )
        return f"postgresql://{POSTGRES_USER}:{DEFAULT_DATABASE_PASSWORD}@{HOST}:{port}/postgres"

    def stop_server(self, name: str) -> None:
        """Stop one server this stack started (an outage drill); `start_server` brings it back
        on the same port with the same data. An Apache Kafka node (`kafka-2`) stops alone."""
        if name == "kafka":
            raise InfraError("the embedded Kafka keeps its data in memory: it cannot restart")
        self.processes.pop(name).stop()

    def kill_server(self, name: str) -> None:
        """`kill -9` one server this stack started; `start_server` brings it back."""
        if name == "kafka":
            raise InfraError("the embedded Kafka keeps its data in memory: it cannot restart")
        self.processes.pop(name).kill()

    def start_server(self, name: str) -> None:
        if name in self.processes:
            raise InfraError(f"{name} is not a stopped server of this stack")
        if self.apache_kafka is not None and _is_kafka(name):
            cluster = self.apache_kafka
            self.processes[name] = cluster.start_node(cluster.node(name), detached=self.detached)
            cluster.wait_ready(self.kafka_processes(), len(self.kafka_processes()))
            return
        if name not in self.ports:
            raise InfraError(f"{name} is not a stopped server of this stack")
        {"redis": self._start_redis, "postgres": self._start_postgres}[name]()

    def stop(self) -> None:
        self._adopt_restarted()
        # Kafka first, its nodes together: clients of Kafka may still be writing to Postgres.
        # Throwaway clusters (tests) are killed: a clean shutdown would cost seconds per run.
        kafka = [self.processes.pop(name) for name in self.kafka_processes()]
        stop_together(kafka, timeout=30.0 if self.durable else 0.0)
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()
        (self.root / STATE_FILE).unlink(missing_ok=True)
        if not self.durable:
            postgres_account.discard(self.root / "postgres" / "data")

    def _adopt_restarted(self) -> None:
        """Take over the servers `creatorflow infra up` started again while this stack ran
        (after an outage: `start_stopped` records their new pids in the state file), so they
        stop with it rather than outlive it and block the next start on their data."""
        if not (self.detached or self.announce):
            return
        try:
            state = read_state(self.root)
        except InfraError:
            return
        if state is None:
            return
        for name, recorded in state.processes.items():
            held = self.processes.get(name)
            if (held is None or held.pid != recorded.pid) and recorded.alive():
                self.processes[name] = recorded

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.processes.items()}

    def _write_state(self, startup_seconds: float) -> None:
        assert self.urls is not None
        state = {
            "urls": asdict(self.urls),
            "processes": {
                name: {"pid": p.pid, "stop_signal": int(p.stop_signal), "log": str(p.log_path)}
                for name, p in self.processes.items()
            },
            "startup_seconds": round(startup_seconds, 2),
        }
        path = self.root / STATE_FILE
        write_private(path, json.dumps(state, indent=2))

    def __enter__(self) -> EmbeddedInfra:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class DetachedState:
    """What `creatorflow infra up` left running, read back from its state file."""

    urls: InfraUrls
    processes: dict[str, ServerProcess]

    def alive(self) -> dict[str, bool]:
        return {name: pid_alive(p.pid) for name, p in self.processes.items()}


def read_state(root: Path) -> DetachedState | None:
    path = root / STATE_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        processes = {
            name: ServerProcess(name, int(p["pid"]), Path(p["log"]), int(p["stop_signal"]))
            for name, p in raw["processes"].items()
        }
        return DetachedState(InfraUrls(**raw["urls"]), processes)
    except (ValueError, KeyError, TypeError) as error:
        raise InfraError(f"{path} is unreadable ({error}); remove it and start again") from error


def stop_detached(root: Path) -> list[str]:
    """Stop what `creatorflow infra up` started under `root`; returns the names stopped."""
    state = read_state(root)
    if state is None:
        return []
    running = {name: p for name, p in state.processes.items() if p.alive()}
    stop_together(p for name, p in running.items() if _is_kafka(name))
    for name in ("redis", "postgres"):
        if name in running:
            running[name].stop()
    (root / STATE_FILE).unlink(missing_ok=True)
    return list(running)


def start_stopped(root: Path, settings: Settings, state: DetachedState) -> list[str]:
    """Start again the servers of `state` (what `creatorflow infra up` left running under
    `root`) that stopped, each on its port and with its data, leaving the others running, so
    services connected to them keep their connections; returns the names started. The
    embedded Kafka keeps its data in memory: started again, it is empty. A stopped Apache
    Kafka node starts again with its data and rejoins its cluster."""
    stopped = [name for name, alive in state.alive().items() if not alive]
    began = time.monotonic()
    infra = EmbeddedInfra(root, settings, detached=True)
    infra.urls = state.urls
    infra.processes = {n: p for n, p in state.processes.items() if n not in stopped}
    infra.ports = {
        "kafka": int(state.urls.kafka_bootstrap_servers.rsplit(":", 1)[1]),
        "postgres": urlsplit(state.urls.database_url).port or 0,
        "redis": urlsplit(state.urls.redis_url).port or 0,
    }
    starts = {
        "kafka": infra._start_kafka,
        "redis": infra._start_redis,
        "postgres": infra._start_postgres,
    }
    nodes = [name for name in stopped if name not in starts]
    if nodes:
        infra.restart_apache_nodes(nodes, brokers=len(infra.kafka_processes()) + len(nodes))
    for name in stopped:
        if name in starts:
            starts[name]()
    infra._write_state(time.monotonic() - began)
    return stopped


def _is_kafka(name: str) -> bool:
    return name == "kafka" or name.startswith("kafka-")


def redact(url: str) -> str:
    """`url` with its password replaced, for printing and logging."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
