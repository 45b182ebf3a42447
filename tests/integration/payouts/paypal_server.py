"""A local server that behaves like PayPal's documented Payouts API, for tests.

`POST /v1/oauth2/token` (basic auth with the client id and secret, `grant_type=
client_credentials`) gives a bearer token; `POST /v1/payments/payouts` creates a batch
(`sender_batch_header`, `items`, at most 15,000) and answers 201 with its `batch_header`
(`PENDING`); `GET /v1/payments/payouts/{payout_batch_id}` shows the batch and each item's
`transaction_status`. A `sender_batch_id` used before is refused with an error linking to the
original batch, and never paid again. Errors are `{"name", "message", "debug_id", "details",
"links"}`. Items to `receivers` succeed when first read after creation; to `blocked` they fail
(`RECEIVER_ACCOUNT_LOCKED`); to anyone else they stay `UNCLAIMED`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from tests.integration.payouts.http_fake import Answer, FakeHttpServer, Request

MAX_ITEMS = 15_000
_DECIMALS = {"JPY": 0, "HUF": 0, "TWD": 0}


@dataclass
class FakePayPal(FakeHttpServer):
    client_id: str = "paypal-client"
    client_secret: str = "paypal-secret"
    receivers: set[str] = field(default_factory=lambda: {"creator@example.com"})
    blocked: set[str] = field(default_factory=set)
    balance: dict[str, Decimal] = field(default_factory=dict)  # currency -> available
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_sender_batch_id: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    failures: list[tuple[int, str]] = field(default_factory=list)
    paid: list[tuple[str, str, str]] = field(default_factory=list)  # (sender_item_id, value, cur)

    def fail_next(self, status: int, name: str) -> None:
        """The next payout request (not a token request) answers this error, unexecuted."""
        self.failures.append((status, name))

    def handle(self, request: Request) -> Answer:
        if request.path == "/v1/oauth2/token" and request.method == "POST":
            return self._token(request)
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return _error(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        if self.failures:
            return _error(*self.failures.pop(0), "injected failure")
        if request.method == "POST" and request.path == "/v1/payments/payouts":
            return self._create(request.json())
        if request.method == "GET" and request.path.startswith("/v1/payments/payouts/"):
            batch = self.batches.get(request.path.rsplit("/", 1)[1])
            if batch is None:
                return _error(404, "INVALID_RESOURCE_ID", "Requested resource ID was not found")
            self._process(batch)
            return 200, batch, {}
        return _error(404, "NOT_FOUND", "Not found")

    def _token(self, request: Request) -> Answer:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return (
                401,
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                {},
            )
        if dict(parse_qsl(request.body.decode())).get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        token = "A21" + secrets.token_hex(16)
        self.tokens.add(token)
        body = {
            "scope": "https://uri.paypal.com/payments/payouts",
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 32400,
        }
        return 200, body, {}

    def _create(self, body: Any) -> Answer:
        header = body.get("sender_batch_header") if isinstance(body, dict) else None
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(header, dict) or not isinstance(items, list) or not items:
            return _error(400, "VALIDATION_ERROR", "Invalid request - see details")
        if len(items) > MAX_ITEMS:
            return _error(400, "VALIDATION_ERROR", "Too many items")
        sender_batch_id = str(header.get("sender_batch_id") or "")
        if sender_batch_id in self.by_sender_batch_id:
            original = self.by_sender_batch_id[sender_batch_id]
            link = {
                "href": f"{self.base_url}/v1/payments/payouts/{original}",
                "rel": "self",
                "method": "GET",
            }
            error = _error(
                400,
                "USER_BUSINESS_ERROR",
                f"Batch with given sender_batch_id already exists: {sender_batch_id}",
            )
            error[1]["links"] = [link]
            return error
        needed: dict[str, Decimal] = {}
        for item in items:
            amount = item.get("amount") or {}
            value, currency = str(amount.get("value", "")), str(amount.get("currency", ""))
            decimals = _DECIMALS.get(currency, 2)
            try:
                parsed = Decimal(value)
            except ArithmeticError:
                return _error(400, "VALIDATION_ERROR", "Invalid amount")
            exponent = parsed.as_tuple().exponent
            if parsed <= 0 or not isinstance(exponent, int) or -exponent > decimals:
                return _error(400, "VALIDATION_ERROR", "Currency does not support decimals")
            if not item.get("receiver"):
                return _error(400, "VALIDATION_ERROR", "Receiver is required")
            needed[currency] = needed.get(currency, Decimal(0)) + parsed
        for currency, total in needed.items():
            if currency in self.balance and self.balance[currency] < total:
                return _error(422, "INSUFFICIENT_FUNDS", "Sender has insufficient funds")
        for currency, total in needed.items():
            if currency in self.balance:
                self.balance[currency] -= total
        batch_id = secrets.token_hex(7).upper()[:13]
        batch = {
            "batch_header": {
                "payout_batch_id": batch_id,
                "batch_status": "PENDING",
                "sender_batch_header": header,
            },
            "items": [
                {
                    "payout_item_id": secrets.token_hex(7).upper()[:13],
                    "transaction_status": "PENDING",
                    "payout_batch_id": batch_id,
                    "payout_item": item,
                }
                for item in items
            ],
        }
        for item in items:
            amount = item["amount"]
            self.paid.append((str(item.get("sender_item_id")), amount["value"], amount["currency"]))
        self.batches[batch_id] = batch
        self.by_sender_batch_id[sender_batch_id] = batch_id
        answer = {"batch_header": batch["batch_header"], "links": []}
        return 201, answer, {}

    def _process(self, batch: dict[str, Any]) -> None:
        """Items move on when the batch is read: paid, refused, or waiting to be claimed."""
        for item in batch["items"]:
            if item["transaction_status"] != "PENDING":
                continue
            receiver = item["payout_item"]["receiver"]
            if receiver in self.blocked:
                item["transaction_status"] = "FAILED"
                item["errors"] = {"name": "RECEIVER_ACCOUNT_LOCKED", "message": "locked"}
            elif receiver in self.receivers:
                item["transaction_status"] = "SUCCESS"
            else:
                item["transaction_status"] = "UNCLAIMED"
        batch["batch_header"]["batch_status"] = "SUCCESS"

    def set_item_status(self, batch_id: str, status: str) -> None:
        for item in self.batches[batch_id]["items"]:
            item["transaction_status"] = status


def _error(status: int, name: str, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    body: dict[str, Any] = {
        "name": name,
        "message": message,
        "debug_id": secrets.token_hex(6),
        "details": [],
        "links": [],
    }
    return status, body, {}
