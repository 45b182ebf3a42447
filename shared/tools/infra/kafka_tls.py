"""Certificates and credentials for a local Apache Kafka cluster that requires TLS and SASL.

`make_cluster_security` writes, under one directory, a CA, the brokers' keystore (a
certificate for 127.0.0.1 and localhost), one client certificate and one SCRAM password per
principal; `ApacheKafkaCluster(security=...)` then listens with them (mutual TLS and
SASL_SSL with SCRAM-SHA-512). Made for tests and local trials: short-lived certificates,
random passwords, nothing reused between clusters.

Every certificate's subject is `CN=<principal>` and the brokers map a client certificate to
the principal `User:<CN>`, the same name the principal logs in with over SASL, so one set of
ACLs covers both listeners.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.tools.infra.files import write_private

# The brokers' own principal: it talks to the controller and the other brokers over mutual TLS.
BROKER_PRINCIPAL = "kafka-broker"
_VALID_FOR = timedelta(days=2)


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


@dataclass(frozen=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def new(cls, name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = _builder(subject, subject, key.public_key())
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        return cls(key, builder.sign(key, hashes.SHA256()))

    def issue(self, common_name: str, *, hosts: Iterable[str] = ()) -> Issued:
        """A certificate for `CN=<common_name>`, usable by a TLS client and, with `hosts`
        (IP addresses or DNS names, put in the subject alternative names), a TLS server."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = _builder(subject, self.certificate.subject, key.public_key())
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        names = [_general_name(host) for host in hosts]
        if names:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), False)
        return Issued(key, builder.sign(self.key, hashes.SHA256()))


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # a little clock skew between processes
        .not_valid_after(now + _VALID_FOR)
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def certificate_pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pkcs12_keystore(issued: Issued, ca: CertificateAuthority, password: str) -> bytes:
    """A PKCS#12 keystore of `issued` and its chain, as a JVM reads it (`ssl.keystore.type`)."""
    return pkcs12.serialize_key_and_certificates(
        BROKER_PRINCIPAL.encode(),
        issued.key,
        issued.certificate,
        [ca.certificate],
        serialization.BestAvailableEncryption(password.encode()),
    )


@dataclass(frozen=True)
class ClientFiles:
    """What a client of one principal needs: its PEM certificate and key, its SCRAM password."""

    principal: str
    certfile: Path
    keyfile: Path
    password: str


@dataclass(frozen=True)
class ClusterSecurity:
    """Files and credentials of a secured local cluster (see the module docstring)."""

    directory: Path
    ca_file: Path  # PEM: the brokers' truststore and every client's KAFKA_SSL_CAFILE
    keystore_file: Path  # PKCS#12: the brokers' key and certificate
    keystore_password: str
    clients: Mapping[str, ClientFiles]
    super_users: tuple[str, ...]

    def client(self, principal: str) -> ClientFiles:
        return self.clients[principal]

    @property
    def scram_users(self) -> dict[str, str]:
        """SCRAM-SHA-512 credentials to create when the storage is formatted. The brokers'
        own principal has none: it authenticates with its certificate only."""
        return {
            name: client.password
            for name, client in self.clients.items()
            if name != BROKER_PRINCIPAL
        }


def make_cluster_security(
    directory: Path,
    principals: Iterable[str],
    *,
    super_users: Iterable[str] = (),
    hosts: Iterable[str] = ("127.0.0.1", "localhost"),
) -> ClusterSecurity:
    """Write a new CA, the brokers' keystore for `hosts` and a certificate and password for
    each of `principals` under `directory`. `super_users` (besides the brokers' own principal)
    may do anything once the cluster has an authorizer."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.new("creatorflow-test-ca")
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(certificate_pem(ca.certificate))
    keystore_password = secrets.token_hex(16)
    keystore_file = directory / "broker.p12"
    broker = ca.issue(BROKER_PRINCIPAL, hosts=hosts)
    keystore_file.write_bytes(pkcs12_keystore(broker, ca, keystore_password))
    keystore_file.chmod(0o600)
    clients = {}
    for principal in dict.fromkeys([BROKER_PRINCIPAL, *principals]):
        issued = broker if principal == BROKER_PRINCIPAL else ca.issue(principal)
        certfile, keyfile = directory / f"{principal}.pem", directory / f"{principal}.key"
        certfile.write_bytes(certificate_pem(issued.certificate))
        write_private(keyfile, key_pem(issued.key).decode())
        # Hex only: the storage formatter's --add-scram syntax has no quoting.
        clients[principal] = ClientFiles(principal, certfile, keyfile, secrets.token_hex(16))
    supers = tuple(dict.fromkeys([BROKER_PRINCIPAL, *super_users]))
    return ClusterSecurity(directory, ca_file, keystore_file, keystore_password, clients, supers)
