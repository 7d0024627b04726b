"""The HTML sanitiser: formatting survives, nothing that runs, loads or escapes does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from channels.email.html import html_to_text, link_inline_images, sanitize_html
from channels.email.parse import parse_email

FIXTURES = Path(__file__).with_name("fixtures") / "email"

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<body onload=alert(1)>",
    "<a href=\"javascript:alert(1)\">a</a>",
    "<a href=\"JaVaScRiPt&#58;alert(1)\">a</a>",
    "<a href=\"java\tscript:alert(1)\">a</a>",
    "<a href=\"vbscript:msgbox(1)\">a</a>",
    "<a href=\"data:text/html,<script>alert(1)</script>\">a</a>",
    "<img src=\"https://evil.example/pixel.gif\">",
    "<img src=\"//evil.example/pixel.gif\">",
    "<img src=\"data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+\">",
    "<img srcset=\"https://evil.example/a.png 1x\">",
    "<picture><source srcset=\"https://evil.example/p.png\"></picture>",
    "<video poster=\"https://evil.example/v.png\"></video>",
    "<p style=\"width:expression(alert(1))\">x</p>",
    "<p style=\"background:url(https://evil.example/bg.png)\">x</p>",
    "<p style=\"background-image:url(javascript:alert(1))\">x</p>",
    "<p style=\"color:red;behavior:url(x.htc);-moz-binding:url(x.xml#x)\">x</p>",
    "<p style=\"position:fixed;top:0;left:0;z-index:9999\">x</p>",
    "<p style=\"color:\\72 ed;background:u\\72l(https://evil.example/e.png)\">x</p>",
    "<div style=\"font-family:'a';background:url(https://evil.example/f.png)\">x</div>",
    "<style>@import url(https://evil.example/a.css); body{background:red}</style>",
    "<link rel=stylesheet href=https://evil.example/a.css>",
    "<meta http-equiv=refresh content=\"0;url=https://evil.example\">",
    "<base href=\"https://evil.example/\">",
    "<form action=\"https://evil.example\"><input name=p><button>go</button></form>",
    "<iframe src=\"https://evil.example\"></iframe>",
    "<object data=\"https://evil.example/x.swf\"></object>",
    "<embed src=\"https://evil.example/x.swf\">",
    "<svg onload=alert(1)><script>alert(1)</script></svg>",
    "<svg><a xlink:href=\"javascript:alert(1)\"><text>x</text></a></svg>",
    "<svg><animate onbegin=alert(1) attributeName=x></animate></svg>",
    "<math><maction xlink:href=\"javascript:alert(1)\">m</maction></math>",
    "<table background=\"https://evil.example/t.png\"><tr><td>x</td></tr></table>",
    "<td background=\"https://evil.example/td.png\">x</td>",
    "<noscript><img src=\"https://evil.example/n.png\"></noscript>",
    "<template><script>alert(1)</script></template>",
    "<a href=\"https://ok.example\" target=\"_self\" rel=\"opener\">ok</a>",
    "<!--[if gte mso 9]><img src=\"https://evil.example/mso.png\"><![endif]-->",
    "<p id=\"x\" class=\"y\" data-x=\"1\" formaction=\"https://evil.example\">x</p>",
    "<a href=\"/api/v1/conversations\">inside the app</a>",
    "<img src=\"cid:x\" onload=\"alert(1)\" style=\"position:absolute\">",
]
# Nothing of this may be left: code, handlers, remote loads, escapes, containers.
_FORBIDDEN = re.compile(
    r"<script|<style|<link|<meta|<base|<form|<input|<button|<iframe|<object|<embed|<svg"
    r"|<math|<noscript|<template|<video|<picture|<source|\son\w+\s*=|javascript:|vbscript:"
    r"|data:|expression\(|url\(|behavior|binding|position|z-index|evil\.example|srcset"
    r"|background=|\\|formaction|/api/v1/conversations|target=\"_self\"|rel=\"opener\"",
    re.IGNORECASE,
)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_html_leaves_nothing_that_runs_loads_or_escapes(hostile: str) -> None:
    clean = sanitize_html(f"<div>before {hostile} after</div>")
    assert not _FORBIDDEN.search(clean), clean
    assert "before" in clean and "after" in clean
    linked = link_inline_images(clean, {"x": "f" * 32})
    assert not _FORBIDDEN.search(linked), linked


def test_formatting_tables_and_links_survive() -> None:
    html = ('<p style="color:#1F497D;font-weight:bold;text-align:center">Hi <b>b</b> <i>i</i>'
            ' <u>u</u></p><ul><li>one</li></ul><table border="1" cellpadding="4"><tr>'
            '<td bgcolor="#eeeeee" valign="top" colspan="2">cell</td></tr></table>'
            '<blockquote>quote</blockquote><a href="https://acme.example/help?a=1&amp;b=2">'
            'help</a> <a href="mailto:ada@example.com">mail</a> <font color="red">red</font>')
    clean = sanitize_html(html)
    assert '<p style="color:#1F497D;font-weight:bold;text-align:center">' in clean
    assert "<b>b</b> <i>i</i> <u>u</u>" in clean and "<ul><li>one</li></ul>" in clean
    assert '<td bgcolor="#eeeeee" valign="top" colspan="2">cell</td>' in clean
    assert ('<a href="https://acme.example/help?a=1&amp;b=2" target="_blank" '
            'rel="noopener noreferrer">help</a>') in clean
    assert '<a href="mailto:ada@example.com" target="_blank" rel="noopener noreferrer">' in clean
    assert '<font color="red">red</font>' in clean
    assert html_to_text(clean) == "Hi b i u\none\n\ncell\n\nquote\nhelp mail red"


def test_the_hostile_fixture_keeps_its_text_and_loses_its_tricks() -> None:
    mail = parse_email((FIXTURES / "html_hostile.eml").read_bytes())
    assert mail.html is not None and not _FORBIDDEN.search(mail.html), mail.html
    assert '<a href="https://acme.example/help" target="_blank" rel="noopener noreferrer">' in (
        mail.html)
    assert "src=" not in mail.html  # no image of it loads anything
    assert mail.text.startswith("Your account is locked\n\nPlease verify your details below.")
