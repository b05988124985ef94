"""Real HTTP servers on loopback that stand in for Brevo, Infobip and a webhook receiver.

Tests start them to prove the adapters end to end; `cadence demo` starts them when no
provider is configured, so the demo sends for real, on 127.0.0.1 only.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from cadence.adapters.standins.brevo import BrevoStandin
from cadence.adapters.standins.faults import Faults
from cadence.adapters.standins.infobip import InfobipStandin
from cadence.adapters.standins.webhook import WebhookReceiver

__all__ = [
    "BrevoStandin",
    "Faults",
    "InfobipStandin",
    "Standins",
    "WebhookReceiver",
    "start_standins",
]


@dataclass(frozen=True)
class Standins:
    """The running stand-ins, their base URLs and the credentials they accept."""

    brevo: BrevoStandin
    infobip: InfobipStandin
    webhook: WebhookReceiver
    brevo_url: str
    infobip_url: str
    webhook_url: str
    brevo_api_key: str
    infobip_api_key: str
    webhook_secret: str

    def environment(self) -> dict[str, str]:
        """CADENCE_* variables that point the adapters at these stand-ins."""
        return {
            "CADENCE_EMAIL_PROVIDER": "brevo",
            "CADENCE_BREVO_API_KEY": self.brevo_api_key,
            "CADENCE_BREVO_BASE_URL": self.brevo_url,
            "CADENCE_INFOBIP_API_KEY": self.infobip_api_key,
            "CADENCE_INFOBIP_BASE_URL": self.infobip_url,
            "CADENCE_WEBHOOK_SECRET": self.webhook_secret,
        }


async def start_standins(nursery: trio.Nursery) -> Standins:
    """Start Brevo, Infobip and webhook stand-ins in `nursery`; they stop when it is cancelled."""
    brevo = BrevoStandin()
    infobip = InfobipStandin()
    webhook = WebhookReceiver()
    brevo_url = await nursery.start(brevo.serve)
    infobip_url = await nursery.start(infobip.serve)
    webhook_url = await nursery.start(webhook.serve)
    return Standins(
        brevo=brevo,
        infobip=infobip,
        webhook=webhook,
        brevo_url=brevo_url,
        infobip_url=infobip_url,
        webhook_url=webhook_url,
        brevo_api_key=next(iter(brevo.api_keys)),
        infobip_api_key=next(iter(infobip.api_keys)),
        webhook_secret=webhook.secret,
    )
