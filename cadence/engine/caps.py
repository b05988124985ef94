"""The frequency caps a campaign's sends are under: its own `cap` settings, then the default.

A campaign's own `cap CHANNEL N per D` settings always hold. The tenant's default cap (the
business rule "at most 3 emails per week per contact", `symbols.DEFAULT_CAP`, unless the
engine is given another, or None) holds as well, except in a campaign that caps the default's
channel itself: its own `cap email N per D` replaces the default for its sends. Every cap, the
default too, counts the contact's sends of every campaign and goes through the same check
(`cadence.dispatch.caps.FrequencyCaps`, the Rust core or its Python twin).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cadence.dsl import compiled as c
from cadence.dsl.symbols import CapLimit


@dataclass(frozen=True, slots=True)
class CapsInForce:
    """The caps one campaign's sends are checked against, the default (if it holds) last."""

    rules: tuple[CapLimit, ...]
    # The position of the default cap in `rules`, or None when it does not hold.
    default_at: int | None = None

    def covers(self, channel: str) -> bool:
        """Whether any of the caps counts sends on `channel`."""
        return any(rule.channel in (None, channel) for rule in self.rules)

    def is_default(self, position: int) -> bool:
        """Whether the cap at `position` in `rules` is the default one."""
        return position == self.default_at

    def skip_reason(self, position: int) -> str:
        """Why a send the cap at `position` held back is skipped, as the send log records it."""
        cap = self.rules[position]
        if self.is_default(position):
            return f"default cap {cap.text()} reached"
        return f"cap {cap.channel or 'all channels'} {cap.count} reached"


NO_CAPS = CapsInForce(())


def caps_in_force(caps: Iterable[c.Cap], default: CapLimit | None) -> CapsInForce:
    """A campaign's own caps (its `settings.caps`), and `default` unless one of them has its
    channel."""
    own = tuple(CapLimit(cap.channel, cap.count, cap.per_seconds) for cap in caps)
    if default is None or any(cap.channel == default.channel for cap in own):
        return CapsInForce(own) if own else NO_CAPS
    return CapsInForce((*own, default), len(own))
