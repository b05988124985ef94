"""Hypothesis strategies that build random, valid Cadence ASTs: one for every kind of node.

Public API (each returns a strategy):

- `names()`: identifiers the parser reads as a NAME wherever a name may stand.
- `durations()`, `times()`, `moments()`, `percents()`, `money()`, `strings()`: literals.
- `literals()`, `expressions()`: expressions of every kind in `cadence.dsl.ast`.
- `steps()`, `step_lists()`: every step kind, `if`/`split` nested to a small depth.
- `triggers()`, `trigger_blocks()`, `settings()`: what campaigns are made of.
- `templates()`, `scores()`, `campaigns()`, `declarations()`, `programs()`: whole files.
- `keywords()`, `reserved_words()`, `probe_program()`: which words may be names (below).

"Valid" means that the printed program parses back to the same tree: every value stays in
the ranges the parser accepts (durations from 1s to ten years, percentages up to 100,
times of day, whole counts, the years a campaign can be scheduled in), templates never set
both `body` and `body file`, and names avoid the language's keywords. Which keywords? The
lexer is contextual, so a keyword is only reserved where the grammar could also read it as
that keyword, and that set depends on the position: `segment send = x` parses, `wait for
send` does not, `when x where a within 7d` changes meaning. Rather than track positions,
names exclude every word the grammar spells out; tests/test_fmt.py checks by parsing that
such words do break some name position.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from functools import cache
from importlib import resources

from hypothesis import strategies as st

from cadence.dsl import ast
from cadence.dsl.parser import SCHEDULE_YEARS
from cadence.text import nfc

__all__ = [
    "calls",
    "campaigns",
    "declarations",
    "durations",
    "expressions",
    "keywords",
    "literals",
    "moments",
    "money",
    "names",
    "paths",
    "percents",
    "probe_program",
    "programs",
    "reserved_words",
    "scores",
    "settings",
    "simple_steps",
    "step_lists",
    "steps",
    "strings",
    "templates",
    "times",
    "trigger_blocks",
    "triggers",
]

MAX_DURATION = 10 * 366 * 86400  # the parser's upper bound (ten years)


@cache
def keywords() -> frozenset[str]:
    """Every word the grammar spells out (`send`, `within`, `each`, ...), read from grammar.lark."""
    grammar = resources.files("cadence.dsl").joinpath("grammar.lark").read_text("utf-8")
    grammar = re.sub(r"//[^\n]*", "", grammar)
    return frozenset(re.findall(r'"([a-z_][a-z0-9_]*)"', grammar))


@cache
def reserved_words() -> frozenset[str]:
    """The keywords that cannot stand as a name somewhere: found by parsing, not by listing.

    Each keyword is put into every name position of `probe_program` at once; it is reserved
    when the printed probe does not parse back to the same tree.
    """
    from cadence.dsl.fmt import format_program
    from cadence.dsl.parser import parse_text
    from cadence.errors import CadenceError

    reserved = set()
    for word in keywords():
        probe = probe_program(word)
        try:
            same = parse_text(format_program(probe)) == probe
        except CadenceError:
            same = False
        if not same:
            reserved.add(word)
    return frozenset(reserved)


def _step_endings(w: str) -> list[tuple[ast.Step, ...]]:
    """Step lists ending in each kind of token a step can end with (a name, a call, ...)."""
    day = ast.DurationLit(86400)
    return [
        (),
        (ast.Send(w, w),),
        (ast.Wait(day),),
        (ast.WaitUntil(ast.TimeLit(9, 0), False),),
        (ast.WaitUntil(ast.TimeLit(9, 0), True),),
        (ast.WaitFor(ast.Path((w,)), None),),
        (ast.WaitFor(ast.Call(w, ()), None),),
        (ast.WaitFor(ast.Call("count", ()), None),),
        (ast.WaitFor(ast.Path((w,)), day),),
        (ast.SetAttr(ast.Path((w,)), ast.Path((w,))),),
        (ast.SetAttr(ast.Path((w,)), ast.NumberLit(Decimal(1))),),
        (ast.SetAttr(ast.Path((w,)), ast.Within(ast.Path((w,)), day)),),
        (ast.Tag("add", "x"),),
        (ast.AssignAgent(w),),
        (ast.Notify(w, "x"),),
        (ast.Enroll(w),),
        (ast.Exit(None),),
        (ast.Exit("x"),),
        (ast.Placeholder(),),
        (ast.Send(w, w), ast.Wait(day)),
    ]


def probe_program(word: str) -> ast.Program:
    """A program with `word` in every position where the language takes a name."""
    w = word
    path = ast.Path((w,))
    day = ast.DurationLit(86400)
    nine = ast.TimeLit(9, 0)
    usd = ast.MoneyLit(Decimal(1), "USD")
    half = ast.PercentLit(Decimal(50))
    body: tuple[ast.Step, ...] = (
        ast.Send(w, w),
        ast.WaitFor(path, None),
        ast.WaitFor(ast.Call(w, (path,)), day),
        ast.SetAttr(ast.Path((w, w)), path),
        ast.AssignAgent(w),
        ast.Notify(w, "x"),
        ast.Enroll(w),
        ast.If((ast.IfBranch(path, (ast.Enroll(w),)),), (ast.Send(w, w),)),
        ast.ABSplit(
            half,
            w,
            day,
            (
                ast.SplitBranch(w, None, (ast.Enroll(w),)),
                ast.SplitBranch(w, None, (ast.Send(w, w), ast.Wait(day))),
            ),
        ),
        ast.RandomSplit((ast.SplitBranch(w, half, (ast.Enroll(w),)),) * 2),
        ast.WaitFor(path, None),
    )
    # A branch name right after each way a branch can end.
    endings: tuple[ast.Step, ...] = (
        *(
            split
            for last in _step_endings(w)
            for split in (
                ast.RandomSplit((ast.SplitBranch("p", half, last), ast.SplitBranch(w, half, ()))),
                ast.ABSplit(
                    half,
                    w,
                    day,
                    (ast.SplitBranch("p", None, last), ast.SplitBranch(w, None, (ast.Enroll(w),))),
                ),
            )
        ),
    )
    settings: tuple[ast.Setting, ...] = (
        ast.NameSetting("type", w),
        ast.NameSetting("kind", w),
        ast.ExprSetting("audience", path),
        ast.ChannelsSetting((w, w)),
        ast.ChannelsSetting((w,)),
        ast.CapSetting(w, 3, day),
        ast.SendWindowSetting(nine, nine, False, (w,)),
        ast.SendWindowSetting(nine, nine, True, (w, w)),
        ast.QuietHoursSetting(w, nine, nine, True),
        ast.CostSetting((ast.CostItem(w, usd), ast.CostItem(w, usd))),
        ast.NameSetting("approval", w),
        ast.ExprSetting("goal", path),
    )
    triggers = (
        ast.TriggerBlock(ast.EventTrigger(w), body, braced=False),
        ast.TriggerBlock(ast.EventTrigger(w, keyword="on"), body),
        ast.TriggerBlock(ast.EventTrigger(w, where=path, fanout=path), (ast.Enroll(w),)),
        ast.TriggerBlock(ast.EventTrigger(w, where=path), (ast.SetAttr(path, path),), braced=False),
        ast.TriggerBlock(ast.SegmentEnterTrigger(w), body),
        ast.TriggerBlock(ast.EveryTrigger((w,), None, None, False), body, braced=False),
        ast.TriggerBlock(ast.EveryTrigger((w, w), None, None, False), body),
        ast.TriggerBlock(ast.LaunchTrigger(), endings),
    )
    expr = ast.Binary(
        "and",
        ast.Compare("in", ast.Path((w, w)), ast.ListLit((path,))),
        ast.Call(w, (path, ast.Call(w, ()))),
    )
    return ast.Program(
        (
            ast.SegmentDecl(w, expr),
            ast.SchemaDecl((ast.SchemaField(w, w), ast.SchemaField(w, w))),
            ast.TemplateDecl(w, w, ast.TemplateContent(body=ast.StringLit("x")), (), True),
            ast.TemplateDecl(w, w, ast.TemplateContent(subject=ast.StringLit("x")), (), False),
            ast.ScoreDecl(
                w,
                (
                    ast.ScorePoints(path, None, Decimal(1), True),
                    ast.ScorePoints(ast.Call(w, (path,)), day, Decimal(1), False),
                    ast.ScorePoints(path, None, Decimal(-1), False),
                    ast.ScoreDecay(half, day),
                    ast.ScorePoints(path, day, Decimal(1), True),
                ),
            ),
            ast.CampaignDecl(w, None, settings, triggers),
            *triggers,
            ast.SegmentDecl(w, path),
        )
    )


@cache
def names() -> st.SearchStrategy[str]:
    """A valid identifier, `[a-z_][a-z0-9_]*`, sometimes a keyword that is usable as a name."""
    common = st.sampled_from(["welcome", "email", "sms", "lead_score", "contact", "any", "x"])
    usable_keywords = st.sampled_from(sorted(keywords() - reserved_words()))
    generated = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
    return st.one_of(common, usable_keywords, generated).filter(lambda n: n not in reserved_words())


@cache
def _decimals(max_places: int = 3, max_digits: int = 7) -> st.SearchStrategy[Decimal]:
    """A non-negative decimal as a person would write it (`3`, `2.50`, `0.001`)."""
    pattern = rf"[0-9]{{1,{max_digits}}}(\.[0-9]{{1,{max_places}}})?"
    return st.from_regex(pattern, fullmatch=True).map(Decimal)


@cache
def durations() -> st.SearchStrategy[ast.DurationLit]:
    """A duration between one second and ten years, often a round number of a unit."""
    round_ones = st.builds(
        lambda n, unit: n * unit,
        st.integers(1, 400),
        st.sampled_from([1, 60, 3600, 86400, 7 * 86400]),
    ).filter(lambda s: s <= MAX_DURATION)
    return st.one_of(round_ones, st.integers(1, MAX_DURATION)).map(ast.DurationLit)


@cache
def times() -> st.SearchStrategy[ast.TimeLit]:
    """A time of day."""
    return st.builds(ast.TimeLit, st.integers(0, 23), st.integers(0, 59))


@cache
def moments(
    first_year: int = dt.MINYEAR, last_year: int = dt.MAXYEAR
) -> st.SearchStrategy[ast.DateLit | ast.DateTimeLit]:
    """A date, or a date and time to the second, in the given years."""
    dates = st.dates(dt.date(first_year, 1, 1), dt.date(last_year, 12, 31)).map(ast.DateLit)
    datetimes = st.datetimes(
        dt.datetime(first_year, 1, 1), dt.datetime(last_year, 12, 31, 23, 59, 59)
    ).map(lambda d: ast.DateTimeLit(d.replace(microsecond=0, fold=0)))
    return st.one_of(dates, datetimes)


def scheduled_moments() -> st.SearchStrategy[ast.DateLit | ast.DateTimeLit]:
    """A `starts`, `ends` or `at` moment: only in the years the parser lets a campaign use."""
    return moments(SCHEDULE_YEARS[0], SCHEDULE_YEARS[-1])


@cache
def percents() -> st.SearchStrategy[ast.PercentLit]:
    """A percentage from 0% to 100%."""
    return _decimals(max_digits=3).filter(lambda d: d <= 100).map(ast.PercentLit)


@cache
def money() -> st.SearchStrategy[ast.MoneyLit]:
    """An amount in a three-letter currency."""
    return st.builds(ast.MoneyLit, _decimals(), st.from_regex(r"[A-Z]{3}", fullmatch=True))


@cache
def strings() -> st.SearchStrategy[str]:
    """Any text a string literal can hold, quotes, backslashes, newlines and tabs included,
    in NFC: the parser reads every literal so (`cadence.text`)."""
    tricky = st.sampled_from(['say "hi"', "back\\slash", "two\nlines", "tab\there", "\\n", ""])
    return st.one_of(tricky, st.text(max_size=20).map(nfc))


@cache
def literals() -> st.SearchStrategy[ast.Expr]:
    """A literal of every kind except lists (see `expressions`)."""
    return st.one_of(
        _decimals().map(ast.NumberLit),
        strings().map(ast.StringLit),
        st.booleans().map(ast.BoolLit),
        durations(),
        times(),
        moments(),
        percents(),
        money(),
    )


@cache
def paths() -> st.SearchStrategy[ast.Path]:
    """A name or dotted path: `lead_score`, `contact.city`."""
    return st.lists(names(), min_size=1, max_size=3).map(lambda parts: ast.Path(tuple(parts)))


@cache
def _call(args: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Call]:
    name = st.one_of(st.sampled_from(["count", "opened", "clicked", "last"]), names())
    return st.builds(lambda n, a: ast.Call(n, tuple(a)), name, st.lists(args, max_size=3))


@cache
def calls() -> st.SearchStrategy[ast.Call]:
    """A function call with simple arguments: `clicked(welcome)`, `count(viewed, 7d)`."""
    return _call(st.one_of(paths(), literals()))


@cache
def expressions(max_leaves: int = 12) -> st.SearchStrategy[ast.Expr]:
    """Any expression: literals, lists, paths, calls, unary, binary, comparisons, `within`."""
    leaves = st.one_of(literals(), paths())

    def extend(inner: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
        binary_ops = st.sampled_from(["and", "or", "+", "-", "*", "/"])
        compare_ops = st.sampled_from(
            ["=", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "startswith"]
        )
        return st.one_of(
            st.builds(ast.Unary, st.sampled_from(["not", "-"]), inner),
            st.builds(ast.Binary, binary_ops, inner, inner),
            st.builds(ast.Compare, compare_ops, inner, inner),
            st.builds(ast.Within, inner, durations()),
            _call(inner),
            st.lists(inner, max_size=3).map(lambda items: ast.ListLit(tuple(items))),
        )

    return st.recursive(leaves, extend, max_leaves=max_leaves)


@cache
def _events() -> st.SearchStrategy[ast.Call | ast.Path]:
    return st.one_of(calls(), paths())


@cache
def simple_steps() -> st.SearchStrategy[ast.Step]:
    """A step that holds no other steps."""
    return st.one_of(
        st.builds(ast.Send, names(), names()),
        st.builds(ast.Wait, durations()),
        st.builds(ast.WaitUntil, times(), st.booleans()),
        st.builds(ast.WaitFor, _events(), st.one_of(st.none(), durations())),
        st.builds(ast.SetAttr, paths(), expressions(max_leaves=4)),
        st.builds(ast.Tag, st.sampled_from(["add", "remove"]), strings()),
        st.builds(ast.AssignAgent, names()),
        st.builds(ast.Notify, names(), strings()),
        st.builds(ast.Enroll, names()),
        st.builds(ast.Exit, st.one_of(st.none(), strings())),
        st.just(ast.Placeholder()),
    )


@cache
def _if(inner: st.SearchStrategy[tuple[ast.Step, ...]]) -> st.SearchStrategy[ast.Step]:
    branch = st.builds(ast.IfBranch, expressions(max_leaves=4), inner)
    return st.builds(
        lambda branches, else_steps: ast.If(tuple(branches), else_steps),
        st.lists(branch, min_size=1, max_size=3),
        st.one_of(st.none(), inner),
    )


@cache
def _ab_split(inner: st.SearchStrategy[tuple[ast.Step, ...]]) -> st.SearchStrategy[ast.Step]:
    branch = st.builds(ast.SplitBranch, names(), st.none(), inner)
    return st.builds(
        lambda share, metric, after, branches: ast.ABSplit(share, metric, after, tuple(branches)),
        percents(),
        names(),
        durations(),
        st.lists(branch, min_size=1, max_size=3),
    )


@cache
def _random_split(inner: st.SearchStrategy[tuple[ast.Step, ...]]) -> st.SearchStrategy[ast.Step]:
    branch = st.builds(ast.SplitBranch, names(), percents(), inner)
    return st.lists(branch, min_size=1, max_size=3).map(lambda b: ast.RandomSplit(tuple(b)))


@cache
def steps(max_depth: int = 2) -> st.SearchStrategy[ast.Step]:
    """Any step; `if` and both `split` forms nest other steps up to `max_depth` levels."""
    if max_depth <= 0:
        return simple_steps()
    inner = step_lists(max_depth - 1)
    return st.one_of(
        simple_steps(),
        simple_steps(),  # twice: keep nested blocks from crowding out the common case
        _if(inner),
        _ab_split(inner),
        _random_split(inner),
    )


@cache
def step_lists(max_depth: int = 2, max_size: int = 4) -> st.SearchStrategy[tuple[ast.Step, ...]]:
    """A step list, possibly empty."""
    return st.lists(steps(max_depth), max_size=max_size).map(tuple)


@cache
def triggers() -> st.SearchStrategy[ast.Trigger]:
    """Every trigger kind, event triggers with any combination of their options."""
    counts = st.builds(
        ast.CountClause, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), st.integers(0, 999)
    )
    event = st.builds(
        ast.EventTrigger,
        names(),
        count=st.one_of(st.none(), counts),
        within=st.one_of(st.none(), durations()),
        where=st.one_of(st.none(), expressions(max_leaves=4)),
        fanout=st.one_of(st.none(), expressions(max_leaves=4)),
        keyword=st.sampled_from(["when", "on"]),
    )
    every_days = st.builds(
        lambda days, time, local: ast.EveryTrigger(tuple(days), None, time, local),
        st.lists(names(), min_size=1, max_size=3),
        st.one_of(st.none(), times()),
        st.booleans(),
    )
    every_interval = st.builds(
        lambda interval, time, local: ast.EveryTrigger((), interval, time, local),
        durations(),
        st.one_of(st.none(), times()),
        st.booleans(),
    )
    return st.one_of(
        event,
        st.just(ast.ContactCreatedTrigger()),
        st.builds(ast.SegmentEnterTrigger, names()),
        st.just(ast.LaunchTrigger()),
        st.builds(ast.AtTrigger, scheduled_moments(), st.booleans()),
        every_days,
        every_interval,
    )


@cache
def trigger_blocks() -> st.SearchStrategy[ast.TriggerBlock]:
    """A trigger and its steps, written with braces or bare (`when x wait 1h send email y`)."""
    return st.builds(
        lambda trigger, body, braced: ast.TriggerBlock(trigger, body, braced=braced or not body),
        triggers(),
        step_lists(),
        st.booleans(),
    )


@cache
def settings() -> st.SearchStrategy[ast.Setting]:
    """Every campaign setting."""
    channel = st.one_of(st.none(), names())
    return st.one_of(
        st.builds(ast.NameSetting, st.sampled_from(["type", "kind", "approval"]), names()),
        st.builds(
            ast.ExprSetting,
            st.sampled_from(["audience", "exclude", "goal"]),
            expressions(max_leaves=6),
        ),
        st.builds(ast.StringSetting, st.sampled_from(["from", "reply_to"]), strings()),
        st.lists(names(), min_size=1, max_size=3).map(lambda c: ast.ChannelsSetting(tuple(c))),
        st.builds(ast.NumberSetting, st.sampled_from(["priority", "max_sends"]), _decimals()),
        st.builds(ast.CapSetting, channel, st.integers(0, 999), durations()),
        st.builds(
            lambda start, end, local, days: ast.SendWindowSetting(start, end, local, tuple(days)),
            times(),
            times(),
            st.booleans(),
            st.lists(names(), max_size=3),
        ),
        st.builds(ast.TimezoneSetting, strings(), st.booleans()),
        st.builds(ast.QuietHoursSetting, channel, times(), times(), st.booleans()),
        st.builds(ast.BudgetSetting, money()),
        st.lists(st.builds(ast.CostItem, names(), money()), min_size=1, max_size=3).map(
            lambda items: ast.CostSetting(tuple(items))
        ),
        st.builds(ast.DateSetting, st.sampled_from(["starts", "ends"]), scheduled_moments()),
        st.builds(ast.ReenterSetting, st.one_of(st.none(), durations())),
    )


@cache
def _string_lits() -> st.SearchStrategy[ast.StringLit | None]:
    return st.one_of(st.none(), strings().map(ast.StringLit))


@cache
def _template_content() -> st.SearchStrategy[ast.TemplateContent]:
    """Subject, preheader and one of body / body file, each maybe missing."""
    return st.builds(
        lambda subject, preheader, body, from_file: ast.TemplateContent(
            subject=subject,
            preheader=preheader,
            body=None if from_file else body,
            body_file=body if from_file else None,
        ),
        _string_lits(),
        _string_lits(),
        _string_lits(),
        st.booleans(),
    )


@cache
def templates() -> st.SearchStrategy[ast.TemplateDecl]:
    """A template, inline (`template n sms "..."`) or as a block with locales."""
    inline = st.builds(
        lambda name, channel, body: ast.TemplateDecl(
            name, channel, ast.TemplateContent(body=ast.StringLit(body)), (), True
        ),
        names(),
        names(),
        strings(),
    )
    locale = st.builds(ast.LocaleBlock, strings(), _template_content())
    block = st.builds(
        lambda name, channel, content, locales: ast.TemplateDecl(
            name, channel, content, tuple(locales), False
        ),
        names(),
        names(),
        _template_content(),
        st.lists(locale, max_size=2),
    )
    return st.one_of(inline, block)


@cache
def scores() -> st.SearchStrategy[ast.ScoreDecl]:
    """A score with points rules (signed, `each` or not) and decay rules."""
    signed = st.builds(
        lambda sign, value: -value if sign else value, st.booleans(), _decimals(max_digits=4)
    )
    points = st.builds(
        ast.ScorePoints, _events(), st.one_of(st.none(), durations()), signed, st.booleans()
    )
    decay = st.builds(ast.ScoreDecay, percents(), durations())
    rules = st.lists(st.one_of(points, decay), max_size=4)
    return st.builds(lambda name, r: ast.ScoreDecl(name, tuple(r)), names(), rules)


@cache
def campaigns() -> st.SearchStrategy[ast.CampaignDecl]:
    """A campaign with any settings and trigger blocks."""
    return st.builds(
        lambda name, display, s, t: ast.CampaignDecl(name, display, tuple(s), tuple(t)),
        names(),
        st.one_of(st.none(), strings()),
        st.lists(settings(), max_size=5),
        st.lists(trigger_blocks(), max_size=2),
    )


@cache
def declarations() -> st.SearchStrategy[ast.Declaration]:
    """Every top-level declaration kind."""
    schema_field = st.builds(ast.SchemaField, names(), names())
    return st.one_of(
        st.builds(ast.Import, strings()),
        st.lists(schema_field, max_size=3).map(lambda f: ast.SchemaDecl(tuple(f))),
        st.builds(ast.SegmentDecl, names(), expressions()),
        templates(),
        scores(),
        campaigns(),
        trigger_blocks(),
    )


@cache
def programs(max_declarations: int = 5) -> st.SearchStrategy[ast.Program]:
    """A whole file: a few declarations of any kind, no comments."""
    return st.lists(declarations(), max_size=max_declarations).map(lambda d: ast.Program(tuple(d)))
