"""docker-compose.yml, checked without a Docker engine: what can be verified statically."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.main import get_command

from services.matching.settings import MatchingSettings
from services.payouts.settings import PayoutsSettings
from shared.runtime.config import Settings
from shared.tools.cli.main import app
from shared.tools.infra.service_processes import SERVICES
from tests.support.yaml_files import load_yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")
SERVICES_IN_COMPOSE: dict[str, Any] = COMPOSE["services"]
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
INFRA = (*KAFKA_NODES, "postgres", "redis")
APP_SERVICES = [name for name, svc in SERVICES_IN_COMPOSE.items() if "build" in svc]


def _settings_env_names() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, str), "every setting names its environment variable"
        names.add(alias)
    for settings in (MatchingSettings, PayoutsSettings):
        prefix = settings.model_config.get("env_prefix", "")
        names |= {f"{prefix}{name}".upper() for name in settings.model_fields}
    return names


@pytest.mark.parametrize("name", list(SERVICES_IN_COMPOSE))
def test_images_are_pinned(name: str) -> None:
    image = SERVICES_IN_COMPOSE[name]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository and tag, f"{name}: image {image!r} has no tag"
    assert tag != "latest", f"{name}: pin a version, not latest"
    if name in INFRA:
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", tag), f"{name}: pin an exact version"


@pytest.mark.parametrize("name", INFRA)
def test_infrastructure_has_healthchecks_and_volumes(name: str) -> None:
    service = SERVICES_IN_COMPOSE[name]
    assert service["healthcheck"]["test"]
    if name == "redis":
        # Nothing in it needs keeping (docs/architecture.md §2): no volume, no persistence.
        assert "--appendonly" in service["command"] and "--save" in service["command"]
        return
    volumes = [v.split(":")[0] for v in service.get("volumes", [])]
    assert volumes and all(v in COMPOSE["volumes"] for v in volumes)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_commands_exist(name: str) -> None:
    command = SERVICES_IN_COMPOSE[name]["command"]
    argv = command if isinstance(command, list) else shlex.split(command)
    if argv[0] == "creatorflow":
        group: Any = get_command(app)
        words = iter(argv[1:])
        for word in words:
            if word.startswith("-") or not hasattr(group, "commands"):
                break
            assert word in group.commands, f"{name}: `{' '.join(argv)}` is not a command"
            group = group.commands[word]
        if group.name == "serve":
            assert argv[-1] in SERVICES, f"{name}: no service {argv[-1]!r}"
    else:
        assert argv[:2] == ["python", "-m"], f"{name}: run a console script or a module"
        module = argv[2]
        assert (ROOT / module.replace(".", "/") / "__main__.py").exists(), module


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_matches_settings(name: str) -> None:
    env = SERVICES_IN_COMPOSE[name]["environment"]
    unknown = set(env) - _settings_env_names()
    assert not unknown, f"{name}: variables no setting reads: {unknown}"
    assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"} <= set(env)
    # Payouts alone uses Redis (its rails' rate limits and webhook event ids, docs/architecture.md
    # §2, §6): no other service is given one to wait for.
    assert ("REDIS_URL" in env) == (name == "payouts")


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_runs_with_a_readiness_healthcheck(name: str) -> None:
    service = SERVICES_IN_COMPOSE[name]
    assert service["command"] == ["creatorflow", "serve", name]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert service["environment"]["HTTP_PORT"] in " ".join(service["healthcheck"]["test"])
    assert service["environment"]["HTTP_HOST"] == "0.0.0.0"  # noqa: S104 - inside the container
    depends = service["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["topics-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_healthy_dependencies(name: str) -> None:
    depends = SERVICES_IN_COMPOSE[name]["depends_on"]
    assert all(
        d["condition"] in ("service_healthy", "service_completed_successfully")
        for d in depends.values()
    )


def test_secrets_are_required_not_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text
    assert "${REDIS_PASSWORD:?" in " ".join(SERVICES_IN_COMPOSE["redis"]["command"])
    payouts = SERVICES_IN_COMPOSE["payouts"]["environment"]
    assert payouts["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert payouts["PAYOUTS_DESTINATION_KEY"].startswith("${PAYOUTS_DESTINATION_KEY:?")
    assert not re.search(r"POSTGRES_PASSWORD:\s*\w", text.replace("${POSTGRES_PASSWORD", ""))


def test_redis_needs_a_password_and_payouts_waits_for_it() -> None:
    redis = SERVICES_IN_COMPOSE["redis"]
    assert "${REDIS_PASSWORD:?" in " ".join(redis["command"])
    assert redis["healthcheck"]["test"]
    payouts = SERVICES_IN_COMPOSE["payouts"]
    assert payouts["environment"]["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert payouts["depends_on"]["redis"]["condition"] == "service_healthy"
    with pytest.raises(AssertionError, match="REDIS_PASSWORD is required"):
        _service_env("payouts", {"POSTGRES_PASSWORD": "x", "PAYOUTS_DESTINATION_KEY": "k"}, COMPOSE)


def test_dockerfile_installs_the_locked_project() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    # The dependency pins and hashes themselves: tests/unit/test_supply_chain.py.
    assert "-r deploy/requirements.lock" in dockerfile
    assert re.search(r"^USER (?!root)", dockerfile, re.M)


KAFKA_SECURITY_OVERRIDE: dict[str, Any] = load_yaml(ROOT / "deploy" / "compose.kafka-security.yml")
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` / `${NAME:?message}` substitution, for a static check."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if shell.get(name):
            return shell[name]
        assert kind != "?", f"{name} is required: {rest}"
        return rest if kind == "-" else ""

    return _VARIABLE.sub(one, value)


def _service_env(name: str, shell: dict[str, str], *files: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for compose in files:
        env.update(compose["services"].get(name, {}).get("environment", {}))
    return {k: _interpolate(str(v), shell) for k, v in env.items()}


def test_the_default_stack_still_speaks_plaintext_to_its_kafka() -> None:
    from shared.runtime.kafka import kafka_security

    shell = {
        "POSTGRES_PASSWORD": "x-9",
        "REDIS_PASSWORD": "r-9",
        "PAYOUTS_DESTINATION_KEY": "unused here",
    }
    env = _service_env("payouts", shell, COMPOSE)
    settings = Settings.model_validate({k: v for k, v in env.items() if v})
    assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    assert kafka_security(settings) is None
    assert settings.kafka_replication_factor == len(KAFKA_NODES)
    assert settings.kafka_idempotent_producer


def test_kafka_security_override_reaches_every_service_that_uses_kafka() -> None:
    services = KAFKA_SECURITY_OVERRIDE["services"]
    uses_kafka = {n for n in APP_SERVICES if n != "migrate"}
    assert set(services) == uses_kafka
    for name, service in services.items():
        env = service["environment"]
        assert not set(env) - _settings_env_names(), name
        mounted = {_interpolate(v, {}).split(":")[1] for v in service["volumes"]}
        assert env["KAFKA_SSL_CAFILE"] in mounted, f"{name}: the CA file is not mounted"


def test_kafka_security_override_gives_valid_production_settings(tmp_path: Path) -> None:
    import certifi

    from shared.runtime.kafka import client_options, kafka_security

    shell = {
        "POSTGRES_PASSWORD": "pg-secret-1",
        "REDIS_PASSWORD": "redis-secret-1",
        "PAYOUTS_DESTINATION_KEY": "unused here",
        "KAFKA_BOOTSTRAP_SERVERS": "b-1.example.net:9096",
        "KAFKA_SASL_USERNAME": "creatorflow",
        "KAFKA_SASL_PASSWORD": "sasl-secret-1",
    }
    env = _service_env("payouts", shell, COMPOSE, KAFKA_SECURITY_OVERRIDE)
    env["KAFKA_SSL_CAFILE"] = certifi.where()  # the mounted file, outside the container
    settings = Settings.model_validate({k: v for k, v in env.items() if v})
    assert settings.profile == "production"
    options = client_options("b-1.example.net:9096", kafka_security(settings))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "PLAIN"
    assert options["sasl_plain_password"] == "sasl-secret-1"
    with pytest.raises(AssertionError, match="KAFKA_BOOTSTRAP_SERVERS is required"):
        _service_env("payouts", {**shell, "KAFKA_BOOTSTRAP_SERVERS": ""}, KAFKA_SECURITY_OVERRIDE)


def test_the_payouts_service_starts_in_production_with_the_keys_compose_requires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.payouts.destinations import new_key

    shell = {
        "POSTGRES_PASSWORD": "pg-secret-1",
        "REDIS_PASSWORD": "redis-secret-1",
        "PAYOUTS_DESTINATION_KEY": new_key(),
        "PAYOUTS_STRIPE_API_KEY": "sk_live_x",
    }
    env = _service_env("payouts", shell, COMPOSE)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CREATORFLOW_SIGNING_KEY", "unused here")
    runtime = Settings()  # production accepts the Redis compose gives payouts: it has a password
    assert runtime.redis_url is not None
    assert runtime.redis_url.get_secret_value() == "redis://:redis-secret-1@redis:6379/0"
    settings = PayoutsSettings()
    assert settings.expected_replicas == 2
    assert settings.profile == "production"
    assert settings.provider == "stripe"  # production refuses the sandbox
    assert settings.destination_key.get_secret_value() == shell["PAYOUTS_DESTINATION_KEY"]
    assert settings.destination_key_previous is None  # passed through empty: no rotation
    rotating = _service_env(
        "payouts", {**shell, "PAYOUTS_DESTINATION_KEY_PREVIOUS": new_key()}, COMPOSE
    )
    monkeypatch.setenv(
        "PAYOUTS_DESTINATION_KEY_PREVIOUS", rotating["PAYOUTS_DESTINATION_KEY_PREVIOUS"]
    )
    previous = PayoutsSettings().destination_key_previous
    assert previous is not None
    assert previous.get_secret_value() == rotating["PAYOUTS_DESTINATION_KEY_PREVIOUS"]
    with pytest.raises(AssertionError, match="PAYOUTS_DESTINATION_KEY is required"):
        _service_env(
            "payouts", {"POSTGRES_PASSWORD": "pg-secret-1", "REDIS_PASSWORD": "r"}, COMPOSE
        )
    with pytest.raises(AssertionError, match="REDIS_PASSWORD is required"):
        _service_env("payouts", {k: v for k, v in shell.items() if k != "REDIS_PASSWORD"}, COMPOSE)


def _kafka_variable(key: str) -> str:
    """The apache/kafka image's variable for a server.properties key."""
    return "KAFKA_" + key.replace("_", "__").replace(".", "_").upper()


@pytest.mark.parametrize("name", KAFKA_NODES)
def test_compose_kafka_has_the_broker_settings_the_tests_use(name: str) -> None:
    """deploy/kafka/broker.properties is the one source: the local clusters of
    `make test-kafka` read it, and each compose node must set every key to the same value."""
    from shared.tools.infra.apache_kafka import cluster_settings

    env = {k: str(v) for k, v in SERVICES_IN_COMPOSE[name]["environment"].items()}
    expected = {_kafka_variable(k): v for k, v in cluster_settings(len(KAFKA_NODES)).items()}
    differ = {k: (env.get(k), v) for k, v in expected.items() if env.get(k) != v}
    assert not differ, f"{name}: (compose, broker.properties) {differ}"


def test_compose_kafka_is_a_three_node_kraft_quorum() -> None:
    nodes = [SERVICES_IN_COMPOSE[name]["environment"] for name in KAFKA_NODES]
    assert [n["KAFKA_NODE_ID"] for n in nodes] == [1, 2, 3]
    voters = {n["KAFKA_CONTROLLER_QUORUM_VOTERS"] for n in nodes}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert all(n["KAFKA_PROCESS_ROLES"] == "broker,controller" for n in nodes)
    assert len({n["CLUSTER_ID"] for n in nodes}) == 1
    assert [n["KAFKA_ADVERTISED_LISTENERS"] for n in nodes] == [
        f"PLAINTEXT://{name}:9092" for name in KAFKA_NODES
    ]
    images = {SERVICES_IN_COMPOSE[name]["image"] for name in KAFKA_NODES}
    assert images == {f"apache/kafka:{_harness_kafka_version()}"}, "the version the tests run"


def _harness_kafka_version() -> str:
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert match is not None
    return match.group(1)


def test_the_services_signing_key_is_passed_through_and_optional(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tracking signs its automatic confirmations with it, which payouts checks in
    production; without one set, compose passes it empty and the services sign nothing."""
    from shared.contract.signing import private_key_text

    key = private_key_text(Ed25519PrivateKey.generate())
    shell = {"POSTGRES_PASSWORD": "pg-secret-1", "PAYOUTS_DESTINATION_KEY": "unused here"}
    for given, expected in ((key, key), (None, None)):
        extra = {} if given is None else {"CREATORFLOW_SIGNING_KEY": given}
        env = _service_env("tracking", {**shell, **extra}, COMPOSE)
        monkeypatch.setenv("CREATORFLOW_SIGNING_KEY", env["CREATORFLOW_SIGNING_KEY"])
        signing_key = Settings().signing_key
        assert (None if signing_key is None else signing_key.get_secret_value()) == expected


def test_no_mapping_names_a_key_twice(tmp_path: Path) -> None:
    # Compose refuses such a file; the files above are read with the same strictness.
    twice = tmp_path / "twice.yml"
    twice.write_text("environment:\n  REDIS_URL: a\n  OTHER: b\n  REDIS_URL: a\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="REDIS_URL"):
        load_yaml(twice)
