"""The compiler: every documented program compiles, the output is deterministic, graphs are right.

The compiled JSON is what the engine stores and runs, and its hash is the campaign version,
so these tests pin the exact node/edge shape of a few programs, prove byte-identical output
across loads, processes and directories, and prove that expressions survive the round trip
AST -> model -> JSON -> model -> AST.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from cadence.cli import main
from cadence.dsl import ast
from cadence.dsl.compiled import (
    ABSplitNode,
    CompiledCampaign,
    EventTriggerModel,
    ExprModel,
    RandomSplitNode,
    WaitForNode,
    canonical_json,
    expr_to_model,
    model_to_expr,
    node_targets,
)
from cadence.dsl.compiler import (
    check_and_compile,
    compile_paths,
    compile_workspace,
    format_duration,
    make_bundle,
)
from cadence.dsl.loader import load, load_text
from cadence.errors import CadenceCheckError, CadenceSyntaxError
from tests.language_md import language_blocks

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def compile_text(tmp_path: Path, text: str, name: str = "main.cadence") -> list[CompiledCampaign]:
    """Write one file and check+compile it."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return compile_paths([path])


def only(text: str, tmp_path: Path) -> CompiledCampaign:
    """The single campaign a program compiles to."""
    campaigns = compile_text(tmp_path, text)
    assert len(campaigns) == 1
    return campaigns[0]


def edges(campaign: CompiledCampaign) -> list[tuple[str, str, str | None]]:
    """Edges as (from, to, label) triples."""
    return [(e.from_, e.to, e.label) for e in campaign.edges]


# ---------------------------------------------------------------------------- LANGUAGE.md

# LANGUAGE.md's code blocks as written there (tests/language_md.py reads them), by topic.
LANGUAGE_BLOCK_KEYS = ("declarations", "triggers", "fanout", "steps", "scores", "settings")
LANGUAGE_BLOCKS: dict[str, str] = dict(zip(LANGUAGE_BLOCK_KEYS, language_blocks(), strict=True))


def _email(name: str) -> str:
    return f'template {name} email {{ subject "{name}" body "<p>{name}</p>" }}\n'


# LANGUAGE.md's blocks are fragments of a program: they send templates, enter segments and
# enroll in campaigns that the page declares elsewhere or not at all, and one body file they
# name does not exist. Each fragment is written to its own file exactly as on the page, and a
# second file, the one compiled, declares what it leaves out and imports it. The steps block
# is a list of steps with no trigger, so it is the only one wrapped: in `on launch { }`.
SUPPORT: dict[str, str] = {
    "declarations": _email("property_details"),
    "triggers": "segment engaged = lead_score >= 30\n",
    "fanout": _email("new_listing") + _email("price_drop"),
    "steps": "".join(_email(n) for n in ("welcome", "offer_a", "offer_b", "subject_a", "subject_b"))
    + 'template follow_up sms "Hi {{ contact.first_name }}"\n'
    + "campaign other_campaign { on launch { send email welcome } }\n",
    "scores": "",
    "settings": "segment engaged = lead_score >= 30\n"
    + "".join(_email(n) for n in ("welcome", "engaged_path", "re_engagement", "special_offer"))
    + "campaign onboarding { on launch { send email welcome } }\n",
}
BODY_FILES = {"templates/welcome.html.j2": "<p>Welcome, {{ contact.first_name }}!</p>\n"}


def write_language_example(tmp_path: Path, key: str) -> Path:
    """The fragment as on the page, plus the support file that imports it; returns the root."""
    fragment = LANGUAGE_BLOCKS[key]
    if key == "steps":
        fragment = "on launch {\n" + fragment + "}\n"
    (tmp_path / "fragment.cadence").write_text(fragment, encoding="utf-8")
    for relative, text in BODY_FILES.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text, encoding="utf-8")
    root = tmp_path / "program.cadence"
    root.write_text('import "fragment.cadence"\n' + SUPPORT[key], encoding="utf-8")
    return root


@pytest.mark.parametrize("key", sorted(LANGUAGE_BLOCKS))
def test_every_language_md_example_compiles(tmp_path: Path, key: str) -> None:
    """Each block parses, checks (warnings allowed) and compiles to valid, sealed campaigns."""
    result = check_and_compile([write_language_example(tmp_path, key)])
    assert all(d.severity == "warning" for d in result.warnings)
    for campaign in result.campaigns:
        again = CompiledCampaign.model_validate_json(campaign.to_json())
        assert again == campaign
        assert again.version == campaign.version


def test_language_md_campaign_count(tmp_path: Path) -> None:
    """The trigger block holds six automations, one per trigger kind."""
    campaigns = compile_paths([write_language_example(tmp_path, "triggers")])
    kinds = sorted(c.triggers[0].kind for c in campaigns)
    assert kinds == sorted(["event", "contact_created", "segment_enter", "at", "every", "launch"])
    types = {c.name: c.type for c in campaigns}
    assert types == {
        "fragment_property_viewed": "triggered",
        "fragment_contact_created": "triggered",
        "fragment_enter_engaged": "triggered",
        "fragment_at_20261201T0900": "broadcast",
        "fragment_every_monday": "recurring",
        "fragment_launch": "broadcast",
    }
    # `...` makes no node: each flow goes straight to its end.
    for campaign in campaigns:
        assert [n.kind for n in campaign.nodes] == ["end"]
        assert campaign.triggers[0].entry == "end"


def test_language_md_welcome_series_graph(tmp_path: Path) -> None:
    """The welcome series of LANGUAGE.md: the exact nodes and edges the engine will run."""
    campaigns = compile_paths([write_language_example(tmp_path, "settings")])
    campaign = next(c for c in campaigns if c.name == "welcome_series")
    assert [(n.id, n.kind) for n in campaign.nodes] == [
        ("send_welcome", "send"),
        ("wait_2d", "wait"),
        ("if_1", "branch"),
        ("send_engaged_path", "send"),
        ("wait_1d", "wait"),
        ("send_re_engagement", "send"),
        ("wait_3d", "wait"),
        ("send_special_offer", "send"),
        ("end", "end"),
    ]
    assert edges(campaign) == [
        ("send_welcome", "wait_2d", None),
        ("wait_2d", "if_1", "after 2d"),
        ("if_1", "send_engaged_path", "yes"),
        ("if_1", "wait_1d", "else"),
        ("send_engaged_path", "wait_3d", None),
        ("wait_1d", "send_re_engagement", "after 1d"),
        ("send_re_engagement", "wait_3d", None),
        ("wait_3d", "send_special_offer", "after 3d"),
        ("send_special_offer", "end", None),
    ]
    assert [(t.kind, t.id, t.entry) for t in campaign.triggers] == [
        ("contact_created", "contact_created", "send_welcome")
    ]
    branch = campaign.node("if_1")
    assert branch.kind == "branch"
    assert model_to_expr(branch.conditions[0].when) == ast.Call("opened", (ast.Path(("welcome",)),))
    assert (campaign.type, campaign.type_inferred, campaign.kind) == ("drip", False, "enrollment")
    assert campaign.source == "fragment.cadence"
    assert sorted(campaign.templates) == [
        "engaged_path",
        "re_engagement",
        "special_offer",
        "welcome",
    ]
    assert sorted(campaign.segments) == ["engaged"]


def test_language_md_settings_are_typed(tmp_path: Path) -> None:
    """Every setting of the settings block lands in its typed field."""
    campaigns = compile_paths([write_language_example(tmp_path, "settings")])
    s = next(c for c in campaigns if c.name == "welcome_series").to_data()["settings"]
    assert s["from"] == "Acme <hello@acme.test>"
    assert s["reply_to"] == "sales@acme.test"
    assert s["channels"] == ["email", "sms"] and s["channels_explicit"] is True
    assert s["priority"] == 5
    assert s["caps"] == [{"channel": "email", "count": 3, "per_seconds": 7 * 86400}]
    assert s["send_window"] == {
        "start": "09:00",
        "end": "18:00",
        "local": True,
        "days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
    }
    assert s["timezone"] == {"zone": "America/New_York", "fallback": True}
    assert s["quiet_hours"] == [{"channel": "sms", "start": "21:00", "end": "08:00", "local": True}]
    assert s["budget"] == {"amount": "500", "currency": "USD"}
    assert s["costs"] == {
        "email": {"amount": "0.001", "currency": "USD"},
        "sms": {"amount": "0.05", "currency": "USD"},
    }
    assert s["goal"] == {"kind": "path", "parts": ["converted"]}
    assert s["approval"] == "required"
    assert (s["starts"], s["ends"]) == ("2026-12-01", "2027-01-31")
    assert s["reenter"] == {"mode": "never", "after_seconds": None}
    assert s["max_sends"] == 20
    audience = model_to_expr(TypeAdapter(ExprModel).validate_python(s["audience"]))
    assert audience == ast.Binary(
        "and",
        ast.Path(("engaged",)),
        ast.Compare(
            "in",
            ast.Path(("country",)),
            ast.ListLit((ast.StringLit("US"), ast.StringLit("CA"))),
        ),
    )


def test_language_md_steps_graph(tmp_path: Path) -> None:
    """Every step kind of LANGUAGE.md becomes its node, in one straight flow."""
    campaigns = compile_paths([write_language_example(tmp_path, "steps")])
    campaign = next(c for c in campaigns if c.name == "fragment_launch")
    assert [(n.id, n.kind) for n in campaign.nodes] == [
        ("send_welcome", "send"),
        ("send_follow_up", "send"),
        ("wait_2d", "wait"),
        ("wait_until_0900", "wait_until"),
        ("wait_for_clicked_welcome", "wait_for"),
        ("if_1", "branch"),
        ("ab_split_1", "ab_split"),
        ("send_offer_a", "send"),
        ("send_offer_b", "send"),
        ("split_1", "random_split"),
        ("send_subject_a", "send"),
        ("send_subject_b", "send"),
        ("set_lead_stage", "set"),
        ("tag_add_webinar_2026", "tag"),
        ("assign_agent", "assign_agent"),
        ("notify_webhook", "notify"),
        ("enroll_other_campaign", "enroll"),
        ("exit_moved_to_sales", "exit"),
        ("end", "end"),
    ]
    assert campaign.type == "ab_test" and campaign.type_inferred
    assert campaign.settings.channels == ("email", "sms")
    assert not campaign.settings.channels_explicit
    found = edges(campaign)
    # Empty `{ ... }` arms go straight on to the step after the `if`.
    assert ("if_1", "ab_split_1", "opened(welcome)") in found
    assert ("if_1", "ab_split_1", "lead_score > 50") in found
    assert ("if_1", "ab_split_1", "else") in found
    assert ("wait_for_clicked_welcome", "if_1", "clicked") in found
    assert ("wait_for_clicked_welcome", "if_1", "timeout 3d") in found
    assert ("wait_until_0900", "wait_for_clicked_welcome", "until 09:00 local") in found
    assert ("split_1", "send_subject_a", "a 50%") in found
    assert ("send_offer_b", "split_1", None) in found
    assert ("enroll_other_campaign", "exit_moved_to_sales", None) in found
    assert not any(e[0] == "exit_moved_to_sales" for e in found)
    exit_node = campaign.node("exit_moved_to_sales")
    assert exit_node.kind == "exit" and exit_node.reason == "moved to sales"


def test_language_md_scores_are_carried(tmp_path: Path) -> None:
    """A campaign that uses a score carries the score's rules."""
    root = write_language_example(tmp_path, "scores")
    root.write_text(
        root.read_text() + _email("hi") + "when x if engagement >= 40 { send email hi }\n"
    )
    (campaign,) = compile_paths([root])
    score = campaign.scores["engagement"]
    assert [r.kind for r in score.rules] == ["points", "points", "points", "points", "decay"]
    decay = score.rules[-1]
    assert decay.kind == "decay" and decay.percent == 10 and decay.per_seconds == 30 * 86400
    points = score.rules[0]
    assert points.kind == "points" and points.points == 5 and points.each
    assert points.within_seconds == 30 * 86400


# ---------------------------------------------------------------------------- examples/


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.cadence")), ids=lambda p: p.stem)
def test_every_example_compiles(path: Path) -> None:
    """Each real campaign compiles, round-trips through JSON and reads its body files."""
    campaigns = compile_paths([path])
    assert campaigns
    assert [c.name for c in campaigns] == sorted(c.name for c in campaigns)
    for campaign in campaigns:
        assert CompiledCampaign.model_validate_json(campaign.to_json()) == campaign
        assert campaign.source == path.name
        ids = [n.id for n in campaign.nodes]
        assert len(ids) == len(set(ids))
        targets = {e.to for e in campaign.edges} | {t.entry for t in campaign.triggers}
        assert targets <= set(ids)
        for name, template in campaign.templates.items():
            assert template.name == name and template.content.body
            if template.content.body_file:
                on_disk = (path.parent / template.content.body_file).read_text(encoding="utf-8")
                assert template.content.body == on_disk


def test_example_lead_nurturing_ids_and_resources() -> None:
    """Collisions get `_2`, `_3` ...; segments and scores reached from the flow are carried."""
    campaigns = {c.name: c for c in compile_paths([EXAMPLES / "lead_nurturing.cadence"])}
    nurture = campaigns["lead_nurturing"]
    ids = [n.id for n in nurture.nodes]
    assert ids[:4] == ["send_intro", "wait_2d", "if_1", "set_lead_stage"]
    assert [i for i in ids if i.startswith("wait_2d")] == [
        "wait_2d",
        "wait_2d_2",
        "wait_2d_3",
        "wait_2d_4",
    ]
    assert [i for i in ids if i.startswith("if_")] == ["if_1", "if_2", "if_3", "if_4", "if_5"]
    assert sorted(nurture.segments) == ["marketing_qualified"]
    assert sorted(nurture.scores) == ["engagement"]
    assert nurture.triggers[0].kind == "segment_enter"
    assert ("if_1", "set_lead_stage", "replied(intro)") in edges(nurture)
    assert nurture.node("enroll_sunset").kind == "enroll"


def test_example_ab_test_split_node() -> None:
    """The A/B node: test share, holdout share, metric, after, variants to their entries."""
    (campaign,) = compile_paths([EXAMPLES / "ab_subject_test.cadence"])
    split = campaign.node("ab_split_1")
    assert isinstance(split, ABSplitNode)
    assert (split.test_share, split.holdout_share) == (Decimal(20), Decimal(80))
    assert (split.metric, split.after_seconds) == ("opens", 4 * 3600)
    assert [(v.name, v.to) for v in split.variants] == [
        ("a", "send_spring_sale_a"),
        ("b", "send_spring_sale_b"),
    ]
    assert edges(campaign)[:4] == [
        ("ab_split_1", "send_spring_sale_a", "a 10%"),
        ("ab_split_1", "send_spring_sale_b", "b 10%"),
        ("ab_split_1", "send_spring_sale_a", "80% if a wins after 4h"),
        ("ab_split_1", "send_spring_sale_b", "80% if b wins after 4h"),
    ]
    assert sorted(campaign.segments) == ["newsletter_subscribers"]


def test_example_fanout_triggers() -> None:
    """Fan-out triggers keep their contact filter; two triggers enter one graph."""
    (campaign,) = compile_paths([EXAMPLES / "listing_fanout.cadence"])
    listed, dropped = campaign.triggers
    assert isinstance(listed, EventTriggerModel) and isinstance(dropped, EventTriggerModel)
    assert (listed.id, listed.event, listed.entry) == ("property_listed", "property_listed", "if_1")
    assert (dropped.id, dropped.entry) == ("price_dropped", "if_2")
    assert dropped.fanout is not None and model_to_expr(dropped.fanout) == ast.Compare(
        "in", ast.Path(("event", "property_id")), ast.Path(("contact", "saved_properties"))
    )
    assert campaign.templates["price_drop"].locales["es"].subject.startswith("Bajó")  # type: ignore[union-attr]


def test_example_property_interest_trigger() -> None:
    """count, within and where of an event trigger."""
    (campaign,) = compile_paths([EXAMPLES / "property_interest.cadence"])
    (trigger,) = campaign.triggers
    assert isinstance(trigger, EventTriggerModel)
    assert trigger.count is not None and (trigger.count.op, trigger.count.value) == (">=", 3)
    assert trigger.within_seconds == 7 * 86400
    assert trigger.where is not None
    assert [n.id for n in campaign.nodes][:3] == ["wait_1h", "send_property_details", "wait_1d"]


# ---------------------------------------------------------------------------- determinism


def test_same_source_same_bytes_across_loads() -> None:
    """Two independent loads give byte-identical JSON and the same version."""
    first = [c.to_json() for c in compile_paths([EXAMPLES / "education_enrollment.cadence"])]
    second = [c.to_json() for c in compile_paths([EXAMPLES / "education_enrollment.cadence"])]
    assert first == second


def _cli_bundle(path: Path, cwd: Path) -> bytes:
    completed = subprocess.run(
        [sys.executable, "-m", "cadence", "compile", "--compact", str(path)],
        cwd=cwd,
        capture_output=True,
        check=True,
    )
    return completed.stdout


def test_same_bytes_across_processes_and_directories(tmp_path: Path) -> None:
    """Another process, another working directory, the file moved elsewhere: same bytes."""
    for target in (tmp_path / "a", tmp_path / "deep" / "er" / "b"):
        target.mkdir(parents=True)
        shutil.copy(EXAMPLES / "welcome_series.cadence", target)
        shutil.copytree(EXAMPLES / "templates", target / "templates")
    here = (
        make_bundle(
            "welcome_series.cadence", compile_paths([EXAMPLES / "welcome_series.cadence"])
        ).to_json()
        + "\n"
    ).encode()
    moved = _cli_bundle(tmp_path / "a" / "welcome_series.cadence", tmp_path)
    deeper = _cli_bundle(Path("welcome_series.cadence"), tmp_path / "deep" / "er" / "b")
    assert here == moved == deeper
    bundle = json.loads(here)
    in_process = compile_paths([EXAMPLES / "welcome_series.cadence"])
    assert [c["version"] for c in bundle["campaigns"]] == [c.version for c in in_process]
    assert bundle["source"] == "welcome_series.cadence"


def test_version_is_the_hash_of_the_rest() -> None:
    """version = sha256 of the canonical JSON of every other field."""
    (campaign,) = compile_paths([EXAMPLES / "welcome_series.cadence"])
    data = json.loads(campaign.to_json())
    version = data.pop("version")
    assert version == hashlib.sha256(canonical_json(data).encode()).hexdigest()
    assert campaign.to_json() == canonical_json(campaign.to_data())
    assert "\n" not in campaign.to_json() and ": " not in campaign.to_json()[:200]


def test_tampered_json_is_refused() -> None:
    """A stored version whose content was edited no longer loads."""
    (campaign,) = compile_paths([EXAMPLES / "welcome_series.cadence"])
    tampered = campaign.to_json().replace('"seconds":259200', '"seconds":1')
    assert tampered != campaign.to_json()
    with pytest.raises(ValidationError, match="does not match"):
        CompiledCampaign.model_validate_json(tampered)


def test_broken_graphs_are_refused_even_with_a_fresh_version() -> None:
    """A dangling `next` or a repeated id is refused whatever the version says."""
    (campaign,) = compile_paths([EXAMPLES / "welcome_series.cadence"])
    data = campaign.to_data()
    del data["version"]
    dangling = json.loads(json.dumps(data))
    dangling["nodes"][0]["next"] = "nowhere"
    with pytest.raises(ValidationError, match="send_welcome -> nowhere"):
        CompiledCampaign.model_validate(dangling)
    assert node_targets(campaign.node("if_1")) == ["send_engaged_user", "send_re_engagement"]
    assert node_targets(campaign.node("end")) == []
    repeated = json.loads(json.dumps(data))
    repeated["nodes"][1]["id"] = "send_welcome"
    with pytest.raises(ValidationError, match="not unique: send_welcome"):
        CompiledCampaign.model_validate(repeated)
    assert CompiledCampaign.model_validate(data).version == campaign.version


def test_one_character_in_a_body_file_changes_the_version(tmp_path: Path) -> None:
    """Body files are part of the version: the compiled campaign is self-contained."""
    shutil.copy(EXAMPLES / "welcome_series.cadence", tmp_path)
    shutil.copytree(EXAMPLES / "templates", tmp_path / "templates")
    path = tmp_path / "welcome_series.cadence"
    (before,) = compile_paths([path])
    body = tmp_path / "templates" / "getting_started.html.j2"
    text = body.read_text(encoding="utf-8")
    index = text.index("<p>") + 3
    body.write_text(text[:index] + "X" + text[index + 1 :], encoding="utf-8")
    (after,) = compile_paths([path])
    assert before.version != after.version
    assert before.nodes == after.nodes
    assert after.templates["getting_started"].content.body[index] == "X"


def test_layout_and_comments_do_not_change_the_version(tmp_path: Path) -> None:
    """Only meaning counts: reformatting a file keeps its version."""
    spread = (
        'template hi email {\n  subject "Hi"\n  body "b"\n}\n\n'
        "when x {\n  wait 2d  # pause\n  send email hi\n}\n"
    )
    dense = 'template hi email { subject "Hi" body "b" } when x wait 2d send email hi'
    (a,) = compile_text(tmp_path, spread)
    (b,) = compile_text(tmp_path, dense)
    assert a.to_json() == b.to_json()


def test_imported_files_are_named_relative_to_the_root(tmp_path: Path) -> None:
    """`source` is relative to the root file's folder, never absolute."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "shared.cadence").write_text(
        _email("hi") + "campaign library_campaign { on launch { send email hi } }\n"
    )
    main_file = tmp_path / "main.cadence"
    main_file.write_text('import "lib/shared.cadence"\nwhen signup send email hi\n')
    campaigns = {c.name: c for c in compile_paths([main_file])}
    assert campaigns["library_campaign"].source == "lib/shared.cadence"
    assert campaigns["main_signup"].source == "main.cadence"
    assert str(tmp_path) not in "".join(c.to_json() for c in campaigns.values())


# ---------------------------------------------------------------------------- graph shapes


def test_empty_else_and_nested_branches(tmp_path: Path) -> None:
    """Without `else`, the else edge goes to the step after the `if`; nesting joins outward."""
    campaign = only(
        _email("a")
        + _email("b")
        + _email("c")
        + """
        when x {
          if opened(a) {
            if clicked(a) { send email b }
          }
          send email c
        }
        """,
        tmp_path,
    )
    assert edges(campaign) == [
        ("if_1", "if_2", "yes"),
        ("if_1", "send_c", "else"),
        ("if_2", "send_b", "yes"),
        ("if_2", "send_c", "else"),
        ("send_b", "send_c", None),
        ("send_c", "end", None),
    ]


def test_repeated_steps_get_counter_suffixes(tmp_path: Path) -> None:
    """The second `send email a` is send_a_2; names depend on the walk, not on spans."""
    campaign = only(
        _email("a") + "when x { send email a wait 1d12h send email a wait 1d12h send email a }",
        tmp_path,
    )
    assert [n.id for n in campaign.nodes] == [
        "send_a",
        "wait_1d12h",
        "send_a_2",
        "wait_1d12h_2",
        "send_a_3",
        "end",
    ]


def test_random_split_and_wait_for(tmp_path: Path) -> None:
    """Random split shares, and both ways out of a `wait for`."""
    campaign = only(
        _email("a")
        + _email("b")
        + """
        when x {
          split { treated 90%: send email a  holdout 10%: { tag add "holdout" } }
          wait for converted up to 2d
        }
        """,
        tmp_path,
    )
    split = campaign.node("split_1")
    assert isinstance(split, RandomSplitNode)
    assert [(b.name, b.share, b.to) for b in split.branches] == [
        ("treated", Decimal(90), "send_a"),
        ("holdout", Decimal(10), "tag_add_holdout"),
    ]
    wait_for = campaign.node("wait_for_converted")
    assert isinstance(wait_for, WaitForNode) and wait_for.timeout_seconds == 2 * 86400
    assert edges(campaign)[-2:] == [
        ("wait_for_converted", "end", "converted"),
        ("wait_for_converted", "end", "timeout 2d"),
    ]


def test_several_triggers_share_one_graph(tmp_path: Path) -> None:
    """Each trigger enters at its own node; ids stay unique across triggers."""
    campaign = only(
        _email("a")
        + """
        campaign c {
          on contact_created { send email a }
          when signup { send email a }
          when signup count>=2 { wait 1d }
        }
        """,
        tmp_path,
    )
    assert [(t.id, t.entry) for t in campaign.triggers] == [
        ("contact_created", "send_a"),
        ("signup", "send_a_2"),
        ("signup_2", "wait_1d"),
    ]


def test_templates_only_those_sent_with_locales(tmp_path: Path) -> None:
    """Only sent templates are carried; a locale inherits the subject and body it omits."""
    (tmp_path / "es.html").write_text("<p>Hola</p>", encoding="utf-8")
    campaign = only(
        """
        template unused email { subject "u" body "u" }
        template t email {
          subject "Hello" preheader "Pre" body "<p>Hi</p>"
          locale "es" { body file "es.html" }
          locale "fr" { subject "Bonjour" }
        }
        when x send email t
        """,
        tmp_path,
    )
    assert list(campaign.templates) == ["t"]
    template = campaign.templates["t"]
    es, fr = template.locales["es"], template.locales["fr"]
    assert (es.subject, es.preheader, es.body, es.body_file) == (
        "Hello",
        None,
        "<p>Hola</p>",
        "es.html",
    )
    assert (fr.subject, fr.body) == ("Bonjour", "<p>Hi</p>")


# ---------------------------------------------------------------------------- type inference


TYPE_CASES = [
    (
        "explicit wins",
        "campaign c { type recurring on launch { send email a } }",
        "recurring",
        False,
    ),
    ("at", "at 2026-12-01T09:00 local { send email a }", "broadcast", True),
    ("on launch", "on launch { send email a }", "broadcast", True),
    ("every", "every monday 09:00 local { send email a }", "recurring", True),
    ("event", "when signup send email a", "triggered", True),
    ("contact_created", "on contact_created { send email a }", "triggered", True),
    ("segment_enter", "segment s = x > 1\non segment_enter s { send email a }", "triggered", True),
    (
        "a/b split",
        "when signup { split 20% test winner by opens after 4h {"
        " a: send email a  b: send email b } }",
        "ab_test",
        True,
    ),
    (
        "a/b beats every",
        "every monday { split 20% test winner by opens after 4h {"
        " a: send email a  b: send email b } }",
        "ab_test",
        True,
    ),
    (
        "campaign drip",
        "campaign c { on contact_created {"
        " send email a wait 1d send email b wait 2d send email a } }",
        "drip",
        True,
    ),
    (
        "drip from launch",
        "campaign c { on launch { send email a wait 1d send email b wait 2d send email a } }",
        "drip",
        True,
    ),
    (
        "one wait is not a drip",
        "campaign c { on launch { send email a wait 1d send email b } }",
        "broadcast",
        True,
    ),
    (
        "top-level automation is never a drip",
        "when signup { send email a wait 1d send email b wait 2d send email a }",
        "triggered",
        True,
    ),
    (
        "recurring beats drip",
        "campaign c { every monday { send email a wait 1d send email b wait 2d send email a } }",
        "recurring",
        True,
    ),
    (
        "mixed launch and event",
        "campaign c { on launch { send email a } when signup { send email b } }",
        "triggered",
        True,
    ),
]


@pytest.mark.parametrize(
    ("source", "expected", "inferred"),
    [case[1:] for case in TYPE_CASES],
    ids=[case[0] for case in TYPE_CASES],
)
def test_type_inference(tmp_path: Path, source: str, expected: str, inferred: bool) -> None:
    """The documented rule, one case per line of docs/compiled-format.md."""
    campaign = only(_email("a") + _email("b") + source, tmp_path)
    assert (campaign.type, campaign.type_inferred) == (expected, inferred)


def test_defaults(tmp_path: Path) -> None:
    """A top-level automation gets every default."""
    campaign = only(_email("a") + "when signup send email a", tmp_path)
    s = campaign.settings
    assert (s.priority, s.max_sends, s.approval) == (5, 20, "implied")
    assert (s.channels, s.channels_explicit) == (("email",), False)
    assert s.audience is None and s.timezone is None and s.send_window is None
    assert campaign.display_name == "Main signup" and campaign.kind is None


# ---------------------------------------------------------------------------- bad input


def test_unchecked_workspace_gets_check_errors_not_crashes(tmp_path: Path) -> None:
    """Handed an unchecked workspace, the compiler lists what it cannot resolve."""
    workspace = load_text(
        """
        template t email { subject "s" body file "missing.html" }
        campaign c {
          type weekly
          approval maybe
          send_window 09:00-17:00 weekdayz
          on segment_enter ghosts { send email nope  enroll nowhere  send email t }
          when x { wait for clicked(t) }
        }
        """,
        "bad.cadence",
        tmp_path,
    )
    with pytest.raises(CadenceCheckError) as caught:
        compile_workspace(workspace)
    codes = sorted(d.code for d in caught.value.diagnostics)
    assert codes == ["E101", "E102", "E103", "E110", "E111", "E114", "E207", "E217"]
    unknown = next(d for d in caught.value.diagnostics if d.code == "E101")
    assert (unknown.line, unknown.message) == (7, "unknown template `nope`")
    assert unknown.source_line is not None and "send email nope" in unknown.source_line


def test_compile_paths_runs_the_checker(tmp_path: Path) -> None:
    """compile_paths refuses files with check errors (the checker's, not the compiler's)."""
    path = tmp_path / "main.cadence"
    path.write_text(_email("a") + "when x { exit send email a }")
    with pytest.raises(CadenceCheckError) as caught:
        compile_paths([path])
    assert "E206" in {d.code for d in caught.value.diagnostics}
    path.write_text("when x {")
    with pytest.raises(CadenceSyntaxError):
        compile_paths([path])


def test_workspace_with_syntax_errors_is_refused(tmp_path: Path) -> None:
    """compile_workspace does not compile half a workspace."""
    (tmp_path / "broken.cadence").write_text("template t email {")
    main_file = tmp_path / "main.cadence"
    main_file.write_text('import "broken.cadence"\nwhen x send email t\n')
    with pytest.raises(CadenceSyntaxError):
        compile_workspace(load([main_file]))


def test_body_file_that_is_not_utf8(tmp_path: Path) -> None:
    """A body file with bad bytes is a diagnostic at the path, not a UnicodeDecodeError."""
    (tmp_path / "b.html").write_bytes(b"\xff\xfe bad")
    workspace = load_text(
        'template t email { subject "s" body file "b.html" } when x send email t',
        "m.cadence",
        tmp_path,
    )
    with pytest.raises(CadenceCheckError, match="not UTF-8"):
        compile_workspace(workspace)


# ---------------------------------------------------------------------------- CLI


def test_cli_compile_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """stdout by default, -o writes the same bundle; exit 0."""
    source = EXAMPLES / "weekday_broadcast.cadence"
    assert main(["compile", str(source)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["format_version"] == 1 and printed["source"] == "weekday_broadcast.cadence"
    assert [c["name"] for c in printed["campaigns"]] == [
        "december_broadcast",
        "weekly_market_update",
    ]
    out = tmp_path / "out.json"
    assert main(["compile", str(source), "-o", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == printed
    assert "compiled 2 campaigns" in capsys.readouterr().err


def test_cli_compile_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Check errors are rendered on stderr with exit 1; a missing file is usage, exit 2."""
    bad = tmp_path / "bad.cadence"
    bad.write_text("when x send email nope\n")
    out = tmp_path / "out.json"
    assert main(["compile", str(bad), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error[E101]" in captured.err and "send email nope" in captured.err
    assert not out.exists()
    assert main(["compile", str(tmp_path / "missing.cadence")]) == 2


def test_cli_compile_warnings_do_not_stop_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Warnings go to stderr; the bundle still goes to stdout and the exit code is 0."""
    source = tmp_path / "draft.cadence"
    source.write_text(_email("a") + "when signup { send email a ... }\n")
    assert main(["compile", "--compact", str(source)]) == 0
    captured = capsys.readouterr()
    assert "warning[W304]" in captured.err
    bundle = json.loads(captured.out)
    assert captured.out.count("\n") == 1
    assert [n["id"] for n in bundle["campaigns"][0]["nodes"]] == ["send_a", "end"]


# ---------------------------------------------------------------------------- expressions


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
DECIMALS = st.decimals(allow_nan=False, allow_infinity=False)

LEAVES: st.SearchStrategy[ast.Expr] = st.one_of(
    st.builds(ast.NumberLit, DECIMALS),
    st.builds(ast.StringLit, st.text()),
    st.builds(ast.BoolLit, st.booleans()),
    st.builds(ast.DurationLit, st.integers(1, 10 * 366 * 86400)),
    st.builds(ast.TimeLit, st.integers(0, 23), st.integers(0, 59)),
    st.builds(ast.DateLit, st.dates(dt.date(1900, 1, 1), dt.date(2200, 12, 31))),
    st.builds(
        ast.DateTimeLit,
        st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 12, 31)),
    ),
    st.builds(ast.PercentLit, st.decimals(0, 100, allow_nan=False)),
    st.builds(ast.MoneyLit, DECIMALS, st.from_regex(r"[A-Z]{3}", fullmatch=True)),
    st.builds(ast.Path, st.lists(NAMES, min_size=1, max_size=3).map(tuple)),
)


def _extend(children: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    many = st.lists(children, max_size=3).map(tuple)
    return st.one_of(
        st.builds(ast.ListLit, many),
        st.builds(ast.Call, NAMES, many),
        st.builds(ast.Unary, st.sampled_from(["not", "-"]), children),
        st.builds(
            ast.Binary, st.sampled_from(["and", "or", "+", "-", "*", "/"]), children, children
        ),
        st.builds(
            ast.Compare,
            st.sampled_from(
                ["=", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "startswith"]
            ),
            children,
            children,
        ),
        st.builds(ast.Within, children, st.builds(ast.DurationLit, st.integers(1, 10**8))),
    )


EXPRESSIONS = st.recursive(LEAVES, _extend, max_leaves=12)
EXPR_ADAPTER: TypeAdapter[Any] = TypeAdapter(ExprModel)


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS)
def test_expression_round_trip(expr: ast.Expr) -> None:
    """AST -> model -> JSON -> model -> AST gives back an equal AST."""
    model = expr_to_model(expr)
    assert model_to_expr(model) == expr
    text = EXPR_ADAPTER.dump_json(model)
    again = EXPR_ADAPTER.validate_json(text)
    assert again == model
    assert model_to_expr(again) == expr
    assert EXPR_ADAPTER.dump_json(again) == text


def test_round_trip_of_parsed_expressions() -> None:
    """Expressions the parser builds (with spans) come back equal, spans aside."""
    program = load_text(
        'segment s = not (a.b >= -2.50 * 3 or c in ["x", "y\\"z"]) and last(e) within 1d12h '
        "and d = 2026-12-01 and t < 2026-12-01T09:30 and p = 12.5% and m >= 0.05 USD "
        'and h = 09:00 and count(ev, 7d) > 1 and n startswith "a" and w = 30m'
    )
    ((_, decl),) = list(program.declarations())
    assert isinstance(decl, ast.SegmentDecl)
    assert model_to_expr(expr_to_model(decl.expr)) == decl.expr


def test_format_duration() -> None:
    """Durations read as written in ids and labels: days are the largest unit."""
    assert [format_duration(s) for s in (30, 900, 3600, 129600, 604800, 90061)] == [
        "30s",
        "15m",
        "1h",
        "1d12h",
        "7d",
        "1d1h1m1s",
    ]


def test_load_is_used_by_compile_paths(tmp_path: Path) -> None:
    """compile_workspace on a loaded workspace matches compile_paths."""
    path = EXAMPLES / "property_interest.cadence"
    assert compile_workspace(load([path])) == compile_paths([path])


def test_a_template_says_which_fields_of_the_contact_and_the_event_it_reads(
    tmp_path: Path,
) -> None:
    """By name, through filters and nested paths; a record read any other way (an index,
    a loop over it) is None, since then any of its fields may matter."""
    (campaign,) = compile_text(
        tmp_path,
        """
template named email {
  subject "Hi {{ contact.first_name | default('you') }} in {{ contact.address.zip }}"
  body "{{ event.price | money }}"
  locale "es" { subject "Hola {{ contact.nickname }}" body "x" }
}
template looped email {
  subject "Hi"
  body "{% for k in contact %}{{ k }}{% endfor %}{{ event['x'] }}"
}
template plain email { subject "Hi" body "x" }
campaign c { when bought { send email named  send email looped  send email plain } }
""",
    )
    reads = {name: t.record_reads for name, t in campaign.templates.items()}
    assert reads["named"] == {
        "contact": {"first_name", "address", "nickname"},
        "event": {"price"},
    }
    assert reads["looped"] == {"contact": None, "event": None}
    assert reads["plain"] == {"contact": frozenset(), "event": frozenset()}


def test_a_template_says_which_fields_it_reads_more_than_the_kind_of(tmp_path: Path) -> None:
    """Printed, as they are or through filters that read only their kind, fields render
    alike for every value of a kind; tested, computed with or formatted, their values
    matter. A field of a printed record is printed."""
    (campaign,) = compile_text(
        tmp_path,
        """
template offer email {
  subject "Hi {{ contact.first_name | default('you') | upper }} {{ contact.address.zip }}"
  preheader "{% if contact.plan == 'gold' %}{{ contact.since }}{% endif %}{{ contact.visits + 1 }}"
  body "{{ event.price | money }}{{ event.sku ~ contact.nickname }}{{ contact.x | d(contact.y) }}"
}
template looped email { subject "Hi" body "{% for k in contact %}{{ k }}{% endfor %}" }
template plain email { subject "Hi {{ contact.first_name }}" body "x" }
campaign c { when bought { send email offer  send email looped  send email plain } }
""",
    )
    values = {name: t.value_reads for name, t in campaign.templates.items()}
    assert values["offer"] == {"contact": {"plan", "visits", "y"}, "event": {"price"}}
    assert values["looped"] == {"contact": None, "event": frozenset()}
    assert values["plain"] == {"contact": frozenset(), "event": frozenset()}
