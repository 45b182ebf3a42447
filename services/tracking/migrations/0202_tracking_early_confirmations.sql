-- A manual confirmation that arrives before its deal waits here with the brand that signed it
-- ('' if none did): once the deal is stored it counts only if that is the deal's brand, so
-- another brand's confirmation can neither confirm a deliverable nor block its confirmation.
CREATE TABLE tracking_early_confirmations (
    deal_id        text        NOT NULL,
    deliverable_id text        NOT NULL,
    signed_by      text        NOT NULL,
    post_ids       text[]      NOT NULL,
    confirmed_by   text        NOT NULL,
    confirmed_at   timestamptz NOT NULL,
    PRIMARY KEY (deal_id, deliverable_id, signed_by)
);

-- Confirmations of deals not stored yet wait like the new ones (they were all unsigned).
INSERT INTO tracking_early_confirmations
SELECT c.deal_id, c.deliverable_id, '', c.post_ids, c.confirmed_by, c.confirmed_at
FROM tracking_confirmations c
WHERE NOT EXISTS (SELECT 1 FROM tracking_deals d WHERE d.deal_id = c.deal_id);
DELETE FROM tracking_confirmations c
WHERE NOT EXISTS (SELECT 1 FROM tracking_deals d WHERE d.deal_id = c.deal_id);
