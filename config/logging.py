"""Logging set-up: one line per record, secrets never formatted into messages."""

from __future__ import annotations

import logging


def setup_logging(level: str) -> None:
    """Configure the root logger once for a process."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Alembic narrates every plugin at INFO; the migration it runs is enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
