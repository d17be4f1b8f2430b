"""The application assembled: the wiring of a configuration into a running engine (below the CLI, above the rest)."""
