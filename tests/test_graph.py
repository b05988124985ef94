"""`cadence graph`: the DOT text names every step and labels every branch, split and wait, and
a real Graphviz run turns it into valid SVG and PNG; usage mistakes exit 2."""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cadence.cli import main
from cadence.dsl.compiler import compile_paths
from cadence.dsl.graph import GraphvizMissing, output_format, render, to_dot

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.cadence"))

PROGRAM = """
segment engaged = lead_score >= 30

template welcome email { subject "Welcome" body "<p>Hi</p>" }
template tips email { subject "Tips" body "<p>Tips</p>" }
template offer_a email { subject "Offer A" body "<p>A</p>" }
template offer_b email { subject "Offer B" body "<p>B</p>" }
template nudge sms "Hi {{ contact.first_name }}, reply STOP to opt out."

campaign onboarding "Onboarding \\"beta\\"" {
  type drip
  audience engaged
  channels email, sms
  on contact_created {
    send email welcome
    wait 2d
    if opened(welcome) and lead_score > 50 {
      split 20% test winner by clicks after 4h { a: send email offer_a  b: send email offer_b }
    } else if clicked(any) {
      send sms nudge
    } else {
      exit "went quiet"
    }
    split { x 50%: wait until 09:00 local  y 50%: wait 1d }
    send email tips
    tag add "onboarded"
  }
}

campaign other "Other" {
  channels email
  on launch { send email tips }
}
"""


def _require_dot() -> None:
    """Graphviz must be there in CI (.ci/run installs it); locally a missing one skips."""
    if shutil.which("dot") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Graphviz's dot is required under CI: apt-get install -y graphviz")
        pytest.skip("Graphviz's dot is not installed")


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """The test program, written to a file."""
    path = tmp_path / "onboarding.cadence"
    path.write_text(PROGRAM, encoding="utf-8")
    return path


def _labels(dot: str) -> list[str]:
    return [label.replace("\\n", " ") for label in re.findall(r'label="((?:[^"\\]|\\.)*)"', dot)]


def test_dot_names_every_step_and_labels_every_arrow(program: Path) -> None:
    campaigns = compile_paths([program])
    dot = to_dot([c for c in campaigns if c.name == "onboarding"])
    labels = _labels(dot)
    assert "When a new contact is created" in labels
    for template in ("welcome", "offer_a", "offer_b", "tips"):
        assert f"send email {template}" in labels
    assert "send SMS nudge" in labels
    assert "wait 2 days" in labels
    assert "wait until 09:00 local" in labels
    assert "wait 1 day" in labels
    assert "exit went quiet" in labels
    assert "A/B test test 20% winner after 4h by clicks" in labels
    assert "random split" in labels
    assert 'tag add \\"onboarded\\"' in labels
    # Branch arrows carry their conditions, the last one "else"; split arrows their shares.
    assert "opened(welcome) and lead_score > 50" in labels
    assert "clicked(any)" in labels
    assert "else" in labels
    assert {"a 10%", "b 10%", "x 50%", "y 50%"} <= set(labels)
    assert "80% if a wins after 4h" in labels
    # One cluster, titled with the display name (quotes escaped), and the end node.
    assert dot.count("subgraph cluster_") == 1
    assert 'Onboarding \\"beta\\"' in dot
    assert '"onboarding/end"' in dot
    assert dot.startswith("digraph cadence {") and dot.rstrip().endswith("}")


def test_the_dot_output_is_the_dot_text(
    program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "graph.dot"
    assert main(["graph", str(program), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text == to_dot(compile_paths([program]))
    assert text.count("subgraph cluster_") == 2
    assert "drew 2 campaigns" in capsys.readouterr().err


def test_campaign_option_draws_only_that_campaign(program: Path, tmp_path: Path) -> None:
    out = tmp_path / "other.dot"
    assert main(["graph", str(program), "-o", str(out), "--campaign", "other"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("subgraph cluster_") == 1
    assert '"other/' in text and '"onboarding/' not in text


def test_svg_is_drawn_by_graphviz_and_is_valid_xml(program: Path, tmp_path: Path) -> None:
    _require_dot()
    out = tmp_path / "graph.svg"
    assert main(["graph", str(program), "-o", str(out)]) == 0
    root = ET.fromstring(out.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {
        (element.text or "").strip() for element in root.iter() if element.tag.endswith("text")
    }
    assert {"send email", "welcome", "offer_a", "wait 2 days", "else", "a 10%"} <= texts
    assert "exit" in texts and "went quiet" in texts


def test_png_starts_with_the_png_signature(program: Path, tmp_path: Path) -> None:
    _require_dot()
    out = tmp_path / "graph.png"
    assert main(["graph", str(program), "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_graphviz_draws_every_example(path: Path) -> None:
    _require_dot()
    campaigns = compile_paths([path])
    svg = render(to_dot(campaigns), "svg")
    root = ET.fromstring(svg)
    texts = {
        (element.text or "").strip() for element in root.iter() if element.tag.endswith("text")
    }
    for campaign in campaigns:
        for node in campaign.nodes:
            if node.kind == "send":
                assert node.template in texts


def test_unknown_extension_is_a_usage_error(
    program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "graph.jpg"
    assert main(["graph", str(program), "-o", str(out)]) == 2
    assert not out.exists()
    assert ".svg" in capsys.readouterr().err
    assert output_format("x.SVG") == "svg" and output_format("x.gif") is None


def test_unknown_campaign_is_a_usage_error_with_a_suggestion(
    program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["graph", str(program), "-o", str(tmp_path / "g.dot"), "--campaign", "onbording"])
    assert code == 2
    assert "did you mean `onboarding`?" in capsys.readouterr().err


def test_missing_output_option_is_a_usage_error(program: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["graph", str(program)])
    assert exc.value.code == 2


def test_files_with_errors_are_not_drawn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.cadence"
    path.write_text("campaign x { on launch { send email nope } }\n")
    out = tmp_path / "bad.svg"
    assert main(["graph", str(path), "-o", str(out)]) == 1
    assert not out.exists()
    assert "unknown template `nope`" in capsys.readouterr().err


def test_missing_graphviz_is_a_clear_error(
    program: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GraphvizMissing):
        render("digraph {}", "svg")
    assert main(["graph", str(program), "-o", str(tmp_path / "g.svg")]) == 1
    err = capsys.readouterr().err
    assert "`dot`" in err and "apt-get install -y graphviz" in err
    # The DOT text itself needs no Graphviz.
    assert main(["graph", str(program), "-o", str(tmp_path / "g.dot")]) == 0
