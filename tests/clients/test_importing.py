import io
import zipfile
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openpyxl import Workbook

from clients import services
from clients.importing import (
    MAX_ROWS,
    ImportFileError,
    apply_import,
    read_rows,
    validate_rows,
)
from clients.models import Card, Client, ConsentChange
from tests.conftest import make_client


def csv_file(text: str, name: str = "clients.csv", encoding: str = "utf-8") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(encoding), content_type="text/csv")


def xlsx_file(rows: list[list], name: str = "clients.xlsx") -> SimpleUploadedFile:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return SimpleUploadedFile(name, out.getvalue())


def run_import(operator, upload, user=None):
    rows = read_rows(upload, upload.name)
    valid, errors = validate_rows(operator, rows)
    assert errors == []
    return apply_import(operator, valid, user, upload.name)


# --- reading ------------------------------------------------------------------------------


def test_it_reads_a_comma_csv_with_any_header_case():
    rows = read_rows(
        csv_file("Phone,EMAIL,allow_sms\n+7 912 345-67-89,a@example.com,да\n"), "c.csv"
    )
    assert [(row.number, row.values) for row in rows] == [
        (2, {"phone": "+7 912 345-67-89", "email": "a@example.com", "allow_sms": "да"})
    ]


def test_it_reads_a_semicolon_csv_with_a_bom():
    upload = csv_file("\ufeffphone;first_name;bonus\n79123456789;Анна;10,50\n")
    rows = read_rows(upload, upload.name)
    assert rows[0].values == {"phone": "79123456789", "first_name": "Анна", "bonus": "10,50"}


def test_it_reads_the_first_sheet_of_an_xlsx_workbook():
    upload = xlsx_file(
        [["phone", "card", "allow_push"], [79123456789, 1000001, True], [None, None, None]]
    )
    rows = read_rows(upload, upload.name)
    assert [row.values for row in rows] == [
        {"phone": "79123456789", "card": "1000001", "allow_push": "true"}
    ]


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("phone\n79123456789\n", "clients.txt", ".csv or .xlsx"),
        ("email\na@example.com\n", "c.csv", "phone column"),
        ("phone,alow_sms\n79123456789,1\n", "c.csv", "Unknown column: alow_sms"),
        ("phone\n", "c.csv", "no rows"),
        ("", "c.csv", "empty"),
    ],
)
def test_it_refuses_files_it_cannot_take_whole(content, name, message):
    with pytest.raises(ImportFileError, match=message):
        read_rows(csv_file(content, name), name)


def test_it_refuses_a_file_that_is_not_utf8():
    with pytest.raises(ImportFileError, match="UTF-8"):
        read_rows(csv_file("phone,first_name\n79123456789,Анна\n", encoding="cp1251"), "c.csv")


def test_it_refuses_a_broken_workbook():
    with pytest.raises(ImportFileError, match="xlsx"):
        read_rows(SimpleUploadedFile("c.xlsx", b"not a zip"), "c.xlsx")


def test_it_refuses_more_rows_than_the_limit():
    text = "phone\n" + "79123456789\n" * (MAX_ROWS + 1)
    with pytest.raises(ImportFileError, match="more than"):
        read_rows(csv_file(text), "c.csv")


# --- validating ---------------------------------------------------------------------------


def test_every_row_is_checked_and_each_problem_named(sunrise):
    upload = csv_file(
        "phone,email,allow_sms,bonus,card\n"
        "79123456789,a@example.com,yes,,\n"
        "123,not-an-email,maybe,-1,\n"
        "8 912 345-67-89,,,,\n"
        ",,,5,12x\n"
        "79120000009,,,5,\n"
    )
    valid, errors = validate_rows(sunrise, read_rows(upload, upload.name))
    found = {(error.row, error.column) for error in errors}
    assert found == {
        (3, "phone"),
        (3, "email"),
        (3, "allow_sms"),
        (3, "bonus"),
        (4, "phone"),  # the same number as row 2, written the national way
        (5, "phone"),
        (5, "card"),
        (6, "bonus"),  # a bonus without a card
    }
    duplicate = next(error for error in errors if error.row == 4)
    assert duplicate.message == "Same phone as row 2."
    assert [row.number for row in valid] == [2]


def test_a_card_of_another_client_is_refused(sunrise):
    owner = make_client(sunrise, phone="79120000001")
    Card.objects.create(operator=sunrise, client=owner, number=555)
    upload = csv_file("phone,card\n79120000002,555\n79120000001,555\n")
    _, errors = validate_rows(sunrise, read_rows(upload, upload.name))
    assert [(error.row, error.message) for error in errors] == [
        (2, "This card belongs to another client."),
        (3, "Same card as row 2."),
    ]


# --- writing ------------------------------------------------------------------------------


def test_it_creates_new_clients_with_cards_and_initial_consent_history(sunrise, connie):
    upload = csv_file(
        "phone,first_name,card,bonus,allow_sms,allow_email\n79123456789,Anna,1000001,150.5,1,0\n"
    )
    result = run_import(sunrise, upload, connie)
    assert (result.created, result.updated, result.consent_changes) == (1, 0, 1)
    client = Client.objects.get(operator=sunrise, phone="79123456789")
    assert (client.first_name, client.allow_sms, client.allow_email) == ("Anna", True, False)
    card = client.cards.get()
    assert (card.number, card.bonus) == (1000001, Decimal("150.50"))
    change = ConsentChange.objects.get(client=client)
    assert (change.flag, change.old_value, change.new_value) == ("allow_sms", None, True)
    assert (change.source, change.changed_by, change.reason) == (
        "import",
        connie,
        "Import clients.csv",
    )


def test_it_updates_existing_clients_and_leaves_empty_cells_alone(sunrise, northwind, connie):
    anna = make_client(sunrise, first_name="Anna", allow_sms=True, allow_email=True)
    other = make_client(northwind, first_name="Other")  # same phone, other operator
    upload = csv_file("phone,first_name,allow_sms,allow_email\n+79123456789,,no,\n")
    result = run_import(sunrise, upload, connie)
    assert (result.created, result.updated, result.consent_changes) == (0, 1, 1)
    anna.refresh_from_db()
    assert (anna.first_name, anna.allow_sms, anna.allow_email) == ("Anna", False, True)
    change = ConsentChange.objects.get(client=anna)
    assert (change.old_value, change.new_value, change.source) == (True, False, "import")
    other.refresh_from_db()
    assert other.first_name == "Other"
    assert not ConsentChange.objects.filter(client=other).exists()


def test_an_unchanged_client_writes_no_history(sunrise, connie):
    make_client(sunrise, allow_sms=True)
    result = run_import(sunrise, csv_file("phone,allow_sms\n79123456789,true\n"), connie)
    assert (result.updated, result.unchanged, result.consent_changes) == (0, 1, 0)
    assert not ConsentChange.objects.exists()


def test_an_unattached_card_is_given_to_the_client_and_its_bonus_set(sunrise, connie):
    anna = make_client(sunrise)
    Card.objects.create(operator=sunrise, number=777, bonus=0)
    run_import(sunrise, csv_file("phone,card,bonus\n79123456789,777,42\n"), connie)
    card = Card.objects.get(number=777)
    assert (card.client, card.bonus) == (anna, Decimal("42"))


def test_ten_thousand_rows_import_set_based(sunrise, connie):
    # 2,000 clients exist (their email consent flips); 8,000 are new (SMS consent on).
    Client.objects.bulk_create(
        [Client(operator=sunrise, phone=f"7912{i:07d}") for i in range(2_000)]
    )
    lines = ["phone,first_name,card,allow_sms,allow_email"]
    lines += [f"7912{i:07d},Name{i},{100_000 + i},yes,1" for i in range(10_000)]
    upload = csv_file("\n".join(lines) + "\n")
    # Speed is a benchmark matter; what a test can hold is that the work is set-based:
    # a per-row query would mean 10,000 or more.
    with CaptureQueriesContext(connection) as queries:
        result = run_import(sunrise, upload, connie)
    assert len(queries.captured_queries) < 500
    assert (result.created, result.updated) == (8_000, 2_000)
    assert result.consent_changes == 8_000 * 2 + 2_000 * 2
    assert Client.objects.filter(operator=sunrise).count() == 10_000
    assert Card.objects.filter(operator=sunrise).count() == 10_000
    assert ConsentChange.objects.filter(source="import").count() == 20_000


def test_a_csv_field_too_large_to_read_is_a_file_error():
    with pytest.raises(ImportFileError, match="cannot be read"):
        read_rows(csv_file('phone,first_name\n79123456789,"' + "x" * 200_000 + '"\n'), "c.csv")


def test_a_workbook_without_the_expected_parts_is_a_file_error():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    with pytest.raises(ImportFileError, match="xlsx"):
        read_rows(SimpleUploadedFile("c.xlsx", out.getvalue()), "c.xlsx")


def test_the_bulk_consent_change_writes_what_the_single_one_writes(sunrise, connie):
    one = make_client(sunrise, phone="79120000001", allow_sms=True)
    two = make_client(sunrise, phone="79120000002", allow_sms=True)
    single = services.change_consent(
        client_id=one.pk,
        flags={"allow_sms": False, "allow_push": True, "allow_email": None},
        source="import",
        changed_by=connie,
        reason="Import a.csv",
    )
    many = services.change_consent_many(
        flags_by_client={two.pk: {"allow_sms": False, "allow_push": True, "allow_email": None}},
        source="import",
        changed_by=connie,
        reason="Import a.csv",
    )

    def shape(changes):
        return sorted(
            (c.flag, c.old_value, c.new_value, c.source, c.changed_by_id, c.reason) for c in changes
        )

    assert shape(single) == shape(many)
    two.refresh_from_db()
    assert (two.allow_sms, two.allow_push, two.allow_email) == (False, True, False)
    assert ConsentChange.objects.filter(client=two).count() == 2
    with pytest.raises(ValueError, match="allow_fax"):
        services.change_consent_many(flags_by_client={two.pk: {"allow_fax": True}}, source="import")
