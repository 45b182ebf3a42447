"""Payouts service: pays creators in their own currency through a double-entry ledger, once
and only once per confirmed deliverable (`python -m services.payouts`)."""
