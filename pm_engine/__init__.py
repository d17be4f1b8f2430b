"""pm-engine: a PostgreSQL-backed portfolio manager for systematic futures traders."""

__version__ = "0.1.0"
