"""A provider that moves no real money: configurable latency and failure rate, seeded.

A destination ending in `CLOSED_SUFFIX` (`:closed`) stands for an account its bank has closed:
a transfer to it is accepted, then reported returned by the first settlement check after it
would have settled, as a real rail reports a bounce. `make demo` pays such a creator, who then
fixes the account.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass

from services.payouts.providers.base import (
    ProviderError,
    Settlement,
    TransferAccepted,
    TransferRequest,
)
from shared.contract.money import Money

CLOSED_SUFFIX = ":closed"
RETURNED_REASON = "sandbox: returned by the receiving bank (account closed)"


@dataclass(frozen=True)
class SandboxTransfer:
    amount: Money
    accepted_at: float  # time.monotonic()
    returned: bool = False  # sent to a closed account: it comes back


class SandboxProvider:
    """Accepts transfers after `latency_seconds`; fails a `failure_rate` share of calls with a
    retryable error (drawn from a `seed`ed generator, so runs repeat). Idempotent per key: a
    repeated key returns the first transfer's reference. Transfers settle `settle_after_seconds`
    after acceptance. It keeps its records in memory only; a reference it does not know (from
    before a restart) reports as settled.
    """

    name = "sandbox"

    def __init__(
        self,
        *,
        latency_seconds: float = 0.0,
        failure_rate: float = 0.0,
        seed: int = 0,
        settle_after_seconds: float = 0.0,
    ) -> None:
        if not 0 <= failure_rate <= 1:
            raise ValueError(f"failure_rate must be within [0, 1], got {failure_rate}")
        self.latency_seconds = latency_seconds
        self.failure_rate = failure_rate
        self.settle_after_seconds = settle_after_seconds
        self._random = random.Random(seed)
        self.transfers: dict[str, SandboxTransfer] = {}  # by idempotency key
        self._by_ref: dict[str, SandboxTransfer] = {}
        self.calls = 0

    @staticmethod
    def reference(idempotency_key: str) -> str:
        return "sbx_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]

    async def send(self, request: TransferRequest) -> TransferAccepted:
        self.calls += 1
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        known = self.transfers.get(request.idempotency_key)
        if known is not None:
            if known.amount != request.amount:
                raise ProviderError(
                    "sandbox: idempotency key reused with a different amount", retryable=False
                )
            return TransferAccepted(self.reference(request.idempotency_key), replayed=True)
        if self.failure_rate and self._random.random() < self.failure_rate:
            raise ProviderError("sandbox: simulated outage (503)", retryable=True)
        closed = request.destination.get_secret_value().endswith(CLOSED_SUFFIX)
        transfer = SandboxTransfer(request.amount, time.monotonic(), returned=closed)
        reference = self.reference(request.idempotency_key)
        self.transfers[request.idempotency_key] = transfer
        self._by_ref[reference] = transfer
        return TransferAccepted(reference)

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        if request.idempotency_key not in self.transfers:
            return None
        return TransferAccepted(self.reference(request.idempotency_key), replayed=True)

    async def settlement(self, provider_ref: str) -> Settlement:
        transfer = self._by_ref.get(provider_ref)
        if transfer is None:
            return Settlement("settled")
        age = time.monotonic() - transfer.accepted_at
        if age < self.settle_after_seconds:
            return Settlement("pending")
        return Settlement("failed", RETURNED_REASON) if transfer.returned else Settlement("settled")

    async def aclose(self) -> None:
        return None
