"""Money, numbers and dates as the reader's language writes them, and CSV for spreadsheets.

Pages format through Django's localisation (numbers, dates) and `money` here, which
takes CLDR's currency patterns from Babel: `117,30 ₽` in Russian, `RUB117.30` in
English. CSV files come in two flavours: the plain one for programs (comma, dot
decimals, ISO 8601 times in UTC) and the spreadsheet one for Excel set to Russian
(semicolon, decimal comma, local times, a UTF-8 BOM so Excel reads Cyrillic right).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.numbers import format_currency, format_decimal
from django.utils import translation


def _locale() -> str:
    return translation.to_locale(translation.get_language() or "en")


def money(amount, currency: str, *, exact: bool = False) -> str:
    """`amount` in `currency` for the active language; `exact` keeps every digit of a unit price.

    A total is rounded to the currency's digits (kopecks); a price per part such as
    0.0525 ₽ keeps its four places, where rounding would misstate what a campaign costs.
    """
    if amount is None or amount == "":
        return ""
    return format_currency(
        Decimal(str(amount)),
        currency or "XXX",
        locale=_locale(),
        decimal_quantization=not exact,
    )


def number(value) -> str:
    """A count or decimal with the language's grouping: 1 234 567 in Russian, 1,234,567 in English."""
    if value is None or value == "":
        return ""
    return format_decimal(value, locale=_locale())


@dataclass(frozen=True)
class CsvFlavour:
    delimiter: str
    bom: bool
    decimal_comma: bool
    zone: dt.tzinfo | None  # None: ISO 8601 in UTC

    def decimal(self, value, places: int | None = None) -> str:
        if value is None or value == "":
            return ""
        text = f"{Decimal(str(value)):.{places}f}" if places is not None else str(value)
        return text.replace(".", ",") if self.decimal_comma else text

    def moment(self, value: dt.datetime | None) -> str:
        if value is None:
            return ""
        if self.zone is None:
            return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return value.astimezone(self.zone).strftime("%d.%m.%Y %H:%M:%S")


PLAIN_CSV = CsvFlavour(delimiter=",", bom=False, decimal_comma=False, zone=None)


def csv_flavour(query, zone_name: str) -> CsvFlavour:
    """The flavour a download link asked for: `?sep=;` means Excel set to Russian."""
    if query.get("sep") == ";":
        return CsvFlavour(delimiter=";", bom=True, decimal_comma=True, zone=ZoneInfo(zone_name))
    return PLAIN_CSV
