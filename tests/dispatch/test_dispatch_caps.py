"""Frequency caps behave the same on both backends: windows, channels, order, release, rebuild."""

from __future__ import annotations

import numpy as np
import pytest

from cadence.dispatch.caps import CapRule, FrequencyCaps
from cadence.dispatch.filter import Backend

DAY = 86_400_000_000


def test_three_per_week_per_channel(backend: Backend) -> None:
    caps = FrequencyCaps([CapRule("email", 3, 7 * DAY)], backend=backend)
    d = caps.check_and_reserve([1] * 5, ["email"] * 4 + ["sms"], [0, DAY, 2 * DAY, 3 * DAY, 0])
    assert d.allowed.tolist() == [True, True, True, False, True]
    assert d.denied_by.tolist() == [-1, -1, -1, 0, -1]
    # a week after the first send, one slot is free again
    assert caps.check_and_reserve([1], ["email"], [7 * DAY]).allowed.tolist() == [True]
    assert caps.check_and_reserve([1], ["email"], [7 * DAY + 1]).allowed.tolist() == [False]


def test_overall_rule_counts_every_channel_and_reports_which_rule(backend: Backend) -> None:
    caps = FrequencyCaps([CapRule("sms", 1, DAY), CapRule(None, 2, DAY)], backend=backend)
    d = caps.check_and_reserve([7, 7, 7, 7], ["sms", "email", "sms", "whatsapp"], [0, 1, 2, 3])
    assert d.allowed.tolist() == [True, True, False, False]
    assert d.denied_by.tolist() == [-1, -1, 0, 1]


def test_contacts_are_independent(backend: Backend) -> None:
    caps = FrequencyCaps([CapRule(None, 1, DAY)], backend=backend)
    d = caps.check_and_reserve([1, 2, 1, 2], ["email"] * 4, [0, 0, 5, 5])
    assert d.allowed.tolist() == [True, True, False, False]


def test_a_future_reservation_blocks_an_earlier_send_in_its_window(backend: Backend) -> None:
    caps = FrequencyCaps([CapRule(None, 1, DAY)], backend=backend)
    caps.check_and_reserve([1], ["email"], [10 * DAY])
    d = caps.check_and_reserve([1, 1], ["email", "email"], [10 * DAY - DAY + 1, 9 * DAY])
    assert d.allowed.tolist() == [False, True]


def test_zero_limit_denies_everything(backend: Backend) -> None:
    caps = FrequencyCaps([CapRule("sms", 0, DAY)], backend=backend)
    d = caps.check_and_reserve([1, 1], ["sms", "email"], [0, 0])
    assert d.allowed.tolist() == [False, True]


def test_release_frees_the_slot(backend: Backend) -> None:
    caps = FrequencyCaps([CapRule("email", 1, DAY)], backend=backend)
    assert caps.check_and_reserve([1], ["email"], [100]).allowed.tolist() == [True]
    assert caps.release([1, 1], ["email", "email"], [100, 100]).tolist() == [True, False]
    assert caps.check_and_reserve([1], ["email"], [200]).allowed.tolist() == [True]
    assert len(caps) == 1


def test_rebuild_from_send_log_agrees_with_live_index(backend: Backend) -> None:
    rng = np.random.default_rng(5)
    n = 2000
    contacts = rng.integers(0, 50, n)
    channels = rng.choice(["email", "sms"], n)
    ats = rng.integers(0, 20 * DAY, n)
    rules = [CapRule("email", 3, 7 * DAY), CapRule(None, 4, 7 * DAY)]
    live = FrequencyCaps(rules, backend=backend)
    d = live.check_and_reserve(contacts, channels, ats)
    log = np.flatnonzero(d.allowed)
    rebuilt = FrequencyCaps(rules, backend=backend)
    rebuilt.rebuild(contacts[log], channels[log], ats[log])
    assert len(rebuilt) == len(live) == len(log)
    probe = (
        rng.integers(0, 50, 300),
        rng.choice(["email", "sms"], 300),
        rng.integers(0, 20 * DAY, 300),
    )
    a = live.check_and_reserve(*probe)
    b = rebuilt.check_and_reserve(*probe)
    assert np.array_equal(a.allowed, b.allowed) and np.array_equal(a.denied_by, b.denied_by)


def test_one_request_at_a_time_answers_as_a_batch(backend: Backend) -> None:
    """`check_and_reserve_one` (a gate's one send) is `check_and_reserve` of a batch of one."""
    rng = np.random.default_rng(11)
    n = 600
    contacts = rng.integers(0, 30, n).tolist()
    channels = rng.choice(["email", "sms", "whatsapp"], n).tolist()
    ats = rng.integers(0, 20 * DAY, n).tolist()
    rules = [CapRule("sms", 1, DAY), CapRule(None, 4, 7 * DAY), CapRule("email", 3, 7 * DAY)]
    batch = FrequencyCaps(rules, backend=backend).check_and_reserve(contacts, channels, ats)
    one = FrequencyCaps(rules, backend=backend)
    requests = zip(contacts, channels, ats, strict=True)
    answers = [one.check_and_reserve_one(*request) for request in requests]
    assert answers == batch.denied_by.tolist()
    assert len(one) == int(batch.allowed.sum())


def test_caps_never_exceeded_in_any_window(backend: Backend) -> None:
    rng = np.random.default_rng(9)
    n = 3000
    contacts = rng.integers(0, 20, n)
    ats = rng.integers(0, 30 * DAY, n)
    caps = FrequencyCaps([CapRule(None, 3, 7 * DAY)], backend=backend)
    d = caps.check_and_reserve(contacts, ["email"] * n, ats)
    for c in range(20):
        times = np.sort(ats[(contacts == c) & d.allowed])
        # any 4 consecutive sends must span at least the window
        assert all(times[i + 3] - times[i] >= 7 * DAY for i in range(len(times) - 3))


def test_prune_drops_old_sends(backend: Backend) -> None:
    caps = FrequencyCaps([CapRule(None, 1, DAY)], backend=backend)
    caps.record([1, 1, 2], ["email"] * 3, [0, 5 * DAY, DAY])
    assert caps.prune(2 * DAY) == 2
    assert len(caps) == 1


def test_mismatched_lengths_are_rejected(backend: Backend) -> None:
    caps = FrequencyCaps([CapRule(None, 1, DAY)], backend=backend)
    with pytest.raises(ValueError):
        caps.check_and_reserve([1, 2], ["email"], [0, 0])


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError):
        CapRule("email", -1, DAY)
    with pytest.raises(ValueError):
        CapRule("email", 1, 0)
    # The Rust core holds a limit in 64 bits; its twin refuses a larger one as well.
    with pytest.raises(ValueError):
        CapRule("email", 2**63, DAY)


def test_the_largest_limit_allows_every_send(backend: Backend) -> None:
    caps = FrequencyCaps([CapRule("email", 2**63 - 1, DAY)], backend=backend)
    assert caps.check_and_reserve([1] * 3, ["email"] * 3, [0, 0, 0]).allowed.tolist() == [True] * 3


def test_large_batch_matches_the_twin() -> None:
    """Big batches take the Rust core's sharded, parallel path; the answers must not change."""
    from cadence import _backend

    if _backend.core is None:
        pytest.skip("needs the Rust core")
    rng = np.random.default_rng(13)
    n = 40_000
    contacts = rng.integers(0, 3000, n)
    channels = rng.integers(0, 3, n)
    ats = rng.integers(0, 20 * DAY, n)
    rules = [CapRule("email", 2, 3 * DAY), CapRule(None, 4, 7 * DAY)]
    out = []
    for backend in ("rust", "python"):
        caps = FrequencyCaps(rules, backend=backend)  # type: ignore[arg-type]
        for name in ("email", "sms", "push"):
            caps.channel_code(name)
        d = caps.check_and_reserve(contacts, channels, ats)
        log = np.flatnonzero(d.allowed)
        caps.rebuild(contacts[log], channels[log], ats[log] + 1)  # the parallel bulk load
        again = caps.check_and_reserve(contacts[:5000], channels[:5000], ats[:5000])
        out.append((d.allowed.tolist(), d.denied_by.tolist(), again.denied_by.tolist(), len(caps)))
    assert out[0] == out[1]


def test_threads_share_one_index_safely(backend: Backend) -> None:
    """The Rust core releases the GIL; calls from several threads are serialised, not refused."""
    import threading

    caps = FrequencyCaps([CapRule(None, 10, DAY)], backend=backend)
    allowed: list[int] = []
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for k in range(20):
                d = caps.check_and_reserve([1] * 500, ["email"] * 500, [offset + k] * 500)
                allowed.append(int(d.allowed.sum()))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i * 100,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(allowed) == 10 == len(caps)
