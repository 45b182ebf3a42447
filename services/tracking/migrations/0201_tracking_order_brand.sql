-- The brand whose shop sold an order, when the shop says: the order then counts only for
-- that brand's deals, whatever other brands' deals use the same code.
ALTER TABLE tracking_orders ADD COLUMN brand_id text;
