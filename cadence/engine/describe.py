"""Campaign state in words and numbers people read, shared by the CLI's tables and the dashboard.

One wording for a paused campaign, an A/B test's rates, a count with its rate and an amount
of money, wherever they are shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from cadence.engine.analytics import Metrics

# The counts a performance table shows after `sent`, each with its rate: every count the
# report keeps, spam complaints too (what mailbox providers judge a sender by).
RATED_COUNTS = ("delivered", "opened", "clicked", "replied", "converted", "unsubscribed",
                "complained", "bounced")  # fmt: skip
# The money columns a performance table ends with.
MONEY_COLUMNS = ("cost", "revenue", "cost/conversion", "ROI")
# The columns of a table of decided A/B tests (`cadence status`, the dry-run, the
# dashboard); a variant's rate is engaged over delivered, as `ab_rate_lines` shows it.
AB_COLUMNS = ("campaign", "node", "winner", "rates (95% interval, engaged/delivered)", "verdict")
# Enrollment states a campaign table shows only when a campaign has some: after `cancel`
# every other count reads 0, and a failed step is rare.
RARE_STATES = ("cancelled", "failed")


def rare_states(campaigns: Iterable[Mapping[str, Any]]) -> list[str]:
    """The `RARE_STATES` some of these `Engine.status()` rows have enrollments in."""
    rows = list(campaigns)
    return [state for state in RARE_STATES if any(row["enrollments"].get(state) for row in rows)]


def most_first(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Labels with their counts (why sends were not sent ...), the most first, ties by label:
    one order for the dry-run's totals and the report, whatever order the rows came in."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


# A provider's refusal of the account (`adapters.base.ACCOUNT_REFUSALS`), in words: what
# happened, and what the operator does about it.
ACCOUNT_PAUSES = {
    "no_credits": (
        "the {provider} account has no credit left for {channel}",
        "top the account up at {provider}, then `cadence resume`",
    ),
    "key_refused": (
        "{provider} refused Cadence's API key or login for {channel}",
        "fix the key or password (or the account's access) at {provider} and in Cadence's"
        " settings, restart the service, then `cadence resume`",
    ),
}


def pause_text(details: Mapping[str, Any]) -> str:
    """Why a campaign is paused, from its pause audit line, and what lets it go on."""
    if details.get("reason") == "budget":
        currency = str(details.get("currency") or "")
        # The audit line keeps the amounts exact, as stored ("0.9"); shown as the cost
        # column shows money ("0.90 USD").
        spent, budget = (_stored_amount(details.get(key)) for key in ("spent", "budget"))
        # Pauses recorded before `next` was kept say only what was spent.
        next_cost = details.get("next")
        following = (
            f"; the next message would cost {amount_text(_stored_amount(next_cost), currency)}"
            if next_cost is not None
            else ""
        )
        return (
            f"budget spent ({amount_text(spent, '')} of {amount_text(budget, currency)}"
            f"{following}); raise the budget, `cadence deploy --migrate`, then `cadence resume`"
        )
    account = ACCOUNT_PAUSES.get(str(details.get("reason")))
    if account is not None:
        words = {"provider": details.get("provider") or "the provider",
                 "channel": details.get("channel")}  # fmt: skip
        what, remedy = (part.format(**words) for part in account)
        # A late delivery report reopened a completed campaign: its message has not gone.
        after = ", after it had completed" if details.get("reopened") == "completed" else ""
        return f"{what} ({details.get('error')}){after}; its sends wait, none is lost: {remedy}"
    return "paused on request; resume to continue"


def ab_rate_lines(details: Mapping[str, Any]) -> list[str]:
    """One line per variant: `a 10.0% [5.5-17.4%] 10/100`, engaged over delivered as the
    rate is (over sent on entries from before it was), `a - 0/0` when nothing was
    delivered, or the bare rate on older entries."""
    variants = details.get("variants")
    if not isinstance(variants, dict):
        return [f"{name} {rate}" for name, rate in details.get("rates", {}).items()]
    lines = []
    for name, v in variants.items():
        over = v.get("delivered", v["sent"])
        # Nothing delivered is no rate (`-`, as the performance tables show it), not 0%.
        line = f"{name} {rate_text(v['rate'] if over else None)}"
        if v.get("ci_low") is not None and v.get("ci_high") is not None:
            line += f" [{v['ci_low']:.1%}-{v['ci_high']:.1%}]"
        lines.append(f"{line} {v['engaged']}/{over}")
    return lines


def count_text(metrics: Metrics, name: str) -> str:
    """A count with its rate: `1,234 (12.3%)`, or the bare count when nothing is under it."""
    rate = metrics.rate(name)
    share = f" ({rate_text(rate)})" if rate is not None else ""
    return f"{getattr(metrics, name):,}{share}"


def rate_text(rate: float | None) -> str:
    """A rate as people read it: `12.3%`; under 1% (conversions) two decimals; `-` for none.

    Shown as 0% or 100% only when it is: one bounce in 50,000 sends is `<0.01%`, not
    `0.00%`, and the 49,999 others delivered `>99.9%`, not `100.0%`.
    """
    if rate is None:
        return "-"
    digits = 2 if 0 < rate < 0.01 else 1
    shown = f"{rate:.{digits}%}"
    if rate > 0 and float(shown[:-1]) == 0:
        return f"<{10**-digits:.{digits}f}%"
    if rate < 1 and float(shown[:-1]) == 100:
        return f">{100 - 10**-digits:.{digits}f}%"
    return shown


def money_text(amounts: Mapping[str, Decimal]) -> str:
    """Amounts per currency, `12.50 EUR, 3.00 USD`, or `-` for none."""
    if not amounts:
        return "-"
    return ", ".join(amount_text(amount, unit) for unit, amount in sorted(amounts.items()))


def amount_text(amount: Decimal, currency: str) -> str:
    """One amount as every table and message shows money: `0.90 USD`, `1,500.00 EUR`,
    `0.003 USD` (see `_money_places`); the bare number when `currency` is empty."""
    return f"{amount:,.{_money_places(amount)}f} {currency}".strip()


def _stored_amount(value: Any) -> Decimal:
    """An amount as an audit line stores it (`str` of a `Decimal`)."""
    return Decimal(str(value))


def _money_places(amount: Decimal) -> int:
    """Cents, except for an amount under one unit that needs more: two emails at 0.001 USD
    cost 0.002 USD, which cents would show as 0.00 beside a budget pause naming 0.002."""
    if abs(amount) >= 1 or not amount.is_finite():
        return 2
    exponent = amount.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 2
    return min(max(places, 2), 4)


def money_cells(metrics: Metrics) -> list[str]:
    """The cells under `MONEY_COLUMNS`: cost, revenue, cost per conversion and ROI."""
    return [
        money_text(metrics.cost),
        money_text(metrics.revenue),
        money_text(metrics.cost_per_conversion),
        roi_text(metrics),
    ]


def roi_text(metrics: Metrics) -> str:
    """The return on what was spent, `1.25`, or `-` when it cannot be given."""
    return f"{metrics.roi:.2f}" if metrics.roi is not None else "-"
