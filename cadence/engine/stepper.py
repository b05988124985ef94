"""Advance one enrollment through its campaign's step graph until it must wait or is done.

The stepper is the engine's semantics in one place and touches no database: it reads the
compiled graph, the enrollment's working state and an `StepEnv` (conditions, time zones, the
send gate), and returns where the enrollment stands now plus the effects to write (sends,
attribute changes, tags, notifications, enrollments elsewhere). The runtime writes the new
state and the effects in one transaction, so a crash either keeps a step or never saw it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from cadence.dsl import compiled as c
from cadence.engine import evaluate, timing

MAX_NODES_PER_ADVANCE = 1000
# `_send`'s answer when the send must wait at its step while the campaign is paused.
HELD: Literal["held"] = "held"
# Why a send is skipped whose send window lies inside quiet hours for its contact.
NO_SEND_MOMENT = "no moment in the send window outside quiet hours"

Status = Literal["active", "completed", "exited"]


class StepEnv(Protocol):
    """What the stepper asks of the world about one contact at one moment."""

    @property
    def now(self) -> dt.datetime:
        """The current instant (UTC)."""
        ...

    @property
    def zone(self) -> ZoneInfo:
        """The contact's time zone, with the campaign's fallback applied."""
        ...

    def holds(self, expr: c.ExprModel) -> bool:
        """Whether a condition holds for the contact now (unknown counts as false)."""
        ...

    def value(self, expr: c.ExprModel) -> Any:
        """The value of an expression for the contact now (for `set`)."""
        ...

    def in_audience(self, expr: c.ExprModel) -> bool:
        """Whether the campaign's `audience` (or `exclude`) holds, as read at a launch."""
        ...

    def event_since(self, expr: c.ExprModel, since: dt.datetime) -> bool:
        """Whether the event a `wait for` names has happened since `since`."""
        ...

    def send_gate(self, channel: str, template: str) -> SendGate:
        """Suppression, consent, caps and budget for a send of `template` on `channel` now
        (a confirmation template may go to a contact whose opt-in is pending)."""
        ...

    def ab_winner(self, node: c.ABSplitNode) -> str | None:
        """The winning variant of an A/B split, deciding it if the test is over."""
        ...

    def split_arrival(self, node: c.ABSplitNode | c.RandomSplitNode) -> int:
        """Count the contact in at a split: its 0-based place among the split's arrivals."""
        ...


@dataclass(frozen=True, slots=True)
class SendGate:
    """The dispatch checks' answer for one send: go, skip it, or pause the campaign.

    A skip drops the send (recorded with its reason) and the flow goes on; a pause makes
    neither the send nor a skip: the enrollment stays at the send step, due again at once,
    and the runtime pauses the campaign, so the step is tried again when it is resumed.
    """

    allowed: bool
    reason: str | None = None
    pause: bool = False

    @classmethod
    def allow(cls) -> SendGate:
        """The send may go."""
        return _ALLOWED

    @classmethod
    def skip(cls, reason: str) -> SendGate:
        """The send must not go (suppressed, no consent, capped)."""
        return cls(False, reason)

    @classmethod
    def pause_campaign(cls, reason: str) -> SendGate:
        """The send must wait at its step and the whole campaign pause (its budget is spent)."""
        return cls(False, reason, pause=True)


# Every step that sends is allowed by one gate answer: it is immutable, so one instance
# serves them all (a frozen dataclass costs about a microsecond to make).
_ALLOWED = SendGate(True)


@dataclass(frozen=True, slots=True)
class PlannedSend:
    """A send the step produced: the runtime puts it in the outbox under its idempotency key."""

    node: str
    channel: str
    template: str
    variant: str | None


@dataclass(slots=True)
class Effects:
    """Everything a run of steps asks the runtime to do besides moving the enrollment."""

    sends: list[PlannedSend] = field(default_factory=list)
    skipped_sends: list[tuple[str, str]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    tags_added: list[str] = field(default_factory=list)
    tags_removed: list[str] = field(default_factory=list)
    assign_agent: str | None = None
    # (step id, channel, URL) of each `notify`: the step names its notice, so two notices to
    # one URL along a journey are two.
    notifications: list[tuple[str, str, str]] = field(default_factory=list)
    enroll: list[str] = field(default_factory=list)
    # Why the campaign must pause: the enrollment waits at a send that may not go yet.
    pause_campaign: str | None = None


@dataclass(slots=True)
class Advance:
    """Where an enrollment stands after the stepper ran it."""

    node: str | None
    status: Status
    due_at: dt.datetime | None
    state: dict[str, Any]
    history: list[list[Any]]
    effects: Effects


# A batch steps many enrollments at one moment to the same next ones: each UTC instant's
# text is made once, not once per enrollment. (Only UTC ones: equal instants in two zones
# are equal keys but have different texts.)
_iso_utc = functools.lru_cache(maxsize=1024)(dt.datetime.isoformat)


def _iso(moment: dt.datetime) -> str:
    """`moment.isoformat()`, remembered for UTC instants."""
    return _iso_utc(moment) if moment.tzinfo is dt.UTC else moment.isoformat()


def bucket(*parts: str) -> float:
    """A deterministic number in [0, 100) from its inputs: same contact, same split, same arm."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def advance(
    campaign: c.CompiledCampaign,
    node_id: str | None,
    state: dict[str, Any],
    contact_id: str,
    env: StepEnv,
) -> Advance:
    """Run the enrollment from `node_id` until a wait, the end, or an exit.

    A wait that would outlast the campaign's `ends` is due at it instead: the journey ends
    with the campaign ("campaign ended"), which then completes, rather than whenever the
    wait would have ended (nothing could be sent by then).
    """
    result = _advance(campaign, node_id, state, contact_id, env)
    if result.due_at is not None:
        result.due_at = _by_ends(campaign, result.due_at)
    return result


def _by_ends(campaign: c.CompiledCampaign, due: dt.datetime) -> dt.datetime:
    """`due`, or the campaign's `ends` when that comes first: nothing of it runs later."""
    ends = campaign.settings.ends
    if ends is None:
        return due
    return min(due, timing.campaign_ends_instant(ends, timing.campaign_zone(campaign)))


def _advance(
    campaign: c.CompiledCampaign,
    node_id: str | None,
    state: dict[str, Any],
    contact_id: str,
    env: StepEnv,
) -> Advance:
    nodes = campaign.node_map
    state = dict(state)
    history: list[list[Any]] = []
    effects = Effects()
    now = env.now
    stamp = _iso(now)

    def finish(status: Status, node: str | None, reason: str) -> Advance:
        history.append([stamp, node, reason])
        state.pop("wake_at", None)
        return Advance(node, status, None, state, history, effects)

    def sleep(node: str, until: dt.datetime, reason: str) -> Advance:
        state["wake_at"] = _iso(until)
        history.append([stamp, node, reason])
        return Advance(node, "active", until, state, history, effects)

    settings = campaign.settings
    if settings.goal is not None and env.holds(settings.goal):
        return finish("exited", node_id, "goal reached")
    # `starts` and `ends` are one moment for the whole campaign, read in its timezone.
    if timing.campaign_ended(campaign, now):
        return finish("exited", node_id, "campaign ended")
    if settings.starts is not None:
        starts = timing.campaign_starts_instant(settings.starts, timing.campaign_zone(campaign))
        if now < starts:
            return sleep(node_id or "end", starts, "campaign not started")

    # A run booked ahead (`at`, `every`) never starts before its time, whatever woke it.
    not_before = state.get("not_before")
    if not_before is not None:
        booked = dt.datetime.fromisoformat(not_before)
        if now < booked:
            return Advance(node_id, "active", booked, state, history, effects)
        state.pop("not_before")
        # `at` and `every` run for the audience as it is at that moment: a contact who has
        # left it (or is now excluded) is not sent this run; the next one asks again.
        if (settings.audience is not None and not env.in_audience(settings.audience)) or (
            settings.exclude is not None and env.in_audience(settings.exclude)
        ):
            return finish("exited", node_id, "not in the audience")

    # An enrollment woken early (a goal check, an event) goes back to sleep if its wait is
    # not over; `wait for` is the exception, since the event it waits for may be the cause.
    wake_at = state.get("wake_at")
    current = node_id
    if wake_at is not None and current is not None:
        until = dt.datetime.fromisoformat(wake_at)
        node = nodes.get(current)
        if now < until and not isinstance(node, c.WaitForNode | c.ABSplitNode):
            return Advance(current, "active", until, state, history, effects)

    # Whether a step of this run changed the contact (`set`, `tag`, `assign agent`). What the
    # environment knows was read before the run, so the next step that reads the contact
    # waits for the change to be written: the run stops there, due again at once.
    changed = False
    for _ in range(MAX_NODES_PER_ADVANCE):
        if current is None:
            return finish("completed", None, "completed")
        node = nodes.get(current)
        if node is None:
            return finish("exited", current, f"node {current} not in this version")
        if changed and _reads_contact(node):
            history.append([stamp, node.id, "contact changed: read again"])
            return Advance(node.id, "active", now, state, history, effects)
        match node:
            case c.EndNode():
                return finish("completed", node.id, "completed")
            case c.ExitNode(reason=reason):
                return finish("exited", node.id, reason or "exit")
            case c.SendNode():
                outcome = _send(node, campaign, state, contact_id, env, effects, history, stamp)
                if isinstance(outcome, dt.datetime):
                    return sleep(node.id, outcome, "outside send window")
                if outcome is HELD:
                    # Due at once, but the runtime pauses the campaign before it can run.
                    return Advance(node.id, "active", now, state, history, effects)
                current = node.next
            case c.WaitNode(seconds=seconds):
                woke = _arrived(state, node.id)
                if woke is None:
                    until = now + dt.timedelta(seconds=seconds)
                    state["arrived"] = [node.id, stamp, _iso(until)]
                    return sleep(node.id, until, f"wait {seconds}s")
                if now < woke:
                    return sleep(node.id, woke, "still waiting")
                state.pop("arrived", None)
                current = node.next
            case c.WaitUntilNode(time=time, local=local):
                woke = _arrived(state, node.id)
                if woke is None:
                    zone = env.zone if local else timing.campaign_zone(campaign)
                    until = timing.next_time_of_day(now, time, zone)
                    if until > now:
                        state["arrived"] = [node.id, stamp, until.isoformat()]
                        return sleep(node.id, until, f"wait until {time}")
                    woke = now
                if now < woke:
                    return sleep(node.id, woke, "still waiting")
                state.pop("arrived", None)
                current = node.next
            case c.WaitForNode(event=event, timeout_seconds=timeout):
                arrived = state.get("arrived")
                if (not arrived or arrived[0] != node.id) and env.event_since(event, now):
                    # A condition that already holds (the click came during an earlier
                    # wait) needs no waiting; a named event must still come after now.
                    history.append([stamp, node.id, "already met"])
                    current = node.next
                    continue
                if not arrived or arrived[0] != node.id:
                    until = now + dt.timedelta(seconds=timeout)
                    state["arrived"] = [node.id, stamp, until.isoformat()]
                    state["waiting_for"] = event.model_dump(mode="json")
                    return sleep(node.id, until, f"wait for event up to {timeout}s")
                since = dt.datetime.fromisoformat(arrived[1])
                deadline = dt.datetime.fromisoformat(arrived[2])
                if env.event_since(event, since):
                    history.append([stamp, node.id, "event arrived"])
                elif now < deadline:
                    return sleep(node.id, deadline, "still waiting for event")
                else:
                    history.append([stamp, node.id, "timed out"])
                state.pop("arrived", None)
                state.pop("waiting_for", None)
                current = node.next
            case c.BranchNode(conditions=conditions, otherwise=otherwise):
                current = next((arm.to for arm in conditions if env.holds(arm.when)), otherwise)
                history.append([stamp, node.id, f"-> {current}"])
            case c.RandomSplitNode(branches=branches):
                chosen = branches[split_branch(campaign.name, node, env.split_arrival(node))]
                state.setdefault("variants", {})[node.id] = chosen.name
                history.append([stamp, node.id, f"split -> {chosen.name}"])
                current = chosen.to
            case c.ABSplitNode():
                chosen_to = _ab_split(node, campaign, state, env, history, stamp)
                if isinstance(chosen_to, dt.datetime):
                    return sleep(node.id, chosen_to, "held for the A/B winner")
                current = chosen_to
            case c.SetNode(attribute=attribute, value=expr):
                stored = evaluate.to_plain(env.value(expr))
                name = attribute.removeprefix("contact.")
                effects.attributes[name] = stored
                if name == "tags":
                    # The whole list is set: the tag steps before it in this run are undone,
                    # as the later of two steps wins (those after it are applied after it).
                    effects.tags_added.clear()
                    effects.tags_removed.clear()
                changed = True
                current = node.next
            case c.TagNode(action=action, tag=tag):
                # The later of two steps on one tag wins: a tag is in at most one list.
                added, removed = effects.tags_added, effects.tags_removed
                if action != "add":
                    added, removed = removed, added
                if tag in removed:
                    removed.remove(tag)
                if tag not in added:
                    added.append(tag)
                changed = True
                current = node.next
            case c.AssignAgentNode(strategy=strategy):
                effects.assign_agent = strategy
                changed = True
                current = node.next
            case c.NotifyNode(channel=channel, target=target):
                effects.notifications.append((node.id, channel, target))
                current = node.next
            case c.EnrollNode(campaign=other):
                effects.enroll.append(other)
                current = node.next
    return finish("exited", current, "step limit per run exceeded")


def _reads_contact(node: c.NodeModel) -> bool:
    """Whether stepping `node` reads the contact: a condition, a value, a send's checks, a zone."""
    match node:
        case c.BranchNode() | c.SendNode() | c.WaitForNode():
            return True
        case c.SetNode(value=value):
            return not isinstance(value, _LITERALS)
        case c.WaitUntilNode(local=local):
            return local
    return False


# `set` values that read nothing about the contact.
_LITERALS = (
    c.NumberExpr, c.StringExpr, c.BoolExpr, c.DurationExpr, c.TimeExpr, c.DateExpr,
    c.DateTimeExpr, c.PercentExpr, c.MoneyExpr,
)  # fmt: skip


def _arrived(state: dict[str, Any], node_id: str) -> dt.datetime | None:
    """When the enrollment's wait at `node_id` is over, if it already started waiting there."""
    arrived = state.get("arrived")
    if arrived and arrived[0] == node_id:
        return dt.datetime.fromisoformat(arrived[2])
    return None


def _send(
    node: c.SendNode,
    campaign: c.CompiledCampaign,
    state: dict[str, Any],
    contact_id: str,
    env: StepEnv,
    effects: Effects,
    history: list[list[Any]],
    stamp: str,
) -> dt.datetime | Literal["held"] | None:
    """Plan or skip one send; or when the send window / quiet hours next allow it; or HELD."""
    settings = campaign.settings
    try:
        allowed_at = _next_allowed(env, node.channel, campaign)
    except timing.NoSendMoment:
        # Waiting would be for ever: the contact goes on, as after any send a gate stops.
        effects.skipped_sends.append((node.id, NO_SEND_MOMENT))
        history.append([stamp, node.id, f"skipped: {NO_SEND_MOMENT}"])
        return None
    if allowed_at > env.now:
        return allowed_at
    sent = int(state.get("sends", 0))
    if sent >= settings.max_sends:
        effects.skipped_sends.append((node.id, "max_sends reached"))
        history.append([stamp, node.id, "skipped: max_sends reached"])
        return None
    gate = env.send_gate(node.channel, node.template)
    if gate.pause:
        effects.pause_campaign = gate.reason or "paused"
        history.append([stamp, node.id, f"held: {effects.pause_campaign}; campaign paused"])
        return HELD
    if not gate.allowed:
        reason = gate.reason or "not allowed"
        effects.skipped_sends.append((node.id, reason))
        history.append([stamp, node.id, f"skipped: {reason}"])
        return None
    variant = _current_variant(state)
    effects.sends.append(PlannedSend(node.id, node.channel, node.template, variant))
    state["sends"] = sent + 1
    history.append([stamp, node.id, f"send {node.channel} {node.template}"])
    return None


def _next_allowed(env: StepEnv, channel: str, campaign: c.CompiledCampaign) -> dt.datetime:
    """The first instant from now inside the send window and outside quiet hours.

    Raises `timing.NoSendMoment` when there is none for this contact.
    """
    settings = campaign.settings
    if settings.send_window is None and not settings.quiet_hours:
        return env.now  # without either, the contact's zone need not even be looked up
    return _send_moment(env.now, channel, campaign, env.zone)


def _send_moment(
    now: dt.datetime, channel: str, campaign: c.CompiledCampaign, zone: ZoneInfo
) -> dt.datetime:
    """The first instant from `now` a send on `channel` may go out to a contact in `zone`."""
    settings = campaign.settings
    quiet = [q for q in settings.quiet_hours if q.channel in (None, channel)]
    return timing.next_send_instant(
        now, settings.send_window, quiet, zone, timing.campaign_zone(campaign)
    )


def rezone(
    campaign: c.CompiledCampaign,
    node_id: str | None,
    state: dict[str, Any],
    old_zone: ZoneInfo,
    new_zone: ZoneInfo,
    now: dt.datetime,
) -> tuple[dt.datetime, dict[str, Any]] | None:
    """When a sleeping enrollment is due once its contact moved to another timezone.

    What was booked from the contact's clock is an instant read in the old zone: a run of
    `at ... local` or `every ... local` (the same wall time, in the new zone; at once if that
    has passed), `wait until HH:MM local` (the next HH:MM in the new zone) and a send held
    for the send window or quiet hours (their next opening from now); never after the
    campaign's `ends`, as any wait. Returns the new due time and state, or None when the
    enrollment sleeps on nothing read in the contact's zone.
    """
    state = dict(state)
    booked = state.get("not_before")
    if booked is not None:  # a run booked ahead, not started
        trigger = next((t for t in campaign.triggers if t.id == state.get("trigger")), None)
        if isinstance(trigger, c.AtTriggerModel) and trigger.local:
            instant = timing.at_trigger_instant(trigger.at, True, new_zone)
        elif isinstance(trigger, c.EveryTriggerModel) and trigger.local:
            wall = dt.datetime.fromisoformat(booked).astimezone(old_zone).replace(tzinfo=None)
            instant = timing.wall_to_utc(wall, new_zone)
        else:
            return None
        instant = max(instant, now)
        state["not_before"] = _iso(instant)
        return _by_ends(campaign, instant), state
    if state.get("wake_at") is None or node_id is None:
        return None
    match campaign.node_map.get(node_id):
        case c.WaitUntilNode(time=time, local=True):
            arrived = state.get("arrived")
            if not arrived or arrived[0] != node_id:
                return None
            instant = timing.next_time_of_day(now, time, new_zone)
            state["arrived"] = [arrived[0], arrived[1], _iso(instant)]
        case c.SendNode(channel=channel) if campaign.settings.send_window or (
            campaign.settings.quiet_hours
        ):
            try:
                instant = _send_moment(now, channel, campaign, new_zone)
            except timing.NoSendMoment:
                instant = now  # the step itself skips the send and says why
        case _:
            return None
    state["wake_at"] = _iso(instant)
    return _by_ends(campaign, instant), state


def _ab_split(
    node: c.ABSplitNode,
    campaign: c.CompiledCampaign,
    state: dict[str, Any],
    env: StepEnv,
    history: list[list[Any]],
    stamp: str,
) -> str | dt.datetime:
    """The arm to follow, or the instant to wake a held contact to ask again."""
    variants = state.setdefault("variants", {})
    if node.id in variants:
        chosen = next(v for v in node.variants if v.name == variants[node.id])
        return chosen.to
    winner = env.ab_winner(node)
    if winner is not None:
        variants[node.id] = winner
        state.pop("arrived", None)
        history.append([stamp, node.id, f"winner -> {winner}"])
        return next(v.to for v in node.variants if v.name == winner)
    arrived = state.get("arrived")
    if arrived and arrived[0] == node.id:
        # Held, and the test is over for this contact, but no winner could be named yet.
        return max(dt.datetime.fromisoformat(arrived[2]), env.now + dt.timedelta(hours=1))
    slot = ab_slot(campaign.name, node, env.split_arrival(node))
    if slot is not None:
        chosen = node.variants[slot]
        variants[node.id] = chosen.name
        history.append([stamp, node.id, f"test -> {chosen.name}"])
        return chosen.to
    until = env.now + dt.timedelta(seconds=node.after_seconds)
    state["arrived"] = [node.id, stamp, until.isoformat()]
    return until


def ab_slot(campaign: str, node: c.ABSplitNode, place: int) -> int | None:
    """The variant (index) for the arrival at `place` (0-based) of an A/B split, or None: held.

    Systematic sampling, so the test share is exact, not a draw that holds on average: of
    the first N arrivals, floor(N x share + offset) are in the test, the offset (in [0, 1),
    fixed per split) saying where in each stretch the test places fall. The test arrivals go
    round the variants, each round in its own shuffled order, so each variant gets an equal
    part (one more or less) of the test, and no variant always gets the earlier arrivals.
    """
    share = Fraction(node.test_share) / 100
    offset = Fraction(bucket(campaign, node.id)) / 100
    before = math.floor(place * share + offset)
    if math.floor((place + 1) * share + offset) == before:
        return None
    cycle, position = divmod(before, len(node.variants))
    order = list(range(len(node.variants)))
    random.Random(f"{campaign}\x1f{node.id}\x1f{cycle}").shuffle(order)
    return order[position]


def split_branch(campaign: str, node: c.RandomSplitNode, place: int) -> int:
    """The branch (index) of a random split for the arrival at `place` (0-based).

    The first branch takes its share of the arrivals by systematic sampling (as `ab_slot`
    does), the second its share of those left, and so on, each with its own offset fixed
    per split: of N arrivals each branch gets its share of N, give or take one or two,
    where a draw per contact would only hold on average.
    """
    remaining = Fraction(1)
    for index, branch in enumerate(node.branches[:-1]):
        share = Fraction(branch.share or 0) / 100
        if share >= remaining:
            return index
        offset = Fraction(bucket(campaign, node.id, str(index))) / 100
        before = math.floor(place * (share / remaining) + offset)
        if math.floor((place + 1) * (share / remaining) + offset) > before:
            return index
        place -= before  # this arrival's place among those the branch did not take
        remaining -= share
    return len(node.branches) - 1


def _current_variant(state: dict[str, Any]) -> str | None:
    """The last split arm the contact went down, recorded on its sends for A/B results."""
    variants = state.get("variants") or {}
    if not variants:
        return None
    return str(list(variants.values())[-1])
