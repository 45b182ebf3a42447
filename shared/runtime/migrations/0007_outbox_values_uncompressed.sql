-- Outbox values are stored out of line but not compressed: a row lives only until its relay
-- has published it, and compressing a large event (a match answer is ~30 kB) on insert cost
-- more than the rest of the answering transaction's writes. Values under ~2 kB (most events)
-- are stored inline as before.
ALTER TABLE outbox ALTER COLUMN value SET STORAGE EXTERNAL;
