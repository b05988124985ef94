"""Stepping a batch's cohorts: enrollments at one node, with one state, at one moment.

`stepper.advance` is a pure function of the campaign, the node, the state, the moment and
the answers its environment gives (the contact id names the contact and nothing else).
Many enrollments of a step batch share all but the answers, and then the stepper asks them
the same questions in the same order for as long as their answers agree. `CohortMemo`
keeps, per cohort, a tree of the questions asked and the answers given, with the result at
the end of each path. For a later enrollment it asks the same questions of that
enrollment's own environment, in the stepper's order, following the tree; when the answers
lead to a known result it reuses that: one object shared by every enrollment that reaches
it, which callers read and never change (the runtime builds a new result where it needs
another state). Where they lead off the tree it runs the stepper, which asks those
questions again; they are answered with what was just asked, never asked twice. So every
question with a side effect (a send gate reserving a cap slot, counting a budget) is asked
exactly as often, and in the same order, as without the memo.

Paths that ask for a split arrival or an A/B winner (they count arrivals, decide winners)
or a `set` value (any JSON value, compared by more than equality) are never kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from cadence.dsl import compiled as c
from cadence.engine.stepper import Advance, SendGate, StepEnv, advance
from cadence.engine.store.database import dumps_json
from cadence.engine.store.types import RawJSON

# A question: the environment's method (or `zone`) and its arguments.
Question = tuple[str, tuple[Any, ...]]
# What a cohort shares: version id, node and the state's JSON text.
CohortKey = tuple[int, str | None, str | None]


class _Leaf:
    """A result the stepper gave at the end of one path of answers."""

    __slots__ = ("result", "state")

    def __init__(self, result: Advance, text: str) -> None:
        """Keep the result (shared by every reuse, read-only) and its state's JSON."""
        self.result = result
        self.state = RawJSON(text)


class _Branch:
    """A question the stepper asked at this point of a path, and where each answer led."""

    __slots__ = ("next", "question")

    def __init__(self, question: Question) -> None:
        """A question with no answers seen yet."""
        self.question = question
        self.next: dict[Hashable, _Branch | _Leaf] = {}


def _answer_key(answer: Any) -> Hashable:
    """An answer as a tree key: equal only for equal answers of the same type (True != 1)."""
    return (answer.__class__, answer)


def _ask(env: StepEnv, question: Question) -> Any:
    """Ask `env` the question as the stepper would."""
    method, args = question
    if method == "zone":
        return env.zone
    return getattr(env, method)(*args)


class _Recording:
    """An environment that answers from `given` first, then from `env`, noting each answer.

    `given` are answers already asked of `env` for the stepper's first questions (asked
    again by the stepper, they are not asked twice). `kept` turns false on a question whose
    path must not be kept.
    """

    def __init__(self, env: StepEnv, given: list[tuple[Question, Any]]) -> None:
        """Wrap one enrollment's environment."""
        self.env = env
        self.given = given
        self.asked: list[tuple[Question, Any]] = []
        self.kept = True

    def _answer(self, question: Question) -> Any:
        position = len(self.asked)
        if position < len(self.given):
            known, answer = self.given[position]
            if known != question:  # the stepper is deterministic: only a bug gets here
                raise AssertionError(f"stepper asked {question!r}, not {known!r}")
        else:
            answer = _ask(self.env, question)
        self.asked.append((question, answer))
        return answer

    @property
    def now(self) -> dt.datetime:
        """The batch's moment (one per memo, so not a question)."""
        return self.env.now

    @property
    def zone(self) -> ZoneInfo:
        """The contact's zone."""
        return self._answer(("zone", ()))  # type: ignore[no-any-return]

    def holds(self, expr: c.ExprModel) -> bool:
        """A condition, for this contact."""
        return self._answer(("holds", (expr,)))  # type: ignore[no-any-return]

    def in_audience(self, expr: c.ExprModel) -> bool:
        """The audience or exclusion, for this contact."""
        return self._answer(("in_audience", (expr,)))  # type: ignore[no-any-return]

    def event_since(self, expr: c.ExprModel, since: dt.datetime) -> bool:
        """Whether the awaited event came, for this contact."""
        return self._answer(("event_since", (expr, since)))  # type: ignore[no-any-return]

    def send_gate(self, channel: str, template: str) -> SendGate:
        """The send checks, for this contact (reserving what they reserve)."""
        return self._answer(("send_gate", (channel, template)))  # type: ignore[no-any-return]

    def value(self, expr: c.ExprModel) -> Any:
        """A `set` value: passed on, and the path is not kept."""
        self.kept = False
        return self._answer(("value", (expr,)))

    def ab_winner(self, node: c.ABSplitNode) -> str | None:
        """An A/B verdict (may decide it): passed on, and the path is not kept."""
        self.kept = False
        return self._answer(("ab_winner", (node,)))  # type: ignore[no-any-return]

    def split_arrival(self, node: c.ABSplitNode | c.RandomSplitNode) -> int:
        """A split arrival (counts it): passed on, and the path is not kept."""
        self.kept = False
        return self._answer(("split_arrival", (node,)))  # type: ignore[no-any-return]


class CohortMemo:
    """The stepper's results within one step batch (one moment), shared by each cohort."""

    def __init__(self) -> None:
        """An empty memo: make one per batch, never share it between moments."""
        self._roots: dict[CohortKey, _Branch | _Leaf] = {}

    def advance(
        self,
        key: CohortKey,
        campaign: c.CompiledCampaign,
        state: dict[str, Any],
        contact_id: str,
        env: StepEnv,
    ) -> tuple[Advance, RawJSON]:
        """`stepper.advance` for the enrollment at `key` (version, node, state text), and the
        JSON of the state it returns; `state` must be the decoded state text of `key`.

        The result may be shared with other enrollments of the cohort: read it, never change it.
        """
        asked: list[tuple[Question, Any]] = []
        place = self._roots.get(key)
        while place is not None:
            if isinstance(place, _Leaf):
                return place.result, place.state
            answer = _ask(env, place.question)
            asked.append((place.question, answer))
            try:
                place = place.next.get(_answer_key(answer))
            except TypeError:  # an answer that is no key: this path is not kept
                place = None
        recording = _Recording(env, asked)
        result = advance(campaign, key[1], state, contact_id, recording)
        text = dumps_json(result.state)
        if recording.kept:
            # Later enrollments get the state as decoded from its JSON (as each used to
            # decode its own); the rest is the stepper's, which no caller changes.
            self._keep(key, recording.asked, _Leaf(replace(result, state=orjson.loads(text)), text))
        return result, RawJSON(text)

    def _keep(self, key: CohortKey, path: list[tuple[Question, Any]], leaf: _Leaf) -> None:
        """Add a path of answers and its result to the cohort's tree."""
        try:
            keys = [_answer_key(answer) for _, answer in path]
            for answer_key in keys:
                hash(answer_key)
        except TypeError:
            return
        if not path:
            self._roots.setdefault(key, leaf)
            return
        place = self._roots.get(key)
        if place is None:
            place = self._roots[key] = _Branch(path[0][0])
        for index, (question, _) in enumerate(path):
            if not isinstance(place, _Branch) or place.question != question:
                return  # cannot happen (the stepper is deterministic); keep nothing then
            if index == len(path) - 1:
                place.next.setdefault(keys[index], leaf)
                return
            following = place.next.get(keys[index])
            if following is None:
                following = place.next[keys[index]] = _Branch(path[index + 1][0])
            place = following
