-- Deal amendments and cancellations (docs/architecture.md §3). tracking_deals holds the
-- terms in force (its terms_digest stays the signed version's, which a re-sent deal.signed
-- is compared with); every version and cancellation received is kept, before its deal too.
ALTER TABLE tracking_deals
    ADD COLUMN version      integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN cancelled_at timestamptz;

-- One row per version: store/rows.py deal_json.
CREATE TABLE tracking_deal_versions (
    deal_id text    NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    terms   jsonb   NOT NULL,
    PRIMARY KEY (deal_id, version)
);

-- The earliest per deal and brand; only the deal's own brand's counts.
CREATE TABLE tracking_deal_cancellations (
    deal_id      text        NOT NULL,
    brand_id     text        NOT NULL,
    cancelled_at timestamptz NOT NULL,
    PRIMARY KEY (deal_id, brand_id)
);
