"""Logging set-up: one line per record, secrets never formatted into messages."""

from __future__ import annotations

import logging
import re

# Secrets that travel where a log line may quote them (a provider's URL path), each with
# what stands in its place; a channel adds its own (redact_in_logs) when it is imported.
_REDACTED: list[tuple[re.Pattern[str], str]] = []


def redact_in_logs(pattern: re.Pattern[str], replacement: str) -> None:
    """Cut what `pattern` finds out of every log record, whoever logs it."""
    if all(known.pattern != pattern.pattern for known, _ in _REDACTED):
        _REDACTED.append((pattern, replacement))


class RedactSecrets(logging.Filter):
    """Cuts what must never reach a log out of every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for pattern, replacement in _REDACTED:
            redacted = pattern.sub(replacement, redacted)
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
