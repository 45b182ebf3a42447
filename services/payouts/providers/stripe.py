"""Stripe Connect transfers over HTTP (`POST /v1/transfers`, `GET /v1/transfers/{id}`).

Follows Stripe's documented HTTP behaviour: form-encoded bodies, the amount as an integer in
the currency's minor unit, the currency in lower case, the connected account id as
`destination`, and an `Idempotency-Key` header (our payout id) so a retried request never
moves money twice. Errors are JSON `{"error": {"type", "code", "message", ...}}`.

How responses are classified:

- 2xx: accepted (`Idempotent-Replayed: true` marks an answer from Stripe's idempotency record);
- `Stripe-Should-Retry: true|false`, when present, decides;
- 409 (the key is in use by a concurrent request), 429 (rate limited), 500/502/503/504 and
  network errors: retryable with the same key (a 500 is indeterminate; only the same key is
  safe);
- 401/403 (key missing or lacking permission): retryable, since an operator can fix the key
  while the payout waits;
- 400, 402, 404 and other 4xx: refused; the same request with the same key cannot succeed.
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from services.payouts.providers.base import (
    ProviderError,
    Settlement,
    TransferAccepted,
    TransferRequest,
)
from shared.contract.money import Money

_RETRYABLE_STATUS: Final = frozenset({401, 403, 409, 429, 500, 502, 503, 504})
_API_VERSION: Final = "2025-04-30.basil"


class StripeTransfers:
    """A `PayoutProvider` for Stripe Connect. `api_key` is the platform's secret key."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.stripe.com",
        timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            auth=httpx.BasicAuth(api_key, ""),
            headers={"Stripe-Version": _API_VERSION},
            timeout=timeout_seconds,
            transport=transport,
        )

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

    async def settlement(self, provider_ref: str) -> Settlement:
        response = await self._call("GET", f"/v1/transfers/{provider_ref}")
        body = _json(response)
        if body.get("reversed") is True:
            return Settlement("failed", "stripe: transfer reversed")
        # Funds of a transfer are in the connected account's balance as soon as it exists.
        return Settlement("settled")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **options)
        except httpx.TransportError as error:
            # The request may or may not have reached Stripe: only a retry with the same
            # idempotency key is safe. The error class alone is reported (no URL or body).
            raise ProviderError(
                f"stripe: network error {type(error).__name__}", retryable=True
            ) from None
        if response.is_success:
            return response
        raise _error(response)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(
            f"stripe: {response.status_code} answer is not a JSON object", retryable=True
        )
    return body


def _error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    detail: dict[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            detail = body["error"]
    except ValueError:
        pass
    kind = str(detail.get("type") or "unknown_error")
    code = str(detail.get("code") or detail.get("decline_code") or "")
    # Stripe's `message` can quote request parameters (the destination among them), so only
    # the type, code and offending parameter name are reported.
    param = str(detail.get("param") or "")
    reason = f"stripe: {status} {kind}" + (f" {code}" if code else "")
    if param:
        reason += f" (param {param})"
    should_retry = response.headers.get("Stripe-Should-Retry", "").lower()
    if should_retry in {"true", "false"}:
        retryable = should_retry == "true"
    else:
        retryable = status in _RETRYABLE_STATUS
    return ProviderError(reason, retryable=retryable)


def _check_echo(body: dict[str, Any], amount: Money) -> None:
    """Refuse an answer for another amount: it would mean the key was reused for other money."""
    echoed_amount, echoed_currency = body.get("amount"), body.get("currency")
    if echoed_amount is None and echoed_currency is None:
        return
    if echoed_amount != amount.minor_units or str(echoed_currency).upper() != amount.currency:
        raise ProviderError(
            "stripe: transfer answered for a different amount or currency", retryable=False
        )
