"""Secret event fields: which they are, and that errors, dead letters and logs never carry them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from shared.contract.events import (
    EVENT_SPECS,
    MASKED,
    WITHHELD,
    EventDecodeError,
    EventType,
    Topic,
    decode,
    encode,
    mask_secrets,
    secret_fields_of_topic,
)
from shared.contract.events.examples import valid_example
from shared.runtime.kafka import MASKED_FIELDS_HEADER, DeadLetters, Delivery, RetryPolicy
from shared.runtime.observability import configure_logging
from tests.support.kafka_io import RecordingBroker

SECRET = "tok_wise_7c1d9e0b55"
ACCOUNTS = Topic.CREATOR_PAYOUT_ACCOUNTS


def account_document(**data: Any) -> dict[str, Any]:
    event = valid_example(EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED)
    document: dict[str, Any] = json.loads(encode(event))
    document["data"].update({"destination": SECRET, **data})
    return document


def refusal_of(**data: Any) -> EventDecodeError:
    """The error decoding the example account with `data` raises: what a refused field says
    (and must not quote) is the point of several tests below."""
    with pytest.raises(EventDecodeError) as refused:
        decode(ACCOUNTS, json.dumps(account_document(**data)).encode())
    return refused.value


def test_the_payout_destination_and_email_are_the_contracts_only_secret_fields() -> None:
    secret = {spec.type: spec.secret_fields for spec in EVENT_SPECS if spec.secret_fields}
    assert secret == {
        EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED: frozenset({"destination", "email"})
    }
    assert secret_fields_of_topic(ACCOUNTS) == {"destination", "email"}
    assert secret_fields_of_topic(Topic.CAMPAIGN_DEALS) == frozenset()


EMAIL = "jane.7c1d9e0b55@example.com"


def test_the_creators_email_is_masked_never_shown_and_on_the_wire_in_full() -> None:
    document = account_document(email=EMAIL)
    masked, paths = mask_secrets(ACCOUNTS, json.dumps(document).encode())
    assert EMAIL.encode() not in masked
    assert set(paths) == {"data.destination", "data.email"}
    event = decode(ACCOUNTS, json.dumps(document).encode())
    assert event.data.email is not None and event.data.email.get_secret_value() == EMAIL
    assert EMAIL not in repr(event) and EMAIL not in str(event.data.model_dump())
    assert json.loads(encode(event))["data"]["email"] == EMAIL


@pytest.mark.parametrize(
    "email", [EMAIL + ", b@example.com", "jane@example", "Jane <" + EMAIL + ">", "a\r\nBcc: x@y.z"]
)
def test_an_email_that_is_not_one_address_is_refused_without_quoting_it(email: str) -> None:
    refused = refusal_of(email=email)
    assert "email" in str(refused) and email not in str(refused)


def test_masking_replaces_the_field_wherever_it_is_and_says_where() -> None:
    document = account_document()
    document["destination"] = SECRET  # misplaced in the envelope: masked all the same
    document["data"]["tax_form"]["extra"] = [{"destination": SECRET}]
    masked, paths = mask_secrets(ACCOUNTS, json.dumps(document).encode())
    assert SECRET.encode() not in masked
    assert set(paths) == {"destination", "data.destination", "data.tax_form.extra"}
    back = json.loads(masked)
    assert back["data"]["destination"] == MASKED
    assert back["data"]["creator_id"] == document["data"]["creator_id"]


def test_a_data_field_the_accounts_topic_does_not_declare_is_masked_and_never_quoted() -> None:
    # A misspelt secret, or personal data the contract has no field for.
    strays = {"destinaton": SECRET, "iban": "DE89370400440532013000", "tax_id": "123-45-6789"}
    document = account_document(**strays)
    masked, paths = mask_secrets(ACCOUNTS, json.dumps(document).encode())
    assert set(paths) == {"data.destination", *(f"data.{name}" for name in strays)}
    refused = refusal_of(**strays)
    assert "data.iban: unknown field" in refused.reason
    for value in strays.values():
        assert value.encode() not in masked
        assert value not in str(refused)


def test_a_key_undeclared_anywhere_in_an_account_is_masked() -> None:
    document = account_document(fallback={"method": "paypal", "destinaton": SECRET})
    document["data"]["tax_form"]["iban"] = "DE89370400440532013000"
    document["iban"] = "GB29NWBK60161331926819"
    masked, paths = mask_secrets(ACCOUNTS, json.dumps(document).encode())
    assert set(paths) == {
        "data.destination",
        "data.fallback.destinaton",
        "data.tax_form.iban",
        "iban",
    }
    assert SECRET.encode() not in masked and b"DE89" not in masked and b"GB29" not in masked
    back = json.loads(masked)
    assert back["data"]["tax_form"]["type"] == document["data"]["tax_form"]["type"]


def test_an_account_sent_to_another_topic_is_masked_there_too() -> None:
    document = account_document(email=EMAIL)
    masked, paths = mask_secrets(Topic.CAMPAIGN_DEALS, json.dumps(document).encode())
    assert set(paths) == {"data.destination", "data.email"}
    assert SECRET.encode() not in masked and EMAIL.encode() not in masked


def test_the_fallback_destination_is_masked_and_never_shown() -> None:
    document = account_document(fallback={"method": "paypal", "destination": SECRET + "-b"})
    masked, paths = mask_secrets(ACCOUNTS, json.dumps(document).encode())
    assert SECRET.encode() not in masked
    assert set(paths) == {"data.destination", "data.fallback.destination"}
    event = decode(ACCOUNTS, json.dumps(document).encode())
    assert event.data.fallback is not None and event.data.fallback.method == "paypal"
    assert SECRET not in repr(event) and SECRET not in str(event.data.model_dump())
    assert json.loads(encode(event))["data"]["fallback"]["destination"] == SECRET + "-b"


@pytest.mark.parametrize(
    "value",
    [
        b'{"data": {"destination": "' + SECRET.encode() + b'", "cur',  # cut short
        b"\xff\xfe" + SECRET.encode(),  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested deeper than the parser goes
    ],
)
def test_an_unparseable_value_on_a_secret_topic_is_withheld(value: bytes) -> None:
    assert mask_secrets(ACCOUNTS, value) == (b"", (WITHHELD,))


def test_values_without_secrets_are_kept_byte_for_byte() -> None:
    value = b'{ "data" : {"creator_id": "cr-1"} }'
    assert mask_secrets(ACCOUNTS, value) == (value, ())
    deal = encode(valid_example(EventType.DEAL_SIGNED))
    assert mask_secrets(Topic.CAMPAIGN_DEALS, deal) == (deal, ())
    assert mask_secrets(Topic.CAMPAIGN_DEALS, b"\xff garbage") == (b"\xff garbage", ())


@pytest.mark.parametrize(
    ("destination", "reason"),
    [
        (SECRET + "x" * 600, "data.destination: a destination must have 1 to 512 characters"),
        (7_000_123_456, "data.destination: Input should be a valid string"),
        ("", "data.destination: a destination must have 1 to 512 characters, not 0"),
    ],
)
def test_a_refused_destination_is_named_but_not_quoted(destination: object, reason: str) -> None:
    refused = refusal_of(destination=destination)
    assert refused.reason.startswith(reason), refused.reason
    assert "got" not in refused.reason
    assert SECRET not in str(refused) and "7000123456" not in str(refused)


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("j@", "data.email: an e-mail address must have 3 to 254 characters, not 2"),
        ("jane@example", "data.email: not one e-mail address (local@domain.tld)"),
    ],
)
def test_a_refused_email_is_named_in_characters_but_not_quoted(email: str, reason: str) -> None:
    refused = refusal_of(email=email)
    assert refused.reason.startswith(reason), refused.reason
    assert email not in str(refused)


def test_other_refused_fields_are_still_quoted() -> None:
    assert "EURO" in str(refusal_of(currency="EURO"))


async def test_dead_letters_mask_secret_fields_and_list_them() -> None:
    broker = RecordingBroker()
    dead = DeadLetters(broker, service="payouts", retry=RetryPolicy())  # type: ignore[arg-type]
    original = json.dumps(account_document(currency="EURO")).encode()
    await dead.send(
        Delivery(ACCOUNTS, 0, 5, b"cr-1", original, (("trace", b"t-1"),)),
        "SchemaViolation",
        "data.currency: not ISO 4217 (got 'EURO')",
    )
    await dead.send(
        Delivery(ACCOUNTS, 0, 6, b"cr-1", original[:40] + SECRET.encode(), ()),
        "InvalidJSON",
        "not valid JSON",
    )
    deal = encode(valid_example(EventType.DEAL_SIGNED))
    await dead.send(Delivery(Topic.CAMPAIGN_DEALS, 1, 7, b"d-1", deal, ()), "EventRejected", "x")

    masked, withheld, untouched = broker.published
    assert SECRET.encode() not in masked["value"]
    assert json.loads(masked["value"])["data"]["destination"] == MASKED
    assert masked["headers"][MASKED_FIELDS_HEADER] == "data.destination"
    assert masked["headers"]["trace"] == "t-1" and masked["topic"] == f"{ACCOUNTS}.dlq"
    assert withheld["value"] == b"" and withheld["headers"][MASKED_FIELDS_HEADER] == WITHHELD
    assert untouched["value"] == deal and MASKED_FIELDS_HEADER not in untouched["headers"]


@pytest.fixture
def service_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_logged_exceptions_show_no_local_variables(
    service_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("payouts")
    log = structlog.get_logger("test")

    def provider_call() -> None:
        form = {"destination": SECRET}  # what the Stripe provider holds while it sends
        raise RuntimeError(f"unexpected answer for {len(form)} fields")

    try:
        provider_call()
    except RuntimeError:
        log.exception("provider call failed unexpectedly")
    logged = capsys.readouterr().err
    assert "provider call failed unexpectedly" in logged and "RuntimeError" in logged
    assert "provider_call" in logged, "the traceback is still there"
    assert SECRET not in logged
