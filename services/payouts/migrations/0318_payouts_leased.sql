-- A claimed payout stays leased until its attempt's outcome is recorded. A claim that finds
-- its payout still leased knows an earlier lease ran out without an answer (a slow rail,
-- a crash after the call): that attempt may have paid, so the payout is in doubt and is looked
-- up on its rail before anything is sent, and never moved to another rail on the strength of
-- an error alone (docs/architecture.md §6, "Leases").
ALTER TABLE payouts_payouts ADD COLUMN leased boolean NOT NULL DEFAULT false;
