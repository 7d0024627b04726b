"""The parts of a mail sorted into what the sender wrote, the files, and machine reports.

The body is the first text, HTML, alternative or related part; in an alternative the
plain branch gives the text and the richest branch the HTML (a whitespace-only text part
gives way to the HTML). After the body, inline text parts (list footers, text typed between
two pictures) join it, while further HTML parts are kept as files,
as are attached messages, calendar invitations (with a one-line summary), TNEF
(winmail.dat) and uuencoded blocks found in the text. Work is bounded: MAX_PARTS parts,
MAX_DEPTH levels, MAX_TEXT_BYTES of text and HTML, each cut visibly.
"""

from __future__ import annotations

import binascii
import mimetypes
import re
from dataclasses import dataclass, field
from email.message import Message

from channels.email.calendar import calendar_summary
from channels.email.charsets import decode_header_value, decode_text
from channels.email.headers import header
from channels.email.html import content_id
from channels.email.structure import MAX_DEPTH, expand, split_multipart

MAX_PARTS = 250
MAX_TEXT_BYTES = 1024 * 1024  # text and HTML read per mail; the rest is cut with a note
MAX_UU_FILES = 20
REPORT_TYPES = frozenset({"message/delivery-status", "message/feedback-report",
                          "message/disposition-notification", "message/global-delivery-status"})
_CALENDAR_TYPES = frozenset({"text/calendar", "application/ics"})
_UU_BLOCK = re.compile(r"^begin [0-7]{3,4} ([^\r\n]{1,255})\r?\n(.*?)^end[ \t]*\r?$",
                       re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class ParsedAttachment:
    """A file carried by the email (attachment or inline image)."""

    filename: str
    content_type: str
    data: bytes
    inline: bool = False
    content_id: str | None = None  # of an inline part, as `cid:` URLs in the HTML name it


@dataclass
class Content:
    """What a mail's parts hold, sorted."""

    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    files: list[ParsedAttachment] = field(default_factory=list)
    reports: list[Message] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    charsets: list[str] = field(default_factory=list)

    def has_text(self) -> bool:
        """Whether some plain text part says anything."""
        return any(p.strip() for p in self.plain)


@dataclass
class _Budget:
    parts: int = 0
    text_bytes: int = 0
    too_deep: bool = False
    too_many: bool = False
    too_long: int = 0  # bytes of text and HTML left unread



def _filename(part: Message, number: int) -> str:
    try:
        name = part.get_filename()
    except (ValueError, IndexError, TypeError, AttributeError):
        name = None
    if name:
        # Raw 8-bit names and RFC 2047 words inside quotes, as many clients still write.
        return decode_header_value(str(name), part.get_content_charset())[:200] or "file"
    ctype = part.get_content_type()
    if ctype == "application/ms-tnef":
        return "winmail.dat"
    if ctype in _CALENDAR_TYPES:
        return "invite.ics"
    if ctype == "text/rfc822-headers":
        return f"undelivered-headers-{number}.txt"
    stem = content_id(header(part, "Content-ID")).split("@")[0] or "part"
    extension = mimetypes.guess_extension(ctype) or f".{part.get_content_subtype() or 'bin'}"
    return f"{stem[:100]}-{number}{extension}"


def _message_bytes(part: Message) -> bytes:
    """An attached message as it came (b"" when it is empty)."""
    inner = part.get_payload()
    if isinstance(inner, list):
        if not inner or not isinstance(inner[0], Message):
            return b""
        message = inner[0]
        if not message.keys() and not str(message.get_payload() or "").strip():
            return b""
        try:
            return message.as_bytes()
        except (RecursionError, ValueError, TypeError, LookupError):
            return b""
    raw = part.get_payload(decode=True)
    return raw if isinstance(raw, bytes) and raw.strip() else b""


def _payload(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError):
        return b""
    return data if isinstance(data, bytes) else b""


def _uu_decode(block: str) -> bytes:
    out = bytearray()
    for line in block.splitlines():
        if not line.strip() or line.strip() == "`":
            continue
        encoded = line.encode("latin-1", "replace")
        try:
            out += binascii.a2b_uu(encoded)
        except binascii.Error:  # encoders that pad short lines wrongly
            count = (((encoded[0] - 32) & 63) * 4 + 5) // 3
            try:
                out += binascii.a2b_uu(encoded[:count])
            except binascii.Error:
                continue
    return bytes(out)


class _Walker:
    """One pass over the parts of a mail, or of one branch of an alternative."""

    def __init__(self, budget: _Budget, content: Content, *, fragments: bool = False) -> None:
        self.budget = budget
        self.out = content
        # Inside an alternative's branch every text and HTML part is one rendering.
        self.fragments = fragments
        self.body_taken = False
        self.in_report = False

    def visit(self, part: Message, depth: int, *, resource: bool = False) -> None:
        budget = self.budget
        if depth > MAX_DEPTH:
            budget.too_deep = True
            return
        budget.parts += 1
        if budget.parts > MAX_PARTS:
            budget.too_many = True
            return
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        charset = part.get_content_charset()
        if charset:
            self.out.charsets.append(charset)
        if ctype in REPORT_TYPES or (self.in_report and ctype in (
                "text/rfc822-headers", "message/rfc822")):
            self.out.reports.append(part)
            if ctype in REPORT_TYPES:
                return
        if part.get_content_maintype() == "multipart":
            self._multipart(part, ctype, depth)
        elif ctype == "message/rfc822":
            self._attached_message(part)
        elif (ctype in ("text/plain", "text/html") and disposition != "attachment"
              and not part.get_filename() and not resource):
            self._text(part, ctype, depth)
        else:
            self._file(part, ctype, disposition, resource)

    def _children(self, part: Message, depth: int) -> list[Message]:
        payload = part.get_payload()
        if isinstance(payload, list):
            return [p for p in payload if isinstance(p, Message)]
        children = split_multipart(part)  # the boundary is missing or wrong
        for child in children:
            expand(child, depth + 1)
        return children

    def _multipart(self, part: Message, ctype: str, depth: int) -> None:
        children = self._children(part, depth)
        if not children:  # no boundary anywhere: what it holds is text
            self._text(part, "text/plain", depth)
            return
        if ctype == "multipart/alternative":
            self._alternative(children, depth)
            return
        if ctype == "multipart/report":
            self.in_report = True
        if ctype == "multipart/related":
            start = part.get_param("start")
            root = next((c for c in children if isinstance(start, str)
                         and content_id(header(c, "Content-ID")) == content_id(start)),
                        children[0])
            self.visit(root, depth + 1)
            for child in children:
                if child is not root:
                    self.visit(child, depth + 1, resource=True)
            return
        for child in children:
            self.visit(child, depth + 1)

    def _alternative(self, branches: list[Message], depth: int) -> None:
        renderings: list[Content] = []
        for branch in branches:
            rendering = Content()
            walker = _Walker(self.budget, rendering, fragments=True)
            walker.in_report = self.in_report
            walker.visit(branch, depth + 1)
            renderings.append(rendering)
        plain = next((r.plain for r in renderings if r.has_text()), [])
        rich = next((r.html for r in reversed(renderings) if r.html), [])
        self._take(plain, rich)
        seen = {f.data for f in self.out.files}
        for rendering in renderings:
            for file in rendering.files:  # the same image may sit in two branches
                if file.data not in seen:
                    seen.add(file.data)
                    self.out.files.append(file)
            self.out.reports += rendering.reports
            self.out.notes += rendering.notes
            self.out.charsets += rendering.charsets

    def _take(self, plain: list[str], html: list[str]) -> None:
        """Add a rendering of the body: the first one is the body; later text joins it and
        later HTML is kept as a file."""
        if self.fragments or not self.body_taken:
            self.out.plain += plain
            self.out.html += html
            self.body_taken = self.body_taken or any(p.strip() for p in plain) or bool(html)
            return
        self.out.plain += plain
        for fragment in html:
            self.out.files.append(ParsedAttachment(
                f"part-{len(self.out.files) + 1}.html", "text/html", fragment.encode()))

    def _read(self, part: Message) -> str:
        data = _payload(part)
        room = MAX_TEXT_BYTES - self.budget.text_bytes
        if len(data) > room:
            self.budget.too_long += len(data) - max(room, 0)
            data = data[:max(room, 0)]
            # Cut at a line or tag end, so no character or tag is split in the middle.
            cut = max(data.rfind(b"\n"), data.rfind(b">"))
            data = data[:cut + 1] if cut > len(data) // 2 else data
        self.budget.text_bytes += len(data)
        return decode_text(data, part.get_content_charset()) if data else ""

    def _text(self, part: Message, ctype: str, depth: int) -> None:
        text = self._read(part)
        if ctype == "text/html":
            self._take([], [text])
            return
        text = self._uudecoded(text.replace("\r\n", "\n").replace("\r", "\n"))
        self._take([text], [])

    def _uudecoded(self, text: str) -> str:
        """The text without its uuencoded blocks, each kept as a file."""
        if "begin " not in text:
            return text

        def keep(match: re.Match[str]) -> str:
            if len(self.out.files) >= MAX_UU_FILES:
                return match.group(0)
            name = match.group(1).strip()
            data = _uu_decode(match.group(2))
            if not data:
                return match.group(0)
            guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self.out.files.append(ParsedAttachment(name[:200], guessed, data))
            return ""

        return re.sub(r"\n{3,}", "\n\n", _UU_BLOCK.sub(keep, text))

    def _attached_message(self, part: Message) -> None:
        data = _message_bytes(part)
        if not data:
            return  # an empty attached message holds nothing to keep
        inner = part.get_payload()
        message = inner[0] if isinstance(inner, list) and inner else None
        subject = sender = ""
        if isinstance(message, Message):
            subject = decode_header_value(header(message, "Subject"))
            sender = decode_header_value(header(message, "From"))
        name = part.get_filename() or f"{subject or 'message'}.eml"
        safe_name = re.sub(r"[\\/:*?\"<>|\x00-\x1f]", "", str(name)).strip()[:200]
        self.out.files.append(ParsedAttachment(safe_name, "message/rfc822", data))
        if not self.in_report:
            described = " ".join(p for p in (f"“{subject}”" if subject else "",
                                             f"from {sender}" if sender else "") if p)
            self.out.notes.append(f"[Attached message: {described or safe_name}]")

    def _file(self, part: Message, ctype: str, disposition: str, resource: bool) -> None:
        data = _payload(part)
        if not data:
            return
        cid = content_id(header(part, "Content-ID")) or None
        self.out.files.append(ParsedAttachment(
            filename=_filename(part, len(self.out.files) + 1),
            content_type=ctype,
            data=data,
            inline=disposition == "inline" or resource or cid is not None,
            content_id=cid,
        ))
        if ctype in _CALENDAR_TYPES:
            summary = calendar_summary(data)
            if summary and summary not in self.out.notes:
                self.out.notes.append(summary)


def read_body(root: Message, *, cut: bool) -> Content:
    """The sorted content of a parsed mail; `cut`: the parser already stopped nesting."""
    budget = _Budget(too_deep=cut)
    content = Content()
    _Walker(budget, content).visit(root, 0)
    if budget.too_long:
        content.notes.append(
            f"[This mail's text is longer than {MAX_TEXT_BYTES // 1024} KiB: the last "
            f"{budget.too_long // 1024} KiB are not shown here.]")
    if budget.too_deep:
        content.notes.append(f"[Parts nested deeper than {MAX_DEPTH} levels are not shown.]")
    if budget.too_many:
        content.notes.append(f"[This mail has more than {MAX_PARTS} parts: the rest are not "
                             "shown.]")
    return content
