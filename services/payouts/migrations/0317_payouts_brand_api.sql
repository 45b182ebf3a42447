-- The brand API (services/payouts/brand_api/, docs/architecture.md §12).
--
-- A brand's API key is given out once and stored only as the SHA-256 of the whole key
-- (256 random bits: a copy of this table opens nothing); `key_id` is the public part of the
-- key, which operators revoke it by. A revoked key stays, with when it was revoked.
CREATE TABLE payouts_brand_api_keys (
    key_id      text        PRIMARY KEY,
    brand_id    text        NOT NULL,
    key_hash    bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX payouts_brand_api_keys_by_brand ON payouts_brand_api_keys (brand_id);

-- Tracking's figures of the attribution kept per deal (counts, spend, ratios, leak flags),
-- written with the revenue in the same row, so both are always of the same attribution.
-- NULL for attributions kept before this migration, until the deal's next one.
ALTER TABLE payouts_attribution ADD COLUMN figures jsonb;

-- The API reads a brand's deals by campaign and by creator.
CREATE INDEX payouts_deals_by_brand ON payouts_deals (brand_id, campaign_id);
CREATE INDEX payouts_payouts_by_brand ON payouts_payouts (brand_id);
