-- The fee schedule is a term of the deal, fixed when the deal is first stored: a later change
-- of PAYOUTS_FEE_SCHEDULE (or replicas with different settings) must not pay a fee twice.
ALTER TABLE payouts_deals ADD COLUMN fee_schedule text NOT NULL DEFAULT 'on_completion'
    CHECK (fee_schedule IN ('on_completion', 'per_deliverable'));
-- Deals already paid per deliverable keep that schedule.
UPDATE payouts_deals d SET fee_schedule = 'per_deliverable'
WHERE EXISTS (
    SELECT 1 FROM payouts_payouts p
    WHERE p.deal_id = d.deal_id AND p.kind = 'fee' AND p.milestone <> ''
);
ALTER TABLE payouts_deals ALTER COLUMN fee_schedule DROP DEFAULT;

-- Whatever the code does, a deal's fee payouts never add up to more than its fee. The deal
-- row is locked first, so concurrent inserts for one deal are checked one after the other.
CREATE FUNCTION payouts_fee_within_deal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deal_fee      numeric;
    deal_currency char(3);
    paid          numeric;
BEGIN
    IF NEW.kind <> 'fee' THEN
        RETURN NEW;
    END IF;
    SELECT fee_amount, currency INTO deal_fee, deal_currency
    FROM payouts_deals WHERE deal_id = NEW.deal_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fee payout % for deal % without stored terms', NEW.payout_id, NEW.deal_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_fee_within_deal';
    END IF;
    IF NEW.gross_currency <> deal_currency THEN
        RAISE EXCEPTION 'fee payout % is in %, deal % is in %',
            NEW.payout_id, NEW.gross_currency, NEW.deal_id, deal_currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_fee_within_deal';
    END IF;
    SELECT coalesce(sum(gross_amount), 0) INTO paid FROM payouts_payouts
    WHERE deal_id = NEW.deal_id AND kind = 'fee' AND payout_id <> NEW.payout_id;
    IF paid + NEW.gross_amount > deal_fee THEN
        RAISE EXCEPTION 'fee payouts of deal % would add up to % %, above its fee of % %',
            NEW.deal_id, paid + NEW.gross_amount, deal_currency, deal_fee, deal_currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_fee_within_deal';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payouts_fee_within_deal
    BEFORE INSERT OR UPDATE OF gross_amount, gross_currency, deal_id, kind ON payouts_payouts
    FOR EACH ROW EXECUTE FUNCTION payouts_fee_within_deal();
