"""The Stripe adapter's request shape and its handling of malformed answers (mock transport)."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from services.payouts.providers import ProviderError, TransferRequest
from services.payouts.providers.stripe import StripeTransfers
from shared.contract.money import Money

REQUEST = TransferRequest(
    "po_abc", Money.of("7.05", "GBP"), SecretStr("acct_dest_42"), "stripe", "CreatorFlow fee"
)


def adapter(handler: httpx.MockTransport) -> StripeTransfers:
    return StripeTransfers("sk_test_key", base_url="https://stripe.test", transport=handler)


async def test_request_is_form_encoded_with_key_and_idempotency_header() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "tr_1", "amount": 705, "currency": "gbp"})

    client = adapter(httpx.MockTransport(answer))
    accepted = await client.send(REQUEST)
    await client.aclose()
    assert accepted.provider_ref == "tr_1" and not accepted.replayed
    [request] = seen
    assert (request.method, request.url.path) == ("POST", "/v1/transfers")
    assert request.headers["Idempotency-Key"] == "po_abc"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    expected_auth = "Basic " + base64.b64encode(b"sk_test_key:").decode()
    assert request.headers["Authorization"] == expected_auth
    assert dict(parse_qsl(request.content.decode())) == {
        "amount": "705",
        "currency": "gbp",
        "destination": "acct_dest_42",
        "description": "CreatorFlow fee",
        "metadata[payout_id]": "po_abc",
    }


@pytest.mark.parametrize(
    ("response", "retryable", "fragment"),
    [
        (httpx.Response(200, content=b"<html>"), True, "not a JSON object"),
        (httpx.Response(200, json={"object": "transfer"}), True, "without a transfer id"),
        (
            httpx.Response(200, json={"id": "tr_1", "amount": 1, "currency": "gbp"}),
            False,
            "different",
        ),
        (httpx.Response(502, content=b"Bad gateway"), True, "502 unknown_error"),
    ],
)
async def test_malformed_answers(response: httpx.Response, retryable: bool, fragment: str) -> None:
    client = adapter(httpx.MockTransport(lambda _: response))
    with pytest.raises(ProviderError) as failed:
        await client.send(REQUEST)
    await client.aclose()
    assert failed.value.retryable is retryable and fragment in failed.value.reason


async def test_error_message_text_is_not_repeated() -> None:
    body = {
        "error": {"type": "invalid_request_error", "message": "No such destination: 'acct_dest_42'"}
    }
    client = adapter(httpx.MockTransport(lambda _: httpx.Response(400, content=json.dumps(body))))
    with pytest.raises(ProviderError) as failed:
        await client.send(REQUEST)
    await client.aclose()
    assert "acct_dest_42" not in str(failed.value) and not failed.value.retryable
