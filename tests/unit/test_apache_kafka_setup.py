"""Apache Kafka as the local broker: settings, the nodes' configuration and the jar cache,
checked without starting Java (the cluster itself runs in `make test-kafka`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from shared.runtime.config import KafkaKind, Settings
from shared.runtime.kafka import min_insync_replicas
from shared.tools.cli.console import console
from shared.tools.cli.infra import print_urls, settings_with_kafka_options
from shared.tools.cli.main import app
from shared.tools.infra import InfraUrls
from shared.tools.infra.apache_kafka import (
    BROKER_PROPERTIES,
    ApacheKafkaCluster,
    KafkaNode,
    cluster_settings,
    format_argv,
    node_properties,
    read_properties,
)
from shared.tools.infra.kafka_jars import kafka_jars, require_tools
from shared.tools.infra.process import InfraError
from tests.support.ports import reusing_kernel

_LOCAL = ("KAFKA_BOOTSTRAP_SERVERS", "CREATORFLOW_KAFKA", "CREATORFLOW_KAFKA_BROKERS")


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*_LOCAL, "KAFKA_REPLICATION_FACTOR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_embedded_broker_is_the_default(local_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.kafka is KafkaKind.EMBEDDED
    assert settings.kafka_brokers == 1


def test_apache_kafka_with_three_brokers_is_named_as_users_write_it(
    local_env: pytest.MonkeyPatch,
) -> None:
    local_env.setenv("CREATORFLOW_KAFKA", " Apache ")
    local_env.setenv("CREATORFLOW_KAFKA_BROKERS", "3")
    local_env.setenv("KAFKA_REPLICATION_FACTOR", "3")
    settings = Settings()
    assert (settings.kafka, settings.kafka_brokers) == (KafkaKind.APACHE, 3)


@pytest.mark.parametrize("brokers", ["0", "2", "5"])
def test_only_one_or_three_brokers(local_env: pytest.MonkeyPatch, brokers: str) -> None:
    local_env.setenv("CREATORFLOW_KAFKA_BROKERS", brokers)
    with pytest.raises(ValidationError, match="must be 1 or 3"):
        Settings()


def test_a_replication_factor_above_the_local_brokers_is_refused_at_start(
    local_env: pytest.MonkeyPatch,
) -> None:
    local_env.setenv("KAFKA_REPLICATION_FACTOR", "3")
    with pytest.raises(ValidationError, match="CREATORFLOW_KAFKA_BROKERS=3"):
        Settings()
    local_env.setenv("CREATORFLOW_KAFKA", "apache")
    with pytest.raises(ValidationError, match="starts 1"):
        Settings()
    local_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092")  # the operator's cluster
    assert Settings().kafka_replication_factor == 3


@pytest.mark.parametrize(("replicas", "in_sync"), [(1, 1), (2, 2), (3, 2), (5, 2)])
def test_two_replicas_must_have_a_write_when_there_are_several(replicas: int, in_sync: int) -> None:
    assert min_insync_replicas(replicas) == in_sync


def test_three_brokers_get_the_cluster_settings_as_written() -> None:
    written = read_properties(BROKER_PROPERTIES.read_text())
    assert cluster_settings(3) == written
    assert written["min.insync.replicas"] == "2"
    assert written["offsets.topic.replication.factor"] == "3"
    assert written["auto.create.topics.enable"] == "false"


def test_one_broker_caps_every_replication_setting_at_one() -> None:
    settings = cluster_settings(1)
    capped = {k: v for k, v in settings.items() if "replication" in k or "isr" in k}
    assert capped and set(capped.values()) == {"1"}, capped
    assert settings["min.insync.replicas"] == "1"
    assert settings["auto.create.topics.enable"] == "false"


def test_each_node_is_a_broker_and_a_voter_on_loopback(tmp_path: Path) -> None:
    nodes = [KafkaNode(1, 9101, 9201), KafkaNode(2, 9102, 9202), KafkaNode(3, 9103, 9203)]
    props = node_properties(nodes[1], nodes, tmp_path / "data", cluster_settings(3))
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:9201,2@127.0.0.1:9202,3@127.0.0.1:9203"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9102"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["min.insync.replicas"] == "2"


def test_every_listener_of_a_new_cluster_gets_a_port_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reusing_kernel(monkeypatch)
    cluster = ApacheKafkaCluster(tmp_path / "kafka", 3, tmp_path)
    ports = [p for n in cluster.nodes for p in (n.port, n.controller_port)]
    assert len(set(ports)) == len(ports) == 6


def test_properties_skip_comments_and_blank_lines() -> None:
    text = "# a comment\n\n a.b = 1 \nc=x=y\n"
    assert read_properties(text) == {"a.b": "1", "c": "x=y"}


def test_missing_java_or_maven_is_one_line_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError) as error:
        require_tools("java", "mvn")
    message = str(error.value)
    assert "\n" not in message
    assert "java and mvn" in message and "Maven" in message and "Java 17" in message


def _fake_mvn(bin_dir: Path, script: str) -> Path:
    bin_dir.mkdir()
    for tool, body in (("java", "exit 0"), ("mvn", script)):
        path = bin_dir / tool
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_jars_are_fetched_once_then_taken_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    # Stands in for Maven: copies "a jar" into -DoutputDirectory=... and counts its calls.
    script = (
        f'echo run >> {calls}\nfor a in "$@"; do case "$a" in -DoutputDirectory=*) '
        'd="${a#-DoutputDirectory=}"; touch "$d/kafka_2.13-4.4.0.jar";; esac; done'
    )
    monkeypatch.setenv("PATH", f"{_fake_mvn(tmp_path / 'bin', script)}{os.pathsep}/usr/bin")
    first = kafka_jars(tmp_path / "cache")
    second = kafka_jars(tmp_path / "cache")
    assert first == second and (first / "kafka_2.13-4.4.0.jar").exists()
    assert calls.read_text().count("run") == 1


def test_a_failed_fetch_leaves_nothing_taken_for_complete(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    script = "echo 'Could not resolve dependencies' >&2; exit 1"
    monkeypatch.setenv("PATH", f"{_fake_mvn(tmp_path / 'bin', script)}{os.pathsep}/usr/bin")
    with pytest.raises(InfraError, match="Could not resolve dependencies"):
        kafka_jars(tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]


def test_a_cluster_id_starting_with_a_dash_is_not_taken_for_an_option() -> None:
    """One random id in 64 starts with `-`: "-t -abc" made the formatter fail."""
    argv = format_argv(
        "java", Path("/jars"), "-Ab_cdefghijklmnopqrstu", Path("/n/server.properties")
    )
    assert "--cluster-id=-Ab_cdefghijklmnopqrstu" in argv
    assert "-Ab_cdefghijklmnopqrstu" not in argv


@pytest.mark.parametrize("command", [["up"], ["infra", "up"]])
def test_brokers_without_apache_kafka_is_refused_before_anything_starts(
    local_env: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    local_env.setenv("CREATORFLOW_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, [*command, "--brokers", "3"])
    assert result.exit_code != 0
    assert "--brokers applies to Apache Kafka" in result.output
    assert "--kafka apache" in result.output
    assert not any(tmp_path.iterdir()), "something was started or written"


@pytest.mark.parametrize("command", [["up"], ["infra", "up"]])
def test_two_brokers_on_the_command_line_is_refused_like_the_variable(
    local_env: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    local_env.setenv("CREATORFLOW_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, [*command, "--kafka", "apache", "--brokers", "2"])
    assert result.exit_code != 0
    assert "must be 1 or 3" in result.output
    assert not any(tmp_path.iterdir()), "something was started or written"


def test_the_active_controller_is_the_leader_of_the_newest_quorum_epoch(tmp_path: Path) -> None:
    cluster = ApacheKafkaCluster(tmp_path, 3, tmp_path / "jars")
    assert cluster.active_controller() is None, "no node has recorded a quorum yet"
    states = {
        1: '{"leaderId":3,"leaderEpoch":4,"votedId":-1}',  # was down: still names the old one
        2: '{"leaderId":1,"leaderEpoch":5,"votedId":1}',
        3: "",  # being written
    }
    for node in cluster.nodes:
        metadata = cluster.node_dir(node) / "data" / "__cluster_metadata-0"
        metadata.mkdir(parents=True)
        (metadata / "quorum-state").write_text(states[node.node_id])
    controller = cluster.active_controller()
    assert controller is not None and controller.name == "kafka-1"


def test_the_options_count_before_the_variables_are_checked(
    local_env: pytest.MonkeyPatch,
) -> None:
    """`KAFKA_REPLICATION_FACTOR=3` needs three brokers: `--kafka apache --brokers 3` gives
    them, as the variables would."""
    local_env.setenv("KAFKA_REPLICATION_FACTOR", "3")
    settings = settings_with_kafka_options(KafkaKind.APACHE, 3)
    assert (settings.kafka, settings.kafka_brokers) == (KafkaKind.APACHE, 3)
    assert settings.kafka_replication_factor == 3
    result = CliRunner().invoke(app, ["infra", "up", "--kafka", "apache", "--brokers", "1"])
    assert result.exit_code != 0
    assert "KAFKA_REPLICATION_FACTOR=3 needs as many brokers" in result.output


def test_status_names_the_stopped_nodes_of_a_cluster() -> None:
    urls = InfraUrls("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "postgresql://h:5/db", "redis://h:6/0")
    alive = {"kafka-1": True, "kafka-2": False, "kafka-3": True, "postgres": True, "redis": True}
    with console.capture() as captured:
        print_urls(urls, "/data", alive)
    assert "stopped: kafka-2" in captured.get()
