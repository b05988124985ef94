"""Render user-authored templates safely: Jinja2's sandbox, strict variables, bounded work.

Templates are written by ops people and run once per contact, so a template must not reach
Python internals, must not silently print nothing for a misspelt variable, and must not be
able to stall or exhaust the engine. Every failure becomes a `TemplateRenderError` naming
the template, the part (subject, body ...), the line and the variable; one bad render
fails that one message, never the batch.

The entry point is `TemplateRenderer.render(template, context)`, where `template` is the
compiler's `CompiledTemplate`; it picks the contact's locale with a fallback chain and
returns channel content (`EmailContent`, `SmsContent`, `WhatsAppContent`,
`WebhookContent`).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import string
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

import babel
import babel.dates
import babel.numbers
from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    TemplateSyntaxError,
    Undefined,
    nodes,
    pass_context,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.nodes import EvalContext
from jinja2.runtime import BlockReference, Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace
from markupsafe import Markup, escape

from cadence.adapters.sandbox import BoundedRunner, RenderTimeout
from cadence.adapters.text import SmsLength, html_to_text, sms_length, sms_text, text_to_html
from cadence.dsl.compiled import CompiledTemplate, TemplateContentModel
from cadence.errors import CadenceError

DEFAULT_LOCALE = "en"
# Integers a template may build with `*` and `**` (about 300,000 decimal digits).
MAX_INT_BITS = 1_000_000


class TemplateRenderError(CadenceError):
    """A template could not be rendered for one contact; the send fails with this reason."""

    def __init__(
        self,
        template: str,
        reason: str,
        *,
        part: str | None = None,
        line: int | None = None,
        variable: str | None = None,
    ) -> None:
        self.template = template
        self.part = part
        self.line = line
        self.variable = variable
        self.reason = reason
        where = template if part is None else f"{template} ({part})"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"template {where}: {reason}")


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """How much work one render may do before it is cut off."""

    timeout_seconds: float = 2.0
    max_output_chars: int = 1_000_000
    max_iterations: int = 100_000
    max_source_chars: int = 512_000
    # Bytes of values (strings, lists, numbers ...) all its operations build together,
    # dropped ones included: each step stays under the output cap, so only a total stops
    # a loop from keeping 100,000 of them.
    max_built_bytes: int = 100_000_000


# --------------------------------------------------------------------------- rendered content


@dataclass(frozen=True, slots=True)
class EmailContent:
    """A rendered email: subject line, preheader, HTML part and plain-text part."""

    subject: str
    preheader: str | None
    html: str
    text: str
    locale: str


@dataclass(frozen=True, slots=True)
class SmsContent:
    """A rendered SMS with its encoding and how many segments it will be billed as."""

    text: str
    encoding: str
    units: int
    segments: int
    locale: str


@dataclass(frozen=True, slots=True)
class WhatsAppTemplateCall:
    """An approved WhatsApp template by name and language, with its rendered placeholders."""

    name: str
    language: str
    parameters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WhatsAppContent:
    """Free-form text (only inside the 24h service window) and, when set up, the approved
    template to use outside it."""

    text: str
    approved: WhatsAppTemplateCall | None
    locale: str


@dataclass(frozen=True, slots=True)
class WebhookContent:
    """A JSON object to POST to a webhook."""

    payload: Mapping[str, Any]
    locale: str


RenderedContent = EmailContent | SmsContent | WhatsAppContent | WebhookContent


@dataclass(frozen=True, slots=True)
class ApprovedWhatsAppTemplate:
    """How a Cadence WhatsApp template maps to a provider-approved template.

    `parameters` are Jinja expressions-in-strings rendered per contact, one per `{{n}}`
    placeholder of the approved template, e.g. `("{{ contact.first_name }}",)`.
    """

    name: str
    language: str
    parameters: tuple[str, ...] = ()
    # Further languages the approved template exists in (WhatsApp approves each language
    # of a template on its own): a contact whose locale one of them matches gets it.
    languages: tuple[str, ...] = ()

    def language_for(self, requested: str | None) -> str:
        """The approved language closest to the contact's locale, else `language`.

        Matched as `locale` blocks are (`es_MX` -> `es`): a contact no language matches
        gets the default, as one without a matching `locale` block gets default content.
        """
        return select_locale(requested, (self.language, *self.languages)) or self.language


@dataclass(frozen=True)
class RenderContext:
    """Everything a template may refer to for one contact and one send."""

    contact: Mapping[str, Any]
    tenant: Mapping[str, Any] = field(default_factory=dict)
    campaign: Mapping[str, Any] = field(default_factory=dict)
    event: Mapping[str, Any] | None = None
    unsubscribe_url: str | None = None
    preferences_url: str | None = None
    view_in_browser_url: str | None = None
    # A confirmation message's link to confirm the contact's pending opt-in.
    confirm_url: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    locale: str | None = None

    def variables(self) -> dict[str, Any]:
        """The template's top-level names; `company` is an alias of `tenant`."""
        data: dict[str, Any] = {
            name: _wrap(value, name) for name, value in self.extra.items() if not name[:1] == "_"
        }
        data.update(
            contact=_wrap(self.contact, "contact"),
            # Wrapped once per name, so a missing value is named as the template wrote it.
            tenant=_wrap(self.tenant, "tenant"),
            company=_wrap(self.tenant, "company"),
            campaign=_wrap(self.campaign, "campaign"),
            event=_wrap(self.event or {}, "event"),
        )
        for name in LINK_VARIABLES:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


# --------------------------------------------------------------------------- locales


def normalize_locale(tag: str) -> str:
    """`es-mx` -> `es_MX`: the spelling Babel and the compiled `locale` blocks share."""
    parts = re.split(r"[-_]", tag.strip())
    if not parts or not parts[0]:
        return ""
    head = parts[0].lower()
    rest = [p.upper() if len(p) == 2 else p.title() for p in parts[1:] if p]
    return "_".join([head, *rest])


def _lineage(requested: str | None) -> list[str]:
    """A locale and its parents, most specific first: `es_MX` -> `es`."""
    tag = normalize_locale(requested or "")
    if not tag:
        return []
    parts = tag.split("_")
    return ["_".join(parts[:end]) for end in range(len(parts), 0, -1)]


def locale_chain(requested: str | None, default: str = DEFAULT_LOCALE) -> list[str]:
    """The locales to format for, most specific first: `es_MX` -> `es` -> default."""
    chain = _lineage(requested)
    for tag in (normalize_locale(default), DEFAULT_LOCALE):
        if tag:
            chain.append(tag)
    return list(dict.fromkeys(chain))


def select_locale(requested: str | None, available: Iterable[str]) -> str | None:
    """The key of the best `locale` block for this request, or None for the default content.

    Only the requested locale and its parents are tried (`es_MX` -> `es`): a contact no
    block matches gets the template's default content, whatever language that is written
    in, never a block for the renderer's default locale (a `locale "en"` beside Spanish
    default content is for English speakers, not for everyone else).
    """
    by_norm = {normalize_locale(key): key for key in available}
    for tag in _lineage(requested):
        if tag in by_norm:
            return by_norm[tag]
    return None


def babel_locale(candidates: Iterable[str]) -> babel.Locale:
    """The first candidate Babel knows, else English, for number and date formatting."""
    for tag in candidates:
        found = _parse_locale(normalize_locale(tag))
        if found is not None:
            return found
    return babel.Locale.parse(DEFAULT_LOCALE)


@functools.lru_cache(maxsize=1024)
def _parse_locale(tag: str) -> babel.Locale | None:
    try:
        return babel.Locale.parse(tag)
    except (ValueError, TypeError, babel.UnknownLocaleError):
        return None


# --------------------------------------------------------------------------- data wrapping


class _PathDict(dict[str, Any]):
    """A dict that knows its dotted path, so a missing key names `contact.first_name`."""

    _cadence_path: str


class _PathList(list[Any]):
    """A list that knows its path, for `properties[3]` in error messages."""

    _cadence_path: str


def _wrap(value: Any, path: str) -> Any:
    """Copy mappings and lists into path-aware containers (others pass through).

    A key whose value is None is left out: a null attribute is a missing one, so
    `default(...)` applies and a bare use is the clear missing-variable error, never "None".
    """
    if isinstance(value, Mapping):
        wrapped = _PathDict(
            (str(key), _wrap(item, f"{path}.{key}"))
            for key, item in value.items()
            if item is not None
        )
        wrapped._cadence_path = path
        return wrapped
    if isinstance(value, list | tuple):
        items = _PathList(_wrap(item, f"{path}[{i}]") for i, item in enumerate(value))
        items._cadence_path = path
        return items
    return value


# The per-send links a sender fills in; missing, they mean no link service is configured.
LINK_VARIABLES = frozenset(
    {"unsubscribe_url", "preferences_url", "view_in_browser_url", "confirm_url"}
)


def _missing_hint(variable: str) -> str:
    """How to fix a missing variable: configure the links, or give the template a default."""
    if variable == "view_in_browser_url":
        return (
            "only an email has a web version, made by `cadence serve` when CADENCE_PUBLIC_URL"
            " and CADENCE_LINK_SECRET are set (docs/service.md)"
        )
    if variable == "confirm_url":
        return (
            "only a confirmation message gets it (a template that uses `confirm_url`, sent to a"
            " contact whose opt-in is pending), made by `cadence serve` when CADENCE_PUBLIC_URL"
            " and CADENCE_LINK_SECRET are set (docs/service.md)"
        )
    if variable in LINK_VARIABLES:
        return (
            "this sender makes no such link: `cadence serve` makes these links when"
            " CADENCE_PUBLIC_URL and CADENCE_LINK_SECRET are set (docs/service.md)"
        )
    return "use `| default(...)` if it may be missing"


class _MissingVariable(UndefinedError):
    """A StrictUndefined was used; carries the dotted name of what was missing."""

    def __init__(self, message: str, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


class _CadenceUndefined(StrictUndefined):
    """StrictUndefined that reports the full path of the missing variable."""

    __slots__ = ()

    def _variable(self) -> str:
        name = str(self._undefined_name) if self._undefined_name is not None else "?"
        parent = getattr(self._undefined_obj, "_cadence_path", None)
        if isinstance(parent, str):
            return (
                f"{parent}[{name}]" if isinstance(self._undefined_obj, list) else f"{parent}.{name}"
            )
        return name

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        if self._undefined_exception is not UndefinedError:
            raise self._undefined_exception(self._undefined_message)
        variable = self._variable()
        raise _MissingVariable(f"`{variable}` is undefined", variable)


# Undefined binds its operators to the base class's failure method; point them at ours.
for _name, _value in list(vars(Undefined).items()) + list(vars(StrictUndefined).items()):
    if _value is Undefined._fail_with_undefined_error and _name != "_fail_with_undefined_error":
        setattr(_CadenceUndefined, _name, _CadenceUndefined._fail_with_undefined_error)


# --------------------------------------------------------------------------- per-render state


class _RenderState(threading.local):
    """What the running render may still spend, and the locale its filters format for."""

    limits: RenderLimits
    iterations: int
    built: int
    locale: babel.Locale
    timezone: str | None
    currency: str | None

    def __init__(self) -> None:
        self.limits = RenderLimits()
        self.iterations = 0
        self.built = 0
        self.locale = babel.Locale.parse(DEFAULT_LOCALE)
        self.timezone = None
        self.currency = None

    def start(
        self,
        limits: RenderLimits,
        locale: babel.Locale,
        timezone: str | None,
        currency: str | None,
    ) -> None:
        """Begin a render on this thread: its limits and formatting, nothing spent yet."""
        self.limits = limits
        self.iterations = 0
        self.built = 0
        self.locale = locale
        self.timezone = timezone
        self.currency = currency


_state = _RenderState()


def _refuse(reason: str) -> NoReturn:
    raise SecurityError(reason)


# Values whose memory grows with what they hold; what an operation builds of them is counted.
_SIZED = (str, bytes, list, tuple, dict, set, frozenset, int)


def _charge(size: int) -> None:
    """Count bytes the render built against its total (`RenderLimits.max_built_bytes`)."""
    _state.built += size
    if _state.built > _state.limits.max_built_bytes:
        _refuse(f"the template builds more than {_state.limits.max_built_bytes:,} bytes of values")


def _count_built(value: Any, *inputs: Any, items: bool = False) -> Any:
    """Charge a value an operation returned, unless it is one it was given (nothing built);
    with `items`, a new list's items too (`split` makes a string per word)."""
    if isinstance(value, _SIZED) and not any(value is given for given in inputs):
        size = sys.getsizeof(value)
        if items and isinstance(value, list | tuple):
            size += sum(sys.getsizeof(item) for item in value)
        _charge(size)
    return value


def _check_size(size: int) -> None:
    if size > _state.limits.max_output_chars:
        _refuse(f"the result would be {size:,} characters, over the limit")


def _budgeted_range(*args: int) -> Iterator[int]:
    """`range` that counts every step against the render's iteration budget."""
    for arg in args:
        if not isinstance(arg, int):
            raise TypeError("range() takes whole numbers")
    numbers = range(*args)
    if len(numbers) > _state.limits.max_iterations:
        _refuse(f"range of {len(numbers):,} steps is over the limit")
    return _count_steps(numbers)


def _count_steps(numbers: range) -> Iterator[int]:
    for number in numbers:
        _state.iterations += 1
        if _state.iterations > _state.limits.max_iterations:
            _refuse("the template loops more than the iteration limit allows")
        yield number


# A mapping key (`%(name)9d`) may stand before the flags and width.
_PRINTF_WIDTH = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}]*?(\d+)[^{}]*\}")


def _check_format_string(fmt: str) -> None:
    """Refuse printf or str.format widths that would build huge strings."""
    limit = _state.limits.max_output_chars
    for match in _PRINTF_WIDTH.finditer(fmt):
        for group in match.groups():
            if group == "*" or (group is not None and int(group) > limit):
                _refuse("a format width is over the limit")
    for match in _FORMAT_WIDTH.finditer(fmt):
        if int(match.group(1)) > limit:
            _refuse("a format width is over the limit")
    try:
        specs = [spec for _, _, spec, _ in string.Formatter().parse(fmt) if spec]
    except ValueError:
        return  # not a str.format string; formatting it fails on its own
    if any("{" in spec for spec in specs):
        # `'{:{w}}'.format(1, w='999999999')`: the width arrives as text, past every check.
        _refuse("a format width or precision taken from a value (`{:{w}}`) is not allowed")


def _check_join(separator: str, items: Sequence[Any]) -> None:
    """Refuse a join whose separator, repeated between the items, would pass the cap."""
    _check_size(sum(_length(item) for item in items) + len(separator) * max(len(items) - 1, 0))


def _check_str_method(owner: str, name: str, args: Sequence[Any]) -> None:
    """Refuse the `str` methods that can multiply a string in one C call, before the call."""
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        if old and len(new) > len(old):
            _check_size(len(owner) + owner.count(old) * (len(new) - len(old)))
    elif name in ("format", "format_map"):
        _check_format_string(owner)
    elif name == "expandtabs":
        tabsize = args[0] if args and isinstance(args[0], int) else 8
        _check_size(len(owner) + owner.count("\t") * max(tabsize, 0))
    elif name == "translate" and args:
        table = args[0]
        values = table.values() if isinstance(table, Mapping) else table
        if isinstance(values, Iterable) and not isinstance(values, str):
            longest = max((len(v) for v in values if isinstance(v, str)), default=1)
            _check_size(len(owner) * max(longest, 1))
    elif name == "join" and args and isinstance(args[0], list | tuple):
        _check_join(owner, args[0])


def _check_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    limit = _state.limits.max_output_chars
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
            _refuse(f"argument {value} is over the limit")
        if isinstance(value, str) and len(value) > limit:
            _refuse(f"a {len(value):,}-character argument is over the limit")


def _length(value: Any) -> int:
    """Characters a value adds when joined as text (cheap for strings, the common case)."""
    return len(value) if isinstance(value, str) else len(str(value))


class _GuardedNamespace(Namespace):
    """`namespace()` whose attributes cannot be grown past the size limit in a loop."""

    def __setitem__(self, name: str, value: Any) -> None:
        if isinstance(value, str | list | tuple):
            _check_size(len(value))
        super().__setitem__(name, value)


class _OutputBuffer(list[Any]):
    """What a macro, `{% set %}` block or `{% filter %}` block prints, refused past the
    output limit as it grows: Jinja joins it in one C call, which no later check would
    stop before it had built the whole string (a loop printing a long value 20,000 times
    in a macro asked for gigabytes)."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, chunk: Any) -> None:
        self._grow(_length(chunk))
        super().append(chunk)

    def extend(self, chunks: Iterable[Any]) -> None:
        chunks = tuple(chunks)
        self._grow(sum(_length(chunk) for chunk in chunks))
        super().extend(chunks)

    def _grow(self, size: int) -> None:
        _charge(size)  # the string `{% set %}` or a macro joins from it is new
        self.size += size
        if self.size > _state.limits.max_output_chars:
            _refuse(f"a macro or block prints over {_state.limits.max_output_chars:,} characters")


class _GuardedCodeGenerator(CodeGenerator):
    """Compiles `a ~ b` through a size check, so `{% set s = s ~ s %}` chains stay bounded,
    and buffers output in an `_OutputBuffer`, so a macro's or block's output does too."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat(")
        super().visit_Concat(node, frame)
        self.write(")")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        # Jinja compiles a slice to plain Python, past the sandbox: `s[1:]` copies, counted.
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.built_slice(")
        super().visit_Getitem(node, frame)
        self.write(")")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in filter so size arguments cannot blow up memory."""

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_args(args, kwargs)
        # Filters such as `join` and `replace` get an eval context or the environment first.
        passed = sum(1 for a in args if isinstance(a, Context | EvalContext | Environment))
        values = list(args[passed:])
        if name == "join" and values and not isinstance(values[0], list | tuple | str):
            # A generator (`range(n) | join(sep)`) is counted once, as the list it becomes.
            values[0] = list(values[0])
            args = (*args[:passed], *values)
        if name == "format" and values and isinstance(values[0], str):
            _check_format_string(values[0])
        if name == "join" and values and isinstance(values[0], list | tuple | str):
            separator = values[1] if len(values) > 1 else kwargs.get("d", "")
            _check_join(str(separator), values[0])
        if name == "replace" and len(values) >= 3:
            _check_str_method(str(values[0]), "replace", values[1:3])
        if name == "indent" and values:
            # Every line gets the indent (a number of spaces or a string).
            text = str(values[0])
            width = values[1] if len(values) > 1 else kwargs.get("width", 4)
            pad = len(width) if isinstance(width, str) else max(int(width), 0)
            _check_size(len(text) + (text.count("\n") + 2) * pad)
        if name == "wordwrap" and values:
            text = str(values[0])
            width = values[1] if len(values) > 1 else kwargs.get("width", 79)
            wrap = values[3] if len(values) > 3 else kwargs.get("wrapstring")
            if isinstance(wrap, str) and isinstance(width, int):
                # Greedy wrapping: two lines in a row hold more than `width` characters.
                lines = 2 * len(text) // max(width, 1) + 1
                _check_size(len(text) + lines * len(wrap))
        if name == "urlize" and values:
            # `target` and `rel` are written into every link, and any word may be one.
            text = str(values[0])
            extra = sum(len(str(kwargs.get(key) or "")) for key in ("target", "rel"))
            _check_size(len(text) + len(text.split()) * extra)
        result = fn(*args, **kwargs)
        if isinstance(result, str):
            _check_size(len(result))
        return _count_built(result, *values, items=True)

    return guarded


# --------------------------------------------------------------------------- Babel filters


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Undefined):
        str(value)  # raises the missing-variable error
    if isinstance(value, bool):
        raise TypeError("expected a number, got a boolean")
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise TypeError(f"expected a number, got {value!r}") from None


def _moment(value: Any) -> dt.datetime | dt.date:
    if isinstance(value, dt.datetime | dt.date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    try:
        text = str(value).strip().replace("Z", "+00:00")
        return (
            dt.datetime.fromisoformat(text)
            if "T" in text or " " in text
            else dt.date.fromisoformat(text)
        )
    except ValueError:
        raise TypeError(f"expected a date or datetime, got {value!r}") from None


def f_number(value: Any, digits: int | None = None) -> str:
    """`{{ 1234.5 | number }}` -> `1,234.5` (en) / `1.234,5` (de)."""
    amount = _decimal(value)
    if digits is not None:
        if not 0 <= digits <= 12:
            raise ValueError("digits must be between 0 and 12")
        amount = amount.quantize(Decimal(1).scaleb(-digits))
        pattern = _state.locale.decimal_formats[None].pattern.split(";")[0]
        integer = pattern.split(".")[0]
        return babel.numbers.format_decimal(
            amount,
            format=integer + ("." + "0" * digits if digits else ""),
            locale=_state.locale,
            decimal_quantization=False,
        )
    return _decimal_text(amount, _state.locale)


@functools.lru_cache(maxsize=8192)
def _decimal_text(amount: Decimal, locale: babel.Locale) -> str:
    return babel.numbers.format_decimal(amount, locale=locale)


def f_money(value: Any, currency: str | None = None) -> str:
    """`{{ price | money('EUR') }}` -> `€1,234.50` / `1.234,50 €`; a {amount, currency} works."""
    if isinstance(value, Mapping) and "amount" in value:
        currency = currency or value.get("currency")
        value = value["amount"]
    code = currency or _state.currency
    if not code:
        raise ValueError("money needs a currency: money('USD'), or tenant.currency")
    return _currency(_decimal(value), str(code).upper(), _state.locale)


@functools.lru_cache(maxsize=8192)
def _currency(amount: Decimal, code: str, locale: babel.Locale) -> str:
    """Babel's currency formatting is slow; prices repeat across contacts, so remember them."""
    return babel.numbers.format_currency(amount, code, locale=locale)


def f_percent(value: Any) -> str:
    """`{{ 0.25 | percent }}` -> `25%`."""
    return babel.numbers.format_percent(_decimal(value), locale=_state.locale)


def f_date(value: Any, format: str = "medium") -> str:
    """`{{ contact.renewal | date }}` -> `Dec 1, 2026` / `1 dic 2026`."""
    moment = _moment(value)
    if isinstance(moment, dt.datetime):
        moment = _localize(moment).date()
    return babel.dates.format_date(moment, format=format, locale=_state.locale)


def f_datetime(value: Any, format: str = "medium") -> str:
    """`{{ event.at | datetime('short') }}` in the contact's timezone."""
    moment = _moment(value)
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.combine(moment, dt.time())
    return babel.dates.format_datetime(_localize(moment), format=format, locale=_state.locale)


def f_time(value: Any, format: str = "short") -> str:
    """`{{ event.at | time }}` -> `9:00 AM` / `9:00`."""
    moment = _moment(value)
    if not isinstance(moment, dt.datetime):
        raise TypeError("time needs a datetime")
    return babel.dates.format_time(_localize(moment), format=format, locale=_state.locale)


def _localize(moment: dt.datetime) -> dt.datetime:
    if _state.timezone:
        try:
            zone = babel.dates.get_timezone(_state.timezone)
        except LookupError:
            return moment
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(zone)
    return moment


def _per_render(fn: Callable[..., str]) -> Callable[..., str]:
    """Mark a locale filter context-dependent, so Jinja never folds it at compile time
    (a folded `{{ 1234.5 | number }}` would keep the first render's locale forever)."""

    @pass_context
    @functools.wraps(fn)
    def run(context: Context, *args: Any, **kwargs: Any) -> str:
        return fn(*args, **kwargs)

    return run


LOCALE_FILTERS: dict[str, Callable[..., str]] = {
    "number": _per_render(f_number),
    "money": _per_render(f_money),
    "currency": _per_render(f_money),
    "percent": _per_render(f_percent),
    "date": _per_render(f_date),
    "datetime": _per_render(f_datetime),
    "time": _per_render(f_time),
}


# --------------------------------------------------------------------------- environment


class _NoTemplates(BaseLoader):
    """Templates stand alone: `include`, `import` and `extends` reach no file."""

    def get_source(self, environment: Any, template: str) -> tuple[str, str | None, None]:
        raise SecurityError("a template cannot include, import or extend other templates")


class CadenceSandbox(SandboxedEnvironment):
    """Jinja2's sandbox plus size checks on operators, calls and filters."""

    # Every arithmetic operator, so what each builds is counted (`big - 1` is a new number).
    intercepted_binops = frozenset({"*", "**", "%", "+", "-", "/", "//"})
    intercepted_unops = frozenset({"-", "+"})
    code_generator_class = _GuardedCodeGenerator

    def __init__(self, *, html: bool) -> None:
        super().__init__(
            autoescape=html,
            undefined=_CadenceUndefined,
            keep_trailing_newline=True,
            loader=_NoTemplates(),
            auto_reload=False,
            cache_size=0,
        )
        for name, fn in list(self.filters.items()):
            self.filters[name] = _guard_filter(name, fn)
        self.filters.update(LOCALE_FILTERS)
        self.globals["range"] = _budgeted_range
        self.globals["namespace"] = _GuardedNamespace
        self.globals.pop("lipsum", None)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Refuse `'x' * 10**9`, `10 ** 10**9` and printf widths before Python computes them."""
        if operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    _refuse("the product is over the size limit")
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    _check_size(len(seq) * max(times, 0))
        elif operator == "**":
            if isinstance(right, int | float) and isinstance(left, int | float):
                bits = max(abs(int(left)), 2).bit_length() * max(abs(right), 1)
                if abs(left) > 1 and bits > MAX_INT_BITS:
                    _refuse("the power is over the size limit")
        elif operator == "%":
            if isinstance(left, str):
                _check_format_string(left)
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _check_size(len(left) + len(right))
        return _count_built(super().call_binop(context, operator, left, right), left, right)

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        """`-big`: a new number, counted like any other built value."""
        return _count_built(super().call_unop(context, operator, arg), arg)

    def built_slice(self, value: Any) -> Any:
        """A slice's copy, counted (see `_GuardedCodeGenerator.visit_Getitem`)."""
        return _count_built(value)

    def output_buffer(self) -> _OutputBuffer:
        """A new buffer for a macro's or block's output (see `_GuardedCodeGenerator`)."""
        return _OutputBuffer()

    def checked_concat(self, joined: Any) -> Any:
        """The result of `~`, refused once it grows past the output limit."""
        _check_size(len(joined))
        return _count_built(joined)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`'{:9999999}'.format(x)`: check the format string before Python expands it."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_format_string(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_args(args, kwargs)
            result = wrapped(*args, **kwargs)
            _check_size(len(result))
            _count_built(result)
            return result

        return checked

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Calls from templates: no huge size arguments, no string-exploding replace/format."""
        _check_args(args, kwargs)
        if isinstance(__obj, BlockReference):
            # `self.NAME()` joins the block's whole output in Jinja, past every check.
            _refuse("a template cannot call its blocks (`self.NAME()`); use a macro")
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            if name == "join" and args and not isinstance(args[0], list | tuple | str):
                args = (list(args[0]), *args[1:])
            _check_str_method(owner, name, args)
        # A list, dict or set a method fills (`x.append(...)`, `x.extend(x)`) grows in place.
        grows = isinstance(owner, list | dict | set)
        before = sys.getsizeof(owner) if grows else 0
        result = SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        if grows:
            _charge(max(sys.getsizeof(owner) - before, 0))
        if isinstance(result, str | list | tuple):
            _check_size(len(result))
        return _count_built(result, owner, *args, *kwargs.values(), items=True)


# --------------------------------------------------------------------------- the renderer


class TemplateRenderer:
    """Renders compiled templates for one contact at a time, safely and in bounded time.

    Thread-safe; one instance serves the whole engine (compiled templates are cached by
    source). `render` blocks the calling thread for at most `limits.timeout_seconds`; from
    Trio call `await renderer.arender(...)`, which runs it in a worker thread.
    """

    def __init__(
        self,
        limits: RenderLimits | None = None,
        *,
        default_locale: str = DEFAULT_LOCALE,
        whatsapp_templates: Mapping[str, ApprovedWhatsAppTemplate] | None = None,
        cache_size: int = 512,
    ) -> None:
        self.limits = limits or RenderLimits()
        self.default_locale = default_locale
        self.whatsapp_templates = dict(whatsapp_templates or {})
        self._html_env = CadenceSandbox(html=True)
        self._text_env = CadenceSandbox(html=False)
        self._runner = BoundedRunner()
        self._cache: dict[tuple[bool, str, str], Any] = {}
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size

    # ----------------------------------------------------------------- public API

    def render(
        self,
        template: CompiledTemplate,
        context: RenderContext,
        *,
        approved: ApprovedWhatsAppTemplate | None = None,
    ) -> RenderedContent:
        """Render `template` for one contact; raises `TemplateRenderError` and nothing else."""
        requested = context.locale or _text(context.contact.get("locale"))
        key = select_locale(requested, template.locales)
        content = template.locales[key] if key is not None else template.content
        chosen = key or self.default_locale
        fmt_locale = babel_locale([*locale_chain(requested, self.default_locale)])
        variables = context.variables()
        variables.setdefault("locale", str(fmt_locale))
        timezone = _text(context.contact.get("timezone")) or _text(context.tenant.get("timezone"))
        currency = _text(context.tenant.get("currency"))
        name = template.name

        def job() -> RenderedContent:
            _state.start(self.limits, fmt_locale, timezone, currency)
            return self._render_channel(
                template.channel, name, content, variables, chosen, approved, requested
            )

        try:
            return self._runner.run(job, self.limits.timeout_seconds)
        except RenderTimeout:
            raise TemplateRenderError(
                name, f"rendering took longer than {self.limits.timeout_seconds:g}s and was stopped"
            ) from None

    async def arender(
        self,
        template: CompiledTemplate,
        context: RenderContext,
        *,
        approved: ApprovedWhatsAppTemplate | None = None,
    ) -> RenderedContent:
        """`render` from Trio code without blocking the event loop."""
        import trio

        return await trio.to_thread.run_sync(
            functools.partial(self.render, template, context, approved=approved)
        )

    def render_string(
        self, source: str, context: RenderContext, *, name: str = "<string>", html: bool = False
    ) -> str:
        """Render one string (a subject, a webhook body) with the same sandbox and limits."""
        fmt_locale = babel_locale(locale_chain(context.locale, self.default_locale))
        variables = context.variables()

        def job() -> str:
            timezone = _text(context.contact.get("timezone"))
            _state.start(self.limits, fmt_locale, timezone, _text(context.tenant.get("currency")))
            return self._render_part(name, "text", source, variables, html=html)

        try:
            return self._runner.run(job, self.limits.timeout_seconds)
        except RenderTimeout:
            raise TemplateRenderError(name, "rendering took too long and was stopped") from None

    # ----------------------------------------------------------------- channels

    def _render_channel(
        self,
        channel: str,
        name: str,
        content: TemplateContentModel,
        variables: Mapping[str, Any],
        locale: str,
        approved: ApprovedWhatsAppTemplate | None,
        requested: str | None = None,
    ) -> RenderedContent:
        if channel == "email":
            return self._render_email(name, content, variables, locale)
        if channel == "inbox":
            # An in-app message: its subject (a title) is optional, as the language allows.
            return self._render_email(name, content, variables, locale, needs_subject=False)
        if channel == "sms":
            text = sms_text(self._render_message_text(name, content, variables))
            length: SmsLength = sms_length(text)
            return SmsContent(text, length.encoding, length.units, length.segments, locale)
        if channel == "whatsapp":
            text = self._render_message_text(name, content, variables)
            spec = approved or self.whatsapp_templates.get(name)
            call = None
            if spec is not None:
                # WhatsApp refuses a parameter with a line break, a tab or more than four
                # spaces in a row (after Infobip took the message): one line, as a subject.
                params = tuple(
                    _one_line(
                        self._render_part(name, f"parameter {i + 1}", p, variables, html=False)
                    )
                    for i, p in enumerate(spec.parameters)
                )
                call = WhatsAppTemplateCall(spec.name, spec.language_for(requested), params)
            return WhatsAppContent(text, call, locale)
        if channel == "webhook":
            import json

            text = self._render_part(name, "body", content.body, variables, html=False)
            try:
                payload = json.loads(text)
            except ValueError:
                payload = {"text": text.strip()}
            if not isinstance(payload, dict):
                payload = {"data": payload}
            return WebhookContent(payload, locale)
        raise TemplateRenderError(name, f"no renderer for channel `{channel}`")

    def _render_message_text(
        self, name: str, content: TemplateContentModel, variables: Mapping[str, Any]
    ) -> str:
        """An SMS's or WhatsApp message's text; one that renders to nothing is not sent (an
        empty SMS is still billed, and WhatsApp refuses empty text)."""
        text = self._render_part(name, "body", content.body, variables, html=False).strip()
        if not text:
            raise TemplateRenderError(name, "the message rendered empty", part="body")
        return text

    def _render_email(
        self,
        name: str,
        content: TemplateContentModel,
        variables: Mapping[str, Any],
        locale: str,
        *,
        needs_subject: bool = True,
    ) -> EmailContent:
        if content.subject is None and needs_subject:
            raise TemplateRenderError(name, "an email needs a subject", part="subject")
        subject = _one_line(
            self._render_part(name, "subject", content.subject or "", variables, html=False)
        )
        if not subject and needs_subject:
            raise TemplateRenderError(name, "the subject rendered empty", part="subject")
        preheader = None
        if content.preheader is not None:
            preheader = _one_line(
                self._render_part(name, "preheader", content.preheader, variables, html=False)
            )
        if _looks_like_html(content.body, content.body_file):
            html = self._render_part(name, "body", content.body, variables, html=True)
            text = html_to_text(html)
        else:
            text = self._render_part(name, "body", content.body, variables, html=False)
            text = text.strip() + "\n"
            html = text_to_html(text)
        if preheader:
            html = _insert_preheader(html, preheader)
        return EmailContent(subject, preheader or None, html, text, locale)

    # ----------------------------------------------------------------- one part

    def _render_part(
        self, name: str, part: str, source: str, variables: Mapping[str, Any], *, html: bool
    ) -> str:
        """Compile (cached) and render one string; map every failure to TemplateRenderError."""
        filename = f"{name}:{part}"
        if len(source) > self.limits.max_source_chars:
            raise TemplateRenderError(name, "the template source is too large", part=part)
        try:
            template = self._compiled(html, filename, source)
            chunks: list[str] = []
            size = 0
            for chunk in template.generate(variables):
                size += len(chunk)
                if size > self.limits.max_output_chars:
                    raise SecurityError(
                        f"output is over the limit of {self.limits.max_output_chars:,} characters"
                    )
                chunks.append(chunk)
            return "".join(chunks)
        except TemplateRenderError:
            raise
        except RenderTimeout:
            raise
        except TemplateSyntaxError as exc:
            raise TemplateRenderError(
                name, f"syntax error: {exc.message}", part=part, line=exc.lineno
            ) from None
        except _MissingVariable as exc:
            raise TemplateRenderError(
                name,
                f"`{exc.variable}` is undefined ({_missing_hint(exc.variable)})",
                part=part,
                line=_template_line(exc, filename),
                variable=exc.variable,
            ) from None
        except SecurityError as exc:
            raise TemplateRenderError(
                name, f"not allowed: {exc}", part=part, line=_template_line(exc, filename)
            ) from None
        except RecursionError:
            raise TemplateRenderError(name, "recursion too deep", part=part) from None
        except (TemplateError, Exception) as exc:
            raise TemplateRenderError(
                name,
                f"{type(exc).__name__}: {exc}",
                part=part,
                line=_template_line(exc, filename),
            ) from None

    def _compiled(self, html: bool, filename: str, source: str) -> Any:
        key = (html, filename, source)
        with self._cache_lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        env = self._html_env if html else self._text_env
        code = env.compile(source, name=filename, filename=filename)
        template = env.template_class.from_code(env, code, env.make_globals(None))
        with self._cache_lock:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = template
        return template


# --------------------------------------------------------------------------- helpers


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _one_line(text: str) -> str:
    """Text on one line, every run of white space one space: headers cannot carry newlines
    (header injection), nor can WhatsApp template parameters."""
    return " ".join(text.split())


_HTML_HINT = re.compile(
    r"<\s*(html|body|p|div|table|br|a|h[1-6]|span|img|ul|ol|b|strong|em|i)\b", re.I
)


def _looks_like_html(source: str, body_file: str | None) -> bool:
    if body_file and body_file.lower().endswith((".txt", ".txt.j2", ".text")):
        return False
    if body_file and ".htm" in body_file.lower():
        return True
    return bool(_HTML_HINT.search(source))


def _insert_preheader(html: str, preheader: str) -> str:
    """The hidden preview text mail clients show after the subject."""
    block = Markup(
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
        "{}</div>"
    ).format(escape(preheader))
    match = re.search(r"<body[^>]*>", html, re.I)
    if match:
        return html[: match.end()] + "\n" + str(block) + html[match.end() :]
    return str(block) + "\n" + html


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template line of the innermost frame that ran template code."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line
