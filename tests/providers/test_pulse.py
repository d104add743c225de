"""The 1-pulse backend on its own: exact requests, answers, errors and status maps.

HTTP goes through a recording transport adapter mounted on the backend's own
session, so what is checked is what requests really puts on the wire.
"""

import json
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import RequestFactory
from requests.adapters import BaseAdapter

from providers.backends.pulse import (
    KANNEL_STATUS_MAP,
    STATUS_MAP,
    Backend,
    classify_error,
)
from providers.base import ConfigurationError, OutgoingMessage, ProviderError, ProviderRef
from providers.status import DeliveryStatus

FIXTURES = Path(__file__).parent / "fixtures" / "pulse"
BASE_URL = "http://pulse.test/api/v1"
CALLBACK = "https://cascade.example.com/providers/webhooks/pulse/3/s3cret/"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8").strip()


class FakeGateway(BaseAdapter):
    """Answers requests with canned (status, body) pairs and keeps the requests."""

    def __init__(self, *answers):
        super().__init__()
        self.answers = list(answers)
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        status, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = body.encode("utf-8")
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass

    @property
    def form(self) -> dict[str, str]:
        """The last request's parameters (body for POST, query for GET), one value each."""
        request = self.requests[-1]
        if request.method == "POST":
            raw = request.body if isinstance(request.body, str) else request.body.decode()
        else:
            raw = urlsplit(request.url).query
        parsed = parse_qs(raw, keep_blank_values=True)
        assert all(len(values) == 1 for values in parsed.values())
        return {name: values[0] for name, values in parsed.items()}


def make_account(**options):
    return SimpleNamespace(
        pk=None,
        name="Pulse",
        base_url=BASE_URL,
        credentials={"token": "tok-123"},
        sender_names={"sms": "SunriseMkt", "viber": "SunriseV", "email": "news@sunrise.example"},
        channels=list(Backend.channels),
        options=options,
        max_batch=500,
        timeout_seconds=5,
        callback_secrets=["s3cret"],
    )


def backend_with(*answers, **options):
    backend = Backend(make_account(**options))
    gateway = FakeGateway(*answers)
    backend.session.mount("http://", gateway)
    return backend, gateway


def message(index=1, **fields):
    values = {
        "delivery_id": index,
        "idempotency_key": f"k{index}",
        "channel": "sms",
        "phone": f"7916123456{index}",
        "email": f"client{index}@example.com",
        "text": "Ваш код: 4821",
        "callback_url": CALLBACK,
    }
    values.update(fields)
    return OutgoingMessage(**values)


SUCCESS = (200, '{"type":"success","id":5214896}')


# ---- request shapes ----
def test_one_message_is_posted_form_encoded_to_send_message():
    backend, gateway = backend_with(SUCCESS)
    backend.send([message()])
    request = gateway.requests[0]
    assert (request.method, request.url) == ("POST", f"{BASE_URL}/bulk/send-message")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert gateway.form == {
        "token": "tok-123",
        "charset": "UTF-8",
        "type": "sms",
        "sender": "SunriseMkt",
        "sent_to": "79161234561",
        "sent_text": "Ваш код: 4821",
        "ttl": "1440",
        "callback": f"{CALLBACK}?id={{id}}&status={{status}}&key=k1",
    }


def test_the_callback_template_keeps_its_braces_url_encoded_on_the_wire():
    backend, gateway = backend_with(SUCCESS)
    backend.send([message()])
    body = gateway.requests[0].body
    assert "%3Fid%3D%7Bid%7D%26status%3D%7Bstatus%7D%26key%3Dk1" in body
    assert "sent_text=%D0%92%D0%B0%D1%88" in body  # UTF-8, as charset=UTF-8 says


def test_the_get_option_puts_every_parameter_in_the_query_string():
    backend, gateway = backend_with(SUCCESS, method="GET")
    backend.send([message()])
    request = gateway.requests[0]
    assert request.method == "GET" and request.body is None
    assert urlsplit(request.url).path == "/api/v1/bulk/send-message"
    assert gateway.form["sent_to"] == "79161234561"
    assert gateway.form["callback"] == f"{CALLBACK}?id={{id}}&status={{status}}&key=k1"


def test_a_callback_url_with_a_query_gets_the_template_after_an_ampersand():
    backend, gateway = backend_with(SUCCESS)
    backend.send([message(callback_url="https://x.example/cb?acc=3")])
    assert gateway.form["callback"] == "https://x.example/cb?acc=3&id={id}&status={status}&key=k1"


def test_no_callback_url_means_no_callback_parameter():
    backend, gateway = backend_with(SUCCESS)
    backend.send([message(callback_url="")])
    assert "callback" not in gateway.form


def test_kannel_statuses_are_asked_for_and_marked_in_the_callback():
    backend, gateway = backend_with(SUCCESS, kannel_status=True)
    backend.send([message()])
    assert gateway.form["kannel_status"] == "1"
    assert gateway.form["callback"].endswith("&key=k1&kannel=1")


def test_no_send_date_is_sent_the_engine_dispatches_on_time():
    backend, gateway = backend_with(SUCCESS)
    backend.send([message()])
    assert "sent_date" not in gateway.form


def test_viber_carries_button_action_and_image_and_sms_does_not():
    rich = {
        "button_caption": "Подробнее",
        "button_url": "https://shop.example/sale",
        "image_url": "https://shop.example/sale.png",
    }
    backend, gateway = backend_with(SUCCESS, SUCCESS)
    backend.send([message(channel="viber", ttl_minutes=60, **rich)])
    viber = gateway.form
    backend.send([message(channel="sms", **rich)])
    sms = gateway.form
    assert (viber["type"], viber["sender"], viber["ttl"]) == ("viber", "SunriseV", "60")
    assert (viber["button"], viber["action"], viber["image"]) == (
        "Подробнее",
        "https://shop.example/sale",
        "https://shop.example/sale.png",
    )
    assert not {"button", "action", "image"} & set(sms)


def test_email_goes_to_the_address_with_its_html():
    backend, gateway = backend_with(SUCCESS)
    backend.send([message(channel="email", text="Plain", html="<p>HTML</p>")])
    form = gateway.form
    assert (form["type"], form["sender"], form["sent_to"]) == (
        "email",
        "news@sunrise.example",
        "client1@example.com",
    )
    assert (form["sent_text"], form["html_text"]) == ("Plain", "<p>HTML</p>")


def test_push_tokens_are_joined_with_commas():
    backend, gateway = backend_with(SUCCESS)
    backend.send([message(channel="push", push_tokens=["tA", "tB"], html="<b>x</b>")])
    assert (gateway.form["sent_to"], gateway.form["html_text"]) == ("tA,tB", "<b>x</b>")
    assert "find_token" not in gateway.form


def test_push_without_tokens_uses_the_phone_and_find_token_when_the_account_says_so():
    backend, gateway = backend_with(SUCCESS, find_token=True)
    backend.send([message(channel="push")])
    assert (gateway.form["sent_to"], gateway.form["find_token"]) == ("79161234561", "1")


def test_a_message_without_an_address_fails_without_a_request():
    backend, gateway = backend_with()
    results = backend.send([message(channel="push"), message(2, channel="sms", phone="")])
    assert [(r.accepted, r.error_code, r.permanent) for r in results] == [
        (False, "no_address", True),
        (False, "no_address", True),
    ]
    assert gateway.requests == []


def test_a_cascade_goes_as_type_bulk_to_the_scenario_mailing():
    backend, gateway = backend_with(SUCCESS, bulk_sender="4711")
    assert backend.supports_native_cascade is True
    assert Backend.supports_native_cascade is False
    backend.send(
        [
            message(
                channel="viber",
                fallback_channels=["sms"],
                button_caption="Go",
                button_url="https://g.example",
            )
        ]
    )
    form = gateway.form
    assert (form["type"], form["sender"], form["sent_to"]) == ("bulk", "4711", "79161234561")
    assert (form["button"], form["action"]) == ("Go", "https://g.example")


def test_without_a_scenario_number_fallback_channels_are_left_to_the_engine():
    backend, gateway = backend_with(SUCCESS)
    assert backend.supports_native_cascade is False
    backend.send([message(channel="viber", fallback_channels=["sms"])])
    assert (gateway.form["type"], gateway.form["sender"]) == ("viber", "SunriseV")


def test_a_bulk_sender_that_is_not_a_number_is_a_configuration_error():
    backend, _gateway = backend_with(SUCCESS, bulk_sender="Shop")
    with pytest.raises(ConfigurationError, match="bulk_sender"):
        backend.send([message(fallback_channels=["sms"])])


def test_a_missing_token_is_a_configuration_error():
    backend, _gateway = backend_with(SUCCESS)
    backend.account.credentials = {}
    with pytest.raises(ConfigurationError, match="token"):
        backend.send([message()])


def test_several_messages_go_as_one_json_list():
    answer = fixture("answer-list.json")
    backend, gateway = backend_with((200, answer))
    backend.send(
        [
            message(1),
            message(2, callback_url=""),
            message(3, channel="email", text="Plain", html="<p>H</p>"),
        ]
    )
    request = gateway.requests[0]
    assert (request.method, request.url) == ("POST", f"{BASE_URL}/bulk/send-list-messages")
    form = gateway.form
    items = json.loads(form.pop("messages"))
    assert form == {"token": "tok-123", "charset": "UTF-8", "type": "sms", "sender": "SunriseMkt"}
    assert items == [
        {
            "sent_to": "79161234561",
            "sent_text": "Ваш код: 4821",
            "ttl": 1440,
            "callback": f"{CALLBACK}?id={{id}}&status={{status}}&key=k1",
        },
        {
            "sent_to": "79161234562",
            "sent_text": "Ваш код: 4821",
            "ttl": 1440,
        },
        {
            "type": "email",
            "sender": "news@sunrise.example",
            "sent_to": "client3@example.com",
            "sent_text": "Plain",
            "html_text": "<p>H</p>",
            "ttl": 1440,
            "callback": f"{CALLBACK}?id={{id}}&status={{status}}&key=k3",
        },
    ]


def test_the_list_answer_is_read_item_by_item_in_order():
    backend, _gateway = backend_with((200, fixture("answer-list.json")))
    results = backend.send([message(1), message(2), message(3)])
    assert [(r.delivery_id, r.accepted, r.provider_message_id) for r in results] == [
        (1, True, "5214897"),
        (2, False, ""),
        (3, True, "5214898"),
    ]
    refused = results[1]
    assert (refused.status, refused.error_code, refused.permanent) == (
        DeliveryStatus.REJECTED,
        "invalid_recipient",
        True,
    )
    assert "7903" in refused.error_message and "7903" in refused.raw


def test_addressless_messages_are_left_out_of_the_list_and_keep_their_place():
    answer = '{"type":"success","messages":[{"type":"success","id":1},{"type":"success","id":3}]}'
    backend, gateway = backend_with((200, answer))
    results = backend.send([message(1), message(2, phone=""), message(3)])
    assert len(json.loads(gateway.form["messages"])) == 2
    assert [(r.accepted, r.provider_message_id, r.error_code) for r in results] == [
        (True, "1", ""),
        (False, "", "no_address"),
        (True, "3", ""),
    ]


# ---- answers and errors ----
def test_the_seed_success_answer_is_an_accepted_sent_result():
    backend, _gateway = backend_with((200, fixture("answer-success.json")))
    result = backend.send([message()])[0]
    assert (result.accepted, result.provider_message_id, result.status) == (
        True,
        "5214896",
        DeliveryStatus.SENT,
    )
    assert result.raw == fixture("answer-success.json")


def test_a_success_without_an_id_is_still_accepted_so_it_is_not_resent():
    backend, _gateway = backend_with((200, '{"type":"success"}'))
    result = backend.send([message()])[0]
    assert (result.accepted, result.provider_message_id) == (True, "")


def test_an_invalid_token_answer_fails_the_whole_request_permanently():
    backend, _gateway = backend_with((200, fixture("answer-error-token.json")))
    with pytest.raises(ProviderError) as error:
        backend.send([message()])
    assert (error.value.permanent, error.value.code) == (True, "invalid_token")
    assert "Invalid token" in str(error.value)


def test_an_invalid_recipient_answer_fails_that_recipient_permanently():
    backend, _gateway = backend_with((200, fixture("answer-error-recipient.json")))
    result = backend.send([message()])[0]
    assert (result.accepted, result.permanent, result.error_code) == (
        False,
        True,
        "invalid_recipient",
    )


def test_a_throttling_answer_is_a_transient_error():
    backend, _gateway = backend_with((200, '{"type":"error","msg":"Too many requests"}'))
    with pytest.raises(ProviderError) as error:
        backend.send([message()])
    assert (error.value.permanent, error.value.code) == (False, "throttled")


def test_an_error_answer_to_a_list_fails_the_whole_list():
    answer = '{"type":"error","msg":"Invalid recipient"}'
    backend, _gateway = backend_with((200, answer))
    with pytest.raises(ProviderError) as error:
        backend.send([message(1), message(2)])
    assert error.value.permanent is True


@pytest.mark.parametrize("status", [401, 403])
def test_http_401_and_403_are_permanent(status):
    backend, _gateway = backend_with((status, "Forbidden"))
    with pytest.raises(ProviderError) as error:
        backend.send([message()])
    assert (error.value.permanent, error.value.status_code) == (True, status)


@pytest.mark.parametrize(
    ("status", "body", "permanent"),
    [
        (500, "Internal Server Error", False),
        (429, "slow down", False),
        (200, "<html><body>Bad Gateway</body></html>", False),
        (200, '{"type":"succ', False),
        (200, '{"id": 5}', False),
        (404, "<html>Not found</html>", True),
    ],
)
def test_broken_answers_map_to_the_right_kind_of_error(status, body, permanent):
    backend, _gateway = backend_with((status, body))
    with pytest.raises(ProviderError) as error:
        backend.send([message()])
    assert error.value.permanent is permanent


def test_a_list_answer_with_the_wrong_number_of_entries_is_transient():
    answer = '{"type":"success","messages":[{"type":"success","id":1}]}'
    backend, _gateway = backend_with((200, answer))
    with pytest.raises(ProviderError) as error:
        backend.send([message(1), message(2)])
    assert error.value.permanent is False


@pytest.mark.parametrize(
    ("msg", "code", "kind"),
    [
        ("Invalid token", "invalid_token", "account"),
        ("Token is required", "invalid_token", "account"),
        ("Unknown message type: fax", "invalid_type", "account"),
        ("Scenario mailing not found: 9", "invalid_scenario", "account"),
        ("Unsupported charset: KOI8-R", "invalid_charset", "account"),
        ("Field messages must be a JSON array of messages", "invalid_list", "account"),
        ("Insufficient balance", "no_balance", "account"),
        ("Too many requests", "throttled", "transient"),
        ("Service temporarily unavailable", "try_again", "transient"),
        ("Invalid recipient for type sms: 12", "invalid_recipient", "message"),
        ("Field sent_to is required", "invalid_recipient", "message"),
        ("Field sent_text is required", "no_text", "message"),
        ("Invalid sent_date, expected YYYY-MM-DD HH:MM", "invalid_date", "message"),
        ("Field ttl must be an integer number of minutes", "invalid_ttl", "message"),
        ("Viber text is longer than 1000 characters", "too_long", "message"),
        ("Field button requires action (the button's URL)", "invalid_button", "message"),
        ("Something new went wrong", "error", "message"),
    ],
)
def test_error_texts_are_classified(msg, code, kind):
    assert classify_error(msg)[0::2] == (code, kind)


# ---- statuses ----
@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("new", DeliveryStatus.SENT),
        ("queued", DeliveryStatus.SENT),
        ("scheduled", DeliveryStatus.SENT),
        ("sending", DeliveryStatus.SENT),
        ("sent", DeliveryStatus.SENT),
        ("delivered", DeliveryStatus.DELIVERED),
        ("read", DeliveryStatus.READ),
        ("seen", DeliveryStatus.READ),
        ("undelivered", DeliveryStatus.UNDELIVERABLE),
        ("not_delivered", DeliveryStatus.UNDELIVERABLE),
        ("undeliverable", DeliveryStatus.UNDELIVERABLE),
        ("expired", DeliveryStatus.EXPIRED),
        ("rejected", DeliveryStatus.REJECTED),
        ("error", DeliveryStatus.FAILED),
        ("failed", DeliveryStatus.FAILED),
        ("DELIVERED", DeliveryStatus.DELIVERED),
        ("teleported", DeliveryStatus.UNKNOWN),
    ],
)
def test_native_status_words_map_case_by_case(word, expected):
    assert Backend.normalize(word) == expected


def test_every_native_word_in_the_map_is_tested():
    tested = {"new", "queued", "scheduled", "sending", "sent", "delivered", "read", "seen"}
    tested |= {"undelivered", "not_delivered", "undeliverable", "expired", "rejected"}
    tested |= {"error", "failed"}
    assert set(STATUS_MAP) == tested


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("1", DeliveryStatus.DELIVERED),
        ("2", DeliveryStatus.UNDELIVERABLE),
        ("4", DeliveryStatus.SENT),
        ("8", DeliveryStatus.SENT),
        ("16", DeliveryStatus.REJECTED),
        ("32", DeliveryStatus.UNKNOWN),
    ],
)
def test_kannel_codes_map_case_by_case(code, expected):
    assert Backend.normalize(code, kannel=True) == expected
    assert Backend.normalize(code) == expected  # a number is a Kannel code even unmarked
    assert set(KANNEL_STATUS_MAP) == {1, 2, 4, 8, 16}


def test_a_word_under_the_kannel_mark_is_still_read_as_a_word():
    assert Backend.normalize("delivered", kannel=True) == DeliveryStatus.DELIVERED


# ---- callbacks ----
def test_the_native_callback_sample_parses_to_a_delivered_event():
    request = RequestFactory().get(fixture("callback-native.txt"))
    [event] = Backend(make_account()).parse_callback(request)
    assert (event.status, event.provider_status) == (DeliveryStatus.DELIVERED, "delivered")
    assert (event.provider_message_id, event.idempotency_key) == ("5214896", "c1")
    assert event.channel == "" and event.occurred_at is None  # retries dedupe to one event
    assert "status=delivered" in event.raw


def test_the_kannel_callback_sample_parses_to_an_undeliverable_event():
    request = RequestFactory().get(fixture("callback-kannel.txt"))
    [event] = Backend(make_account()).parse_callback(request)
    assert (event.status, event.provider_status, event.provider_message_id) == (
        DeliveryStatus.UNDELIVERABLE,
        "2",
        "5214896",
    )


def test_a_posted_form_callback_is_read_too():
    request = RequestFactory().post(CALLBACK, data={"id": "77", "status": "read"})
    [event] = Backend(make_account()).parse_callback(request)
    assert (event.provider_message_id, event.status) == ("77", DeliveryStatus.READ)


def test_an_unknown_callback_word_keeps_the_gateway_word():
    request = RequestFactory().get(CALLBACK, {"id": "77", "status": "moonwalk"})
    [event] = Backend(make_account()).parse_callback(request)
    assert (event.status, event.provider_status) == (DeliveryStatus.UNKNOWN, "moonwalk")


@pytest.mark.parametrize(
    "query",
    [
        {"status": "delivered"},
        {"id": "{id}", "status": "delivered"},
        {"id": "77"},
        {"id": "77", "status": "{status}"},
    ],
)
def test_a_callback_without_id_or_status_is_unreadable(query):
    request = RequestFactory().get(CALLBACK, query)
    with pytest.raises(ValueError):
        Backend(make_account()).parse_callback(request)


def test_there_is_no_status_endpoint_to_poll():
    backend, gateway = backend_with()
    assert backend.fetch_statuses([ProviderRef(1, "5214896")]) == []
    assert gateway.requests == []
    assert (Backend.polls_statuses, Backend.has_callbacks, Backend.idempotent_submit) == (
        False,
        True,
        False,
    )
