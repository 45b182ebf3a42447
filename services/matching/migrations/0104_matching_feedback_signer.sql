-- The brand that signed each feedback ('' if unsigned): signed feedback counts, as a hire or
-- a label, only for requests of that brand, so feedback sent before a campaign was answered
-- cannot speak for another brand's campaign.
ALTER TABLE matching_feedback ADD COLUMN signed_by text NOT NULL DEFAULT '';
