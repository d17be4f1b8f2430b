"""Adapters to the outside world (brokers, later notification services): each its own package, importing only the core."""
