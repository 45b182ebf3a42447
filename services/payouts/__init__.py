"""Payouts service: pays creators in their own currency through a double-entry ledger.

Not built yet.
"""
