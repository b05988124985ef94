"""Rendering: sandbox, strict variables with positions, bounded work, locales, Babel filters."""

from __future__ import annotations

import time

import pytest

from cadence.adapters.render import (
    LINK_VARIABLES,
    LOCALE_FILTERS,
    ApprovedWhatsAppTemplate,
    EmailContent,
    RenderContext,
    RenderLimits,
    SmsContent,
    TemplateRenderer,
    TemplateRenderError,
    WebhookContent,
    WhatsAppContent,
    locale_chain,
    select_locale,
)
from cadence.adapters.sandbox import WALL_ALLOWANCE, BoundedRunner, RenderTimeout
from cadence.dsl.compiled import CompiledTemplate, TemplateContentModel
from cadence.dsl.symbols import LOCALE_FILTER_NAMES
from cadence.errors import CadenceError


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    """A renderer whose time budget does not come first, so what stops a render here is the
    check a test is about: on a busy machine a one-second budget ended renders before the
    checks they test. Ten seconds is 200 times what they take, and still bounds a check
    that stopped working; the time budget has its own test."""
    return TemplateRenderer(RenderLimits(timeout_seconds=10.0))


def sms(body: str, name: str = "t") -> CompiledTemplate:
    return CompiledTemplate(name=name, channel="sms", content=TemplateContentModel(body=body))


def render_sms(renderer: TemplateRenderer, body: str, **contact: object) -> SmsContent:
    return render_sms_template(renderer, sms(body), contact.pop("locale", None), **contact)


def render_sms_template(
    renderer: TemplateRenderer, template: CompiledTemplate, locale: object, **contact: object
) -> SmsContent:
    if locale is not None:
        contact["locale"] = locale
    result = renderer.render(template, RenderContext(contact=contact))
    assert isinstance(result, SmsContent)
    return result


WELCOME = CompiledTemplate(
    name="welcome",
    channel="email",
    content=TemplateContentModel(
        subject="Welcome to {{ company.name }}, {{ contact.first_name | default('there') }}!",
        preheader="Three things to try first",
        body=(
            "<html><head><style>p{color:red}</style></head><body>\n"
            "<h1>Hi {{ contact.first_name }}</h1>\n"
            "<p>Listings in {{ contact.city }}:</p>\n"
            "<ul>{% for p in properties %}<li>{{ p.title }} {{ p.price | money('USD') }}</li>"
            "{% endfor %}</ul>\n"
            '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n'
            "</body></html>"
        ),
        body_file="templates/welcome.html.j2",
    ),
    locales={
        "es": TemplateContentModel(
            subject="¡Bienvenido a {{ company.name }}, {{ contact.first_name }}!",
            preheader="Tres cosas para empezar",
            body="<p>Hola {{ contact.first_name }}, {{ 1234567.891 | number }}</p>",
        )
    },
)


def ctx(**contact: object) -> RenderContext:
    return RenderContext(
        contact=contact,
        tenant={"name": "Acme & Co"},
        extra={
            "properties": [
                {"title": "Loft <3>", "price": 250000},
                {"title": "Villa", "price": 1200000.5},
            ]
        },
        unsubscribe_url="https://t.acme.test/u/abc?x=1&y=2",
    )


# ------------------------------------------------------------------------------ email


def test_an_inbox_message_needs_no_subject(renderer: TemplateRenderer) -> None:
    # LANGUAGE.md: `template welcome_inbox inbox "Welcome! Start with your first project."`
    plain = CompiledTemplate(
        name="welcome_inbox",
        channel="inbox",
        content=TemplateContentModel(body="Welcome {{ contact.first_name }}! Start here."),
    )
    out = renderer.render(plain, ctx(first_name="Ana"))
    assert isinstance(out, EmailContent)
    assert out.subject == "" and out.text.strip() == "Welcome Ana! Start here."
    titled = CompiledTemplate(
        name="titled",
        channel="inbox",
        content=TemplateContentModel(subject="Hi {{ contact.first_name }}", body="x"),
    )
    titled_out = renderer.render(titled, ctx(first_name="Ana"))
    assert isinstance(titled_out, EmailContent) and titled_out.subject == "Hi Ana"
    # Email still needs one.
    with pytest.raises(TemplateRenderError, match="an email needs a subject"):
        renderer.render(
            CompiledTemplate(name="e", channel="email", content=TemplateContentModel(body="x")),
            ctx(),
        )


def test_email_subject_preheader_html_and_text(renderer: TemplateRenderer) -> None:
    out = renderer.render(WELCOME, ctx(first_name="Ana <script>", city="Austin"))
    assert isinstance(out, EmailContent)
    # Subjects are not HTML: no escaping, but no newlines either.
    assert out.subject == "Welcome to Acme & Co, Ana <script>!"
    assert out.preheader == "Three things to try first"
    # The body is autoescaped; the template's own markup is kept.
    assert "<h1>Hi Ana &lt;script&gt;</h1>" in out.html
    assert "<li>Loft &lt;3&gt; $250,000.00</li>" in out.html
    assert 'href="https://t.acme.test/u/abc?x=1&amp;y=2"' in out.html
    assert "Three things to try first</div>" in out.html  # hidden preheader block
    assert out.html.index("<body>") < out.html.index("Three things")
    # The text part is generated from the HTML: no tags, no style, links kept.
    assert "<" not in out.text.replace("<script>", "").replace("<3>", "")
    assert "color:red" not in out.text
    assert "Hi Ana <script>" in out.text
    assert "- Villa $1,200,000.50" in out.text
    assert "Unsubscribe (https://t.acme.test/u/abc?x=1&y=2)" in out.text
    assert out.locale == "en"


def test_subject_cannot_inject_headers(renderer: TemplateRenderer) -> None:
    out = renderer.render(WELCOME, ctx(first_name="x\r\nBcc: evil@example.test", city="A"))
    assert isinstance(out, EmailContent)
    assert "\n" not in out.subject and "\r" not in out.subject


def test_default_filter_allowed(renderer: TemplateRenderer) -> None:
    source = "Hi {{ contact.first_name | default('there') }} {{ contact.x | default('-') }}"
    assert render_sms(renderer, source).text == "Hi there -"


def test_a_null_attribute_is_a_missing_one(renderer: TemplateRenderer) -> None:
    source = "Hi {{ contact.first_name | default('there') }}"
    assert render_sms(renderer, source, first_name=None).text == "Hi there"
    with pytest.raises(TemplateRenderError, match=r"contact\.first_name"):
        render_sms(renderer, "Hi {{ contact.first_name }}", first_name=None)


def test_plain_text_email_body_gets_html(renderer: TemplateRenderer) -> None:
    template = CompiledTemplate(
        name="plain",
        channel="email",
        content=TemplateContentModel(subject="S", body="Hi {{ contact.name }},\n\nA & B"),
    )
    out = renderer.render(template, RenderContext(contact={"name": "<Bo>"}))
    assert isinstance(out, EmailContent)
    assert out.text == "Hi <Bo>,\n\nA & B\n"
    assert "<p>Hi &lt;Bo&gt;,</p>" in out.html and "<p>A &amp; B</p>" in out.html


# ------------------------------------------------------------------------------ errors


def test_missing_variable_names_template_line_and_variable(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateRenderError) as info:
        renderer.render(WELCOME, ctx(first_name="Ana"))  # no city
    err = info.value
    assert isinstance(err, CadenceError)
    assert (err.template, err.part, err.line, err.variable) == (
        "welcome",
        "body",
        3,
        "contact.city",
    )
    assert "welcome (body), line 3" in str(err) and "contact.city" in str(err)


def test_missing_top_level_and_list_index(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateRenderError) as info:
        render_sms(renderer, "a\nb\n{{ nope }}")
    assert (info.value.line, info.value.variable) == (3, "nope")
    with pytest.raises(TemplateRenderError) as info:
        render_sms(renderer, "{{ contact.props[4] }}", props=[1])
    assert info.value.variable == "contact.props[4]"


@pytest.mark.parametrize("name", ["company", "tenant"])
def test_a_missing_company_variable_is_named_as_the_template_wrote_it(
    renderer: TemplateRenderer, name: str
) -> None:
    """`company` is an alias of `tenant`; `{{ company.name }}` with no name was reported
    as "`tenant.name` is undefined", a name the template's author never wrote."""
    with pytest.raises(TemplateRenderError) as info:
        render_sms(renderer, f"Hi from {{{{ {name}.name }}}}")
    assert info.value.variable == f"{name}.name" and f"`{name}.name`" in str(info.value)


def test_missing_in_subject_is_reported_as_subject(renderer: TemplateRenderer) -> None:
    template = CompiledTemplate(
        name="t", channel="email", content=TemplateContentModel(subject="{{ x.y }}", body="b")
    )
    with pytest.raises(TemplateRenderError) as info:
        renderer.render(template, RenderContext(contact={}))
    assert info.value.part == "subject" and info.value.variable == "x"


def test_syntax_error_has_a_line(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateRenderError) as info:
        render_sms(renderer, "ok\n{% if %}")
    assert info.value.line == 2 and "syntax error" in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ contact.__class__ }}",
        "{{ range.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ ''.format.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ contact.__dict__ }}",
        "{{ contact.items.__self__.__class__ }}",
        "{% include '/etc/passwd' %}",
        "{% import 'os' as os %}",
        "{% extends 'base.html' %}",
        "{% from 'x' import y %}",
        "{{ lipsum(10**9) }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ [].pop.__self__.__class__.__base__.__subclasses__() }}",
    ],
)
def test_sandbox_escapes_are_render_errors(renderer: TemplateRenderer, source: str) -> None:
    with pytest.raises(TemplateRenderError) as info:
        render_sms(renderer, source)
    assert "not allowed" in str(info.value) or "undefined" in str(info.value)


def test_one_bad_render_does_not_poison_the_next(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateRenderError):
        render_sms(renderer, "{{ 1 / 0 }}")
    assert render_sms(renderer, "Hi {{ contact.n }}", n="Jo").text == "Hi Jo"


# ------------------------------------------------------------------------------ bounded work


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(10**9) %}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{{ 'a' * 10**9 }}",
        "{{ [1] * 10**9 }}",
        "{{ 10 ** 1000000 }}",
        "{% set a = 10 ** 60000 %}{% set b = a * a %}{% set c = b * b %}{{ (c * c) % 7 }}",
        "{{ 'x' | center(10**9) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '{:999999999}'.format(1) }}",
        "{{ ('a' * 100000).replace('a', 'a' * 100000) }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}",
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}"
        "{{ d('a', 60) }}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    ],
)
def test_hostile_templates_are_cut_off(renderer: TemplateRenderer, source: str) -> None:
    # Each is refused by a check as it starts to build, never left to the time budget.
    with pytest.raises(TemplateRenderError) as refused:
        render_sms(renderer, source)
    assert "took too long" not in str(refused.value)


# A million-character value printed once per character: a terabyte if Jinja were left to join it.
_HUGE = "{% set x = 'a' * 1000000 %}"


@pytest.mark.parametrize(
    "source",
    [
        _HUGE + "{% macro m() %}{% for c in x %}{{ x }}{% endfor %}{% endmacro %}{{ m() }}",
        _HUGE + "{% set y %}{% for c in x %}{{ x }}{% endfor %}{% endset %}{{ y }}",
        _HUGE + "{% filter upper %}{% for c in x %}{{ x }}{% endfor %}{% endfilter %}",
        _HUGE + "{% macro m() %}{{ caller() }}{% endmacro %}"
        "{% call m() %}{% for c in x %}{{ x }}{% endfor %}{% endcall %}",
        _HUGE + "{% set x %}{{ x }}{{ x }}{% endset %}" * 3,
        "{% block b %}{% endblock %}"
        + _HUGE
        + "{% block c %}{% for c in x %}{% if false %}{{ x }}{% endif %}{% endfor %}{% endblock %}"
        + "{{ self.b() }}",
    ],
)
def test_a_macro_or_block_cannot_build_output_past_the_limit(
    renderer: TemplateRenderer, source: str
) -> None:
    # Jinja joins a macro's or block's output in one C call: it must be refused while it
    # grows, not after (before, these asked for a terabyte and failed with MemoryError).
    with pytest.raises(TemplateRenderError, match="not allowed") as info:
        render_sms(renderer, source)
    assert "MemoryError" not in str(info.value)


def test_macros_and_blocks_still_render(renderer: TemplateRenderer) -> None:
    source = (
        "{% macro m(n) %}<{{ n }}>{{ caller() }}{% endmacro %}{% call m(3) %}in{% endcall %}"
        "{% set y %}a{{ 1 }}b{% endset %}{{ y }}{% filter upper %}x{{ 'y' }}{% endfilter %}"
        "{% for a in [1, [2]] recursive %}{{ a }}{% endfor %}{% block b %}!{% endblock %}"
    )
    assert render_sms(renderer, source).text == "<3>ina1bXY1[2]!"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ('a' * 1000000) | replace('a', 'a' * 1000000) }}",
        "{{ ('www.a.bc ' * 100000) | urlize(target='x' * 1000000) }}",
        "{{ ('a ' * 500000) | wordwrap(1, wrapstring='x' * 1000000) }}",
        "{{ ('a\\n' * 500000) | indent(999999) }}",
        "{{ range(100000) | join('a' * 1000000) }}",
        "{{ (['b'] * 100000) | join('a' * 1000000) }}",
        "{{ '%(a)99999999999s' % {'a': 1} }}",
        "{{ '%(a)99999999999s' | format(a=1) }}",
        "{{ '{:{w}}'.format(1, w='99999999999') }}",
        "{{ '{:{w}}'.format_map({'w': '99999999999'}) }}",
        "{{ ('\\t' * 100000).expandtabs(999999) }}",
        "{{ ('a' * 1000000).join(['b'] * 100000) }}",
        "{{ ('a' * 1000000).join(range(100000) | map('string')) }}",
        "{{ ('a' * 1000000).translate({97: 'b' * 1000000}) }}",
    ],
)
def test_one_call_cannot_multiply_a_string_past_the_limit(
    renderer: TemplateRenderer, source: str
) -> None:
    # Each of these builds its result in one C call: refused before it, never a MemoryError
    # (or gigabytes) after.
    with pytest.raises(TemplateRenderError, match="not allowed") as info:
        render_sms(renderer, source)
    assert "MemoryError" not in str(info.value)


def test_the_checked_calls_still_work(renderer: TemplateRenderer) -> None:
    source = (
        "{{ 'a-b'.replace('-', '+') }} {{ 'a-b' | replace('-', '=') }}"
        " {{ ['a', 'b'] | join(', ') }} {{ range(3) | join }} {{ '-'.join(['a', 'b']) }}"
        " {{ 'x\\ny' | indent(2) }}"
        " {{ 'www.a.com' | urlize(target='_blank') }} {{ 'ab cd' | wordwrap(2, wrapstring='|') }}"
        " {{ '%(a)3s' % {'a': 1} }} {{ '{:>3}'.format(1) }} {{ 'a\\tb'.expandtabs(2) }}"
        " {{ 'ab'.translate({97: 'xy'}) }}"
    )
    assert render_sms(renderer, source).text == (
        "a+b a=b a, b 012 a-b x\n  y"
        ' <a href="https://www.a.com" rel="noopener" target="_blank">www.a.com</a> ab|cd'
        "   1   1 a b xyb"
    )


_KEEP = "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"


@pytest.mark.parametrize(
    "source",
    [
        "{% set x = [] %}{% for i in range(100000) %}{% if x.append('a' * 1000000) %}{% endif %}"
        "{% endfor %}",
        "{% set x = {} %}{% for i in range(100000) %}{% if x.update({i: 'a' * 1000000}) %}"
        "{% endif %}{% endfor %}",
        "{% set x = [1] %}{% for i in range(40) %}{% if x.extend(x) %}{% endif %}{% endfor %}",
        "{% set big = 'a' * 1000000 %}" + _KEEP + "{% set ns.l = ns.l + [big[i:]] %}{% endfor %}",
        "{% set big = 'a' * 999000 %}" + _KEEP + "{% set y %}{{ big }}{{ i }}{% endset %}"
        "{% set ns.l = ns.l + [y] %}{% endfor %}",
        "{% set big = 10 ** 250000 %}" + _KEEP + "{% set ns.l = ns.l + [big - i] %}{% endfor %}",
        "{% set big = 10 ** 250000 %}" + _KEEP + "{% set ns.l = ns.l + [-big] %}{% endfor %}",
        "{% set s = 'ab ' * 333333 %}" + _KEEP + "{% set ns.l = ns.l + [s.split()] %}{% endfor %}",
        "{% set s = 'a' * 1000000 %}" + _KEEP + "{% set ns.l = ns.l + [s | upper] %}{% endfor %}",
    ],
)
def test_a_loop_cannot_pile_up_values(renderer: TemplateRenderer, source: str) -> None:
    # Each step is under the output cap; kept 100,000 times they were gigabytes, stopped
    # only by the time budget (or MemoryError) after the engine had taken the memory.
    with pytest.raises(TemplateRenderError, match="builds more than 100,000,000 bytes"):
        render_sms(renderer, source)


def test_the_built_budget_is_per_render() -> None:
    small = TemplateRenderer(RenderLimits(max_built_bytes=3_000_000))
    source = "{% set x = [] %}{% if x.append('a' * 1000000) %}{% endif %}{{ x | length }}"
    for _ in range(5):  # 1 MB each time: never adds up across renders
        assert small.render(sms(source), RenderContext(contact={})).text == "1"
    twice = source.replace("{{", "{% if x.append('b' * 1000000) %}{% endif %}" * 3 + "{{")
    with pytest.raises(TemplateRenderError, match="builds more than 3,000,000 bytes"):
        small.render(sms(twice), RenderContext(contact={}))


def test_a_long_newsletter_is_well_within_the_built_budget(renderer: TemplateRenderer) -> None:
    items = [{"title": f"Listing {i} " * 20, "price": 1000 + i} for i in range(2000)]
    template = CompiledTemplate(
        name="digest",
        channel="email",
        content=TemplateContentModel(
            subject="{{ items | length }} new listings",
            body="<ul>{% for p in items %}<li>{{ p.title | upper | truncate(80) }}"
            " {{ p.price | money('USD') }} {{ (p.title ~ '!')[:10] }}</li>{% endfor %}</ul>",
        ),
    )
    out = renderer.render(template, RenderContext(contact={}, extra={"items": items}))
    assert isinstance(out, EmailContent) and out.subject == "2000 new listings"


def test_loop_without_hooks_is_stopped_by_the_time_budget() -> None:
    fast = TemplateRenderer(RenderLimits(timeout_seconds=0.3))
    source = "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateRenderError, match=r"longer than 0\.3s"):
        fast.render(sms(source), RenderContext(contact={}))
    # Stopped (the loops would run for hours), by the wall allowance at the latest.
    assert time.monotonic() - started < 0.3 * WALL_ALLOWANCE + 10
    # The interrupted worker comes back: the renderer still works.
    out = fast.render(sms("still {{ 'ok' }}"), RenderContext(contact={}))
    assert isinstance(out, SmsContent) and out.text == "still ok"


def test_a_render_slowed_by_a_busy_machine_is_not_stopped() -> None:
    """The budget is CPU time: a render that waits (here: sleeps, as a thread does while
    others hold the GIL or the cores) past its budget in wall time still finishes."""
    runner = BoundedRunner()
    assert runner.run(lambda: time.sleep(0.3) or "done", 0.1) == "done"
    # Without end, it is stopped at the wall allowance all the same.
    started = time.monotonic()
    with pytest.raises(RenderTimeout):
        runner.run(lambda: time.sleep(0.1 * WALL_ALLOWANCE + 5), 0.1)
    assert time.monotonic() - started < 0.1 * WALL_ALLOWANCE + 4.5  # not the sleep's end


def test_output_size_is_limited() -> None:
    small = TemplateRenderer(RenderLimits(max_output_chars=1000))
    with pytest.raises(TemplateRenderError, match="over the limit"):
        small.render(sms("{% for i in range(500) %}abc{% endfor %}"), RenderContext(contact={}))


# ------------------------------------------------------------------------------ locales


def test_locale_chain_and_selection() -> None:
    assert locale_chain("es-mx") == ["es_MX", "es", "en"]
    assert locale_chain("pt_BR", "fr") == ["pt_BR", "pt", "fr", "en"]
    assert locale_chain(None, "de") == ["de", "en"]
    assert select_locale("es_MX", ["es", "fr"]) == "es"
    assert select_locale("es-MX", ["es_MX", "es"]) == "es_MX"
    assert select_locale("de", ["es"]) is None
    assert select_locale("PT-br", ["pt", "pt-BR"]) == "pt-BR"
    assert select_locale("pt_PT", ["pt", "pt-BR"]) == "pt"
    assert select_locale(None, ["en"]) is None and select_locale(" ", ["en"]) is None


def test_no_matching_block_gets_the_default_content_not_the_english_block(
    renderer: TemplateRenderer,
) -> None:
    # docs/language.md: "everyone else gets the default", even beside a `locale "en"` block.
    hola = CompiledTemplate(
        name="hola",
        channel="sms",
        content=TemplateContentModel(body="Hola {{ 1234.5 | number }}"),
        locales={"en": TemplateContentModel(body="Hello {{ 1234.5 | number }}")},
    )
    texts = {
        locale: render_sms_template(renderer, hola, locale).text
        for locale in ("es", "fr", "xx-YY", None, "en", "en-GB")
    }
    assert texts == {
        "es": "Hola 1.234,5",
        "fr": "Hola 1 234,5",  # the no-break space as an SMS carries it
        "xx-YY": "Hola 1,234.5",
        None: "Hola 1,234.5",
        "en": "Hello 1,234.5",
        "en-GB": "Hello 1,234.5",
    }


def test_contact_locale_picks_the_localized_block_and_formats(renderer: TemplateRenderer) -> None:
    out = renderer.render(WELCOME, ctx(first_name="Ana", locale="es_ES"))
    assert isinstance(out, EmailContent)
    assert out.locale == "es"
    assert out.subject == "¡Bienvenido a Acme & Co, Ana!"
    assert "Hola Ana, 1.234.567,891" in out.html  # Spanish grouping from es_ES
    mx = renderer.render(WELCOME, ctx(first_name="Ana", locale="es-MX"))
    assert isinstance(mx, EmailContent)
    assert mx.locale == "es" and "1,234,567.891" in mx.html  # Mexico groups with commas
    fr = renderer.render(WELCOME, ctx(first_name="Ana", city="Lyon", locale="fr"))
    assert isinstance(fr, EmailContent) and fr.locale == "en"  # no fr block: default content


@pytest.mark.parametrize(
    ("locale", "source", "expected"),
    [
        ("en", "{{ 1234.5 | number }}", "1,234.5"),
        ("de", "{{ 1234.5 | number }}", "1.234,5"),
        ("de", "{{ 3 | number(2) }}", "3,00"),
        ("en", "{{ 1234.5 | money('EUR') }}", "€1,234.50"),
        ("de_DE", "{{ 1234.5 | money('EUR') }}", "1.234,50\xa0€"),
        ("fr", "{{ {'amount': '10', 'currency': 'USD'} | money }}", "10,00\xa0$US"),
        ("ja", "{{ 500 | currency('JPY') }}", "￥500"),
        ("en", "{{ 0.256 | percent }}", "26%"),
        ("en", "{{ '2026-12-01' | date }}", "Dec 1, 2026"),
        ("es", "{{ '2026-12-01' | date('long') }}", "1 de diciembre de 2026"),
        ("de", "{{ '2026-12-01T09:30:00' | datetime('short') }}", "01.12.26, 09:30"),
    ],
)
def test_babel_filters(renderer: TemplateRenderer, locale: str, source: str, expected: str) -> None:
    context = RenderContext(contact={}, locale=locale)
    assert renderer.render_string(source, context) == expected


@pytest.mark.parametrize(
    ("locale", "source", "expected"),
    [
        ("fr", "Total {{ 1234.5 | money('EUR') }}", "Total 1 234,50 €"),
        ("de-AT", "Total {{ 1234.5 | money('EUR') }}", "Total € 1.234,50"),
        ("de-CH", "Total {{ 1234.5 | number }}", "Total 1'234.5"),
        ("en-US", "At {{ '2026-12-01T14:00:00Z' | time }}", "At 2:00 PM"),
    ],
)
def test_an_sms_formatted_for_a_locale_stays_gsm7(
    renderer: TemplateRenderer, locale: str, source: str, expected: str
) -> None:
    """Babel writes no-break spaces and an apostrophe GSM-7 lacks; any of them
    would bill the whole SMS as UCS-2 (70 characters a segment instead of 160)."""
    out = render_sms(renderer, source, locale=locale)
    assert (out.text, out.encoding) == (expected, "GSM-7")


def test_datetime_uses_contact_timezone(renderer: TemplateRenderer) -> None:
    text = render_sms(
        renderer,
        "{{ '2026-12-01T14:00:00Z' | time }}",
        locale="en_US",
        timezone="America/New_York",
    ).text
    assert text.replace("\u202f", " ") == "9:00 AM"


def test_money_without_currency_uses_tenant_currency(renderer: TemplateRenderer) -> None:
    out = renderer.render(
        sms("{{ 12 | money }}"), RenderContext(contact={}, tenant={"currency": "GBP"})
    )
    assert isinstance(out, SmsContent) and out.text == "£12.00"
    with pytest.raises(TemplateRenderError, match="currency"):
        render_sms(renderer, "{{ 12 | money }}")


# ------------------------------------------------------ SMS / WhatsApp / webhook


def test_sms_segments_are_computed(renderer: TemplateRenderer) -> None:
    out = render_sms(renderer, "Hi {{ contact.first_name }}, still looking?", first_name="Zoë")
    assert (out.encoding, out.units, out.segments) == ("UCS-2", 22, 1)
    out = render_sms(renderer, "Hi {{ contact.first_name }} {{ 'x' * 150 }}", first_name="Jo")
    assert (out.encoding, out.units, out.segments) == ("GSM-7", 156, 1)


def test_whatsapp_text_and_approved_template(renderer: TemplateRenderer) -> None:
    template = CompiledTemplate(
        name="follow_up_wa",
        channel="whatsapp",
        content=TemplateContentModel(body="Hi {{ contact.first_name }} 👋 book a viewing?"),
    )
    approved = ApprovedWhatsAppTemplate(
        name="viewing_reminder_v2",
        language="en",
        parameters=("{{ contact.first_name }}", "{{ contact.city | upper }}"),
    )
    out = renderer.render(
        template, RenderContext(contact={"first_name": "Li", "city": "Oslo"}), approved=approved
    )
    assert isinstance(out, WhatsAppContent)
    assert out.text == "Hi Li 👋 book a viewing?"
    assert out.approved is not None
    assert (out.approved.name, out.approved.language, out.approved.parameters) == (
        "viewing_reminder_v2",
        "en",
        ("Li", "OSLO"),
    )
    with pytest.raises(TemplateRenderError) as info:
        renderer.render(template, RenderContext(contact={"first_name": "Li"}), approved=approved)
    assert info.value.part == "parameter 2" and info.value.variable == "contact.city"


@pytest.mark.parametrize(
    ("locale", "language"),
    [("es_MX", "es"), ("pt-BR", "pt_BR"), ("PT_br", "pt_BR"), ("de", "en"), (None, "en")],
)
def test_the_approved_whatsapp_template_goes_in_the_contact_s_language(
    renderer: TemplateRenderer, locale: str | None, language: str
) -> None:
    """One approved template exists in several languages: each contact gets theirs, the
    default language when none matches (before, every contact got `language`)."""
    template = CompiledTemplate(
        name="follow_up_wa", channel="whatsapp", content=TemplateContentModel(body="Hi")
    )
    approved = ApprovedWhatsAppTemplate(
        name="viewing_reminder_v2", language="en", languages=("es", "pt_BR")
    )
    contact = {"first_name": "Li"} if locale is None else {"first_name": "Li", "locale": locale}
    out = renderer.render(template, RenderContext(contact=contact), approved=approved)
    assert isinstance(out, WhatsAppContent) and out.approved is not None
    assert out.approved.language == language


def test_webhook_body_is_json(renderer: TemplateRenderer) -> None:
    template = CompiledTemplate(
        name="crm",
        channel="webhook",
        content=TemplateContentModel(body='{"id": {{ contact.id | tojson }}, "n": 1}'),
    )
    out = renderer.render(template, RenderContext(contact={"id": 'a"b'}))
    assert isinstance(out, WebhookContent) and out.payload == {"id": 'a"b', "n": 1}


def test_a_missing_link_says_which_settings_make_it(renderer: TemplateRenderer) -> None:
    """`{{ unsubscribe_url }}` with no link service is a setting to make, not a default."""
    with pytest.raises(TemplateRenderError) as info:
        render_sms(renderer, "Stop: {{ unsubscribe_url }}")
    assert "CADENCE_PUBLIC_URL" in str(info.value) and "default" not in str(info.value)
    given = renderer.render(
        sms("Stop: {{ unsubscribe_url }}"),
        RenderContext(contact={}, unsubscribe_url="https://l.example/u/k.s"),
    )
    assert isinstance(given, SmsContent) and given.text == "Stop: https://l.example/u/k.s"


def test_the_checker_knows_exactly_the_names_a_template_is_given(
    renderer: TemplateRenderer,
) -> None:
    """`cadence check` warns (W308) at a top-level name outside `TEMPLATE_VARIABLES`: the
    renderer gives each of them, and nothing else."""
    from cadence.dsl.symbols import TEMPLATE_VARIABLES

    links = {name: f"https://x.test/{name}" for name in LINK_VARIABLES}
    context = RenderContext(contact={"id": "c1"}, event={"city": "Cebu"}, **links)
    given = {*context.variables(), "locale"}  # the renderer adds the formatting locale
    assert given == TEMPLATE_VARIABLES
    text = " ".join(f"{{{{ {name} is defined }}}}" for name in sorted(TEMPLATE_VARIABLES))
    result = renderer.render(sms(text), context)
    assert isinstance(result, SmsContent)
    assert result.text.split() == ["True"] * len(TEMPLATE_VARIABLES)


def test_the_checker_knows_every_filter_the_renderer_adds() -> None:
    # `cadence check` reports an unknown filter (E220) from this list of names.
    assert set(LOCALE_FILTERS) == LOCALE_FILTER_NAMES


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_a_text_message_that_renders_empty_fails_its_send(
    renderer: TemplateRenderer, channel: str
) -> None:
    # An empty SMS is still billed, and WhatsApp refuses empty text: fail it, visibly.
    note = CompiledTemplate(
        name="note",
        channel=channel,
        content=TemplateContentModel(body=" {{ contact.note | default('') }}\n"),
    )
    with pytest.raises(
        TemplateRenderError, match=r"template note \(body\): the message rendered empty"
    ):
        renderer.render(note, RenderContext(contact={"id": "c1"}))
    sent = renderer.render(note, RenderContext(contact={"id": "c1", "note": "See you at 9"}))
    assert isinstance(sent, SmsContent | WhatsAppContent) and sent.text == "See you at 9"


def test_whatsapp_template_parameters_are_one_line(renderer: TemplateRenderer) -> None:
    # WhatsApp refuses a template parameter holding a line break, a tab or more than four
    # spaces in a row (Meta's error 132018), after Infobip has accepted the message.
    template = CompiledTemplate(
        name="follow_up_wa",
        channel="whatsapp",
        content=TemplateContentModel(body="Hi {{ contact.first_name }}"),
    )
    approved = ApprovedWhatsAppTemplate(
        name="viewing_reminder_v2",
        language="en",
        parameters=("{{ contact.address }}", "{{ contact.first_name }}"),
    )
    contact = {"first_name": "Li\t Wei", "address": "1 Main St\r\nFlat 2\n\n     Oslo  "}
    out = renderer.render(template, RenderContext(contact=contact), approved=approved)
    assert isinstance(out, WhatsAppContent) and out.approved is not None
    assert out.approved.parameters == ("1 Main St Flat 2 Oslo", "Li Wei")
