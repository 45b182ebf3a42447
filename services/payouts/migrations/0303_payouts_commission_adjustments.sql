-- Commission follows attribution: a late order or refund that changes a deal's attributed
-- revenue after its commission was decided books the difference (a top-up payout, or a
-- clawback the creator repays from later payouts) until PAYOUTS_COMMISSION_ADJUSTMENT_DAYS
-- after the attribution window closed.

-- Each attribution kept for a deal is its next revision.
ALTER TABLE payouts_attribution ADD COLUMN revision bigint NOT NULL DEFAULT 1;

-- The attribution revision the deal's commission was last decided on (0: none). Deals decided
-- before this migration start at 0: their first decision was never revised, so those still
-- adjustable are checked once against their latest attribution.
ALTER TABLE payouts_deals ADD COLUMN commission_revision bigint NOT NULL DEFAULT 0;
CREATE INDEX payouts_deals_commission_open ON payouts_deals (attribution_closes_at)
    WHERE commission_rate > 0;
DROP INDEX payouts_deals_commission_due;

-- A clawback is recorded as a row of kind 'clawback': positive amounts taken back, no transfer
-- to the creator, complete at once.
ALTER TABLE payouts_payouts DROP CONSTRAINT payouts_payouts_kind_check;
ALTER TABLE payouts_payouts ADD CONSTRAINT payouts_payouts_kind_check
    CHECK (kind IN ('fee', 'commission', 'clawback'));

-- Part of a payout's creator share (gross currency) kept to repay clawed-back commission;
-- net_amount converts the rest.
ALTER TABLE payouts_payouts ADD COLUMN recovered_amount numeric NOT NULL DEFAULT 0
    CHECK (recovered_amount >= 0);
