"""A local server that behaves like Wise's documented transfer API, for tests.

Bearer-token auth; `POST /v3/profiles/{profileId}/quotes` answers a quote (a UUID `id`);
`POST /v1/transfers` creates a transfer (`targetAccount`, `quoteUuid`, `customerTransactionId`
a UUID) in `incoming_payment_waiting`, or returns the transfer already created under that
`customerTransactionId`; `POST /v3/profiles/{profileId}/transfers/{transferId}/payments` with
`{"type": "BALANCE"}` funds it from the profile's balance (`COMPLETED`, or `REJECTED` with
`transfer.insufficient_funds`, the transfer left waiting); funding a transfer twice is 422
`transfer.invalid-state`. `GET /v1/transfers/{transferId}` shows its status: a funded transfer
is `processing` when first read, then `outgoing_payment_sent` (`bounced_back` for a recipient
in `bouncing`). Errors are `{"errors": [{"code", "message", "path"}]}`.
"""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.integration.payouts.http_fake import Answer, FakeHttpServer, Request

_FUND = re.compile(r"/v3/profiles/(\d+)/transfers/(\d+)/payments")
_QUOTES = re.compile(r"/v3/profiles/(\d+)/quotes")


@dataclass
class FakeWise(FakeHttpServer):
    api_token: str = "wise-token"
    profile_id: int = 4242
    recipients: set[int] = field(default_factory=lambda: {148149706})
    bouncing: set[int] = field(default_factory=set)
    balance: dict[str, Decimal] = field(default_factory=dict)  # currency -> available
    quotes: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[int, dict[str, Any]] = field(default_factory=dict)
    by_customer_id: dict[str, int] = field(default_factory=dict)
    funded: list[int] = field(default_factory=list)
    failures: list[tuple[str, int, str]] = field(default_factory=list)  # (step, status, code)
    # step -> seconds: the next request of that step is executed, its answer held back.
    stalls: dict[str, float] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(50_000_001))

    def fail_next(self, step: str, status: int, code: str) -> None:
        """The next request of `step` (quote, transfer, fund, read) answers this error."""
        self.failures.append((step, status, code))

    def handle(self, request: Request) -> Answer:
        if request.headers.get("authorization") != f"Bearer {self.api_token}":
            return 401, {"error": "invalid_token", "error_description": "Invalid token"}, {}
        step = _step(request)
        if step in self.stalls:
            self.stall_next(self.stalls.pop(step))
        for i, (failing, status, code) in enumerate(self.failures):
            if failing == step:
                del self.failures[i]
                return _error(status, code)
        if step == "quote":
            return self._quote(request)
        if step == "transfer":
            return self._transfer(request.json())
        if step == "fund":
            return self._fund(request)
        if step == "read":
            transfer = self.transfers.get(int(request.path.rsplit("/", 1)[1]))
            if transfer is None:
                return _error(404, "transfer.not-found")
            seen = dict(transfer)
            self._progress(transfer)
            return 200, seen, {}
        return _error(404, "not.found")

    def _quote(self, request: Request) -> Answer:
        match = _QUOTES.fullmatch(request.path)
        assert match is not None
        if int(match.group(1)) != self.profile_id:
            return _error(403, "profile.not-accessible-for-user")
        body = request.json()
        source, target = body.get("sourceCurrency"), body.get("targetCurrency")
        if not source or not target or body.get("targetAmount") in (None, 0):
            return _error(422, "NOT_VALID")
        quote = {
            "id": str(uuid.uuid4()),
            "sourceCurrency": source,
            "targetCurrency": target,
            "targetAmount": body["targetAmount"],
            "rate": 1,
            "status": "PENDING",
            "payOut": body.get("payOut", "BANK_TRANSFER"),
        }
        self.quotes[quote["id"]] = quote
        return 200, quote, {}

    def _transfer(self, body: dict[str, Any]) -> Answer:
        customer_id = str(body.get("customerTransactionId") or "")
        try:
            uuid.UUID(customer_id)
        except ValueError:
            return _error(422, "NOT_VALID", "customerTransactionId")
        if customer_id in self.by_customer_id:
            return 200, self.transfers[self.by_customer_id[customer_id]], {}
        quote = self.quotes.get(str(body.get("quoteUuid")))
        if quote is None:
            return _error(422, "quote.not.found", "quoteUuid")
        if body.get("targetAccount") not in self.recipients:
            return _error(422, "NOT_VALID", "targetAccount")
        transfer = {
            "id": next(self._ids),
            "targetAccount": body["targetAccount"],
            "quoteUuid": quote["id"],
            "status": "incoming_payment_waiting",
            "reference": (body.get("details") or {}).get("reference", ""),
            "rate": 1,
            "sourceCurrency": quote["sourceCurrency"],
            "sourceValue": quote["targetAmount"],
            "targetCurrency": quote["targetCurrency"],
            "targetValue": quote["targetAmount"],
            "customerTransactionId": customer_id,
        }
        self.transfers[transfer["id"]] = transfer
        self.by_customer_id[customer_id] = transfer["id"]
        return 200, transfer, {}

    def _fund(self, request: Request) -> Answer:
        match = _FUND.fullmatch(request.path)
        assert match is not None
        if int(match.group(1)) != self.profile_id:
            return _error(403, "transfer.not-accessible-for-user")
        if request.json().get("type") != "BALANCE":
            return _error(422, "payment.type.not.supported")
        transfer = self.transfers.get(int(match.group(2)))
        if transfer is None:
            return _error(404, "transfer.not-found")
        if transfer["status"] != "incoming_payment_waiting":
            return _error(422, "transfer.invalid-state")
        currency, value = transfer["sourceCurrency"], Decimal(str(transfer["sourceValue"]))
        if currency in self.balance and self.balance[currency] < value:
            rejected = {"type": "BALANCE", "status": "REJECTED"}
            return 201, {**rejected, "errorCode": "transfer.insufficient_funds"}, {}
        if currency in self.balance:
            self.balance[currency] -= value
        transfer["status"] = "processing"
        self.funded.append(transfer["id"])
        return 201, {"type": "BALANCE", "status": "COMPLETED", "errorCode": None}, {}

    def _progress(self, transfer: dict[str, Any]) -> None:
        if transfer["status"] == "processing":
            bounced = transfer["targetAccount"] in self.bouncing
            transfer["status"] = "bounced_back" if bounced else "outgoing_payment_sent"


def _step(request: Request) -> str:
    if request.method == "POST" and _QUOTES.fullmatch(request.path):
        return "quote"
    if request.method == "POST" and request.path == "/v1/transfers":
        return "transfer"
    if request.method == "POST" and _FUND.fullmatch(request.path):
        return "fund"
    if request.method == "GET" and request.path.startswith("/v1/transfers/"):
        return "read"
    return "unknown"


def _error(status: int, code: str, path: str = "") -> Answer:
    error = {"code": code, "message": f"{code} (local fake)", "path": path}
    return status, {"errors": [error]}, {}
