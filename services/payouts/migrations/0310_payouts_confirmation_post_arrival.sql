-- When the post that completed an automatic confirmation reached CreatorFlow (the optional
-- `post_received_at` of deliverable.confirmed): the start of the post -> payout.sent latency
-- measured when the payout is sent. Null for manual confirmations and older ones.
ALTER TABLE payouts_confirmations ADD COLUMN post_received_at timestamptz;
