"""Uploaded audience lists: a CSV of phones, cards or client ids, with per-row variables.

Every row is checked before anything is kept (phone format; card and client
ids inside the operator, in one query each), so a list is either taken whole
or refused with the rows that are wrong.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from campaigns.models import AudienceListEntry
from clients.models import Card, Client
from clients.phones import normalize_phone

MAX_ROWS = 100_000
MAX_BYTES = 20 * 1024 * 1024
IDENTITY_COLUMNS = ("phone", "card", "client")


@dataclass
class ListError:
    row: int
    column: str
    value: str
    message: str


@dataclass
class ParsedList:
    entries: list[AudienceListEntry] = field(default_factory=list)
    errors: list[ListError] = field(default_factory=list)


def read_list(upload, *, operator) -> ParsedList:
    """Entries (not saved) for an operator's list, or the errors that stop it."""
    result = ParsedList()
    raw = upload.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        result.errors.append(
            ListError(0, "", "", _("The file is over %(size)d MB.") % {"size": MAX_BYTES // 2**20})
        )
        return result
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        result.errors.append(ListError(0, "", "", _("The file is not UTF-8 text.")))
        return result
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    columns = {name.strip().lower(): name for name in (reader.fieldnames or [])}
    if not any(column in columns for column in IDENTITY_COLUMNS):
        result.errors.append(
            ListError(1, "", "", _("The header needs a phone, card or client column."))
        )
        return result
    rows = []
    for number, row in enumerate(reader, start=2):
        if number - 1 > MAX_ROWS:
            result.errors.append(
                ListError(number, "", "", _("More than %(max)d rows.") % {"max": MAX_ROWS})
            )
            return result
        rows.append(
            (
                number,
                {key.strip().lower(): (value or "").strip() for key, value in row.items() if key},
            )
        )
    cards = _known(rows, "card", Card.objects.filter(operator=operator), "number")
    clients = _known(rows, "client", Client.objects.filter(operator=operator), "pk")
    card_owner = dict(
        Card.objects.filter(operator=operator, number__in=list(cards)).values_list(
            "number", "client_id"
        )
    )
    for number, row in rows:
        entry = AudienceListEntry(operator=operator, variables={})
        for column, value in row.items():
            if not value:
                continue
            if column == "phone":
                try:
                    entry.phone = normalize_phone(value)
                except ValidationError as error:
                    result.errors.append(ListError(number, column, value, " ".join(error.messages)))
            elif column == "card":
                if not value.isdigit() or int(value) not in cards:
                    result.errors.append(ListError(number, column, value, _("No such card.")))
                else:
                    entry.card_number = int(value)
                    entry.client_id = entry.client_id or card_owner.get(int(value))
            elif column == "client":
                if not value.isdigit() or int(value) not in clients:
                    result.errors.append(ListError(number, column, value, _("No such client.")))
                else:
                    entry.client_id = int(value)
            else:
                # Everything else is a template variable under its own header, e.g. {{ Bonus }}.
                entry.variables[columns.get(column, column).strip()] = value
        names_nobody = not (entry.phone or entry.card_number or entry.client_id)
        if names_nobody and not any(e.row == number for e in result.errors):
            result.errors.append(ListError(number, "", "", _("The row names nobody.")))
        result.entries.append(entry)
    if not rows:
        result.errors.append(ListError(2, "", "", _("The list has no rows.")))
    if result.errors:
        result.entries = []
    return result


def _known(rows, column: str, queryset, field_name: str) -> set[int]:
    wanted = {int(row[column]) for _, row in rows if row.get(column, "").isdigit()}
    if not wanted:
        return set()
    return set(queryset.filter(**{f"{field_name}__in": wanted}).values_list(field_name, flat=True))
