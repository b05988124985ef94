"""The few pages people see: confirm an unsubscribe, its confirmation, a broken link."""

from __future__ import annotations

from html import escape

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;
line-height:1.5}}button{{font:inherit;padding:.5rem 1.25rem;cursor:pointer}}</style>
</head><body><main><h1>{title}</h1>{body}</main></body></html>
"""


def _page(title: str, body: str) -> str:
    return _PAGE.format(title=escape(title), body=body)


def confirm_unsubscribe(company: str) -> str:
    """The page an unsubscribe link opens: one button, posting back to the same address."""
    return _page(
        "Unsubscribe",
        f"<p>Stop receiving these messages from {escape(company)}?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


def unsubscribed(company: str) -> str:
    """The answer to an unsubscribe, from the page or from a mail client's one-click POST."""
    return _page(
        "You are unsubscribed",
        f"<p>{escape(company)} will not send you these messages any more.</p>",
    )


def broken_link(company: str) -> str:
    """A link whose signature does not match: nothing happened, and the page says so."""
    return _page(
        "This link is not valid",
        f"<p>The link may have been cut short or changed. Nothing was done. If you wanted to"
        f" unsubscribe, use the link in a recent message from {escape(company)}.</p>",
    )
