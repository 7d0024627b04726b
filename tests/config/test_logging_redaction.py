"""Provider credentials never reach a log line, whatever library logs the URL."""

from __future__ import annotations

import logging

import channels.telegram  # noqa: F401  (it declares how its tokens are cut from logs)
from config.logging import RedactSecrets, setup_logging


def test_a_bot_token_in_a_url_is_cut_from_the_record() -> None:
    record = logging.LogRecord(
        "httpx", logging.WARNING, __file__, 1, "HTTP Request: %s %s",
        ("POST", "https://api.telegram.org/bot7101234567:AAHk2s9dQe1w3Zt0pLm/sendMessage"),
        None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == (
        "HTTP Request: POST https://api.telegram.org/bot<redacted>/sendMessage")


def test_request_lines_are_not_logged_at_info() -> None:
    setup_logging("info")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert any(isinstance(f, RedactSecrets) for h in logging.getLogger().handlers
               for f in h.filters)
