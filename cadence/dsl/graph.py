"""Graphviz drawings of compiled step graphs, so a campaign's shape can be seen at a glance.

`to_dot` writes DOT text by hand (no Python graphviz dependency) from `CompiledCampaign`
nodes: one cluster per campaign, its triggers on top, then sends, waits, branches with their
conditions on the arrows, splits with their shares, and distinct exits. `render` runs
Graphviz's `dot` binary to turn that text into SVG or PNG.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import textwrap
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from cadence.dsl import ast
from cadence.dsl import compiled as cm
from cadence.dsl.compiler import expr_text, format_duration
from cadence.dsl.explain import (
    Names,
    channel_noun,
    describe_trigger,
    duration_words,
    number_words,
)
from cadence.errors import CadenceError

FORMATS: dict[str, str] = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png"}

_CHANNEL_COLOURS: dict[str, str] = {
    "email": "#dbeafe",
    "sms": "#dcfce7",
    "whatsapp": "#ccfbf1",
    "inbox": "#ede9fe",
    "webhook": "#f3f4f6",
}
_WRAP = 34


class GraphvizMissing(CadenceError):
    """Graphviz's `dot` program is not installed, so only .dot output is possible."""


class GraphvizFailed(CadenceError):
    """`dot` ran but could not draw the graph."""


def to_dot(campaigns: Sequence[cm.CompiledCampaign], title: str | None = None) -> str:
    """The DOT text for the step graphs of `campaigns`, one cluster each."""
    out = [
        "digraph cadence {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=12, nodesep=0.3, ranksep=0.4,'
        " newrank=true, compound=true];",
        '  node [fontname="Helvetica", fontsize=10, shape=box, style="rounded,filled",'
        ' fillcolor="#ffffff", color="#4b5563", margin="0.12,0.06"];',
        '  edge [fontname="Helvetica", fontsize=9, color="#4b5563", fontcolor="#1f2937",'
        " arrowsize=0.7];",
    ]
    if title:
        out.append(f'  labelloc=t; label="{_escape(title)}";')
    entries = {
        campaign.name: _scoped(campaign.name, _trigger_id(0))
        for campaign in campaigns
        if campaign.triggers
    }
    links: list[str] = []
    for index, campaign in enumerate(campaigns):
        cluster = _Cluster(campaign, index)
        out.extend(cluster.lines())
        # An `enroll` into a campaign drawn here points at that campaign's first trigger.
        for source, target in cluster.enrolls:
            if target in entries:
                links.append(
                    f"  {source} -> {entries[target]} "
                    '[style=dotted, label="enroll", constraint=false];'
                )
    out.extend(links)
    out.append("}")
    return "\n".join(out) + "\n"


def output_format(path: str | Path) -> str | None:
    """The Graphviz output format an output file's extension asks for, or None if unknown."""
    return FORMATS.get(Path(path).suffix.lower())


def render(dot_text: str, fmt: str) -> bytes:
    """Run `dot -T<fmt>` on DOT text and return what it draws."""
    if fmt == "dot":
        return dot_text.encode("utf-8")
    binary = shutil.which("dot")
    if binary is None:
        raise GraphvizMissing(
            "Graphviz's `dot` program was not found on PATH; install Graphviz "
            "(Debian/Ubuntu: apt-get install -y graphviz) or write a .dot file instead"
        )
    result = subprocess.run(
        [binary, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, check=False
    )
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()
        raise GraphvizFailed(f"dot failed (exit {result.returncode}): {message}")
    return result.stdout


def write_graph(campaigns: Sequence[cm.CompiledCampaign], path: str | Path) -> None:
    """Draw `campaigns` into `path`, in the format its extension names."""
    fmt = output_format(path)
    if fmt is None:
        raise ValueError(f"unknown output format for {path}; use .svg, .png or .dot")
    Path(path).write_bytes(render(to_dot(campaigns), fmt))


# ---------------------------------------------------------------------------- DOT text


def _escape(text: str) -> str:
    """A DOT double-quoted string's contents; newlines become centred line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return escaped.replace("\n", "\\n")


def _wrap(text: str, width: int = _WRAP) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=False)) or text


def _scoped(campaign: str, node_id: str) -> str:
    """A node's DOT id: quoted, and prefixed by its campaign so clusters never collide."""
    return f'"{_escape(campaign)}/{_escape(node_id)}"'


def _trigger_id(number: int) -> str:
    return f"@trigger{number}"


def _attrs(**attrs: str) -> str:
    return ", ".join(f'{key}="{_escape(value)}"' for key, value in attrs.items())


class _Cluster:
    """The DOT lines of one campaign's cluster, with ids scoped to the campaign."""

    def __init__(self, campaign: cm.CompiledCampaign, index: int) -> None:
        self.campaign = campaign
        self.index = index
        self.enrolls: list[tuple[str, str]] = []
        self.names = Names(segments=frozenset(campaign.segments), scores=frozenset(campaign.scores))
        self.out: list[str] = []

    def node_id(self, node_id: str) -> str:
        """The DOT id of one of this campaign's nodes."""
        return _scoped(self.campaign.name, node_id)

    def lines(self) -> list[str]:
        """The cluster: triggers, then every node, then every edge of the compiled graph."""
        campaign = self.campaign
        # `\l` ends a left-justified line in a DOT label.
        title = "".join(
            _escape(line) + "\\l"
            for line in (campaign.display_name, f"{campaign.name} · {campaign.type}")
        )
        self.out = [
            f"  subgraph cluster_{self.index} {{",
            f'    label="{title}"; labeljust=l; fontsize=12;',
            '    style="rounded,dashed"; color="#9ca3af";',
        ]
        for number, trigger in enumerate(campaign.triggers):
            self._trigger(number, trigger)
        for node in campaign.nodes:
            self._node(node)
        self._edges()
        self.out.append("  }")
        return self.out

    def _emit_node(self, node_id: str, **attrs: str) -> None:
        self.out.append(f"    {self.node_id(node_id)} [{_attrs(**attrs)}];")

    def _emit_edge(self, source: str, target: str, **attrs: str) -> None:
        extra = f" [{_attrs(**attrs)}]" if attrs else ""
        self.out.append(f"    {self.node_id(source)} -> {self.node_id(target)}{extra};")

    def _trigger(self, number: int, trigger: cm.TriggerModel) -> None:
        node_id = _trigger_id(number)
        words = describe_trigger(_trigger_ast(trigger), self.names)
        self._emit_node(
            node_id,
            label=_wrap(words[:1].upper() + words[1:], 40),
            shape="box",
            style="rounded,filled,bold",
            fillcolor="#fde68a",
        )
        self._emit_edge(node_id, trigger.entry, label="enters")

    def _edges(self) -> None:
        kinds = {node.id: node for node in self.campaign.nodes}
        seen: set[tuple[str, str]] = set()
        for edge in self.campaign.edges:
            attrs: dict[str, str] = {}
            source = kinds.get(edge.from_)
            # A plain wait already says how long in its node; other arrows keep their label.
            if edge.label and not isinstance(source, cm.WaitNode | cm.WaitUntilNode):
                attrs["label"] = _wrap(edge.label, 28)
            pair = (edge.from_, edge.to)
            if isinstance(source, cm.ABSplitNode) and pair in seen:
                # The hold-out's arrow: it follows a variant only once that variant has won.
                attrs.update(style="dashed", color="#7c3aed", fontcolor="#5b21b6")
            elif isinstance(source, cm.BranchNode) and edge.label == "else":
                attrs["style"] = "dashed"
            seen.add(pair)
            self._emit_edge(edge.from_, edge.to, **attrs)

    def _node(self, node: cm.NodeModel) -> None:
        match node:
            case cm.SendNode(channel=channel, template=template):
                self._emit_node(
                    node.id,
                    label=f"send {channel_noun(channel)}\n{template}",
                    fillcolor=_CHANNEL_COLOURS.get(channel, "#f3f4f6"),
                )
            case cm.WaitNode(seconds=seconds):
                self._wait(node.id, f"wait {duration_words(seconds)}")
            case cm.WaitUntilNode(time=time, local=local):
                self._wait(node.id, f"wait until {time}{' local' if local else ''}")
            case cm.WaitForNode(event=event, timeout_seconds=timeout):
                what = expr_text(cm.model_to_expr(event))
                self._wait(node.id, f"wait for {what}\nup to {duration_words(timeout)}")
            case cm.BranchNode(conditions=conditions):
                label = "if"
                if len(conditions) == 1:
                    label = _wrap(expr_text(cm.model_to_expr(conditions[0].when)), 24) + "?"
                self._emit_node(
                    node.id,
                    label=label,
                    shape="diamond",
                    style="filled",
                    fillcolor="#fef3c7",
                    ordering="out",
                )
            case cm.ABSplitNode(test_share=test, metric=metric, after_seconds=after):
                self._emit_node(
                    node.id,
                    label=(
                        f"A/B test\ntest {_percent(test)}\n"
                        f"winner after {format_duration(after)}\nby {metric}"
                    ),
                    shape="diamond",
                    style="filled",
                    fillcolor="#e9d5ff",
                )
            case cm.RandomSplitNode():
                self._emit_node(
                    node.id,
                    label="random\nsplit",
                    shape="diamond",
                    style="filled",
                    fillcolor="#e9d5ff",
                )
            case cm.SetNode(attribute=attribute, value=value):
                self._action(node.id, f"set {attribute} =\n{expr_text(cm.model_to_expr(value))}")
            case cm.TagNode(action=action, tag=tag):
                self._action(node.id, f'tag {action}\n"{tag}"')
            case cm.AssignAgentNode(strategy=strategy):
                self._action(node.id, f"assign agent\n({strategy.replace('_', ' ')})")
            case cm.NotifyNode(channel=channel, target=target):
                self._action(node.id, f"notify {channel}\n{target}")
            case cm.EnrollNode(campaign=other):
                self._action(node.id, f"enroll in\n{other}")
                self.enrolls.append((self.node_id(node.id), other))
            case cm.ExitNode(reason=reason):
                self._emit_node(
                    node.id,
                    label=f"exit\n{_wrap(reason, 24)}" if reason else "exit",
                    shape="octagon",
                    style="filled",
                    fillcolor="#fecaca",
                    color="#b91c1c",
                )
            case cm.EndNode():
                self._emit_node(
                    node.id,
                    label="end",
                    shape="doublecircle",
                    style="filled",
                    fillcolor="#e5e7eb",
                    fontsize="9",
                    width="0.3",
                )

    def _wait(self, node_id: str, label: str) -> None:
        self._emit_node(node_id, label=label, shape="ellipse", style="filled", fillcolor="#f3f4f6")

    def _action(self, node_id: str, label: str) -> None:
        self._emit_node(node_id, label=label, fillcolor="#f9fafb", style="rounded,filled,dashed")


def _percent(value: Decimal) -> str:
    return f"{number_words(value)}%"


def _trigger_ast(trigger: cm.TriggerModel) -> ast.Trigger:
    """Rebuild the AST form of a compiled trigger, so `describe_trigger` can word it."""
    match trigger:
        case cm.EventTriggerModel():
            return ast.EventTrigger(
                event=trigger.event,
                count=(
                    ast.CountClause(trigger.count.op, trigger.count.value)
                    if trigger.count is not None
                    else None
                ),
                within=(
                    ast.DurationLit(trigger.within_seconds)
                    if trigger.within_seconds is not None
                    else None
                ),
                where=cm.model_to_expr(trigger.where) if trigger.where is not None else None,
                fanout=cm.model_to_expr(trigger.fanout) if trigger.fanout is not None else None,
            )
        case cm.ContactCreatedTriggerModel():
            return ast.ContactCreatedTrigger()
        case cm.SegmentEnterTriggerModel(segment=segment):
            return ast.SegmentEnterTrigger(segment)
        case cm.LaunchTriggerModel():
            return ast.LaunchTrigger()
        case cm.AtTriggerModel(at=at, local=local):
            moment: ast.DateLit | ast.DateTimeLit
            if "T" in at:
                moment = ast.DateTimeLit(dt.datetime.fromisoformat(at))
            else:
                moment = ast.DateLit(dt.date.fromisoformat(at))
            return ast.AtTrigger(moment, local)
        case cm.EveryTriggerModel(days=days, interval_seconds=interval, time=time, local=local):
            clock = None
            if time is not None:
                hour, minute = time.split(":")[:2]
                clock = ast.TimeLit(int(hour), int(minute))
            return ast.EveryTrigger(
                days=days,
                interval=ast.DurationLit(interval) if interval is not None else None,
                time=clock,
                local=local,
            )
