"""The payouts store: the port (`port.py`), its PostgreSQL adapter (`postgres.py`) and the
in-memory fake (`memory.py`), which passes the same contract tests."""
