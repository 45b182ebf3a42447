"""The webhook signature verifier (Stripe's `t=…,v1=…` HMAC-SHA256 scheme) and the rails'
event parsers."""

from __future__ import annotations

import json

import pytest

from services.payouts.webhook_signatures import (
    SignatureRefused,
    signature,
    signature_header,
    verify,
)
from services.payouts.webhooks import MalformedEvent, WebhookEvent, parse

SECRET = "whsec_test_secret"
BODY = b'{"id": "evt_1"}'
T = 1_700_000_000
# HMAC-SHA256 of `1700000000.{"id": "evt_1"}` under SECRET, computed apart with
# `openssl dgst -sha256 -hmac whsec_test_secret`.
KNOWN = "33aa1568c6627d0d2d42556693c208077ca8f8b437ac8d9d6ebb6c2c650033eb"


def test_the_signature_is_hmac_sha256_of_the_timestamp_dot_body() -> None:
    assert signature(SECRET, BODY, T) == KNOWN
    assert signature_header(SECRET, BODY, T) == f"t={T},v1={KNOWN}"


@pytest.mark.parametrize("age", [0, 1, 299, 300, -300])
def test_a_signed_body_within_the_tolerance_is_accepted(age: int) -> None:
    assert verify(f"t={T},v1={KNOWN}", BODY, SECRET, now=T + age, tolerance=300) == T


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_a_delivery_signed_beyond_the_tolerance_is_refused(age: int) -> None:
    when = f"{age} s ago" if age > 0 else f"{-age} s ahead"
    with pytest.raises(SignatureRefused, match=f"signed {when}, beyond the 300 s tolerance"):
        verify(f"t={T},v1={KNOWN}", BODY, SECRET, now=T + age, tolerance=300)


def test_any_change_to_the_body_the_time_or_the_secret_is_refused() -> None:
    header = signature_header(SECRET, BODY, T)
    for body, head, secret in [
        (BODY + b" ", header, SECRET),
        (b'{"id": "evt_2"}', header, SECRET),
        (BODY, header.replace(f"t={T}", f"t={T + 1}"), SECRET),
        (BODY, header, SECRET + "x"),
        (BODY, f"t={T},v1={KNOWN[:-1]}0", SECRET),
    ]:
        with pytest.raises(SignatureRefused, match="does not match"):
            verify(head, body, secret, now=T, tolerance=300)


def test_a_stale_forgery_is_refused_for_its_signature_first() -> None:
    with pytest.raises(SignatureRefused, match="does not match"):
        verify(f"t={T},v1={'0' * 64}", BODY, SECRET, now=T + 301, tolerance=300)


def test_one_matching_v1_among_several_is_enough_and_other_schemes_are_ignored() -> None:
    # Stripe sends a signature per active secret while one rolls over, and a v0 in test mode.
    header = f"t={T},v1={'a' * 64},v1={KNOWN},v0={'b' * 64}"
    assert verify(header, BODY, SECRET, now=T, tolerance=300) == T
    with pytest.raises(SignatureRefused, match="without a v1"):
        verify(f"t={T},v0={KNOWN}", BODY, SECRET, now=T, tolerance=300)


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", f"v1={KNOWN}", f"t=soon,v1={KNOWN}", f"t={T},t={T},v1={KNOWN}"],
)
def test_a_missing_or_malformed_header_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureRefused):
        verify(header, BODY, SECRET, now=T, tolerance=300)


def _stripe(kind: str, obj: dict[str, object]) -> bytes:
    event = {"id": "evt_9", "object": "event", "type": kind, "data": {"object": obj}}
    return json.dumps(event).encode()


def test_stripe_transfer_events_are_read_as_a_polled_transfer() -> None:
    transfer = {"id": "tr_1", "object": "transfer", "reversed": False, "amount_reversed": 0}
    assert parse("stripe", _stripe("transfer.created", transfer)) == WebhookEvent(
        "evt_9", "transfer.created", "tr_1", "settled"
    )
    reversed_ = {**transfer, "reversed": True, "amount_reversed": 100}
    assert parse("stripe", _stripe("transfer.reversed", reversed_)) == WebhookEvent(
        "evt_9", "transfer.reversed", "tr_1", "failed", "stripe: transfer reversed"
    )
    payout = {"id": "po_1", "object": "payout", "status": "failed"}
    assert parse("stripe", _stripe("payout.failed", payout)).state is None


def test_paypal_item_events_name_their_batch_and_status() -> None:
    body = {
        "id": "WH-1",
        "event_type": "PAYMENT.PAYOUTS-ITEM.RETURNED",
        "resource": {
            "payout_batch_id": "B1",
            "transaction_status": "RETURNED",
            "errors": {"name": "RECEIVER_UNREGISTERED"},
        },
    }
    assert parse("paypal", json.dumps(body).encode()) == WebhookEvent(
        "WH-1",
        "PAYMENT.PAYOUTS-ITEM.RETURNED",
        "B1",
        "failed",
        "paypal: item RETURNED RECEIVER_UNREGISTERED",
    )
    body["resource"] = {"payout_batch_id": "B1", "transaction_status": "UNCLAIMED"}
    assert parse("paypal", json.dumps(body).encode()).state is None


def test_a_wise_state_change_is_identified_by_transfer_state_and_time() -> None:
    body = {
        "event_type": "transfers#state-change",
        "schema_version": "2.0.0",
        "data": {
            "resource": {"type": "transfer", "id": 4242, "profile_id": 1},
            "current_state": "bounced_back",
            "previous_state": "outgoing_payment_sent",
            "occurred_at": "2026-03-01T10:00:00Z",
        },
    }
    event = parse("wise", json.dumps(body).encode())
    assert event == WebhookEvent(
        "4242:bounced_back:2026-03-01T10:00:00Z",
        "transfers#state-change",
        "4242",
        "failed",
        "wise: transfer bounced_back",
    )


@pytest.mark.parametrize(
    ("rail", "raw"),
    [
        ("stripe", b"not json"),
        ("stripe", b"[]"),
        ("stripe", b'{"type": "transfer.created", "data": {"object": {}}}'),
        ("paypal", b'{"id": "WH-1", "event_type": "PAYMENT.PAYOUTS-ITEM.FAILED"}'),
        ("wise", b'{"event_type": "transfers#state-change", "data": {"resource": {}}}'),
    ],
)
def test_a_body_of_another_shape_is_malformed(rail: str, raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        parse(rail, raw)
