"""The LCManager help-page samples (seeds 000 and 001), read and written by our code.

The fixture files are the seeds' samples byte for byte, with realistic values
in place of "sample string N" in the requests; the response fixtures are the
seeds' samples unchanged.
"""

import io
import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from defusedxml.ElementTree import iterparse

from config.lcmanager.parsers import (
    DataContractFormParser,
    DataContractJSONParser,
    DataContractXMLParser,
)
from config.lcmanager.renderers import render_json, render_xml
from config.lcmanager.schemas import (
    ABSTRACTIONS_NAMESPACE,
    CLIENT_UPDATE_COMMUNICATION_REQUEST,
    CLIENT_UPDATE_COMMUNICATION_RESPONSE,
    MARKETING_REQUEST_NAMESPACE,
    SEND_MESSAGE_PROCESS_REQUEST,
    SEND_MESSAGE_PROCESS_RESPONSE,
    XSI_NAMESPACE,
    Contract,
    Field,
    openapi_schema,
)
from config.lcmanager.validation import validate

# The same files serve as the OpenAPI examples.
FIXTURES = Path(__file__).resolve().parents[2] / "config" / "lcmanager" / "samples"

SEND_MESSAGE_PROCESS = {
    "PosCode": "MSK-014",
    "CommunicationType": 1,
    "Phone": 79161234567,
    "Email": "anna.petrova@example.ru",
    "Subscriber": 5012,
    "ChatId": -1001234567890,
    "Client": 104857,
    "User": 17,
    "Person": 88231,
    "Leads": 4411,
    "Files": [
        {
            "Id": 9001,
            "Url": "https://cdn.example.ru/promo/spring.jpg?w=800&h=600",
            "Type": "image/jpeg",
            "Name": "spring.jpg",
            "LevelStep": 1,
        },
        {
            "Id": 9002,
            "Url": "https://cdn.example.ru/promo/terms.pdf",
            "Type": "application/pdf",
            "Name": "Условия акции.pdf",
            "LevelStep": 2,
        },
    ],
    "CardPhoneClientList": [
        {
            "Id": 1,
            "Phone": 79161234567,
            "Client": 104857,
            "Card": 2200123456789012,
            "Bonus": Decimal("150.5"),
        },
        {
            "Id": 2,
            "Phone": 79037654321,
            "Client": 104858,
            "Card": 2200123456789013,
            "Bonus": Decimal("0"),
        },
    ],
    "TypeOpen": "0",
    "IdTypeOpen": "0",
    "MessageTemplate": 312,
    "Title": "Весенняя акция",
    "TextMessage": (
        "Анна, начислено 150 бонусов. Скидка 10% & подарок <при покупке от 1000 ₽> до 31.05!"
    ),
    "Operator": 3,
    "Token": 123456789012345678,
    "SiteCode": "gift-widget-7f3a",
}

CLIENT_UPDATE_COMMUNICATION = {
    "Client": 104857,
    "AllowSms": True,
    "AllowEmail": False,
    "AllowPush": True,
    "AllowEmailOnlineCheque": False,
    "Operator": 3,
    "Token": 123456789012345678,
    "SiteCode": "gift-widget-7f3a",
}


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(parser_class, body: bytes, contract: Contract, media_type: str):
    context = {"view": SimpleNamespace(request_contract=contract)}
    return parser_class().parse(io.BytesIO(body), media_type, context)


def parse_xml(body: bytes, contract: Contract = SEND_MESSAGE_PROCESS_REQUEST, media_type=None):
    return parse(DataContractXMLParser, body, contract, media_type or "application/xml")


def parse_json(body: bytes, contract: Contract = SEND_MESSAGE_PROCESS_REQUEST, media_type=None):
    return parse(DataContractJSONParser, body, contract, media_type or "application/json")


def parse_form(body: bytes, contract: Contract = SEND_MESSAGE_PROCESS_REQUEST, media_type=None):
    media_type = media_type or "application/x-www-form-urlencoded"
    return parse(DataContractFormParser, body, contract, media_type)


def assert_same_typed(actual, expected, path="body"):
    """Equal, and of the same types all the way down (1 == Decimal(1) == True otherwise)."""
    assert type(actual) is type(expected), f"{path}: {actual!r} is not {expected!r}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), path
        for key in expected:
            assert_same_typed(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_typed(a, e, f"{path}[{index}]")
    else:
        assert actual == expected, path


def xml_tree(body: bytes):
    """Tag (with namespace), namespace declarations, attributes, text and children.

    Whitespace between elements is layout and is ignored; a leaf's text is compared as is.
    """
    declared: list[tuple[str, str]] = []
    stack: list[dict] = []
    root = None
    for event, item in iterparse(io.BytesIO(body), events=("start-ns", "start", "end")):
        if event == "start-ns":
            declared.append(item)
        elif event == "start":
            node = {"tag": item.tag, "xmlns": sorted(declared), "attrib": dict(item.attrib)}
            node["children"] = []
            declared = []
            if stack:
                stack[-1]["children"].append(node)
            else:
                root = node
            stack.append(node)
        else:
            node = stack.pop()
            node["text"] = (item.text or "") if not node["children"] else ""
    return root


# The samples, read.


def test_it_reads_the_send_message_process_json_sample():
    raw = parse_json(fixture_bytes("send_message_process_request.json"))
    assert_same_typed(validate(SEND_MESSAGE_PROCESS_REQUEST, raw), SEND_MESSAGE_PROCESS)


def test_it_reads_the_send_message_process_xml_sample():
    raw = parse_xml(fixture_bytes("send_message_process_request.xml"))
    assert_same_typed(validate(SEND_MESSAGE_PROCESS_REQUEST, raw), SEND_MESSAGE_PROCESS)


def test_it_reads_the_client_update_communication_json_sample():
    contract = CLIENT_UPDATE_COMMUNICATION_REQUEST
    raw = parse_json(fixture_bytes("client_update_communication_request.json"), contract)
    assert_same_typed(validate(contract, raw), CLIENT_UPDATE_COMMUNICATION)


def test_it_reads_the_client_update_communication_xml_sample_written_on_one_line():
    contract = CLIENT_UPDATE_COMMUNICATION_REQUEST
    raw = parse_xml(fixture_bytes("client_update_communication_request.xml"), contract)
    assert_same_typed(validate(contract, raw), CLIENT_UPDATE_COMMUNICATION)


def test_it_reads_the_same_request_sent_as_a_form():
    body = (
        "PosCode=MSK-014&CommunicationType=1&Phone=79161234567&Email=anna.petrova%40example.ru"
        "&Subscriber=5012&ChatId=-1001234567890&Client=104857&User=17&Person=88231&Leads=4411"
        "&Files[0].Id=9001&Files[0].Url=https%3A%2F%2Fcdn.example.ru%2Fpromo%2Fspring.jpg%3Fw%3D800%26h%3D600"
        "&Files[0].Type=image%2Fjpeg&Files[0].Name=spring.jpg&Files[0].LevelStep=1"
        # jQuery's $.param writes the second item this way
        "&Files%5B1%5D%5BId%5D=9002&Files%5B1%5D%5BUrl%5D=https%3A%2F%2Fcdn.example.ru%2Fpromo%2Fterms.pdf"
        "&Files%5B1%5D%5BType%5D=application%2Fpdf"
        "&Files%5B1%5D%5BName%5D=%D0%A3%D1%81%D0%BB%D0%BE%D0%B2%D0%B8%D1%8F+%D0%B0%D0%BA%D1%86%D0%B8%D0%B8.pdf"
        "&Files%5B1%5D%5BLevelStep%5D=2"
        "&CardPhoneClientList[1].Id=2&CardPhoneClientList[1].Phone=79037654321"
        "&CardPhoneClientList[1].Client=104858&CardPhoneClientList[1].Card=2200123456789013"
        "&CardPhoneClientList[1].Bonus=0"
        "&CardPhoneClientList[0].Id=1&CardPhoneClientList[0].Phone=79161234567"
        "&CardPhoneClientList[0].Client=104857&CardPhoneClientList[0].Card=2200123456789012"
        "&CardPhoneClientList[0].Bonus=150.5"
        "&TypeOpen=0&IdTypeOpen=0&MessageTemplate=312"
        "&Title=%D0%92%D0%B5%D1%81%D0%B5%D0%BD%D0%BD%D1%8F%D1%8F+%D0%B0%D0%BA%D1%86%D0%B8%D1%8F"
        "&TextMessage=" + _percent(SEND_MESSAGE_PROCESS["TextMessage"]) + "&Operator=3"
        "&Token=123456789012345678&SiteCode=gift-widget-7f3a"
    )
    raw = parse_form(body.encode("ascii"))
    assert_same_typed(validate(SEND_MESSAGE_PROCESS_REQUEST, raw), SEND_MESSAGE_PROCESS)


def _percent(text: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(text)


# Requests written by us reproduce the samples: the DataContract order rule holds.


def test_xml_fields_follow_the_datacontract_order_of_the_samples():
    names = [field.name for field in SEND_MESSAGE_PROCESS_REQUEST.xml_fields]
    assert names == [
        "Operator", "SiteCode", "Token",
        "CardPhoneClientList", "ChatId", "Client", "CommunicationType", "Email", "Files",
        "IdTypeOpen", "Leads", "MessageTemplate", "Person", "Phone", "PosCode", "Subscriber",
        "TextMessage", "Title", "TypeOpen", "User",
    ]  # fmt: skip
    assert [f.name for f in SEND_MESSAGE_PROCESS_RESPONSE.xml_fields] == [
        "ErrorCode",
        "Message",
        "MessageId",
    ]


def test_rendering_the_send_message_process_request_gives_the_xml_sample():
    written = render_xml(SEND_MESSAGE_PROCESS_REQUEST, SEND_MESSAGE_PROCESS)
    assert xml_tree(written) == xml_tree(fixture_bytes("send_message_process_request.xml"))


def test_rendering_the_client_update_communication_request_gives_the_xml_sample():
    written = render_xml(CLIENT_UPDATE_COMMUNICATION_REQUEST, CLIENT_UPDATE_COMMUNICATION)
    sample = fixture_bytes("client_update_communication_request.xml")
    assert xml_tree(written) == xml_tree(sample)


def test_rendering_the_send_message_process_request_gives_the_json_sample_compacted():
    sample = json.loads(fixture_bytes("send_message_process_request.json"))
    compact = json.dumps(sample, ensure_ascii=False, separators=(",", ":")).encode()
    assert render_json(SEND_MESSAGE_PROCESS_REQUEST, SEND_MESSAGE_PROCESS) == compact


# Responses, compared to the samples.


def test_send_message_process_response_xml_matches_the_sample():
    data = {"MessageId": 1, "ErrorCode": 1, "Message": "sample string 2"}
    written = render_xml(SEND_MESSAGE_PROCESS_RESPONSE, data)
    assert xml_tree(written) == xml_tree(fixture_bytes("send_message_process_response.xml"))


def test_send_message_process_response_xml_puts_error_code_and_message_in_the_base_namespace():
    data = {"MessageId": 1, "ErrorCode": 0, "Message": "OK"}
    tree = xml_tree(render_xml(SEND_MESSAGE_PROCESS_RESPONSE, data))
    assert tree["xmlns"] == sorted(
        [("i", XSI_NAMESPACE), ("", SEND_MESSAGE_PROCESS_RESPONSE.namespace)]
    )
    assert [child["tag"] for child in tree["children"]] == [
        f"{{{ABSTRACTIONS_NAMESPACE}}}ErrorCode",
        f"{{{ABSTRACTIONS_NAMESPACE}}}Message",
        f"{{{SEND_MESSAGE_PROCESS_RESPONSE.namespace}}}MessageId",
    ]


def test_client_update_communication_response_xml_matches_the_sample():
    data = {"ErrorCode": 1, "Message": "sample string 2"}
    written = render_xml(CLIENT_UPDATE_COMMUNICATION_RESPONSE, data)
    sample = fixture_bytes("client_update_communication_response.xml")
    assert xml_tree(written) == xml_tree(sample)


def test_client_update_communication_response_keeps_everything_in_the_models_namespace():
    written = render_xml(CLIENT_UPDATE_COMMUNICATION_RESPONSE, {"ErrorCode": 0, "Message": "OK"})
    assert written == (
        b'<ClientUpdateCommunicationResponse xmlns:i="http://www.w3.org/2001/XMLSchema-instance"'
        b' xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Models">'
        b"<ErrorCode>0</ErrorCode><Message>OK</Message></ClientUpdateCommunicationResponse>"
    )


@pytest.mark.parametrize(
    ("contract", "name", "data"),
    [
        (
            SEND_MESSAGE_PROCESS_RESPONSE,
            "send_message_process_response.json",
            {"MessageId": 1, "ErrorCode": 1, "Message": "sample string 2"},
        ),
        (
            CLIENT_UPDATE_COMMUNICATION_RESPONSE,
            "client_update_communication_response.json",
            {"ErrorCode": 1, "Message": "sample string 2"},
        ),
    ],
)
def test_json_responses_have_the_samples_keys_types_and_order(contract, name, data):
    written = json.loads(render_json(contract, data), object_pairs_hook=list)
    sample = json.loads(fixture_bytes(name), object_pairs_hook=list)
    assert [key for key, _ in written] == [key for key, _ in sample]
    assert [type(value) for _, value in written] == [type(value) for _, value in sample]
    assert written == sample


def test_json_response_is_compact_utf8_with_non_ascii_as_is():
    data = {"MessageId": 1, "ErrorCode": 0, "Message": "Сообщение принято"}
    assert render_json(SEND_MESSAGE_PROCESS_RESPONSE, data) == (
        '{"MessageId":1,"ErrorCode":0,"Message":"Сообщение принято"}'.encode()
    )


def test_none_is_written_as_nil_in_xml_and_null_in_json():
    data = {"MessageId": None, "ErrorCode": 12, "Message": None}
    written = render_xml(SEND_MESSAGE_PROCESS_RESPONSE, data)
    assert b'<MessageId i:nil="true" />' in written
    assert (
        b'<Message xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.'
        b'Implementation.Abstractions" i:nil="true" />'
    ) in written
    assert render_json(SEND_MESSAGE_PROCESS_RESPONSE, data) == (
        b'{"MessageId":null,"ErrorCode":12,"Message":null}'
    )


def test_missing_keys_are_written_as_nil():
    written = render_json(SEND_MESSAGE_PROCESS_RESPONSE, {"ErrorCode": 0})
    assert written == b'{"MessageId":null,"ErrorCode":0,"Message":null}'


def test_xml_text_is_escaped_and_survives_a_round_trip():
    message = 'Ошибка: <Phone> & "Email"\r\nline 2'
    written = render_xml(CLIENT_UPDATE_COMMUNICATION_RESPONSE, {"ErrorCode": 3, "Message": message})
    assert b"&lt;Phone&gt; &amp;" in written
    assert xml_tree(written)["children"][1]["text"] == message


def test_characters_xml_cannot_carry_become_replacement_characters():
    data = {"ErrorCode": 3, "Message": "bad \x00 and \x1b here"}
    written = render_xml(CLIENT_UPDATE_COMMUNICATION_RESPONSE, data)
    assert xml_tree(written)["children"][1]["text"] == "bad \ufffd and \ufffd here"


def test_rendering_a_member_the_contract_does_not_have_fails_loudly():
    with pytest.raises(ValueError, match="has no member detail"):
        render_json(SEND_MESSAGE_PROCESS_RESPONSE, {"detail": "Not found."})
    with pytest.raises(ValueError, match="has no member detail"):
        render_xml(SEND_MESSAGE_PROCESS_RESPONSE, {"detail": "Not found."})


def test_rendering_a_value_of_the_wrong_type_fails_loudly():
    with pytest.raises(TypeError, match=r"SendMessageProcessResponse\.MessageId must be an int"):
        render_json(SEND_MESSAGE_PROCESS_RESPONSE, {"MessageId": "7"})


def test_decimals_are_written_with_a_fraction_in_json_as_json_net_does():
    written = render_json(SEND_MESSAGE_PROCESS_REQUEST, {"CardPhoneClientList": [{"Bonus": 5}]})
    assert b'"Bonus":5.0' in written
    written = render_json(
        SEND_MESSAGE_PROCESS_REQUEST, {"CardPhoneClientList": [{"Bonus": Decimal("0.0350")}]}
    )
    assert b'"Bonus":0.0350' in written


# The OpenAPI schema for drf-spectacular.


def test_openapi_schema_describes_types_formats_and_lists():
    schema = openapi_schema(SEND_MESSAGE_PROCESS_REQUEST)
    properties = schema["properties"]
    assert schema["type"] == "object"
    assert list(properties) == [field.name for field in SEND_MESSAGE_PROCESS_REQUEST.fields]
    assert properties["Phone"]["type"] == "integer"
    assert properties["Phone"]["format"] == "int64"
    assert properties["Phone"]["nullable"] is True
    assert properties["CommunicationType"] | {"description": ""} == {
        "type": "integer",
        "minimum": 0,
        "maximum": 255,
        "nullable": True,
        "description": "",
    }
    assert properties["TextMessage"]["maxLength"] == 10_000
    assert properties["Title"]["maxLength"] == 4000
    files = properties["Files"]
    assert files["type"] == "array"
    assert files["maxItems"] == 10_000
    assert files["items"]["type"] == "object"
    assert files["items"]["xml"]["name"] == "SendMessageProcessRequest.SendMessageProcessFile"
    bonus = properties["CardPhoneClientList"]["items"]["properties"]["Bonus"]
    assert (bonus["type"], bonus["format"]) == ("number", "decimal")
    assert properties["Operator"]["xml"] == {"namespace": ABSTRACTIONS_NAMESPACE}
    assert schema["xml"] == {
        "name": "SendMessageProcessRequest",
        "namespace": MARKETING_REQUEST_NAMESPACE,
    }


def test_openapi_schema_of_client_update_communication_has_booleans():
    properties = openapi_schema(CLIENT_UPDATE_COMMUNICATION_REQUEST)["properties"]
    assert properties["AllowEmailOnlineCheque"]["type"] == "boolean"


def test_a_field_of_unknown_kind_is_refused_when_the_contract_is_written():
    with pytest.raises(ValueError, match="unknown kind"):
        Field("Phone", "long")
    with pytest.raises(ValueError, match="item contract"):
        Field("Files", "list")
