"""Turn the raw mapping from any parser into typed values, or say what is wrong.

The three parsers hand over different raw shapes (JSON gives numbers and
booleans, XML and forms give only text), so this one validator is as tolerant
as ASP.NET with Json.NET, which is what partners were written against:

- property names match case-insensitively; unknown properties are ignored;
- numbers may come as text ("12"), whole numbers as 12.0, text fields may come
  as numbers (converted to str); booleans are true/false in any case, or 1/0;
- empty text for a non-text field means absent (Json.NET reads "" as null for
  nullable numbers, and `<Phone/>` or `Phone=` is how XML and forms say "none");
- decimals are written with a dot; NaN and Infinity are refused.

Every contract field is in the result: an absent or null field is None (so a
caller can tell "absent, leave unchanged" for booleans), except lists, which
are [] when absent or null because no caller needs to tell the two apart.

What is refused, always with a `FormatError` naming the field: the wrong type,
integers outside int64, bytes outside 0..255, decimals outside .NET's decimal,
text longer than the field's limit, text with C0 control characters other than
tab, CR and LF (PostgreSQL cannot store NUL, and no partner field needs the
others) or with unpaired surrogates (not encodable as UTF-8), lists longer than
MAX_LIST_ITEMS, list items that are not objects, and a property given twice in
different letter cases.
"""

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.translation import gettext as _

from .errors import FormatError
from .schemas import MAX_LIST_ITEMS, Contract, Field

__all__ = ["MAX_LIST_ITEMS", "validate"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# .NET's decimal is a 96-bit integer scaled by 10^-0..10^-28.
DECIMAL_MAX = Decimal(2**96 - 1)
DECIMAL_MAX_PLACES = 28

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,30}")
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,6})?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def validate(contract: Contract, raw: Any) -> dict[str, Any]:
    """Return a dict with every field of `contract`, typed, keyed by wire name."""
    if not isinstance(raw, dict):
        raise FormatError(
            _("The body must be a %(root)s object with named fields, got %(got)s.")
            % {"root": contract.root, "got": _describe(raw)}
        )
    return _validate_object(contract, raw, prefix="")


def _validate_object(contract: Contract, raw: dict[Any, Any], prefix: str) -> dict[str, Any]:
    keys_by_lower_name: dict[str, list[str]] = {}
    for key in raw:
        if isinstance(key, str):
            keys_by_lower_name.setdefault(key.lower(), []).append(key)

    result: dict[str, Any] = {}
    for field in contract.fields:
        path = prefix + field.name
        keys = keys_by_lower_name.get(field.name.lower(), [])
        if len(keys) > 1:
            spellings = ", ".join(repr(key) for key in keys)
            raise FormatError(
                _("%(field)s is given more than once (as %(spellings)s).")
                % {"field": path, "spellings": spellings},
                field=path,
            )
        value = raw[keys[0]] if keys else None
        result[field.name] = _convert(field, value, path)
    return result


def _convert(field: Field, value: Any, path: str) -> Any:
    if field.kind != "string" and isinstance(value, str) and value.strip() == "":
        value = None
    if value is None:
        return [] if field.kind == "list" else None
    if field.kind == "string":
        return _string(field, value, path)
    if field.kind == "integer":
        return _integer(value, path, INT64_MIN, INT64_MAX)
    if field.kind == "byte":
        return _integer(value, path, 0, 255)
    if field.kind == "decimal":
        return _decimal(value, path)
    if field.kind == "boolean":
        return _boolean(value, path)
    return _list(field, value, path)


def _string(field: Field, value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise FormatError(
            _("%(field)s must be text, got %(got)s.") % {"field": path, "got": _describe(value)},
            field=path,
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormatError(
                _("%(field)s must be text, got %(got)s.")
                % {"field": path, "got": _describe(value)},
                field=path,
            )
        text = repr(value)
    else:
        text = str(value)
    if len(text) > field.max_length:
        raise FormatError(
            _("%(field)s must be at most %(max)s characters long, got %(length)s.")
            % {"field": path, "max": field.max_length, "length": len(text)},
            field=path,
        )
    if match := _CONTROL.search(text):
        raise FormatError(
            _(
                "%(field)s may not contain control characters, found U+%(code)s "
                "at position %(position)s."
            )
            % {"field": path, "code": f"{ord(match.group()):04X}", "position": match.start()},
            field=path,
        )
    if match := _SURROGATE.search(text):
        raise FormatError(
            _(
                "%(field)s contains an unpaired surrogate U+%(code)s "
                "at position %(position)s, which is not valid Unicode."
            )
            % {"field": path, "code": f"{ord(match.group()):04X}", "position": match.start()},
            field=path,
        )
    return text


def _integer(value: Any, path: str, low: int, high: int) -> int:
    problem = _("%(field)s must be a whole number from %(min)s to %(max)s, got %(got)s.") % {
        "field": path,
        "min": low,
        "max": high,
        "got": _describe(value),
    }
    number: int | None = None
    if isinstance(value, bool):
        pass  # Python counts True as 1; a partner sending true for an id has a bug.
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if _INTEGER_TEXT.fullmatch(text):
            number = int(text)
    elif isinstance(value, float | Decimal) and _is_small_and_whole(value):
        number = int(value)
    if number is None or not low <= number <= high:
        raise FormatError(problem, field=path)
    return number


def _decimal(value: Any, path: str) -> Decimal:
    problem = _(
        "%(field)s must be a decimal number written with a dot, such as 10.5, got %(got)s."
    ) % {"field": path, "got": _describe(value)}
    if isinstance(value, bool):
        raise FormatError(problem, field=path)
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_TEXT.fullmatch(text):
            if text.lower().lstrip("+-") in {"nan", "inf", "infinity"}:
                number = Decimal("NaN")
            else:
                raise FormatError(problem, field=path)
        else:
            try:
                number = Decimal(text)
            except InvalidOperation:
                raise FormatError(problem, field=path) from None
    else:
        raise FormatError(problem, field=path)

    if not number.is_finite():
        raise FormatError(
            _("%(field)s must be a finite number, got %(got)s.")
            % {"field": path, "got": _describe(value)},
            field=path,
        )
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -DECIMAL_MAX_PLACES:
        raise FormatError(
            _("%(field)s may have at most %(max)s digits after the decimal point, got %(got)s.")
            % {"field": path, "max": DECIMAL_MAX_PLACES, "got": _describe(value)},
            field=path,
        )
    # copy_abs, not abs(): abs() rounds to the context's 28 digits, and decimal.MaxValue has 29.
    if number.adjusted() > 28 or number.copy_abs() > DECIMAL_MAX:
        raise FormatError(
            _("%(field)s must be between -%(max)s and %(max)s, got %(got)s.")
            % {"field": path, "max": DECIMAL_MAX, "got": _describe(value)},
            field=path,
        )
    return number


def _boolean(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    raise FormatError(
        _("%(field)s must be true or false, got %(got)s.")
        % {"field": path, "got": _describe(value)},
        field=path,
    )


def _list(field: Field, value: Any, path: str) -> list[dict[str, Any]]:
    assert field.item is not None
    if not isinstance(value, list | tuple):
        raise FormatError(
            _("%(field)s must be a list, got %(got)s.") % {"field": path, "got": _describe(value)},
            field=path,
        )
    if len(value) > MAX_LIST_ITEMS:
        raise FormatError(
            _("%(field)s may have at most %(max)s items, got %(count)s.")
            % {"field": path, "max": MAX_LIST_ITEMS, "count": len(value)},
            field=path,
        )
    items = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if not isinstance(item, dict):
            raise FormatError(
                _("%(field)s must be an object, got %(got)s.")
                % {"field": item_path, "got": _describe(item)},
                field=item_path,
            )
        items.append(_validate_object(field.item, item, prefix=item_path + "."))
    return items


def _is_small_and_whole(value: float | Decimal) -> bool:
    # Look at the magnitude before any arithmetic: abs() or int() of
    # Decimal("1e999999999") overflows the context or takes forever.
    if isinstance(value, Decimal):
        small = value.is_finite() and value.adjusted() < 20
    else:
        small = math.isfinite(value) and abs(value) < 1e20
    return small and value == int(value)


def _describe(value: Any) -> str:
    """The value as the partner wrote it, short enough for an error message."""
    if value is None:
        return _("null")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return _("an object")
    if isinstance(value, list | tuple):
        return _("a list")
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if isinstance(value, int) and value.bit_length() > 128:
        return _("a number with more than 38 digits")
    text = str(value)
    return text if len(text) <= 40 else text[:40] + "..."
