-- Orders keep only their referrer's host (services/tracking/domain/leaks.py, kept_referrer):
-- reduce the referrers stored before. The same steps as Python's urlsplit(...).hostname,
-- lower-cased and without a trailing dot; '' for a referrer with no host
-- (tests/integration/tracking/test_referrer_hosts.py compares the two).
UPDATE tracking_orders o
SET referrer = k.kept
FROM (
    SELECT order_id, coalesce(rtrim(lower(
               CASE WHEN strpos(host, '[') > 0 THEN substring(host FROM '\[([^\]]*)\]')
                    WHEN strpos(host, ']') > 0 THEN NULL
                    ELSE split_part(host, ':', 1) END), '.'), '') AS kept
    FROM (
        SELECT order_id,
               regexp_replace(
                   substring(CASE WHEN strpos(referrer, '//') > 0 THEN referrer
                                  ELSE '//' || referrer END
                             FROM '^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//([^/?#]*)'),
                   '^.*@', '') AS host
        FROM tracking_orders WHERE referrer IS NOT NULL
    ) h
) k
WHERE o.order_id = k.order_id AND o.referrer IS DISTINCT FROM k.kept;
