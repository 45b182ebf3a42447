-- Deal amendments and cancellations (docs/architecture.md §3). payouts_deals holds the terms
-- in force: the highest version received, and when the deal was cancelled.
ALTER TABLE payouts_deals
    ADD COLUMN version      integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN cancelled_at timestamptz;

-- Every version received, amendments before their deal included: a re-sent deal.signed is
-- compared with version 1, and an early amendment is put in force when its deal arrives.
CREATE TABLE payouts_deal_versions (
    deal_id                 text        NOT NULL,
    version                 integer     NOT NULL CHECK (version >= 1),
    campaign_id             text        NOT NULL,
    brand_id                text        NOT NULL,
    creator_id              text        NOT NULL,
    fee_amount              numeric     NOT NULL CHECK (fee_amount >= 0),
    currency                char(3)     NOT NULL,
    commission_rate         numeric     NOT NULL CHECK (commission_rate BETWEEN 0 AND 1),
    deliverables            jsonb       NOT NULL,
    ends_at                 timestamptz NOT NULL,
    attribution_window_days integer     NOT NULL,
    -- The event's time; an amendment sent after the deal's cancellation never counts.
    sent_at                 timestamptz,
    event_id                text        NOT NULL,
    stored_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deal_id, version)
);
INSERT INTO payouts_deal_versions (deal_id, version, campaign_id, brand_id, creator_id,
    fee_amount, currency, commission_rate, deliverables, ends_at, attribution_window_days,
    event_id)
SELECT deal_id, 1, campaign_id, brand_id, creator_id, fee_amount, currency, commission_rate,
    deliverables, ends_at, attribution_window_days, signed_event_id
FROM payouts_deals;

-- Cancellations, before their deal too; only the deal's own brand's counts (the earliest).
CREATE TABLE payouts_deal_cancellations (
    deal_id      text        NOT NULL,
    brand_id     text        NOT NULL,
    cancelled_at timestamptz NOT NULL,
    reason       text        NOT NULL,
    event_id     text        NOT NULL,
    PRIMARY KEY (deal_id, brand_id)
);
