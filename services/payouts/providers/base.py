"""The provider port: send money once per idempotency key, then report its settlement."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

import httpx
from pydantic import SecretStr

from shared.contract.money import Money


@dataclass(frozen=True)
class TransferRequest:
    """Pay `amount` to `destination` (a provider token; never logged, never in repr).

    `idempotency_key` is the payout id: a provider receiving it twice moves money once.
    """

    idempotency_key: str
    amount: Money
    destination: SecretStr = field(repr=False)
    method: str
    description: str


@dataclass(frozen=True)
class TransferAccepted:
    provider_ref: str
    replayed: bool = False  # the provider answered from its idempotency record


class ProviderError(Exception):
    """A transfer the provider did not accept. `retryable` says whether the same request may
    succeed later (outage, rate limit, concurrent use of the key) or never will (refused).
    `not_executed` says the error proves no money moved (the request was refused before
    anything was executed, or never reached the rail): only then may the payout go to another
    rail. A timeout or an answer that may follow execution leaves it False.

    The message names the provider's error code and status, never the destination.
    """

    def __init__(self, reason: str, *, retryable: bool, not_executed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.not_executed = not_executed


SettlementState = Literal["pending", "settled", "failed"]


@dataclass(frozen=True)
class Settlement:
    state: SettlementState
    reason: str | None = None


class PayoutProvider(Protocol):
    name: str

    async def send(self, request: TransferRequest) -> TransferAccepted:
        """Move the money (once per idempotency key); raises ProviderError."""
        ...

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        """The transfer made earlier under `request.idempotency_key` (or the rail's
        equivalent), or None when the rail has none: asked before sending again after an
        attempt whose outcome is unknown (a timeout), so nothing is resent blindly. Raises
        ProviderError if it cannot tell."""
        ...

    async def settlement(self, provider_ref: str) -> Settlement:
        """Where a transfer accepted earlier stands; raises ProviderError if it cannot tell."""
        ...

    async def aclose(self) -> None: ...


class Connection(TypedDict, total=False):
    """How a rail reaches its API, the keywords every HTTP rail's constructor takes: its
    address (default: the rail's `base_url`), the time one call may take (10 s), and an
    httpx transport to use instead of the network."""

    base_url: str
    timeout_seconds: float
    transport: httpx.AsyncBaseTransport | None


class HttpRail:
    """What every HTTP rail shares: one client to its API, closed by `aclose`, and the
    reading of a request that got no answer. A subclass sets `name` and `base_url` (its
    API's public address)."""

    name: str
    base_url: str

    def __init__(self, connection: Connection, **client_options: Any) -> None:
        self._client = httpx.AsyncClient(
            base_url=connection.get("base_url", self.base_url),
            timeout=connection.get("timeout_seconds", 10.0),
            transport=connection.get("transport"),
            **client_options,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self, method: str, path: str, *, step: str = "", nothing_sent: bool = False, **options: Any
    ) -> httpx.Response:
        """The rail's answer to `method path`, whatever its status. A network error is a
        retryable ProviderError naming the error class alone (no URL or body): the request
        may or may not have reached the rail, so only a retry with the same idempotency key
        is safe. It proves nothing was executed when the connection was refused (the request
        never reached the rail) or when the caller says the step moves no money
        (`nothing_sent`). `step`, if given, is named in the reason."""
        try:
            return await self._client.request(method, path, **options)
        except httpx.TransportError as error:
            raise ProviderError(
                f"{self.name}: network error {type(error).__name__}"
                + (f" ({step})" if step else ""),
                retryable=True,
                not_executed=nothing_sent or isinstance(error, httpx.ConnectError),
            ) from None


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a rail's error answer; an empty one when the answer is anything else
    (the classification then goes by the status alone)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def unlisted_status(status: int) -> tuple[bool, bool]:
    """(retryable, nothing executed) for an error status a rail's `ERRORS` does not list: a 4xx
    was refused before execution and would be again; a 5xx may follow execution, and may pass
    when retried."""
    return status >= 500, status < 500


def json_object(
    rail: str, response: httpx.Response, parse: Callable[[bytes], object] = json.loads
) -> dict[str, Any]:
    """The JSON object a rail answered, read with `parse`; anything else is a retryable
    ProviderError (the rail may answer properly next time)."""
    try:
        body = parse(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(
            f"{rail}: {response.status_code} answer is not a JSON object", retryable=True
        )
    return body
