"""An account out of credit (Brevo's 402, Infobip's REJECTED_NOT_ENOUGH_CREDITS) pauses the
provider instead of failing sends: each waits, and goes once the account is topped up."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import httpx
import pytest
import trio

from cadence.adapters.base import KEY_REFUSED, NO_CREDITS, NO_CREDITS_WAIT
from cadence.adapters.infobip import message_id_for
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
@pytest.mark.parametrize(
    ("fault", "code", "said"),
    # A refused key (401) is the account's too: every send was failed for good with it.
    [("no_credits", NO_CREDITS, "credit"), ("401", KEY_REFUSED, "401")],
    ids=["no_credits", "key_refused"],
)
async def test_no_credit_pauses_the_provider_and_the_send_goes_once_topped_up(
    nursery: trio.Nursery, provider: str, fault: str, code: str, said: str
) -> None:
    start, message, taken = PROVIDERS[provider]
    now = [0.0]
    standin, adapter = await start(
        nursery, breaker=CircuitBreaker(failure_threshold=100, clock=lambda: now[0])
    )
    standin.faults.add(fault)
    first: Any = message(1)
    refused = await adapter.send(first)
    assert refused.status is SendStatus.RETRY_LATER and refused.error_code == code
    assert refused.retry_at is not None
    assert refused.retry_at - dt.datetime.now(dt.UTC) > dt.timedelta(seconds=NO_CREDITS_WAIT - 5)
    assert said in (refused.error or "").lower() and taken(standin) == []

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


@pytest.mark.trio
async def test_infobip_logs_a_message_it_refused_for_credit_and_the_retry_finds_it(
    nursery: trio.Nursery,
) -> None:
    """Infobip logs the messages it refuses: a lookup of one refused for credit answers
    REJECTED_NOT_ENOUGH_CREDITS (as the adapter expects before it sends again), and once
    sent, the message is logged as sent, once."""
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=100, clock=lambda: now[0])
    standin, adapter = await test_infobip.start(nursery, breaker=breaker)
    standin.faults.add("no_credits")
    first = sms(1)
    refused = await adapter.send(first)
    assert refused.error_code == NO_CREDITS

    async def logged() -> list[tuple[str, str]]:
        async with httpx.AsyncClient(base_url=adapter.base) as client:
            answer = await client.get(
                "/sms/1/logs", params={"messageId": message_id_for(first)},
                headers={"authorization": "App test-infobip-key"},
            )  # fmt: skip
        return [(r["to"], r["status"]["name"]) for r in answer.json()["results"]]

    assert await logged() == [("447946000001", "REJECTED_NOT_ENOUGH_CREDITS")]
    now[0] += NO_CREDITS_WAIT  # topped up, and the paused provider probed again
    sent = await adapter.send(replace(first, attempt=1))
    assert sent.status is SendStatus.SENT
    assert await logged() == [("447946000001", "DELIVERED_TO_HANDSET")]
    assert list(standin.deliveries().values()) == [1]
