"""Addresses people write into campaigns (a sender, a webhook URL), read one way everywhere.

The checker refuses what no provider could take, so a campaign does not deploy to fail every
send; the adapters read the same text with the same functions when they send.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# `Name <local@domain>`, whatever the name holds.
_NAME_ADDR = re.compile(r"(?P<name>[^<>]*)<(?P<email>[^<>@\s]+@[^<>@\s]+)>")
_EMAIL = re.compile(r"[^<>@\s]+@[^<>@\s.][^<>@\s]*")


def split_sender(text: str) -> tuple[str | None, str]:
    """(display name or None, address) of `Acme <hello@acme.test>` or `hello@acme.test`.

    The address in angle brackets is the address also when the name before it holds an
    unquoted `,` or `;`.
    """
    from email.utils import parseaddr

    name, email = parseaddr(text)
    if "@" not in email and (written := _NAME_ADDR.fullmatch(text.strip())):
        # RFC 5322 wants `"Acme, Inc." <...>`; read unquoted, the comma split the name off
        # as an address of its own (`Acme`), which every provider refuses.
        name, email = written["name"].strip().strip('"').strip(), written["email"]
    return name or None, email or text.strip()


def sender_problem(text: str) -> str | None:
    """Why `text` is no email sender (`Name <local@domain>` or `local@domain`), said of it
    ("is not ..."); None if it is one."""
    _name, email = split_sender(text)
    if _EMAIL.fullmatch(email):
        return None
    return "is not an email address"


def http_url_problem(text: str) -> str | None:
    """Why `text` is no http(s) URL with a host that a request can go to, said of it
    ("is not ..."); None if it is one."""
    if any(character.isspace() for character in text):
        return "has spaces or line breaks, which a URL cannot hold"
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError as exc:
        return f"is not a URL: {exc}"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "is not an http(s) URL with a host"
    return None
