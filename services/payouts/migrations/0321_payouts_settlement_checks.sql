-- A sent payout's rail is asked about it at growing intervals (domain/settlement_checks.py),
-- not every round: `settle_check_at` is when it is due again (NULL: at once), `settle_checks`
-- how often it was asked since it was last sent.
ALTER TABLE payouts_payouts
    ADD COLUMN settle_check_at timestamptz,
    ADD COLUMN settle_checks integer NOT NULL DEFAULT 0;
CREATE INDEX payouts_payouts_settle_check ON payouts_payouts (settle_check_at)
    WHERE status = 'sent';
