"""Raw bytes to a tree of MIME parts, repairing the shapes broken mailers write.

The standard parser is used as it is, with three repairs around it:
- the header block is mended first: leading lines that are no header (a mbox "From "
  separator escaped as ">From", a byte-order mark, blank lines) are dropped, and a line
  without leading whitespace followed closely by more headers is taken as a continuation,
  as mail clients read it, instead of ending the headers;
- a multipart whose boundary is missing or wrong is split again on the boundary its body
  really uses, or read as text when it has none;
- nesting is bounded: the parser recurses once per level and fails past Python's
  recursion limit, so a mail nested deeper is parsed level by level down to MAX_DEPTH.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import Message
from email.parser import BytesParser

MAX_DEPTH = 25  # levels of multipart and attached messages looked into
MAX_HEADER_BLOCK = 256 * 1024
MAX_MULTIPARTS = 100
_HEADER_LINE = re.compile(rb"^[!-9;-~]{1,200}:")
_BOUNDARY_LINE = re.compile(rb"^--([ -~]{1,70}?)(--)?[ \t]*\r?$", re.MULTILINE)


def repair_headers(raw: bytes) -> bytes:
    """The mail with its header block mended (see the module's docstring)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    end = re.search(rb"\r?\n\r?\n", raw[:MAX_HEADER_BLOCK])
    block_end = end.start() if end else min(len(raw), MAX_HEADER_BLOCK)
    lines = raw[:block_end].split(b"\n")
    first_header = next((i for i, line in enumerate(lines[:20]) if _HEADER_LINE.match(line)),
                        None)
    if first_header is None:
        if not lines[0].strip() and _HEADER_LINE.match(raw.lstrip(b"\r\n")):
            return repair_headers(raw.lstrip(b"\r\n"))  # blank lines before the headers
        return raw
    # An mbox "From " line is the parser's to handle; other leading lines go.
    keep_from = lines[0].startswith(b"From ") and first_header == 1
    kept = lines[:1] if keep_from else []
    for i, line in enumerate(lines[first_header:], start=first_header):
        if line.strip(b"\r") and not _HEADER_LINE.match(line) and not line[:1].isspace() and (
            any(_HEADER_LINE.match(following) for following in lines[i + 1:i + 4])
        ):
            line = b" " + line  # a continuation its sender forgot to indent
        kept.append(line)
    return b"\n".join(kept) + raw[block_end:]


def _headers_only(data: bytes) -> Message:
    """A part with its headers parsed and its body left as it came."""
    return BytesParser(policy=policy.default).parsebytes(data, headersonly=True)


def parse_tree(raw: bytes) -> tuple[Message, bool]:
    """(the root part, whether the parser stopped short of the deepest parts)."""
    # Hundreds of multipart headers: nested too deep for the parser, or more parts than
    # are read anyway. Reading level by level costs far less than failing first.
    if raw.count(b"multipart/") + raw.count(b"Multipart/") + raw.count(b"MULTIPART/") <= (
            MAX_MULTIPARTS):
        try:
            return message_from_bytes(raw, policy=policy.default), False
        except RecursionError:
            pass
    root = _headers_only(raw)
    expand(root, 1)
    return root, True


def expand(part: Message, depth: int) -> None:
    """Parse the children of a part read with its headers only, one level at a time, down
    to MAX_DEPTH."""
    if depth > MAX_DEPTH:
        return
    if part.get_content_maintype() == "multipart":
        children = split_multipart(part)
    elif part.get_content_type() == "message/rfc822":
        body = _body_bytes(part)
        children = [_headers_only(body)]
    else:
        return
    if children:
        part.set_payload(children)  # type: ignore[arg-type]
        for child in children:
            expand(child, depth + 1)


def _body_bytes(part: Message) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def split_multipart(part: Message) -> list[Message]:
    """The children of a multipart the parser could not split (headers only, unparsed
    below): on its declared boundary, else on the one its body uses; [] when none."""
    body = _body_bytes(part)
    declared = part.get_boundary()
    boundary = declared.encode("utf-8", "surrogateescape") if declared else None
    if boundary is None or b"--" + boundary not in body:
        found = [m.group(1) for m in _BOUNDARY_LINE.finditer(body[:MAX_HEADER_BLOCK])]
        # A real boundary opens at least one part and usually closes with "--".
        boundary = next((b for b in found if found.count(b) >= 2 or b + b"--" in found), None)
        if boundary is None:
            return []
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r?\n|$)")
    chunks: list[bytes] = []
    pos: int | None = None
    for match in delimiter.finditer(body):
        if pos is not None:
            chunks.append(body[pos:match.start()])
        if match.group(1):
            pos = None
            break
        pos = match.end()
    if pos is not None:
        chunks.append(body[pos:])  # the closing delimiter is missing: keep the last part
    # Each chunk starts with the delimiter's line end; a second one means "no headers".
    return [_headers_only(chunk[2:] if chunk.startswith(b"\r\n") else chunk[1:])
            for chunk in chunks]
