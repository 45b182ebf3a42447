"""The secured local cluster's certificates and broker settings, checked without Java (the
cluster itself runs in tests/integration/test_kafka_security.py, in `make test-kafka`)."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from shared.tools.infra.apache_kafka import KafkaNode, format_argv, node_properties
from shared.tools.infra.kafka_tls import BROKER_PRINCIPAL, ClusterSecurity, make_cluster_security
from shared.tools.infra.process import InfraError


@pytest.fixture(scope="module")
def security(tmp_path_factory: pytest.TempPathFactory) -> ClusterSecurity:
    directory = tmp_path_factory.mktemp("tls")
    return make_cluster_security(directory, ["admin", "shop"], super_users=["admin"])


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_brokers_certificate_names_the_loopback_hosts_and_chains_to_the_ca(
    security: ClusterSecurity,
) -> None:
    key, certificate, chain = pkcs12.load_key_and_certificates(
        security.keystore_file.read_bytes(), security.keystore_password.encode()
    )
    assert key is not None and certificate is not None
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages and ExtendedKeyUsageOID.CLIENT_AUTH in usages
    ca = _certificate(security.ca_file)
    certificate.verify_directly_issued_by(ca)
    assert [c.subject for c in chain] == [ca.subject]


def test_each_principal_gets_a_client_certificate_named_after_it(
    security: ClusterSecurity,
) -> None:
    ca = _certificate(security.ca_file)
    for principal in ("admin", "shop"):
        client = security.client(principal)
        certificate = _certificate(client.certfile)
        assert certificate.subject.rfc4514_string() == f"CN={principal}"
        certificate.verify_directly_issued_by(ca)
        with pytest.raises(x509.ExtensionNotFound):
            certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        # The key is private from the start, and the pair loads as a client's would.
        assert stat.S_IMODE(client.keyfile.stat().st_mode) == 0o600
        context = ssl.create_default_context(cafile=str(security.ca_file))
        context.load_cert_chain(str(client.certfile), str(client.keyfile))


def test_passwords_are_distinct_and_the_broker_logs_in_with_its_certificate_only(
    security: ClusterSecurity,
) -> None:
    assert set(security.scram_users) == {"admin", "shop"}
    passwords = [c.password for c in security.clients.values()]
    assert len(set(passwords)) == len(passwords)
    assert security.super_users == (BROKER_PRINCIPAL, "admin")


def test_a_secured_node_listens_with_mutual_tls_and_sasl_ssl_and_authorizes(
    security: ClusterSecurity, tmp_path: Path
) -> None:
    node = KafkaNode(1, 9093, 9094, sasl_port=9095)
    properties = node_properties(node, [node], tmp_path, {}, security)
    assert properties["listeners"] == (
        "MTLS://127.0.0.1:9093,SASL_SSL://127.0.0.1:9095,CONTROLLER://127.0.0.1:9094"
    )
    assert properties["advertised.listeners"] == "MTLS://127.0.0.1:9093,SASL_SSL://127.0.0.1:9095"
    assert "PLAINTEXT" not in properties["listener.security.protocol.map"]
    assert properties["inter.broker.listener.name"] == "MTLS"
    assert properties["listener.name.mtls.ssl.client.auth"] == "required"
    assert properties["listener.name.controller.ssl.client.auth"] == "required"
    assert properties["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["super.users"] == f"User:{BROKER_PRINCIPAL};User:admin"
    assert properties["allow.everyone.if.no.acl.found"] == "false"


def test_a_secured_node_needs_its_sasl_port(security: ClusterSecurity, tmp_path: Path) -> None:
    node = KafkaNode(1, 9093, 9094)
    with pytest.raises(InfraError, match="no SASL port"):
        node_properties(node, [node], tmp_path, {}, security)


def test_scram_users_are_created_when_the_storage_is_formatted(
    security: ClusterSecurity,
) -> None:
    argv = format_argv("java", Path("/jars"), "id", Path("/c"), security.scram_users)
    shop = security.client("shop").password
    assert argv[-4:-2] == [
        "--add-scram",
        f"SCRAM-SHA-512=[name=admin,password={security.client('admin').password}]",
    ]
    assert argv[-2:] == ["--add-scram", f"SCRAM-SHA-512=[name=shop,password={shop}]"]
    assert "--add-scram" not in format_argv("java", Path("/jars"), "id", Path("/c"))
