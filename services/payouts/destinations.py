"""Payout destinations encrypted at rest: AES-256-GCM under `PAYOUTS_DESTINATION_KEY`.

A destination is sealed when its account event is handled and opened only by the dispatcher,
for the provider call. The creator id is authenticated with it (associated data), so a sealed
value copied onto another creator's row does not open. Layout of a sealed value:

    version (1 byte, 1) | key id (4 bytes) | nonce (12 bytes) | ciphertext and tag

The key id (the first bytes of the key's SHA-256) tells a wrong key from tampered data, and
which key a row was sealed with: the key can rotate. A cipher seals with its current key and
opens with any key of its ring (`PAYOUTS_DESTINATION_KEY_PREVIOUS` during a rotation), and
`reseal` moves a destination to the current key (`creatorflow payouts rotate-key`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from services.payouts.domain.accounts import SealedDestination

KEY_BYTES: Final = 32
_VERSION: Final = b"\x01"
_KEY_ID_BYTES: Final = 4
_NONCE_BYTES: Final = 12
_HEADER: Final = len(_VERSION) + _KEY_ID_BYTES + _NONCE_BYTES
_CONTEXT: Final = b"creatorflow/payout-destination/v1\x00"

# The development default: fixed so embedded databases survive restarts; refused in production.
DEVELOPMENT_KEY: Final = base64.b64encode(
    hashlib.sha256(b"creatorflow development payout destination key").digest()
).decode()
# What PAYOUTS_DESTINATION_KEY_PREVIOUS may say to rotate away from the development default,
# whose value the operator never had.
DEVELOPMENT_KEY_NAME: Final = "development"


class DestinationKeyError(ValueError):
    """The key setting is not 32 bytes of base64."""


class UnreadableDestination(ValueError):
    """A sealed destination cannot be opened: another key, or altered data. Never quotes it."""


def decode_key(encoded: str) -> bytes:
    """The 32-byte key from its base64 text; raises DestinationKeyError (without echoing it)."""
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise DestinationKeyError("PAYOUTS_DESTINATION_KEY is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise DestinationKeyError(
            f"PAYOUTS_DESTINATION_KEY must encode {KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def new_key() -> str:
    """A fresh random key, base64, for PAYOUTS_DESTINATION_KEY."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def sealed_key_id(sealed: SealedDestination) -> bytes:
    """The id of the key `sealed` was sealed with; raises UnreadableDestination if it is not a
    sealed destination."""
    data = sealed.data
    if len(data) <= _HEADER or data[:1] != _VERSION:
        raise UnreadableDestination("not a sealed payout destination (unknown format)")
    return data[1 : 1 + _KEY_ID_BYTES]


class _Key:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise DestinationKeyError(f"a destination key has {KEY_BYTES} bytes, not {len(key)}")
        self.aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).digest()[:_KEY_ID_BYTES]
        # A separate key for fingerprints, so they reveal nothing about the encryption key.
        self.fingerprint_key = hashlib.sha256(b"creatorflow/fingerprint/v1\x00" + key).digest()


class DestinationCipher:
    """Seals payout destinations with its current key and opens them with any key of its
    ring (the current one, then those being rotated away from); `repr` shows key ids only."""

    def __init__(self, key: bytes, previous: Sequence[bytes] = ()) -> None:
        self._current = _Key(key)
        self._ring = {k.key_id: k for k in (_Key(p) for p in previous)}
        self._ring[self._current.key_id] = self._current
        self.key_id = self._current.key_id

    @classmethod
    def from_setting(
        cls, encoded: SecretStr, previous: SecretStr | None = None
    ) -> DestinationCipher:
        old = [] if previous is None else [decode_key(previous.get_secret_value())]
        return cls(decode_key(encoded.get_secret_value()), old)

    @property
    def key_ids(self) -> frozenset[bytes]:
        """The ids of every key this cipher opens with."""
        return frozenset(self._ring)

    def __repr__(self) -> str:
        return f"DestinationCipher(key_id={self.key_id.hex()}, ring={len(self._ring)})"

    def seal(self, creator_id: str, destination: SecretStr) -> SealedDestination:
        key = self._current
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = key.aead.encrypt(
            nonce, destination.get_secret_value().encode(), _CONTEXT + creator_id.encode()
        )
        fingerprint = hmac.digest(
            key.fingerprint_key,
            creator_id.encode() + b"\x00" + destination.get_secret_value().encode(),
            "sha256",
        )
        return SealedDestination(_VERSION + key.key_id + nonce + ciphertext, fingerprint)

    def open(self, creator_id: str, sealed: SealedDestination) -> SecretStr:
        key = self._key_of(sealed)
        nonce = sealed.data[len(_VERSION) + _KEY_ID_BYTES : _HEADER]
        try:
            plain = key.aead.decrypt(nonce, sealed.data[_HEADER:], _CONTEXT + creator_id.encode())
        except InvalidTag:
            raise UnreadableDestination(
                f"the payout destination of creator {creator_id} fails authentication: "
                "altered, or stored for another creator"
            ) from None
        return SecretStr(plain.decode())

    def is_current(self, sealed: SealedDestination) -> bool:
        """True when `sealed` was sealed with the current key."""
        return sealed_key_id(sealed) == self.key_id

    def reseal(self, creator_id: str, sealed: SealedDestination) -> SealedDestination:
        """`sealed` under the current key (with its fingerprint), as it is if already so."""
        if self.is_current(sealed):
            return sealed
        return self.seal(creator_id, self.open(creator_id, sealed))

    def check_key(self, sealed: SealedDestination) -> None:
        """Raise UnreadableDestination unless a key of this cipher sealed `sealed`."""
        self._key_of(sealed)

    def check_key_ids(self, stored: Sequence[bytes]) -> None:
        """Raise UnreadableDestination unless this cipher opens every key id in `stored`."""
        development = _Key(decode_key(DEVELOPMENT_KEY)).key_id
        for key_id in stored:
            if key_id not in self._ring:
                if key_id == development:
                    which = (
                        f"the development key: set PAYOUTS_DESTINATION_KEY_PREVIOUS="
                        f"{DEVELOPMENT_KEY_NAME} to rotate away from it"
                    )
                elif self.key_id == development:
                    which = (
                        "this process has the development key (PAYOUTS_DESTINATION_KEY is "
                        "not set): set it to the key the destinations were sealed with"
                    )
                else:
                    which = (
                        "during a rotation, set PAYOUTS_DESTINATION_KEY_PREVIOUS to the key "
                        "rotated away from"
                    )
                raise UnreadableDestination(
                    f"payout destinations were sealed with another PAYOUTS_DESTINATION_KEY "
                    f"(key id {key_id.hex()}; this process has "
                    f"{', '.join(k.hex() for k in sorted(self._ring))}); {which}"
                )

    def _key_of(self, sealed: SealedDestination) -> _Key:
        key_id = sealed_key_id(sealed)
        self.check_key_ids([key_id])
        return self._ring[key_id]
