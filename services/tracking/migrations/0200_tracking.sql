-- Tracking: deals, latest post snapshots, orders and refunds, confirmations and the running
-- attribution per deal. Everything here can be rebuilt by replaying the input topics.

CREATE TABLE tracking_deals (
    deal_id          text        PRIMARY KEY,
    campaign_id      text        NOT NULL,
    brand_id         text        NOT NULL,
    creator_id       text        NOT NULL,
    fee_amount       numeric     NOT NULL,
    currency         text        NOT NULL,
    commission_rate  numeric     NOT NULL,
    promo_codes      text[]      NOT NULL,
    deliverables     jsonb       NOT NULL,
    required_tags    text[]      NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    attribution_window_days integer NOT NULL,
    -- earliest announcement of these terms; a resend with other terms is refused
    signed_at        timestamptz NOT NULL,
    terms_digest     text        NOT NULL,
    deliverables_open boolean    NOT NULL DEFAULT true
);
CREATE INDEX tracking_deals_creator ON tracking_deals (creator_id);
CREATE INDEX tracking_deals_campaign ON tracking_deals (campaign_id);

CREATE TABLE tracking_deal_promo_codes (
    promo_code text NOT NULL,
    deal_id    text NOT NULL REFERENCES tracking_deals (deal_id),
    PRIMARY KEY (promo_code, deal_id)
);

-- The latest snapshot of each post: greatest (observed_at, event_id).
CREATE TABLE tracking_posts (
    post_id      text        PRIMARY KEY,
    creator_id   text        NOT NULL,
    platform     text        NOT NULL,
    kind         text        NOT NULL,
    deal_id      text,
    tags         jsonb       NOT NULL,
    posted_at    timestamptz NOT NULL,
    observed_at  timestamptz NOT NULL,
    event_id     text        NOT NULL,
    likes        bigint      NOT NULL,
    comments     bigint      NOT NULL,
    shares       bigint      NOT NULL,
    saves        bigint      NOT NULL,
    views        bigint      NOT NULL,
    impressions  bigint      NOT NULL,
    reach        bigint      NOT NULL,
    followers    bigint      NOT NULL,
    engagement_rate numeric
);
CREATE INDEX tracking_posts_creator ON tracking_posts (creator_id);

-- Which deals each post counts for (services.tracking.domain.posts.post_belongs_to_deal).
CREATE TABLE tracking_deal_posts (
    deal_id text NOT NULL,
    post_id text NOT NULL,
    PRIMARY KEY (deal_id, post_id)
);
CREATE INDEX tracking_deal_posts_post ON tracking_deal_posts (post_id);

-- One row per order_id; the outcome columns are services.tracking.domain.orders.OrderOutcome.
CREATE TABLE tracking_orders (
    order_id        text        PRIMARY KEY,
    promo_code      text        NOT NULL,
    amount          numeric     NOT NULL,
    currency        text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    evaluated       boolean     NOT NULL DEFAULT false,
    status          text        NOT NULL DEFAULT 'unattributed'
        CHECK (status IN ('attributed', 'unattributed', 'pending_fx')),
    reason          text,
    deal_id         text,
    revenue         numeric,
    refunded        numeric,
    deal_currency   text,
    refunded_source numeric     NOT NULL DEFAULT 0,
    fully_refunded  boolean     NOT NULL DEFAULT false,
    fx_rate         numeric,
    fx_as_of        timestamptz,
    fx_source       text,
    last_refund_at  timestamptz
);
CREATE INDEX tracking_orders_code ON tracking_orders (promo_code);
CREATE INDEX tracking_orders_deal ON tracking_orders (deal_id);
CREATE INDEX tracking_orders_fx ON tracking_orders (occurred_at)
    WHERE status = 'pending_fx' OR fx_as_of IS NOT NULL;

-- A refund is identified by (order_id, occurred_at, amount, currency): a resent refund
-- counts once. It may arrive before its order.
CREATE TABLE tracking_refunds (
    order_id    text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    amount      numeric     NOT NULL,
    currency    text        NOT NULL,
    PRIMARY KEY (order_id, occurred_at, amount, currency)
);

-- A deliverable is confirmed once, automatically or manually, whichever came first.
CREATE TABLE tracking_confirmations (
    deal_id        text        NOT NULL,
    deliverable_id text        NOT NULL,
    post_ids       text[]      NOT NULL,
    confirmed_by   text        NOT NULL,
    confirmed_at   timestamptz NOT NULL,
    PRIMARY KEY (deal_id, deliverable_id)
);

-- Running attribution per deal (what was last published), with the additive facts the
-- campaign report sums.
CREATE TABLE tracking_attribution (
    deal_id         text        PRIMARY KEY,
    campaign_id     text        NOT NULL,
    creator_id      text        NOT NULL,
    posts           bigint      NOT NULL,
    likes           bigint      NOT NULL,
    comments        bigint      NOT NULL,
    shares          bigint      NOT NULL,
    saves           bigint      NOT NULL,
    views           bigint      NOT NULL,
    impressions     bigint      NOT NULL,
    reach           bigint      NOT NULL,
    rate_sum        numeric     NOT NULL,
    rated_posts     bigint      NOT NULL,
    orders          bigint      NOT NULL,
    pending_fx_orders bigint    NOT NULL,
    currency        text        NOT NULL,
    revenue         numeric     NOT NULL,
    spend           numeric     NOT NULL,
    engagement_rate numeric,
    cpm             numeric,
    cpe             numeric,
    cpa             numeric,
    roas            numeric,
    roi_pct         numeric,
    as_of           timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracking_attribution_campaign ON tracking_attribution (campaign_id);
