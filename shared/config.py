"""Process settings, read once from the environment by the bootstrap of each process.

Everything else receives what it needs as arguments; nothing outside a lifespan or a CLI
entry point reads the environment.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_PASSWORD = "creatorflow"  # noqa: S105 - the development default, refused in production


class Profile(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """One object per process. Unset server URLs mean "use the embedded infrastructure"."""

    # Validation errors would otherwise quote every input, passwords included.
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    profile: Profile = Field(Profile.DEVELOPMENT, validation_alias="CREATORFLOW_PROFILE")
    service_name: str = Field("creatorflow", validation_alias="CREATORFLOW_SERVICE")
    data_dir: Path = Field(Path(".creatorflow"), validation_alias="CREATORFLOW_DATA_DIR")

    kafka_bootstrap_servers: str | None = Field(None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    redis_url: SecretStr | None = Field(None, validation_alias="REDIS_URL")

    kafka_partitions: int = Field(3, ge=1, le=1000, validation_alias="KAFKA_PARTITIONS")
    kafka_replication_factor: int = Field(1, ge=1, validation_alias="KAFKA_REPLICATION_FACTOR")
    # Real Kafka supports the idempotent producer; the embedded broker does not (DESIGN.md §4).
    kafka_idempotent_producer: bool = Field(False, validation_alias="KAFKA_IDEMPOTENT_PRODUCER")

    # /healthz, /readyz and /metrics; unset: no HTTP server (e.g. several services in one shell).
    http_port: int | None = Field(None, ge=0, le=65535, validation_alias="HTTP_PORT")
    http_host: str = Field("127.0.0.1", validation_alias="HTTP_HOST")

    db_pool_min: int = Field(1, ge=0, validation_alias="DB_POOL_MIN")
    db_pool_max: int = Field(10, ge=1, validation_alias="DB_POOL_MAX")

    # Poison-message and retry policy (shared.kafka).
    max_message_bytes: int = Field(1_048_576, ge=1024, validation_alias="MAX_MESSAGE_BYTES")
    retry_initial_seconds: float = Field(0.1, gt=0, validation_alias="RETRY_INITIAL_SECONDS")
    retry_max_seconds: float = Field(10.0, gt=0, validation_alias="RETRY_MAX_SECONDS")
    # Unexpected (non-transient, non-validation) errors are retried this many times before the
    # message goes to the DLQ; transient errors (database unreachable) are retried forever.
    handler_max_attempts: int = Field(5, ge=1, validation_alias="HANDLER_MAX_ATTEMPTS")

    @model_validator(mode="after")
    def _refuse_default_credentials_in_production(self) -> Settings:
        if self.profile is not Profile.PRODUCTION:
            return self
        missing = [
            name
            for name, value in (
                ("KAFKA_BOOTSTRAP_SERVERS", self.kafka_bootstrap_servers),
                ("DATABASE_URL", self.database_url),
                ("REDIS_URL", self.redis_url),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                f"CREATORFLOW_PROFILE=production needs external servers: set {', '.join(missing)}"
            )
        assert self.database_url is not None
        password = urlsplit(self.database_url.get_secret_value()).password
        if not password or password == DEFAULT_DATABASE_PASSWORD:
            raise ValueError(
                "CREATORFLOW_PROFILE=production refuses DATABASE_URL with an empty or default "
                "password: set a real one"
            )
        return self

    @property
    def uses_embedded(self) -> bool:
        """True when at least one server URL is unset and the embedded one must be started."""
        return not (self.kafka_bootstrap_servers and self.database_url and self.redis_url)
