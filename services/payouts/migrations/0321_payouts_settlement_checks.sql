-- A sent payout's rail is asked about it at growing intervals (domain/settlement_checks.py),
-- not every round: `settle_check_at` is when it is due again (NULL: at once), `settle_checks`
-- how often it was asked since it was last sent. The sent payouts are few, and read through
-- the index payouts_sent: no index of its own.
ALTER TABLE payouts_payouts
    ADD COLUMN settle_check_at timestamptz,
    ADD COLUMN settle_checks integer NOT NULL DEFAULT 0;
