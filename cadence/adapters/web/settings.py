"""What the HTTP service needs to know: its public address, the link secret, the API token.

Read from the environment, so that `cadence serve` needs no file for them:
CADENCE_PUBLIC_URL (where the links in messages point), CADENCE_LINK_SECRET (signs them),
CADENCE_API_TOKEN (callers of the event, webhook and inbox endpoints present it) and
CADENCE_TRACKING (`on`, `off`, `opens` or `clicks`: which tracking the links carry).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cadence.adapters.config import ConfigError, Secret
from cadence.adapters.tracking import LinkSigner, TrackingLinks

TRACKING_CHOICES = {"on": (True, True), "off": (False, False), "opens": (True, False),
                    "clicks": (False, True)}  # fmt: skip
# A secret shorter than this is guessable; 32 random characters are what docs suggest.
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class ServiceSettings:
    """The service's settings; each part it lacks switches off what needs it, visibly."""

    public_url: str | None = None
    link_secret: Secret | None = None
    api_token: Secret | None = None
    track_opens: bool = True
    track_clicks: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        """Settings from the environment, every bad value named (ConfigError)."""
        env = os.environ if env is None else env
        public_url = (env.get("CADENCE_PUBLIC_URL") or "").strip() or None
        secret = env.get("CADENCE_LINK_SECRET") or ""
        token = env.get("CADENCE_API_TOKEN") or ""
        tracking = (env.get("CADENCE_TRACKING") or "on").strip().lower()
        if public_url is not None:
            parts = urlsplit(public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(
                    f"CADENCE_PUBLIC_URL: expected http(s)://host[/path], got {public_url!r}"
                )
            if not secret:
                raise ConfigError(
                    "CADENCE_PUBLIC_URL is set but CADENCE_LINK_SECRET is not: links in"
                    " messages must be signed (set it to a long random string)"
                )
        if secret and len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"CADENCE_LINK_SECRET is {len(secret)} characters; use at least"
                f" {MIN_SECRET_LENGTH} random ones"
            )
        if tracking not in TRACKING_CHOICES:
            raise ConfigError(
                f"CADENCE_TRACKING: expected one of {', '.join(TRACKING_CHOICES)}, got {tracking!r}"
            )
        opens, clicks = TRACKING_CHOICES[tracking]
        return cls(
            public_url=public_url.rstrip("/") if public_url else None,
            link_secret=Secret(secret) if secret else None,
            api_token=Secret(token) if token else None,
            track_opens=opens,
            track_clicks=clicks,
        )

    def signer(self) -> LinkSigner | None:
        """The link signer, or None when no secret is set (no tracked links)."""
        if self.link_secret is None:
            return None
        return LinkSigner(self.link_secret.reveal())

    def links(self) -> TrackingLinks | None:
        """The live sink's link builder, or None without a public URL (messages get none)."""
        signer = self.signer()
        if self.public_url is None or signer is None:
            return None
        return TrackingLinks(
            self.public_url, signer, track_opens=self.track_opens, track_clicks=self.track_clicks
        )
