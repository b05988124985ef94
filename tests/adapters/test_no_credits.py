"""An account out of credit (Brevo's 402, Infobip's REJECTED_NOT_ENOUGH_CREDITS) pauses the
provider instead of failing sends: each waits, and goes once the account is topped up."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
import trio

from cadence.adapters.base import NO_CREDITS, NO_CREDITS_WAIT
from cadence.adapters.message import SendStatus
from cadence.adapters.retry import CircuitBreaker
from tests.adapters import test_brevo, test_infobip
from tests.adapters.conftest import email, sms

PROVIDERS = {
    "brevo": (test_brevo.start, email, lambda standin: standin.emails),
    "infobip": (test_infobip.start, sms, lambda standin: standin.messages),
}


@pytest.mark.trio
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_no_credit_pauses_the_provider_and_the_send_goes_once_topped_up(
    nursery: trio.Nursery, provider: str
) -> None:
    start, message, taken = PROVIDERS[provider]
    now = [0.0]
    standin, adapter = await start(
        nursery, breaker=CircuitBreaker(failure_threshold=100, clock=lambda: now[0])
    )
    standin.faults.add("no_credits")
    first: Any = message(1)
    refused = await adapter.send(first)
    assert refused.status is SendStatus.RETRY_LATER and refused.error_code == NO_CREDITS
    assert refused.retry_at is not None
    assert refused.retry_at - dt.datetime.now(dt.UTC) > dt.timedelta(seconds=NO_CREDITS_WAIT - 5)
    assert "credit" in (refused.error or "").lower() and taken(standin) == []

    # Paused: the next send waits without a request, the provider is not asked again.
    asked = len(standin.requests)
    waiting = await adapter.send(message(2))
    assert waiting.status is SendStatus.RETRY_LATER and waiting.error_code == "circuit_open"
    assert len(standin.requests) == asked

    # Topped up (the stand-in takes sends again): after the pause the retry goes, once.
    now[0] += NO_CREDITS_WAIT
    sent = await adapter.send(replace(first, attempt=1))
    assert sent.status is SendStatus.SENT
    assert len(taken(standin)) == 1
