-- Who signed each confirmation: a brand id, or '' when it came unsigned (the development
-- profile, or before signatures). A confirmation counts only if unsigned or signed by the
-- deal's brand, so another brand's confirmation, even one that arrives before the deal,
-- neither pays the creator nor takes the place of the deal's own brand's.
ALTER TABLE payouts_confirmations ADD COLUMN signed_by text NOT NULL DEFAULT '';
ALTER TABLE payouts_confirmations DROP CONSTRAINT payouts_confirmations_pkey;
ALTER TABLE payouts_confirmations ADD PRIMARY KEY (deal_id, deliverable_id, signed_by);
