"""SMS length and segment counts (GSM-7 vs UCS-2) and HTML to text."""

from __future__ import annotations

import pytest

from cadence.adapters.text import html_to_text, is_gsm7, sms_length


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension table: two septets each
        ("€" * 81, "GSM-7", 162, 2),
        # 152 plain + one escape pair: the pair cannot straddle the 153-septet boundary.
        ("a" * 152 + "{" + "a" * 10, "GSM-7", 164, 2),
        ("a" * 152 + "{" + "a" * 152, "GSM-7", 306, 3),  # naive 306/153 says 2
        ("ç" * 70, "UCS-2", 70, 1),  # lower-case c-cedilla is not GSM-7
        ("ç" * 71, "UCS-2", 71, 2),
        ("ç" * 134, "UCS-2", 134, 2),
        ("ç" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # astral characters take two UTF-16 units
        ("a" * 66 + "😀" + "a" * 67, "UCS-2", 135, 3),  # the surrogate pair is not split
    ],
)
def test_sms_length(text: str, encoding: str, units: int, segments: int) -> None:
    length = sms_length(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)


def test_gsm7_alphabet() -> None:
    assert is_gsm7("Hello @ £5 Ä ß {}[]~|^€\\")
    assert not is_gsm7("Zoë")  # ë is not in GSM-7
    assert not is_gsm7("hi 👋")


def test_html_to_text() -> None:
    html = """<html><head><title>T</title><style>.x{}</style></head><body>
    <h1>Big   news</h1><p>Hello&nbsp;<b>Ana</b> &amp; co.<br>Second line</p>
    <ul><li>One</li><li>Two</li></ul>
    <p><a href="https://acme.test/x">See listing</a> or <a href="https://acme.test/y">https://acme.test/y</a></p>
    <table><tr><td>A</td><td>B</td></tr></table><img alt="Logo"><script>alert(1)</script>
    </body></html>"""
    text = html_to_text(html)
    assert "Big news" in text
    assert "Hello\xa0Ana & co.\nSecond line" in text
    assert "- One\n- Two" in text
    assert "See listing (https://acme.test/x)" in text
    assert "https://acme.test/y (" not in text  # a link that is its own label is not doubled
    assert "A B" in text and "Logo" in text
    assert "alert" not in text and ".x{}" not in text and "T\n" not in text
    assert "\n\n\n" not in text
