"""Production refuses to start a service that would publish unsigned events."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.runtime.config import Profile, Settings
from shared.runtime.db import ServiceSchema
from shared.runtime.server_urls import InfraUrls
from shared.runtime.service import Background, Resources, ServiceConfigurationError, ServiceRuntime

NOWHERE = InfraUrls("127.0.0.1:1", "postgresql://u:p@127.0.0.1:1/db", None)


async def _nothing(resources: Resources) -> Sequence[Background]:
    raise AssertionError("set up although the start should have been refused")


async def test_production_without_a_signing_key_is_refused_before_any_server_is_reached() -> None:
    production = Settings().model_copy(update={"profile": Profile.PRODUCTION, "signing_key": None})
    runtime = ServiceRuntime(
        "tracking", _nothing, schema=ServiceSchema("tracking"), settings=production, urls=NOWHERE
    )
    with pytest.raises(ServiceConfigurationError, match="needs CREATORFLOW_SIGNING_KEY"):
        async with runtime:
            pass
