"""A local HTTP server that behaves like Stripe's documented transfers API, for tests.

POST /v1/transfers (form body: amount, currency, destination, ...), GET /v1/transfers/{id} and
GET /v1/transfers (newest first, `destination`, `limit`, `starting_after`, `has_more`),
HTTP basic auth with the secret key, JSON errors `{"error": {"type", "code", "message",
"param"}}`, and idempotency as documented: the first response to an `Idempotency-Key` is
stored and replayed with `Idempotent-Replayed: true`; the same key with other parameters is a
400 `idempotency_error`. Failures can be queued with `fail_next(status, ...)`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class StoredResponse:
    status: int
    body: dict[str, Any]
    params: dict[str, str]


@dataclass
class FakeStripe:
    api_key: str = "sk_test_local"
    accounts: set[str] = field(default_factory=lambda: {"acct_1LocalCreator"})
    balance_minor: int = 10**12
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, StoredResponse] = field(default_factory=dict)
    failures: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, status: int, error_type: str = "api_error", **headers: str) -> None:
        self.failures.append((status, error_type, headers))

    async def __aenter__(self) -> FakeStripe:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, path, _ = request_line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, value = line.decode().split(":", 1)
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, payload, extra = self._handle(method, path, headers, body.decode())
                data = json.dumps(payload).encode()
                head = [
                    f"HTTP/1.1 {status} X",
                    "Content-Type: application/json",
                    f"Content-Length: {len(data)}",
                    "Request-Id: req_local",
                ]
                head += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        params = dict(parse_qsl(body))
        self.requests.append((method, path, headers))
        expected = "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()
        if headers.get("authorization") != expected:
            return _error(401, "invalid_request_error", None, "Invalid API Key provided")
        if self.failures:
            status, kind, extra = self.failures.pop(0)
            return (*_error(status, kind, None, "injected failure")[:2], extra)
        if method == "GET" and (path == "/v1/transfers" or path.startswith("/v1/transfers?")):
            return self._list(dict(parse_qsl(path.partition("?")[2])))
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

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
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

    def _create(self, params: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
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
) -> tuple[int, dict[str, Any], dict[str, str]]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return status, {"error": error}, {}
