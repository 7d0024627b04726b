"""Logging set-up: one line per record, secrets never formatted into messages."""

from __future__ import annotations

import logging
import re

# A Telegram bot token travels in the Bot API's URL path (/bot<id>:<secret>/method): any
# record that quotes such a URL (a client library's request line, an error) has it cut.
_BOT_TOKEN = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")


class RedactSecrets(logging.Filter):
    """Cuts what must never reach a log out of every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _BOT_TOKEN.sub("/bot<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def setup_logging(level: str) -> None:
    """Configure the root logger once for a process."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
    # Alembic narrates every plugin at INFO; the migration it runs is enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO: provider URLs can carry credentials.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
