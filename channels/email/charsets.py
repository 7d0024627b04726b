"""Bytes of a mail to text, surviving the charsets that mail clients mislabel.

The `email` package decodes with errors="replace" (so a wrong label garbles silently) and
knows no superset of a label. Here each label is tried strictly, then the encodings that
clients really write under that label (GBK under "gb2312", CP932 under "shift_jis", the
CP50220 flavour of ISO-2022-JP with its circled digits and extra kanji, windows-1252 under
"iso-8859-1"), then UTF-8, then charset-normalizer's guess, and only then replacement
characters. Headers get the same treatment, with raw 8-bit bytes decoded like a body.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterable

# Labels and the encodings written under them in practice, tried after the label itself.
_SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gbk", "gb18030"),
    "gbk": ("gb18030",),
    "big5": ("big5hkscs", "cp950"),
    "shift_jis": ("cp932", "shift_jis_2004"),
    "euc_jp": ("euc_jis_2004",),
    "iso2022_jp": ("cp50220", "iso2022_jp_2004", "iso2022_jp_ext"),
    "euc_kr": ("cp949",),
    "iso8859_1": ("cp1252",),  # WHATWG reads the label so: curly quotes, not C1 controls
    "iso8859_9": ("cp1254",),
    "iso8859_11": ("cp874",),
    "tis_620": ("cp874",),
}
# Labels mail carries that Python's codec registry does not know.
_ALIASES = {
    "x-sjis": "shift_jis", "windows-31j": "cp932", "x-gbk": "gbk", "gb_2312-80": "gb2312",
    "cn-gb": "gb2312", "x-euc-jp": "euc_jp", "x-euc": "euc_jp", "iso-8859-8-i": "iso8859_8",
    "x-mac-roman": "mac_roman", "x-cp20936": "gb2312", "ks_c_5601": "euc_kr",
}
# Language families: a raw 8-bit header is first read in the body's family.
_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("shift_jis", "euc_jp", "iso2022_jp", "cp932", "iso2022_jp_2004", "shift_jis_2004"),
    ("gb2312", "gbk", "gb18030", "big5", "big5hkscs", "hz"),
    ("euc_kr", "cp949", "iso2022_kr", "johab"),
)
# What charset-normalizer may answer: the charsets mail is written in. Left free, it names
# MacRoman cousins for short Western text and Korean for Shift_JIS.
_DETECTABLE = ["utf_8", "cp1252", "cp1250", "cp1251", "koi8_r", "iso8859_7", "cp1253",
               "cp1254", "cp1255", "cp1256", "cp1257", "cp874", "cp932", "euc_jp",
               "gb18030", "big5", "cp949"]
_LATIN = frozenset({"cp1250", "cp1252", "cp1254", "cp1257"})
DETECT_SAMPLE = 64 * 1024  # the detector reads this much; its answer decodes the whole
_ENCODED_WORD = re.compile(
    r"=\?([^?\s*]{1,40})(?:\*[^?\s]{0,20})?\?([bBqQ])\?([^?\s]*)\?=")
_ESCAPE = re.compile(rb"\x1b(\(B|\(J|\(I|\$@|\$B|\$\(D|\$\(Q|\$\(O|&@\x1b\$B)")


def _codec(label: str | None) -> str | None:
    """The Python codec name of a charset label, or None when unknown."""
    if not label:
        return None
    cleaned = label.strip().strip("\"'").lower()
    if cleaned == "cp50220":
        return cleaned
    if cleaned in ("unknown-8bit", "x-unknown", "unknown", "default", "charset"):
        return None
    try:
        return codecs.lookup(_ALIASES.get(cleaned, cleaned)).name.replace("-", "_")
    except LookupError:
        return None


def _jis_cp50220(data: bytes) -> str:
    """ISO-2022-JP in its CP50220/50221 flavour: each JIS pair read through CP932.

    Python's iso2022 codecs refuse the NEC row 13 (①, ㈱, №) and the IBM kanji (髙, 﨑)
    that many clients put under "ISO-2022-JP"; shifting each JIS X 0208 pair to its
    Shift_JIS place and reading it as CP932 gives them back. Raises UnicodeDecodeError.
    """
    out: list[str] = []
    mode = b"(B"
    pos = 0
    for match in [*_ESCAPE.finditer(data), None]:
        end = match.start() if match else len(data)
        chunk = data[pos:end]
        if mode not in (b"(B", b"(J", b"(I", b"$@", b"$B"):
            raise UnicodeDecodeError("cp50220", data, pos, end, "not JIS X 0208")
        if mode in (b"(B", b"(J"):
            out.append(chunk.decode("ascii"))
        elif mode == b"(I":  # JIS X 0201 katakana: the CP932 byte is 0x80 higher
            out.append(bytes(b + 0x80 for b in chunk).decode("cp932"))
        else:
            if len(chunk) % 2:
                raise UnicodeDecodeError("cp50220", data, pos, end, "odd length")
            sjis = bytearray()
            for i in range(0, len(chunk), 2):
                j1, j2 = chunk[i], chunk[i + 1]
                if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
                    raise UnicodeDecodeError("cp50220", data, pos + i, pos + i + 2,
                                             "not a JIS pair")
                s1 = (j1 + 1) // 2 + (0x70 if j1 <= 0x5E else 0xB0)
                s2 = j2 + (0x1F if j1 % 2 else 0x7E)
                s2 += 1 if j1 % 2 and s2 >= 0x7F else 0
                sjis += bytes((s1, s2))
            out.append(bytes(sjis).decode("cp932"))
        if match is None:
            break
        mode = match.group(1)[-2:] if match.group(1).startswith(b"&@") else match.group(1)
        pos = match.end()
    return "".join(out)


def _strict(data: bytes, codec: str) -> str | None:
    try:
        if codec == "cp50220":
            return _jis_cp50220(data)
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _detect(data: bytes) -> str | None:
    """charset-normalizer's codec for the bytes (from a bounded sample), or None."""
    from charset_normalizer import from_bytes  # imported when a label fails, not at start-up

    best = from_bytes(data[:DETECT_SAMPLE], cp_isolation=_DETECTABLE).best()
    return best.encoding if best is not None else None


def _family(codec: str | None) -> tuple[str, ...]:
    for family in _FAMILIES:
        if codec in family:
            return family
    return ()


def _candidates(codec: str | None, data: bytes) -> list[str]:
    if codec in (None, "ascii") and b"\x1b$" in data:
        return ["iso2022_jp", *_SUPERSETS["iso2022_jp"], "utf_8"]  # unlabelled JIS
    if codec is None:
        return ["utf_8"]
    if codec in ("iso8859_1", "cp1252", "iso8859_15", "cp1250", "iso8859_2"):
        # Single-byte labels decode anything: multi-byte UTF-8 that happens to be valid
        # is UTF-8 written under a wrong label (the other way round almost never parses).
        return ["utf_8", *_SUPERSETS.get(codec, ()), codec]
    return [codec, *_SUPERSETS.get(codec, ()), "utf_8"]


def decode_text(data: bytes, label: str | None) -> str:
    """Text of body bytes declared as `label` (None: no charset), never garbled silently."""
    if data.isascii() and b"\x1b" not in data:
        return data.decode("ascii")
    codec = _codec(label)
    for candidate in dict.fromkeys(_candidates(codec, data)):
        text = _strict(data, candidate)
        if text is not None:
            return text
    guessed = _detect(data)
    if guessed in _LATIN:
        # Between the Latin code pages a few bytes are a coin toss: the common one wins.
        guessed = "cp1252" if _strict(data, "cp1252") is not None else guessed
    if guessed:
        text = _strict(data, guessed)
        if text is not None:
            return text
    fallback = guessed or (codec if codec and codec != "ascii" else "cp1252")
    return data.decode(fallback, errors="replace")


def decode_raw_header(data: bytes, hint: str | None) -> str:
    """Raw 8-bit header bytes: UTF-8 (RFC 6532), then the body's charset and its family."""
    if data.isascii():
        return data.decode("ascii")
    text = _strict(data, "utf_8")
    if text is not None:
        return text
    codec = _codec(hint)
    for candidate in dict.fromkeys([*_candidates(codec, data), *_family(codec)]):
        text = _strict(data, candidate) if candidate != "ascii" else None
        if text is not None:
            return text
    return decode_text(data, None)


def _word_bytes(encoding: str, payload: str) -> bytes:
    if encoding in "bB":
        try:
            return base64.b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError):
            return payload.encode("ascii", "replace")
    return binascii.a2b_qp(payload.replace("_", " ").encode("ascii", "replace"), header=False)


def decode_header_value(raw: str, hint: str | None = None) -> str:
    """A header's text: RFC 2047 words (split characters joined) and raw 8-bit bytes decoded.

    `raw` is the header as the parser kept it (8-bit bytes as surrogates); `hint` is the
    body's charset, used for raw 8-bit bytes and unknown labels. (email.header's
    decode_header turns those surrogates into backslash escapes, hence this decoder.)
    """
    value = re.sub(r"\r?\n[ \t]", " ", raw).replace("\r", "").replace("\n", " ")
    pieces: list[tuple[bytes, str | None]] = []  # (bytes, label); label None: raw text
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos:match.start()]
        if between and not (pieces and pieces[-1][1] is not None and not between.strip()):
            pieces.append((between.encode("utf-8", "surrogateescape"), None))
        label = match.group(1)
        data = _word_bytes(match.group(2), match.group(3))
        if pieces and pieces[-1][1] is not None and pieces[-1][1].lower() == label.lower():
            # A multi-byte character may be split across two adjacent words.
            pieces[-1] = (pieces[-1][0] + data, label)
        else:
            pieces.append((data, label))
        pos = match.end()
    if value[pos:]:
        pieces.append((value[pos:].encode("utf-8", "surrogateescape"), None))
    out = [decode_text(data, label) if label is not None else decode_raw_header(data, hint)
           for data, label in pieces]
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", "".join(out)).strip()


def first_label(labels: Iterable[str | None]) -> str | None:
    """The first usable charset label among `labels` (the hint for raw header bytes)."""
    return next((label for label in labels if _codec(label) not in (None, "ascii")), None)
