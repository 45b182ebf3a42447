-- The ledger's two posting triggers run once per statement instead of once per posting: a
-- payout posts about eleven postings, and a batch's postings are one statement
-- (docs/architecture.md §6, "Ledger"). The rules are the same, and the balance rule is
-- stricter: a statement's transfers must balance when it ends, not only at commit, so a
-- transfer's postings are inserted together (the store always did).

DROP TRIGGER payouts_postings_balance ON payouts_postings;
DROP FUNCTION payouts_transfer_balances();

CREATE FUNCTION payouts_transfers_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced text;
BEGIN
    -- Per transfer through its index: the planner knows nothing of a transition table's size.
    SELECT t.transfer_id INTO unbalanced
    FROM (SELECT DISTINCT transfer_id FROM inserted) t
    CROSS JOIN LATERAL (
        SELECT 1 FROM payouts_postings p WHERE p.transfer_id = t.transfer_id
        GROUP BY p.currency HAVING sum(p.amount) <> 0
        LIMIT 1
    ) off
    ORDER BY t.transfer_id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfer % does not sum to zero in every currency', unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER payouts_postings_balance
    AFTER INSERT ON payouts_postings REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION payouts_transfers_balance();

DROP TRIGGER payouts_postings_escrow ON payouts_postings;
DROP FUNCTION payouts_escrow_follows_postings();

-- One row per brand and currency even when a statement posts to one escrow several times
-- (ON CONFLICT may change a row only once per statement).
CREATE FUNCTION payouts_escrow_follows_postings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payouts_brand_escrow (brand_id, currency, balance)
    SELECT substring(account FROM length('brand_escrow:') + 1), currency, sum(amount)
    FROM inserted
    WHERE account LIKE 'brand\_escrow:%'
    GROUP BY account, currency
    ON CONFLICT (brand_id, currency)
        DO UPDATE SET balance = payouts_brand_escrow.balance + EXCLUDED.balance;
    RETURN NULL;
END
$$;
CREATE TRIGGER payouts_postings_escrow
    AFTER INSERT ON payouts_postings REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION payouts_escrow_follows_postings();
