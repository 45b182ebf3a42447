"""Who may say what: every consumed event a party must sign is checked before it is handled.

The key registry is the `operator.signing-keys` topic (docs/architecture.md §3). Each service
process reads it whole at start-up, from the beginning and without a consumer group, keeps it
in memory and then follows it, so a key registered or revoked while the service runs counts
from the next fetch of the topic (milliseconds after it is written); an event signed by a key
it does not know yet makes it wait until the registry is read up to the topic's end before
refusing the event, so a key registered before the event was sent is always found.

An event is refused (`Untrusted`, dead-lettered with the reason first) when a signature it
needs is missing (`unsigned`, production profile only: development accepts it and counts it),
invalid (`bad_signature`), by a key the registry does not know (`unknown_key`) or has revoked
(`revoked_key`), by a key of another kind of party (`wrong_party`), or by a party other than
the one the event names (`not_the_owner`; also a shop key bound to brands signing for another
brand, or for none of several). Revoking a key refuses new events only: what was
applied stays applied, and replays of applied events stay no-ops (the inbox).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import pydantic_core
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from faststream.security import BaseSecurity

from shared.contract.errors import EventRejected
from shared.contract.events import CloudEvent, EventType, Topic, decode, spec_for_type
from shared.contract.events.keys import SigningKeyRegistered
from shared.contract.signing import (
    Party,
    RejectReason,
    Signer,
    public_key_from_text,
    signature_valid,
)
from shared.runtime.kafka import client_options, ends_client
from shared.runtime.observability import UNSIGNED_ACCEPTED
from shared.runtime.positions import AssignedReader

log = structlog.get_logger(__name__)


class Untrusted(EventRejected):
    """An event its sender was not entitled to send, or could not prove it sent."""

    def __init__(self, code: RejectReason, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code


@dataclass(frozen=True)
class RegisteredKey:
    key_id: str
    party: Party
    owner_id: str
    public_key: Ed25519PublicKey
    revoked: bool = False
    brands: frozenset[str] | None = None  # a shop key's brands; None: any brand


class KeyRegistry:
    """The registered keys, by id, as the registry topic says now."""

    def __init__(self) -> None:
        self._keys: dict[str, RegisteredKey] = {}

    def apply(self, event: CloudEvent[Any]) -> None:
        data = event.data
        if event.type == EventType.SIGNING_KEY_REGISTERED:
            assert isinstance(data, SigningKeyRegistered)
            known = self._keys.get(data.key_id)
            if known is not None and known.revoked:
                return  # a revoked key stays revoked: registering it again is refused
            if known is not None and (known.party, known.owner_id) != (data.party, data.owner_id):
                # A key belongs to the owner it was first registered for: registered again for
                # another, it would sign as them with the first owner's private key.
                log.error(
                    "signing key registered again for another owner ignored",
                    key_id=data.key_id,
                    owner=f"{known.party.value} {known.owner_id}",
                    refused=f"{data.party.value} {data.owner_id}",
                )
                return
            # The same owner registering it again may change a shop's brands.
            self._keys[data.key_id] = RegisteredKey(
                data.key_id,
                data.party,
                data.owner_id,
                public_key_from_text(data.public_key),
                brands=None if data.brands is None else frozenset(data.brands),
            )
        elif event.type == EventType.SIGNING_KEY_REVOKED:
            known = self._keys.get(data.key_id)
            if known is not None:
                self._keys[data.key_id] = replace(known, revoked=True)

    def get(self, key_id: str) -> RegisteredKey | None:
        return self._keys.get(key_id)

    def keys(self) -> list[RegisteredKey]:
        return list(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)


class KeyReader(AssignedReader):
    """Reads the registry topic into a `KeyRegistry`: whole at `start`, then as it is written
    (`follow`, a background loop of the service).

    It asks for the topic's end on a client of its own (`ends_client`): on the reader's
    connection the question would queue behind the pending fetch, which the broker holds for
    up to the fetch wait (500 ms) when the registry has nothing new. Every start-up, and every
    event signed by a key not yet read, would pay that wait.
    """

    def __init__(
        self, bootstrap: str, security: BaseSecurity | None, registry: KeyRegistry
    ) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(bootstrap, security),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        super().__init__(consumer, ends_client(bootstrap, security))
        self._registry = registry
        # One read of the consumer at a time: `follow`'s, or `catch_up`'s while nothing follows.
        self._reading = asyncio.Lock()
        self._following = False

    async def start(self) -> None:
        partitions = await self._start_assigned([Topic.OPERATOR_SIGNING_KEYS])
        self._positions.applied = {tp: -1 for tp in partitions}
        await self.catch_up()

    async def follow(self) -> None:
        """Apply registry records as they are written, until cancelled: a revocation refuses
        the key's events from the next fetch on, without a restart."""
        self._following = True
        try:
            while True:
                async with self._reading:
                    await self._read_once(timeout_ms=500)
        finally:
            self._following = False

    async def catch_up(self, seconds: float = 30.0) -> None:
        """Return once every registry record written before this call is applied: read by
        this call, or waited for while `follow` reads."""
        if not self._positions.applied:
            return
        ends = await self._ends.end_offsets(list(self._positions.applied))
        if self._following:
            await self._positions.wait_for(ends, seconds)
            return
        while not self._positions.reached(ends):
            async with self._reading:
                await self._read_once(timeout_ms=200)

    async def _apply(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        for record in records:
            self._apply_record(record.value or b"")

    def _apply_record(self, raw: bytes) -> None:
        try:
            self._registry.apply(decode(Topic.OPERATOR_SIGNING_KEYS, raw))
        except Exception as error:  # a bad registry record must not stop the service
            log.error("unreadable signing-key record skipped", error=str(error)[:200])


def _check_shop_brand(event: CloudEvent[Any], key: RegisteredKey) -> None:
    """A shop key bound to brands signs only for them: the brand an event names must be one,
    and an event of a shop selling for several must name it (one brand: it is implied)."""
    assert key.brands is not None
    if "brand_id" not in type(event.data).model_fields:
        return
    named = event.data.brand_id
    brands = ", ".join(sorted(key.brands))
    if named is not None and named not in key.brands:
        raise Untrusted(
            RejectReason.NOT_THE_OWNER,
            f"brand_id {named} signed with the key of shop {key.owner_id}, which sells for "
            f"{brands}",
        )
    if named is None and len(key.brands) > 1:
        raise Untrusted(
            RejectReason.NOT_THE_OWNER,
            f"shop {key.owner_id} sells for several brands ({brands}): {event.type} must name "
            "its brand_id",
        )


class Trust:
    """Checks that the sender of each event was entitled to send it."""

    def __init__(
        self,
        registry: KeyRegistry,
        reader: KeyReader | None,
        *,
        require_signatures: bool,
    ) -> None:
        self.registry = registry
        self._reader = reader
        # Our services' own events too: in production each service signs what it publishes
        # (it does not start without CREATORFLOW_SIGNING_KEY), so an unsigned attribution or
        # payout status is someone else's.
        self.require_signatures = require_signatures

    async def check(self, event: CloudEvent[Any], raw: bytes) -> Signer | None:
        """The verified signer of `event`, None for an event nobody need sign (or unsigned,
        where that is allowed); raises Untrusted otherwise."""
        spec = spec_for_type(event.type)
        party = spec.signed_by
        if party is None:
            return None
        if (event.signature is None) != (event.sigkeyid is None):
            # Half a signature is not an unsigned event: refused even where unsigned ones pass.
            present, missing = (
                ("signature", "sigkeyid") if event.sigkeyid is None else ("sigkeyid", "signature")
            )
            raise Untrusted(
                RejectReason.BAD_SIGNATURE,
                f"{event.type} carries a {present} but no {missing}: sign it with both",
            )
        if event.signature is None or event.sigkeyid is None:
            if self.require_signatures:
                raise Untrusted(
                    RejectReason.UNSIGNED, f"{event.type} must be signed by its {party.value}"
                )
            UNSIGNED_ACCEPTED.labels(event.type).inc()
            return None
        key = self.registry.get(event.sigkeyid)
        if key is None and self._reader is not None:
            await self._catch_up()
            key = self.registry.get(event.sigkeyid)
        if key is None:
            raise Untrusted(RejectReason.UNKNOWN_KEY, f"no registered key {event.sigkeyid}")
        if key.revoked:
            raise Untrusted(RejectReason.REVOKED_KEY, f"key {key.key_id} was revoked")
        if not signature_valid(pydantic_core.from_json(raw), key.public_key):
            raise Untrusted(
                RejectReason.BAD_SIGNATURE,
                f"the signature does not match the event for key {key.key_id}",
            )
        if key.party is not party and key.party is not spec.also_signed_by:
            raise Untrusted(
                RejectReason.WRONG_PARTY,
                f"{event.type} is sent by the {party.value} party; key {key.key_id} belongs "
                f"to the {key.party.value} party",
            )
        if spec.owner_field is not None and key.party is party:
            named = getattr(event.data, spec.owner_field)
            if named is not None and named != key.owner_id:
                raise Untrusted(
                    RejectReason.NOT_THE_OWNER,
                    f"{spec.owner_field} {named} signed with {key.owner_id}'s key",
                )
        if key.party is Party.SHOP and key.brands is not None:
            _check_shop_brand(event, key)
        return Signer(key.party, key.owner_id, key.key_id, key.brands)

    async def signer_of(self, event: CloudEvent[Any], raw: bytes) -> Signer | None:
        """`check`, for the consumer: the verified signer, None if unsigned."""
        return await self.check(event, raw)

    async def _catch_up(self) -> None:
        # Retried until the broker answers, like every transient failure: an event must not
        # be refused as signed by an unknown key because the registry could not be read.
        assert self._reader is not None
        failures = 0
        while True:
            try:
                await self._reader.catch_up()
                return
            except Exception as error:
                failures += 1
                log.warning("signing keys unreadable, retrying", error=repr(error)[:200])
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
