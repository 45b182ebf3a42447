-- The brand of the shop that sent a refund or a click (v1.9: named, or implied by a shop key
-- selling for one brand). A refund then counts only for an order of that brand, a click only
-- on that brand's deal. NULL: any brand, as before.
ALTER TABLE tracking_refunds ADD COLUMN brand_id text;
ALTER TABLE tracking_clicks ADD COLUMN brand_id text;
