"""validate(): as tolerant as ASP.NET with Json.NET, and precise about what it refuses."""

from decimal import Decimal

import pytest

from config.lcmanager.errors import FormatError
from config.lcmanager.schemas import (
    CLIENT_UPDATE_COMMUNICATION_REQUEST,
    SEND_MESSAGE_PROCESS_REQUEST,
)
from config.lcmanager.validation import MAX_LIST_ITEMS, validate

SEND = SEND_MESSAGE_PROCESS_REQUEST
UPDATE = CLIENT_UPDATE_COMMUNICATION_REQUEST


def refused(contract, raw) -> FormatError:
    with pytest.raises(FormatError) as caught:
        validate(contract, raw)
    return caught.value


# Tolerance.


def test_every_field_is_present_and_absent_ones_are_none():
    data = validate(UPDATE, {"Client": 5})
    assert data == {
        "Client": 5,
        "AllowSms": None,
        "AllowEmail": None,
        "AllowPush": None,
        "AllowEmailOnlineCheque": None,
        "Operator": None,
        "Token": None,
        "SiteCode": None,
    }


def test_absent_and_null_lists_are_empty_lists():
    data = validate(SEND, {"CardPhoneClientList": None})
    assert data["Files"] == []
    assert data["CardPhoneClientList"] == []


def test_names_match_in_any_letter_case_and_unknown_ones_are_ignored():
    data = validate(UPDATE, {"client": 5, "ALLOWSMS": False, "Colour": "red"})
    assert (data["Client"], data["AllowSms"]) == (5, False)
    assert "Colour" not in data and "client" not in data


def test_numbers_may_come_as_text_with_spaces_around():
    data = validate(SEND, {"Phone": " 79161234567 ", "CommunicationType": "2", "Token": "-7"})
    assert (data["Phone"], data["CommunicationType"], data["Token"]) == (79161234567, 2, -7)


def test_whole_numbers_written_with_a_fraction_are_accepted():
    data = validate(SEND, {"Client": 12.0, "User": Decimal("13.00")})
    assert (data["Client"], data["User"]) == (12, 13)
    assert type(data["Client"]) is int


def test_empty_text_for_a_number_boolean_or_list_means_absent():
    data = validate(SEND, {"Phone": "", "Files": " ", "Title": ""})
    assert (data["Phone"], data["Files"], data["Title"]) == (None, [], "")
    assert validate(UPDATE, {"AllowSms": ""})["AllowSms"] is None


def test_text_fields_accept_numbers():
    data = validate(SEND, {"PosCode": 14, "SiteCode": Decimal("7.5"), "Email": 1.5})
    assert (data["PosCode"], data["SiteCode"], data["Email"]) == ("14", "7.5", "1.5")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("False", False),
        ("TRUE", True),
        (" 1 ", True),
        ("0", False),
        (1, True),
        (0, False),
    ],
)
def test_booleans_are_read_in_their_usual_spellings(raw, expected):
    assert validate(UPDATE, {"AllowPush": raw})["AllowPush"] is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.5", Decimal("1.5")),
        (1.5, Decimal("1.5")),
        (Decimal("0.1"), Decimal("0.1")),
        (3, Decimal(3)),
        ("-0.25", Decimal("-0.25")),
        ("1e3", Decimal("1000")),
    ],
)
def test_decimals_are_read_from_text_and_numbers(raw, expected):
    data = validate(SEND, {"CardPhoneClientList": [{"Bonus": raw}]})
    assert data["CardPhoneClientList"][0]["Bonus"] == expected
    assert type(data["CardPhoneClientList"][0]["Bonus"]) is Decimal


def test_tab_cr_and_lf_are_allowed_in_text():
    assert validate(SEND, {"TextMessage": "a\tb\r\nc"})["TextMessage"] == "a\tb\r\nc"


def test_text_message_may_be_ten_thousand_characters():
    assert len(validate(SEND, {"TextMessage": "я" * 10_000})["TextMessage"]) == 10_000


def test_a_list_of_exactly_the_limit_is_accepted():
    data = validate(SEND, {"Files": [{"Id": n} for n in range(MAX_LIST_ITEMS)]})
    assert len(data["Files"]) == MAX_LIST_ITEMS


# Refusals, each naming the field.


def test_it_refuses_a_communication_type_that_is_not_a_number():
    error = refused(SEND, {"CommunicationType": "abc"})
    assert error.field == "CommunicationType"
    assert error.message == "CommunicationType must be a whole number from 0 to 255, got 'abc'."


@pytest.mark.parametrize("value", [256, -1, "256", 1000.0])
def test_it_refuses_a_communication_type_outside_a_byte(value):
    error = refused(SEND, {"CommunicationType": value})
    assert error.field == "CommunicationType"
    assert "from 0 to 255" in error.message


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, str(2**63), "1" * 100, Decimal("1e30")])
def test_it_refuses_integers_outside_int64(value):
    error = refused(SEND, {"Phone": value})
    assert error.field == "Phone"
    assert "from -9223372036854775808 to 9223372036854775807" in error.message


def test_int64_limits_themselves_are_accepted():
    data = validate(SEND, {"Token": 2**63 - 1, "ChatId": -(2**63)})
    assert (data["Token"], data["ChatId"]) == (2**63 - 1, -(2**63))


@pytest.mark.parametrize(
    "value", [True, 12.5, "12.5", "1e3", "٣", [1], {"a": 1}, float("nan"), Decimal("Infinity")]
)
def test_it_refuses_integers_of_the_wrong_type(value):
    assert refused(SEND, {"Client": value}).field == "Client"


def test_it_refuses_a_huge_exponent_without_computing_it():
    assert refused(SEND, {"Client": Decimal("1e999999999")}).field == "Client"


@pytest.mark.parametrize("value", ["maybe", 2, -1, 0.5, "yes", [True]])
def test_it_refuses_booleans_it_cannot_read(value):
    error = refused(UPDATE, {"AllowEmail": value})
    assert error.field == "AllowEmail"
    assert error.message.startswith("AllowEmail must be true or false, got ")


def test_it_names_the_bad_boolean_in_the_message():
    assert refused(UPDATE, {"AllowSms": "maybe"}).message == (
        "AllowSms must be true or false, got 'maybe'."
    )


@pytest.mark.parametrize(
    "value", ["NaN", "nan", "Infinity", "-inf", float("nan"), float("inf"), Decimal("NaN")]
)
def test_it_refuses_decimals_that_are_not_finite(value):
    error = refused(SEND, {"CardPhoneClientList": [{"Bonus": value}]})
    assert error.field == "CardPhoneClientList[0].Bonus"
    assert "finite" in error.message


@pytest.mark.parametrize("value", ["1,5", "abc", "1_000", True, "0x10"])
def test_it_refuses_decimals_it_cannot_read(value):
    error = refused(SEND, {"CardPhoneClientList": [{"Bonus": value}]})
    assert error.field == "CardPhoneClientList[0].Bonus"
    assert "decimal number written with a dot" in error.message


def test_it_refuses_decimals_beyond_dotnet_decimal():
    too_big = refused(SEND, {"CardPhoneClientList": [{"Bonus": "1e29"}]})
    assert "must be between" in too_big.message
    too_fine = refused(SEND, {"CardPhoneClientList": [{"Bonus": "1e-29"}]})
    assert "at most 28 digits after the decimal point" in too_fine.message


def test_it_refuses_text_longer_than_the_limit():
    error = refused(SEND, {"Title": "x" * 4001})
    assert error.field == "Title"
    assert error.message == "Title must be at most 4000 characters long, got 4001."
    assert refused(SEND, {"TextMessage": "x" * 10_001}).field == "TextMessage"


def test_it_refuses_text_with_nul():
    error = refused(SEND, {"TextMessage": "Hello\x00"})
    assert error.field == "TextMessage"
    assert error.message == (
        "TextMessage may not contain control characters, found U+0000 at position 5."
    )


@pytest.mark.parametrize("char", ["\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f"])
def test_it_refuses_text_with_control_characters(char):
    assert refused(SEND, {"Email": f"a{char}@example.ru"}).field == "Email"


def test_it_refuses_text_with_an_unpaired_surrogate():
    error = refused(SEND, {"Title": "bad \ud800"})
    assert error.field == "Title"
    assert "unpaired surrogate U+D800" in error.message


@pytest.mark.parametrize("value", [True, ["a"], {"a": "b"}, float("nan")])
def test_it_refuses_text_of_the_wrong_type(value):
    assert refused(SEND, {"PosCode": value}).message.startswith("PosCode must be text, got ")


def test_it_refuses_a_list_longer_than_the_limit():
    error = refused(SEND, {"CardPhoneClientList": [{"Id": 1}] * (MAX_LIST_ITEMS + 1)})
    assert error.field == "CardPhoneClientList"
    assert error.message == "CardPhoneClientList may have at most 10000 items, got 10001."


@pytest.mark.parametrize("item", [None, 5, "file", ["Id", 1]])
def test_it_refuses_a_list_item_that_is_not_an_object(item):
    error = refused(SEND, {"Files": [{"Id": 1}, item]})
    assert error.field == "Files[1]"
    assert error.message.startswith("Files[1] must be an object, got ")


def test_it_names_the_path_of_a_bad_value_inside_a_list():
    items = [{"Phone": 79161234567}] * 3 + [{"Phone": "8 916 123-45-67"}]
    error = refused(SEND, {"CardPhoneClientList": items})
    assert error.field == "CardPhoneClientList[3].Phone"
    assert error.message.startswith("CardPhoneClientList[3].Phone must be a whole number")


@pytest.mark.parametrize("value", ["abc", 5, {"Id": 1}])
def test_it_refuses_a_list_field_that_is_not_a_list(value):
    error = refused(SEND, {"Files": value})
    assert error.field == "Files"
    assert error.message.startswith("Files must be a list, got ")


@pytest.mark.parametrize(("raw", "described"), [([], "a list"), (None, "null"), ("x", "'x'")])
def test_it_refuses_a_body_that_is_not_an_object(raw, described):
    error = refused(SEND, raw)
    assert error.field is None
    assert error.message == (
        f"The body must be a SendMessageProcessRequest object with named fields, got {described}."
    )


def test_it_refuses_a_field_given_twice_in_different_letter_cases():
    error = refused(UPDATE, {"AllowSms": True, "allowsms": False})
    assert error.field == "AllowSms"
    assert "given more than once" in error.message


def test_it_keeps_long_values_out_of_messages():
    error = refused(SEND, {"Client": "9" * 500})
    assert len(error.message) < 200


def test_a_format_error_is_a_drf_parse_error_with_the_message_as_detail():
    from rest_framework.exceptions import ParseError

    error = refused(SEND, {"Client": "x"})
    assert isinstance(error, ParseError)
    assert error.status_code == 400
    assert str(error.detail) == str(error) == error.message


def test_it_refuses_a_decimal_with_a_huge_exponent_without_overflowing():
    error = refused(SEND, {"CardPhoneClientList": [{"Bonus": Decimal("1e999999999")}]})
    assert "must be between" in error.message
