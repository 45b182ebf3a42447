"""A local HTTP server that behaves like Stripe's documented transfers API, for tests.

POST /v1/transfers (form body: amount, currency, destination, ...), GET /v1/transfers/{id} and
GET /v1/transfers (newest first, `destination`, `limit`, `starting_after`, `has_more`),
HTTP basic auth with the secret key, JSON errors `{"error": {"type", "code", "message",
"param"}}`, and idempotency as documented: the first response to an `Idempotency-Key` is
stored and replayed with `Idempotent-Replayed: true`; the same key with other parameters is a
400 `idempotency_error`. Failures can be queued with `fail_next(status, ...)`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tests.integration.payouts.http_fake import Answer, FakeHttpServer, Request


@dataclass
class StoredResponse:
    status: int
    body: dict[str, Any]
    params: dict[str, str]


@dataclass
class FakeStripe(FakeHttpServer):
    api_key: str = "sk_test_local"
    accounts: set[str] = field(default_factory=lambda: {"acct_1LocalCreator"})
    balance_minor: int = 10**12
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, StoredResponse] = field(default_factory=dict)
    failures: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)

    def fail_next(self, status: int, error_type: str = "api_error", **headers: str) -> None:
        self.failures.append((status, error_type, headers))

    def handle(self, request: Request) -> Answer:
        status, payload, extra = self._handle(request)
        return status, payload, {"Request-Id": "req_local", **extra}

    def _handle(self, request: Request) -> Answer:
        method, path, headers = request.method, request.path, request.headers
        params = dict(parse_qsl(request.body.decode()))
        expected = "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()
        if headers.get("authorization") != expected:
            return _error(401, "invalid_request_error", None, "Invalid API Key provided")
        if self.failures:
            status, kind, extra = self.failures.pop(0)
            return (*_error(status, kind, None, "injected failure")[:2], extra)
        if method == "GET" and path == "/v1/transfers":
            return self._list(dict(parse_qsl(request.query)))
        if method == "GET" and path.startswith("/v1/transfers/"):
            transfer = self.transfers.get(path.rsplit("/", 1)[1])
            if transfer is None:
                return _error(404, "invalid_request_error", "resource_missing", "No such transfer")
            return 200, transfer, {}
        if method != "POST" or path != "/v1/transfers":
            return _error(404, "invalid_request_error", None, "Unrecognized request URL")
        key = headers.get("idempotency-key")
        if key is not None and key in self.idempotency:
            stored = self.idempotency[key]
            if stored.params != params:
                return _error(
                    400,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters",
                )
            return stored.status, stored.body, {"Idempotent-Replayed": "true"}
        status, payload, extra = self._create(params)
        if key is not None:
            self.idempotency[key] = StoredResponse(status, payload, params)
        return status, payload, extra

    def _list(self, query: dict[str, str]) -> Answer:
        listed = [
            t
            for t in reversed(self.transfers.values())
            if "destination" not in query or t["destination"] == query["destination"]
        ]
        if "starting_after" in query:
            ids = [t["id"] for t in listed]
            if query["starting_after"] not in ids:
                return _error(400, "invalid_request_error", "resource_missing", "No such object")
            listed = listed[ids.index(query["starting_after"]) + 1 :]
        limit = int(query.get("limit", "10"))
        page = {"object": "list", "url": "/v1/transfers", "data": listed[:limit]}
        return 200, {**page, "has_more": len(listed) > limit}, {}

    def _create(self, params: dict[str, str]) -> Answer:
        for name in ("amount", "currency", "destination"):
            if not params.get(name):
                return _error(
                    400, "invalid_request_error", "parameter_missing", f"Missing {name}", name
                )
        if not params["amount"].isdigit() or int(params["amount"]) <= 0:
            return _error(
                400,
                "invalid_request_error",
                "parameter_invalid_integer",
                "Invalid integer",
                "amount",
            )
        if params["currency"] != params["currency"].lower():
            return _error(
                400, "invalid_request_error", "invalid_currency", "Invalid currency", "currency"
            )
        destination = params["destination"]
        if destination not in self.accounts:
            return _error(
                400,
                "invalid_request_error",
                "resource_missing",
                f"No such destination: '{destination}'",
                "destination",
            )
        amount = int(params["amount"])
        if amount > self.balance_minor:
            return _error(
                400,
                "invalid_request_error",
                "balance_insufficient",
                "You have insufficient funds in your Stripe account.",
            )
        self.balance_minor -= amount
        transfer = {
            "id": "tr_" + secrets.token_hex(8),
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "currency": params["currency"],
            "destination": destination,
            "description": params.get("description"),
            "metadata": {k[9:-1]: v for k, v in params.items() if k.startswith("metadata[")},
            "reversed": False,
        }
        self.transfers[transfer["id"]] = transfer
        return 200, transfer, {}


def _error(
    status: int, kind: str, code: str | None, message: str, param: str | None = None
) -> Answer:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return status, {"error": error}, {}
