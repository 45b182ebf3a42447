"""Payment providers behind one interface: a sandbox and Stripe Connect transfers."""

from services.payouts.providers.base import (
    PayoutProvider,
    ProviderError,
    Settlement,
    SettlementState,
    TransferAccepted,
    TransferRequest,
)

__all__ = [
    "PayoutProvider",
    "ProviderError",
    "Settlement",
    "SettlementState",
    "TransferAccepted",
    "TransferRequest",
]
