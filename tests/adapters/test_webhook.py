"""Webhook channel: HMAC-SHA256 signatures checked by a loopback receiver, retries, refusals."""

from __future__ import annotations

import json
import time

import pytest
import trio

from cadence.adapters.config import Secret, WebhookConfig
from cadence.adapters.message import SendStatus
from cadence.adapters.standins.webhook import WebhookReceiver
from cadence.adapters.webhook import WebhookAdapter, sign, verify_signature
from tests.adapters.conftest import close_at_end, fast_policy, lenient_breaker, webhook


def adapter(secret: str = "test-webhook-secret", timeout: float = 5.0) -> WebhookAdapter:
    return WebhookAdapter(
        WebhookConfig(secret=Secret(secret), timeout=timeout),
        policy=fast_policy(),
        breaker=lenient_breaker(),
    )


def test_signature_round_trip_and_tampering() -> None:
    now = time.time()
    stamp = str(int(now))
    body = b'{"a":1}'
    signature = sign("k", stamp, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature("k", signature, stamp, body, now=now)
    assert not verify_signature("k", signature, stamp, b'{"a":2}', now=now)
    assert not verify_signature("other", signature, stamp, body, now=now)
    assert not verify_signature("k", signature, str(int(now) + 1), body, now=now)
    assert not verify_signature("k", signature, stamp, body, now=now + 3600)  # replayed later


@pytest.mark.trio
async def test_signed_post_is_verified_by_the_receiver(nursery: trio.Nursery) -> None:
    receiver = WebhookReceiver()
    url = await nursery.start(receiver.serve)
    sender = adapter()
    result = await sender.send(webhook(url + "/crm", 1))
    await sender.aclose()
    assert result.status is SendStatus.SENT
    (request,) = receiver.received
    assert request.path == "/crm"
    assert request.headers["x-cadence-idempotency-key"] == "camp1:v1:node6:contact1:0"
    assert json.loads(request.body) == {
        "id": "camp1:v1:node6:contact1:0",
        "tenant": "acme",
        "campaign": None,
        "node": None,
        "contact": "contact1",
        "template": None,
        "data": {"lead": 1, "stage": "hot"},
    }


@pytest.mark.trio
async def test_wrong_secret_is_refused_permanently(nursery: trio.Nursery) -> None:
    receiver = WebhookReceiver()
    url = await nursery.start(receiver.serve)
    sender = adapter(secret="not-the-secret")
    close_at_end(nursery, sender)
    result = await sender.send(webhook(url, 1))
    assert result.status is SendStatus.FAILED_PERMANENT and result.error_code == "http_401"
    assert receiver.rejected == 1 and not receiver.received


@pytest.mark.trio
async def test_5xx_and_timeouts_are_retried(nursery: trio.Nursery) -> None:
    receiver = WebhookReceiver()
    url = await nursery.start(receiver.serve)
    receiver.faults.add("500")
    # The slow answer outlasts the timeout by far, and the good request has a whole timeout
    # to itself: on a busy machine 0.3 s was not always enough for a loopback round trip.
    receiver.faults.add("slow", delay=10.0)
    sender = adapter(timeout=1.5)
    close_at_end(nursery, sender)
    result = await sender.send(webhook(url, 1))
    assert result.status is SendStatus.SENT and result.attempts == 3
    assert len(receiver.received) == 1


@pytest.mark.trio
async def test_receiver_down_is_retry_later(nursery: trio.Nursery) -> None:
    receiver = WebhookReceiver()
    url = await nursery.start(receiver.serve)
    receiver.faults.outage(10, "503")
    sender = adapter()
    close_at_end(nursery, sender)
    result = await sender.send(webhook(url, 1))
    assert result.status is SendStatus.RETRY_LATER and result.error_code == "http_503"
    assert result.attempts == 4 and result.retry_at is not None


@pytest.mark.trio
async def test_many_webhooks_each_arrive_once(nursery: trio.Nursery) -> None:
    receiver = WebhookReceiver()
    url = await nursery.start(receiver.serve)
    receiver.faults.add("503", times=3)
    sender = adapter()
    close_at_end(nursery, sender)
    results = await sender.send_batch([webhook(url, n) for n in range(1, 21)])
    assert all(r.ok for r in results)
    keys = sorted(r.headers["x-cadence-idempotency-key"] for r in receiver.received)
    assert keys == sorted(f"camp1:v1:node6:contact{n}:0" for n in range(1, 21))


@pytest.mark.trio
@pytest.mark.parametrize(
    "url", ["https://[::1/hook", "https://hooks.acme.test/a\nb", "http://:80/"]
)
async def test_a_url_no_request_can_go_to_fails_that_message_only(
    nursery: trio.Nursery, url: str
) -> None:
    """httpx refuses such a URL before sending (InvalidURL, which is no HTTPError, or an
    empty host): the adapter raised out of the batch, or retried for ever as unknown."""
    receiver = WebhookReceiver()
    good = await nursery.start(receiver.serve)
    sender = adapter()
    close_at_end(nursery, sender)
    bad, fine = await sender.send_batch([webhook(url, 1), webhook(good, 2)])
    assert bad.status is SendStatus.FAILED_PERMANENT and bad.error_code == "invalid_message"
    assert repr(url) in (bad.error or "")
    assert fine.ok and len(receiver.received) == 1
