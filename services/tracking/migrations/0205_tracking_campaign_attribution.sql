-- Campaign attribution (docs/architecture.md §3, "Campaign attribution";
-- services/tracking/domain/campaigns.py).

-- Running totals of each brand's orders whose promo code no deal of the brand carries
-- (`unknown_code`), per currency: kept in step with every stored order outcome.
CREATE TABLE tracking_unattributed (
    brand_id text    NOT NULL,
    currency text    NOT NULL,
    orders   bigint  NOT NULL,
    revenue  numeric NOT NULL,
    PRIMARY KEY (brand_id, currency)
);
INSERT INTO tracking_unattributed (brand_id, currency, orders, revenue)
SELECT brand_id, currency, count(*), sum(amount)
FROM tracking_orders
WHERE status = 'unattributed' AND reason = 'unknown_code' AND brand_id IS NOT NULL
GROUP BY brand_id, currency;

-- What was last published for each campaign of each brand: `figures` are compared to tell
-- a change, `sequence` counts the versions published.
CREATE TABLE tracking_campaign_attribution (
    campaign_id text        NOT NULL,
    brand_id    text        NOT NULL,
    sequence    bigint      NOT NULL,
    as_of       timestamptz NOT NULL,
    converted   boolean     NOT NULL,
    figures     jsonb       NOT NULL,
    PRIMARY KEY (campaign_id, brand_id)
);
CREATE INDEX tracking_campaign_attribution_converted
    ON tracking_campaign_attribution (as_of) WHERE converted;

CREATE INDEX tracking_deals_brand ON tracking_deals (brand_id);
