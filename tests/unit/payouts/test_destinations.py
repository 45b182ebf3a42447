"""Payout destinations at rest: AES-256-GCM sealing, and the key setting."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr, ValidationError

from services.payouts.destinations import (
    DEVELOPMENT_KEY,
    DestinationCipher,
    DestinationKeyError,
    UnreadableDestination,
    decode_key,
    new_key,
)
from services.payouts.domain.accounts import SealedDestination
from services.payouts.settings import PayoutsSettings

TOKEN = SecretStr("tok_wise_5be1f0c2")
CIPHER = DestinationCipher(decode_key(new_key()))


def test_a_sealed_destination_opens_to_the_token_and_does_not_contain_it() -> None:
    sealed = CIPHER.seal("cr-1", TOKEN)
    assert b"tok_wise" not in sealed.data and b"5be1f0c2" not in sealed.data
    assert CIPHER.open("cr-1", sealed) == TOKEN
    assert "tok_wise" not in repr(sealed)


def test_each_seal_uses_a_fresh_nonce() -> None:
    assert CIPHER.seal("cr-1", TOKEN).data != CIPHER.seal("cr-1", TOKEN).data


def test_a_destination_moved_to_another_creator_does_not_open() -> None:
    sealed = CIPHER.seal("cr-1", TOKEN)
    with pytest.raises(UnreadableDestination, match="cr-2") as refused:
        CIPHER.open("cr-2", sealed)
    assert "tok_wise" not in str(refused.value)


@pytest.mark.parametrize("position", [0, 1, 5, 17, -1])
def test_an_altered_destination_does_not_open(position: int) -> None:
    data = bytearray(CIPHER.seal("cr-1", TOKEN).data)
    data[position] ^= 0x01
    with pytest.raises(UnreadableDestination):
        CIPHER.open("cr-1", SealedDestination(bytes(data)))


def test_another_key_is_named_by_its_id_not_its_value() -> None:
    other = DestinationCipher(decode_key(new_key()))
    sealed = CIPHER.seal("cr-1", TOKEN)
    with pytest.raises(UnreadableDestination, match="another PAYOUTS_DESTINATION_KEY") as refused:
        other.open("cr-1", sealed)
    assert CIPHER.key_id.hex() in str(refused.value) and other.key_id.hex() in str(refused.value)
    with pytest.raises(UnreadableDestination):
        other.check_key(sealed)
    CIPHER.check_key(sealed)


def test_the_cipher_repr_shows_the_key_id_only() -> None:
    key = decode_key(new_key())
    assert key.hex() not in repr(DestinationCipher(key))
    assert DestinationCipher(key).key_id.hex() in repr(DestinationCipher(key))


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"short").decode(), "32 bytes, not 5"),
        (base64.b64encode(bytes(48)).decode(), "32 bytes, not 48"),
    ],
)
def test_a_malformed_key_is_refused(encoded: str, message: str) -> None:
    with pytest.raises(DestinationKeyError, match=message):
        decode_key(encoded)


def test_settings_default_to_the_development_key_outside_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PAYOUTS_DESTINATION_KEY", raising=False)
    monkeypatch.delenv("CREATORFLOW_PROFILE", raising=False)
    assert PayoutsSettings().destination_key.get_secret_value() == DEVELOPMENT_KEY


def test_production_refuses_the_development_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREATORFLOW_PROFILE", "production")
    monkeypatch.setenv("PAYOUTS_PROVIDER", "stripe")
    monkeypatch.setenv("PAYOUTS_STRIPE_API_KEY", "sk_live_x")
    monkeypatch.delenv("PAYOUTS_DESTINATION_KEY", raising=False)
    with pytest.raises(ValidationError, match="refuses the development PAYOUTS_DESTINATION_KEY"):
        PayoutsSettings()
    key = new_key()
    monkeypatch.setenv("PAYOUTS_DESTINATION_KEY", key)
    assert PayoutsSettings().destination_key.get_secret_value() == key


def test_a_malformed_key_setting_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAYOUTS_DESTINATION_KEY", "c2hvcnQta2V5LXZhbHVl")  # 15 bytes
    with pytest.raises(ValidationError, match="must encode 32 bytes") as refused:
        PayoutsSettings()
    assert "c2hvcnQta2V5" not in str(refused.value)
