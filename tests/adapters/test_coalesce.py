"""Callers that ask together share one computation, and none gets one from before it asked."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from cadence.adapters.web.coalesce import Coalesced


class Store:
    """A value that writes change, and a reading of it that waits at `gate` once read."""

    def __init__(self) -> None:
        self.value = 0
        self.gate = trio.Event()
        self.fail_next = False

    async def read(self) -> int:
        seen = self.value
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the store went away")
        return seen


class Tabs:
    """Callers of one `Coalesced` reading of a `Store`, each answer (or failure) kept under
    the caller's name."""

    def __init__(self) -> None:
        self.store = Store()
        self.shared = Coalesced(self.store.read)
        self.answers: dict[str, object] = {}

    async def ask(self, name: str) -> None:
        try:
            self.answers[name] = await self.shared()
        except RuntimeError as exc:
            self.answers[name] = str(exc)


def test_callers_who_ask_during_a_run_share_the_next_which_sees_what_came_before() -> None:
    async def main() -> None:
        tabs = Tabs()
        store, shared = tabs.store, tabs.shared
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tabs.ask, "first")
            await trio.testing.wait_all_tasks_blocked()
            store.value = 1  # written after the first run read, before the others asked
            for name in ("second", "third", "fourth"):
                nursery.start_soon(tabs.ask, name)
            await trio.testing.wait_all_tasks_blocked()
            assert shared.waiting == 3
            store.gate.set()
        assert tabs.answers == {"first": 0, "second": 1, "third": 1, "fourth": 1}
        assert shared.runs == 2 and shared.waiting == 0
        # Asked again later: read again, not answered from the last run.
        store.value = 2
        assert await shared() == 2 and shared.runs == 3

    trio.run(main)


def test_a_failed_run_fails_its_caller_and_a_waiter_runs_again() -> None:
    async def main() -> None:
        tabs = Tabs()
        store, shared = tabs.store, tabs.shared
        store.fail_next = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tabs.ask, "first")
            await trio.testing.wait_all_tasks_blocked()
            store.value = 5
            nursery.start_soon(tabs.ask, "second")
            await trio.testing.wait_all_tasks_blocked()
            store.gate.set()
        assert tabs.answers == {"first": "the store went away", "second": 5}
        assert shared.runs == 1

    trio.run(main)


def test_a_cancelled_run_leaves_its_waiters_to_run_it_again() -> None:
    async def main() -> None:
        tabs = Tabs()
        store, shared = tabs.store, tabs.shared
        first = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancellable, first, shared)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(tabs.ask, "second")
            await trio.testing.wait_all_tasks_blocked()
            assert shared.waiting == 1
            store.value = 7
            first.cancel()  # the tab that was reading closes
            await trio.testing.wait_all_tasks_blocked()
            assert shared.waiting == 0  # the waiter is now the one reading
            store.gate.set()
        assert tabs.answers == {"second": 7}
        assert shared.runs == 1

    trio.run(main)


async def _cancellable(scope: trio.CancelScope, shared: Coalesced[int]) -> None:
    with scope:
        await shared()
        pytest.fail("the cancelled caller got an answer")
