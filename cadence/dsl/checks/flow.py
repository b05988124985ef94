"""Checks that follow every path through a campaign's steps: send counts, caps, waits, loops.

Each analysis pushes a set of abstract states through the steps: an `if` or a split runs
each branch from the same states and merges what comes out, an `exit` ends the path. Time
is counted as the least a path can take: `wait D` adds D, while `wait until`, `wait for ...
up to` and the A/B test phase may resume at once and add nothing. Paths are deduplicated
by state and bounded, so a campaign with many branches cannot make the check slow.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from cadence.dsl import ast
from cadence.dsl.checks.context import CheckContext, moment_text
from cadence.dsl.checks.settings import campaign_window, moment_start
from cadence.dsl.symbols import DEFAULT_CAP, DEFAULT_MAX_SENDS, CampaignUnit, CapLimit, Symbols

S = TypeVar("S", bound=Hashable)
STATE_LIMIT = 4096


def format_duration(seconds: int) -> str:
    """`1d12h` for 129600: durations in messages look the way they are written."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


class PathAnalysis(Generic[S]):
    """A forward analysis over every path of a step block; subclasses say what a step does."""

    def transfer(self, step: ast.Step, states: frozenset[S]) -> frozenset[S]:
        """The states after a step that does not branch; unchanged by default."""
        return states

    def run(self, steps: Iterable[ast.Step], states: frozenset[S]) -> frozenset[S]:
        """The states at the end of a block, given those at its start (empty: path ended)."""
        for step in steps:
            if not states:
                break
            match step:
                case ast.Exit():
                    return frozenset()
                case ast.If(branches=branches, else_steps=else_steps):
                    out: set[S] = set()
                    for branch in branches:
                        out |= self.run(branch.steps, states)
                    out |= self.run(else_steps, states) if else_steps is not None else states
                    states = _bounded(out)
                case (
                    ast.ABSplit(branches=split_branches) | ast.RandomSplit(branches=split_branches)
                ):
                    out = set()
                    for split_branch in split_branches:
                        out |= self.run(split_branch.steps, states)
                    states = _bounded(out)
                case _:
                    states = _bounded(self.transfer(step, states))
        return states


def _bounded(states: Iterable[S]) -> frozenset[S]:
    unique = set(states)
    if len(unique) <= STATE_LIMIT:
        return frozenset(unique)
    return frozenset(sorted(unique, key=repr)[:STATE_LIMIT])


# ---------------------------------------------------------------------------- send limit


class _SendCount(PathAnalysis[int]):
    """States: sends so far on a path. Reports the first send past the campaign's limit."""

    def __init__(self, ctx: CheckContext, unit: CampaignUnit, limit: int, explicit: bool) -> None:
        self.ctx = ctx
        self.unit = unit
        self.limit = limit
        self.explicit = explicit
        self.reported = False

    def transfer(self, step: ast.Step, states: frozenset[int]) -> frozenset[int]:
        if not isinstance(step, ast.Send):
            return states
        if not self.reported and max(states) >= self.limit:
            self.reported = True
            source = "its `max_sends`" if self.explicit else "the default limit"
            self.ctx.error(
                step.span,
                "E209",
                f"this is send {max(states) + 1} on one path through `{self.unit.name}`, "
                f"more than {source} of {self.limit}",
                "split the campaign, or raise the limit with `max_sends N`"
                if not self.explicit
                else "split the campaign, or raise `max_sends`",
            )
        return frozenset(s + 1 for s in states)


def _send_limit(unit: CampaignUnit) -> tuple[int, bool]:
    setting = next((s for s in unit.setting(ast.NumberSetting) if s.key == "max_sends"), None)
    if setting is None or setting.value < 1 or setting.value != setting.value.to_integral_value():
        return DEFAULT_MAX_SENDS, False
    return int(setting.value), True


# ---------------------------------------------------------------------------- frequency caps


class _CapPressure(PathAnalysis[tuple[int, ...]]):
    """States: ages (seconds) of the recent sends the cap counts. Warns at a send it holds.

    `which` names the cap in the warning ("the cap", "the default cap ..."), `hint` says how
    to make room.
    """

    def __init__(
        self, ctx: CheckContext, cap: CapLimit, which: str, hint: str, warned: set[ast.Span]
    ) -> None:
        self.ctx = ctx
        self.cap = cap
        self.which = which
        self.hint = hint
        self.warned = warned

    def transfer(
        self, step: ast.Step, states: frozenset[tuple[int, ...]]
    ) -> frozenset[tuple[int, ...]]:
        cap = self.cap
        per = cap.per_seconds
        if isinstance(step, ast.Wait):
            wait = step.duration.seconds
            return frozenset(tuple(a + wait for a in ages if a + wait < per) for ages in states)
        if not isinstance(step, ast.Send) or (cap.channel not in (None, step.channel)):
            return states
        if step.span not in self.warned and any(len(ages) >= cap.count for ages in states):
            self.warned.add(step.span)
            what = f"{cap.channel} sends" if cap.channel else "sends"
            self.ctx.warning(
                step.span,
                "W303",
                f"on one path this is {cap.count + 1} {what} within "
                f"{format_duration(per)}, but {self.which} allows {cap.count}: it will be skipped",
                self.hint,
            )
        # A send the cap holds back is skipped: it is not one of the sends the cap counts.
        return frozenset(ages if len(ages) >= cap.count else (0, *ages) for ages in states)


# ---------------------------------------------------------------------------- campaign end


class _Elapsed(PathAnalysis[int]):
    """States: the least time since the campaign's start. Warns at a wait that crosses its end."""

    def __init__(self, ctx: CheckContext, window: int, ends: str, warned: set[ast.Span]) -> None:
        self.ctx = ctx
        self.window = window
        self.ends = ends
        self.warned = warned

    def transfer(self, step: ast.Step, states: frozenset[int]) -> frozenset[int]:
        if not isinstance(step, ast.Wait):
            return states
        wait = step.duration.seconds
        crossing = [s for s in states if s <= self.window < s + wait]
        if crossing and step.span not in self.warned:
            self.warned.add(step.span)
            self.ctx.warning(
                step.span,
                "W302",
                f"this wait ends at least "
                f"{format_duration(min(crossing) + wait - self.window)} after the campaign's "
                f"end ({self.ends}); the steps after it never run",
                "shorten the wait or move `ends` later",
            )
        return frozenset(s + wait for s in states)


def _check_campaign_end(ctx: CheckContext, unit: CampaignUnit) -> None:
    starts, ends = campaign_window(unit)
    if ends is None:
        return
    ends_setting = next(s for s in unit.setting(ast.DateSetting) if s.key == "ends")
    ends_text = moment_text(ends_setting.moment)
    warned: set[ast.Span] = set()
    for block in unit.triggers:
        trigger = block.trigger
        at = moment_start(trigger.moment) if isinstance(trigger, ast.AtTrigger) else None
        origin = starts if starts is not None else at
        if origin is None or ends <= origin:
            continue
        window = int((ends - origin).total_seconds())
        base = int((at - origin).total_seconds()) if at is not None else 0
        if base < 0 or base > window:
            continue
        _Elapsed(ctx, window, ends_text, warned).run(block.steps, frozenset({base}))


# ---------------------------------------------------------------------------- send loops


class _Waitless(PathAnalysis[bool]):
    """States: whether a path has waited yet. Collects sends and enrolls reached without one."""

    def __init__(self) -> None:
        self.sends: list[ast.Send] = []
        self.enrolls: list[ast.Enroll] = []

    def transfer(self, step: ast.Step, states: frozenset[bool]) -> frozenset[bool]:
        if isinstance(step, ast.Wait | ast.WaitUntil | ast.WaitFor):
            return frozenset({True})
        if False in states:
            if isinstance(step, ast.Send):
                self.sends.append(step)
            elif isinstance(step, ast.Enroll):
                self.enrolls.append(step)
        return states


def check_send_loops(ctx: CheckContext, symbols: Symbols) -> None:
    """A campaign that enrolls itself, or a cycle of enrolls, that can send with no wait."""
    sends: dict[str, list[ast.Send]] = {}
    edges: dict[str, list[ast.Enroll]] = {}
    for name, unit in symbols.campaigns.items():
        analysis = _Waitless()
        for block in unit.triggers:
            analysis.run(block.steps, frozenset({False}))
        sends[name] = analysis.sends
        edges[name] = [e for e in analysis.enrolls if e.campaign in symbols.campaigns]

    def reachable(start: str) -> set[str]:
        seen = {start}
        todo = [start]
        while todo:
            for enroll in edges[todo.pop()]:
                if enroll.campaign not in seen:
                    seen.add(enroll.campaign)
                    todo.append(enroll.campaign)
        return seen

    reach = {name: reachable(name) for name in symbols.campaigns}
    for name, enrolls in edges.items():
        for enroll in enrolls:
            target = enroll.campaign
            if name not in reach[target]:
                continue
            loop = sorted(c for c in reach[target] if name in reach[c])
            sender = next((c for c in loop if sends[c]), None)
            if sender is None:
                continue
            send = sends[sender][0]
            path = (
                f"`{name}` enrolls itself"
                if target == name
                else ("the campaigns " + ", ".join(f"`{c}`" for c in loop) + " enroll each other")
            )
            ctx.error(
                ctx.word_span(enroll.span, target, int(target == "enroll")),
                "E208",
                f"{path} with no wait in between, so `send {send.channel} {send.template}` "
                f"(line {send.span.line}) can repeat without end",
                "put a `wait` before the `enroll`, or remove the loop",
            )


# ---------------------------------------------------------------------------- entry point


def check_paths_through(ctx: CheckContext, unit: CampaignUnit) -> None:
    """Run the per-campaign path analyses: send limit, caps and the campaign's end."""
    limit, explicit = _send_limit(unit)
    counter = _SendCount(ctx, unit, limit, explicit)
    for block in unit.triggers:
        counter.run(block.steps, frozenset({0}))
    warned: set[ast.Span] = set()
    caps = list(unit.setting(ast.CapSetting))
    pressures = [
        (
            CapLimit(cap.channel, cap.count, cap.per.seconds),
            "the cap",
            f"the cap is at line {cap.span.line}; space the sends out with longer waits "
            "or raise the cap",
        )
        for cap in caps
        if cap.count >= 1
    ]
    # Without a cap of its own on the default's channel, the campaign sends under the
    # default (`DEFAULT_CAP`, the engine's unless it is given another).
    if all(cap.channel != DEFAULT_CAP.channel for cap in caps):
        pressures.append(
            (
                DEFAULT_CAP,
                f"the default cap ({DEFAULT_CAP.text()}, every campaign's sends counted)",
                f"the campaign sets no `cap {DEFAULT_CAP.channel}`, so the default holds; "
                "space the sends out with longer waits, or give the campaign "
                f"`cap {DEFAULT_CAP.channel} N per DURATION` of its own, which replaces it",
            )
        )
    for cap, which, hint in pressures:
        for block in unit.triggers:
            _CapPressure(ctx, cap, which, hint, warned).run(block.steps, frozenset({()}))
    _check_campaign_end(ctx, unit)
