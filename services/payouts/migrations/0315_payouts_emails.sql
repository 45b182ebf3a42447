-- Creators' payout e-mails (docs/architecture.md §11). The address comes with the payout
-- account (`creator.payout-account.upserted`'s optional `email`): personal data, never logged.
ALTER TABLE payouts_accounts ADD COLUMN email text;

-- One row per payout status change of a creator with an address, written in the same
-- transaction as the change's `payout.<status>` outbox event and keyed by that event's id, so
-- no change is missed and a replayed one adds nothing. The sender claims due rows with
-- FOR UPDATE SKIP LOCKED and a lease (`not_before`, `claim_id`), commits `sending` before the
-- SMTP transaction and `sent` after it; a row left `sending` past its lease becomes `unknown`
-- and is never sent again. No address is copied here: the sender reads the account's.
CREATE TABLE payouts_emails (
    event_id     text        PRIMARY KEY,
    payout_id    text        NOT NULL,
    creator_id   text        NOT NULL,
    status       text        NOT NULL,
    kind         text,
    amount       numeric     NOT NULL,
    currency     char(3)     NOT NULL,
    converted    boolean     NOT NULL,
    hold_code    text,
    returned     boolean     NOT NULL DEFAULT false,
    changed_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    state        text        NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'unknown')),
    attempts     integer     NOT NULL DEFAULT 0,
    -- pending: not claimed before then (a lease, or a retry's backoff); sending: when the
    -- sender's lease ends and the row is taken as `unknown`.
    not_before   timestamptz NOT NULL,
    claim_id     text,
    -- An SMTP reply code or error class: never the server's text, which may quote the address.
    error        text,
    finished_at  timestamptz
);
CREATE INDEX payouts_emails_due ON payouts_emails (not_before)
    WHERE state IN ('pending', 'sending');
CREATE INDEX payouts_emails_by_payout ON payouts_emails (payout_id);
