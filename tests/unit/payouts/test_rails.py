"""The account's method chooses the rail; a method whose rail is not configured is held with
the reason, never sent through another rail, and released once its rail is configured."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from services.payouts.app import rails_from
from services.payouts.dispatcher import Dispatcher
from services.payouts.domain.accounts import HoldCode
from services.payouts.providers.base import Settlement, TransferRequest
from services.payouts.providers.rails import Rails
from services.payouts.providers.sandbox import CLOSED_SUFFIX, RETURNED_REASON, SandboxProvider
from services.payouts.settings import PayoutsSettings
from shared.contract.money import Money
from tests.unit.payouts.builders import DESTINATIONS, account, confirmed, deal_signed, uid
from tests.unit.payouts.harness import Harness


class _Named(SandboxProvider):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name  # type: ignore[misc]


async def _owed(h: Harness, method: str) -> str:
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency="USD", method=method), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    return deal


async def test_each_method_goes_to_its_own_rail() -> None:
    stripe, paypal, wise = _Named("stripe"), _Named("paypal"), _Named("wise")
    h = Harness()
    h.use(Rails({"stripe": stripe, "paypal": paypal, "wise": wise}))
    deals = {method: await _owed(h, method) for method in ("stripe", "paypal", "wise")}
    for method, rail in (("stripe", stripe), ("paypal", paypal), ("wise", wise)):
        [payout] = h.payouts(deals[method])
        assert payout.status == "sent" and payout.rail == method
        assert list(rail.transfers) == [payout.payout_id]
    await h.settlement.run_once()  # each asked its own rail
    assert all(p.status == "settled" for p in h.payouts())


async def test_an_unconfigured_rail_holds_the_payout_and_sends_nothing_elsewhere() -> None:
    stripe = _Named("stripe")
    h = Harness()
    h.use(Rails({"stripe": stripe}))
    deal = await _owed(h, "paypal")
    [held] = h.payouts(deal)
    assert held.status == "held" and held.hold is not None
    assert held.hold.code is HoldCode.RAIL_UNAVAILABLE
    assert "paypal rail is not configured" in held.hold.reason
    assert stripe.calls == 0 and stripe.transfers == {}
    assert h.statuses(deal) == ["payout.scheduled", "payout.held"]
    [event] = [e for e in h.events_of(held.payout_id) if e.type == "payout.held"]
    assert "paypal rail is not configured" in (event.data.reason or "")
    # Bank transfers have no rail of their own.
    bank = await _owed(h, "bank_transfer")
    [waiting] = h.payouts(bank)
    assert waiting.hold is not None and "no rail pays the method bank_transfer" in (
        waiting.hold.reason
    )

    # The operator configures PayPal and restarts: the held payout is released and paid there.
    paypal = _Named("paypal")
    restarted = Dispatcher(
        h.db,
        Rails({"stripe": stripe, "paypal": paypal}),
        h.policy,
        destinations=DESTINATIONS,
        clock=h.clock,
    )
    assert await restarted.release_rail_holds() == 1  # the bank transfer still has no rail
    while await restarted.dispatch_once():
        pass
    [paid] = h.payouts(deal)
    assert paid.status == "sent" and paid.rail == "paypal"
    assert list(paypal.transfers) == [paid.payout_id] and stripe.transfers == {}
    assert h.payouts(bank)[0].status == "held"
    assert h.problems() == []


async def test_the_sandbox_stands_in_for_every_rail() -> None:
    h = Harness()
    deal = await _owed(h, "wise")
    [payout] = h.payouts(deal)
    assert payout.status == "sent" and payout.rail == "wise"
    assert list(h.provider.transfers) == [payout.payout_id]


async def test_the_settings_configure_the_rails_they_have_credentials_for() -> None:
    settings = PayoutsSettings(
        provider="rails",
        paypal_client_id=SecretStr("id"),
        paypal_client_secret=SecretStr("secret"),
    )
    rails = rails_from(settings)
    assert rails.unavailable("paypal") is None
    assert "stripe rail is not configured" in (rails.unavailable("stripe") or "")
    assert "wise rail is not configured" in (rails.unavailable("wise") or "")
    assert [p.name for p in rails.providers()] == ["paypal"]
    await rails.aclose()
    sandbox = rails_from(PayoutsSettings())
    assert all(
        sandbox.unavailable(m) is None for m in ("stripe", "paypal", "wise", "bank_transfer")
    )


def test_an_empty_api_key_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # Compose passes `PAYOUTS_STRIPE_API_KEY: ${PAYOUTS_STRIPE_API_KEY:-}`: empty when the
    # operator set none. Taken as a key, it configured a rail every call of which failed.
    monkeypatch.setenv("PAYOUTS_PROVIDER", "stripe")
    monkeypatch.setenv("PAYOUTS_STRIPE_API_KEY", "")
    monkeypatch.setenv("PAYOUTS_STRIPE_WEBHOOK_SECRET", "")
    with pytest.raises(
        ValidationError, match="PAYOUTS_PROVIDER=stripe needs PAYOUTS_STRIPE_API_KEY"
    ):
        PayoutsSettings()
    monkeypatch.setenv("PAYOUTS_STRIPE_API_KEY", "sk_test_1")
    assert PayoutsSettings().webhook_secrets() == {}


async def test_the_sandbox_returns_a_transfer_to_a_closed_account_and_settles_the_others() -> None:
    sandbox = SandboxProvider()

    async def sent(key: str, destination: str) -> str:
        request = TransferRequest(
            idempotency_key=key,
            amount=Money.of("10.00", "EUR"),
            destination=SecretStr(destination),
            method="wise",
            description="test",
        )
        return (await sandbox.send(request)).provider_ref

    closed = await sent("p-1", "tok_wise_cr-1" + CLOSED_SUFFIX)
    fixed = await sent("p-1:2", "tok_wise_cr-1")
    assert await sandbox.settlement(closed) == Settlement("failed", RETURNED_REASON)
    assert await sandbox.settlement(fixed) == Settlement("settled")
