"""The few pages people see: unsubscribe, channel preferences, opt-in, a broken link."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from cadence.engine.consent import TOKEN_VALID_FOR
from cadence.engine.preferences import ChannelChoice

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;
line-height:1.5}}button{{font:inherit;padding:.5rem 1.25rem;cursor:pointer}}
fieldset{{border:0;padding:0}}label{{display:block;margin:.5rem 0}}small{{color:#555}}</style>
</head><body><main><h1>{title}</h1>{body}</main></body></html>
"""


def _page(title: str, body: str) -> str:
    return _PAGE.format(title=escape(title), body=body)


def confirm_unsubscribe(company: str, preferences_href: str | None = None) -> str:
    """The page an unsubscribe link opens: one button, posting back to the same address, and
    a link to the preference page for someone who wants fewer messages rather than none."""
    choose = (
        f'<p>Or <a href="{escape(preferences_href)}">choose which messages you get</a>.</p>'
        if preferences_href
        else ""
    )
    return _page(
        "Unsubscribe",
        f"<p>Stop receiving these messages from {escape(company)}?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">Unsubscribe</button></form>{choose}',
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


def preferences(company: str, choices: Sequence[ChannelChoice], *, saved: bool = False) -> str:
    """The preference page: a box per channel that reaches the person, and a way out of all."""
    if not choices:
        return _page(
            "Your preferences",
            f"<p>{escape(company)} has no address of yours to send messages to.</p>",
        )
    rows = []
    for choice in choices:
        box = (
            f'<input type="checkbox" name="channel" value="{escape(choice.channel)}"'
            + (" checked" if choice.subscribed else "")
            + ("" if choice.changeable else " disabled")
            + ">"
        )
        note = f"<br><small>{escape(choice.note)}</small>" if choice.note else ""
        rows.append(
            f"<label>{box} {escape(choice.name)} <small>({escape(choice.address)})</small>"
            f"{note}</label>"
        )
    done = '<p role="status"><strong>Your choices are saved.</strong></p>' if saved else ""
    return _page(
        "Your preferences",
        f"{done}<p>Choose how {escape(company)} may send you messages.</p>"
        f'<form method="post"><fieldset>{"".join(rows)}</fieldset>'
        '<button type="submit" name="action" value="save">Save</button> '
        '<button type="submit" name="action" value="everything-off">Unsubscribe from all'
        "</button></form>",
    )


def no_web_version(company: str) -> str:
    """A web-version link that shows nothing: bad, or to a message with no web version."""
    return _page(
        "This message cannot be shown",
        f"<p>The link may have been cut short or changed, or the message from"
        f" {escape(company)} has no web version.</p>",
    )


def confirm_opt_in(company: str, channel: str) -> str:
    """The page a double opt-in link opens: one button that confirms."""
    return _page(
        "Confirm your subscription",
        f"<p>Confirm that you want {escape(_channel_words(channel))} from {escape(company)}.</p>"
        '<form method="post"><button type="submit">Confirm</button></form>',
    )


def opted_in(company: str, channel: str) -> str:
    """The answer to a confirmed double opt-in."""
    return _page(
        "You are subscribed",
        f"<p>Thank you. {escape(company)} may now send you {escape(_channel_words(channel))}.</p>",
    )


def opt_in_not_valid(company: str) -> str:
    """A confirmation link that is wrong or already used: nothing happened."""
    return _page(
        "This link is not valid",
        "<p>The link may have been cut short, or it was used already (each confirms once)."
        f" Nothing was done. To subscribe, sign up with {escape(company)} again.</p>",
    )


def opt_in_expired(company: str) -> str:
    """A confirmation link past its period (`consent.TOKEN_VALID_FOR`): nothing happened."""
    days = TOKEN_VALID_FOR.days
    return _page(
        "This link has expired",
        f"<p>Confirmation links work for {days} days, and this one is older. Nothing was done."
        f" To subscribe, sign up with {escape(company)} again: you will get a new link.</p>",
    )


def _channel_words(channel: str) -> str:
    words = {"email": "emails", "sms": "text messages", "whatsapp": "WhatsApp messages",
             "inbox": "messages in the app"}  # fmt: skip
    return words.get(channel, f"{channel} messages")
