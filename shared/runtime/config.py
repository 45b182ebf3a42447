"""Process settings, read once from the environment by the bootstrap of each process.

Everything else receives what it needs as arguments; nothing outside a lifespan or a CLI
entry point reads the environment.
"""

from __future__ import annotations

import re
import socket
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# What Kafka accepts as a group.instance.id (the rules of topic names).
_GROUP_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")

DEFAULT_DATABASE_PASSWORD = "creatorflow"  # noqa: S105 - the development default, refused in production


class Profile(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class KafkaSecurityProtocol(StrEnum):
    """Kafka's `security.protocol`: TLS and SASL each on or off."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_sasl(self) -> bool:
        return self.name.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.name.endswith("SSL")


class KafkaKind(StrEnum):
    """Which broker the embedded infrastructure starts when KAFKA_BOOTSTRAP_SERVERS is unset."""

    EMBEDDED = "embedded"  # Tansu from a wheel: Python only, memory storage
    APACHE = "apache"  # Apache Kafka (KRaft) jars run by Java, fetched once with Maven


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class Settings(BaseSettings):
    """One object per process. Unset server URLs mean "use the embedded infrastructure"."""

    # An empty variable counts as unset, so compose files can pass `${VAR:-}` through.
    # Validation errors would otherwise quote every input, passwords included.
    model_config = SettingsConfigDict(
        env_file=None,
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
        hide_input_in_errors=True,
    )

    profile: Profile = Field(Profile.DEVELOPMENT, validation_alias="CREATORFLOW_PROFILE")
    service_name: str = Field("creatorflow", validation_alias="CREATORFLOW_SERVICE")
    data_dir: Path = Field(Path(".creatorflow"), validation_alias="CREATORFLOW_DATA_DIR")

    kafka_bootstrap_servers: str | None = Field(None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    # Started when KAFKA_BOOTSTRAP_SERVERS is unset (shared.tools.infra): the broker and how many.
    kafka: KafkaKind = Field(KafkaKind.EMBEDDED, validation_alias="CREATORFLOW_KAFKA")
    kafka_brokers: int = Field(1, validation_alias="CREATORFLOW_KAFKA_BROKERS")
    # Where downloads shared by every data directory go (the Apache Kafka jars).
    cache_dir: Path | None = Field(None, validation_alias="CREATORFLOW_CACHE_DIR")
    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    # A service's own database, instead of its schema in DATABASE_URL's (docs/architecture.md
    # §7): each service owns a schema named after it, wherever that schema lives.
    matching_database_url: SecretStr | None = Field(None, validation_alias="MATCHING_DATABASE_URL")
    tracking_database_url: SecretStr | None = Field(None, validation_alias="TRACKING_DATABASE_URL")
    payouts_database_url: SecretStr | None = Field(None, validation_alias="PAYOUTS_DATABASE_URL")
    redis_url: SecretStr | None = Field(None, validation_alias="REDIS_URL")
    # The service's own Ed25519 key (`creatorflow keys new --party service`): when set, what
    # the service publishes is signed, so brands can check it came from CreatorFlow.
    signing_key: SecretStr | None = Field(None, validation_alias="CREATORFLOW_SIGNING_KEY")

    kafka_partitions: int = Field(3, ge=1, le=1000, validation_alias="KAFKA_PARTITIONS")
    kafka_replication_factor: int = Field(1, ge=1, validation_alias="KAFKA_REPLICATION_FACTOR")
    # Apache Kafka supports the idempotent producer; the embedded Tansu broker does not (README).
    kafka_idempotent_producer: bool = Field(False, validation_alias="KAFKA_IDEMPOTENT_PRODUCER")
    # Static group membership: an instance restarted under the same id takes its partitions
    # back at once instead of waiting out its old member's session. Unique per instance of a
    # service; `{hostname}` stands for the host's name (a container's, in compose).
    kafka_group_instance_id: str | None = Field(None, validation_alias="KAFKA_GROUP_INSTANCE_ID")

    # How every Kafka client of the project connects (shared.runtime.kafka.kafka_security); the
    # embedded broker speaks PLAINTEXT only.
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        KafkaSecurityProtocol.PLAINTEXT, validation_alias="KAFKA_SECURITY_PROTOCOL"
    )
    # Unset with a SASL protocol: PLAIN.
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, validation_alias="KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD")
    # PEM files. Without a CA file the system's trusted CAs verify the broker.
    kafka_ssl_cafile: FilePath | None = Field(None, validation_alias="KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: FilePath | None = Field(None, validation_alias="KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: FilePath | None = Field(None, validation_alias="KAFKA_SSL_KEYFILE")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, validation_alias="KAFKA_SSL_KEY_PASSWORD"
    )

    # /healthz, /readyz and /metrics; unset: no HTTP server (e.g. several services in one shell).
    http_port: int | None = Field(None, ge=0, le=65535, validation_alias="HTTP_PORT")
    http_host: str = Field("127.0.0.1", validation_alias="HTTP_HOST")
    # When set, /readyz and /metrics require `Authorization: Bearer <token>`
    # (shared.runtime.health).
    http_token: SecretStr | None = Field(None, validation_alias="HTTP_TOKEN")

    db_pool_min: int = Field(1, ge=0, validation_alias="DB_POOL_MIN")
    db_pool_max: int = Field(10, ge=1, validation_alias="DB_POOL_MAX")

    # Poison-message and retry policy (shared.runtime.kafka).
    max_message_bytes: int = Field(1_048_576, ge=1024, validation_alias="MAX_MESSAGE_BYTES")
    retry_initial_seconds: float = Field(0.1, gt=0, validation_alias="RETRY_INITIAL_SECONDS")
    retry_max_seconds: float = Field(10.0, gt=0, validation_alias="RETRY_MAX_SECONDS")
    # Unexpected (non-transient, non-validation) errors are retried this many times before the
    # message goes to the DLQ; transient errors (database unreachable) are retried forever.
    handler_max_attempts: int = Field(5, ge=1, validation_alias="HANDLER_MAX_ATTEMPTS")
    # How far ahead of this process's clock a producer's clock may be. Where the newest version
    # wins (FX snapshots, payout accounts), an event dated later than that is dead-lettered.
    max_clock_skew_seconds: float = Field(
        300.0, ge=0, le=86_400, validation_alias="MAX_CLOCK_SKEW_SECONDS"
    )
    # An FX rate that moved more than this fraction against the last trusted snapshot marks the
    # new snapshot suspect: payouts that would convert with it are held (shared.runtime.fx_store).
    fx_max_rate_move: float = Field(0.25, gt=0, le=100, validation_alias="FX_MAX_RATE_MOVE")

    @field_validator("signing_key", mode="before")
    @classmethod
    def _no_signing_key(cls, value: object) -> object:
        # Compose passes CREATORFLOW_SIGNING_KEY through empty when none is set.
        return None if value == "" else value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_brokers")
    @classmethod
    def _one_or_three(cls, value: int) -> int:
        # One for development; three to replicate with a majority left when one is down.
        if value not in (1, 3):
            raise ValueError(f"CREATORFLOW_KAFKA_BROKERS must be 1 or 3, not {value}")
        return value

    @field_validator("kafka", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("kafka_group_instance_id")
    @classmethod
    def _kafka_id(cls, value: str | None) -> str | None:
        if value is not None and not _GROUP_INSTANCE_ID.fullmatch(value.replace("{hostname}", "h")):
            raise ValueError(
                "KAFKA_GROUP_INSTANCE_ID takes letters, digits, '.', '_', '-' and {hostname}, "
                f"at most 249 characters: {value!r}"
            )
        return value

    @property
    def group_instance_id(self) -> str | None:
        """KAFKA_GROUP_INSTANCE_ID with `{hostname}` filled in, as the consumers use it."""
        if self.kafka_group_instance_id is None:
            return None
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())
        return self.kafka_group_instance_id.replace("{hostname}", host)[:249]

    @model_validator(mode="after")
    def _kafka_security_is_consistent(self) -> Settings:
        """Refuse combinations a client would silently ignore or a broker would reject late."""
        protocol = self.kafka_security_protocol
        setting = f"KAFKA_SECURITY_PROTOCOL={protocol.value}"
        if protocol is not KafkaSecurityProtocol.PLAINTEXT and not self.kafka_bootstrap_servers:
            raise ValueError(
                f"{setting} needs KAFKA_BOOTSTRAP_SERVERS: the embedded broker speaks "
                "PLAINTEXT only"
            )
        sasl = _names_set(
            KAFKA_SASL_MECHANISM=self.kafka_sasl_mechanism,
            KAFKA_SASL_USERNAME=self.kafka_sasl_username,
            KAFKA_SASL_PASSWORD=self.kafka_sasl_password,
        )
        if protocol.uses_sasl:
            missing = _names_unset(
                KAFKA_SASL_USERNAME=self.kafka_sasl_username,
                KAFKA_SASL_PASSWORD=self.kafka_sasl_password,
            )
            if missing:
                raise ValueError(f"{setting} needs {' and '.join(missing)}")
        elif sasl:
            raise _unused(sasl, setting, "SASL", "SASL_SSL (or SASL_PLAINTEXT)")
        tls = _names_set(
            KAFKA_SSL_CAFILE=self.kafka_ssl_cafile,
            KAFKA_SSL_CERTFILE=self.kafka_ssl_certfile,
            KAFKA_SSL_KEYFILE=self.kafka_ssl_keyfile,
            KAFKA_SSL_KEY_PASSWORD=self.kafka_ssl_key_password,
        )
        if tls and not protocol.uses_tls:
            raise _unused(tls, setting, "TLS", "SSL (or SASL_SSL)")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the client certificate)")
        if self.kafka_ssl_key_password and not self.kafka_ssl_certfile:
            raise ValueError("KAFKA_SSL_KEY_PASSWORD needs KAFKA_SSL_CERTFILE")
        return self

    @model_validator(mode="after")
    def _replication_fits_the_started_cluster(self) -> Settings:
        """Topics with more replicas than brokers cannot be created: say so at start."""
        started = self.kafka_brokers if self.kafka is KafkaKind.APACHE else 1
        if not self.kafka_bootstrap_servers and self.kafka_replication_factor > started:
            raise ValueError(
                f"KAFKA_REPLICATION_FACTOR={self.kafka_replication_factor} needs as many "
                f"brokers, but the local infrastructure starts {started}: set "
                "CREATORFLOW_KAFKA=apache and CREATORFLOW_KAFKA_BROKERS=3, or "
                "KAFKA_BOOTSTRAP_SERVERS"
            )
        return self

    @property
    def kafka_sasl_mechanism_or_default(self) -> SaslMechanism:
        return self.kafka_sasl_mechanism or SaslMechanism.PLAIN

    @model_validator(mode="after")
    def _refuse_default_credentials_in_production(self) -> Settings:
        if self.profile is not Profile.PRODUCTION:
            return self
        databases = {
            name: url
            for name, url in (
                ("DATABASE_URL", self.database_url),
                ("MATCHING_DATABASE_URL", self.matching_database_url),
                ("TRACKING_DATABASE_URL", self.tracking_database_url),
                ("PAYOUTS_DATABASE_URL", self.payouts_database_url),
            )
            if url is not None
        }
        missing = [
            name
            for name, value in (
                ("KAFKA_BOOTSTRAP_SERVERS", self.kafka_bootstrap_servers),
                ("DATABASE_URL", databases),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                f"CREATORFLOW_PROFILE=production needs external servers: set {', '.join(missing)}"
            )
        for name, url in databases.items():
            password = urlsplit(url.get_secret_value()).password
            if not password or password == DEFAULT_DATABASE_PASSWORD:
                raise ValueError(
                    f"CREATORFLOW_PROFILE=production refuses {name} with an empty or default "
                    "password: set a real one"
                )
        if self.redis_url is not None and not urlsplit(self.redis_url.get_secret_value()).password:
            raise ValueError(
                "CREATORFLOW_PROFILE=production refuses REDIS_URL without a password (anyone "
                "who reaches Redis could read or flush it): redis://:PASSWORD@host:6379/0"
            )
        if (
            self.kafka_security_protocol is KafkaSecurityProtocol.SASL_PLAINTEXT
            and self.kafka_sasl_mechanism_or_default is SaslMechanism.PLAIN
        ):
            # SASL/PLAIN sends the password as is: without TLS anyone on the path reads it.
            raise ValueError(
                "CREATORFLOW_PROFILE=production refuses KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
                "with KAFKA_SASL_MECHANISM=PLAIN (the password would cross the network in clear "
                "text): use SASL_SSL, or a SCRAM mechanism"
            )
        return self

    @property
    def require_signatures(self) -> bool:
        """Production refuses unsigned money events; development accepts and counts them."""
        return self.profile is Profile.PRODUCTION

    def database_url_of(self, service: str) -> str | None:
        """`service`'s own database URL (`<SERVICE>_DATABASE_URL`), else DATABASE_URL."""
        own = {
            "matching": self.matching_database_url,
            "tracking": self.tracking_database_url,
            "payouts": self.payouts_database_url,
        }.get(service)
        url = own or self.database_url
        return None if url is None else url.get_secret_value()

    @property
    def uses_embedded(self) -> bool:
        """True when at least one server URL is unset and the embedded one must be started."""
        return not (self.kafka_bootstrap_servers and self.database_url and self.redis_url)


def _unused(names: list[str], setting: str, what: str, protocols: str) -> ValueError:
    """Refuses `names`, settings of a `what` that the security protocol `setting` does not
    use: a client would silently ignore them. Says which protocols would use them."""
    return ValueError(
        f"{', '.join(names)} set, but {setting} does not use {what}: "
        f"set KAFKA_SECURITY_PROTOCOL={protocols}, or unset them"
    )


def _names_set(**values: object) -> list[str]:
    return [name for name, value in values.items() if value is not None]


def _names_unset(**values: str | SecretStr | None) -> list[str]:
    """Names whose value is unset or empty."""
    return [
        name
        for name, value in values.items()
        if not (value.get_secret_value() if isinstance(value, SecretStr) else value)
    ]


def settings_problems(error: ValidationError) -> str:
    """What is wrong with the environment, one clause a setting, without pydantic's links;
    each setting named by its environment variable (PAYOUTS_DISPATCH_BATCH, not the field)."""
    names = _variables_of(error.title)
    problems = []
    for e in error.errors():
        loc = [str(part) for part in e["loc"]]
        if loc and loc[0] in names:
            loc[0] = names[loc[0]]
        where = ".".join(loc)
        what = e["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {what}" if where else what)
    return "; ".join(problems)


def _variables_of(title: str) -> dict[str, str]:
    """Field name -> environment variable of the settings class named `title` ({} if none)."""
    classes = list(BaseSettings.__subclasses__())
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        if cls.__name__ != title:
            continue
        prefix = str(cls.model_config.get("env_prefix", ""))
        return {
            name: alias
            if isinstance(alias := field.validation_alias, str)
            else f"{prefix}{name}".upper()
            for name, field in cls.model_fields.items()
        }
    return {}
