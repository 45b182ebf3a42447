"""Which rail pays which payout: the payout account's `method` chooses it.

`stripe` pays through Stripe Connect transfers, `paypal` through PayPal Payouts, `wise` through
Wise transfers; `bank_transfer` has no rail of its own (a bank account is paid through Wise as
a Wise recipient, with the method `wise`). A method whose rail is not configured has no
provider here: its payouts are held (`rail_unavailable`), never sent through another rail.
The sandbox, in development, stands in for every rail.

With a rate limiter (`services/payouts/rate_limit.py`), every call to a rail first waits for
as many tokens as the API requests it usually makes (`REQUESTS_PER_CALL`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal, Protocol

from services.payouts.providers.base import (
    PayoutProvider,
    Settlement,
    TransferAccepted,
    TransferRequest,
)

# The one rail of the releases before rails were chosen by method: payouts attempted then, with
# no rail recorded, were sent through it.
LEGACY_RAIL: Final = "stripe"
RAIL_OF_METHOD: Final[Mapping[str, str]] = {
    "stripe": "stripe",
    "paypal": "paypal",
    "wise": "wise",
}

Call = Literal["send", "lookup", "settlement"]
# The API requests one call usually makes, where it is more than one: a Wise send asks for a
# quote, creates the transfer and funds it; its lookup creates again (quote and transfer), which
# Wise answers with the transfer made before. Every other call is one request.
REQUESTS_PER_CALL: Final[Mapping[str, Mapping[Call, int]]] = {
    "wise": {"send": 3, "lookup": 2},
}


def requests_per_call(rail: str, call: Call) -> int:
    return REQUESTS_PER_CALL.get(rail, {}).get(call, 1)


def largest_call(rail: str) -> int:
    """The most requests one call to `rail` makes: the least its bucket must hold."""
    return max([1, *REQUESTS_PER_CALL.get(rail, {}).values()])


class Limiter(Protocol):
    async def acquire(self, rail: str, cost: int = 1) -> None: ...


class LimitedProvider:
    """A rail's provider whose every call first waits for the rail's rate limit."""

    def __init__(self, provider: PayoutProvider, rail: str, limiter: Limiter) -> None:
        self.name = provider.name
        self.provider = provider
        self._rail = rail
        self._limiter = limiter

    async def send(self, request: TransferRequest) -> TransferAccepted:
        await self._limiter.acquire(self._rail, requests_per_call(self._rail, "send"))
        return await self.provider.send(request)

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        await self._limiter.acquire(self._rail, requests_per_call(self._rail, "lookup"))
        return await self.provider.lookup(request)

    async def settlement(self, provider_ref: str) -> Settlement:
        await self._limiter.acquire(self._rail, requests_per_call(self._rail, "settlement"))
        return await self.provider.settlement(provider_ref)

    async def aclose(self) -> None:
        await self.provider.aclose()


class Rails:
    """The configured rails by name; `every` (the sandbox) answers for any method."""

    def __init__(
        self,
        rails: Mapping[str, PayoutProvider] | None = None,
        *,
        every: PayoutProvider | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self._rails = dict(rails or {})
        self._every = every
        self._limiter = limiter

    @classmethod
    def single(cls, provider: PayoutProvider) -> Rails:
        """One provider for every method (the sandbox, or a test's fake)."""
        return cls(every=provider)

    def limited(self, limiter: Limiter) -> Rails:
        """The same rails, each call waiting for its rail's rate limit first."""
        return Rails(self._rails, every=self._every, limiter=limiter)

    @property
    def every_method(self) -> bool:
        """One provider pays every method (the sandbox, or a test's fake)."""
        return self._every is not None

    def rail_of(self, method: str) -> str | None:
        """The rail a method is paid through, configured or not; None if none pays it."""
        if self._every is not None:
            return method
        return RAIL_OF_METHOD.get(method)

    def get(self, rail: str | None) -> PayoutProvider | None:
        """The provider of `rail`, or None if it is not configured. `None` is the rail of
        payouts sent before rails were chosen by method: the one provider of those days
        (Stripe when configured)."""
        name = LEGACY_RAIL if rail is None else rail
        provider = self._every if self._every is not None else self._rails.get(name)
        if provider is None or self._limiter is None:
            return provider
        return LimitedProvider(provider, name, self._limiter)

    def unavailable(self, method: str) -> str | None:
        """Why payouts of `method` cannot be sent now, or None if its rail is configured."""
        rail = self.rail_of(method)
        if rail is None:
            return f"no rail pays the method {method}; a bank account is paid through wise"
        if self.get(rail) is None:
            return (
                f"the {rail} rail is not configured (method {method}); see PAYOUTS_{rail.upper()}_*"
            )
        return None

    def providers(self) -> Iterable[PayoutProvider]:
        seen: list[PayoutProvider] = []
        for provider in [*self._rails.values(), *([self._every] if self._every else [])]:
            if all(provider is not p for p in seen):
                seen.append(provider)
        return seen

    async def aclose(self) -> None:
        for provider in self.providers():
            await provider.aclose()
