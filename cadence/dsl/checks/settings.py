"""Campaign settings: known values, ranges, dates, send windows and settings given twice.

A date-only `ends` includes that whole day (`ends 2027-03-15` runs through the 15th); a
date-only `starts` begins at midnight. `send_window` days are `weekdays`, `weekends`,
`daily` or day names; overnight windows such as 22:00-06:00 are allowed.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import cache

from cadence.addresses import sender_problem
from cadence.dsl import ast
from cadence.dsl.checks.context import CheckContext, moment_text, where
from cadence.dsl.checks.expressions import check_channel, check_expression
from cadence.dsl.parser import MAX_WHOLE_NUMBER
from cadence.dsl.symbols import CAMPAIGN_TYPES, DAY_GROUPS, DAY_NAMES, CampaignUnit
from cadence.errors import did_you_mean, offset_hint

APPROVAL_VALUES: tuple[str, ...] = ("required", "none")
PRIORITY_RANGE = (1, 10)


def check_day_names(ctx: CheckContext, days: tuple[str, ...], span: ast.Span) -> None:
    """Report every word of a day list that is neither a day name nor a day group."""
    for index, day in enumerate(days):
        if day not in DAY_NAMES and day not in DAY_GROUPS:
            occurrence = days[:index].count(day)
            ctx.error(
                ctx.word_span(span, day, occurrence),
                "E114",
                f"`{day}` is not a day",
                did_you_mean(day, [*DAY_NAMES, *DAY_GROUPS])
                or "use monday..sunday, weekdays, weekends or daily",
            )


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_timezone(name: str) -> bool:
    """True for a real IANA zone name such as `America/New_York`."""
    if name in _zones():
        return True
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def moment_start(moment: ast.DateLit | ast.DateTimeLit) -> dt.datetime:
    """The instant a `starts`/`at` moment begins: midnight for a bare date."""
    if isinstance(moment, ast.DateTimeLit):
        return moment.value
    return dt.datetime.combine(moment.value, dt.time())


def moment_end(moment: ast.DateLit | ast.DateTimeLit) -> dt.datetime:
    """The instant an `ends` moment stops: the end of the day for a bare date."""
    if isinstance(moment, ast.DateTimeLit):
        return moment.value
    return dt.datetime.combine(moment.value + dt.timedelta(days=1), dt.time())


def campaign_window(unit: CampaignUnit) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The first `starts` and `ends` of a campaign, as instants (None where not set)."""
    starts = next((s for s in unit.setting(ast.DateSetting) if s.key == "starts"), None)
    ends = next((s for s in unit.setting(ast.DateSetting) if s.key == "ends"), None)
    return (
        moment_start(starts.moment) if starts else None,
        moment_end(ends.moment) if ends else None,
    )


def _setting_key(setting: ast.Setting) -> str:
    """Settings with the same key conflict; caps and quiet hours are keyed per channel."""
    match setting:
        case ast.NameSetting(key=key) | ast.ExprSetting(key=key) | ast.StringSetting(key=key):
            return key
        case ast.NumberSetting(key=key) | ast.DateSetting(key=key):
            return key
        case ast.CapSetting(channel=channel):
            return f"cap {channel}" if channel else "cap"
        case ast.QuietHoursSetting(channel=channel):
            return f"quiet_hours {channel}" if channel else "quiet_hours"
        case ast.ChannelsSetting():
            return "channels"
        case ast.SendWindowSetting():
            return "send_window"
        case ast.TimezoneSetting():
            return "timezone"
        case ast.BudgetSetting():
            return "budget"
        case ast.CostSetting():
            return "cost"
        case ast.ReenterSetting():
            return "reenter"


def check_settings(ctx: CheckContext, unit: CampaignUnit) -> None:
    """Check every setting of one campaign."""
    seen: dict[str, ast.Setting] = {}
    for setting in unit.settings:
        key = _setting_key(setting)
        if key in seen:
            ctx.error(
                setting.span,
                "E213",
                f"`{key}` is set twice in the campaign `{unit.name}`",
                f"the first is at {where(seen[key].span)}; keep one",
            )
        else:
            seen[key] = setting
        _check_setting(ctx, setting)
    _check_dates(ctx, unit)
    _check_send_window_against_quiet_hours(ctx, unit)
    _check_costs(ctx, unit)


def _check_setting(ctx: CheckContext, setting: ast.Setting) -> None:
    match setting:
        case ast.NameSetting(key="type", value=value) if value not in CAMPAIGN_TYPES:
            ctx.error(
                setting.value_span,
                "E110",
                f"unknown campaign type `{value}`",
                did_you_mean(value, CAMPAIGN_TYPES) or f"types are {', '.join(CAMPAIGN_TYPES)}",
            )
        case ast.NameSetting(key="approval", value=value) if value not in APPROVAL_VALUES:
            ctx.error(
                setting.value_span,
                "E111",
                f"`approval {value}`: approval is `required` or `none`",
                did_you_mean(value, APPROVAL_VALUES)
                or "write `approval required` or `approval none`",
            )
        case ast.ExprSetting(expr=expr):
            check_expression(ctx, expr)
        case ast.StringSetting(key=key, value=value) if problem := sender_problem(value):
            ctx.error(
                ctx.tail_span(setting.span),
                "E222",
                f'`{key}`: "{value}" {problem}, so no email of the campaign could be sent',
                'write "Name <hello@example.com>" or "hello@example.com"',
            )
        case ast.ChannelsSetting(channels=channels):
            for index, channel in enumerate(channels):
                span = ctx.word_span(
                    setting.span, channel, channels[:index].count(channel) + (channel == "channels")
                )
                check_channel(ctx, channel, span)
        case ast.NumberSetting(key="priority", value=value):
            low, high = PRIORITY_RANGE
            if value != value.to_integral_value() or not low <= value <= high:
                ctx.error(
                    ctx.tail_span(setting.span),
                    "E212",
                    f"priority {value} is out of range",
                    f"use a whole number from {low} (lowest) to {high} (highest)",
                )
        case ast.NumberSetting(key="max_sends", value=value):
            if value != value.to_integral_value() or not 1 <= value <= MAX_WHOLE_NUMBER:
                ctx.error(
                    ctx.tail_span(setting.span),
                    "E212",
                    f"max_sends {value} is out of range",
                    f"use a whole number from 1 to {MAX_WHOLE_NUMBER:,}",
                )
        case ast.CapSetting(channel=channel, count=count):
            if channel is not None:
                check_channel(ctx, channel, ctx.word_span(setting.span, channel))
            if count < 1:
                ctx.error(
                    ctx.word_span(setting.span, str(count)),
                    "E212",
                    "a cap of 0 sends blocks the channel entirely",
                    "use at least 1, or leave the channel out of `channels`",
                )
        case ast.QuietHoursSetting(channel=channel, start=start, end=end):
            if channel is not None:
                check_channel(ctx, channel, ctx.word_span(setting.span, channel))
            if (start.hour, start.minute) == (end.hour, end.minute):
                ctx.error(
                    _range_span(setting.span, start, end),
                    "E212",
                    f"quiet hours {_hhmm(start)}-{_hhmm(end)} start when they end: they would "
                    "block either nothing or the whole day",
                    "give them a length, such as 21:00-08:00",
                )
        case ast.SendWindowSetting():
            _check_send_window(ctx, setting)
        case ast.TimezoneSetting(zone=zone) if not is_timezone(zone):
            ctx.error(
                ctx.tail_span(setting.span),
                "E112",
                f'"{zone}" is not a known timezone',
                offset_hint(zone)
                or did_you_mean(zone, _zones())
                or 'use an IANA name such as "America/New_York"',
            )
        case ast.BudgetSetting(amount=amount) if amount.amount <= 0:
            ctx.error(
                amount.span,
                "E212",
                f"a budget of {amount.amount} {amount.currency} allows no sends",
                "use an amount above 0",
            )
        case ast.CostSetting(items=items):
            priced: dict[str, ast.CostItem] = {}
            for item in items:
                check_channel(ctx, item.channel, ctx.word_span(item.span, item.channel))
                if item.channel in priced:
                    ctx.error(
                        ctx.word_span(item.span, item.channel),
                        "E213",
                        f"the cost of {item.channel} is given twice",
                        f"keep one of {priced[item.channel].amount.amount} and "
                        f"{item.amount.amount} {item.amount.currency}",
                    )
                priced.setdefault(item.channel, item)
        case _:
            pass


def _check_send_window(ctx: CheckContext, setting: ast.SendWindowSetting) -> None:
    start, end = setting.start, setting.end
    if (start.hour, start.minute) == (end.hour, end.minute):
        ctx.error(
            _range_span(setting.span, start, end),
            "E210",
            f"the send window {_hhmm(start)}-{_hhmm(end)} never opens: it starts when it ends",
            "give it a length, such as 09:00-18:00",
        )
    if setting.days:
        # Days follow the times, so search after the end time to skip `send_window` itself.
        after = ast.Span(
            setting.span.file,
            end.span.end_line,
            end.span.end_column,
            setting.span.end_line,
            setting.span.end_column,
        )
        check_day_names(ctx, setting.days, after)


def _range_span(span: ast.Span, start: ast.TimeLit, end: ast.TimeLit) -> ast.Span:
    """From the first time of a `HH:MM-HH:MM` range to the end of the second."""
    return ast.Span(
        span.file, start.span.line, start.span.column, end.span.end_line, end.span.end_column
    )


def _hhmm(time: ast.TimeLit) -> str:
    return f"{time.hour:02d}:{time.minute:02d}"


def _minutes(start: ast.TimeLit, end: ast.TimeLit) -> set[int]:
    first = start.hour * 60 + start.minute
    last = end.hour * 60 + end.minute
    if first <= last:
        return set(range(first, last))
    return set(range(first, 24 * 60)) | set(range(last))


def _check_send_window_against_quiet_hours(ctx: CheckContext, unit: CampaignUnit) -> None:
    window = next(unit.setting(ast.SendWindowSetting), None)
    if window is None:
        return
    open_minutes = _minutes(window.start, window.end)
    if not open_minutes:
        return
    # Read in two zones (one `local`, the other the campaign's), the two ranges cover each
    # other only for some contacts; the engine skips those sends (semantics.md).
    same_zone = [q for q in unit.setting(ast.QuietHoursSetting) if q.local == window.local]
    # Quiet hours without a channel hold every channel's sends, beside a channel's own.
    general = next((q for q in same_zone if q.channel is None), None)
    general_minutes = _minutes(general.start, general.end) if general is not None else set()
    for quiet in same_zone:
        minutes = _minutes(quiet.start, quiet.end)
        if open_minutes <= minutes:
            what = f"{quiet.channel}" if quiet.channel else "every channel"
            ctx.error(
                quiet.span,
                "E210",
                f"quiet hours {_hhmm(quiet.start)}-{_hhmm(quiet.end)} cover the whole send "
                f"window {_hhmm(window.start)}-{_hhmm(window.end)}, so {what} never sends",
                "shorten the quiet hours or move the send window",
            )
        elif general is not None and quiet.channel and open_minutes <= minutes | general_minutes:
            ctx.error(
                quiet.span,
                "E210",
                f"quiet hours {quiet.channel} {_hhmm(quiet.start)}-{_hhmm(quiet.end)} and "
                f"{_hhmm(general.start)}-{_hhmm(general.end)} (every channel) together cover "
                f"the whole send window {_hhmm(window.start)}-{_hhmm(window.end)}, so "
                f"{quiet.channel} never sends",
                "shorten the quiet hours or move the send window",
            )


def _check_dates(ctx: CheckContext, unit: CampaignUnit) -> None:
    starts_setting = next((s for s in unit.setting(ast.DateSetting) if s.key == "starts"), None)
    ends_setting = next((s for s in unit.setting(ast.DateSetting) if s.key == "ends"), None)
    starts, ends = campaign_window(unit)
    if starts_setting and ends_setting and starts is not None and ends is not None:
        if ends <= starts:
            ctx.error(
                ends_setting.moment.span,
                "E212",
                f"the campaign ends ({moment_text(ends_setting.moment)}) before it starts "
                f"({moment_text(starts_setting.moment)})",
                "swap the dates or fix the typo",
            )
            return
    for block in unit.triggers:
        trigger = block.trigger
        if not isinstance(trigger, ast.AtTrigger):
            continue
        at = moment_start(trigger.moment)
        text = moment_text(trigger.moment)
        if starts is not None and at < starts and starts_setting is not None:
            ctx.error(
                trigger.moment.span,
                "E212",
                f"`at {text}` is before the campaign starts ({moment_text(starts_setting.moment)})",
                "move the broadcast inside the starts..ends window",
            )
        if ends is not None and at >= ends and ends_setting is not None:
            ctx.error(
                trigger.moment.span,
                "E212",
                f"`at {text}` is after the campaign ends ({moment_text(ends_setting.moment)})",
                "move the broadcast inside the starts..ends window",
            )


def _check_costs(ctx: CheckContext, unit: CampaignUnit) -> None:
    budget = next(unit.setting(ast.BudgetSetting), None)
    if budget is None:
        return
    currency = budget.amount.currency
    for cost in unit.setting(ast.CostSetting):
        for item in cost.items:
            if item.amount.currency != currency:
                ctx.error(
                    item.amount.span,
                    "E212",
                    f"the {item.channel} cost is in {item.amount.currency} but the budget is in "
                    f"{currency}",
                    f"give costs in {currency}",
                )
