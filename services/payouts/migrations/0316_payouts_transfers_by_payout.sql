-- A payout's ledger transfers by payout and kind: the creators' statements date each settled
-- payout by its latest settlement (services/payouts/domain/statements.py), as the tax report
-- does, and read that per payout of one creator rather than scanning the whole ledger.
CREATE INDEX payouts_transfers_by_payout ON payouts_transfers (payout_id, kind);
