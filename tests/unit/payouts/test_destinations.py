"""Payout destinations at rest: AES-256-GCM sealing, and the key setting."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr, ValidationError

from services.payouts import translate
from services.payouts.destinations import (
    DEVELOPMENT_KEY,
    DestinationCipher,
    DestinationKeyError,
    UnreadableDestination,
    decode_key,
    new_key,
    sealed_key_id,
)
from services.payouts.domain.accounts import SealedDestination, cooling_off_until
from services.payouts.settings import PayoutsSettings
from shared.contract.events import PayoutAccountUpserted, TaxForm

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


def test_during_a_rotation_both_keys_open_and_the_new_one_seals() -> None:
    old_key, new_key_bytes = decode_key(new_key()), decode_key(new_key())
    before = DestinationCipher(old_key)
    rotating = DestinationCipher(new_key_bytes, [old_key])
    stored = before.seal("cr-1", TOKEN)
    assert rotating.open("cr-1", stored) == TOKEN and not rotating.is_current(stored)
    fresh = rotating.seal("cr-1", TOKEN)
    assert rotating.is_current(fresh) and rotating.key_ids == {before.key_id, rotating.key_id}
    resealed = rotating.reseal("cr-1", stored)
    assert rotating.is_current(resealed) and rotating.open("cr-1", resealed) == TOKEN
    assert rotating.reseal("cr-1", resealed) is resealed
    # The fingerprint is keyed: resealed, the stored destination compares with a new one.
    assert stored.fingerprint != fresh.fingerprint
    assert resealed.fingerprint == fresh.fingerprint
    after = DestinationCipher(new_key_bytes)
    assert after.open("cr-1", resealed) == TOKEN
    with pytest.raises(UnreadableDestination, match="PAYOUTS_DESTINATION_KEY_PREVIOUS"):
        after.open("cr-1", stored)
    rotating.check_key_ids([before.key_id, rotating.key_id])
    with pytest.raises(UnreadableDestination):
        after.check_key_ids([before.key_id])


def test_a_destination_sent_again_under_the_new_key_is_no_change() -> None:
    old_key = decode_key(new_key())
    rotating = DestinationCipher(decode_key(new_key()), [old_key])
    data = PayoutAccountUpserted(
        creator_id="cr-1", method="stripe", destination=TOKEN, currency="USD",
        tax_form=TaxForm(type="W-9", status="verified"),
    )  # fmt: skip
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stored = translate.payout_account(data, now, seal=DestinationCipher(old_key).seal)
    again = translate.payout_account(data, now, seal=rotating.seal)
    week = timedelta(days=7)
    # Compared as stored, under the old key, it would look like a changed destination.
    assert cooling_off_until(stored, again, in_flight=True, now=now, cool_off=week) is not None
    previous = replace(stored, destination=rotating.reseal("cr-1", stored.destination))
    assert cooling_off_until(previous, again, in_flight=True, now=now, cool_off=week) is None


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


def _refused_without_echo(monkeypatch: pytest.MonkeyPatch, setting: str, match: str) -> None:
    """Set `setting` to a malformed key (15 bytes): the settings refuse it with `match`, and
    the error, which ends up in logs, does not repeat the value. Both key settings hold
    secrets, so both are checked the same way."""
    monkeypatch.setenv(setting, "c2hvcnQta2V5LXZhbHVl")
    with pytest.raises(ValidationError, match=match) as refused:
        PayoutsSettings()
    assert "c2hvcnQta2V5" not in str(refused.value)


def test_a_malformed_key_setting_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _refused_without_echo(monkeypatch, "PAYOUTS_DESTINATION_KEY", "must encode 32 bytes")


def test_the_previous_key_is_read_and_checked_like_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = new_key()
    monkeypatch.setenv("PAYOUTS_DESTINATION_KEY", new_key())
    monkeypatch.setenv("PAYOUTS_DESTINATION_KEY_PREVIOUS", old)
    previous = PayoutsSettings().destination_key_previous
    assert previous is not None and previous.get_secret_value() == old
    _refused_without_echo(
        monkeypatch, "PAYOUTS_DESTINATION_KEY_PREVIOUS", "PAYOUTS_DESTINATION_KEY_PREVIOUS must"
    )


def test_a_service_started_on_the_development_key_rotates_away_from_it_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rows stored while no key was set are under the development default, whose value the
    # operator never had: the refusal says how to name it, and that name is taken.
    stored = DestinationCipher(decode_key(DEVELOPMENT_KEY)).seal("cr-1", TOKEN)
    chosen = new_key()
    after = DestinationCipher(decode_key(chosen))
    with pytest.raises(UnreadableDestination, match="PAYOUTS_DESTINATION_KEY_PREVIOUS=development"):
        after.check_key_ids([sealed_key_id(stored)])
    monkeypatch.setenv("PAYOUTS_DESTINATION_KEY", chosen)
    monkeypatch.setenv("PAYOUTS_DESTINATION_KEY_PREVIOUS", "development")
    settings = PayoutsSettings()
    rotating = DestinationCipher.from_setting(
        settings.destination_key, settings.destination_key_previous
    )
    rotating.check_key_ids([sealed_key_id(stored)])
    assert rotating.open("cr-1", rotating.reseal("cr-1", stored)) == TOKEN


def test_a_process_left_on_the_development_key_says_so() -> None:
    stored = DestinationCipher(decode_key(new_key())).seal("cr-1", TOKEN)
    unset = DestinationCipher(decode_key(DEVELOPMENT_KEY))
    with pytest.raises(UnreadableDestination, match="this process has the development key"):
        unset.check_key_ids([sealed_key_id(stored)])
