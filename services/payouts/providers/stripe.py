"""Stripe Connect transfers over HTTP (`POST /v1/transfers`, `GET /v1/transfers/{id}`).

Follows Stripe's documented HTTP behaviour: form-encoded bodies, the amount as an integer in
the currency's minor unit, the currency in lower case, the connected account id as
`destination`, and an `Idempotency-Key` header (our payout id) so a retried request never
moves money twice. Errors are JSON `{"error": {"type", "code", "message", ...}}`.

How responses are classified (`ERRORS`: retryable, and whether the answer proves nothing was
executed, which alone allows the creator's fallback rail):

| answer | retryable | nothing executed |
|---|---|---|
| 2xx (`Idempotent-Replayed: true`: from Stripe's idempotency record) | accepted | |
| 400 `idempotency_error` (key used with other parameters) | no | no: its first use may have paid |
| 400, 402, 404 and other 4xx | no | yes: refused before execution |
| 401, 403 (key missing or lacking permission: an operator can fix it) | yes | yes |
| 429 (rate limited) | yes | yes |
| 409 (the key is in use by a concurrent request) | yes | no |
| 500, 502, 503, 504 (indeterminate: only the same key is safe) | yes | no |
| connection refused | yes | yes: the request never reached Stripe |
| timeouts and other network errors | yes | no |

`Stripe-Should-Retry: true|false`, when present, decides whether to retry. After an attempt
whose outcome is unknown, `lookup` lists the destination's transfers
(`GET /v1/transfers?destination=...`) and finds the one whose `metadata[payout_id]` is the
idempotency key, before anything is sent again. It reads at most 10 pages of 100 (newest
first, so a transfer just made is on the first); a destination with more transfers and none
of them ours makes the lookup fail as retryable, and the payout stays in doubt rather than
being sent again.
"""

from __future__ import annotations

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

# status -> (retryable, nothing executed); any other 4xx is (False, True), any 5xx (True, False).
ERRORS: Final[dict[int, tuple[bool, bool]]] = {
    401: (True, True),
    403: (True, True),
    409: (True, False),
    429: (True, True),
    500: (True, False),
    502: (True, False),
    503: (True, False),
    504: (True, False),
}
_LOOKUP_PAGES: Final = 10
_API_VERSION: Final = "2025-04-30.basil"


class StripeTransfers(HttpRail):
    """A `PayoutProvider` for Stripe Connect. `api_key` is the platform's secret key."""

    name = "stripe"
    base_url = "https://api.stripe.com"

    def __init__(self, api_key: str, **connection: Unpack[Connection]) -> None:
        super().__init__(
            connection,
            auth=httpx.BasicAuth(api_key, ""),
            headers={"Stripe-Version": _API_VERSION},
        )
        self._lookup_limit = 100  # transfers per page of a lookup (Stripe's maximum)

    async def send(self, request: TransferRequest) -> TransferAccepted:
        form = {
            "amount": str(request.amount.minor_units),
            "currency": request.amount.currency.lower(),
            "destination": request.destination.get_secret_value(),
            "description": request.description,
            "metadata[payout_id]": request.idempotency_key,
        }
        response = await self._call(
            "POST",
            "/v1/transfers",
            data=form,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        body = _json(response)
        reference = body.get("id")
        if not isinstance(reference, str) or not reference:
            raise ProviderError(
                f"stripe: {response.status_code} response without a transfer id", retryable=True
            )
        _check_echo(body, request.amount)
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return TransferAccepted(reference, replayed=replayed)

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        params = {
            "destination": request.destination.get_secret_value(),
            "limit": str(self._lookup_limit),
        }
        for _ in range(_LOOKUP_PAGES):
            body = _json(await self._call("GET", "/v1/transfers", params=params))
            listed = body.get("data")
            if not isinstance(listed, list):
                raise ProviderError("stripe: transfer list without data", retryable=True)
            for transfer in listed:
                metadata = transfer.get("metadata") if isinstance(transfer, dict) else None
                if isinstance(metadata, dict) and metadata.get("payout_id") == (
                    request.idempotency_key
                ):
                    _check_echo(transfer, request.amount)
                    return TransferAccepted(str(transfer["id"]), replayed=True)
            if body.get("has_more") is not True or not listed:
                return None
            params["starting_after"] = str(listed[-1].get("id"))
        raise ProviderError(
            "stripe: transfer lookup did not reach the end of the list", retryable=True
        )

    async def settlement(self, provider_ref: str) -> Settlement:
        response = await self._call("GET", f"/v1/transfers/{provider_ref}")
        return transfer_settlement(_json(response))

    async def _call(self, method: str, path: str, **options: Any) -> httpx.Response:
        response = await self._request(method, path, **options)
        if response.is_success:
            return response
        raise _error(response)


def transfer_settlement(transfer: dict[str, Any]) -> Settlement:
    """Where a transfer object stands: read the same from `GET /v1/transfers/{id}` and from a
    `transfer.*` webhook's `data.object`. Its funds are in the connected account's balance as
    soon as it exists; a reversed transfer took them back. A partial reversal
    (`amount_reversed` above 0, `reversed` still false) is not a failure of the payout."""
    if transfer.get("reversed") is True:
        return Settlement("failed", "stripe: transfer reversed")
    return Settlement("settled")


def _json(response: httpx.Response) -> dict[str, Any]:
    return json_object("stripe", response)


def _error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    error = error_body(response).get("error")
    detail: dict[str, Any] = error if isinstance(error, dict) else {}
    kind = str(detail.get("type") or "unknown_error")
    code = str(detail.get("code") or detail.get("decline_code") or "")
    # Stripe's `message` can quote request parameters (the destination among them), so only
    # the type, code and offending parameter name are reported.
    param = str(detail.get("param") or "")
    reason = f"stripe: {status} {kind}" + (f" {code}" if code else "")
    if param:
        reason += f" (param {param})"
    retryable, not_executed = ERRORS.get(status, unlisted_status(status))
    if kind == "idempotency_error" and status != 409:
        not_executed = False  # the key's first request may have paid
    should_retry = response.headers.get("Stripe-Should-Retry", "").lower()
    if should_retry in {"true", "false"}:
        retryable = should_retry == "true"
    return ProviderError(reason, retryable=retryable, not_executed=not_executed)


def _check_echo(body: dict[str, Any], amount: Money) -> None:
    """Refuse an answer for another amount: it would mean the key was reused for other money."""
    echoed_amount, echoed_currency = body.get("amount"), body.get("currency")
    if echoed_amount is None and echoed_currency is None:
        return
    if echoed_amount != amount.minor_units or str(echoed_currency).upper() != amount.currency:
        raise ProviderError(
            "stripe: transfer answered for a different amount or currency", retryable=False
        )
