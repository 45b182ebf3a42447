"""A local Apache Kafka cluster: 1 or 3 KRaft nodes (broker and controller in one process),
run as `java -cp` from the jars Maven fetched (shared.tools.infra.kafka_jars), data on disk.

Layout under `directory`: `cluster.json` (cluster id and ports, reused on the next start so a
restarted node rejoins with its log), and `node-<id>/` with `server.properties`, `data/` and
`broker.log`. Cluster-wide settings come from `deploy/kafka/broker.properties`.

With a `ClusterSecurity` (shared.tools.infra.kafka_tls) the nodes listen for clients with mutual TLS
(`port`, also the brokers' and the controllers' own listener) and with SASL_SSL and
SCRAM-SHA-512 (`sasl_port`), and authorize every request with Kafka's StandardAuthorizer.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.tools.infra.files import write_private
from shared.tools.infra.kafka_tls import BROKER_PRINCIPAL, ClusterSecurity
from shared.tools.infra.process import InfraError, ServerProcess, free_ports, port_open, spawn

HOST = "127.0.0.1"
BROKER_PROPERTIES = Path(__file__).resolve().parents[3] / "deploy" / "kafka" / "broker.properties"
# Small heaps: three brokers, PostgreSQL, Redis and the services share 2 cores in CI.
# The serial collector keeps each JVM to one GC thread.
JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
_LOGGING = (
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
)
_CLUSTER_FILE = "cluster.json"


def read_properties(text: str) -> dict[str, str]:
    """`key=value` lines; blank lines and `#` comments skipped (no continuation lines)."""
    properties = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            properties[key.strip()] = value.strip()
    return properties


def cluster_settings(brokers: int, path: Path = BROKER_PROPERTIES) -> dict[str, str]:
    """The cluster-wide broker settings for a cluster of `brokers` nodes."""
    settings = read_properties(path.read_text())
    for key, value in settings.items():
        # A replication factor or in-sync minimum above the node count would refuse writes.
        if key.endswith(("replication.factor", "min.insync.replicas", "min.isr")):
            settings[key] = str(min(int(value), brokers))
    return settings


SCRAM_MECHANISM = "SCRAM-SHA-512"


def format_argv(
    java: str,
    jars: Path,
    cluster_id: str,
    config: Path,
    scram_users: Mapping[str, str] | None = None,
) -> list[str]:
    """The storage formatter's command line. The id is joined to its option with `=`: a
    base64 id may start with `-`, which the formatter would otherwise read as an option.
    `scram_users` (name to password) are created in the cluster's metadata from the start,
    so no client needs to be let in unauthenticated to create them."""
    argv = [java, *JVM_OPTIONS, "-cp", f"{jars}/*", "kafka.tools.StorageTool", "format"]
    argv += ["--ignore-formatted", f"--cluster-id={cluster_id}", f"--config={config}"]
    for name, password in (scram_users or {}).items():
        argv += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
    return argv


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    port: int  # clients and the other brokers (mutual TLS on a secured cluster)
    controller_port: int  # the KRaft quorum
    sasl_port: int | None = None  # SASL_SSL clients, on a secured cluster only

    @property
    def name(self) -> str:
        return f"kafka-{self.node_id}"


def node_properties(
    node: KafkaNode,
    nodes: Iterable[KafkaNode],
    data_dir: Path,
    cluster: Mapping[str, str],
    security: ClusterSecurity | None = None,
) -> dict[str, str]:
    """The whole `server.properties` of one combined broker and controller."""
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)
    controller = f"CONTROLLER://{HOST}:{node.controller_port}"
    properties = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{HOST}:{node.port},{controller}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        **cluster,
    }
    if security is not None:
        if node.sasl_port is None:
            raise InfraError(f"{node.name} has no SASL port: plan the cluster with its security")
        clients = f"MTLS://{HOST}:{node.port},SASL_SSL://{HOST}:{node.sasl_port}"
        properties |= {
            "listeners": f"{clients},{controller}",
            "advertised.listeners": clients,
            "inter.broker.listener.name": "MTLS",
            "listener.security.protocol.map": "MTLS:SSL,SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            **security_properties(security),
        }
    return properties


def security_properties(security: ClusterSecurity) -> dict[str, str]:
    """Broker settings for TLS everywhere, client certificates required on the mutual-TLS
    and controller listeners, SCRAM on the SASL_SSL listener, and ACLs enforced."""
    return {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(security.keystore_file),
        "ssl.keystore.password": security.keystore_password,
        "ssl.key.password": security.keystore_password,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(security.ca_file),
        # A client certificate is required where it is the identity: brokers and controllers
        # among themselves, and mutual-TLS clients. SASL_SSL clients log in with a password.
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        # `CN=matching` and the SCRAM user `matching` are one principal, User:matching.
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": ";".join(f"User:{name}" for name in security.super_users),
        "allow.everyone.if.no.acl.found": "false",
    }


class ApacheKafkaCluster:
    """Formats, starts and restarts the nodes of one local cluster; the caller owns the
    processes (`start_node` returns them) and stops them."""

    def __init__(
        self,
        directory: Path,
        brokers: int,
        jars: Path,
        java: str = "java",
        *,
        security: ClusterSecurity | None = None,
        some_running: bool = False,
    ) -> None:
        self.directory = directory.resolve()
        self.brokers = brokers
        self.jars = jars
        self.java = java
        self.security = security
        # True to start again the nodes that stopped while the others run (their ports busy).
        self.some_running = some_running
        self.cluster_id, self.nodes = self._load_or_plan()

    @property
    def bootstrap_servers(self) -> str:
        """PLAINTEXT, or mutual TLS on a secured cluster."""
        return ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The SASL_SSL listeners of a secured cluster."""
        if self.security is None:
            raise InfraError("this Kafka cluster has no SASL_SSL listener: it is not secured")
        return ",".join(f"{HOST}:{n.sasl_port}" for n in self.nodes)

    def node(self, name: str) -> KafkaNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise InfraError(f"{name} is not a node of the Kafka cluster in {self.directory}")

    def node_by_id(self, node_id: int) -> KafkaNode:
        return self.node(f"kafka-{node_id}")

    def node_dir(self, node: KafkaNode) -> Path:
        return self.directory / f"node-{node.node_id}"

    def _load_or_plan(self) -> tuple[str, list[KafkaNode]]:
        path = self.directory / _CLUSTER_FILE
        if path.exists():
            raw = json.loads(path.read_text())
            nodes = [KafkaNode(**n) for n in raw["nodes"]]
            if len(nodes) != self.brokers:
                raise InfraError(
                    f"{self.directory} holds a {len(nodes)}-broker Kafka cluster, not "
                    f"{self.brokers}: set CREATORFLOW_KAFKA_BROKERS={len(nodes)}, or remove "
                    "that directory to start afresh"
                )
            busy = [n.name for n in nodes if port_open(HOST, n.port)]
            if busy and not self.some_running:
                raise InfraError(
                    f"ports of the Kafka cluster in {self.directory} are in use ({busy}): "
                    "is it running already?"
                )
            return str(raw["cluster_id"]), nodes
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # Every listener of every node on a port of its own (a node refuses two listeners on
        # one port, and a cluster two nodes on one).
        per_node = 3 if self.security else 2
        ports = iter(free_ports(per_node * self.brokers))
        nodes = [
            KafkaNode(i, next(ports), next(ports), next(ports) if self.security else None)
            for i in range(1, self.brokers + 1)
        ]
        return cluster_id, nodes

    def prepare(self) -> None:
        """Write each node's configuration and format the storage of new nodes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        cluster = cluster_settings(self.brokers)
        formats = []
        for node in self.nodes:
            directory = self.node_dir(node)
            directory.mkdir(exist_ok=True)
            config = directory / "server.properties"
            properties = node_properties(
                node, self.nodes, directory / "data", cluster, self.security
            )
            # Private: a secured node's file holds its keystore password.
            write_private(config, "".join(f"{k}={v}\n" for k, v in properties.items()))
            if not (directory / "data" / "meta.properties").exists():
                formats.append((node, self._format(config, directory / "format.log")))
        failed = [node.name for node, process in formats if process.wait() != 0]
        if failed:
            raise InfraError(
                f"formatting the Kafka storage failed for {', '.join(failed)}: see format.log "
                f"under {self.directory}"
            )
        state = {"cluster_id": self.cluster_id, "nodes": [vars(n) for n in self.nodes]}
        (self.directory / _CLUSTER_FILE).write_text(json.dumps(state, indent=2))

    def _format(self, config: Path, log_path: Path) -> subprocess.Popen[bytes]:
        scram = None if self.security is None else self.security.scram_users
        argv = format_argv(self.java, self.jars, self.cluster_id, config, scram)
        with open(log_path, "wb") as log:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def start_node(self, node: KafkaNode, *, detached: bool) -> ServerProcess:
        """Start one node's JVM (without waiting for it: see `wait_ready`)."""
        config = self.node_dir(node) / "server.properties"
        argv = [self.java, *JVM_OPTIONS, *_LOGGING, "-cp", f"{self.jars}/*", "kafka.Kafka"]
        argv.append(str(config))
        return spawn(node.name, argv, self.node_dir(node) / "broker.log", detached=detached)

    def wait_ready(
        self, processes: Mapping[str, ServerProcess], brokers: int, timeout: float = 120.0
    ) -> None:
        """Wait until `brokers` brokers are registered and unfenced (clients see them)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for proc in processes.values():
                if not proc.alive():
                    raise InfraError(
                        f"{proc.name} exited during start-up. Last log lines:\n{proc.log_tail()}"
                    )
            listening = [n for n in self.nodes if port_open(HOST, n.port)]
            # Ask for metadata only once the brokers listen: clients log every refused connection.
            seen = (
                live_brokers(self.bootstrap_servers, self.security)
                if len(listening) >= brokers
                else 0
            )
            if seen >= brokers:
                return
            time.sleep(0.25)
        tails = "\n".join(f"--- {p.name}\n{p.log_tail(10)}" for p in processes.values())
        raise InfraError(
            f"Apache Kafka had {seen} of {brokers} brokers ready after {timeout:.0f}s.\n{tails}"
        )

    def active_controller(self) -> KafkaNode | None:
        """The node leading the KRaft quorum, as the nodes last recorded it (None if none has).

        Each voter keeps its view of the quorum in `quorum-state`; the newest epoch wins, since
        a node that was down may still name an old leader."""
        newest: tuple[int, int] | None = None
        for node in self.nodes:
            path = self.node_dir(node) / "data" / "__cluster_metadata-0" / "quorum-state"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            leader, epoch = int(state.get("leaderId", -1)), int(state.get("leaderEpoch", -1))
            if leader >= 0 and (newest is None or epoch > newest[1]):
                newest = (leader, epoch)
        if newest is None:
            return None
        return next((n for n in self.nodes if n.node_id == newest[0]), None)


def live_brokers(bootstrap_servers: str, security: ClusterSecurity | None = None) -> int:
    """How many brokers the cluster's metadata lists (0 when none answers). On a secured
    cluster, asked over mutual TLS as the brokers' own principal."""

    async def count() -> int:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.helpers import create_ssl_context
        from faststream.security import BaseSecurity

        from shared.runtime.kafka import client_options

        tls = None
        if security is not None:
            broker = security.client(BROKER_PRINCIPAL)
            context = create_ssl_context(
                cafile=str(security.ca_file),
                certfile=str(broker.certfile),
                keyfile=str(broker.keyfile),
            )
            tls = BaseSecurity(ssl_context=context)
        admin = AIOKafkaAdminClient(
            **client_options(bootstrap_servers, tls), request_timeout_ms=2000, retry_backoff_ms=100
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return len(cluster["brokers"])
        except Exception:
            return 0
        finally:
            await admin.close()

    # Its own loop on its own thread: callers may be inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, count()).result()
