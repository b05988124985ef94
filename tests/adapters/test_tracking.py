"""Signed links and the rewriting of an email's HTML that puts them in."""

from __future__ import annotations

import pytest

from cadence.adapters.text import text_to_html
from cadence.adapters.tracking import (
    LinkSigner,
    TrackingLinks,
    split_token,
    track_html,
    track_text,
)

SECRET = "a-secret-of-enough-length"


def _click(target: str) -> str:
    return f"https://t.example/c/k.s?u={target}"


def test_a_signature_binds_kind_tenant_key_and_target() -> None:
    signer = LinkSigner(SECRET)
    signature = signer.sign("click", "acme", "k1", "https://a.example/")
    assert signer.verify("click", "acme", "k1", signature, "https://a.example/")
    assert not signer.verify("click", "acme", "k1", signature, "https://b.example/")
    assert not signer.verify("click", "other", "k1", signature, "https://a.example/")
    assert not signer.verify("click", "acme", "k2", signature, "https://a.example/")
    assert not signer.verify("unsubscribe", "acme", "k1", signature, "https://a.example/")
    assert not LinkSigner(SECRET + "x").verify(
        "click", "acme", "k1", signature, "https://a.example/"
    )
    with pytest.raises(ValueError, match="empty"):
        LinkSigner("")


def test_links_round_trip_through_their_tokens() -> None:
    links = TrackingLinks("https://links.acme.test/", LinkSigner(SECRET))
    pixel = links.url("open", "acme", "abc123")
    assert pixel.startswith("https://links.acme.test/o/abc123.") and pixel.endswith(".gif")
    token = pixel.rsplit("/", 1)[1]
    assert split_token(token, ".gif") == ("abc123", token[len("abc123.") : -len(".gif")])
    assert split_token("abc123", "") is None
    assert split_token("nodot.gif", ".gif") is None
    assert split_token("abc.sig", ".gif") is None
    with pytest.raises(ValueError, match="public URL"):
        TrackingLinks("links.acme.test", LinkSigner(SECRET))


def test_only_web_links_are_wrapped_and_the_pixel_goes_before_the_body_ends() -> None:
    page = (
        "<html><BODY><A HREF='https://a.example/x?y=1&amp;z=2'>a</A>"
        '<a class="b" href="http://b.example">b</a><a href="mailto:m@x.test">m</a>'
        '<a href="#top">t</a><a href="https://keep.example/u">u</a></body></html>'
    )
    out = track_html(page, click=_click, pixel="https://t.example/o/p.gif",
                     keep={"https://keep.example/u"})  # fmt: skip
    assert 'HREF="https://t.example/c/k.s?u=https://a.example/x?y=1&amp;z=2"' in out
    assert 'href="https://t.example/c/k.s?u=http://b.example"' in out
    assert 'href="mailto:m@x.test"' in out and 'href="#top"' in out
    assert 'href="https://keep.example/u"' in out
    assert out.endswith('style="display:none"></body></html>')


def test_without_a_body_tag_the_pixel_is_appended_and_nothing_else_changes() -> None:
    fragment = '<p><a href="https://a.example">a</a></p>'
    assert track_html(fragment, click=None, pixel=None) == fragment
    assert track_html(fragment, click=None, pixel="P").endswith(
        '<img src="P" width="1" height="1" alt="" style="display:none">'
    )


def test_web_addresses_of_the_text_part_are_wrapped_without_the_sentence_around_them() -> None:
    text = (
        "See them (https://a.example/x?y=1&z=2). Or https://b.example/wiki/Foo_(bar), "
        "mail m@x.test, keep https://keep.example/u. Bare http:// stays. "
        "End: http://c.example/!"
    )
    out = track_text(text, click=_click, keep={"https://keep.example/u"})
    assert out == (
        "See them (https://t.example/c/k.s?u=https://a.example/x?y=1&z=2). Or "
        "https://t.example/c/k.s?u=https://b.example/wiki/Foo_(bar), mail m@x.test, keep "
        "https://keep.example/u. Bare http:// stays. End: "
        "https://t.example/c/k.s?u=http://c.example/!"
    )


def test_the_html_of_a_plain_text_body_has_its_addresses_tracked_as_the_text_part() -> None:
    """A body with no HTML gets a minimal HTML part; its addresses were bare text there,
    which mail clients link themselves, so the clicks of HTML readers went uncounted."""
    text = "Visit https://a.example/x?y=1&z=2. Or keep https://keep.example/u\nBye <3"
    html = track_html(text_to_html(text), click=_click, pixel=None, keep={"https://keep.example/u"})
    assert (
        '<p>Visit <a href="https://t.example/c/k.s?u=https://a.example/x?y=1&amp;z=2">'
        "https://a.example/x?y=1&amp;z=2</a>. Or keep "
        '<a href="https://keep.example/u">https://keep.example/u</a><br>\nBye &lt;3</p>'
    ) in html
