"""Entry point so that ``python -m bench`` runs the command-line interface."""

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
