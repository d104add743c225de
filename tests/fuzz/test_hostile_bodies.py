"""Hostile bodies against every partner endpoint: a clear 4xx in the request's format, nothing written.

Each hostile body is built around a request that would succeed (valid
credentials, an existing client or MessageId), so the hostile part is the only
reason to refuse it; `test_the_base_requests_succeed_and_write` proves they
would. The parser tests (tests/config/test_lcmanager_parsers.py) cover these
attacks on the parsers alone; here they go through the views of all three
endpoints, in every format they apply to.

At the end: the emails the fuzzer found turning into 500s (too long for the
columns) or into addresses (unchecked beside a Phone), fixed in campaigns/partner.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from defusedxml import ElementTree
from django.core.cache import cache

from campaigns.models import (
    AudienceListEntry,
    Campaign,
    Delivery,
    Message,
    MessageTemplate,
    PartnerSend,
)
from clients.models import Client, ConsentChange
from clients.services import issue_credential
from config.lcmanager import codes
from config.lcmanager.extension import MESSAGE_STATUS_REQUEST, MESSAGE_STATUS_RESPONSE
from config.lcmanager.schemas import (
    CLIENT_UPDATE_COMMUNICATION_REQUEST,
    CLIENT_UPDATE_COMMUNICATION_RESPONSE,
    SEND_MESSAGE_PROCESS_REQUEST,
    SEND_MESSAGE_PROCESS_RESPONSE,
    XSI_NAMESPACE,
)
from providers.models import ChannelRoute, ProviderAccount
from tests.conftest import make_client

JSON = "application/json"
XML = "application/xml"
FORM = "application/x-www-form-urlencoded"
TEN_MEGABYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Endpoint:
    url: str
    request: object  # Contract
    response: object  # Contract
    target: str  # the field that names what the request acts on

    def fields(self, world: dict) -> dict:
        """A request that succeeds: credentials and the thing it acts on."""
        fields = {"Operator": world["operator"], "Token": world["token"]}
        if self.request is SEND_MESSAGE_PROCESS_REQUEST:
            fields.update(CommunicationType=1, Client=world["client"].pk, TextMessage="Hello")
        elif self.request is CLIENT_UPDATE_COMMUNICATION_REQUEST:
            fields.update(Client=world["client"].pk, AllowSms=False, AllowEmail=False)
        else:
            fields.update(MessageId=world["message_id"])
        return fields


ENDPOINTS = {
    "SendMessageProcess": Endpoint(
        "/api/marketing/SendMessageProcess",
        SEND_MESSAGE_PROCESS_REQUEST,
        SEND_MESSAGE_PROCESS_RESPONSE,
        "Client",
    ),
    "ClientUpdateCommunication": Endpoint(
        "/api/client/ClientUpdateCommunication",
        CLIENT_UPDATE_COMMUNICATION_REQUEST,
        CLIENT_UPDATE_COMMUNICATION_RESPONSE,
        "Client",
    ),
    "MessageStatus": Endpoint(
        "/api/marketing/MessageStatus",
        MESSAGE_STATUS_REQUEST,
        MESSAGE_STATUS_RESPONSE,
        "MessageId",
    ),
}


@pytest.fixture(autouse=True)
def no_broker_and_fresh_throttles(monkeypatch):
    cache.clear()
    monkeypatch.setattr("campaigns.queue.kick_account", lambda account_id: None)
    monkeypatch.setattr("campaigns.queue.enqueue_fan_out", lambda campaign_id: None)
    yield
    cache.clear()


@pytest.fixture
def world(sunrise):
    """Sunrise's token, an SMS route, a consenting client and a message it sent earlier."""
    issued = issue_credential(operator=sunrise, name="POS software")
    account = ProviderAccount.objects.create(
        operator=sunrise,
        name="Gateway",
        backend="cascade_gateway",
        base_url="http://127.0.0.1:9",
        credentials={"login": "demo", "password": "x"},
        channels=["sms", "email"],
    )
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=account)
    ChannelRoute.objects.create(operator=sunrise, channel="email", account=account)
    client = make_client(sunrise, email="anna@example.com", allow_sms=True, allow_email=True)
    message = Message.objects.create(
        operator=sunrise, client=client, recipient_key=f"client:{client.pk}", phone=client.phone
    )
    sent = PartnerSend.objects.create(
        operator=sunrise,
        api_credential=issued.credential,
        request_digest="0" * 64,
        message=message,
    )
    return {
        "operator": sunrise.pk,
        "token": int(issued.secret),
        "client": client,
        "message_id": sent.pk,
    }


# --- Writing requests ---------------------------------------------------------------------


def as_json(fields: dict) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


def as_xml(endpoint: Endpoint, fields: dict, *, raw: dict | None = None, prolog: str = "") -> bytes:
    """DataContract XML; `raw` members are written as given, unescaped (the hostile part)."""
    contract = endpoint.request
    members = "".join(f"<{name}>{value}</{name}>" for name, value in fields.items())
    members += "".join(f"<{name}>{value}</{name}>" for name, value in (raw or {}).items())
    return (
        f'{prolog}<{contract.root} xmlns:i="{XSI_NAMESPACE}" xmlns="{contract.namespace}">'
        f"{members}</{contract.root}>"
    ).encode()


def as_form(fields: dict) -> bytes:
    return urlencode(fields).encode()


def nested_json(depth: int) -> dict:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_xml(depth: int) -> str:
    return "<a>" * depth + "1" + "</a>" * depth


ENTITY_ATTACKS = {
    "xxe_file": '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    "xxe_http": '<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/secret">]>',
    "parameter_entity": '<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>',
    "billion_laughs": "<!DOCTYPE r ["
    + '<!ENTITY x0 "lol">'
    + "".join(f'<!ENTITY x{n} "{f"&x{n - 1};" * 10}">' for n in range(1, 10))
    + "]>",
    "quadratic_blowup": f'<!DOCTYPE r [<!ENTITY x "{"a" * 50_000}">]>',
}
EXPANSIONS = {
    "xxe_file": "&x;",
    "xxe_http": "&x;",
    "parameter_entity": "1",
    "billion_laughs": "&x9;",
    "quadratic_blowup": "&x;" * 2_000,
}


@dataclass(frozen=True)
class Hostile:
    content_type: str
    body: bytes
    status: int
    error: codes.ErrorCode


def hostile(name: str, endpoint: Endpoint, world: dict) -> Hostile:
    """The named hostile body, for this endpoint, around a request that would succeed."""
    fields = endpoint.fields(world)
    target = endpoint.target
    text_field = "TextMessage" if endpoint.request is SEND_MESSAGE_PROCESS_REQUEST else "SiteCode"
    if name in ENTITY_ATTACKS:
        body = as_xml(
            endpoint,
            {k: v for k, v in fields.items() if k != target},
            raw={target: EXPANSIONS[name]},
            prolog='<?xml version="1.0"?>' + ENTITY_ATTACKS[name],
        )
        return Hostile(XML, body, 400, codes.MALFORMED_BODY)
    if name == "external_dtd":
        body = as_xml(endpoint, fields, prolog='<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd">')
        return Hostile(XML, body, 400, codes.MALFORMED_BODY)
    if name == "xml_nested_50_deep":
        body = as_xml(endpoint, fields, raw={"Unknown": nested_xml(50)})
        return Hostile(XML, body, 400, codes.MALFORMED_BODY)
    if name == "json_nested_50_deep":
        return Hostile(
            JSON, as_json({**fields, target: nested_json(50)}), 400, codes.INVALID_REQUEST
        )
    if name == "json_nested_100000_deep":
        body = as_json(fields)[:-1] + b', "Unknown": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        return Hostile(JSON, body, 400, codes.MALFORMED_BODY)
    if name == "json_10_megabytes":
        body = as_json({**fields, "Unknown": "x" * TEN_MEGABYTES})
        return Hostile(JSON, body, 413, codes.BODY_TOO_LARGE)
    if name == "xml_10_megabytes":
        body = as_xml(endpoint, fields, raw={"Unknown": "x" * TEN_MEGABYTES})
        return Hostile(XML, body, 413, codes.BODY_TOO_LARGE)
    if name == "form_10_megabytes":
        return Hostile(
            FORM, as_form({**fields, "Unknown": "x" * TEN_MEGABYTES}), 413, codes.BODY_TOO_LARGE
        )
    if name == "json_invalid_utf8":
        body = as_json({**fields, text_field: "@@"}).replace(b"@@", b"\xc3\x28\xff")
        return Hostile(JSON, body, 400, codes.MALFORMED_BODY)
    if name == "xml_invalid_utf8":
        body = as_xml(endpoint, fields, raw={text_field: "@@"}).replace(b"@@", b"\xc3\x28\xff")
        return Hostile(XML, body, 400, codes.MALFORMED_BODY)
    if name == "form_invalid_utf8_bytes":
        body = as_form({**fields, text_field: "@@"}).replace(b"%40%40", b"\xc3\x28\xff")
        return Hostile(FORM, body, 400, codes.MALFORMED_BODY)
    if name == "form_invalid_utf8_escapes":
        body = as_form({**fields}) + f"&{text_field}=%C3%28%FF".encode()
        return Hostile(FORM, body, 400, codes.MALFORMED_BODY)
    if name.startswith("json_escaped_control_"):
        char = chr(int(name.rpartition("_")[2], 16))
        return Hostile(
            JSON, as_json({**fields, text_field: f"a{char}b"}), 400, codes.INVALID_REQUEST
        )
    if name.startswith("json_raw_control_"):
        char = chr(int(name.rpartition("_")[2], 16)).encode()
        body = as_json({**fields, text_field: "a@b"}).replace(b"a@b", b"a" + char + b"b")
        return Hostile(JSON, body, 400, codes.MALFORMED_BODY)
    if name.startswith("xml_raw_control_"):
        char = chr(int(name.rpartition("_")[2], 16))
        return Hostile(
            XML, as_xml(endpoint, fields, raw={text_field: f"a{char}b"}), 400, codes.MALFORMED_BODY
        )
    if name.startswith("xml_reference_control_"):
        code = name.rpartition("_")[2]
        body = as_xml(endpoint, fields, raw={text_field: f"a&#x{code};b"})
        return Hostile(XML, body, 400, codes.MALFORMED_BODY)
    if name.startswith("form_control_"):
        char = chr(int(name.rpartition("_")[2], 16))
        return Hostile(
            FORM, as_form({**fields, text_field: f"a{char}b"}), 400, codes.INVALID_REQUEST
        )
    if name == "json_number_1e400":
        body = as_json(fields).replace(
            f'"{target}": {fields[target]}'.encode(), f'"{target}": 1e400'.encode()
        )
        assert b"1e400" in body
        return Hostile(JSON, body, 400, codes.INVALID_REQUEST)
    if name == "xml_number_1e400":
        body = as_xml(endpoint, {**fields, target: "1e400"})
        return Hostile(XML, body, 400, codes.INVALID_REQUEST)
    if name == "json_list_of_10001":
        if endpoint.request is SEND_MESSAGE_PROCESS_REQUEST:
            rows = [{"Client": world["client"].pk, "Bonus": 1}] * 10_001
            return Hostile(
                JSON, as_json({**fields, "CardPhoneClientList": rows}), 400, codes.INVALID_REQUEST
            )
        # No list member: the whole body is the list.
        return Hostile(JSON, as_json([fields] * 10_001), 400, codes.INVALID_REQUEST)
    if name == "xml_list_of_10001":
        item = f"<Item><Client>{world['client'].pk}</Client></Item>"
        body = as_xml(endpoint, fields, raw={"CardPhoneClientList": item * 10_001})
        if endpoint.request is SEND_MESSAGE_PROCESS_REQUEST:
            return Hostile(XML, body, 400, codes.INVALID_REQUEST)
        # Not a list member here: its items are read as one object's member given 10,001 times.
        return Hostile(XML, body, 400, codes.MALFORMED_BODY)
    if name == "form_list_past_10000":
        body = as_form({**fields, "CardPhoneClientList[10000].Client": world["client"].pk})
        return Hostile(FORM, body, 400, codes.MALFORMED_BODY)
    raise AssertionError(name)


CONTROL = ["00", "01", "08", "0b", "1b", "1f"]
HOSTILE = [
    *ENTITY_ATTACKS,
    "external_dtd",
    "xml_nested_50_deep",
    "json_nested_50_deep",
    "json_nested_100000_deep",
    "json_10_megabytes",
    "xml_10_megabytes",
    "form_10_megabytes",
    "json_invalid_utf8",
    "xml_invalid_utf8",
    "form_invalid_utf8_bytes",
    "form_invalid_utf8_escapes",
    *(f"json_escaped_control_{c}" for c in CONTROL),
    *(f"json_raw_control_{c}" for c in CONTROL),
    *(f"xml_raw_control_{c}" for c in CONTROL),
    *(f"xml_reference_control_{c}" for c in CONTROL),
    *(f"form_control_{c}" for c in CONTROL),
    "json_number_1e400",
    "xml_number_1e400",
    "json_list_of_10001",
    "xml_list_of_10001",
    "form_list_past_10000",
]


# --- Reading answers ------------------------------------------------------------------------


def envelope(response, endpoint: Endpoint, request_type: str) -> dict:
    """ErrorCode and Message of the answer, which must be in the request's own format."""
    content_type = response["Content-Type"]
    if request_type == XML:
        assert content_type == "application/xml; charset=utf-8"
        contract = endpoint.response
        root = ElementTree.fromstring(response.content)
        assert root.tag == f"{{{contract.namespace}}}{contract.root}"
        members = {element.tag.rpartition("}")[2]: element.text for element in root}
        return {"ErrorCode": int(members["ErrorCode"]), "Message": members["Message"]}
    assert content_type == "application/json; charset=utf-8"
    answer = json.loads(response.content)
    assert [key for key in answer if key in ("ErrorCode", "Message")] == ["ErrorCode", "Message"]
    return answer


def written(world: dict) -> tuple:
    client = Client.objects.get(pk=world["client"].pk)
    return (
        Message.objects.count(),
        Delivery.objects.count(),
        PartnerSend.objects.count(),
        ConsentChange.objects.count(),
        AudienceListEntry.objects.count(),
        Campaign.objects.count(),
        MessageTemplate.objects.count(),
        (client.allow_sms, client.allow_email, client.allow_push, client.allow_email_online_cheque),
    )


# --- The tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint_name", sorted(ENDPOINTS))
@pytest.mark.parametrize("request_type", [JSON, XML, FORM])
def test_the_base_requests_succeed_and_write(client, world, endpoint_name, request_type):
    endpoint = ENDPOINTS[endpoint_name]
    fields = endpoint.fields(world)
    body = {JSON: as_json, FORM: as_form}.get(request_type, lambda f: as_xml(endpoint, f))(fields)
    before = written(world)
    response = client.post(endpoint.url, data=body, content_type=request_type)
    assert response.status_code == 200, response.content
    assert envelope(response, endpoint, request_type)["ErrorCode"] == 0
    if endpoint.request is not MESSAGE_STATUS_REQUEST:  # the one read-only endpoint
        assert written(world) != before


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("endpoint_name", sorted(ENDPOINTS))
def test_a_hostile_body_gets_a_clear_4xx_in_its_format_and_writes_nothing(
    client, world, endpoint_name, name
):
    endpoint = ENDPOINTS[endpoint_name]
    attack = hostile(name, endpoint, world)
    before = written(world)
    response = client.post(endpoint.url, data=attack.body, content_type=attack.content_type)
    answer = envelope(response, endpoint, attack.content_type)
    assert (response.status_code, answer["ErrorCode"]) == (attack.status, attack.error.code), answer
    assert answer["Message"].startswith(str(attack.error.message))
    assert written(world) == before


@pytest.mark.parametrize("endpoint_name", sorted(ENDPOINTS))
@pytest.mark.parametrize("name", ["json_10_megabytes", "xml_10_megabytes", "form_10_megabytes"])
def test_the_parsers_own_limit_answers_413_too(client, world, settings, endpoint_name, name):
    """Past the view's Content-Length check (raised here), the parsers stop reading at Django's limit."""
    settings.CASCADE_API_MAX_BODY_BYTES = 2 * TEN_MEGABYTES
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    endpoint = ENDPOINTS[endpoint_name]
    attack = hostile(name, endpoint, world)
    before = written(world)
    response = client.post(endpoint.url, data=attack.body, content_type=attack.content_type)
    answer = envelope(response, endpoint, attack.content_type)
    assert (response.status_code, answer["ErrorCode"]) == (413, codes.BODY_TOO_LARGE.code)
    assert written(world) == before


# --- long and invalid emails (once 500s) ---------------------------------------------------


@pytest.mark.parametrize("request_type", [JSON, XML, FORM])
def test_a_long_email_beside_a_phone_is_a_4xx_not_a_500(client, world, request_type):
    endpoint = ENDPOINTS["SendMessageProcess"]
    fields = {
        **{k: v for k, v in endpoint.fields(world).items() if k != "Client"},
        "CommunicationType": 2,
        "Phone": 79990001122,
        "Email": "a" * 300 + "@example.com",
    }
    body = {JSON: as_json, FORM: as_form}.get(request_type, lambda f: as_xml(endpoint, f))(fields)
    before = written(world)
    response = client.post(endpoint.url, data=body, content_type=request_type)
    assert 400 <= response.status_code < 500, response.content
    assert written(world) == before


def test_an_invalid_email_beside_a_phone_is_never_an_address_sent_to(client, world):
    operator = Client.objects.get(pk=world["client"].pk).operator
    make_client(operator, phone="79990001122", email="", allow_email=True)
    endpoint = ENDPOINTS["SendMessageProcess"]
    fields = {
        **{k: v for k, v in endpoint.fields(world).items() if k != "Client"},
        "CommunicationType": 2,
        "Phone": 79990001122,
        "Email": "not an address",
    }
    response = client.post(endpoint.url, data=as_json(fields), content_type=JSON)
    assert response.status_code < 500, response.content
    assert not Delivery.objects.filter(message__email="not an address", status="queued").exists()


@pytest.mark.parametrize("local_part", [95, 250])
def test_a_long_valid_email_recipient_is_answered_not_a_500(client, world, local_part):
    endpoint = ENDPOINTS["SendMessageProcess"]
    fields = {
        **{k: v for k, v in endpoint.fields(world).items() if k != "Client"},
        "CommunicationType": 2,
        "Email": "a" * local_part + "@example.com",
    }
    response = client.post(endpoint.url, data=as_json(fields), content_type=JSON)
    assert response.status_code < 500, response.content
