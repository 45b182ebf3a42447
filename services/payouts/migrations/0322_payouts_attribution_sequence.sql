-- The number of the attribution update kept for each deal (`attribution.updated`'s `sequence`,
-- v1.10): an update with a lower one, replayed from a dead-letter topic, never replaces it,
-- even with the same `as_of` (domain/commission.py, `replaces`). Null before numbering.
ALTER TABLE payouts_attribution ADD COLUMN sequence bigint;
