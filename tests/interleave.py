"""Meeting points for tests that race two parties through the same code at once.

A race test needs the interleaving in which both parties have done their read before
either writes; a sleep only makes it likely. A `Meeting` put right after the read (with a
monkeypatched wrapper) makes it certain when nothing else holds a party back, and costs
only its timeout when the code under test makes one party wait for the other (a row lock,
SQLite's write lock), which is the guarantee the test is after.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

# Long enough for the other party to reach the same point on a loaded machine; a test
# waits this long only when the code keeps the second party out (as it must).
MEETING_TIMEOUT = 1.5


class Meeting:
    """A point two parties pass together: each waits there until the other has arrived,
    or until the timeout (the other is held elsewhere, by a lock). Counts stay, so a party
    arriving after the other left passes at once."""

    def __init__(self, timeout: float = MEETING_TIMEOUT) -> None:
        self.arrived = 0
        self.timeout = timeout
        self.condition = threading.Condition()

    def arrive(self) -> None:
        """Wait here for the other party (at most the timeout)."""
        with self.condition:
            self.arrived += 1
            self.condition.notify_all()
            self.condition.wait_for(lambda: self.arrived >= 2, timeout=self.timeout)


def meet_after(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, meeting: Meeting | None = None
) -> Meeting:
    """Make `owner.name` (a function run in a worker thread) stop at `meeting` once it has
    returned: the two parties' reads are both done before either goes on to write."""
    meeting = meeting or Meeting()
    original = getattr(owner, name)

    def then_meet(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        meeting.arrive()
        return result

    monkeypatch.setattr(owner, name, then_meet)
    return meeting
