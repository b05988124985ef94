"""Signed per-send links: unsubscribe, open pixel and click redirects that the service verifies.

A link names its send by the outbox's idempotency key and carries an HMAC of what it says
(the kind of link, the tenant, the key and, for a click, the target URL) under the
tenant's link secret. The HTTP service (`cadence.adapters.web`) accepts only links whose
signature matches, so nobody can unsubscribe someone else by guessing a URL, forge clicks
into the analytics, or use the click redirect to send people anywhere else.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from cadence.adapters.text import replace_web_addresses

if TYPE_CHECKING:
    from cadence.engine.runtime import OutgoingMessage

LinkKind = Literal["open", "click", "unsubscribe", "preferences", "view"]
# The path segment of each kind of link, as the service routes them.
PATHS: Mapping[LinkKind, str] = {
    "open": "o", "click": "c", "unsubscribe": "u", "preferences": "p", "view": "v"
}  # fmt: skip
# 128 bits of HMAC-SHA256: far beyond guessing, short enough for a URL.
SIGNATURE_BYTES = 16
# The smallest transparent GIF, served for every open.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

_ANCHOR_HREF = re.compile(
    r"""(<a\b[^>]*?\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE | re.DOTALL
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def has_web_version(channel: str) -> bool:
    """Whether a message on `channel` gets a web version: only an email does."""
    return channel == "email"


def opt_in_url(base_url: str | None, token: str) -> str:
    """The link a person confirms a double opt-in with: the service's `/optin/TOKEN` page.

    The one place it is made: the consent API hands it back, and a confirmation message
    (a template that uses `confirm_url`) carries it.
    """
    return f"{(base_url or '').rstrip('/')}/optin/{token}"


@dataclass(frozen=True, slots=True)
class Links:
    """Per-contact links a message carries (unsubscribe, preferences, web view, tracking)."""

    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    preferences_url: str | None = None
    view_in_browser_url: str | None = None
    # An email's HTML gets this image (an open) and its web links go through `click`.
    open_pixel_url: str | None = None
    click: Callable[[str], str] | None = None
    # A confirmation message's `confirm_url`, from its contact's pending opt-in token.
    confirm: Callable[[str], str] | None = None


class LinkSigner:
    """Signs and checks links with the service's secret."""

    def __init__(self, secret: str | bytes) -> None:
        """Keep the key; an empty secret would make every signature guessable."""
        key = secret.encode() if isinstance(secret, str) else secret
        if not key:
            raise ValueError("a link secret must not be empty")
        self._key = key

    def sign(self, kind: LinkKind, tenant: str, key: str, target: str = "") -> str:
        """The signature of a `kind` link to the tenant's send `key` (and a click's target)."""
        message = "\x00".join((kind, tenant, key, target)).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:SIGNATURE_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(
        self, kind: LinkKind, tenant: str, key: str, signature: str, target: str = ""
    ) -> bool:
        """Whether `signature` is that link's (compared in constant time)."""
        return hmac.compare_digest(self.sign(kind, tenant, key, target), signature)


class TrackingLinks:
    """The live sink's `LinkBuilder`: signed unsubscribe, open and click links on `base_url`."""

    def __init__(
        self,
        base_url: str,
        signer: LinkSigner,
        *,
        track_opens: bool = True,
        track_clicks: bool = True,
    ) -> None:
        """Links point at `base_url` (the service's public address, https in production)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the public URL must be http(s)://host[/path], not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.track_opens = track_opens
        self.track_clicks = track_clicks

    def url(self, kind: LinkKind, tenant: str, key: str, target: str = "") -> str:
        """The signed `kind` link to the tenant's send `key`."""
        signature = self.signer.sign(kind, tenant, key, target)
        path = f"{self.base_url}/{PATHS[kind]}/{quote(key, safe='')}.{signature}"
        if kind == "open":
            return path + ".gif"
        if kind == "click":
            return f"{path}?u={quote(target, safe='')}"
        return path

    def __call__(self, message: OutgoingMessage, contact: Mapping[str, Any]) -> Links:
        """The links of one send (the sink asks for them before rendering it).

        Only an email has a web version; every message can carry its preference page.
        """
        tenant, key = message.tenant_id, message.idempotency_key
        return Links(
            unsubscribe_url=self.url("unsubscribe", tenant, key),
            preferences_url=self.url("preferences", tenant, key),
            view_in_browser_url=(
                self.url("view", tenant, key) if has_web_version(message.channel) else None
            ),
            open_pixel_url=self.url("open", tenant, key) if self.track_opens else None,
            click=(
                (lambda target: self.url("click", tenant, key, target))
                if self.track_clicks
                else None
            ),
            confirm=functools.partial(opt_in_url, self.base_url),
        )


def split_token(token: str, suffix: str = "") -> tuple[str, str] | None:
    """`KEY.SIGNATURE[suffix]` from a link's last path segment; None when it is not one."""
    if suffix:
        if not token.endswith(suffix):
            return None
        token = token[: -len(suffix)]
    key, dot, signature = token.rpartition(".")
    if not dot or not key or not signature:
        return None
    return key, signature


def track_html(
    html: str,
    *,
    click: Callable[[str], str] | None,
    pixel: str | None,
    keep: Collection[str] = (),
) -> str:
    """The HTML with its web links sent through click redirects and an open pixel at the end.

    Only http(s) links are wrapped: mailto:, tel: and anchors go where they say. Links in
    `keep` (the unsubscribe link, already a tracked one) are left as they are. A link's
    `&amp;` is unescaped first, so the redirect lands on the URL the reader saw.
    """
    if click is not None:

        def wrap(found: re.Match[str]) -> str:
            raw = found.group(2) if found.group(2) is not None else found.group(3)
            target = raw.strip().replace("&amp;", "&")
            if target in keep or not target.lower().startswith(("http://", "https://")):
                return found.group(0)
            return f'{found.group(1)}"{click(target).replace("&", "&amp;")}"'

        html = _ANCHOR_HREF.sub(wrap, html)
    if pixel is not None:
        image = f'<img src="{pixel}" width="1" height="1" alt="" style="display:none">'
        ends = list(_BODY_END.finditer(html))
        if ends:
            at = ends[-1].start()
            html = html[:at] + image + html[at:]
        else:
            html += image
    return html


def track_text(text: str, *, click: Callable[[str], str], keep: Collection[str] = ()) -> str:
    """The plain-text part with its web addresses sent through click redirects.

    Readers of the text part click too (text-only clients, some screen readers); without
    this their clicks went uncounted. `replace_web_addresses` says what an address is.
    """
    return replace_web_addresses(text, lambda url: url if url in keep else click(url))
