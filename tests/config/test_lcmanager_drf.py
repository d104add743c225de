"""The parsers, renderers and negotiation inside a real DRF view, driven by APIRequestFactory."""

import json

import pytest
from defusedxml.ElementTree import fromstring
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from config.lcmanager.negotiation import RequestFormatNegotiation
from config.lcmanager.parsers import (
    DataContractFormParser,
    DataContractJSONParser,
    DataContractXMLParser,
)
from config.lcmanager.renderers import DataContractJSONRenderer, DataContractXMLRenderer
from config.lcmanager.schemas import (
    MARKETING_RESPONSE_NAMESPACE,
    SEND_MESSAGE_PROCESS_REQUEST,
    SEND_MESSAGE_PROCESS_RESPONSE,
)
from config.lcmanager.validation import validate
from tests.config.test_lcmanager_formats import (
    SEND_MESSAGE_PROCESS,
    assert_same_typed,
    fixture_bytes,
)

factory = APIRequestFactory()


class SendMessageView(APIView):
    """Echoes what it parsed; answers every error in the contract's shape, as the real views must."""

    request_contract = SEND_MESSAGE_PROCESS_REQUEST
    response_contract = SEND_MESSAGE_PROCESS_RESPONSE
    parser_classes = [DataContractJSONParser, DataContractXMLParser, DataContractFormParser]
    renderer_classes = [DataContractJSONRenderer, DataContractXMLRenderer]
    content_negotiation_class = RequestFormatNegotiation
    authentication_classes = []
    permission_classes = []
    received: list = []

    def post(self, request):
        self.received.append(request.data)
        data = validate(self.request_contract, request.data)
        return Response({"MessageId": data["Client"], "ErrorCode": 0, "Message": "OK"})

    def handle_exception(self, exc):
        if isinstance(exc, APIException):  # FormatError is a ParseError, so one of these
            answer = {"MessageId": None, "ErrorCode": exc.status_code, "Message": str(exc.detail)}
            return Response(answer, status=exc.status_code)
        return super().handle_exception(exc)


@pytest.fixture(autouse=True)
def fresh_view():
    SendMessageView.received = []


def post(body: bytes | str, content_type: str, accept: str | None = None):
    headers = {"HTTP_ACCEPT": accept} if accept is not None else {}
    request = factory.post(
        "/api/marketing/SendMessageProcess", body, content_type=content_type, **headers
    )
    response = SendMessageView.as_view()(request)
    response.render()
    return response


def answer_xml(response) -> dict:
    root = fromstring(response.content)
    return {child.tag.rpartition("}")[2]: child.text for child in root} | {"_root": root.tag}


# request.data through DRF.


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("send_message_process_request.json", "application/json"),
        ("send_message_process_request.json", "text/json; charset=utf-8"),
        ("send_message_process_request.xml", "application/xml"),
        ("send_message_process_request.xml", "text/xml; charset=utf-8"),
    ],
)
def test_the_samples_arrive_as_request_data(name, content_type):
    response = post(fixture_bytes(name), content_type)
    assert response.status_code == 200, response.content
    assert_same_typed(
        validate(SEND_MESSAGE_PROCESS_REQUEST, SendMessageView.received[0]), SEND_MESSAGE_PROCESS
    )


def test_a_form_arrives_as_request_data_with_lists():
    response = post(
        "Client=104857&Files[0].Id=7&Files[0][Name]=a.jpg", "application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert SendMessageView.received == [
        {"Client": "104857", "Files": [{"Id": "7", "Name": "a.jpg"}]}
    ]


def test_an_empty_body_arrives_as_an_empty_object():
    response = post(b"", "application/json")
    assert response.status_code == 200
    assert SendMessageView.received == [{}]


# Negotiation.


def test_accept_xml_with_a_json_body_answers_xml():
    response = post(b'{"Client": 5}', "application/json", accept="application/xml")
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    answer = answer_xml(response)
    assert answer["_root"] == f"{{{MARKETING_RESPONSE_NAMESPACE}}}SendMessageProcessResponse"
    assert (answer["MessageId"], answer["ErrorCode"], answer["Message"]) == ("5", "0", "OK")


def test_no_accept_with_an_xml_body_answers_xml():
    body = b"<SendMessageProcessRequest><Client>5</Client></SendMessageProcessRequest>"
    response = post(body, "application/xml")
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    assert answer_xml(response)["MessageId"] == "5"


def test_a_text_xml_body_is_answered_as_text_xml():
    body = b"<SendMessageProcessRequest><Client>5</Client></SendMessageProcessRequest>"
    response = post(body, "text/xml; charset=utf-8")
    assert response["Content-Type"] == "text/xml; charset=utf-8"


def test_a_text_json_body_is_answered_as_text_json():
    response = post(b'{"Client": 5}', "text/json")
    assert response["Content-Type"] == "text/json; charset=utf-8"
    assert json.loads(response.content) == {"MessageId": 5, "ErrorCode": 0, "Message": "OK"}


def test_a_form_is_answered_as_json():
    response = post("Client=5", "application/x-www-form-urlencoded")
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.content == b'{"MessageId":5,"ErrorCode":0,"Message":"OK"}'


def test_accept_text_html_with_an_xml_body_answers_xml_not_406():
    body = b"<SendMessageProcessRequest><Client>5</Client></SendMessageProcessRequest>"
    response = post(body, "application/xml", accept="text/html")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml; charset=utf-8"


def test_accept_of_anything_follows_the_request_format():
    body = b"<SendMessageProcessRequest><Client>5</Client></SendMessageProcessRequest>"
    response = post(body, "application/xml", accept="*/*")
    assert response["Content-Type"] == "application/xml; charset=utf-8"


def test_accept_q_values_are_honoured():
    accept = "application/json;q=0.5, text/xml;q=0.9, */*;q=0.1"
    response = post(b'{"Client": 5}', "application/json", accept=accept)
    assert response["Content-Type"] == "text/xml; charset=utf-8"


def test_the_first_of_equally_wanted_types_wins():
    accept = "application/xml, application/json"
    assert post(b'{"Client": 5}', "application/json", accept=accept)["Content-Type"] == (
        "application/xml; charset=utf-8"
    )


def test_a_type_refused_with_q_zero_is_not_chosen():
    accept = "application/xml;q=0, application/json;q=0.2"
    response = post(b"<SendMessageProcessRequest/>", "application/xml", accept=accept)
    assert response["Content-Type"] == "application/json; charset=utf-8"


def test_a_browser_accept_header_gets_xml_as_from_aspnet():
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = post("Client=5", "application/x-www-form-urlencoded", accept=accept)
    assert response["Content-Type"] == "application/xml; charset=utf-8"


def test_a_body_in_an_unsupported_format_is_refused_in_json():
    response = post(b"Client: 5", "text/plain")
    assert response.status_code == 415
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(response.content)["ErrorCode"] == 415


# Parse errors answered in the negotiated format.


def test_malformed_json_is_a_400_with_a_clear_message():
    response = post(b'{"Client": 5,}', "application/json")
    assert response.status_code == 400
    assert json.loads(response.content)["Message"] == (
        "The body is not valid JSON: Expecting property name enclosed in double quotes "
        "at line 1 column 14."
    )


def test_xxe_is_a_400_answered_in_xml():
    body = b"""<?xml version="1.0"?>
<!DOCTYPE SendMessageProcessRequest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<SendMessageProcessRequest><TextMessage>&xxe;</TextMessage></SendMessageProcessRequest>"""
    response = post(body, "application/xml")
    assert response.status_code == 400
    answer = answer_xml(response)
    assert answer["Message"] == "DTDs and entities are not allowed in XML requests."
    assert answer["MessageId"] is None
    assert SendMessageView.received == []


def test_a_wrong_root_element_is_a_400_naming_the_expected_one():
    body = b"<ClientUpdateCommunicationRequest/>"
    response = post(body, "text/xml")
    assert response.status_code == 400
    assert "must be SendMessageProcessRequest" in answer_xml(response)["Message"]


def test_a_form_index_gap_is_a_400_naming_the_field():
    response = post("Files[0].Id=1&Files[5].Id=2", "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert json.loads(response.content)["Message"].startswith("Files has no item 1")


def test_a_value_out_of_range_is_a_400_naming_the_field():
    response = post(b'{"CommunicationType": 256}', "application/json")
    assert response.status_code == 400
    assert json.loads(response.content)["Message"] == (
        "CommunicationType must be a whole number from 0 to 255, got 256."
    )
