-- Clicks and attribution models per campaign (docs/architecture.md §10).

-- What click models join an order on, and what the order may say about where it came from.
ALTER TABLE tracking_orders
    ADD COLUMN visitor_id       text,
    ADD COLUMN click_id         text,
    ADD COLUMN shipping_country text,
    ADD COLUMN referrer         text,
    ADD COLUMN model            text NOT NULL DEFAULT 'promo_code';
CREATE INDEX tracking_orders_visitor ON tracking_orders (visitor_id) WHERE visitor_id IS NOT NULL;
CREATE INDEX tracking_orders_click ON tracking_orders (click_id) WHERE click_id IS NOT NULL;

-- One row per click_id (the first received); the deal may not be stored yet.
CREATE TABLE tracking_clicks (
    click_id   text        PRIMARY KEY,
    deal_id    text        NOT NULL,
    visitor_id text        NOT NULL,
    clicked_at timestamptz NOT NULL
);
CREATE INDEX tracking_clicks_visitor ON tracking_clicks (visitor_id);
CREATE INDEX tracking_clicks_deal ON tracking_clicks (deal_id);

-- The newest model setting of each campaign by each brand: greatest (set_at, event_id).
-- Only the campaign's own brand's setting applies to its deals.
CREATE TABLE tracking_campaign_models (
    campaign_id    text        NOT NULL,
    brand_id       text        NOT NULL,
    model          text        NOT NULL,
    lookback_days  integer     NOT NULL,
    half_life_days integer     NOT NULL,
    set_at         timestamptz NOT NULL,
    event_id       text        NOT NULL,
    PRIMARY KEY (campaign_id, brand_id)
);

-- Each attributed order's credit per deal, in the deal's currency; the credits of one order
-- split its amount exactly (services/tracking/domain/credit.py).
CREATE TABLE tracking_order_credits (
    order_id text    NOT NULL,
    deal_id  text    NOT NULL,
    revenue  numeric NOT NULL,
    refunded numeric NOT NULL,
    currency text    NOT NULL,
    PRIMARY KEY (order_id, deal_id)
);
CREATE INDEX tracking_order_credits_deal ON tracking_order_credits (deal_id);

-- Every order attributed so far was credited by its promo code alone.
INSERT INTO tracking_order_credits (order_id, deal_id, revenue, refunded, currency)
SELECT order_id, deal_id, revenue, refunded, deal_currency
FROM tracking_orders WHERE evaluated AND status = 'attributed';

ALTER TABLE tracking_attribution
    ADD COLUMN attribution_model text NOT NULL DEFAULT 'promo_code',
    ADD COLUMN model_setting_id  text NOT NULL DEFAULT '';
