-- Each payout account's method chooses the rail (services/payouts/providers/rails.py). A
-- payout records the rail its current chapter is sent through: NULL before its first attempt,
-- and for payouts sent before rails were chosen by method (Stripe's, then).
ALTER TABLE payouts_payouts ADD COLUMN rail text;
