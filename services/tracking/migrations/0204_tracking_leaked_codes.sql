-- Leaked promo codes (docs/architecture.md §10, "Leaked codes"; services/tracking/domain/leaks.py).

-- Where the creator's audience lives, if the brand said (deal.signed since v1.6).
ALTER TABLE tracking_deals ADD COLUMN audience_countries text[] NOT NULL DEFAULT '{}';

-- An order placed with its code once the code was suspected leaked: recomputed from the
-- code's stored orders whenever they, the deal or its reach change.
ALTER TABLE tracking_orders ADD COLUMN leak_suspected boolean NOT NULL DEFAULT false;
CREATE INDEX tracking_orders_leak_suspected ON tracking_orders (deal_id) WHERE leak_suspected;

-- The campaign's policy for suspected orders: 'credit' (as any order) or 'withhold'.
ALTER TABLE tracking_campaign_models ADD COLUMN leaked_orders text NOT NULL DEFAULT 'credit';

-- One row per (deal, code, rule) that ever fired: its promo-code.leak-suspected was enqueued
-- in the same transaction, so a replay or a rule firing again never sends a second one.
CREATE TABLE tracking_leak_alerts (
    deal_id    text        NOT NULL,
    promo_code text        NOT NULL,
    rule       text        NOT NULL,
    order_id   text        NOT NULL,
    fired_at   timestamptz NOT NULL,
    PRIMARY KEY (deal_id, promo_code, rule)
);

ALTER TABLE tracking_attribution
    ADD COLUMN leak_suspected   boolean NOT NULL DEFAULT false,
    ADD COLUMN suspected_orders bigint  NOT NULL DEFAULT 0,
    ADD COLUMN withheld_orders  bigint  NOT NULL DEFAULT 0,
    ADD COLUMN withheld_revenue numeric NOT NULL DEFAULT 0;
