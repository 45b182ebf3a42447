"""Wise transfers over HTTP: quote, transfer, fund, with a personal or business API token.

Requests (bearer token): `POST /v3/profiles/{profileId}/quotes` (source and target currency the
payout's, `targetAmount` its amount: the conversion was done and recorded by us, so the
platform funds from its Wise balance in that currency), `POST /v1/transfers` (`targetAccount`
the recipient account id, `quoteUuid`, `customerTransactionId`), then
`POST /v3/profiles/{profileId}/transfers/{transferId}/payments` with `{"type": "BALANCE"}`;
`GET /v1/transfers/{transferId}` for the transfer's status.

The amount is written as an exact JSON number (never through a float). Only funding moves
money. `customerTransactionId` (a UUID derived from the idempotency key) makes
a repeated transfer creation return the first transfer, and Wise refuses to fund a transfer
twice (422 `transfer.invalid-state`), which is read as "funded already" after checking the
transfer's status. `lookup`, asked after an attempt whose outcome is unknown, creates the
transfer again under the same `customerTransactionId` (which moves nothing) and reports it
found once it left `incoming_payment_waiting`; otherwise nothing was funded.

The destination is the recipient account, written `recipient:<id>` (Wise's numeric id). It is
never logged nor put in an error.

Errors are JSON `{"errors": [{"code", "message", "path"}]}` (or `{"error", ...}` for the
token); `ERRORS` classifies them (retryable, and whether the answer proves nothing was
executed). Everything that fails before the funding call proves nothing was executed:

| answer | retryable | nothing executed |
|---|---|---|
| quote or transfer creation: 400, 404, 422 (validation, route, recipient) | no | yes |
| any step: 401, 403 (token invalid or lacking permission: an operator can fix it) | yes | yes |
| any step: 429 | yes | yes |
| quote or transfer creation: 5xx, timeouts, network errors | yes | yes |
| funding: `REJECTED` `transfer.insufficient_funds` (the balance can be topped up) | yes | yes |
| funding: other `REJECTED` codes | no | yes |
| funding: 422 `transfer.invalid-state` on a transfer that is `cancelled` | no | yes |
| funding: 422 `transfer.invalid-state` on any other status (funded already) | accepted | |
| funding: 400, 404, other 422 | no | yes |
| funding: 5xx, timeouts and network errors other than a refused connection | yes | no |
| connection refused | yes | yes |

Statuses (`settlement`): `outgoing_payment_sent` is settled (a bounce weeks later is reported
by the rail's webhooks, not polled); `bounced_back`, `funds_refunded`, `cancelled` and
`charged_back` are failed; every other status is pending.
"""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from functools import partial
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

# status -> (retryable, nothing executed), for the quote and transfer creation steps and for
# funding; statuses not listed: 4xx (False, True), 5xx (True, quote/create: True, fund: False).
ERRORS: Final[dict[int, tuple[bool, bool]]] = {
    400: (False, True),
    401: (True, True),
    403: (True, True),
    404: (False, True),
    422: (False, True),
    429: (True, True),
}
RETRYABLE_FUNDING_CODES: Final = frozenset({"transfer.insufficient_funds"})
UNFUNDED: Final = "incoming_payment_waiting"
SETTLED: Final = frozenset({"outgoing_payment_sent"})
FAILED: Final = frozenset({"bounced_back", "funds_refunded", "cancelled", "charged_back"})
_NAMESPACE: Final = uuid.UUID("1f0c3a52-7a0e-4a43-9d3c-2b7f4e3f9c11")
_RECIPIENT: Final = re.compile(r"recipient:(\d{1,18})")


def customer_transaction_id(idempotency_key: str) -> str:
    """Wise wants a UUID: one derived from the key, the same on every attempt of it."""
    return str(uuid.uuid5(_NAMESPACE, idempotency_key))


class WiseTransfers(HttpRail):
    """A `PayoutProvider` for Wise, paying from the profile's balance."""

    name = "wise"
    base_url = "https://api.wise.com"

    def __init__(self, api_token: str, profile_id: int, **connection: Unpack[Connection]) -> None:
        super().__init__(connection, headers={"Authorization": f"Bearer {api_token}"})
        self._profile = profile_id

    async def send(self, request: TransferRequest) -> TransferAccepted:
        transfer = await self._create(request)
        reference = str(transfer["id"])
        if transfer.get("status") != UNFUNDED:
            return _accepted(transfer, request, replayed=True)
        response = await self._call(
            "POST",
            f"/v3/profiles/{self._profile}/transfers/{reference}/payments",
            step="fund",
            json={"type": "BALANCE"},
            invalid_state_ok=True,
        )
        if response.status_code == 422:  # transfer.invalid-state: funded already, or cancelled
            current = _json(await self._call("GET", f"/v1/transfers/{reference}", step="read"))
            if current.get("status") == "cancelled":
                raise ProviderError(
                    "wise: 422 transfer.invalid-state (cancelled)",
                    retryable=False,
                    not_executed=True,
                )
            return _accepted(current, request, replayed=True)
        payment = _json(response)
        if payment.get("status") != "COMPLETED":
            code = str(payment.get("errorCode") or "unknown")
            raise ProviderError(
                f"wise: funding {payment.get('status')} {code}",
                retryable=code in RETRYABLE_FUNDING_CODES,
                not_executed=True,
            )
        return _accepted(transfer, request, replayed=False)

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        transfer = await self._create(request)
        if transfer.get("status") == UNFUNDED:
            return None  # created, never funded: nothing moved
        return _accepted(transfer, request, replayed=True)

    async def settlement(self, provider_ref: str) -> Settlement:
        transfer = _json(await self._call("GET", f"/v1/transfers/{provider_ref}", step="read"))
        return status_settlement(str(transfer.get("status") or ""))

    async def _create(self, request: TransferRequest) -> dict[str, Any]:
        """The transfer of this key, created unless it exists (nothing funded)."""
        match = _RECIPIENT.fullmatch(request.destination.get_secret_value().strip())
        if match is None:
            raise ProviderError(
                "wise: destination is not a recipient account (recipient:<id>)",
                retryable=False,
                not_executed=True,
            )
        recipient = int(match.group(1))
        currency = request.amount.currency
        quote = _json(
            await self._call(
                "POST",
                f"/v3/profiles/{self._profile}/quotes",
                step="quote",
                content=_exact_json(
                    {
                        "sourceCurrency": currency,
                        "targetCurrency": currency,
                        "targetAmount": request.amount.amount,
                        "targetAccount": recipient,
                        "payOut": "BANK_TRANSFER",
                    }
                ),
                headers={"Content-Type": "application/json"},
            )
        )
        if not isinstance(quote.get("id"), str):
            raise ProviderError(
                "wise: quote answer without an id", retryable=True, not_executed=True
            )
        transfer = _json(
            await self._call(
                "POST",
                "/v1/transfers",
                step="transfer",
                json={
                    "targetAccount": recipient,
                    "quoteUuid": quote["id"],
                    "customerTransactionId": customer_transaction_id(request.idempotency_key),
                    "details": {"reference": request.description[:35]},
                },
            )
        )
        if transfer.get("id") is None:
            raise ProviderError(
                "wise: transfer answer without an id", retryable=True, not_executed=True
            )
        return transfer

    async def _call(
        self, method: str, path: str, *, step: str, invalid_state_ok: bool = False, **options: Any
    ) -> httpx.Response:
        before_funding = step in {"quote", "transfer"}
        # Before funding nothing can move; a funding call may have gone through unless the
        # connection was refused.
        response = await self._request(
            method, path, step=step, nothing_sent=before_funding, **options
        )
        if response.is_success:
            return response
        code = _code(response)
        if invalid_state_ok and response.status_code == 422 and code == "transfer.invalid-state":
            return response
        status = response.status_code
        retryable, not_executed = ERRORS.get(status, unlisted_status(status))
        if before_funding:
            not_executed = True
        reason = f"wise: {status} {code or 'error'} ({step})"
        raise ProviderError(reason, retryable=retryable, not_executed=not_executed)


def _code(response: httpx.Response) -> str:
    body = error_body(response)
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        # Wise's `message` can quote account details: only the code is reported.
        return str(errors[0].get("code") or "")
    return str(body.get("error") or "")


def _exact_json(payload: dict[str, Any]) -> bytes:
    """JSON with each Decimal written as the exact JSON number it is, never through a float
    (an amount may have more significant digits than a float keeps)."""
    numbers: dict[str, str] = {}

    def placeholder(value: object) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(f"{type(value).__name__} is not JSON")
        token = f"\u0000decimal{len(numbers)}\u0000"
        numbers[json.dumps(token)] = format(value, "f")
        return token

    text = json.dumps(payload, default=placeholder)
    for quoted, number in numbers.items():
        text = text.replace(quoted, number)
    return text.encode()


def status_settlement(status: str) -> Settlement:
    """Where a transfer in `status` stands: read the same from a polled transfer and from a
    `transfers#state-change` webhook's `current_state`."""
    if status in SETTLED:
        return Settlement("settled")
    if status in FAILED:
        return Settlement("failed", f"wise: transfer {status}")
    return Settlement("pending")


def _json(response: httpx.Response) -> dict[str, Any]:
    # Numbers read as Decimal: the amounts Wise echoes are compared exactly.
    return json_object("wise", response, partial(json.loads, parse_float=Decimal))


def _accepted(
    transfer: dict[str, Any], request: TransferRequest, *, replayed: bool
) -> TransferAccepted:
    value, currency = transfer.get("targetValue"), transfer.get("targetCurrency")
    if value is not None and (
        currency != request.amount.currency
        or Money.of(format(Decimal(str(value)), "f"), request.amount.currency) != request.amount
    ):
        raise ProviderError(
            "wise: transfer answered for a different amount or currency", retryable=False
        )
    return TransferAccepted(str(transfer["id"]), replayed=replayed)
