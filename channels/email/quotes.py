"""Separate what a customer wrote in a reply from the quoted history and the signature.

Written here rather than taken from a library: the maintained reply parsers are either
unmaintained (talon), untyped, or pull in large dependencies, and the shapes that matter
(Gmail/Apple "On ... wrote:", Outlook headers blocks, '>' quotes, '-- ' signatures,
"Sent from my ..." lines) fit in a page of rules.
"""

from __future__ import annotations

import re

# A quote header may be wrapped over two lines by the client, so lines are also tried joined.
_ATTRIBUTION = re.compile(
    r"^\s*("
    r"on\b.{4,300}\bwrote:"  # Gmail, Apple Mail, Thunderbird
    r"|le\b.{4,300}\ba écrit\s?:"  # French
    r"|am\b.{4,300}\bschrieb\b.{0,100}:"  # German
    r"|el\b.{4,300}\bescribió:"  # Spanish
    r"|op\b.{4,300}\bgeschreven:"  # Dutch
    r")\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*original message\s*-{2,}|_{20,}|-{2,}\s*ursprüngliche nachricht\s*-{2,})\s*$",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(r"^\s*\*?(from|von|de|van)\*?\s*:", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(sent|date|to|subject|gesendet|an|betreff|envoyé|objet|cc)\*?\s*:", re.IGNORECASE
)
_SIGNATURE = re.compile(
    r"^(-- ?|sent from my \w+.*|get outlook for \w+.*|sent from (outlook|mail) for \w+.*)$",
    re.IGNORECASE,
)
_FORWARD = re.compile(r"^\s*-{2,}\s*(forwarded message|begin forwarded message)", re.IGNORECASE)


def _cut_at(lines: list[str]) -> int | None:
    """Index of the first line that starts the quoted history or signature."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if _FORWARD.match(line):
            return None  # a forward's content is the message: keep everything
        if _SEPARATOR.match(line):
            return i
        joined = stripped + " " + lines[i + 1].strip() if i + 1 < len(lines) else stripped
        if _ATTRIBUTION.match(stripped) or (
            stripped.lower().startswith(("on ", "le ", "am ", "el ", "op "))
            and _ATTRIBUTION.match(joined)
        ):
            return i
        if _HEADER_FROM.match(line) and any(
            _HEADER_NEXT.match(following) for following in lines[i + 1 : i + 4]
        ):
            return i  # Outlook's "From: / Sent: / To: / Subject:" block
        if _SIGNATURE.match(line.rstrip()) or line == "-- ":
            return i
        if stripped.startswith(">") and all(
            not rest.strip() or rest.lstrip().startswith(">") for rest in lines[i:]
        ):
            return i  # a trailing block of '>' lines
    return None


def split_reply(text: str) -> tuple[str, str]:
    """(what the sender wrote, the quoted history and signature after it)."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = normalised.split("\n")
    cut = _cut_at(lines)
    if cut is None:
        return normalised.strip(), ""
    visible = "\n".join(lines[:cut]).strip()
    rest = "\n".join(lines[cut:]).strip()
    if not visible:
        # Nothing above the quote (a bare forward, a top-quoted mail): show it all.
        return normalised.strip(), ""
    return visible, rest
