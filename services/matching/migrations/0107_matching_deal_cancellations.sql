-- A cancelled deal no longer makes its creator hired for the campaign (docs/architecture.md
-- §3). The hire keeps the deal's brand (unknown for hires stored before), since only that
-- brand's cancellation counts; a cancellation may arrive before its deal, so it is kept apart.
ALTER TABLE matching_hires ADD COLUMN brand_id text;

CREATE TABLE matching_cancelled_deals (
    deal_id      text        NOT NULL,
    brand_id     text        NOT NULL,
    cancelled_at timestamptz NOT NULL,
    PRIMARY KEY (deal_id, brand_id)
);
