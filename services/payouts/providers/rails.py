"""Which rail pays which payout: the payout account's `method` chooses it.

`stripe` pays through Stripe Connect transfers, `paypal` through PayPal Payouts, `wise` through
Wise transfers; `bank_transfer` has no rail of its own (a bank account is paid through Wise as
a Wise recipient, with the method `wise`). A method whose rail is not configured has no
provider here: its payouts are held (`rail_unavailable`), never sent through another rail.
The sandbox, in development, stands in for every rail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from services.payouts.providers.base import PayoutProvider

# The one rail of the releases before rails were chosen by method: payouts attempted then, with
# no rail recorded, were sent through it.
LEGACY_RAIL: Final = "stripe"
RAIL_OF_METHOD: Final[Mapping[str, str]] = {
    "stripe": "stripe",
    "paypal": "paypal",
    "wise": "wise",
}


class Rails:
    """The configured rails by name; `every` (the sandbox) answers for any method."""

    def __init__(
        self,
        rails: Mapping[str, PayoutProvider] | None = None,
        *,
        every: PayoutProvider | None = None,
    ) -> None:
        self._rails = dict(rails or {})
        self._every = every

    @classmethod
    def single(cls, provider: PayoutProvider) -> Rails:
        """One provider for every method (the sandbox, or a test's fake)."""
        return cls(every=provider)

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
        if self._every is not None:
            return self._every
        if rail is None:
            return self._rails.get(LEGACY_RAIL)
        return self._rails.get(rail)

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
