"""Embedded Kafka, PostgreSQL and Redis from pip-installed wheels (docs/architecture.md §4)."""

from shared.infra.process import InfraError
from shared.infra.stack import EmbeddedInfra, InfraUrls, read_state, redact, running_urls

__all__ = ["EmbeddedInfra", "InfraError", "InfraUrls", "read_state", "redact", "running_urls"]
