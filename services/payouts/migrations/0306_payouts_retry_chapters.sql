-- A failed payout is retried (the creator's account changed, or `creatorflow payouts retry`).
-- Each retry is a new chapter: the provider gets a new idempotency key (payout id and
-- chapter) and the ledger records its steps apart (`<payout>:<kind>:<chapter>`). in_doubt:
-- the last transfer may have been executed (given up after retryable errors), so the next
-- retry keeps its chapter and key.
ALTER TABLE payouts_payouts ADD COLUMN chapter integer NOT NULL DEFAULT 1 CHECK (chapter >= 1);
ALTER TABLE payouts_payouts ADD COLUMN in_doubt boolean NOT NULL DEFAULT false;
CREATE INDEX payouts_failed_by_creator ON payouts_payouts (creator_id) WHERE status = 'failed';
