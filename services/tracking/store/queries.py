"""The set-based SQL of the PostgreSQL tracking store (tables in 0200_tracking.sql).

Arrays come in through `unnest`, so one statement handles a whole batch.
"""

from __future__ import annotations

INSERT_DEALS = """
INSERT INTO tracking_deals AS t (
    deal_id, campaign_id, brand_id, creator_id, fee_amount, currency, commission_rate,
    promo_codes, deliverables, required_tags, starts_at, ends_at, attribution_window_days,
    signed_at, terms_digest, audience_countries)
SELECT u.deal_id, u.campaign_id, u.brand_id, u.creator_id, u.fee_amount, u.currency,
       u.commission_rate, ARRAY(SELECT jsonb_array_elements_text(u.promo_codes::jsonb)),
       u.deliverables::jsonb, ARRAY(SELECT jsonb_array_elements_text(u.required_tags::jsonb)),
       u.starts_at, u.ends_at, u.attribution_window_days, u.signed_at, u.terms_digest,
       ARRAY(SELECT jsonb_array_elements_text(u.audience_countries::jsonb))
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[],
            $7::numeric[], $8::text[], $9::text[], $10::text[], $11::timestamptz[],
            $12::timestamptz[], $13::int[], $14::timestamptz[], $15::text[], $16::text[])
    AS u(deal_id, campaign_id, brand_id, creator_id, fee_amount, currency, commission_rate,
         promo_codes, deliverables, required_tags, starts_at, ends_at,
         attribution_window_days, signed_at, terms_digest, audience_countries)
ON CONFLICT (deal_id) DO UPDATE SET signed_at = LEAST(t.signed_at, EXCLUDED.signed_at)
    WHERE t.terms_digest = EXCLUDED.terms_digest
RETURNING t.deal_id, (t.xmax = 0) AS inserted
"""

POST_FIELDS = (
    "creator_id",
    "platform",
    "kind",
    "deal_id",
    "posted_at",
    "observed_at",
    "event_id",
    "likes",
    "comments",
    "shares",
    "saves",
    "views",
    "impressions",
    "reach",
    "followers",
    "engagement_rate",
)
# The incoming snapshot is newer than the stored one. "C" collation: the same code-point
# order as Python's str comparison in domain.posts.
NEWER = '(t.observed_at, t.event_id COLLATE "C") < (EXCLUDED.observed_at, EXCLUDED.event_id)'

# domain.posts.merge_snapshot: the newer snapshot's fields, the union of the tags.
UPSERT_POSTS = f"""
INSERT INTO tracking_posts AS t (post_id, tags, {", ".join(POST_FIELDS)})
SELECT u.post_id, u.tags::jsonb, {", ".join(f"u.{c}" for c in POST_FIELDS)}
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::timestamptz[], $8::timestamptz[], $9::text[], $10::bigint[], $11::bigint[],
            $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[],
            $17::bigint[], $18::numeric[])
    AS u(post_id, creator_id, platform, kind, deal_id, tags, posted_at, observed_at,
         event_id, likes, comments, shares, saves, views, impressions, reach, followers,
         engagement_rate)
ON CONFLICT (post_id) DO UPDATE SET
    {", ".join(f"{c} = CASE WHEN {NEWER} THEN EXCLUDED.{c} ELSE t.{c} END" for c in POST_FIELDS)},
    tags = CASE WHEN t.tags @> EXCLUDED.tags THEN t.tags
                ELSE (SELECT jsonb_agg(DISTINCT x.tag)
                      FROM jsonb_array_elements_text(t.tags || EXCLUDED.tags) AS x(tag)) END
WHERE {NEWER} OR NOT t.tags @> EXCLUDED.tags
RETURNING t.*
"""

# The memberships of posts $1 become exactly the (deal_id, post_id) pairs $2, $3: those that
# no longer hold are deleted (their deal ids returned), new ones inserted, the rest kept. The
# rows deleted and inserted are disjoint, so both parts can work on the same snapshot.
REPLACE_MEMBERSHIPS = """
WITH pairs AS (
    SELECT * FROM unnest($2::text[], $3::text[]) AS u(deal_id, post_id)
), gone AS (
    DELETE FROM tracking_deal_posts m
    WHERE m.post_id = ANY($1::text[])
      AND NOT EXISTS (SELECT 1 FROM pairs p WHERE p.deal_id = m.deal_id AND p.post_id = m.post_id)
    RETURNING m.deal_id
), added AS (
    INSERT INTO tracking_deal_posts (deal_id, post_id)
    SELECT deal_id, post_id FROM pairs
    ON CONFLICT DO NOTHING
)
SELECT deal_id FROM gone
"""

# The trusted snapshot in force at occurred_at, as shared.runtime.fx_store.snapshot_at picks it
# with trusted=True: a suspect snapshot never converts an order.
_FX_AT = """
LEFT JOIN LATERAL (
    SELECT base, as_of, source, rates FROM fx_snapshots
    WHERE as_of <= o.occurred_at AND suspect_reason IS NULL
    ORDER BY as_of DESC, source LIMIT 1
) s ON true
"""

ORDERS_TO_EVALUATE = f"""
WITH ids AS (
    SELECT order_id FROM tracking_orders WHERE order_id = ANY($1::text[])
    UNION
    SELECT order_id FROM tracking_orders WHERE promo_code = ANY($2::text[])
    UNION
    SELECT order_id FROM tracking_orders
    WHERE $3::timestamptz IS NOT NULL AND occurred_at >= $3::timestamptz
      AND (status = 'pending_fx' OR fx_as_of IS NOT NULL)
    UNION
    SELECT c.order_id FROM tracking_order_credits c JOIN tracking_orders o USING (order_id)
    WHERE $3::timestamptz IS NOT NULL AND o.occurred_at >= $3::timestamptz
      AND c.currency <> o.currency
    UNION
    SELECT order_id FROM tracking_orders WHERE visitor_id = ANY($4::text[])
    UNION
    SELECT order_id FROM tracking_orders WHERE click_id = ANY($5::text[])
    UNION
    SELECT o.order_id FROM tracking_orders o JOIN tracking_deals d USING (deal_id)
    WHERE d.campaign_id = ANY($6::text[])
)
SELECT o.*, s.base AS fx_base, s.as_of AS fx_snapshot_as_of, s.source AS fx_snapshot_source,
       s.rates::text AS fx_rates
FROM ids JOIN tracking_orders o USING (order_id)
{_FX_AT}
"""

# Orders $1.. not stored yet, each with the FX snapshot in force when it occurred.
NEW_ORDER_CONTEXTS = f"""
SELECT o.*, s.base AS fx_base, s.as_of AS fx_snapshot_as_of, s.source AS fx_snapshot_source,
       s.rates::text AS fx_rates
FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[], $5::timestamptz[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[])
    AS o(order_id, promo_code, amount, currency, occurred_at, brand_id, visitor_id, click_id,
         shipping_country, referrer)
{_FX_AT}
WHERE NOT EXISTS (SELECT 1 FROM tracking_orders t WHERE t.order_id = o.order_id)
"""

# New orders stored with their outcome (the columns of SAVE_OUTCOMES).
INSERT_EVALUATED_ORDERS = """
INSERT INTO tracking_orders (
    order_id, promo_code, amount, currency, occurred_at, brand_id, visitor_id, click_id,
    shipping_country, referrer, evaluated, status, reason, deal_id, revenue, refunded,
    deal_currency, refunded_source, fully_refunded, fx_rate, fx_as_of, fx_source,
    last_refund_at, model)
SELECT u.order_id, u.promo_code, u.amount, u.currency, u.occurred_at, u.brand_id,
       u.visitor_id, u.click_id, u.shipping_country, u.referrer, true,
       u.status, u.reason, u.deal_id, u.revenue, u.refunded, u.deal_currency,
       u.refunded_source, u.fully_refunded, u.fx_rate, u.fx_as_of, u.fx_source,
       u.last_refund_at, u.model
FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[], $5::timestamptz[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[],
            $11::text[], $12::text[], $13::text[], $14::numeric[], $15::numeric[], $16::text[],
            $17::numeric[], $18::bool[], $19::numeric[], $20::timestamptz[], $21::text[],
            $22::timestamptz[], $23::text[])
    AS u(order_id, promo_code, amount, currency, occurred_at, brand_id, visitor_id, click_id,
         shipping_country, referrer, status, reason, deal_id, revenue, refunded,
         deal_currency, refunded_source, fully_refunded, fx_rate, fx_as_of, fx_source,
         last_refund_at, model)
ON CONFLICT (order_id) DO NOTHING
RETURNING order_id
"""

SAVE_OUTCOMES = """
UPDATE tracking_orders o SET
    evaluated = true, status = u.status, reason = u.reason, deal_id = u.deal_id,
    revenue = u.revenue, refunded = u.refunded, deal_currency = u.deal_currency,
    refunded_source = u.refunded_source, fully_refunded = u.fully_refunded,
    fx_rate = u.fx_rate, fx_as_of = u.fx_as_of, fx_source = u.fx_source,
    last_refund_at = u.last_refund_at, model = u.model
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::numeric[],
            $7::text[], $8::numeric[], $9::bool[], $10::numeric[], $11::timestamptz[],
            $12::text[], $13::timestamptz[], $14::text[])
    AS u(order_id, status, reason, deal_id, revenue, refunded, deal_currency,
         refunded_source, fully_refunded, fx_rate, fx_as_of, fx_source, last_refund_at, model)
WHERE o.order_id = u.order_id
"""

# The deals $1, each with its running totals and its campaign's model setting (if any).
_DEALS_WITH_TOTALS = """\
FROM tracking_deals d
LEFT JOIN tracking_deal_totals t USING (deal_id)
LEFT JOIN tracking_campaign_models m
    ON m.campaign_id = d.campaign_id AND m.brand_id = d.brand_id
WHERE d.deal_id = ANY($1::text[])
"""

# A deal's running totals (tracking_deal_totals, migration 0206): one row whatever its history.
DEAL_FACTS = f"""
SELECT d.deal_id, d.campaign_id, d.creator_id, d.fee_amount, d.currency, d.commission_rate,
       coalesce(t.posts, 0) AS posts, coalesce(t.likes, 0) AS likes,
       coalesce(t.comments, 0) AS comments, coalesce(t.shares, 0) AS shares,
       coalesce(t.saves, 0) AS saves, coalesce(t.views, 0) AS views,
       coalesce(t.impressions, 0) AS impressions, coalesce(t.reach, 0) AS reach,
       coalesce(t.rate_sum, 0) AS rate_sum, coalesce(t.rated_posts, 0) AS rated_posts,
       coalesce(t.orders, 0) AS orders, coalesce(t.revenue, 0) AS revenue,
       coalesce(t.pending_fx_orders, 0) AS pending_fx_orders,
       greatest(d.signed_at, t.last_observed, t.last_order) AS as_of,
       coalesce(m.model, 'promo_code') AS model, coalesce(m.event_id, '') AS setting_id
{_DEALS_WITH_TOTALS}"""

SAVE_ATTRIBUTIONS = """
INSERT INTO tracking_attribution AS t (
    deal_id, campaign_id, creator_id, posts, likes, comments, shares, saves, views,
    impressions, reach, rate_sum, rated_posts, orders, pending_fx_orders, currency, revenue,
    spend, engagement_rate, cpm, cpe, cpa, roas, roi_pct, as_of, attribution_model,
    model_setting_id, leak_suspected, suspected_orders, withheld_orders, withheld_revenue)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
                     $11::bigint[], $12::numeric[], $13::bigint[], $14::bigint[],
                     $15::bigint[], $16::text[], $17::numeric[], $18::numeric[],
                     $19::numeric[], $20::numeric[], $21::numeric[], $22::numeric[],
                     $23::numeric[], $24::numeric[], $25::timestamptz[], $26::text[],
                     $27::text[], $28::bool[], $29::bigint[], $30::bigint[], $31::numeric[])
ON CONFLICT (deal_id) DO UPDATE SET
    campaign_id = EXCLUDED.campaign_id, creator_id = EXCLUDED.creator_id,
    posts = EXCLUDED.posts, likes = EXCLUDED.likes, comments = EXCLUDED.comments,
    shares = EXCLUDED.shares, saves = EXCLUDED.saves, views = EXCLUDED.views,
    impressions = EXCLUDED.impressions, reach = EXCLUDED.reach,
    rate_sum = EXCLUDED.rate_sum, rated_posts = EXCLUDED.rated_posts,
    orders = EXCLUDED.orders, pending_fx_orders = EXCLUDED.pending_fx_orders,
    currency = EXCLUDED.currency, revenue = EXCLUDED.revenue, spend = EXCLUDED.spend,
    engagement_rate = EXCLUDED.engagement_rate, cpm = EXCLUDED.cpm, cpe = EXCLUDED.cpe,
    cpa = EXCLUDED.cpa, roas = EXCLUDED.roas, roi_pct = EXCLUDED.roi_pct,
    as_of = EXCLUDED.as_of, attribution_model = EXCLUDED.attribution_model,
    model_setting_id = EXCLUDED.model_setting_id, leak_suspected = EXCLUDED.leak_suspected,
    suspected_orders = EXCLUDED.suspected_orders, withheld_orders = EXCLUDED.withheld_orders,
    withheld_revenue = EXCLUDED.withheld_revenue, updated_at = now()
WHERE (t.posts, t.likes, t.comments, t.shares, t.saves, t.views, t.impressions, t.reach,
       t.rate_sum, t.rated_posts, t.orders, t.pending_fx_orders, t.currency, t.revenue,
       t.spend, t.engagement_rate, t.cpm, t.cpe, t.cpa, t.roas, t.roi_pct, t.as_of,
       t.attribution_model, t.model_setting_id, t.leak_suspected, t.suspected_orders,
       t.withheld_orders, t.withheld_revenue)
    IS DISTINCT FROM
      (EXCLUDED.posts, EXCLUDED.likes, EXCLUDED.comments, EXCLUDED.shares, EXCLUDED.saves,
       EXCLUDED.views, EXCLUDED.impressions, EXCLUDED.reach, EXCLUDED.rate_sum,
       EXCLUDED.rated_posts, EXCLUDED.orders, EXCLUDED.pending_fx_orders, EXCLUDED.currency,
       EXCLUDED.revenue, EXCLUDED.spend, EXCLUDED.engagement_rate, EXCLUDED.cpm,
       EXCLUDED.cpe, EXCLUDED.cpa, EXCLUDED.roas, EXCLUDED.roi_pct, EXCLUDED.as_of,
       EXCLUDED.attribution_model, EXCLUDED.model_setting_id, EXCLUDED.leak_suspected,
       EXCLUDED.suspected_orders, EXCLUDED.withheld_orders, EXCLUDED.withheld_revenue)
RETURNING t.deal_id
"""

INSERT_CONFIRMATIONS = """
INSERT INTO tracking_confirmations (deal_id, deliverable_id, post_ids, confirmed_by,
                                    confirmed_at)
SELECT u.deal_id, u.deliverable_id, ARRAY(SELECT jsonb_array_elements_text(u.post_ids::jsonb)),
       u.confirmed_by, u.confirmed_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
    AS u(deal_id, deliverable_id, post_ids, confirmed_by, confirmed_at)
ON CONFLICT (deal_id, deliverable_id) DO NOTHING
RETURNING deal_id, deliverable_id
"""

INSERT_EARLY_CONFIRMATIONS = """
INSERT INTO tracking_early_confirmations (deal_id, deliverable_id, signed_by, post_ids,
                                          confirmed_by, confirmed_at)
SELECT u.deal_id, u.deliverable_id, u.signed_by,
       ARRAY(SELECT jsonb_array_elements_text(u.post_ids::jsonb)), u.confirmed_by, u.confirmed_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
    AS u(deal_id, deliverable_id, signed_by, post_ids, confirmed_by, confirmed_at)
ON CONFLICT (deal_id, deliverable_id, signed_by) DO NOTHING
"""

# The early confirmations of newly stored deals: those unsigned or signed by the deal's brand
# become confirmations (the earliest per deliverable), the others are dropped.
TAKE_EARLY_CONFIRMATIONS = """
WITH deals AS (
    SELECT * FROM unnest($1::text[], $2::text[]) AS d(deal_id, brand_id)
), taken AS (
    DELETE FROM tracking_early_confirmations e USING deals d
    WHERE e.deal_id = d.deal_id
    RETURNING e.*, d.brand_id
)
INSERT INTO tracking_confirmations (deal_id, deliverable_id, post_ids, confirmed_by,
                                    confirmed_at)
SELECT DISTINCT ON (deal_id, deliverable_id) deal_id, deliverable_id, post_ids, confirmed_by,
       confirmed_at
FROM taken WHERE signed_by = '' OR signed_by = brand_id
ORDER BY deal_id, deliverable_id, confirmed_at, signed_by
ON CONFLICT (deal_id, deliverable_id) DO NOTHING
RETURNING deal_id
"""

INSERT_CLICKS = """
INSERT INTO tracking_clicks (click_id, deal_id, visitor_id, clicked_at, brand_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
ON CONFLICT (click_id) DO NOTHING
RETURNING *
"""

# Keep the newest setting per (campaign, brand); returns the rows that changed.
SAVE_MODEL_SETTINGS = """
INSERT INTO tracking_campaign_models AS t (campaign_id, brand_id, model, lookback_days,
                                           half_life_days, set_at, event_id, leaked_orders)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[],
                     $6::timestamptz[], $7::text[], $8::text[])
ON CONFLICT (campaign_id, brand_id) DO UPDATE SET
    model = EXCLUDED.model, lookback_days = EXCLUDED.lookback_days,
    half_life_days = EXCLUDED.half_life_days, set_at = EXCLUDED.set_at,
    event_id = EXCLUDED.event_id, leaked_orders = EXCLUDED.leaked_orders
WHERE (t.set_at, t.event_id COLLATE "C") < (EXCLUDED.set_at, EXCLUDED.event_id)
RETURNING t.*
"""

INSERT_CREDITS = """
INSERT INTO tracking_order_credits (order_id, deal_id, revenue, refunded, currency)
SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::text[])
"""

# The credits of orders $1 become exactly ($2.. $6): those no longer given are deleted, the
# others inserted or updated in place where they changed. A credit only leaves a deal when it
# must: the deal's running totals then find its latest order again (migration 0206).
REPLACE_CREDITS = """
WITH credits AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::text[])
        AS u(order_id, deal_id, revenue, refunded, currency)
), gone AS (
    DELETE FROM tracking_order_credits c
    WHERE c.order_id = ANY($1::text[])
      AND NOT EXISTS (SELECT 1 FROM credits n
                      WHERE n.order_id = c.order_id AND n.deal_id = c.deal_id)
)
INSERT INTO tracking_order_credits AS t (order_id, deal_id, revenue, refunded, currency)
SELECT * FROM credits
ON CONFLICT (order_id, deal_id) DO UPDATE SET
    revenue = EXCLUDED.revenue, refunded = EXCLUDED.refunded, currency = EXCLUDED.currency
WHERE (t.revenue, t.refunded, t.currency)
    IS DISTINCT FROM (EXCLUDED.revenue, EXCLUDED.refunded, EXCLUDED.currency)
"""

# Leaked codes (domain.leaks). The orders of each (deal, promo code) the rules read, flagged
# or not: all of them, or, judging on from a judgement through ($3, $4), those of
# domain.leaks.orders_to_read ($5: the rules' window): the later orders; the earlier ones that
# leave the window (or the hour) up to the latest; the first still in each at the latest.
LEAK_ORDERS = """
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[])
        AS u(deal_id, promo_code, through_at, through_id)
), later AS (
    SELECT o.deal_id, o.order_id, o.promo_code, o.occurred_at, o.shipping_country,
           o.referrer, o.leak_suspected
    FROM u JOIN tracking_orders o ON o.deal_id = u.deal_id AND o.promo_code = u.promo_code
        -- The range the index reads; the row comparison then drops the ties already judged.
        AND o.occurred_at >= coalesce(u.through_at, '-infinity')
        AND (u.through_at IS NULL
             OR (o.occurred_at, o.order_id COLLATE "C") > (u.through_at, u.through_id))
), spans AS (
    SELECT u.deal_id, u.promo_code, u.through_at, n.newest, s.span
    FROM u
    JOIN (SELECT deal_id, promo_code, max(occurred_at) AS newest FROM later
          GROUP BY deal_id, promo_code) n USING (deal_id, promo_code)
    CROSS JOIN unnest(ARRAY[$5::interval, interval '1 hour']) AS s(span)
    WHERE u.through_at IS NOT NULL
)
SELECT * FROM later
UNION
SELECT o.deal_id, o.order_id, o.promo_code, o.occurred_at, o.shipping_country, o.referrer,
       o.leak_suspected
FROM spans s JOIN tracking_orders o ON o.deal_id = s.deal_id AND o.promo_code = s.promo_code
    AND o.occurred_at > s.through_at - s.span AND o.occurred_at <= s.newest - s.span
UNION
SELECT f.* FROM spans s CROSS JOIN LATERAL (
    SELECT o.deal_id, o.order_id, o.promo_code, o.occurred_at, o.shipping_country,
           o.referrer, o.leak_suspected
    FROM tracking_orders o
    WHERE o.deal_id = s.deal_id AND o.promo_code = s.promo_code
      AND o.occurred_at = (SELECT min(m.occurred_at) FROM tracking_orders m
                           WHERE m.deal_id = s.deal_id AND m.promo_code = s.promo_code
                             AND m.occurred_at > s.newest - s.span)
    ORDER BY o.order_id COLLATE "C" LIMIT 1
) f
"""

SAVE_LEAK_JUDGEMENTS = """
INSERT INTO tracking_leak_codes AS t (deal_id, promo_code, judgement, changed_from)
SELECT u.deal_id, u.promo_code, u.judgement::jsonb, NULL
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(deal_id, promo_code, judgement)
ON CONFLICT (deal_id, promo_code) DO UPDATE
    SET judgement = EXCLUDED.judgement, changed_from = NULL
"""

LEAK_DEALS = f"""
SELECT d.*, coalesce(m.leaked_orders, 'credit') AS leaked_orders,
       coalesce(t.reach, 0) AS reach
{_DEALS_WITH_TOTALS}"""

# Flag $1 suspected and $2 not, where that changes; the deals the changed orders credit.
MARK_LEAK_SUSPECTS = """
WITH changed AS (
    UPDATE tracking_orders SET leak_suspected = (order_id = ANY($1::text[]))
    WHERE (order_id = ANY($1::text[]) AND NOT leak_suspected)
       OR (order_id = ANY($2::text[]) AND leak_suspected)
    RETURNING order_id
)
SELECT DISTINCT c.deal_id FROM tracking_order_credits c JOIN changed USING (order_id)
"""

INSERT_LEAK_ALERTS = """
INSERT INTO tracking_leak_alerts (deal_id, promo_code, rule, order_id, fired_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
ON CONFLICT DO NOTHING
RETURNING deal_id, promo_code, rule
"""

# Per deal: whether one of its own codes is suspected, and the suspected orders crediting it
# (not fully refunded), withheld under its campaign's policy with their credit net of refunds;
# from its running totals (migration 0206). Deals with neither flagged nor suspected credits
# are left out.
LEAK_TOTALS = """
SELECT t.deal_id, t.flagged_orders > 0 AS suspected, t.suspected_orders,
       CASE WHEN m.leaked_orders = 'withhold' THEN t.suspected_orders ELSE 0 END
           AS withheld_orders,
       CASE WHEN m.leaked_orders = 'withhold' THEN t.suspected_revenue ELSE 0 END
           AS withheld_revenue
FROM tracking_deal_totals t
LEFT JOIN tracking_deals d USING (deal_id)
LEFT JOIN tracking_campaign_models m
    ON m.campaign_id = d.campaign_id AND m.brand_id = d.brand_id
WHERE t.deal_id = ANY($1::text[]) AND (t.flagged_orders > 0 OR t.suspected_credits > 0)
"""

# Changes to the brands' unattributed totals, summed per (brand, currency) first.
ADD_UNATTRIBUTED = """
INSERT INTO tracking_unattributed AS t (brand_id, currency, orders, revenue)
SELECT brand_id, currency, sum(orders), sum(revenue)
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::numeric[])
    AS u(brand_id, currency, orders, revenue)
GROUP BY brand_id, currency
ON CONFLICT (brand_id, currency) DO UPDATE
    SET orders = t.orders + EXCLUDED.orders, revenue = t.revenue + EXCLUDED.revenue
"""

# Each (campaign, brand)'s stored deal attributions and fees summed per currency.
CAMPAIGN_TOTALS = """
SELECT d.campaign_id, d.brand_id, a.currency, count(*) AS deals, sum(d.fee_amount) AS fees,
       sum(a.posts)::bigint AS posts, sum(a.likes)::bigint AS likes,
       sum(a.comments)::bigint AS comments, sum(a.shares)::bigint AS shares,
       sum(a.saves)::bigint AS saves, sum(a.views)::bigint AS views,
       sum(a.impressions)::bigint AS impressions, sum(a.reach)::bigint AS reach,
       sum(a.rate_sum) AS rate_sum, sum(a.rated_posts)::bigint AS rated_posts,
       sum(a.orders)::bigint AS orders, sum(a.pending_fx_orders)::bigint AS pending_fx_orders,
       sum(a.revenue) AS revenue, sum(a.spend) AS spend, max(a.as_of) AS as_of
FROM unnest($1::text[], $2::text[]) AS c(campaign_id, brand_id)
JOIN tracking_deals d ON d.campaign_id = c.campaign_id AND d.brand_id = c.brand_id
JOIN tracking_attribution a ON a.deal_id = d.deal_id
GROUP BY d.campaign_id, d.brand_id, a.currency
"""

# The currency of each (campaign, brand)'s first signed deal; "C" collation: the code-point
# order of Python's str comparison (domain.campaigns).
REPORTING_CURRENCIES = """
SELECT DISTINCT ON (d.campaign_id, d.brand_id) d.campaign_id, d.brand_id, d.currency
FROM unnest($1::text[], $2::text[]) AS c(campaign_id, brand_id)
JOIN tracking_deals d ON d.campaign_id = c.campaign_id AND d.brand_id = c.brand_id
ORDER BY d.campaign_id, d.brand_id, d.signed_at, d.deal_id COLLATE "C"
"""

# A campaign's attribution stored when its figures changed, its sequence one more.
SAVE_CAMPAIGN_ATTRIBUTIONS = """
INSERT INTO tracking_campaign_attribution AS t
    (campaign_id, brand_id, sequence, as_of, converted, figures)
SELECT u.campaign_id, u.brand_id, 1, u.as_of, u.converted, u.figures::jsonb
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::boolean[], $5::text[])
    AS u(campaign_id, brand_id, as_of, converted, figures)
ON CONFLICT (campaign_id, brand_id) DO UPDATE
    SET sequence = t.sequence + 1, as_of = EXCLUDED.as_of, converted = EXCLUDED.converted,
        figures = EXCLUDED.figures
    WHERE t.figures IS DISTINCT FROM EXCLUDED.figures
RETURNING t.campaign_id, t.brand_id, t.sequence
"""
