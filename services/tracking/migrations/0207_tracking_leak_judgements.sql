-- Leaked-code judgements carried on (services/tracking/domain/leaks.py, CodeJudgement;
-- docs/architecture.md §10): judging a code again reads its orders from the rules' lookback
-- before the last order judged, not its whole history.
CREATE TABLE tracking_leak_codes (
    deal_id      text        NOT NULL,
    promo_code   text        NOT NULL,
    -- The code's judgement (store/rows.py judgement_json); none: judge all its orders.
    judgement    jsonb,
    -- The earliest time of an order that joined or left the code since it was judged (kept
    -- by the triggers below): at or before the last order judged, the judgement is void.
    changed_from timestamptz,
    PRIMARY KEY (deal_id, promo_code)
);

-- A code's orders of a time range.
CREATE INDEX tracking_orders_deal_code ON tracking_orders (deal_id, promo_code, occurred_at);

CREATE FUNCTION tracking_leak_codes_orders_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_leak_codes AS t (deal_id, promo_code, changed_from)
    SELECT deal_id, promo_code, min(occurred_at)
    FROM added WHERE deal_id IS NOT NULL
    GROUP BY deal_id, promo_code
    ON CONFLICT (deal_id, promo_code) DO UPDATE
        SET changed_from = least(t.changed_from, EXCLUDED.changed_from);
    RETURN NULL;
END $$;

-- An order that moves to another deal leaves one code and joins another; the other columns
-- the rules read never change, but were they to, the code would be judged again as well.
CREATE FUNCTION tracking_leak_codes_orders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_leak_codes AS t (deal_id, promo_code, changed_from)
    SELECT deal_id, promo_code, min(occurred_at) FROM (
        SELECT n.deal_id, n.promo_code, least(n.occurred_at, o.occurred_at) AS occurred_at
        FROM after_rows n JOIN before_rows o USING (order_id)
        WHERE (n.deal_id, n.promo_code, n.occurred_at, n.shipping_country, n.referrer)
            IS DISTINCT FROM (o.deal_id, o.promo_code, o.occurred_at, o.shipping_country,
                              o.referrer)
        UNION ALL
        SELECT o.deal_id, o.promo_code, least(n.occurred_at, o.occurred_at)
        FROM after_rows n JOIN before_rows o USING (order_id)
        WHERE (n.deal_id, n.promo_code, n.occurred_at, n.shipping_country, n.referrer)
            IS DISTINCT FROM (o.deal_id, o.promo_code, o.occurred_at, o.shipping_country,
                              o.referrer)
    ) u
    WHERE deal_id IS NOT NULL
    GROUP BY deal_id, promo_code
    ON CONFLICT (deal_id, promo_code) DO UPDATE
        SET changed_from = least(t.changed_from, EXCLUDED.changed_from);
    RETURN NULL;
END $$;

CREATE TRIGGER tracking_orders_leak_codes_added AFTER INSERT ON tracking_orders
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_leak_codes_orders_added();
CREATE TRIGGER tracking_orders_leak_codes_changed AFTER UPDATE ON tracking_orders
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_leak_codes_orders_changed();
