"""Importing clients and their consent from a CSV or XLSX file.

Three steps, each a plain function: `read_rows` turns the file into rows of
strings, `validate_rows` checks every row (a file is taken whole or not at
all), `apply_import` writes everything in one transaction. Consent goes through
`clients.services`, so every flag an import sets lands in the history.

Set-based where the row count matters: existing phones and cards are looked up
in one query per 5,000 rows, new clients, cards and history rows are
bulk-created, and consent goes through the services' `..._many` functions,
which write the same history rows as their one-client twins in a few queries.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from clients import services
from clients.channels import CONSENT_FLAGS
from clients.models import Card, Client, ConsentChange, Operator
from clients.phones import normalize_phone
from clients.zones import zone_for_new_client

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 50_000
COLUMNS = ("phone", "email", "first_name", "last_name", "card", "bonus", *CONSENT_FLAGS)
TRUE_WORDS = frozenset({"true", "1", "yes", "да"})
FALSE_WORDS = frozenset({"false", "0", "no", "нет"})
MAX_CARD_NUMBER = 2**63 - 1  # Card.number is a BigIntegerField
MAX_BONUS = Decimal("999999999999.99")  # max_digits=14, decimal_places=2
# psycopg sends at most 65,535 parameters per query; stay well below it.
LOOKUP_CHUNK = 5_000
EMAIL_MAX = Client._meta.get_field("email").max_length
NAME_MAX = {name: Client._meta.get_field(name).max_length for name in ("first_name", "last_name")}


class ImportFileError(Exception):
    """The file as a whole cannot be read: wrong type, too big, no header, no phone column."""


class ImportConflict(Exception):
    """The clients changed between checking and writing; nothing was written."""


@dataclass(frozen=True)
class Row:
    number: int  # the row number as the spreadsheet shows it; the header is row 1
    values: dict[str, str]


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    value: str
    message: str


@dataclass
class ValidRow:
    number: int
    phone: str
    email: str | None = None  # None: the file leaves it as it is
    first_name: str | None = None
    last_name: str | None = None
    card: int | None = None
    bonus: Decimal | None = None
    flags: dict[str, bool | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int
    consent_changes: int


# --- reading ------------------------------------------------------------------------------


def read_rows(file, filename: str) -> list[Row]:
    """The data rows of a .csv or .xlsx file, as stripped strings under lower-case headers.

    Raises ImportFileError when the file cannot be taken at all. Entirely empty
    rows are skipped (spreadsheets often carry a few at the end).
    """
    name = filename.lower()
    size = getattr(file, "size", None)
    if size is not None and size > MAX_BYTES:
        raise ImportFileError(_too_big())
    if name.endswith(".csv"):
        records = _csv_records(file)
    elif name.endswith(".xlsx"):
        records = _xlsx_records(file)
    else:
        raise ImportFileError(_("Upload a .csv or .xlsx file."))
    return _rows(records)


def _too_big() -> str:
    return _("The file is over %(size)d MB; split it into smaller files.") % {
        "size": MAX_BYTES // 2**20
    }


def _csv_records(file) -> Iterator[list[str]]:
    raw = file.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ImportFileError(_too_big())
    try:
        text = raw.decode("utf-8-sig")  # Excel writes a BOM; plain UTF-8 has none
    except UnicodeDecodeError as error:
        raise ImportFileError(
            _("The file is not UTF-8 text. In Excel choose “CSV UTF-8” when saving.")
        ) from error
    # The header holds only column names, so whichever separator it uses most is
    # the file's separator; csv.Sniffer guesses wrong on short or quoted files.
    header = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=header.count)
    try:
        yield from csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    except csv.Error as error:
        raise ImportFileError(
            _("The CSV file cannot be read: %(error)s.") % {"error": error}
        ) from error


def _xlsx_records(file) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(file, read_only=True, data_only=True)
    except Exception as error:
        # Not a zip, not a workbook, broken XML inside: openpyxl raises a dozen kinds.
        raise ImportFileError(_("The file is not a readable .xlsx workbook.")) from error
    try:
        for values in workbook.worksheets[0].iter_rows(values_only=True):
            yield [_cell_text(value) for value in values]
    except Exception as error:
        # No sheet, broken XML, odd cell types: whatever breaks inside is the file's fault.
        raise ImportFileError(_("The .xlsx workbook is damaged.")) from error
    finally:
        workbook.close()


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel keeps phones and card numbers as floats
    return str(value)


def _rows(records: Iterable[list[str]]) -> list[Row]:
    records = iter(records)
    header = next(records, None)
    if header is None:
        raise ImportFileError(_("The file is empty."))
    columns = [name.strip().lower() for name in header]
    unknown = [name for name in columns if name and name not in COLUMNS]
    if unknown:
        # A misspelt consent column would otherwise be ignored without a word.
        raise ImportFileError(
            ngettext(
                "Unknown column: %(unknown)s. The columns are: %(columns)s.",
                "Unknown columns: %(unknown)s. The columns are: %(columns)s.",
                len(unknown),
            )
            % {"unknown": ", ".join(unknown), "columns": ", ".join(COLUMNS)}
        )
    if "phone" not in columns:
        raise ImportFileError(_("The header row needs a phone column."))
    repeated = sorted({name for name in columns if name and columns.count(name) > 1})
    if repeated:
        raise ImportFileError(_("Repeated column: %(columns)s.") % {"columns": ", ".join(repeated)})
    rows = []
    for number, record in enumerate(records, start=2):
        if number > 2 * MAX_ROWS:
            # Blank rows are skipped, but a sheet of a million blank rows still stops here.
            raise ImportFileError(
                _("The file has more than %(max)s rows; split it.") % {"max": f"{MAX_ROWS:,}"}
            )
        values = {
            column: (value or "").strip()
            for column, value in zip(columns, record, strict=False)
            if column
        }
        if not any(values.values()):
            continue
        if len(rows) >= MAX_ROWS:
            raise ImportFileError(
                _("The file has more than %(max)s rows; split it.") % {"max": f"{MAX_ROWS:,}"}
            )
        rows.append(Row(number, values))
    if not rows:
        raise ImportFileError(_("The file has a header but no rows."))
    return rows


# --- validating ---------------------------------------------------------------------------


def validate_rows(operator: Operator, rows: list[Row]) -> tuple[list[ValidRow], list[RowError]]:
    """Check every row; the valid rows are usable only when the error list is empty.

    Two queries per 5,000 rows: the operator's clients with the file's phones and
    the cards with the file's numbers, to refuse a card that belongs to someone else.
    """
    valid: list[ValidRow] = []
    errors: list[RowError] = []
    first_row_of_phone: dict[str, int] = {}
    first_row_of_card: dict[int, int] = {}
    for row in rows:
        checked, row_errors = _check_row(row, operator.default_region)
        if checked is not None:
            earlier = first_row_of_phone.setdefault(checked.phone, row.number)
            if earlier != row.number:
                row_errors.append(
                    RowError(
                        row.number,
                        "phone",
                        row.values["phone"],
                        _("Same phone as row %(row)d.") % {"row": earlier},
                    )
                )
            if checked.card is not None:
                earlier = first_row_of_card.setdefault(checked.card, row.number)
                if earlier != row.number:
                    row_errors.append(
                        RowError(
                            row.number,
                            "card",
                            row.values["card"],
                            _("Same card as row %(row)d.") % {"row": earlier},
                        )
                    )
        errors.extend(row_errors)
        if checked is not None and not row_errors:
            valid.append(checked)
    client_of_phone = _existing_clients(operator, [row.phone for row in valid])
    owner_of_card = _existing_cards(operator, [row.card for row in valid if row.card is not None])
    for row in valid:
        if row.card is None or row.card not in owner_of_card:
            continue
        owner = owner_of_card[row.card]
        if owner is not None and owner != client_of_phone.get(row.phone):
            errors.append(
                RowError(
                    row.number, "card", str(row.card), _("This card belongs to another client.")
                )
            )
    errors.sort(key=lambda error: error.row)
    return valid, errors


def _check_row(row: Row, region: str) -> tuple[ValidRow | None, list[RowError]]:
    values = row.values
    errors: list[RowError] = []

    def problem(column: str, message: str) -> None:
        errors.append(RowError(row.number, column, values.get(column, ""), message))

    phone = ""
    if not values.get("phone"):
        problem("phone", _("A phone number is required."))
    else:
        try:
            phone = normalize_phone(values["phone"], region=region)
        except ValidationError as error:
            problem("phone", " ".join(error.messages))
    checked = ValidRow(number=row.number, phone=phone)

    if values.get("email"):
        email = values["email"]
        try:
            validate_email(email)
            if len(email) > EMAIL_MAX:
                raise ValidationError("too long")
        except ValidationError:
            problem("email", _("Not a valid email address."))
        else:
            checked.email = email
    for column in ("first_name", "last_name"):
        if values.get(column):
            if len(values[column]) > NAME_MAX[column]:
                problem(column, _("Longer than %(max)d characters.") % {"max": NAME_MAX[column]})
            else:
                setattr(checked, column, values[column])

    if values.get("card"):
        text = values["card"]
        if not text.isdigit() or not 0 < int(text) <= MAX_CARD_NUMBER:
            problem("card", _("A card number is a positive whole number."))
        else:
            checked.card = int(text)
    if values.get("bonus"):
        try:
            bonus = Decimal(values["bonus"].replace(",", ".").replace(" ", ""))
        except InvalidOperation:
            problem("bonus", _("Not a number."))
        else:
            if not bonus.is_finite() or bonus < 0:
                problem("bonus", _("A bonus is a number of 0 or more."))
            elif bonus > MAX_BONUS or bonus != bonus.quantize(Decimal("0.01")):
                problem("bonus", _("Too large, or more than 2 decimal places."))
            elif not values.get("card"):
                problem("bonus", _("A bonus belongs to a card: fill in the card column."))
            else:
                checked.bonus = bonus

    for flag in CONSENT_FLAGS:
        word = values.get(flag, "").lower()
        if not word:
            checked.flags[flag] = None
        elif word in TRUE_WORDS:
            checked.flags[flag] = True
        elif word in FALSE_WORDS:
            checked.flags[flag] = False
        else:
            problem(flag, _("Use true/false, 1/0, yes/no or да/нет."))
    return (checked if phone else None), errors


def _chunks(items: list, size: int = LOOKUP_CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _existing_clients(operator: Operator, phones: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(phones):
        found.update(
            Client.objects.filter(operator=operator, phone__in=chunk)
            .order_by()
            .values_list("phone", "pk")
        )
    return found


def _existing_cards(operator: Operator, numbers: list[int]) -> dict[int, int | None]:
    found: dict[int, int | None] = {}
    for chunk in _chunks(numbers):
        found.update(
            Card.objects.filter(operator=operator, number__in=chunk)
            .order_by()
            .values_list("number", "client_id")
        )
    return found


# --- writing ------------------------------------------------------------------------------


def apply_import(
    operator: Operator, rows: list[ValidRow], user: AbstractBaseUser | None, filename: str
) -> ImportResult:
    """Write validated rows in one transaction: all of them, or none if anything fails.

    Existing clients (matched by phone inside the operator) and the file's cards
    are locked first, so what is compared here is what gets overwritten.
    Raises ImportConflict when a card was given to another client since the
    rows were validated; an IntegrityError (the same phone or card created
    meanwhile) rolls everything back too.
    """
    reason = f"Import {filename}"
    source = ConsentChange.Source.IMPORT
    now = timezone.now()
    with transaction.atomic():
        existing: dict[str, Client] = {}
        for chunk in _chunks([row.phone for row in rows]):
            existing.update(
                (client.phone, client)
                for client in Client.objects.select_for_update()
                .filter(operator=operator, phone__in=chunk)
                .order_by("pk")
                .only("id", "phone", "email", "first_name", "last_name", *CONSENT_FLAGS)
            )
        cards: dict[int, Card] = {}
        for chunk in _chunks([row.card for row in rows if row.card is not None]):
            cards.update(
                (card.number, card)
                for card in Card.objects.select_for_update()
                .filter(operator=operator, number__in=chunk)
                .order_by("pk")
            )

        new_rows = [row for row in rows if row.phone not in existing]
        new_clients = Client.objects.bulk_create(
            [
                Client(
                    operator=operator,
                    phone=row.phone,
                    email=row.email or "",
                    first_name=row.first_name or "",
                    last_name=row.last_name or "",
                    time_zone=zone_for_new_client(phone=row.phone),
                    **{flag: bool(row.flags.get(flag)) for flag in CONSENT_FLAGS},
                )
                for row in new_rows
            ],
            batch_size=2_000,
        )
        initial = services.record_initial_consent_many(
            clients=new_clients, source=source, changed_by=user, reason=reason
        )
        client_of_row = {
            row.number: client for row, client in zip(new_rows, new_clients, strict=True)
        }

        changed_by_fields: dict[tuple[str, ...], list[Client]] = {}
        touched_ids: set[int] = set()
        flags_by_client: dict[int, dict[str, bool | None]] = {}
        for row in rows:
            client = existing.get(row.phone)
            if client is None:
                continue
            client_of_row[row.number] = client
            if any(value is not None for value in row.flags.values()):
                flags_by_client[client.pk] = row.flags
            changed_fields = []
            for name in ("email", "first_name", "last_name"):
                value = getattr(row, name)
                if value is not None and value != getattr(client, name):
                    setattr(client, name, value)
                    changed_fields.append(name)
            if changed_fields:
                client.updated_at = now
                changed_by_fields.setdefault(tuple(changed_fields), []).append(client)
            if changed_fields or _card_changed(row, cards):
                touched_ids.add(client.pk)
        # bulk_update builds a CASE per field and client; update only the fields that changed.
        for fields, clients in changed_by_fields.items():
            Client.objects.bulk_update(clients, [*fields, "updated_at"], batch_size=1_000)
        changes = services.change_consent_many(
            flags_by_client=flags_by_client, source=source, changed_by=user, reason=reason
        )
        touched_ids.update(change.client_id for change in changes)
        _write_cards(operator, rows, client_of_row, cards)
    return ImportResult(
        created=len(new_clients),
        updated=len(touched_ids),
        unchanged=len(existing) - len(touched_ids),
        consent_changes=len(initial) + len(changes),
    )


def _card_changed(row: ValidRow, cards: dict[int, Card]) -> bool:
    if row.card is None:
        return False
    card = cards.get(row.card)
    if card is None or card.client_id is None:
        return True
    return row.bonus is not None and row.bonus != card.bonus


def _write_cards(
    operator: Operator,
    rows: list[ValidRow],
    client_of_row: dict[int, Client],
    cards: dict[int, Card],
) -> None:
    new_cards: list[Card] = []
    changed_cards: list[Card] = []
    for row in rows:
        if row.card is None:
            continue
        client = client_of_row[row.number]
        card = cards.get(row.card)
        if card is None:
            new_cards.append(
                Card(operator=operator, client=client, number=row.card, bonus=row.bonus or 0)
            )
            continue
        if card.client_id not in (None, client.pk):
            raise ImportConflict(f"Card {card.number} now belongs to another client.")
        if card.client_id is None or (row.bonus is not None and row.bonus != card.bonus):
            card.client_id = client.pk
            if row.bonus is not None:
                card.bonus = row.bonus
            changed_cards.append(card)
    Card.objects.bulk_create(new_cards, batch_size=2_000)
    Card.objects.bulk_update(changed_cards, ["client", "bonus"], batch_size=1_000)


# --- the error report ---------------------------------------------------------------------


def write_error_report(errors: Iterable[RowError], out, *, delimiter: str = ",") -> None:
    """CSV of the errors: row, column, value, message.

    Values that a spreadsheet would run as a formula get a leading apostrophe.
    """
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(["row", "column", "value", "message"])
    for error in errors:
        value = error.value
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            value = "'" + value
        writer.writerow([error.row, error.column, value, error.message])
