"""Kafka TLS/SASL: which settings combinations start, and what every client is given.

No broker here speaks TLS or SASL (the embedded one is PLAINTEXT only), so these check the
mapping to the clients' arguments and the wording of failures, not a handshake: that runs in
tests/integration/test_kafka_security.py (`make test-kafka`).
"""

from __future__ import annotations

import ast
import ssl
from pathlib import Path
from typing import Any

import aiokafka.errors
import certifi
import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from shared.runtime.config import KafkaSecurityProtocol, SaslMechanism, Settings
from shared.runtime.kafka import (
    KafkaSecurityError,
    access_failure,
    access_refused,
    authorization_failure,
    client_options,
    kafka_security,
    make_broker,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "kafka-pa55-7f3d"
EXTERNAL = {"KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9093,kafka-2:9093"}
SASL = {"KAFKA_SASL_USERNAME": "creatorflow", "KAFKA_SASL_PASSWORD": SECRET}


def settings(**env: str) -> Settings:
    """Settings from exactly these variables (the test process's environment is ignored)."""
    return Settings.model_validate(env)


def test_default_is_plaintext_without_security() -> None:
    plain = settings()
    assert plain.kafka_security_protocol is KafkaSecurityProtocol.PLAINTEXT
    assert kafka_security(plain) is None
    assert client_options("k:9092", None) == {"bootstrap_servers": "k:9092"}


@pytest.mark.parametrize(
    ("mechanism", "expected_class", "expected_name"),
    [
        (None, SASLPlaintext, "PLAIN"),
        ("PLAIN", SASLPlaintext, "PLAIN"),
        ("scram-sha-256", SASLScram256, "SCRAM-SHA-256"),
        ("SCRAM-SHA-512", SASLScram512, "SCRAM-SHA-512"),
    ],
)
def test_sasl_ssl_maps_to_the_mechanism_over_tls(
    mechanism: str | None, expected_class: type[BaseSecurity], expected_name: str
) -> None:
    env = {**EXTERNAL, **SASL, "KAFKA_SECURITY_PROTOCOL": "sasl_ssl"}
    if mechanism is not None:
        env["KAFKA_SASL_MECHANISM"] = mechanism
    security = kafka_security(settings(**env))
    assert type(security) is expected_class
    options = client_options("kafka-1:9093", security)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == expected_name
    assert options["sasl_plain_username"] == "creatorflow"
    assert options["sasl_plain_password"] == SECRET
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_sasl_plaintext_has_no_tls_context() -> None:
    env = {**EXTERNAL, **SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    options = client_options("k:9092", kafka_security(settings(**env)))
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["ssl_context"] is None
    assert options["sasl_mechanism"] == "PLAIN"


def test_ssl_with_a_ca_file_verifies_the_broker_with_it() -> None:
    env = {**EXTERNAL, "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": certifi.where()}
    security = kafka_security(settings(**env))
    assert type(security) is BaseSecurity
    options = client_options("k:9093", security)
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    assert options["ssl_context"].cert_store_stats()["x509_ca"] > 0


def test_unreadable_tls_file_is_named_in_the_error(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    env = {**EXTERNAL, "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(not_pem)}
    with pytest.raises(KafkaSecurityError, match=f"KAFKA_SSL_CAFILE={not_pem}"):
        kafka_security(settings(**env))


def test_the_broker_gets_the_same_security() -> None:
    env = {**EXTERNAL, **SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    env["KAFKA_SASL_MECHANISM"] = "SCRAM-SHA-256"
    broker = make_broker(settings(**env), EXTERNAL["KAFKA_BOOTSTRAP_SERVERS"])
    producer_and_admin: dict[str, Any] = broker._connection_kwargs
    consumers: dict[str, Any] = broker.config.broker_config.builder.keywords  # type: ignore[attr-defined]
    for params in (producer_and_admin, consumers):
        assert params["security_protocol"] == "SASL_SSL"
        assert params["sasl_mechanism"] == "SCRAM-SHA-256"
        assert params["sasl_plain_password"] == SECRET
        assert isinstance(params["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SSL"}, "needs KAFKA_BOOTSTRAP_SERVERS"),
        (
            {**EXTERNAL, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (
            {**EXTERNAL, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
            "needs KAFKA_SASL_PASSWORD",
        ),
        ({**EXTERNAL, **SASL}, "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD set, but"),
        (
            {**EXTERNAL, "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_MECHANISM": "PLAIN"},
            "does not use SASL",
        ),
        (
            {**EXTERNAL, **SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
            | {"KAFKA_SSL_CAFILE": certifi.where()},
            "does not use TLS",
        ),
        (
            {**EXTERNAL, "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": certifi.where()},
            "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE",
        ),
        (
            {**EXTERNAL, "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/no/such.pem"},
            "KAFKA_SSL_CAFILE",
        ),
        ({**EXTERNAL, "KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        (
            {**EXTERNAL, **SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
            | {"KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM",
        ),
    ],
)
def test_inconsistent_combinations_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as raised:
        settings(**env)
    assert SECRET not in str(raised.value)


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose passes `${KAFKA_SASL_USERNAME:-}` through; empty must not mean "set"."""
    for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    assert kafka_security(Settings()) is None


PRODUCTION = {
    "CREATORFLOW_PROFILE": "production",
    **EXTERNAL,
    "DATABASE_URL": "postgresql://app:s3cret-Pa55@db:5432/app",
    "REDIS_URL": "redis://:c4che-pw@cache:6379/0",
}


def test_production_refuses_a_plain_password_in_clear_text() -> None:
    env = {**PRODUCTION, **SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    with pytest.raises(ValidationError, match="SASL_SSL, or a SCRAM mechanism"):
        settings(**env)
    # SCRAM never sends the password itself; over TLS anything goes.
    assert settings(**env, KAFKA_SASL_MECHANISM="SCRAM-SHA-512").kafka_sasl_mechanism is (
        SaslMechanism.SCRAM_SHA_512
    )
    assert settings(**{**env, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}).profile == "production"


def test_the_sasl_password_stays_out_of_repr() -> None:
    configured = settings(**EXTERNAL, **SASL, KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    assert SECRET not in repr(configured) and SECRET not in str(configured)
    assert SECRET not in repr(kafka_security(configured))


def _kafka_clients(tree: ast.AST) -> list[ast.Call]:
    names = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "KafkaBroker"}
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in names
    ]


def test_every_kafka_client_of_the_project_gets_the_security() -> None:
    """A new producer, consumer, admin client or broker must go through `client_options`
    (raw aiokafka) or `make_broker` (FastStream), or it would ignore KAFKA_SECURITY_PROTOCOL."""
    unsecured = []
    checked = 0
    for path in sorted([*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        for call in _kafka_clients(tree):
            checked += 1
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if where.startswith("shared/tools/asyncapi.py"):
                continue  # documentation only: that broker never connects
            if where.startswith("shared/runtime/kafka.py") and any(
                k.arg == "security" for k in call.keywords
            ):
                continue  # make_broker
            spread = [k.value for k in call.keywords if k.arg is None]
            if not any(
                isinstance(v, ast.Call)
                and isinstance(v.func, ast.Name)
                and v.func.id == "client_options"
                for v in spread
            ):
                unsecured.append(where)
    assert checked >= 10, "the scan found the project's clients"
    assert not unsecured, f"Kafka clients created without client_options: {unsecured}"


def _client_certificate(directory: Path, key_password: bytes | None) -> tuple[Path, Path]:
    """A self-signed client certificate and its key (PEM), the key encrypted if asked."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "creatorflow-client")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if key_password is None
        else serialization.BestAvailableEncryption(key_password)
    )
    certfile, keyfile = directory / "client.pem", directory / "client.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return certfile, keyfile


@pytest.mark.parametrize("key_password", [None, "key-pa55-61"])
def test_mutual_tls_loads_the_client_certificate(tmp_path: Path, key_password: str | None) -> None:
    certfile, keyfile = _client_certificate(
        tmp_path, None if key_password is None else key_password.encode()
    )
    env = {
        **EXTERNAL,
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CERTFILE": str(certfile),
        "KAFKA_SSL_KEYFILE": str(keyfile),
    }
    if key_password is not None:
        env["KAFKA_SSL_KEY_PASSWORD"] = key_password
    options = client_options("k:9093", kafka_security(settings(**env)))
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    if key_password is not None:
        wrong = {**env, "KAFKA_SSL_KEY_PASSWORD": "not-it"}
        with pytest.raises(KafkaSecurityError, match="KAFKA_SSL_KEYFILE") as refused:
            kafka_security(settings(**wrong))
        assert "not-it" not in str(refused.value)


SASL_OPTIONS = client_options(
    "k:9093",
    kafka_security(
        settings(
            **EXTERNAL,
            **SASL,
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        )
    ),
)
TLS_OPTIONS = client_options(
    "k:9093", kafka_security(settings(**EXTERNAL, KAFKA_SECURITY_PROTOCOL="SSL"))
)


def _verify_failed() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate in certificate chain"
    return error


@pytest.mark.parametrize(
    ("error", "options", "says", "refused"),
    [
        (
            aiokafka.errors.SaslAuthenticationFailed("invalid credentials"),
            SASL_OPTIONS,
            "refused the login of 'creatorflow' with SCRAM-SHA-512: check KAFKA_SASL_USERNAME",
            True,
        ),
        (
            aiokafka.errors.UnsupportedSaslMechanismError(),
            SASL_OPTIONS,
            "does not accept SCRAM-SHA-512: set KAFKA_SASL_MECHANISM",
            True,
        ),
        (
            _verify_failed(),
            SASL_OPTIONS,
            "(self-signed certificate in certificate chain): set KAFKA_SSL_CAFILE",
            True,
        ),
        (
            aiokafka.errors.KafkaConnectionError("Connection at k:9093 closed"),
            TLS_OPTIONS,
            "wants a client certificate its CA signed (KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE)",
            True,
        ),
        (
            aiokafka.errors.KafkaConnectionError("Connection at k:9093 closed"),
            SASL_OPTIONS,
            "closed the connection: is its listener SASL_SSL (KAFKA_SECURITY_PROTOCOL)?",
            True,
        ),
        (
            ConnectionRefusedError(111, "Connect call failed"),
            SASL_OPTIONS,
            "cannot connect to Kafka at k:9093 (SASL_SSL): ConnectionRefusedError",
            False,
        ),
        (
            aiokafka.errors.KafkaConnectionError("Connection at k:9092 closed"),
            client_options("k:9092"),
            "Kafka at k:9092 closed the connection: is its listener PLAINTEXT",
            False,
        ),
    ],
)
def test_a_failed_connection_says_why_in_one_line_without_the_password(
    error: BaseException, options: dict[str, Any], says: str, refused: bool
) -> None:
    message = access_failure(error, options["bootstrap_servers"], options)
    assert says in message
    assert "\n" not in message and SECRET not in message
    assert access_refused(error, options) is refused


def test_an_acl_refusal_names_what_was_refused() -> None:
    error = aiokafka.errors.TopicAuthorizationFailedError("payouts.status")
    assert authorization_failure(error) == (
        "Kafka's ACLs refused this client: TopicAuthorizationFailed (payouts.status)"
    )
    assert authorization_failure(aiokafka.errors.GroupAuthorizationFailedError()) == (
        "Kafka's ACLs refused this client: GroupAuthorizationFailed"
    )
