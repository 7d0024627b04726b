"""The HTML of a mail made safe to show an agent (nh3, the Ammonia sanitiser), and its text.

What survives: formatting, lists, tables (with the presentational attributes mail still
uses), links (http, https, mailto, tel; opened in a new tab with rel=noopener noreferrer),
inline styles limited to properties that cannot escape their box or load anything, and
images whose source is a `cid:` part of the same mail (linked to the stored file once it
is stored). Everything else goes: scripts, event handlers, forms, frames, SVG and MathML,
style sheets, comments (and the conditional comments in them), remote and data: images,
which would tell the sender that the mail was read.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from urllib.parse import unquote

import nh3

_TAGS = (nh3.ALLOWED_TAGS - {"map", "area"}) | {"font", "big", "tfoot", "caption", "center"}
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"style", "dir", "lang", "title", "align"},
    "a": {"href", "hreflang", "title"},
    "img": {"src", "alt", "width", "height", "align"},
    "font": {"color", "face", "size"},
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor", "align", "summary"},
    "td": {"width", "height", "valign", "bgcolor", "colspan", "rowspan", "align", "nowrap"},
    "th": {"width", "height", "valign", "bgcolor", "colspan", "rowspan", "align", "scope"},
    "tr": {"valign", "bgcolor", "align"},
    "col": {"width", "span", "align"},
    "ol": {"start", "type"},
    "ul": {"type"},
}
# Removed with everything inside them (the rest of unknown tags is unwrapped, text kept).
_DROPPED_WITH_CONTENT = {"script", "style", "title", "head", "xml", "svg", "math", "iframe",
                         "object", "embed", "noscript", "template", "select", "textarea",
                         "frameset", "frame", "applet", "audio", "video", "canvas"}
_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "font-variant", "text-align", "text-decoration", "text-indent",
    "text-transform", "line-height", "letter-spacing", "word-spacing", "white-space",
    "vertical-align", "direction", "width", "max-width", "min-width", "height", "max-height",
    "min-height", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left", "border",
    "border-top", "border-right", "border-bottom", "border-left", "border-color",
    "border-style", "border-width", "border-collapse", "border-spacing", "border-radius",
    "list-style-type", "table-layout",
}
# A declaration's value: words, numbers, colours, quotes, and rgb()/hsl() colours only, so
# no url(), expression(), escapes or var() tricks get through.
_SAFE_VALUE = re.compile(r"^(?:[\w\s#%.,'\"!/+-]|(?:rgba?|hsla?)\([\d\s.,%/]*\))*$", re.ASCII)
_SCHEMES = {"http", "https", "mailto", "tel", "cid"}
CID_PREFIX = "cid:"
# Where the web app serves a stored file to agents (web/files.py, the attachments route).
ATTACHMENT_PATH = "/api/v1/attachments/"
_BREAK_TAGS = re.compile(
    r"<(?:br|hr)\b[^>]*>|</(?:p|div|tr|li|h[1-6]|blockquote|table|ul|ol|pre|dt|dd)>",
    re.IGNORECASE)
_CELL_END = re.compile(r"</t[dh]>", re.IGNORECASE)
_TAG = re.compile(r"<(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")


def _style(value: str) -> str | None:
    kept = []
    for declaration in value.split(";"):
        name, sep, val = declaration.partition(":")
        name = name.strip().lower()
        if sep and name in _STYLE_PROPERTIES and _SAFE_VALUE.match(val.strip()):
            kept.append(f"{name}:{val.strip()}")
    return ";".join(kept) or None


def _filter(cids: Mapping[str, str] | None, tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return _style(value)
    if tag == "img" and attribute == "src":
        if not value.lower().startswith(CID_PREFIX):
            return None  # remote or data: images never load
        if cids is None:
            return value
        return cids.get(content_id(value[len(CID_PREFIX):]))
    if attribute == "href" and value.lower().startswith(CID_PREFIX):
        return None
    return value


def content_id(value: str) -> str:
    """A Content-ID (from a header or a cid: URL) in the form both are compared in."""
    return unquote(value).strip().strip("<>").strip().lower()


def _clean(html: str, cids: Mapping[str, str] | None) -> str:
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=lambda tag, attribute, value: _filter(cids, tag, attribute, value),
        strip_comments=True,
        link_rel="noopener noreferrer",
        url_schemes=_SCHEMES,  # checked before the filter, which maps cid: to the file
        # The mail's own relative links would point into Switchboard: dropped on the first
        # pass; the second only adds the files' paths.
        url_relative="deny" if cids is None else "pass_through",
        filter_style_properties=_STYLE_PROPERTIES,
        set_tag_attribute_values={"a": {"target": "_blank"}},
    ).strip()


def sanitize_html(html: str) -> str:
    """The mail's HTML with only what is safe to display; `cid:` images kept for linking."""
    return _clean(html, None)


def link_inline_images(html: str, stored: Mapping[str, str]) -> str:
    """Sanitised HTML with each `cid:` image pointing at its stored file (content id -> file
    id), and the images whose part was not stored dropped."""
    if CID_PREFIX not in html.lower():
        return html
    return _clean(html, {cid: ATTACHMENT_PATH + file_id for cid, file_id in stored.items()})


def html_to_text(html: str) -> str:
    """Readable text of sanitised HTML (for HTML-only mail, search and previews)."""
    text = _CELL_END.sub(" ", _BREAK_TAGS.sub("\n", html))
    text = html_lib.unescape(_TAG.sub("", text)).replace("\xa0", " ")
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
