"""Entry point for ``python -m pm_engine``."""

from pm_engine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
