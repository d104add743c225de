from datetime import UTC, datetime
from decimal import Decimal

from django.http import QueryDict
from django.utils import translation

from clients import formats

NBSP = "\xa0"


def test_money_in_russian_has_a_decimal_comma_grouped_thousands_and_the_sign_after():
    with translation.override("ru"):
        assert formats.money(Decimal("117.3"), "RUB") == f"117,30{NBSP}₽"
        assert formats.money(Decimal("1234567.5"), "RUB") == f"1{NBSP}234{NBSP}567,50{NBSP}₽"
        assert formats.money(Decimal("2"), "EUR") == f"2,00{NBSP}€"


def test_money_in_english_follows_cldr():
    with translation.override("en"):
        assert formats.money(Decimal("117.3"), "RUB") == "RUB117.30"
        assert formats.money(Decimal("1234.5"), "USD") == "$1,234.50"


def test_a_total_rounds_to_kopecks_and_a_unit_price_keeps_its_digits():
    with translation.override("ru"):
        assert formats.money(Decimal("0.0525"), "RUB") == f"0,05{NBSP}₽"
        assert formats.money(Decimal("0.0525"), "RUB", exact=True) == f"0,0525{NBSP}₽"
        assert formats.money(Decimal("0.3500"), "RUB", exact=True) == f"0,35{NBSP}₽"
        assert formats.money(None, "RUB") == ""


def test_counts_are_grouped_as_the_language_writes_them():
    with translation.override("ru"):
        assert formats.number(100000) == f"100{NBSP}000"
    with translation.override("en"):
        assert formats.number(100000) == "100,000"


def test_the_plain_csv_flavour_is_for_programs_and_the_semicolon_one_for_russian_excel():
    moment = datetime(2026, 3, 1, 21, 0, 9, tzinfo=UTC)
    plain = formats.csv_flavour(QueryDict(""), "Asia/Vladivostok")
    assert (plain.delimiter, plain.bom) == (",", False)
    assert plain.decimal(Decimal("0.1250"), 2) == "0.12"  # half to even, as Decimal rounds
    assert plain.moment(moment) == "2026-03-01T21:00:09Z"
    excel = formats.csv_flavour(QueryDict("sep=;"), "Asia/Vladivostok")
    assert (excel.delimiter, excel.bom) == (";", True)
    assert excel.decimal(Decimal("0.5000")) == "0,5000"
    assert excel.moment(moment) == "02.03.2026 07:00:09"  # UTC+10
    assert excel.moment(None) == ""
