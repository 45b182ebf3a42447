"""Matching's store: the port, its PostgreSQL adapter and the in-memory fake."""
