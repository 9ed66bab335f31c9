"""Persistence: SQLAlchemy 2.0 models, the async database, queries per domain, Redis helpers."""
