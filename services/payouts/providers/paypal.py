"""PayPal Payouts over HTTP: OAuth 2.0 client credentials, then the batch payouts API.

Requests: `POST /v1/oauth2/token` (basic auth with the client id and secret,
`grant_type=client_credentials`) for a bearer token, kept until shortly before it expires;
`POST /v1/payments/payouts` with a `sender_batch_header` and its `items`; and
`GET /v1/payments/payouts/{payout_batch_id}` for the batch and each item's
`transaction_status`. Amounts are decimal strings in the currency's minor unit.

One payout is one batch of one item: `sender_batch_id` and `sender_item_id` are the payout's
idempotency key. PayPal completes a payment only once per `sender_batch_id` used within 30 days
and answers a repeated one with an error linking to the original batch, which this adapter
follows: a repeated send is answered with the first batch (`replayed`). Putting several payouts
in one batch would tie their fates to one `sender_batch_id` (a retry of one would be refused as a
duplicate of the others), so batches are never shared. The `PayPal-Request-Id` header carries
the same key.

PayPal offers no read by `sender_batch_id`: `lookup`, asked after an attempt whose outcome is
unknown, repeats the create under the same `sender_batch_id`, which PayPal documents as safe
(a duplicate is refused with a link to the original, which is followed). Retries and in-doubt
chapters therefore rely on PayPal's 30-day dedupe window; the retry schedule stays far inside it.

The destination is the receiver: an email address (`EMAIL`) or a PayPal payer id
(`PAYPAL_ID`). It is never logged nor put in an error.

Errors are JSON `{"name", "message", "debug_id", "details", "links"}`; `ERRORS` classifies
them by HTTP status and `name` (retryable, and whether the answer proves nothing was executed):

| answer | retryable | nothing executed |
|---|---|---|
| 2xx; a duplicate `sender_batch_id` (4xx with a link to the original batch) | accepted | |
| 400 `VALIDATION_ERROR` and other 400s | no | yes |
| 401 `AUTHENTICATION_FAILURE` (after one fresh token), 403 `NOT_AUTHORIZED` | yes | yes |
| 422 `INSUFFICIENT_FUNDS` (the balance can be topped up) | yes | yes |
| 422 `USER_BUSINESS_ERROR` and other 422s | no | yes |
| 429 `RATE_LIMIT_REACHED` | yes | yes |
| 5xx `INTERNAL_SERVER_ERROR` (PayPal: retry with the same `sender_batch_id`) | yes | no |
| connection refused | yes | yes |
| timeouts and other network errors | yes | no |
| batch `DENIED` in the create answer | no | yes |

Item statuses (`settlement`): `SUCCESS` is settled; `PENDING`, `ONHOLD` and `UNCLAIMED` (the
receiver has 30 days to claim it) are pending; `FAILED`, `RETURNED` (unclaimed after 30 days),
`BLOCKED`, `REFUNDED`, `REVERSED` and `DENIED` are failed, with the item's error name.
"""

from __future__ import annotations

import time
from typing import Any, Final, Unpack

import httpx

from services.payouts.providers.base import (
    Connection,
    HttpRail,
    ProviderError,
    Settlement,
    TransferAccepted,
    TransferRequest,
    error_body,
    json_object,
    unlisted_status,
)
from shared.contract.money import Money

# (status, name) -> (retryable, nothing executed); name "" matches any name of that status.
ERRORS: Final[dict[tuple[int, str], tuple[bool, bool]]] = {
    (400, ""): (False, True),
    (401, ""): (True, True),
    (403, ""): (True, True),
    (404, ""): (False, True),
    (422, "INSUFFICIENT_FUNDS"): (True, True),
    (422, ""): (False, True),
    (429, ""): (True, True),
}
SETTLED: Final = frozenset({"SUCCESS"})
PENDING: Final = frozenset({"PENDING", "ONHOLD", "UNCLAIMED", "NEW"})
FAILED: Final = frozenset({"FAILED", "RETURNED", "BLOCKED", "REFUNDED", "REVERSED", "DENIED"})
_TOKEN_MARGIN_SECONDS: Final = 60.0


class PayPalPayouts(HttpRail):
    """A `PayoutProvider` for PayPal Payouts, with the platform's REST app credentials."""

    name = "paypal"
    base_url = "https://api-m.paypal.com"

    def __init__(
        self, client_id: str, client_secret: str, **connection: Unpack[Connection]
    ) -> None:
        super().__init__(connection)
        self._credentials = httpx.BasicAuth(client_id, client_secret)
        self._token: str | None = None
        self._token_expires = 0.0

    async def send(self, request: TransferRequest) -> TransferAccepted:
        receiver = request.destination.get_secret_value()
        recipient_type = "EMAIL" if "@" in receiver else "PAYPAL_ID"
        body = {
            "sender_batch_header": {
                "sender_batch_id": request.idempotency_key,
                "recipient_type": recipient_type,
                "email_subject": "You have a payment from CreatorFlow",
            },
            "items": [
                {
                    "recipient_type": recipient_type,
                    "amount": {
                        "value": format(request.amount.amount, "f"),
                        "currency": request.amount.currency,
                    },
                    "receiver": receiver,
                    "sender_item_id": request.idempotency_key,
                    "note": request.description,
                }
            ],
        }
        response = await self._call(
            "POST",
            "/v1/payments/payouts",
            json=body,
            headers={"PayPal-Request-Id": request.idempotency_key},
            duplicate_ok=True,
        )
        if response.status_code >= 400:  # a duplicate: the original batch is linked
            original = _original_batch(response)
            batch = _json(await self._call("GET", f"/v1/payments/payouts/{original}"))
            return _accepted(batch, request, replayed=True)
        return _accepted(_json(response), request, replayed=False)

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        # No read by sender_batch_id: the same create, deduplicated by PayPal (module doc).
        return await self.send(request)

    async def settlement(self, provider_ref: str) -> Settlement:
        batch = _json(await self._call("GET", f"/v1/payments/payouts/{provider_ref}"))
        header = batch.get("batch_header") or {}
        items = batch.get("items") or []
        if not items:
            if header.get("batch_status") in {"DENIED", "CANCELED"}:
                return Settlement("failed", f"paypal: batch {header.get('batch_status')}")
            return Settlement("pending")
        return item_settlement(items[0])

    async def _bearer(self, *, fresh: bool = False) -> str:
        if not fresh and self._token is not None and time.monotonic() < self._token_expires:
            return self._token
        response = await self._request(
            "POST",
            "/v1/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=self._credentials,
        )
        if not response.is_success:
            raise _error(response, step="token")
        body = _json(response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise ProviderError("paypal: token answer without access_token", retryable=True)
        expires_in = float(body.get("expires_in") or 0)
        self._token = token
        self._token_expires = time.monotonic() + max(expires_in - _TOKEN_MARGIN_SECONDS, 0)
        return token

    async def _call(
        self, method: str, path: str, *, duplicate_ok: bool = False, **options: Any
    ) -> httpx.Response:
        headers = dict(options.pop("headers", {}))
        for fresh in (False, True):
            headers["Authorization"] = f"Bearer {await self._bearer(fresh=fresh)}"
            response = await self._request(method, path, headers=headers, **options)
            if response.status_code != 401:
                break
        if response.is_success:
            return response
        if duplicate_ok and _original_batch(response) is not None:
            return response
        raise _error(response, step=method.lower())


def item_settlement(item: dict[str, Any]) -> Settlement:
    """Where a payout item stands, from its `transaction_status` (and `errors.name`): read
    the same from a polled batch and from a `PAYMENT.PAYOUTS-ITEM.*` webhook's resource."""
    status = str(item.get("transaction_status") or "PENDING")
    if status in SETTLED:
        return Settlement("settled")
    if status in FAILED:
        errors = item.get("errors")
        name = errors.get("name") if isinstance(errors, dict) else None
        return Settlement("failed", f"paypal: item {status}" + (f" {name}" if name else ""))
    return Settlement("pending")


def _json(response: httpx.Response) -> dict[str, Any]:
    return json_object("paypal", response)


def _original_batch(response: httpx.Response) -> str | None:
    """The batch a duplicate `sender_batch_id` was first used for, from the error's links."""
    if response.status_code < 400 or response.status_code >= 500:
        return None
    links = error_body(response).get("links")
    for link in links if isinstance(links, list) else []:
        href = link.get("href") if isinstance(link, dict) else None
        if isinstance(href, str) and "/v1/payments/payouts/" in href:
            return href.rsplit("/", 1)[1] or None
    return None


def _error(response: httpx.Response, *, step: str) -> ProviderError:
    status = response.status_code
    body = error_body(response)
    # The token endpoint answers OAuth-style {"error": ...}.
    name = str(body.get("name") or body.get("error") or "")
    # PayPal's `message` and `details` can quote the receiver: only the name is reported.
    reason = f"paypal: {status} {name or 'error'}" + (" (token)" if step == "token" else "")
    retryable, not_executed = ERRORS.get(
        (status, name), ERRORS.get((status, ""), unlisted_status(status))
    )
    return ProviderError(reason, retryable=retryable, not_executed=not_executed)


def _accepted(
    batch: dict[str, Any], request: TransferRequest, *, replayed: bool
) -> TransferAccepted:
    header = batch.get("batch_header")
    if not isinstance(header, dict) or not isinstance(header.get("payout_batch_id"), str):
        raise ProviderError("paypal: answer without a payout_batch_id", retryable=True)
    if header.get("batch_status") == "DENIED":
        raise ProviderError("paypal: batch DENIED", retryable=False, not_executed=True)
    _check_items(batch, request.amount)
    return TransferAccepted(header["payout_batch_id"], replayed=replayed)


def _check_items(batch: dict[str, Any], amount: Money) -> None:
    """Refuse a batch (the original of a duplicate) that pays other money under our key."""
    for item in batch.get("items") or []:
        paid = (item.get("payout_item") or {}).get("amount") or {}
        if paid and (
            str(paid.get("currency")) != amount.currency
            or Money.of(str(paid.get("value")), amount.currency) != amount
        ):
            raise ProviderError(
                "paypal: batch answered for a different amount or currency", retryable=False
            )
