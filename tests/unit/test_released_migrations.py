"""Released migrations never change: databases record each one's checksum when it runs, and a
service refuses to start when an applied migration's file differs (shared/runtime/db.py).
Add a migration to change a schema, and list it here in the same change: what reaches main
is released."""

from __future__ import annotations

import pytest

from shared.runtime.db import load_migrations
from shared.tools.schemas import SERVICE_SCHEMAS

RELEASED = {
    "0001_processed_events": "a337bed006936d70",
    "0002_outbox": "5a8d896dab76f13f",
    "0003_fx_snapshots": "b1560b5835d3fdb0",
    "0004_fx_snapshot_suspect": "69b24143896b935d",
    "0005_inbox_by_source": "b752dc6c97df5cf8",
    "0006_outbox_per_producer": "073d336f6d756e31",
    "0007_outbox_values_uncompressed": "15e0d9296f082e4d",
    "0008_inbox_content_digest": "d47bd301d38f3368",
    "0100_matching": "b6085a49fb9ca9ae",
    "0101_matching_feedback_by_source": "8ccd0fa8e86320bc",
    "0102_matching_models_per_brand": "b9ceb61993715ef3",
    "0103_matching_follower_history": "9dd087e32a63a5dd",
    "0104_matching_feedback_signer": "52c48a7526841191",
    "0105_matching_platform_accounts": "81bd8b76e7129cdc",
    "0106_matching_suggestions_without_fk": "795d0f0a475b7b90",
    "0107_matching_deal_cancellations": "1724d074830bdd52",
    "0300_payouts": "8febbbe73c691b83",
    "0301_payouts_sealed_destinations": "62f14ff284e02cf2",
    "0302_payouts_fee_schedule_per_deal": "c00931f5059b1332",
    "0303_payouts_commission_adjustments": "cd7d2cec075841f8",
    "0304_payouts_destination_cooloff": "f38f8ca90efb7166",
    "0305_payouts_fx_locked_at": "08c0f884398932a3",
    "0306_payouts_retry_chapters": "4d332ba569647a05",
    "0307_payouts_confirmation_signer": "6b8b540bcf4535e9",
    "0308_payouts_rails": "07cad0841cdb0581",
    "0309_payouts_fallback_rail": "b472c54b7eb57d47",
    "0310_payouts_confirmation_post_arrival": "d31133094ae8fae3",
    "0311_payouts_destination_key_id": "b0599f9dda1bfb38",
    "0312_payouts_webhooks": "1f55d36a0145e216",
    "0313_payouts_brand_escrow": "3fc615b6ccfd13d5",
    "0314_payouts_creator_links": "05c25e7e0628523e",
    "0315_payouts_emails": "ae9846e70bdd8d42",
    "0316_payouts_transfers_by_payout": "b3e5233ca001388b",
    "0317_payouts_brand_api": "17cf8e16a3393fc6",
    "0318_payouts_leased": "2fbf3d72ab15c972",
    "0319_payouts_deal_amendments": "c0ce5b8206ce37ae",
    "0320_payouts_ledger_checks_per_statement": "e77c674684faacbb",
    "0321_payouts_settlement_checks": "3954c08114db346f",
    "0322_payouts_attribution_sequence": "86e35c61843a6434",
    "0200_tracking": "e3105fcf3646eb37",
    "0201_tracking_order_brand": "60bd98d5caff6aec",
    "0202_tracking_early_confirmations": "b07cd5b536e2a01e",
    "0203_tracking_clicks_and_models": "9c8046b36718dd69",
    "0204_tracking_leaked_codes": "977221ba21d939b9",
    "0205_tracking_campaign_attribution": "eaddfe83e4329384",
    "0206_tracking_deal_totals": "f6f405aacad65ed4",
    "0207_tracking_leak_judgements": "d186a27bcfedd825",
    "0208_tracking_deal_amendments": "a45402c9914b6d5f",
    "0209_tracking_published_as_of": "dd5f799519679f01",
    "0210_tracking_shop_brands": "4d7b25140e5940f0",
    "0211_tracking_published_sequence": "6cfe24d3f8744948",
    "0212_tracking_referrer_hosts": "d8201b3cddb27b29",
}


def _current() -> dict[str, str]:
    every = [*load_migrations(), *(m for s in SERVICE_SCHEMAS for m in s.migrations())]
    return {m.name: m.checksum[:16] for m in every}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_a_released_migration_is_unchanged(name: str) -> None:
    assert _current().get(name) == RELEASED[name], f"{name} was edited or removed"


def test_every_migration_is_listed() -> None:
    current = _current()
    unlisted = {name: current[name] for name in sorted(set(current) - set(RELEASED))}
    assert not unlisted, f"add to RELEASED (name: checksum): {unlisted}"
