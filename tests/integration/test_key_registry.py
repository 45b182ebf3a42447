"""The signing-key registry of a running service, on the real broker (shared/runtime/trust.py):
a key revoked while the service runs refuses the events it signs from then on, without a
restart, and a key registered while it runs is found."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.contract.events import SigningKeyRevoked, encode
from shared.contract.events import make_event as make
from shared.contract.money import Money
from shared.contract.signing import Party, RejectReason, key_id
from shared.runtime.trust import KeyReader, KeyRegistry, Trust, Untrusted
from shared.tools.infra import InfraUrls
from shared.tools.signing import PartyKeys
from tests.support.kafka_io import produce_events
from tests.support.waiting import eventually
from tests.unit.payouts.builders import funded

pytestmark = [pytest.mark.integration]

ONE = Money.of("1.00", "USD")


async def test_a_key_revoked_while_the_service_runs_is_refused_from_then_on(
    infra: InfraUrls, topics: None
) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    brand = f"br-{uuid.uuid4().hex[:8]}"
    keys = PartyKeys()
    lost = keys.key(Party.BRAND, brand)
    await produce_events(bootstrap, keys.registrations())
    registry = KeyRegistry()
    reader = KeyReader(bootstrap, None, registry)
    trust = Trust(registry, reader, require_signatures=True)
    await reader.start()
    following = asyncio.create_task(reader.follow())
    try:
        before = keys.sign(funded(brand, ONE))
        signer = await trust.check(before, encode(before))
        assert signer is not None and signer.owner_id == brand
        revoked = SigningKeyRevoked(key_id=key_id(lost.public_key()), reason="laptop stolen")
        await produce_events(bootstrap, [make(revoked, source="tests/operator")])
        # Nothing asks for the registry: the reader follows it on its own.
        await eventually(
            lambda: getattr(registry.get(revoked.key_id), "revoked", False),
            seconds=20,
            what="the revocation applied",
        )
        after = keys.sign(funded(brand, ONE))
        with pytest.raises(Untrusted) as refused:
            await trust.check(after, encode(after))
        assert refused.value.code is RejectReason.REVOKED_KEY
        # A key registered now is found at once: the check waits for the follower.
        newcomer = PartyKeys()
        newcomer.key(Party.BRAND, brand)
        await produce_events(bootstrap, newcomer.registrations())
        signed = newcomer.sign(funded(brand, ONE))
        signer = await trust.check(signed, encode(signed))
        assert signer is not None and signer.owner_id == brand
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await reader.stop()
