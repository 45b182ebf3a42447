-- A payout's FX rate is locked when it became owed (its last deliverable confirmed, or its
-- commission decided), not when it is converted: a payout held for an account, a tax form or
-- a cool-off converts later at the rate of that moment. Rows stored before have none and
-- convert at the rate in force when released, as they did.
ALTER TABLE payouts_payouts ADD COLUMN fx_at timestamptz;
