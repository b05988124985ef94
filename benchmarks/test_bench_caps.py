"""Frequency caps: 1M check-and-reserve operations, Rust core vs Python twin."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.data import DAY_US, quick, sends, volume_size
from cadence.dispatch.caps import CapRule, FrequencyCaps

RULES = [CapRule("email", 3, 7 * DAY_US), CapRule("sms", 1, DAY_US), CapRule(None, 5, 7 * DAY_US)]
SIZE = volume_size()


@pytest.mark.parametrize("backend", ["rust", "python"], ids=[f"rust-{SIZE}", f"python-{SIZE}"])
def test_caps_check_and_reserve(benchmark: Any, backend: str) -> None:
    benchmark.group = f"caps-{SIZE}"
    data = sends(SIZE)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        caps = FrequencyCaps(RULES, backend=backend)  # type: ignore[arg-type]
        caps.channel_code("email"), caps.channel_code("sms")
        return (caps,), {}

    def run(caps: FrequencyCaps) -> Any:
        return caps.check_and_reserve(data.contacts, data.channels, data.ats)

    rounds = 1 if backend == "python" else 5
    decision = benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1)
    assert 0 < decision.allowed.sum() < len(data.contacts)


# A gate asks one send at a time (`check_and_reserve_one`): fewer requests, as each is a call.
ONE_SIZE = "10k" if quick() else "100k"


@pytest.mark.parametrize(
    "backend", ["rust", "python"], ids=[f"rust-{ONE_SIZE}", f"python-{ONE_SIZE}"]
)
def test_caps_check_and_reserve_one(benchmark: Any, backend: str) -> None:
    benchmark.group = f"caps-one-{ONE_SIZE}"
    data = sends(ONE_SIZE)
    names = ("email", "sms")
    requests = [
        (int(c), names[int(ch)], int(at))
        for c, ch, at in zip(data.contacts, data.channels, data.ats, strict=True)
    ]

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        caps = FrequencyCaps(RULES, backend=backend)  # type: ignore[arg-type]
        caps.channel_code("email"), caps.channel_code("sms")
        return (caps,), {}

    def run(caps: FrequencyCaps) -> list[int]:
        one = caps.check_and_reserve_one
        return [one(contact, channel, at) for contact, channel, at in requests]

    denied = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    assert 0 < denied.count(-1) < len(requests)
