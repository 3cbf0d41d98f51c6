"""``rollback-harness`` and ``python -m rollback_harness``: the evidence tools (rollback/verify_cli.py)."""

from __future__ import annotations

import sys

from .rollback.verify_cli import main

if __name__ == "__main__":
    sys.exit(main())
