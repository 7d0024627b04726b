"""Twilio error codes agents meet most, explained in words, and which ones are worth a retry.

The codes come back in two places: in the REST answer to a send, and as `ErrorCode` in a
failed or undelivered status callback. https://www.twilio.com/docs/api/errors lists them all.
"""

from __future__ import annotations

EXPLANATIONS: dict[int, str] = {
    20003: "Twilio refused the credentials: check the inbox's account SID and auth token",
    20404: "Twilio does not know this resource",
    20429: "too many requests: Twilio is rate limiting this account",
    21211: "the 'To' number is not a valid phone number",
    21408: "sending to this country or region is not enabled on the Twilio account",
    21602: "the message has no text, template or media",
    21606: "the 'From' number is not a number of this Twilio account that can send here",
    21610: "the recipient opted out (replied STOP) of messages from this sender",
    21612: "Twilio cannot route from this 'From' to this 'To'",
    21614: "the 'To' number is not a mobile number that can receive messages",
    30001: "the sender's queue overflowed: too many messages at once",
    30002: "the Twilio account is suspended",
    30003: "the recipient's phone is unreachable (switched off or out of coverage)",
    30004: "the message was blocked (the recipient or their carrier blocks this sender)",
    30005: "the recipient's number is unknown to their carrier or no longer exists",
    30006: "the number is a landline or its carrier cannot receive text messages",
    30007: "the carrier filtered the message as spam",
    30008: "the carrier reported an unknown delivery error",
    63003: "the recipient cannot be reached on WhatsApp (not a WhatsApp number)",
    63007: "the 'From' WhatsApp sender does not exist on this Twilio account",
    63016: "outside the WhatsApp 24-hour window: only an approved template can be sent",
    63018: "the WhatsApp sender hit its rate limit",
    63024: "invalid message recipient",
    63049: "WhatsApp chose not to deliver this message to the recipient",
}

# Rate limits and overflows pass; everything else with a 4xx status will fail again.
TRANSIENT_CODES = frozenset({20429, 30001, 63018})


def explain(code: int | None, fallback: str = "") -> str:
    """`<code>: <explanation>` for an error code, Twilio's own words when the table lacks it."""
    if code is None:
        return fallback or "Twilio reported an error without a code"
    words = EXPLANATIONS.get(code) or fallback or f"see https://www.twilio.com/docs/errors/{code}"
    return f"{code}: {words}"


def parse_code(raw: str | None) -> int | None:
    """An ErrorCode form value as an int (None when absent or not a number)."""
    value = (raw or "").strip()
    return int(value) if value.isdigit() else None
