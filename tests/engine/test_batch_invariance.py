"""How the scheduler cuts due work into batches never changes what is sent, or when.

Generated campaigns (sends, waits, `if opened(...)`, random splits, tags, exits) run over
generated audiences and engagement with step batches of 1, 3 and 500 enrollments: every
send (contact, template, instant) and every enrollment's end state must be the same. Batch
boundaries are where grouped writes, shared values and deferred outbox claims could go
wrong. (No caps or budgets: there the order within a moment decides, by design.)

With splits, a tag is followed by a wait: a run cut short by a contact change resumes
after the rest of its batch, so a split it reaches at that instant may place it
differently by batch size (docs/semantics.md, "A/B tests"); its shares stay exact, which
the split tests check. Without splits, tags come anywhere (the second test).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage
from cadence.engine.store.models import Enrollment

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
TEMPLATES = ("t1", "t2", "t3")
HORIZON = dt.timedelta(days=6)


def _steps(depth: int, splits: bool) -> st.SearchStrategy[str]:
    """A sequence of steps as Cadence text, nesting branches up to `depth`; with `splits`,
    a tag is followed by a wait (see the module's docstring)."""
    simple = st.one_of(
        st.sampled_from(TEMPLATES).map(lambda t: f"send email {t}"),
        st.sampled_from(["wait 1h", "wait 5h", "wait 1d", "wait 2d"]),
        st.just('tag add "seen" wait 1h' if splits else 'tag add "seen"'),
    )
    if depth == 0:
        step: st.SearchStrategy[str] = simple
    else:
        inner = _steps(depth - 1, splits)
        branches = [
            st.tuples(st.sampled_from(TEMPLATES), inner, inner).map(
                lambda p: f"if opened({p[0]}) {{ {p[1]} }} else {{ {p[2]} }}"
            )
        ]
        if splits:
            branches.append(
                st.tuples(inner, inner).map(lambda p: f"split {{ a 50%: {p[0]}  b 50%: {p[1]} }}")
            )
        step = st.one_of(simple, simple, *branches)
    return st.lists(step, min_size=1, max_size=4).map(" ".join)


@st.composite
def scenarios(draw: st.DrawFn, splits: bool = True) -> tuple[str, int, list[tuple[int, str, str]]]:
    """(source, contact count, [(hours after launch, contact id, template opened)])."""
    body = draw(_steps(2, splits))
    if draw(st.booleans()):
        body += ' exit "done"'
    templates = " ".join(f'template {t} email {{ subject "{t}" body "x" }}' for t in TEMPLATES)
    source = f"{templates}\ncampaign gen {{ on launch {{ {body} }} }}\n"
    contacts = draw(st.integers(min_value=1, max_value=12))
    opens = draw(
        st.lists(
            st.tuples(
                st.integers(min_value=1, max_value=100),
                st.integers(min_value=0, max_value=contacts - 1).map(lambda i: f"c{i:02}"),
                st.sampled_from(TEMPLATES),
            ),
            max_size=10,
        )
    )
    return source, contacts, sorted(opens)


@dataclass
class _TimedSink:
    """Records (instant, contact, template) of each message it accepts."""

    clock: SimulatedClock
    got: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        for message in messages:
            self.got.append((self.clock.now().isoformat(), message.contact_id, message.template))
        return [DeliveryResult(m.outbox_id, True, "timed", None) for m in messages]


def _run(
    source: str, contacts: int, opens: list[tuple[int, str, str]], batch_size: int
) -> tuple[list[Any], list[Any]]:
    clock = SimulatedClock(T0)
    sink = _TimedSink(clock)

    async def main() -> list[Any]:
        async with Engine("sqlite://", clock=clock, sink=sink, batch_size=batch_size) as engine:
            await engine.upsert_contacts(
                [{"id": f"c{i:02}", "email": f"c{i:02}@example.test"} for i in range(contacts)]
            )
            await engine.deploy(compile_workspace(load_text(source, "gen.cadence")))
            await engine.launch("gen")
            for hours, contact, template in opens:
                await engine.run_until(T0 + dt.timedelta(hours=hours))
                await engine.push_event(
                    {"contact": contact, "name": "opened",
                     "properties": {"template": template, "campaign": "gen"}}
                )  # fmt: skip
            await engine.run_until(T0 + HORIZON)
            with engine.store.store.session() as session:
                rows = session.execute(
                    select(Enrollment.contact_id, Enrollment.node, Enrollment.status)
                    .order_by(Enrollment.contact_id)
                ).all()  # fmt: skip
            return [tuple(row) for row in rows]

    ends = trio.run(main)
    return sorted(sink.got), ends


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_batch_size_never_changes_what_is_sent(
    scenario: tuple[str, int, list[tuple[int, str, str]]],
) -> None:
    source, contacts, opens = scenario
    one_by_one = _run(source, contacts, opens, batch_size=1)
    assert _run(source, contacts, opens, batch_size=3) == one_by_one
    assert _run(source, contacts, opens, batch_size=500) == one_by_one


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios(splits=False))
def test_a_run_cut_by_a_contact_change_sends_the_same_at_any_batch_size(
    scenario: tuple[str, int, list[tuple[int, str, str]]],
) -> None:
    """Without splits a tag may come anywhere: the run it cuts short resumes in a later
    round, and what is sent, and when, still does not depend on the batch size."""
    source, contacts, opens = scenario
    one_by_one = _run(source, contacts, opens, batch_size=1)
    assert _run(source, contacts, opens, batch_size=3) == one_by_one
    assert _run(source, contacts, opens, batch_size=500) == one_by_one
