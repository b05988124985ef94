"""The dashboard: every campaign's state, enrollments and performance on one page.

What `cadence status` and `cadence report` print, for people who watch campaigns in a
browser: tables with the CLI's wording (`cadence.engine.describe`) and charts drawn as
inline SVG on the server. The page runs no script (it is served under a policy that
forbids them) and reloads itself every `REFRESH_SECONDS`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from html import escape
from typing import Any

from cadence.engine.abtest import verdict_text
from cadence.engine.analytics import CampaignReport, Metrics
from cadence.engine.describe import (
    AB_COLUMNS,
    MONEY_COLUMNS,
    RATED_COUNTS,
    ab_rate_lines,
    count_text,
    money_cells,
    pause_text,
    rare_states,
    rate_text,
)

REFRESH_SECONDS = 30
# Enrollment states in the order the charts stack them, with their colours.
STATES = (("active", "#2f6fdf"), ("paused", "#e0a020"), ("completed", "#2e9e5b"),
          ("exited", "#9aa0a6"))  # fmt: skip
# The colours of the states shown only when a campaign has some (`describe.rare_states`).
RARE_COLOURS = {"cancelled": "#b3261e", "failed": "#6b1a1a"}
# The funnel of a campaign's sends, each stage a share of what was sent.
FUNNEL = (("sent", "#1f4e9c"), ("delivered", "#2f6fdf"), ("opened", "#4f9be8"),
          ("clicked", "#2e9e5b"), ("converted", "#e0a020"))  # fmt: skip
# What the per-message table shows after `sent`: the source material's "step performance".
STEP_COUNTS = ("delivered", "opened", "clicked", "replied", "unsubscribed")
CHART_WIDTH = 640
BAR_HEIGHT = 18
LABEL_WIDTH = 170

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;
color:#1d1d1f}h1{margin-bottom:.25rem}.when{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.35rem .6rem;text-align:right;vertical-align:top}
th:first-child,td:first-child,td.text,th.text{text-align:left}
th{background:#f4f5f7;font-weight:600}.tiles{display:flex;gap:1rem;flex-wrap:wrap}
.tile{border:1px solid #ddd;border-radius:.5rem;padding:.6rem 1rem;min-width:9rem}
.tile b{display:block;font-size:1.6rem}.status{font-weight:600}
.status-active{color:#2e7d32}.status-paused{color:#b26a00}.status-cancelled{color:#b3261e}
.legend span{display:inline-block;margin-right:1rem}.legend i{display:inline-block;
width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
svg text{font:12px system-ui,sans-serif}
"""


def dashboard(
    company: str,
    now: dt.datetime,
    campaigns: Sequence[Mapping[str, Any]],
    reports: Sequence[CampaignReport],
) -> str:
    """The whole page, from `Engine.status()` rows and `Engine.report()` reports."""
    by_name = {report.name: report for report in reports}
    body = [
        f"<h1>{escape(company)}: campaigns</h1>",
        f'<p class="when">As of {now:%Y-%m-%d %H:%M} UTC; this page reloads every'
        f" {REFRESH_SECONDS} seconds.</p>",
        _tiles(campaigns, reports),
    ]
    if not campaigns:
        body.append("<p>No campaign is deployed yet: <code>cadence deploy FILE</code>.</p>")
    else:
        # The usual states, and the rare ones some campaign has.
        states = STATES + tuple((state, RARE_COLOURS[state]) for state in rare_states(campaigns))
        body += [
            "<h2>Campaigns</h2>", _campaign_table(campaigns, states),
            "<h2>Enrollments</h2>", _legend(states), _enrollment_chart(campaigns, states),
            "<h2>Performance</h2>", _performance_table(campaigns, by_name),
            _legend(FUNNEL), _funnel_chart(campaigns, by_name),
            "<h2>By message</h2>", _step_table(campaigns, by_name),
        ]  # fmt: skip
        tests = _ab_table(campaigns)
        if tests:
            body += ["<h2>A/B tests</h2>", tests]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(company)}: campaigns</title><style>{_STYLE}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>"
    )


def _tiles(campaigns: Sequence[Mapping[str, Any]], reports: Sequence[CampaignReport]) -> str:
    """The few numbers people look at first."""
    total = Metrics()
    for report in reports:
        total.add(report.total)
    live = sum(1 for row in campaigns if row["status"] == "active")
    enrolled = sum(row["enrollments"].get("active", 0) for row in campaigns)
    tiles = [
        ("live campaigns", f"{live:,}"),
        ("contacts in a campaign now", f"{enrolled:,}"),
        ("sent", f"{total.sent:,}"),
        ("opened", rate_text(total.rate("opened"))),
        ("clicked", rate_text(total.rate("clicked"))),
    ]
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><b>{escape(value)}</b>{escape(label)}</div>' for label, value in tiles
    ) + "</div>"  # fmt: skip


def _campaign_table(
    campaigns: Sequence[Mapping[str, Any]], states: Sequence[tuple[str, str]]
) -> str:
    """Status, version, approval and enrollments by state, as `cadence status` shows them."""
    head = ["campaign", "status", "version", "approval", *(s for s, _ in states), "sends"]
    rows = []
    for row in campaigns:
        status = str(row["status"])
        notes = []
        if row.get("pause"):
            notes.append(pause_text(row["pause"]))
        if row.get("pending_approval"):
            notes.append(f"version {row['pending_approval']} waits for approval")
        note = "".join(f"<br><small>{escape(n)}</small>" for n in notes)
        counts = row["enrollments"]
        rows.append(
            [
                _campaign_name(row),
                f'<span class="status status-{escape(status)}">{escape(status)}</span>{note}',
                f"<code>{escape(str(row['version']))}</code>",
                escape(str(row["approval"])),
                *(f"{counts.get(state, 0):,}" for state, _ in states),
                f"{row['sends']:,}",
            ]
        )
    return _table(head, rows, text_columns={1, 2, 3})


def _performance_table(
    campaigns: Sequence[Mapping[str, Any]], reports: Mapping[str, CampaignReport]
) -> str:
    """Sends and what came of them, as `cadence report` shows them."""
    head = ["campaign", "sent", *RATED_COUNTS, *MONEY_COLUMNS]
    rows = []
    for row in campaigns:
        report = reports.get(str(row["name"]))
        metrics = report.total if report is not None else Metrics()
        rows.append(
            [
                _campaign_name(row),
                f"{metrics.sent:,}",
                *(escape(count_text(metrics, name)) for name in RATED_COUNTS),
                *(escape(cell) for cell in money_cells(metrics)),
            ]
        )
    return _table(head, rows)


def _step_table(
    campaigns: Sequence[Mapping[str, Any]], reports: Mapping[str, CampaignReport]
) -> str:
    """Each campaign's messages (its templates) with their own sends and engagement."""
    head = ["campaign", "message", "sent", *STEP_COUNTS]
    rows = [
        [
            _campaign_name(row) if index == 0 else "",
            escape(template),
            f"{metrics.sent:,}",
            *(escape(count_text(metrics, name)) for name in STEP_COUNTS),
        ]
        for row in campaigns
        if (report := reports.get(str(row["name"]))) is not None
        for index, (template, metrics) in enumerate(sorted(report.by_template.items()))
    ]
    if not rows:
        return "<p>Nothing has been sent yet.</p>"
    return _table(head, rows, text_columns={1})


def _ab_table(campaigns: Sequence[Mapping[str, Any]]) -> str:
    """Decided A/B tests: winner, each variant's rate with its interval, the verdict."""
    rows = [
        [
            _campaign_name(row),
            escape(str(test.get("node", ""))),
            escape(str(test.get("winner", ""))),
            "<br>".join(escape(line) for line in ab_rate_lines(test)),
            escape(verdict_text(test)),
        ]
        for row in campaigns
        for test in row.get("ab_tests") or ()
    ]
    if not rows:
        return ""
    return _table(list(AB_COLUMNS), rows, text_columns={1, 2, 3, 4})


def _enrollment_chart(
    campaigns: Sequence[Mapping[str, Any]], states: Sequence[tuple[str, str]]
) -> str:
    """A bar per campaign, its enrollments stacked by state, as shares of the largest."""
    totals = [sum(row["enrollments"].get(s, 0) for s, _ in states) for row in campaigns]
    widest = max(totals, default=0) or 1
    bars = []
    for index, (row, total) in enumerate(zip(campaigns, totals, strict=True)):
        y = index * (BAR_HEIGHT + 8)
        x = float(LABEL_WIDTH)
        parts = [_label(str(row["name"]), y)]
        for state, colour in states:
            count = row["enrollments"].get(state, 0)
            width = (CHART_WIDTH - LABEL_WIDTH - 80) * count / widest
            if width > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}"'
                    f' fill="{colour}"><title>{escape(str(row["name"]))}: {count:,}'
                    f" {state}</title></rect>"
                )
                x += width
        parts.append(_value(f"{total:,}", x + 6, y))
        bars.append("".join(parts))
    return _svg("Enrollments by state per campaign", bars, len(campaigns))


def _funnel_chart(
    campaigns: Sequence[Mapping[str, Any]], reports: Mapping[str, CampaignReport]
) -> str:
    """Per campaign that sent anything, its funnel: each stage as a share of what was sent."""
    bars: list[str] = []
    rows = 0
    for row in campaigns:
        report = reports.get(str(row["name"]))
        if report is None or not report.total.sent:
            continue
        metrics = report.total
        bars.append(_label(str(row["name"]), rows * (BAR_HEIGHT + 4), bold=True))
        rows += 1
        for stage, colour in FUNNEL:
            y = rows * (BAR_HEIGHT + 4)
            count = getattr(metrics, stage)
            width = (CHART_WIDTH - LABEL_WIDTH - 120) * count / metrics.sent
            shown = f"{count:,}" if stage == "sent" else count_text(metrics, stage)
            bars.append(
                _label(stage, y, indent=True)
                + f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}"'
                f' fill="{colour}"><title>{escape(stage)}: {escape(shown)}</title></rect>'
                + _value(shown, LABEL_WIDTH + width + 6, y)
            )
            rows += 1
    if not bars:
        return "<p>Nothing has been sent yet.</p>"
    return _svg("Sends and what came of them, per campaign", bars, rows, step=BAR_HEIGHT + 4)


def _svg(title: str, parts: Sequence[str], rows: int, step: int = BAR_HEIGHT + 8) -> str:
    height = max(rows, 1) * step
    return (
        f'<svg role="img" aria-label="{escape(title)}" width="{CHART_WIDTH}" height="{height}"'
        f' viewBox="0 0 {CHART_WIDTH} {height}"><title>{escape(title)}</title>'
        f"{''.join(parts)}</svg>"
    )


def _label(text: str, y: int, *, bold: bool = False, indent: bool = False) -> str:
    weight = ' font-weight="600"' if bold else ""
    shown = text if len(text) <= 24 else text[:23] + "…"
    return (
        f'<text x="{16 if indent else 0}" y="{y + BAR_HEIGHT - 5}"{weight}>{escape(shown)}</text>'
    )


def _value(text: str, x: float, y: int) -> str:
    return f'<text x="{x:.1f}" y="{y + BAR_HEIGHT - 5}">{escape(text)}</text>'


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{colour}"></i>{escape(name)}</span>'
        for name, colour in entries
    ) + "</p>"  # fmt: skip


def _campaign_name(row: Mapping[str, Any]) -> str:
    """The campaign's name, with its display name when it has one."""
    name = escape(str(row["name"]))
    display = row.get("display_name")
    return f"{name}<br><small>{escape(str(display))}</small>" if display else name


def _table(
    head: Sequence[str], rows: Sequence[Sequence[str]], text_columns: Collection[int] = ()
) -> str:
    """An HTML table; cells are already escaped HTML."""

    def cell(tag: str, index: int, content: str) -> str:
        kind = ' class="text"' if index in text_columns else ""
        return f"<{tag}{kind}>{content}</{tag}>"

    header = "".join(cell("th", i, escape(name)) for i, name in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", i, content) for i, content in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
