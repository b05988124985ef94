"""The contact schema: which custom attributes contacts have and of what type.

Declared in a YAML or JSON file and validated with pydantic, for example::

    attributes:
      city: string
      budget_max: number
      lead_score: {type: integer, required: true}
      email_verified: boolean
      signed_up_at: datetime
      birthday: date
      areas: list            # a list of strings
      plan: {type: string, choices: [free, pro, enterprise]}

Values are stored in the contact's JSON `attributes`: strings, numbers, booleans and lists
as themselves, datetimes as ISO-8601 in UTC ("2026-12-01T09:00:00Z"), dates as "2026-12-01".
"""

from __future__ import annotations

import enum
import json
import math
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cadence.dsl.symbols import CONTACT_COLUMNS
from cadence.engine.clock import as_utc, parse_instant
from cadence.engine.store.database import STORED_INTEGERS
from cadence.errors import CadenceError

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

# Contact fields with columns of their own; an attribute may not reuse these names.
STANDARD_FIELDS = CONTACT_COLUMNS
RESERVED_NAMES: frozenset[str] = frozenset(
    (*STANDARD_FIELDS, "attributes", "tenant_id", "created_at", "updated_at")
)


class SchemaError(CadenceError):
    """A contact schema file that cannot be used, with the file and the reason."""


class AttributeType(enum.StrEnum):
    """The types an attribute can have."""

    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    DATE = "date"
    LIST = "list"  # a list of strings


TYPE_ALIASES: dict[str, AttributeType] = {
    "str": AttributeType.STRING,
    "text": AttributeType.STRING,
    "float": AttributeType.NUMBER,
    "decimal": AttributeType.NUMBER,
    "int": AttributeType.INTEGER,
    "bool": AttributeType.BOOLEAN,
    "timestamp": AttributeType.DATETIME,
    "list[string]": AttributeType.LIST,
    "list<string>": AttributeType.LIST,
    "string[]": AttributeType.LIST,
    "strings": AttributeType.LIST,
}


class AttributeSpec(BaseModel):
    """One declared attribute: its type, whether every imported row must give it, its choices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: AttributeType
    required: bool = False
    choices: tuple[str, ...] | None = None
    description: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        """Accept the common spellings (int, bool, list[string], ...)."""
        if isinstance(value, str):
            lowered = value.strip().lower()
            return TYPE_ALIASES.get(lowered, lowered)
        return value

    @model_validator(mode="after")
    def _choices_need_strings(self) -> AttributeSpec:
        """Choices only make sense for strings and lists of strings."""
        if self.choices is not None and self.type not in (AttributeType.STRING, AttributeType.LIST):
            raise ValueError("choices are only allowed on string and list attributes")
        return self


class ContactSchema(BaseModel):
    """The declared attributes of a tenant's contacts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: dict[str, AttributeSpec] = Field(default_factory=dict)

    @field_validator("attributes", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """`city: string` is short for `city: {type: string}`."""
        if isinstance(value, dict):
            return {
                name: {"type": spec} if isinstance(spec, str) else spec
                for name, spec in value.items()
            }
        return value

    @field_validator("attributes")
    @classmethod
    def _names(cls, value: dict[str, AttributeSpec]) -> dict[str, AttributeSpec]:
        """Attribute names are language identifiers and do not shadow a standard field."""
        for name in value:
            if not IDENTIFIER.fullmatch(name):
                raise ValueError(
                    f"attribute name {name!r} must be lowercase letters, digits and _ "
                    "(starting with a letter or _)"
                )
            if name in RESERVED_NAMES:
                raise ValueError(f"attribute name {name!r} is a standard contact field")
        return value

    def to_json(self) -> dict[str, Any]:
        """The schema as plain JSON, for storing with the tenant."""
        return self.model_dump(mode="json", exclude_none=True)


def load_schema(path: str | Path) -> ContactSchema:
    """Read and validate a contact schema file (.yaml, .yml or .json)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"{source}: cannot read the schema: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{source}: the schema is not UTF-8 text ({exc.reason})") from exc
    try:
        if source.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(source)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SchemaError(f"{where}: invalid YAML: {problem}") from exc
    return parse_schema(data, source=str(source))


def parse_schema(data: Any, *, source: str = "<schema>") -> ContactSchema:
    """Validate an already-parsed schema document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: a schema is a mapping with an `attributes:` key")
    try:
        return ContactSchema.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            lines.append(f"{source}: {where}: {error['msg']}")
        raise SchemaError("\n".join(lines)) from exc


# --- coercion of one value -----------------------------------------------------------------

_TRUE = frozenset(("true", "t", "yes", "y", "1"))
_FALSE = frozenset(("false", "f", "no", "n", "0"))


def parse_datetime(value: Any) -> datetime:
    """An ISO-8601 date-time as an aware UTC datetime; one without an offset is read as UTC."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str):
        return parse_instant(value)
    raise ValueError(f"expected an ISO-8601 date-time string, got {_kind(value)}")


def format_datetime(value: datetime) -> str:
    """The stored form of a datetime attribute: ISO-8601 in UTC with a Z."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _kind(value: Any) -> str:
    """A JSON-ish name for a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_string_list(value: Any) -> list[str]:
    """A list of strings: a JSON list, or in CSV text either `a;b;c` or `["a", "b"]`."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invalid JSON list: {exc.msg}") from None
        else:
            return [part.strip() for part in text.split(";") if part.strip()]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {_kind(value)}")
    items: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"expected a list of strings, found {_kind(item)} {item!r} in it")
        items.append(item)
    return items


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,19}")  # longer is beyond 64 bits: read as a float
# Numbers as people write them in files: ASCII digits only. Python's int() and float() also
# take `1_000` and other scripts' digits (`١٢٣`), which no spreadsheet means as a number.
_WHOLE_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def coerce_value(spec: AttributeSpec, value: Any) -> Any:
    """Turn a raw cell (CSV text or a JSON value) into the stored JSON value for its type.

    Raises ValueError with a reason a person can act on.
    """
    kind = spec.type
    if kind is AttributeType.STRING:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"expected a string, got {_kind(value)}")
        text = str(value)
        if spec.choices is not None and text not in spec.choices:
            raise ValueError(f"{text!r} is not one of {', '.join(spec.choices)}")
        return text
    if kind is AttributeType.INTEGER:
        if isinstance(value, bool):
            raise ValueError("expected an integer, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            if not _WHOLE_TEXT.fullmatch(value.strip()):
                raise ValueError(f"{value!r} is not an integer")
            return int(value.strip())
        raise ValueError(f"expected an integer, got {_kind(value)} {value!r}")
    if kind is AttributeType.NUMBER:
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        # An integer the store holds stays exact: through a float, 9007199254740993 (an
        # account number, a price in cents) was stored as 9007199254740992.
        if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
            value = int(value.strip())
        if isinstance(value, int) and value in STORED_INTEGERS:
            return value
        if isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:
                raise ValueError("a number beyond the numbers Cadence stores") from None
        elif isinstance(value, str):
            if not _NUMBER_TEXT.fullmatch(value.strip()):
                raise ValueError(f"{value!r} is not a number")
            number = float(value.strip())
        else:
            raise ValueError(f"expected a number, got {_kind(value)}")
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        return number
    if kind is AttributeType.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"{value!r} is not a boolean (use true/false, yes/no or 1/0)")
        raise ValueError(f"expected a boolean, got {_kind(value)}")
    if kind is AttributeType.DATETIME:
        return format_datetime(parse_datetime(value))
    if kind is AttributeType.DATE:
        if not isinstance(value, str):
            raise ValueError(f"expected a date string YYYY-MM-DD, got {_kind(value)}")
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    items = parse_string_list(value)
    if spec.choices is not None:
        unknown = [item for item in items if item not in spec.choices]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not one of {', '.join(spec.choices)}")
    return items
