-- Running totals per deal (docs/architecture.md §10, "Cost independent of history"): what a
-- deal's attribution and its leaked-order totals read of its posts, orders and credits, kept
-- by the triggers below in the transaction that changes those rows, so attributing a deal
-- reads one row however long its campaign has run. Every figure is a sum (or a latest time)
-- over the rows it stands for; tests/integration/tracking/test_deal_totals.py checks them
-- against a from-scratch aggregation.
CREATE TABLE tracking_deal_totals (
    deal_id           text        PRIMARY KEY,
    -- Its posts (tracking_deal_posts), their latest snapshots summed.
    posts             bigint      NOT NULL DEFAULT 0,
    likes             bigint      NOT NULL DEFAULT 0,
    comments          bigint      NOT NULL DEFAULT 0,
    shares            bigint      NOT NULL DEFAULT 0,
    saves             bigint      NOT NULL DEFAULT 0,
    views             bigint      NOT NULL DEFAULT 0,
    impressions       bigint      NOT NULL DEFAULT 0,
    reach             bigint      NOT NULL DEFAULT 0,
    rate_sum          numeric     NOT NULL DEFAULT 0,
    rated_posts       bigint      NOT NULL DEFAULT 0,
    last_observed     timestamptz,
    -- Its credits (tracking_order_credits): those of orders not fully refunded, their
    -- revenue net of refunds, the latest order or refund time of their orders.
    orders            bigint      NOT NULL DEFAULT 0,
    revenue           numeric     NOT NULL DEFAULT 0,
    last_order        timestamptz,
    -- Of those credits, the ones of orders flagged suspected leaked; of these, those not
    -- fully refunded; and the revenue of these credits net of refunds.
    suspected_credits bigint      NOT NULL DEFAULT 0,
    suspected_orders  bigint      NOT NULL DEFAULT 0,
    suspected_revenue numeric     NOT NULL DEFAULT 0,
    -- The orders its promo codes chose it for (tracking_orders.deal_id): waiting for a rate,
    -- and flagged suspected leaked.
    pending_fx_orders bigint      NOT NULL DEFAULT 0,
    flagged_orders    bigint      NOT NULL DEFAULT 0
);

-- No write between the backfill and the triggers.
LOCK TABLE tracking_posts, tracking_deal_posts, tracking_orders, tracking_order_credits
    IN SHARE ROW EXCLUSIVE MODE;

INSERT INTO tracking_deal_totals (deal_id) SELECT deal_id FROM tracking_deal_posts
UNION SELECT deal_id FROM tracking_order_credits
UNION SELECT deal_id FROM tracking_orders WHERE deal_id IS NOT NULL;

UPDATE tracking_deal_totals t SET
    posts = p.posts, likes = p.likes, comments = p.comments, shares = p.shares,
    saves = p.saves, views = p.views, impressions = p.impressions, reach = p.reach,
    rate_sum = p.rate_sum, rated_posts = p.rated_posts, last_observed = p.last_observed
FROM (
    SELECT m.deal_id, count(*) AS posts, sum(p.likes) AS likes, sum(p.comments) AS comments,
           sum(p.shares) AS shares, sum(p.saves) AS saves, sum(p.views) AS views,
           sum(p.impressions) AS impressions, sum(p.reach) AS reach,
           coalesce(sum(p.engagement_rate), 0) AS rate_sum,
           count(p.engagement_rate) AS rated_posts, max(p.observed_at) AS last_observed
    FROM tracking_deal_posts m JOIN tracking_posts p USING (post_id)
    GROUP BY m.deal_id
) p
WHERE t.deal_id = p.deal_id;

UPDATE tracking_deal_totals t SET
    orders = c.orders, revenue = c.revenue, last_order = c.last_order,
    suspected_credits = c.suspected_credits, suspected_orders = c.suspected_orders,
    suspected_revenue = c.suspected_revenue
FROM (
    SELECT c.deal_id, count(*) FILTER (WHERE NOT o.fully_refunded) AS orders,
           sum(c.revenue - c.refunded) AS revenue,
           max(greatest(o.occurred_at, o.last_refund_at)) AS last_order,
           count(*) FILTER (WHERE o.leak_suspected) AS suspected_credits,
           count(*) FILTER (WHERE o.leak_suspected AND NOT o.fully_refunded) AS suspected_orders,
           coalesce(sum(c.revenue - c.refunded) FILTER (WHERE o.leak_suspected), 0)
               AS suspected_revenue
    FROM tracking_order_credits c JOIN tracking_orders o USING (order_id)
    GROUP BY c.deal_id
) c
WHERE t.deal_id = c.deal_id;

UPDATE tracking_deal_totals t SET
    pending_fx_orders = o.pending_fx_orders, flagged_orders = o.flagged_orders
FROM (
    SELECT deal_id, count(*) FILTER (WHERE status = 'pending_fx') AS pending_fx_orders,
           count(*) FILTER (WHERE leak_suspected) AS flagged_orders
    FROM tracking_orders WHERE deal_id IS NOT NULL
    GROUP BY deal_id
) o
WHERE t.deal_id = o.deal_id;

-- The triggers: one statement each, over its changed rows (transition tables), whatever the
-- batch size. A figure is the sum of each row's part, so each applies the difference its
-- rows make; a latest time only moves later, except where rows leave (then found again).

-- Posts counted for a deal: their figures added to its totals.
CREATE FUNCTION tracking_totals_posts_joined() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_deal_totals AS t (deal_id, posts, likes, comments, shares, saves, views, impressions, reach, rate_sum, rated_posts, last_observed)
    SELECT m.deal_id, count(*), sum(p.likes), sum(p.comments), sum(p.shares), sum(p.saves), sum(p.views), sum(p.impressions), sum(p.reach), coalesce(sum(p.engagement_rate), 0), count(p.engagement_rate),
           max(p.observed_at)
    FROM added m JOIN tracking_posts p USING (post_id)
    GROUP BY m.deal_id
    ON CONFLICT (deal_id) DO UPDATE SET
        posts = t.posts + EXCLUDED.posts,
        likes = t.likes + EXCLUDED.likes,
        comments = t.comments + EXCLUDED.comments,
        shares = t.shares + EXCLUDED.shares,
        saves = t.saves + EXCLUDED.saves,
        views = t.views + EXCLUDED.views,
        impressions = t.impressions + EXCLUDED.impressions,
        reach = t.reach + EXCLUDED.reach,
        rate_sum = t.rate_sum + EXCLUDED.rate_sum,
        rated_posts = t.rated_posts + EXCLUDED.rated_posts,
        last_observed = greatest(t.last_observed, EXCLUDED.last_observed);
    RETURN NULL;
END $$;

-- Posts no longer counted for a deal: their figures taken off, its latest observation found again
-- among its remaining posts (a deal has a few).
CREATE FUNCTION tracking_totals_posts_left() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_deal_totals AS t (deal_id, posts, likes, comments, shares, saves, views, impressions, reach, rate_sum, rated_posts, last_observed)
    SELECT m.deal_id, -count(*), -sum(p.likes), -sum(p.comments), -sum(p.shares), -sum(p.saves), -sum(p.views), -sum(p.impressions), -sum(p.reach), -coalesce(sum(p.engagement_rate), 0), -count(p.engagement_rate),
           NULL::timestamptz
    FROM removed m JOIN tracking_posts p USING (post_id)
    GROUP BY m.deal_id
    ON CONFLICT (deal_id) DO UPDATE SET
        posts = t.posts + EXCLUDED.posts,
        likes = t.likes + EXCLUDED.likes,
        comments = t.comments + EXCLUDED.comments,
        shares = t.shares + EXCLUDED.shares,
        saves = t.saves + EXCLUDED.saves,
        views = t.views + EXCLUDED.views,
        impressions = t.impressions + EXCLUDED.impressions,
        reach = t.reach + EXCLUDED.reach,
        rate_sum = t.rate_sum + EXCLUDED.rate_sum,
        rated_posts = t.rated_posts + EXCLUDED.rated_posts,
        last_observed = greatest(t.last_observed, EXCLUDED.last_observed);
    UPDATE tracking_deal_totals t SET last_observed = (
        SELECT max(p.observed_at) FROM tracking_deal_posts m JOIN tracking_posts p USING (post_id)
        WHERE m.deal_id = t.deal_id)
    WHERE t.deal_id IN (SELECT deal_id FROM removed);
    RETURN NULL;
END $$;

-- A post's newer snapshot: the difference old -> new added to the totals of each deal it counts
-- for (a snapshot only replaces an older one, so observed_at never decreases).
CREATE FUNCTION tracking_totals_posts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_deal_totals AS t (deal_id, posts, likes, comments, shares, saves, views, impressions, reach, rate_sum, rated_posts, last_observed)
    SELECT m.deal_id, 0, sum(n.likes - o.likes), sum(n.comments - o.comments), sum(n.shares - o.shares), sum(n.saves - o.saves), sum(n.views - o.views), sum(n.impressions - o.impressions), sum(n.reach - o.reach),
           sum(coalesce(n.engagement_rate, 0) - coalesce(o.engagement_rate, 0)),
           sum((n.engagement_rate IS NOT NULL)::int - (o.engagement_rate IS NOT NULL)::int),
           max(n.observed_at)
    FROM after_rows n JOIN before_rows o USING (post_id)
    JOIN tracking_deal_posts m ON m.post_id = n.post_id
    GROUP BY m.deal_id
    ON CONFLICT (deal_id) DO UPDATE SET
        posts = t.posts + EXCLUDED.posts,
        likes = t.likes + EXCLUDED.likes,
        comments = t.comments + EXCLUDED.comments,
        shares = t.shares + EXCLUDED.shares,
        saves = t.saves + EXCLUDED.saves,
        views = t.views + EXCLUDED.views,
        impressions = t.impressions + EXCLUDED.impressions,
        reach = t.reach + EXCLUDED.reach,
        rate_sum = t.rate_sum + EXCLUDED.rate_sum,
        rated_posts = t.rated_posts + EXCLUDED.rated_posts,
        last_observed = greatest(t.last_observed, EXCLUDED.last_observed);
    RETURN NULL;
END $$;

-- Credits given: each counts for its deal with its order's state.
CREATE FUNCTION tracking_totals_credits_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_deal_totals AS t (deal_id, orders, revenue, suspected_credits, suspected_orders, suspected_revenue, last_order)
    SELECT c.deal_id, count(*) FILTER (WHERE NOT o.fully_refunded), sum(c.revenue - c.refunded), count(*) FILTER (WHERE o.leak_suspected), count(*) FILTER (WHERE o.leak_suspected AND NOT o.fully_refunded), coalesce(sum(c.revenue - c.refunded) FILTER (WHERE o.leak_suspected), 0),
           max(greatest(o.occurred_at, o.last_refund_at))
    FROM added c JOIN tracking_orders o USING (order_id)
    GROUP BY c.deal_id
    ON CONFLICT (deal_id) DO UPDATE SET
        orders = t.orders + EXCLUDED.orders,
        revenue = t.revenue + EXCLUDED.revenue,
        suspected_credits = t.suspected_credits + EXCLUDED.suspected_credits,
        suspected_orders = t.suspected_orders + EXCLUDED.suspected_orders,
        suspected_revenue = t.suspected_revenue + EXCLUDED.suspected_revenue,
        last_order = greatest(t.last_order, EXCLUDED.last_order);
    RETURN NULL;
END $$;

-- Credits taken back (an order credited elsewhere, a campaign's model changed): their part taken
-- off, the deal's latest order found again among its credits (the only read of its history).
CREATE FUNCTION tracking_totals_credits_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_deal_totals AS t (deal_id, orders, revenue, suspected_credits, suspected_orders, suspected_revenue, last_order)
    SELECT c.deal_id, -count(*) FILTER (WHERE NOT o.fully_refunded), -sum(c.revenue - c.refunded), -count(*) FILTER (WHERE o.leak_suspected), -count(*) FILTER (WHERE o.leak_suspected AND NOT o.fully_refunded), -coalesce(sum(c.revenue - c.refunded) FILTER (WHERE o.leak_suspected), 0),
           NULL::timestamptz
    FROM removed c JOIN tracking_orders o USING (order_id)
    GROUP BY c.deal_id
    ON CONFLICT (deal_id) DO UPDATE SET
        orders = t.orders + EXCLUDED.orders,
        revenue = t.revenue + EXCLUDED.revenue,
        suspected_credits = t.suspected_credits + EXCLUDED.suspected_credits,
        suspected_orders = t.suspected_orders + EXCLUDED.suspected_orders,
        suspected_revenue = t.suspected_revenue + EXCLUDED.suspected_revenue,
        last_order = greatest(t.last_order, EXCLUDED.last_order);
    UPDATE tracking_deal_totals t SET last_order = (
        SELECT max(greatest(o.occurred_at, o.last_refund_at))
        FROM tracking_order_credits c JOIN tracking_orders o USING (order_id)
        WHERE c.deal_id = t.deal_id)
    WHERE t.deal_id IN (SELECT deal_id FROM removed);
    RETURN NULL;
END $$;

-- Credits updated in place (refunds): the difference old -> new, with the order's state.
CREATE FUNCTION tracking_totals_credits_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_deal_totals AS t (deal_id, orders, revenue, suspected_credits, suspected_orders, suspected_revenue, last_order)
    SELECT n.deal_id, count(*) FILTER (WHERE NOT o.fully_refunded) - count(*) FILTER (WHERE NOT o.fully_refunded), sum(n.revenue - n.refunded) - sum(b.revenue - b.refunded), count(*) FILTER (WHERE o.leak_suspected) - count(*) FILTER (WHERE o.leak_suspected), count(*) FILTER (WHERE o.leak_suspected AND NOT o.fully_refunded) - count(*) FILTER (WHERE o.leak_suspected AND NOT o.fully_refunded), coalesce(sum(n.revenue - n.refunded) FILTER (WHERE o.leak_suspected), 0) - coalesce(sum(b.revenue - b.refunded) FILTER (WHERE o.leak_suspected), 0),
           max(greatest(o.occurred_at, o.last_refund_at))
    FROM after_rows n JOIN before_rows b USING (order_id, deal_id)
    JOIN tracking_orders o USING (order_id)
    GROUP BY n.deal_id
    ON CONFLICT (deal_id) DO UPDATE SET
        orders = t.orders + EXCLUDED.orders,
        revenue = t.revenue + EXCLUDED.revenue,
        suspected_credits = t.suspected_credits + EXCLUDED.suspected_credits,
        suspected_orders = t.suspected_orders + EXCLUDED.suspected_orders,
        suspected_revenue = t.suspected_revenue + EXCLUDED.suspected_revenue,
        last_order = greatest(t.last_order, EXCLUDED.last_order);
    RETURN NULL;
END $$;

-- New orders: those waiting for a rate and those flagged, on their promo code's deal.
CREATE FUNCTION tracking_totals_orders_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_deal_totals AS t (deal_id, pending_fx_orders, flagged_orders)
    SELECT deal_id, count(*) FILTER (WHERE status = 'pending_fx'),
           count(*) FILTER (WHERE leak_suspected)
    FROM added WHERE deal_id IS NOT NULL
    GROUP BY deal_id
    ON CONFLICT (deal_id) DO UPDATE SET
        pending_fx_orders = t.pending_fx_orders + EXCLUDED.pending_fx_orders,
        flagged_orders = t.flagged_orders + EXCLUDED.flagged_orders;
    RETURN NULL;
END $$;

-- Orders re-evaluated or flagged: the difference old -> new on their promo code's deal, and on
-- every deal they credit, the difference their new state makes to those credits (a refund
-- only moves an order's latest time later; were it earlier, the latest is found again).
CREATE FUNCTION tracking_totals_orders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tracking_deal_totals AS t (deal_id, pending_fx_orders, flagged_orders)
    SELECT deal_id, sum(pending), sum(flagged) FROM (
        SELECT deal_id, (status = 'pending_fx')::int AS pending, leak_suspected::int AS flagged
        FROM after_rows WHERE deal_id IS NOT NULL
        UNION ALL
        SELECT deal_id, -(status = 'pending_fx')::int, -leak_suspected::int
        FROM before_rows WHERE deal_id IS NOT NULL
    ) u
    GROUP BY deal_id
    ON CONFLICT (deal_id) DO UPDATE SET
        pending_fx_orders = t.pending_fx_orders + EXCLUDED.pending_fx_orders,
        flagged_orders = t.flagged_orders + EXCLUDED.flagged_orders;
    INSERT INTO tracking_deal_totals AS t (deal_id, orders, revenue, suspected_credits, suspected_orders, suspected_revenue, last_order)
    SELECT c.deal_id, count(*) FILTER (WHERE NOT n.fully_refunded) - count(*) FILTER (WHERE NOT o.fully_refunded), sum(c.revenue - c.refunded) - sum(c.revenue - c.refunded), count(*) FILTER (WHERE n.leak_suspected) - count(*) FILTER (WHERE o.leak_suspected), count(*) FILTER (WHERE n.leak_suspected AND NOT n.fully_refunded) - count(*) FILTER (WHERE o.leak_suspected AND NOT o.fully_refunded), coalesce(sum(c.revenue - c.refunded) FILTER (WHERE n.leak_suspected), 0) - coalesce(sum(c.revenue - c.refunded) FILTER (WHERE o.leak_suspected), 0),
           max(greatest(n.occurred_at, n.last_refund_at))
    FROM after_rows n JOIN before_rows o USING (order_id)
    JOIN tracking_order_credits c ON c.order_id = n.order_id
    GROUP BY c.deal_id
    ON CONFLICT (deal_id) DO UPDATE SET
        orders = t.orders + EXCLUDED.orders,
        revenue = t.revenue + EXCLUDED.revenue,
        suspected_credits = t.suspected_credits + EXCLUDED.suspected_credits,
        suspected_orders = t.suspected_orders + EXCLUDED.suspected_orders,
        suspected_revenue = t.suspected_revenue + EXCLUDED.suspected_revenue,
        last_order = greatest(t.last_order, EXCLUDED.last_order);
    UPDATE tracking_deal_totals t SET last_order = (
        SELECT max(greatest(o.occurred_at, o.last_refund_at))
        FROM tracking_order_credits c JOIN tracking_orders o USING (order_id)
        WHERE c.deal_id = t.deal_id)
    WHERE t.deal_id IN (SELECT c.deal_id
        FROM after_rows n JOIN before_rows o USING (order_id)
        JOIN tracking_order_credits c ON c.order_id = n.order_id
        WHERE greatest(n.occurred_at, n.last_refund_at)
            < greatest(o.occurred_at, o.last_refund_at));
    RETURN NULL;
END $$;

CREATE TRIGGER tracking_deal_posts_added AFTER INSERT ON tracking_deal_posts
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_totals_posts_joined();
CREATE TRIGGER tracking_deal_posts_removed AFTER DELETE ON tracking_deal_posts
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_totals_posts_left();
CREATE TRIGGER tracking_posts_changed AFTER UPDATE ON tracking_posts
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_totals_posts_changed();
CREATE TRIGGER tracking_order_credits_added AFTER INSERT ON tracking_order_credits
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_totals_credits_added();
CREATE TRIGGER tracking_order_credits_removed AFTER DELETE ON tracking_order_credits
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_totals_credits_removed();
CREATE TRIGGER tracking_order_credits_changed AFTER UPDATE ON tracking_order_credits
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_totals_credits_changed();
CREATE TRIGGER tracking_orders_added AFTER INSERT ON tracking_orders
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_totals_orders_added();
CREATE TRIGGER tracking_orders_changed AFTER UPDATE ON tracking_orders
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_totals_orders_changed();
