"""A loopback webhook receiver that checks Cadence's signature, for tests and the demo."""

from __future__ import annotations

from dataclasses import dataclass, field

from cadence.adapters.standins.faults import Faults
from cadence.adapters.standins.http import Drop, LoopbackService, Request, Response
from cadence.adapters.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature


@dataclass
class WebhookReceiver(LoopbackService):
    """Accepts signed POSTs on any path; a bad signature gets 401 and is not recorded."""

    secret: str = "test-webhook-secret"
    faults: Faults = field(default_factory=Faults)
    requests: list[Request] = field(default_factory=list)
    received: list[Request] = field(default_factory=list)
    rejected: int = 0

    service_name = "webhook"

    async def handle(self, request: Request) -> Response | Drop:
        """Verify, record, answer 204 (or the injected fault)."""
        self.requests.append(request)
        fault = self.faults.take()
        if fault is not None and not fault.process:
            if fault.kind == "drop":
                return Drop(fault.delay)
            if fault.kind == "slow":
                return Response(204, delay=fault.delay or 30.0)
            return Response(int(fault.kind) if fault.kind.isdigit() else 500, {"error": "injected"})
        ok = verify_signature(
            self.secret,
            request.headers.get(SIGNATURE_HEADER.lower(), ""),
            request.headers.get(TIMESTAMP_HEADER.lower(), ""),
            request.body,
        )
        if not ok:
            self.rejected += 1
            return Response(401, {"error": "bad signature"})
        self.received.append(request)
        return Response(204)
