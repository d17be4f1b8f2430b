"""Adapters to the outside world (brokers; later notification services): each a package importing only the core."""
