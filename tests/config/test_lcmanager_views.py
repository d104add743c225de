"""The partner API over the Django test client: every format, recipient, refusal and ErrorCode."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from defusedxml import ElementTree
from django.core.cache import cache
from django.core.management import call_command

from campaigns import partner
from campaigns.models import (
    AudienceListEntry,
    Campaign,
    Delivery,
    Message,
    MessageTemplate,
    PartnerSend,
)
from clients.models import (
    ApiCredential,
    Card,
    Client,
    ConsentChange,
    Lead,
    MessengerChat,
    PointOfSale,
    Subscriber,
)
from clients.services import issue_credential, revoke_credential
from config.lcmanager import codes
from providers.models import ChannelRoute, ProviderAccount
from providers.status import DeliveryStatus
from tests.conftest import make_client, make_staff

SEND = "/api/marketing/SendMessageProcess"
UPDATE = "/api/client/ClientUpdateCommunication"
STATUS = "/api/marketing/MessageStatus"
ABSTRACTIONS = (
    "http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Abstractions"
)
MARKETING_RESPONSE = "http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Response.MarketingResponse"
MODELS = "http://schemas.datacontract.org/2004/07/LCManagerPartner.Models"


@pytest.fixture(autouse=True)
def fresh_cache_and_no_broker(monkeypatch):
    cache.clear()  # throttle counters live in the cache
    kicked = []
    monkeypatch.setattr(
        "campaigns.queue.kick_account", lambda account_id: kicked.append(account_id)
    )
    monkeypatch.setattr("campaigns.queue.enqueue_fan_out", lambda campaign_id: None)
    yield kicked
    cache.clear()


@pytest.fixture
def api(sunrise):
    """Sunrise's token, routes for sms, email, viber and call codes, and a consenting client."""
    issued = issue_credential(operator=sunrise, name="POS software")
    account = ProviderAccount.objects.create(
        operator=sunrise,
        name="Gateway",
        backend="cascade_gateway",
        base_url="http://127.0.0.1:9",
        credentials={"login": "demo", "password": "x"},
        channels=["viber", "sms", "call_code"],
    )
    mail = ProviderAccount.objects.create(
        operator=sunrise,
        name="Mail",
        backend="smtp",
        base_url="smtp://127.0.0.1:9",
        channels=["email"],
    )
    for channel in ("viber", "sms", "call_code"):
        ChannelRoute.objects.create(operator=sunrise, channel=channel, account=account)
    ChannelRoute.objects.create(operator=sunrise, channel="email", account=mail)
    client = make_client(
        sunrise, email="anna@example.com", first_name="Anna", allow_sms=True, allow_email=True
    )
    return {
        "operator": sunrise,
        "token": int(issued.secret),
        "credential": issued.credential,
        "account": account,
        "client": client,
    }


def auth(api) -> dict:
    return {"Operator": api["operator"].pk, "Token": api["token"]}


def post_json(client, url, body, **headers):
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def send(client, api, **fields):
    return post_json(client, SEND, {**auth(api), "CommunicationType": 1, **fields})


def answer(response) -> dict:
    if "xml" in response["Content-Type"]:
        return {
            child.tag.split("}")[1]: child.text
            for child in ElementTree.fromstring(response.content)
        }
    return json.loads(response.content)


# --- SendMessageProcess: one recipient ---------------------------------------------------


def test_it_queues_an_sms_to_a_client_and_answers_its_message_id(
    client, api, fresh_cache_and_no_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, api, Client=api["client"].pk, TextMessage="Hello {{ first_name }}")
    assert response.status_code == 200, response.content
    body = answer(response)
    assert list(body) == ["MessageId", "ErrorCode", "Message"]
    assert body["ErrorCode"] == 0 and body["Message"] == "OK"
    partner_send = PartnerSend.objects.get(pk=body["MessageId"])
    delivery = partner_send.message.deliveries.get()
    assert (delivery.channel, delivery.status) == ("sms", DeliveryStatus.QUEUED)
    assert delivery.account == api["account"] and delivery.next_attempt_at is not None
    assert partner_send.message.text == "Hello {{ first_name }}"
    assert partner_send.message.api_credential == api["credential"]
    assert fresh_cache_and_no_broker == [api["account"].pk]


@pytest.mark.parametrize(
    ("communication_type", "channel", "error_code"),
    [
        (1, "sms", 0),
        (2, "email", 0),
        (3, "push", 43),  # no push route in this operator
        (4, "telegram", 43),
        (5, "whatsapp", 43),
        (6, "viber", 0),
        (7, "call_code", 0),
    ],
)
def test_every_communication_type_maps_to_its_channel(
    client, api, communication_type, channel, error_code
):
    body = answer(
        send(
            client,
            api,
            Client=api["client"].pk,
            CommunicationType=communication_type,
            TextMessage="Hi",
        )
    )
    assert body["ErrorCode"] == error_code
    delivery = PartnerSend.objects.get(pk=body["MessageId"]).message.deliveries.get()
    assert delivery.channel == channel


@pytest.mark.parametrize("communication_type", [0, 8, 255])
def test_an_unknown_communication_type_is_refused_and_nothing_is_written(
    client, api, communication_type
):
    response = send(
        client, api, Client=api["client"].pk, CommunicationType=communication_type, TextMessage="x"
    )
    assert response.status_code == 400
    assert answer(response)["ErrorCode"] == 20
    assert not Message.objects.exists()


def test_a_communication_type_out_of_byte_range_is_a_validation_error(client, api):
    response = send(client, api, Client=api["client"].pk, CommunicationType=256, TextMessage="x")
    assert (response.status_code, answer(response)["ErrorCode"]) == (400, 1)
    assert "CommunicationType" in answer(response)["Message"]


def test_a_phone_finds_the_operators_client(client, api):
    body = answer(send(client, api, Phone=int(api["client"].phone), TextMessage="Hi"))
    assert body["ErrorCode"] == 0
    assert PartnerSend.objects.get(pk=body["MessageId"]).message.client == api["client"]


def test_a_phone_of_nobody_known_is_refused_for_promotions_but_recorded(client, api):
    response = send(client, api, Phone=79990001122, TextMessage="Hi")
    body = answer(response)
    assert (response.status_code, body["ErrorCode"]) == (422, 41)
    message = PartnerSend.objects.get(pk=body["MessageId"]).message
    assert message.status == Message.Status.SKIPPED
    assert message.deliveries.get().error_code == "no_client"


def test_a_call_code_to_a_stranger_is_a_service_message_and_goes(client, api):
    body = answer(send(client, api, Phone=79990001122, CommunicationType=7, TextMessage="1234"))
    assert body["ErrorCode"] == 0


def test_an_email_recipient_is_found_by_address(client, api):
    body = answer(
        send(client, api, Email="ANNA@example.com", CommunicationType=2, TextMessage="Hi")
    )
    assert body["ErrorCode"] == 0
    message = PartnerSend.objects.get(pk=body["MessageId"]).message
    assert message.client == api["client"] and message.email == "anna@example.com"


def test_person_is_read_as_a_client_id(client, api):
    body = answer(send(client, api, Person=api["client"].pk, TextMessage="Hi"))
    assert PartnerSend.objects.get(pk=body["MessageId"]).message.client == api["client"]


def test_a_lead_linked_to_a_consenting_client_gets_the_message(client, api):
    lead = Lead.objects.create(operator=api["operator"], phone="79123456789", client=api["client"])
    body = answer(send(client, api, Leads=lead.pk, TextMessage="Hi"))
    assert body["ErrorCode"] == 0


def test_a_lead_without_a_client_has_no_consent_on_record(client, api):
    lead = Lead.objects.create(operator=api["operator"], phone="79123450000")
    assert answer(send(client, api, Leads=lead.pk, TextMessage="Hi"))["ErrorCode"] == 41


def test_a_subscriber_is_reached_through_their_client(client, api):
    subscriber = Subscriber.objects.create(
        operator=api["operator"],
        messenger="viber",
        external_id="v1",
        client=api["client"],
        phone=api["client"].phone,
    )
    body = answer(
        send(client, api, Subscriber=subscriber.pk, CommunicationType=6, TextMessage="Hi")
    )
    assert body["ErrorCode"] == 0


def test_a_user_is_a_staff_member_reached_by_email_without_marketing_consent(client, api):
    user = make_staff("cashier", None, api["operator"])
    user.email = "cashier@example.com"
    user.save()
    body = answer(send(client, api, User=user.pk, CommunicationType=2, TextMessage="Shift"))
    assert body["ErrorCode"] == 0
    assert PartnerSend.objects.get(pk=body["MessageId"]).message.purpose == "service"


def test_a_chat_is_known_but_no_gateway_posts_to_groups(client, api):
    MessengerChat.objects.create(operator=api["operator"], messenger="telegram", chat_id=-1001)
    body = answer(send(client, api, ChatId=-1001, CommunicationType=4, TextMessage="News"))
    assert body["ErrorCode"] == 43


def test_no_recipient_at_all_is_a_clear_error(client, api):
    response = send(client, api, TextMessage="Hi")
    assert (response.status_code, answer(response)["ErrorCode"]) == (400, 21)


def test_no_text_and_no_template_is_a_clear_error(client, api):
    response = send(client, api, Client=api["client"].pk)
    assert (response.status_code, answer(response)["ErrorCode"]) == (400, 22)
    assert not Message.objects.exists()


def test_a_template_and_a_point_of_sale_are_used(client, api):
    template = MessageTemplate.objects.create(
        operator=api["operator"], name="T", text="Hi {{ first_name }} from {{ pos_name }}"
    )
    PointOfSale.objects.create(operator=api["operator"], code="S-7", name="Shop 7")
    body = answer(
        send(client, api, Client=api["client"].pk, MessageTemplate=template.pk, PosCode="S-7")
    )
    message = PartnerSend.objects.get(pk=body["MessageId"]).message
    assert message.template == template
    assert message.variables == {"pos_code": "S-7", "pos_name": "Shop 7"}


def test_files_are_kept_with_the_message(client, api):
    files = [
        {
            "Id": 1,
            "Url": "https://example.com/a.png",
            "Type": "image/png",
            "Name": "a",
            "LevelStep": 1,
        }
    ]
    body = answer(send(client, api, Client=api["client"].pk, TextMessage="Hi", Files=files))
    assert PartnerSend.objects.get(pk=body["MessageId"]).message.attachments == files


@pytest.mark.parametrize(
    ("flag", "communication_type"),
    [("allow_sms", 1), ("allow_sms", 6), ("allow_email", 2)],
)
def test_a_client_without_consent_is_refused_with_an_error_code_not_dropped(
    client, api, flag, communication_type
):
    Client.objects.filter(pk=api["client"].pk).update(**{flag: False})
    response = send(
        client, api, Client=api["client"].pk, CommunicationType=communication_type, TextMessage="Hi"
    )
    body = answer(response)
    assert (response.status_code, body["ErrorCode"]) == (422, 40)
    assert flag in body["Message"]
    delivery = PartnerSend.objects.get(pk=body["MessageId"]).message.deliveries.get()
    assert delivery.status == DeliveryStatus.SKIPPED and delivery.account is None


# --- CardPhoneClientList ---------------------------------------------------------------


def test_a_card_phone_client_list_becomes_a_running_campaign_with_bonuses(client, api):
    other = make_client(api["operator"], phone="79123450001")
    Card.objects.create(operator=api["operator"], client=other, number=5550001, bonus=10)
    rows = [
        {"Id": 1, "Phone": None, "Client": api["client"].pk, "Card": None, "Bonus": 150.0},
        {"Id": 2, "Phone": None, "Client": None, "Card": 5550001, "Bonus": 12.5},
        {"Id": 3, "Phone": 79990001122, "Client": None, "Card": None, "Bonus": None},
    ]
    body = answer(
        send(client, api, CardPhoneClientList=rows, TextMessage="You have {{ Bonus }} points")
    )
    assert body["ErrorCode"] == 0
    campaign = PartnerSend.objects.get(pk=body["MessageId"]).campaign
    assert campaign.state == Campaign.State.RUNNING and campaign.source == "api"
    assert campaign.channels == ["sms"] and campaign.template.text == "You have {{ Bonus }} points"
    entries = list(AudienceListEntry.objects.filter(campaign=campaign).order_by("pk"))
    assert [e.client_id for e in entries] == [api["client"].pk, other.pk, None]
    assert [e.variables.get("Bonus") for e in entries] == [150, 12.5, None]
    assert entries[2].phone == "79990001122"


def test_a_list_with_an_unknown_card_writes_nothing(client, api):
    rows = [{"Client": api["client"].pk, "Bonus": 1}, {"Card": 999}]
    response = send(client, api, CardPhoneClientList=rows, TextMessage="Hi")
    assert (response.status_code, answer(response)["ErrorCode"]) == (404, 30)
    assert "Card 999 not found" in answer(response)["Message"]
    assert not Campaign.objects.exists() and not AudienceListEntry.objects.exists()


# --- formats ---------------------------------------------------------------------------

SEND_XML = """<SendMessageProcessRequest xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Request.MarketingRequest">
  <Operator xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Abstractions">{operator}</Operator>
  <SiteCode i:nil="true" xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Abstractions" />
  <Token xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Abstractions">{token}</Token>
  <CardPhoneClientList i:nil="true" />
  <Client>{client}</Client>
  <CommunicationType>1</CommunicationType>
  <Files i:nil="true" />
  <TextMessage>Hello from XML</TextMessage>
</SendMessageProcessRequest>"""


def test_an_xml_request_gets_the_seed_shaped_xml_answer(client, api):
    body = SEND_XML.format(operator=api["operator"].pk, token=api["token"], client=api["client"].pk)
    response = client.post(SEND, data=body.encode(), content_type="text/xml")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    root = ElementTree.fromstring(response.content)
    assert root.tag == f"{{{MARKETING_RESPONSE}}}SendMessageProcessResponse"
    assert [child.tag for child in root] == [
        f"{{{ABSTRACTIONS}}}ErrorCode",
        f"{{{ABSTRACTIONS}}}Message",
        f"{{{MARKETING_RESPONSE}}}MessageId",
    ]
    assert root[0].text == "0"
    assert PartnerSend.objects.get(pk=int(root[2].text)).message.text == "Hello from XML"


def test_the_answer_follows_accept_before_the_request_format(client, api):
    body = {**auth(api), "CommunicationType": 1, "Client": api["client"].pk, "TextMessage": "Hi"}
    response = post_json(client, SEND, body, HTTP_ACCEPT="application/xml")
    assert response["Content-Type"].startswith("application/xml")
    assert ElementTree.fromstring(response.content)[0].text == "0"


def test_a_form_encoded_request_is_accepted(client, api):
    response = client.post(
        SEND,
        data=(
            f"Operator={api['operator'].pk}&Token={api['token']}&CommunicationType=1"
            f"&Client={api['client'].pk}&TextMessage=Hi+there"
            "&Files[0].Id=1&Files[0].Url=https%3A%2F%2Fexample.com%2Fa.png&Files[0].Type=image"
        ),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200, response.content
    message = PartnerSend.objects.get(pk=answer(response)["MessageId"]).message
    assert (
        message.text == "Hi there" and message.attachments[0]["Url"] == "https://example.com/a.png"
    )


def test_text_json_is_json(client, api):
    body = json.dumps(
        {**auth(api), "CommunicationType": 1, "Client": api["client"].pk, "TextMessage": "x"}
    )
    response = client.post(SEND, data=body, content_type="text/json; charset=utf-8")
    assert answer(response)["ErrorCode"] == 0
    assert response["Content-Type"].startswith("text/json")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error_code"),
    [
        (b'{"Operator": 1,', "application/json", 400, 2),
        (b"<SendMessageProcessRequest>", "application/xml", 400, 2),
        (b"\xff\xfe", "application/json", 400, 2),
        (b"hello", "text/plain", 415, 3),
        (b'{"Client": "abc"}', "application/json", 400, 1),
        (b"[1, 2]", "application/json", 400, 1),
    ],
)
def test_malformed_bodies_get_a_clear_answer_and_write_nothing(
    client, api, body, content_type, status, error_code
):
    response = client.post(SEND, data=body, content_type=content_type)
    assert response.status_code == status
    assert int(answer(response)["ErrorCode"]) == error_code
    assert answer(response)["Message"]
    assert not Message.objects.exists()


HOSTILE_XML = {
    "xxe": b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<SendMessageProcessRequest><TextMessage>&x;</TextMessage></SendMessageProcessRequest>""",
    "billion_laughs": b"""<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<SendMessageProcessRequest><TextMessage>&c;</TextMessage></SendMessageProcessRequest>""",
    "external_dtd": b"""<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd">
<SendMessageProcessRequest/>""",
}


@pytest.mark.parametrize("attack", sorted(HOSTILE_XML))
def test_hostile_xml_is_refused_and_nothing_written(client, api, attack):
    response = client.post(SEND, data=HOSTILE_XML[attack], content_type="application/xml")
    assert response.status_code == 400
    root = ElementTree.fromstring(response.content)
    assert root.find(f"{{{ABSTRACTIONS}}}ErrorCode").text == "2"
    assert not Message.objects.exists()


def test_an_oversized_body_is_refused_before_it_is_read(client, api, settings):
    settings.CASCADE_API_MAX_BODY_BYTES = 2048
    body = {
        **auth(api),
        "CommunicationType": 1,
        "Client": api["client"].pk,
        "TextMessage": "x" * 4000,
    }
    response = post_json(client, SEND, body)
    assert (response.status_code, answer(response)["ErrorCode"]) == (413, 4)
    assert not Message.objects.exists()


def test_get_is_not_allowed_on_send(client, api):
    response = client.get(SEND)
    assert (response.status_code, answer(response)["ErrorCode"]) == (405, 5)


def test_an_unexpected_failure_answers_10_and_writes_nothing(client, api, monkeypatch):
    def explode(**kwargs):
        Message.objects.create(operator=api["operator"], recipient_key="half")
        raise RuntimeError("boom")

    monkeypatch.setattr(partner, "send_message_process", explode)
    client.raise_request_exception = False
    response = send(client, api, Client=api["client"].pk, TextMessage="Hi")
    assert (response.status_code, answer(response)["ErrorCode"]) == (500, 10)
    assert "boom" not in answer(response)["Message"]
    assert not Message.objects.exists()


# --- authentication, tenancy, throttling -----------------------------------------------


def test_missing_credentials_are_401(client, api):
    response = post_json(client, SEND, {"CommunicationType": 1, "Client": api["client"].pk})
    assert (response.status_code, answer(response)["ErrorCode"]) == (401, 11)


def test_a_wrong_token_is_401(client, api):
    response = post_json(client, SEND, {**auth(api), "Token": api["token"] + 1, "Client": 1})
    assert (response.status_code, answer(response)["ErrorCode"]) == (401, 12)


def test_a_token_with_another_operator_is_401(client, api, northwind):
    response = post_json(client, SEND, {**auth(api), "Operator": northwind.pk, "Client": 1})
    assert (response.status_code, answer(response)["ErrorCode"]) == (401, 12)


def test_a_revoked_token_is_refused_at_once(client, api):
    revoke_credential(credential_id=api["credential"].pk)
    response = send(client, api, Client=api["client"].pk, TextMessage="Hi")
    assert (response.status_code, answer(response)["ErrorCode"]) == (403, 13)


def test_a_site_code_authenticates_a_widget(client, api):
    issued = issue_credential(
        operator=api["operator"], name="Widget", kind=ApiCredential.Kind.SITE_CODE
    )
    body = {
        "SiteCode": issued.secret,
        "CommunicationType": 1,
        "Client": api["client"].pk,
        "TextMessage": "x",
    }
    assert answer(post_json(client, SEND, body))["ErrorCode"] == 0


def test_guessing_tokens_is_throttled_per_address(client, api, settings):
    settings.CASCADE_API_AUTH_FAILURES = 3
    for _ in range(3):
        assert post_json(client, SEND, {**auth(api), "Token": 1}).status_code == 401
    response = send(client, api, Client=api["client"].pk, TextMessage="Hi")
    assert (response.status_code, answer(response)["ErrorCode"]) == (429, 14)
    assert response["Retry-After"] == "60"


def test_a_credential_over_its_rate_gets_429(client, api, settings):
    settings.CASCADE_API_REQUESTS_PER_MINUTE = 2
    codes_seen = [
        answer(send(client, api, Client=api["client"].pk, TextMessage=f"Hi {n}"))["ErrorCode"]
        for n in range(3)
    ]
    assert codes_seen == [0, 0, 14]


@pytest.fixture
def northwind_things(northwind):
    stranger = make_client(northwind, phone="79000000001", allow_sms=True)
    return {
        "Client": stranger.pk,
        "MessageTemplate": MessageTemplate.objects.create(
            operator=northwind, name="N", text="x"
        ).pk,
        "PosCode": PointOfSale.objects.create(operator=northwind, code="N-1", name="N").code,
        "Leads": Lead.objects.create(operator=northwind, phone="79000000002").pk,
        "Subscriber": Subscriber.objects.create(
            operator=northwind, messenger="viber", external_id="n"
        ).pk,
        "User": make_staff("nina", None, northwind).pk,
        "Person": stranger.pk,
    }


@pytest.mark.parametrize(
    "field", ["Client", "MessageTemplate", "PosCode", "Leads", "Subscriber", "User", "Person"]
)
def test_another_operators_ids_are_not_found_and_nothing_is_written(
    client, api, northwind_things, field
):
    fields = {"TextMessage": "Hi", field: northwind_things[field]}
    if field in ("MessageTemplate", "PosCode"):
        fields["Client"] = api["client"].pk
    response = send(client, api, **fields)
    assert (response.status_code, answer(response)["ErrorCode"]) == (404, 30)
    assert "not found" in answer(response)["Message"]
    assert not Message.objects.exists() and not PartnerSend.objects.exists()


def test_another_operators_card_in_a_list_is_not_found(client, api, northwind):
    Card.objects.create(operator=northwind, number=7770001)
    response = send(client, api, CardPhoneClientList=[{"Card": 7770001}], TextMessage="Hi")
    assert (response.status_code, answer(response)["ErrorCode"]) == (404, 30)
    assert not Campaign.objects.exists()


# --- safe retries ----------------------------------------------------------------------


def test_an_identical_retry_within_a_minute_gets_the_same_message_id(client, api):
    first = answer(send(client, api, Client=api["client"].pk, TextMessage="Once"))
    again = answer(send(client, api, Client=api["client"].pk, TextMessage="Once"))
    assert first == again
    assert Message.objects.count() == 1 and Delivery.objects.count() == 1


def test_the_same_request_in_xml_counts_as_the_same_retry(client, api):
    first = answer(send(client, api, Client=api["client"].pk, TextMessage="Hello from XML"))
    body = SEND_XML.format(operator=api["operator"].pk, token=api["token"], client=api["client"].pk)
    response = client.post(
        SEND, data=body.encode(), content_type="application/xml", HTTP_ACCEPT="application/json"
    )
    assert answer(response)["MessageId"] == first["MessageId"]


def test_a_retry_after_the_window_is_a_new_message(client, api):
    first = answer(send(client, api, Client=api["client"].pk, TextMessage="Twice"))
    PartnerSend.objects.filter(pk=first["MessageId"]).update(
        created_at=PartnerSend.objects.get(pk=first["MessageId"]).created_at - timedelta(seconds=61)
    )
    second = answer(send(client, api, Client=api["client"].pk, TextMessage="Twice"))
    assert second["MessageId"] != first["MessageId"]


def test_a_refused_retry_is_refused_the_same_way(client, api):
    Client.objects.filter(pk=api["client"].pk).update(allow_sms=False)
    first = answer(send(client, api, Client=api["client"].pk, TextMessage="No"))
    again = answer(send(client, api, Client=api["client"].pk, TextMessage="No"))
    assert first == again and first["ErrorCode"] == 40


# --- ClientUpdateCommunication -----------------------------------------------------------


def update(client, api, **fields):
    return post_json(client, UPDATE, {**auth(api), "Client": api["client"].pk, **fields})


def test_it_changes_only_the_flags_given_and_records_them_as_api(client, api):
    response = update(client, api, AllowSms=False, AllowPush=True)
    assert response.status_code == 200
    assert answer(response) == {"ErrorCode": 0, "Message": "OK"}
    fresh = Client.objects.get(pk=api["client"].pk)
    assert (fresh.allow_sms, fresh.allow_email, fresh.allow_push) == (False, True, True)
    history = ConsentChange.objects.filter(client=fresh).order_by("flag")
    assert [(h.flag, h.old_value, h.new_value, h.source) for h in history] == [
        ("allow_push", False, True, "api"),
        ("allow_sms", True, False, "api"),
    ]
    assert {h.api_credential_id for h in history} == {api["credential"].pk}


UPDATE_XML = """<ClientUpdateCommunicationRequest xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Models"> <Operator xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Abstractions">{operator}</Operator> <SiteCode i:nil="true" xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Abstractions"/> <Token xmlns="http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Abstractions">{token}</Token> <AllowEmail>false</AllowEmail> <AllowEmailOnlineCheque>true</AllowEmailOnlineCheque> <AllowPush i:nil="true"/> <AllowSms i:nil="true"/> <Client>{client}</Client> </ClientUpdateCommunicationRequest>"""


def test_an_xml_update_answers_in_the_models_namespace(client, api):
    body = UPDATE_XML.format(
        operator=api["operator"].pk, token=api["token"], client=api["client"].pk
    )
    response = client.post(UPDATE, data=body.encode(), content_type="application/xml")
    assert response.status_code == 200, response.content
    root = ElementTree.fromstring(response.content)
    assert root.tag == f"{{{MODELS}}}ClientUpdateCommunicationResponse"
    assert [c.tag for c in root] == [f"{{{MODELS}}}ErrorCode", f"{{{MODELS}}}Message"]
    fresh = Client.objects.get(pk=api["client"].pk)
    assert (fresh.allow_email, fresh.allow_email_online_cheque, fresh.allow_sms) == (
        False,
        True,
        True,
    )


def test_a_form_update_is_accepted(client, api):
    response = client.post(
        UPDATE,
        data=f"Operator={api['operator'].pk}&Token={api['token']}&Client={api['client'].pk}&AllowSms=false",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer(response)["ErrorCode"] == 0
    assert not Client.objects.get(pk=api["client"].pk).allow_sms


def test_another_operators_client_is_not_found_and_unchanged(client, api, northwind):
    stranger = make_client(northwind, phone="79000000001", allow_sms=True)
    response = post_json(client, UPDATE, {**auth(api), "Client": stranger.pk, "AllowSms": False})
    assert (response.status_code, answer(response)["ErrorCode"]) == (404, 30)
    assert Client.objects.get(pk=stranger.pk).allow_sms
    assert not ConsentChange.objects.exists()


def test_a_non_boolean_flag_is_a_validation_error(client, api):
    response = update(client, api, AllowSms="maybe")
    assert (response.status_code, answer(response)["ErrorCode"]) == (400, 1)
    assert "AllowSms" in answer(response)["Message"]


# --- status extension ------------------------------------------------------------------


def test_the_status_of_a_message_lists_its_steps(client, api):
    sent = answer(send(client, api, Client=api["client"].pk, TextMessage="Hi"))
    response = client.get(STATUS, {**auth(api), "MessageId": sent["MessageId"]})
    body = answer(response)
    assert body["ErrorCode"] == 0 and body["Status"] == "in_progress"
    assert [(s["Channel"], s["Status"]) for s in body["Steps"]] == [("sms", "queued")]


def test_the_status_of_a_list_gives_totals(client, api):
    sent = answer(
        send(client, api, CardPhoneClientList=[{"Client": api["client"].pk}], TextMessage="Hi")
    )
    body = answer(client.get(STATUS, {**auth(api), "MessageId": sent["MessageId"]}))
    assert body["Status"] == "running" and body["Totals"] == []


def test_the_status_of_another_operators_message_is_not_found(client, api, northwind):
    other = issue_credential(operator=northwind, name="N")
    sent = answer(send(client, api, Client=api["client"].pk, TextMessage="Hi"))
    response = client.get(
        STATUS, {"Operator": northwind.pk, "Token": other.secret, "MessageId": sent["MessageId"]}
    )
    assert (response.status_code, answer(response)["ErrorCode"]) == (404, 30)


# --- the table and the command ---------------------------------------------------------


def test_error_codes_are_unique_and_the_readme_table_is_current():
    numbers = [error.code for error in codes.ALL]
    assert len(numbers) == len(set(numbers))
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert codes.markdown_table() in readme


def test_issue_token_prints_a_working_token(client, api, capsys):
    call_command("issue_token", operator=api["operator"].pk)
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.split())
    body = {
        "Operator": int(lines["Operator"]),
        "Token": int(lines["Token"]),
        "Client": api["client"].pk,
    }
    assert answer(post_json(client, UPDATE, body))["ErrorCode"] == 0


def test_issue_token_can_make_a_site_code(api, capsys):
    call_command("issue_token", operator=api["operator"].pk, site_code=True)
    assert "SiteCode=" in capsys.readouterr().out
    assert ApiCredential.objects.filter(kind="site_code").count() == 1


def test_decimal_bonus_survives_as_a_number(client, api):
    send(
        client,
        api,
        CardPhoneClientList=[{"Client": api["client"].pk, "Bonus": "99.50"}],
        TextMessage="x",
    )
    assert AudienceListEntry.objects.get().variables["Bonus"] == 99.5
    assert Decimal("99.5") == Decimal(str(AudienceListEntry.objects.get().variables["Bonus"]))


# --- query counts ----------------------------------------------------------------------


def queries_of(call) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured.captured_queries)


def test_a_send_costs_a_fixed_number_of_queries(client, api):
    send(client, api, Client=api["client"].pk, TextMessage="warm-up")  # last_used_at, once a minute
    counts = {
        queries_of(lambda n=n: send(client, api, Client=api["client"].pk, TextMessage=f"n{n}"))
        for n in range(3)
    }
    assert len(counts) == 1 and counts.pop() <= 12


def test_a_list_costs_the_same_queries_for_10_rows_as_for_500(client, api, sunrise):
    clients = Client.objects.bulk_create(
        Client(operator=sunrise, phone=f"7912{n:07d}", allow_sms=True) for n in range(500)
    )
    send(client, api, Client=api["client"].pk, TextMessage="warm-up")

    def list_of(size):
        rows = [{"Client": c.pk, "Bonus": n} for n, c in enumerate(clients[:size])]
        return lambda: send(client, api, CardPhoneClientList=rows, TextMessage=f"{size}")

    assert queries_of(list_of(10)) == queries_of(list_of(500))


# --- the seed samples, byte for byte ---------------------------------------------------


@pytest.fixture
def seed_world(db):
    """The ids the samples (config/lcmanager/samples) name, so their bytes go through unchanged."""
    from clients.models import Operator
    from clients.services import digest_secret

    operator = Operator.objects.create(pk=3, name="Seed operator", code="seed")
    ApiCredential.objects.create(
        operator=operator,
        name="Seed POS",
        secret_digest=digest_secret("123456789012345678"),
        secret_hint="5678",
    )
    account = ProviderAccount.objects.create(
        operator=operator, name="Gateway", backend="cascade_gateway", channels=["sms"]
    )
    ChannelRoute.objects.create(operator=operator, channel="sms", account=account)
    for pk, phone, card in (
        (104857, "79161234567", 2200123456789012),
        (104858, "79037654321", 2200123456789013),
    ):
        person = Client.objects.create(pk=pk, operator=operator, phone=phone, allow_sms=True)
        Card.objects.create(operator=operator, client=person, number=card)
    PointOfSale.objects.create(operator=operator, code="MSK-014", name="Moscow 14")
    MessageTemplate.objects.create(pk=312, operator=operator, name="Spring", text="{{ Bonus }}")
    return operator


SAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "config/lcmanager/samples"


@pytest.mark.parametrize(
    ("sample", "content_type"),
    [
        ("send_message_process_request.json", "application/json"),
        ("send_message_process_request.xml", "text/xml"),
    ],
)
def test_the_seed_send_sample_is_accepted_as_is(client, seed_world, sample, content_type):
    response = client.post(SEND, data=(SAMPLES / sample).read_bytes(), content_type=content_type)
    assert response.status_code == 200, response.content
    body = answer(response)
    assert int(body["ErrorCode"]) == 0
    campaign = PartnerSend.objects.get(pk=int(body["MessageId"])).campaign
    assert campaign.template_id == 312
    bonuses = sorted(e.variables["Bonus"] for e in campaign.list_entries.all())
    assert bonuses == [0, 150.5]


@pytest.mark.parametrize(
    ("sample", "content_type"),
    [
        ("client_update_communication_request.json", "application/json"),
        ("client_update_communication_request.xml", "application/xml"),
    ],
)
def test_the_seed_update_sample_is_accepted_as_is(client, seed_world, sample, content_type):
    response = client.post(UPDATE, data=(SAMPLES / sample).read_bytes(), content_type=content_type)
    assert response.status_code == 200, response.content
    assert int(answer(response)["ErrorCode"]) == 0
    fresh = Client.objects.get(pk=104857)
    assert (fresh.allow_sms, fresh.allow_email, fresh.allow_push) == (True, False, True)


def test_a_ten_megabyte_body_is_413_in_the_requests_format(client, api):
    body = (
        b"<SendMessageProcessRequest>" + b" " * (10 * 1024 * 1024) + b"</SendMessageProcessRequest>"
    )
    response = client.post(SEND, data=body, content_type="application/xml")
    assert response.status_code == 413
    assert int(answer(response)["ErrorCode"]) == 4
    assert not Message.objects.exists()


def test_a_full_size_list_in_xml_fits_the_default_limit(client, api, sunrise):
    people = Client.objects.bulk_create(
        Client(operator=sunrise, phone=f"7912{n:07d}", allow_sms=True) for n in range(10_000)
    )
    item = (
        "<SendMessageProcessRequest.SendMessageProcessCardPhoneClientList><Bonus>{bonus}</Bonus>"
        '<Card i:nil="true"/><Client>{client}</Client><Id>{n}</Id><Phone i:nil="true"/>'
        "</SendMessageProcessRequest.SendMessageProcessCardPhoneClientList>"
    )
    rows = "".join(item.format(bonus=n % 500, client=p.pk, n=n) for n, p in enumerate(people))
    body = SEND_XML.format(
        operator=api["operator"].pk, token=api["token"], client=api["client"].pk
    ).replace(
        '<CardPhoneClientList i:nil="true" />', f"<CardPhoneClientList>{rows}</CardPhoneClientList>"
    )
    assert len(body) > 2_000_000
    response = client.post(SEND, data=body.encode(), content_type="application/xml")
    assert response.status_code == 200, response.content[:300]
    assert AudienceListEntry.objects.count() == 10_000


# --- The hot path's cost: issue 15 ---------------------------------------------------------


def test_a_single_send_takes_a_fixed_few_statements_whatever_its_text(
    client, api, django_assert_num_queries
):
    send(client, api, Phone=api["client"].phone, TextMessage="warm")  # last_used_at, routes read
    # The view's transaction is a savepoint inside the test's: SAVEPOINT and RELEASE, then
    # the credential, the retry lock, the recipient and one INSERT of all three rows.
    for text in ("short", "a much longer text " * 20):
        with django_assert_num_queries(6) as captured:
            response = send(client, api, Phone=api["client"].phone, TextMessage=text)
        assert answer(response)["ErrorCode"] == 0
        statements = [query["sql"].split()[0].upper() for query in captured.captured_queries]
        assert statements == ["SAVEPOINT", "SELECT", "SELECT", "SELECT", "WITH", "RELEASE"]
    message = Message.objects.latest("pk")
    delivery = message.deliveries.get()
    assert message.text == "a much longer text " * 20
    assert delivery.idempotency_key == str(message.pk * 100)
    assert message.partner_send.request_digest and message.partner_send.api_credential_id


def test_a_route_change_is_seen_by_the_next_send_in_the_same_process(client, api):
    assert answer(send(client, api, Client=api["client"].pk, TextMessage="a"))["ErrorCode"] == 0
    ChannelRoute.objects.get(operator=api["operator"], channel="sms").delete()
    body = answer(send(client, api, Client=api["client"].pk, TextMessage="b"))
    assert body["ErrorCode"] == codes.NO_ROUTE.code


def test_an_identical_retry_after_the_one_statement_insert_gets_the_first_answer(client, api):
    first = answer(send(client, api, Client=api["client"].pk, TextMessage="once"))
    again = answer(send(client, api, Client=api["client"].pk, TextMessage="once"))
    assert again == first
    assert Message.objects.filter(text="once").count() == 1


def test_a_consent_update_takes_the_credential_the_locked_client_and_two_writes(
    client, api, django_assert_num_queries
):
    update(client, api, AllowSms=False)  # last_used_at, once a minute
    # The test's own transaction makes change_consent's a savepoint (BEGIN and COMMIT
    # when served): the credential, then the client locked inside its operator, its
    # flags and their history.
    with django_assert_num_queries(6) as captured:
        body = answer(update(client, api, AllowSms=True, AllowEmail=False))
    assert body["ErrorCode"] == 0
    statements = [query["sql"].split()[0].upper() for query in captured.captured_queries]
    assert statements == ["SELECT", "SAVEPOINT", "SELECT", "UPDATE", "INSERT", "RELEASE"]
    api["client"].refresh_from_db()
    assert (api["client"].allow_sms, api["client"].allow_email) == (True, False)
