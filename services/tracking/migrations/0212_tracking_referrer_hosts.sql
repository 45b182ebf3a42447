-- Orders keep only their referrer's host (services/tracking/domain/leaks.py, kept_referrer):
-- reduce the referrers stored before, where these steps give what Python's
-- urlsplit(...).hostname does (lower-cased, without a trailing dot; '' for none): an ASCII
-- netloc without brackets or percent signs, or none at all. The few others (bracketed or
-- percent-encoded hosts, non-ASCII ones, which Python checks further) keep their text and
-- are reduced when read (store/rows.py). tests/integration/tracking/test_referrer_hosts.py
-- compares the two.
UPDATE tracking_orders o
SET referrer = k.kept
FROM (
    SELECT order_id,
           coalesce(rtrim(lower(split_part(regexp_replace(netloc, '^.*@', ''), ':', 1)), '.'), '')
               AS kept
    FROM (
        SELECT order_id,
               substring(CASE WHEN strpos(referrer, '//') > 0 THEN referrer
                              ELSE '//' || referrer END
                         FROM '^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//([^/?#]*)') AS netloc
        FROM tracking_orders WHERE referrer IS NOT NULL
    ) n
    WHERE netloc IS NULL
       OR (netloc !~ '[][%]' AND octet_length(netloc) = char_length(netloc))
) k
WHERE o.order_id = k.order_id AND o.referrer IS DISTINCT FROM k.kept;
