"""How long parsing, checking and compiling a 1,000-line Cadence file takes (target: well under 1s).

The file is generated: segments, a score, templates and drip campaigns that use every kind
of step, repeated until it is exactly 1,000 lines, so the number tracks the whole pipeline
(`load_text` -> `check_workspace` -> `compile_workspace`) on realistic input.
Run with `pytest benchmarks/test_compile_bench.py --benchmark-enable`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from cadence.dsl.checker import check_workspace
from cadence.dsl.compiled import CompiledCampaign
from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text

TARGET_LINES = 1000


def _campaign(n: int) -> list[str]:
    """One drip campaign of 30 lines with settings, branches, splits and waits."""
    return [
        f'campaign drip_{n} "Drip number {n}" {{',
        "  kind nurture",
        f'  audience segment_{n} and country in ["US", "CA"]',
        "  exclude received(email, 24h)",
        '  from "Acme <hello@acme.test>"',
        "  channels email, sms",
        f"  priority {1 + n % 9}",
        "  cap email 3 per 7d",
        "  send_window 09:00-18:00 local weekdays",
        '  timezone fallback "America/New_York"',
        "  goal converted",
        f"  on segment_enter segment_{n} {{",
        f"    send email intro_{n}",
        "    wait 2d",
        f"    if opened(intro_{n}) and engagement >= {n % 50} {{",
        f"      send email follow_{n}",
        f'      tag add "engaged-{n}"',
        "    } else {",
        "      wait 1d",
        f"      send sms nudge_{n}",
        "    }",
        f"    wait for clicked(follow_{n}) up to 3d",
        f'    split {{ a 50%: send email intro_{n}  b 50%: set stage = "b{n}" }}',
        "    wait until 09:00 local",
        "    assign agent round_robin",
        f"    send email follow_{n}",
        "  }",
        "}",
        "",
    ]


def _templates(n: int) -> list[str]:
    """Three templates and a segment for campaign `n`: 10 lines."""
    return [
        f"segment segment_{n} = lead_score >= {n % 90} and email_verified",
        f"template intro_{n} email {{",
        f'  subject "Hello {{{{ contact.first_name }}}}, number {n}"',
        '  preheader "A short hello"',
        f"  body \"<p>Intro {n} for {{{{ contact.first_name | default('you') }}}}</p>\"",
        "}",
        f'template follow_{n} email {{ subject "Follow-up {n}" body "<p>More {n}</p>" }}',
        f'template nudge_{n} sms "Nudge {n}: reply STOP to opt out."',
        "",
        "",
    ]


HEADER = [
    "# Generated for the compile benchmark.",
    "score engagement {",
    "  opened(any) within 30d: +5 each",
    "  clicked(any) within 30d: +10 each",
    "  decay 10% per 30d",
    "}",
    "",
]


def generate_source(lines: int = TARGET_LINES) -> str:
    """A valid Cadence file of exactly `lines` lines."""
    out = list(HEADER)
    n = 0
    while len(out) + len(_templates(n)) + len(_campaign(n)) <= lines:
        out.extend(_templates(n))
        out.extend(_campaign(n))
        n += 1
    out.extend(f"# padding {i}" for i in range(lines - len(out)))
    return "\n".join(out) + "\n"


def parse_check_compile(text: str, base_dir: Path) -> list[CompiledCampaign]:
    """The whole pipeline on text, refusing any error the checker finds."""
    workspace = load_text(text, "generated.cadence", base_dir)
    errors = [d for d in check_workspace(workspace) if d.severity == "error"]
    assert not errors, errors[0].render()
    return compile_workspace(workspace)


@pytest.fixture(scope="module")
def source() -> str:
    """The generated 1,000-line file."""
    text = generate_source()
    assert text.count("\n") == TARGET_LINES
    return text


def test_compile_1000_lines(benchmark: BenchmarkFixture, source: str, tmp_path: Path) -> None:
    """Parse + check + compile 1,000 lines; every campaign comes out with its graph."""
    campaigns = benchmark(parse_check_compile, source, tmp_path)
    expected = source.count("\ncampaign drip_")
    assert len(campaigns) == expected > 20
    assert all(len(c.nodes) == 15 and c.version for c in campaigns)
