"""Embedded Kafka, PostgreSQL and Redis from pip-installed wheels (docs/architecture.md §4)."""

from shared.runtime.server_urls import InfraUrls, running_urls
from shared.tools.infra.process import InfraError
from shared.tools.infra.stack import EmbeddedInfra, read_state, redact

__all__ = ["EmbeddedInfra", "InfraError", "InfraUrls", "read_state", "redact", "running_urls"]
