"""Validating one contact or event row, so that bad data is named precisely and never stored.

A row is a mapping from column to raw value: text from a CSV cell, or a JSON value. An
empty cell (or JSON null) means "no value": it clears that field on an existing contact.
"""

from __future__ import annotations

import functools
import math
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from operator import methodcaller
from typing import Any

from cadence.dsl.symbols import CHANNELS, LOCALE_TAG
from cadence.engine.store.database import NUL_IN_TEXT, unstorable
from cadence.engine.store.models import ID_LENGTH, NAME_LENGTH, ConsentStatus
from cadence.engine.store.schema import (
    IDENTIFIER,
    STANDARD_FIELDS,
    AttributeType,
    ContactSchema,
    coerce_value,
    parse_datetime,
    parse_string_list,
)
from cadence.engine.store.sends import EVERY_CHANNEL, consent_channel_problem
from cadence.errors import CadenceError, offset_hint, suggest
from cadence.text import composed


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (source, row, column) and why."""

    source: str
    row: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        """`people.csv:4: column "timezone": unknown time zone ...`"""
        where = self.source if self.row is None else f"{self.source}:{self.row}"
        if self.column is not None:
            return f'{where}: column "{self.column}": {self.reason}'
        return f"{where}: {self.reason}"


class InvalidInput(CadenceError):
    """Input rejected as a whole: nothing was written. Carries every problem found.

    `skippable`: the problems are all in rows, so skipping the bad ones (`--skip-invalid`)
    would write the rest; a problem of the file or of a CSV header refuses it whole.
    """

    def __init__(self, problems: list[Problem], *, skippable: bool = False) -> None:
        """Keep the problems; the message lists the first few."""
        self.problems = problems
        self.skippable = skippable
        shown = "\n".join(str(problem) for problem in problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s), nothing written:\n{shown}{more}")


@dataclass
class ContactRecord:
    """A validated contact row: the standard fields and attributes it sets (None clears)."""

    id: str
    fields: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class EventRecord:
    """A validated event: who (or None for an event about a thing), what, when, details.

    Its properties are in NFC (`cadence.text`) whoever made it: an import, the service, a
    provider's webhook or the engine itself.
    """

    contact_id: str | None
    name: str
    at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.properties = composed(self.properties)


# The columns a contact row keeps exactly as given, not in NFC: an id is a key the product
# chose (docs/store.md), an address is the mailbox's or the number's own.
AS_GIVEN = frozenset(("id", "email", "phone"))


# --- standard fields ---------------------------------------------------------------------

_EMAIL = re.compile(
    r"[^@\s\"(),:;<>\[\\\]]+@([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}"
)
_PHONE_NOISE = re.compile(r"[\s\-.()/]")
# `+44 (0)20 7946 0958`: the national trunk 0, written in brackets after the country code,
# is dialled only from inside the country and is not part of the international number.
_TRUNK_ZERO = re.compile(r"^\s*(\+|00)\s*(\d{1,3})\s*\(0\)")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _text(value: Any, *, what: str) -> str:
    """A string cell; JSON numbers are accepted where a person may have typed digits."""
    if isinstance(value, str):
        if "\x00" in value:  # an id or key is a lookup before it is a value `unstorable` sees
            raise ValueError(NUL_IN_TEXT)
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected {what} as a string, got {type(value).__name__}")


def normalize_email(value: Any) -> str:
    """A plausible email address, with its domain lowercased."""
    text = _text(value, what="an email address")
    if len(text) > 320 or not _EMAIL.fullmatch(text):
        raise ValueError(f"{text!r} is not an email address")
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalize_phone(value: Any) -> str:
    """An international number in E.164 form (+ and digits), spaces and dashes removed,
    and a bracketed trunk 0 after the country code (`+44 (0)20 ...`) left out."""
    text = _text(value, what="a phone number")
    compact = _PHONE_NOISE.sub("", _TRUNK_ZERO.sub(r"\1\2", text))
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _E164.fullmatch(compact):
        raise ValueError(
            f"{text!r} is not an international phone number (E.164, e.g. +14155550123)"
        )
    return compact


@functools.cache
def _zones() -> frozenset[str]:
    """Every IANA time zone name this machine knows."""
    return frozenset(zoneinfo.available_timezones())


def normalize_timezone(value: Any) -> str:
    """An IANA time zone name that zoneinfo can load, with a suggestion when it is close."""
    text = _text(value, what="a time zone")
    try:
        zoneinfo.ZoneInfo(text)
        return text
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    offset = offset_hint(text)
    if offset is not None:
        raise ValueError(f"unknown time zone {text!r} ({offset})")
    by_lower = {zone.lower(): zone for zone in _zones()}
    guess = by_lower.get(text.lower())
    if guess is None:
        guess = suggest(text, _zones(), cutoff=0.75)
    hint = f' (did you mean "{guess}"?)' if guess else " (use an IANA name like Europe/Paris)"
    raise ValueError(f"unknown time zone {text!r}{hint}")


def normalize_locale(value: Any) -> str:
    """A BCP 47 style locale such as `en`, `es-MX`, `pt-BR` (underscores accepted)."""
    text = _text(value, what="a locale")
    match = LOCALE_TAG.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a locale (e.g. en, es-MX, pt-BR)")
    parts = [match.group(1).lower()]
    for part in re.split(r"[-_]", match.group(2))[1:]:
        parts.append(part.upper() if len(part) == 2 else part)
    return "-".join(parts)


def _name(value: Any) -> str:
    """A first or last name: text, a number being the text of its digits.

    One rule whatever the file: a CSV cell `42` or `4.5` is the text "42" or "4.5", so a
    JSON 42 or 4.5 (a spreadsheet or an export that typed a column of digits) is too.
    true/false is no name (in JSON, a flag shifted into the name's place): refused, as a
    list or an object is. A CSV cell `true` is text, and kept as written.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a name as text, got {str(value).lower()}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a name as text, got {value}")
        value = repr(value)
    text = _text(value, what="a name")
    if len(text) > NAME_LENGTH:
        raise ValueError(f"longer than {NAME_LENGTH} characters")
    return text


def normalize_contact_id(value: Any) -> str:
    """A contact id: non-empty text up to 255 characters (JSON integers accepted)."""
    if value is None:
        raise ValueError("a contact id is required")
    text = _text(value, what="a contact id")
    if not text:
        raise ValueError("a contact id is required")
    if len(text) > ID_LENGTH:
        raise ValueError(f"longer than {ID_LENGTH} characters")
    return text


_FIELD_NORMALIZERS = {
    "email": normalize_email,
    "phone": normalize_phone,
    "first_name": _name,
    "last_name": _name,
    "timezone": normalize_timezone,
    "locale": normalize_locale,
    "tags": parse_string_list,
}


def _is_empty(value: Any) -> bool:
    """An empty CSV cell or a JSON null: no value."""
    return value is None or (isinstance(value, str) and not value.strip())


def _plain_attribute(value: Any) -> Any:
    """An attribute without a declared type: kept as given if it is flat JSON (whether the
    store can hold it is `unstorable`'s to say, for every value of a row)."""
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list):
        return parse_string_list(value)
    raise ValueError("attributes hold a string, number, boolean or list of strings, not an object")


# Cells an untyped CSV column may hold to be read as numbers: no leading zeros (zip codes,
# ids), no exponent or grouping, and integers short enough to stay exact everywhere.
_INTEGER_CELL = re.compile(r"-?(?:0|[1-9][0-9]{0,14})")
_NUMBER_CELL = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]+)?")  # an integer or a decimal
_BOOLEAN_CELLS = {"true": True, "false": False}


class CsvColumnTypes:
    """What the non-empty cells of a CSV's attribute columns held, a chunk of rows at a time.

    A CSV cell is text; read as text, `lead_score` 75 would never be `>= 30`, `sms_opt_in`
    true never an opt-in and `areas` Manila;Cebu never a list for `event.city in
    contact.areas`. A column whose every non-empty cell is a plain number is read as
    numbers, one whose every cell is true/false as booleans, one with a list in some cell
    (`a;b`, or a JSON list of strings) as lists, a cell without `;` being a one-item list, as
    `tags` are; any other column (a zip code with leading zeros, a mix) stays text. Contact
    fields and tags keep their own rules, and a schema, when there is one, decides instead.
    Rows are seen a chunk at a time, so an import can type a file it never holds whole.
    """

    def __init__(self, columns: Sequence[str]) -> None:
        """Watch the attribute columns of `columns` (contact fields keep their own rules)."""
        self._columns = [c for c in columns if c and c not in STANDARD_FIELDS]
        self._filled: set[str] = set()
        self._booleans = set(self._columns)
        self._integers = set(self._columns)
        self._numbers = set(self._columns)
        self._listed: set[str] = set()  # some cell is written as a list
        self._lists = set(self._columns)  # every cell so far reads as a list

    def see(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Take a chunk of rows' cells into account.

        Column by column, each test a C-level pass over the chunk's cells (`map`, sets):
        a second read of the file costs little more than its parsing.
        """
        for column in self._columns:
            # CSV cells are text; a column a row lacks (its header was refused) is empty.
            cells = list(filter(None, map(str.strip, map(methodcaller("get", column, ""), rows))))
            if not cells:
                continue
            self._filled.add(column)
            if column in self._booleans and not _BOOLEAN_CELLS.keys() >= set(map(str.lower, cells)):
                self._booleans.discard(column)
            if column in self._integers and not all(map(_INTEGER_CELL.fullmatch, cells)):
                self._integers.discard(column)
            if column in self._numbers and not all(map(_NUMBER_CELL.fullmatch, cells)):
                self._numbers.discard(column)
            if column not in self._listed and any(
                cell.startswith("[") or ";" in cell for cell in cells
            ):
                self._listed.add(column)
            if column in self._lists:  # only a JSON list can fail to read as a list
                try:
                    for cell in cells:
                        if cell.startswith("["):
                            parse_string_list(cell)
                except ValueError:
                    self._lists.discard(column)

    def converters(self) -> dict[str, Callable[[str], Any]]:
        """Per typed column, how its non-empty cells are read; text columns are left out."""
        convert: dict[str, Callable[[str], Any]] = {}
        for column in self._filled:
            if column in self._booleans:
                convert[column] = lambda cell: _BOOLEAN_CELLS[cell.strip().lower()]
            elif column in self._integers:
                convert[column] = lambda cell: int(cell.strip())
            elif column in self._numbers:
                convert[column] = lambda cell: float(cell.strip())
            elif column in self._listed and column in self._lists:
                convert[column] = parse_string_list
        return convert


def typed_cells(
    raw: dict[str, Any], converters: Mapping[str, Callable[[str], Any]]
) -> dict[str, Any]:
    """A CSV row with the cells of typed columns (`CsvColumnTypes.converters`) converted."""
    if not converters:
        return raw
    typed = raw.copy()  # the typed columns only are visited: a row's other cells are copied in C
    for key, convert in converters.items():
        if key in typed and not _is_empty(typed[key]):
            typed[key] = convert(typed[key])
    return typed


def unknown_column_reason(column: str, schema: ContactSchema | None) -> str | None:
    """Why a column cannot be stored, or None when it can (standard field or attribute)."""
    if column in STANDARD_FIELDS:
        return None
    if schema is not None:
        if column in schema.attributes:
            return None
        choices = [*STANDARD_FIELDS, *schema.attributes]
        close = suggest(column, choices, cutoff=0.7)
        hint = f' (did you mean "{close}"?)' if close else ""
        return f"not a contact field nor an attribute in the schema{hint}"
    if not IDENTIFIER.fullmatch(column):
        close = suggest(column.lower(), STANDARD_FIELDS, cutoff=0.7)
        hint = f' (did you mean "{close}"?)' if close else ""
        return f"not a valid attribute name: use lowercase letters, digits and _{hint}"
    return None


@dataclass
class ColumnNames:
    """What column names say, kept across the rows of one import (against one schema):
    each name's NFC form and why it cannot be stored (None: it can). The rows of a file
    name the same columns row after row; working both out per cell was a tenth of the
    import's CPU."""

    names: dict[Any, Any] = field(default_factory=dict)
    reasons: dict[str, str | None] = field(default_factory=dict)


def validate_contact(
    raw: Mapping[str, Any],
    schema: ContactSchema | None,
    columns: ColumnNames | None = None,
) -> tuple[ContactRecord | None, list[tuple[str | None, str]]]:
    """Check and normalise one contact row; returns the record or the (column, reason) list.

    `raw` may hold an `attributes` object (JSON rows) as well as attribute columns.
    `columns` keeps what the rows' column names say, for rows checked against one schema.
    """
    errors: list[tuple[str | None, str]] = []
    if columns is None:
        columns = ColumnNames()
    names, reasons = columns.names, columns.reasons
    # Text in NFC before it is checked (an `enum`'s values are, as the DSL wrote them) and
    # stored; the id and addresses are kept as given (`cadence.text`).
    values = {
        (names[column] if column in names else names.setdefault(column, composed(column))): (
            value if column in AS_GIVEN else composed(value)
        )
        for column, value in raw.items()
    }
    nested = values.pop("attributes", None)
    if nested is not None:
        if not isinstance(nested, Mapping):
            errors.append(("attributes", "expected an object of attribute values"))
        else:
            for key, value in nested.items():
                if key in values:
                    errors.append((str(key), "given both as a column and inside attributes"))
                elif key in STANDARD_FIELDS:
                    errors.append((str(key), "a standard field, not an attribute"))
                else:
                    values[str(key)] = value

    contact_id: str | None = None
    try:
        contact_id = normalize_contact_id(values.get("id"))
    except ValueError as exc:
        errors.append(("id", str(exc)))

    record_fields: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for column, value in values.items():
        if column == "id":
            continue
        if column not in reasons:
            reasons[column] = unknown_column_reason(column, schema)
        reason = reasons[column]
        if reason is not None:
            errors.append((column, reason))
            continue
        try:
            stored: Any
            if column in _FIELD_NORMALIZERS:
                if column == "tags":
                    stored = [] if _is_empty(value) else parse_string_list(value)
                else:
                    stored = None if _is_empty(value) else _FIELD_NORMALIZERS[column](value)
            elif _is_empty(value):
                stored = None
            elif schema is not None:
                stored = coerce_value(schema.attributes[column], value)
            else:
                stored = _plain_attribute(value)
            # Every value is held to what the store can write here, whatever read it: rows
            # given as Python objects (the API, not a file) are never read by `loads_json`.
            unwritable = unstorable(stored)
            if unwritable is not None:
                raise ValueError(unwritable)
        except ValueError as exc:
            errors.append((column, str(exc)))
            continue
        (record_fields if column in _FIELD_NORMALIZERS else attributes)[column] = stored

    if schema is not None:
        # A row that leaves a required attribute out keeps the stored value (an update of
        # other columns); the importer checks those against the store (`required_left_out`).
        for name, spec in schema.attributes.items():
            if (
                spec.required
                and name in attributes
                and attributes[name] is None
                and not any(column == name for column, _ in errors)
            ):
                errors.append((name, required_reason(schema, name)))

    if errors or contact_id is None:
        return None, errors
    return ContactRecord(id=contact_id, fields=record_fields, attributes=attributes), []


def required_reason(schema: ContactSchema, name: str) -> str:
    """Why a contact without the required attribute `name` is refused."""
    empty_list = schema.attributes[name].type is AttributeType.LIST
    return "required by the schema" + (" (give a list)" if empty_list else "")


def required_left_out(record: ContactRecord, schema: ContactSchema) -> list[str]:
    """The required attributes a valid row neither gives nor clears: the store must hold them."""
    return [
        name
        for name, spec in schema.attributes.items()
        if spec.required and name not in record.attributes
    ]


EVENT_KEYS = frozenset(("contact", "name", "at", "properties", "id", "source"))
# What other tools call an event's fields (Segment's `event` and `timestamp`, a user id).
EVENT_KEY_ALIASES = {
    "event": "name", "event_name": "name", "type": "name",
    "timestamp": "at", "time": "at", "date": "at", "occurred_at": "at", "created_at": "at",
    "user_id": "contact", "contact_id": "contact", "user": "contact", "userid": "contact",
    "props": "properties", "data": "properties", "attributes": "properties",
}  # fmt: skip


# The events whose `channel` property says where the engine suppresses or lifts a person
# or an address (cadence.engine.suppress): a channel it does not know would be stored and
# stop nothing, so the person who unsubscribed would go on receiving. `Email` and ` sms`
# are read as the channel they name.
CHANNEL_EVENTS = frozenset({"unsubscribed", "resubscribed", "complained", "bounced", "replied"})


CONVERTED = "converted"
# A conversion's value, the first of these properties it gives, in its `currency`: what
# `cadence report` adds up as revenue (cadence.engine.analytics, docs/analytics.md).
REVENUE_PROPERTIES = ("value", "revenue", "amount")
CURRENCY_CODE = re.compile(r"[A-Za-z]{3}")


def conversion_value(properties: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
    """A conversion's value and its currency in capitals (None: none given; a value that is
    no amount, stored before `validate_event` refused one, counts as none)."""
    for name in REVENUE_PROPERTIES:
        amount = _amount(properties.get(name))
        if amount is not None:
            currency = properties.get("currency")
            return amount, (str(currency).strip().upper() or None) if currency else None
    return None, None


def _amount(value: Any) -> Decimal | None:
    """A number, or text that is one (`"7.50"`); None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _conversion_problems(properties: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """What is wrong with a `converted` event's value and currency: either stored as given
    would be a purchase the report counts with no revenue, or in a currency of its own."""
    problems: list[tuple[str | None, str]] = []
    for name in REVENUE_PROPERTIES:
        value = properties.get(name)
        if not _is_empty(value) and _amount(value) is None:
            problems.append((
                f"properties.{name}",
                f"{value!r} is not an amount: write a number such as 12.5 (a dot before the"
                ' decimals, no currency sign: the currency goes in "currency")',
            ))  # fmt: skip
    currency = properties.get("currency")
    if not _is_empty(currency) and not (
        isinstance(currency, str) and CURRENCY_CODE.fullmatch(currency.strip())
    ):
        problems.append((
            "properties.currency",
            f"{currency!r} is not a currency code: three letters, as USD or EUR",
        ))  # fmt: skip
    return problems


# The event each consent change is stored as (cadence.engine.consent). Pushed in, such an
# event records that consent, as `Engine.set_consent` does, so it needs a channel that
# takes one.
CONSENT_EVENT_STATUSES = {
    "consent_requested": ConsentStatus.PENDING,
    "consent_granted": ConsentStatus.GRANTED,
    "consent_denied": ConsentStatus.DENIED,
    "consent_withdrawn": ConsentStatus.WITHDRAWN,
}


def _folded_channel(value: Any) -> Any:
    """An event's `channel` property with case and spaces dropped: `"Email"` is email."""
    return value.strip().lower() if isinstance(value, str) else value


def _event_channel(value: Any) -> str:
    """An event's `channel` property as the engine names channels (case and spaces dropped)."""
    folded = _folded_channel(value)
    if not isinstance(folded, str) or (folded not in CHANNELS and folded != EVERY_CHANNEL):
        raise ValueError(
            f"{value!r} is not a channel; one of {', '.join(CHANNELS)},"
            f" or {EVERY_CHANNEL} for every channel"
        )
    return folded


def validate_event(
    raw: Mapping[str, Any],
) -> tuple[EventRecord | None, list[tuple[str | None, str]]]:
    """Check one event object `{"contact", "name", "at", "properties", "id"?, "source"?}`."""
    errors: list[tuple[str | None, str]] = []
    for key in raw:
        if key not in EVENT_KEYS:
            close = EVENT_KEY_ALIASES.get(str(key).lower()) or suggest(str(key), EVENT_KEYS)
            hint = (
                f' (did you mean "{close}"?)'
                if close
                else f' (an event\'s own fields go under "properties": {{"{key}": ...}})'
            )
            errors.append((str(key), f"not an event field{hint}"))

    contact_id: str | None = None
    if not _is_empty(raw.get("contact")):
        try:
            contact_id = normalize_contact_id(raw.get("contact"))
        except ValueError as exc:
            errors.append(("contact", str(exc)))

    name = raw.get("name")
    if not _is_empty(name) and not isinstance(name, str):
        errors.append(("name", f"expected the event name as a string, got {type(name).__name__}"))
        name = None
    elif not isinstance(name, str) or not name.strip():
        errors.append(("name", "an event name is required"))
        name = None
    elif not IDENTIFIER.fullmatch(name.strip()) or len(name.strip()) > NAME_LENGTH:
        errors.append(("name", f"{name!r} is not an event name (lowercase letters, digits, _)"))
        name = None

    at: datetime | None = None
    if _is_empty(raw.get("at")):
        errors.append(("at", "a time is required (ISO-8601, e.g. 2026-12-01T09:00:00Z)"))
    else:
        try:
            at = parse_datetime(raw.get("at"))
        except ValueError as exc:
            errors.append(("at", str(exc)))

    properties = raw.get("properties", {})
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        errors.append(("properties", "expected an object"))
    elif (reason := unstorable(properties)) is not None:
        errors.append(("properties", reason))
    elif (
        isinstance(name, str)
        and name.strip() in CHANNEL_EVENTS
        and not _is_empty(properties.get("channel"))
    ):
        try:
            properties = {**properties, "channel": _event_channel(properties["channel"])}
        except ValueError as exc:
            errors.append(("properties.channel", str(exc)))
    elif isinstance(name, str) and name.strip() in CONSENT_EVENT_STATUSES:
        channel = properties.get("channel")
        folded = _folded_channel(channel)  # as an unsubscribe's: `"Email"` grants email's
        problem = consent_channel_problem(folded)
        if problem is not None:
            errors.append(("properties.channel", problem))
        elif folded != channel:
            properties = {**properties, "channel": folded}
    elif isinstance(name, str) and name.strip() == CONVERTED:
        errors.extend(_conversion_problems(properties))

    dedupe_key: str | None = None
    if not _is_empty(raw.get("id")):
        try:
            dedupe_key = normalize_contact_id(raw.get("id"))
        except ValueError as exc:
            errors.append(("id", str(exc).replace("a contact id", "an event id")))

    source = raw.get("source")
    if source is not None and (not isinstance(source, str) or len(source) > 64):
        errors.append(("source", "expected a short string"))
        source = None
    elif source is not None and (reason := unstorable(source)) is not None:
        errors.append(("source", reason))
        source = None

    if errors or name is None or at is None or not isinstance(properties, dict):
        return None, errors
    return (
        EventRecord(
            contact_id=contact_id,
            name=name.strip(),
            at=at,
            properties=properties,
            dedupe_key=dedupe_key,
            source=source,
        ),
        [],
    )
