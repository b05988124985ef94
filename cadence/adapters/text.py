"""Plain-text helpers for outbound content: HTML to text, and SMS length and segment counts.

An email's text part is generated from its HTML when the author did not write one, and an
SMS is priced by segments, whose size depends on whether the text fits GSM-7 or needs UCS-2.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

# ------------------------------------------------------------------------------- HTML -> text

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
    }
)  # fmt: skip
_SKIP_TAGS = frozenset({"head", "script", "style", "title", "template"})


class _TextExtractor(HTMLParser):
    """Collects readable text; links become `text (url)`, list items `- item`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0
        self._links: list[str | None] = []
        self._link_text_start: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)
        elif tag == "a":
            self._links.append(dict(attrs).get("href"))
            self._link_text_start.append(len(self.parts))
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre += 1
            if tag == "hr":
                self.parts.append("----\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "a" and self._links:
            href = self._links.pop()
            start = self._link_text_start.pop()
            label = "".join(self.parts[start:]).strip()
            if href and not href.startswith(("#", "mailto:")) and href != label:
                self.parts.append(f" ({href})" if label else href)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.parts.append(data)
        else:
            self.parts.append(re.sub(r"[ \t\r\n\f\v]+", " ", data))


def html_to_text(markup: str) -> str:
    """A readable plain-text version of an HTML email, for the text/plain part."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n" if text.strip() else ""


_WEB_ADDRESS = re.compile(r"""https?://[^\s<>"']+""", re.IGNORECASE)
# What ends a sentence around an address in running text, rather than the address itself.
_SENTENCE_END = ".,;:!?"


def replace_web_addresses(
    text: str, address: Callable[[str], str], between: Callable[[str], str] = str
) -> str:
    """`text` with each http(s) address replaced by `address(it)`, the rest by `between`.

    An address is taken up to white space, without the punctuation that ends the sentence
    around it and without a closing parenthesis it did not open (`text
    (https://a.example/x).` -> `https://a.example/x`); a scheme with no address is none.
    """
    out, done = [], 0
    for found in _WEB_ADDRESS.finditer(text):
        url = found.group(0)
        while url and (
            url[-1] in _SENTENCE_END or (url[-1] == ")" and url.count("(") < url.count(")"))
        ):
            url = url[:-1]
        if url.endswith("//"):
            continue
        out += [between(text[done : found.start()]), address(url)]
        done = found.start() + len(url)
    out.append(between(text[done:]))
    return "".join(out)


def _link(url: str) -> str:
    url = html.escape(url)
    return f'<a href="{url}">{url}</a>'


def text_to_html(text: str) -> str:
    """A minimal HTML version of a plain-text body: escaped paragraphs with line breaks,
    web addresses as links (so the click tracking wraps them as it does the text part's)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    body = "\n".join(
        "<p>"
        + replace_web_addresses(p.strip(), _link, html.escape).replace("\n", "<br>\n")
        + "</p>"
        for p in paragraphs
    )
    return f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n"


# ------------------------------------------------------------------------------- SMS segments

# GSM 03.38 basic character set (ESC 0x1B excluded: it introduces the extension table).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs two septets (ESC + the character).
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

Encoding = Literal["GSM-7", "UCS-2"]

# What locale formatting (Babel's CLDR data) writes and GSM-7 lacks: no-break and thin
# spaces (French money, English times before PM) and de-CH's grouping apostrophe U+2019.
# One of them would send a whole SMS as UCS-2, at up to three times the segments; the
# handset shows the GSM-7 character in its place just as well.
_GSM7_SUBSTITUTES = str.maketrans(
    {"\u00a0": " ", "\u2007": " ", "\u2009": " ", "\u202f": " ", "\u2019": "'"}
)


@dataclass(frozen=True, slots=True)
class SmsLength:
    """How an SMS text travels: its encoding, its length in units, and how many segments."""

    encoding: Encoding
    units: int
    segments: int
    per_segment: int


def is_gsm7(text: str) -> bool:
    """True when every character is in GSM-7's basic or extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def sms_text(text: str) -> str:
    """The text as an SMS carries it: formatting's spaces and marks in their GSM-7 form."""
    return text.translate(_GSM7_SUBSTITUTES)


def sms_length(text: str) -> SmsLength:
    """Length and segment count: GSM-7 160/153 septets (extension chars count 2), UCS-2 70/67.

    A multi-part message never splits an escape pair or a UTF-16 surrogate pair across
    segments, so the count matches what the handset receives.
    """
    if is_gsm7(text):
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, multi, encoding = 70, 67, "UCS-2"
    units = sum(costs)
    if units <= single:
        return SmsLength(encoding, units, 1 if units else 0, single)  # type: ignore[arg-type]
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments += 1
            used = 0
        used += cost
    return SmsLength(encoding, units, segments, multi)  # type: ignore[arg-type]
