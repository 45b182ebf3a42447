"""The payouts domain: pure rules for amounts, payability, the payout lifecycle and the ledger.

No I/O, no clock reads (callers pass `now`), no randomness.
"""
