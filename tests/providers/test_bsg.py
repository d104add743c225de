"""The BSG backend without a network: the JSON it writes, and how it reads BSG's answers.

The wire is stubbed (`Wire` records each request and plays back answers); the same
backend runs against the simulator over HTTP in test_bsg_simulator.py. The seed's sample
answers are files in fixtures/bsg/ (see the README there for how they were transcribed).
"""

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.test import RequestFactory

from providers.backends.bsg import ERRORS, STATUS_MAP, Backend
from providers.base import ConfigurationError, OutgoingMessage, ProviderError, ProviderRef
from providers.status import DeliveryStatus

FIXTURES = Path(__file__).parent / "fixtures" / "bsg"
CALLBACK = "https://cascade.example.com/providers/webhooks/bsg/7/s3cret/"


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


class Wire:
    """Stands in for Backend.request: records each request and answers from a list."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, method, url, **kwargs):
        data = kwargs.get("data")
        self.calls.append(
            SimpleNamespace(
                method=method,
                url=url,
                headers=kwargs.get("headers") or {},
                body=json.loads(data) if data else None,
            )
        )
        status, payload = self.answers.pop(0)
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return SimpleNamespace(status_code=status, text=text)


def account(**overrides):
    values = {
        "pk": None,
        "name": "BSG",
        "base_url": "https://app.bsg.hk/rest/",
        "credentials": {"api_key": "live_abc"},
        "sender_names": {"viber": "Shop", "sms": "ShopSMS"},
        "options": {},
        "timeout_seconds": 5,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def backend_with(wire, **overrides):
    backend = Backend(account(**overrides))
    backend.request = wire
    return backend


def viber(index, **fields):
    values = {
        "delivery_id": index,
        "idempotency_key": f"key{index}",
        "channel": "viber",
        "phone": f"38097292{index:04d}",
        "text": "Weekend sale: -20%",
        "ttl_minutes": 60,
        "is_promotional": True,
        "callback_url": CALLBACK,
    }
    values.update(fields)
    return OutgoingMessage(**values)


def ok(*references, price=0.023):
    return {
        "result": [
            {
                "error": 0,
                "errorDescription": "No errors",
                "reference": reference,
                "id": str(1000 + number),
                "price": price,
                "currency": "EUR",
            }
            for number, reference in enumerate(references)
        ],
        "currency": "EUR",
        "total_price": price * len(references),
    }


# ---- the JSON we write ----


def test_a_viber_only_step_is_one_message_object_without_alt_route():
    wire = Wire((200, ok("key1")))
    backend_with(wire).send([viber(1)])
    call = wire.calls[0]
    assert (call.method, call.url) == ("PUT", "https://app.bsg.hk/rest/viber/create")
    assert call.headers["X-API-KEY"] == "live_abc"
    assert call.headers["Content-Type"] == "application/json"
    assert call.body == {
        "tariff": 0,
        "validity": 3600,
        "messages": [
            {
                "to": [{"msisdn": "380972920001", "reference": "key1"}],
                "text": "Weekend sale: -20%",
                "alpha_name": "Shop",
                "is_promotional": True,
                "callback_url": CALLBACK,
            }
        ],
    }


def test_a_viber_step_with_sms_fallback_carries_alt_route_and_the_button():
    wire = Wire((200, ok("key1")))
    message = viber(
        1,
        sms_text="Sale -20%, see shop.example",
        fallback_channels=["sms"],
        image_url="https://shop.example/sale.png",
        button_caption="See details",
        button_url="https://shop.example/sale",
        is_promotional=False,
        callback_url="",
    )
    backend_with(wire, options={"tariff": 3, "method": "post"}).send([message])
    call = wire.calls[0]
    assert call.method == "POST"
    assert call.body == {
        "tariff": 3,
        "validity": 3600,
        "messages": [
            {
                "to": [{"msisdn": "380972920001", "reference": "key1"}],
                "text": "Weekend sale: -20%",
                "alpha_name": "Shop",
                "is_promotional": False,
                "options": {
                    "viber": {
                        "img": "https://shop.example/sale.png",
                        "caption": "See details",
                        "action": "https://shop.example/sale",
                        "alt_route": {
                            "originator": "ShopSMS",
                            "text": "Sale -20%, see shop.example",
                        },
                    }
                },
            }
        ],
    }


def test_the_sms_fallback_text_defaults_to_the_viber_text():
    wire = Wire((200, ok("key1")))
    backend_with(wire).send([viber(1, fallback_channels=["sms"])])
    alt_route = wire.calls[0].body["messages"][0]["options"]["viber"]["alt_route"]
    assert alt_route == {"originator": "ShopSMS", "text": "Weekend sale: -20%"}


def test_recipients_with_identical_content_share_one_message_object():
    wire = Wire((200, ok("key1", "key2", "key3", "key4")))
    batch = [viber(1), viber(2, text="Other text"), viber(3), viber(4)]
    results = backend_with(wire).send(batch)
    messages = wire.calls[0].body["messages"]
    assert [[to["reference"] for to in m["to"]] for m in messages] == [
        ["key1", "key3", "key4"],
        ["key2"],
    ]
    assert [m["text"] for m in messages] == ["Weekend sale: -20%", "Other text"]
    assert [r.delivery_id for r in results] == [1, 2, 3, 4]  # the batch's order
    assert [r.provider_message_id for r in results] == ["1000", "1001", "1002", "1003"]


def test_one_phone_never_appears_twice_in_one_to_list():
    wire = Wire((200, ok("key1", "key2")))
    backend_with(wire).send([viber(1), viber(2, phone="380972920001")])
    messages = wire.calls[0].body["messages"]
    assert [[to["reference"] for to in m["to"]] for m in messages] == [["key1"], ["key2"]]


def test_an_sms_only_step_goes_to_the_sms_api_with_validity_in_hours():
    answer = {"result": ok("key1", "key2")["result"], "error": "0", "currency": "EUR"}
    wire = Wire((200, answer))
    batch = [
        viber(1, channel="sms", text="Code 1234", ttl_minutes=90),
        viber(2, channel="sms", text="Code 1234", ttl_minutes=90),
    ]
    results = backend_with(wire).send(batch)
    call = wire.calls[0]
    assert (call.method, call.url) == ("PUT", "https://app.bsg.hk/rest/sms/create")
    assert call.body == {
        "destination": "phones",
        "originator": "ShopSMS",
        "body": "Code 1234",
        "validity": 2,
        "tariff": 0,
        "phones": [
            {"msisdn": "380972920001", "reference": "key1"},
            {"msisdn": "380972920002", "reference": "key2"},
        ],
        "callback_url": CALLBACK + "?bsg_api=sms",
    }
    assert [r.provider_message_id for r in results] == ["sms:1000", "sms:1001"]
    assert results[0].price == Decimal("0.023")


def test_sms_steps_with_different_bodies_go_in_separate_requests():
    wire = Wire((200, ok("key1")), (200, ok("key2")))
    backend_with(wire).send([viber(1, channel="sms", text="A"), viber(2, channel="sms", text="B")])
    assert [call.body["body"] for call in wire.calls] == ["A", "B"]


@pytest.mark.parametrize(
    ("ttl_minutes", "seconds", "hours"),
    [(0, 86400, 24), (1, 60, 1), (61, 3660, 2), (1440, 86400, 24), (10000, 86400, 72)],
)
def test_validity_follows_the_ttl_within_bsgs_limits(ttl_minutes, seconds, hours):
    wire = Wire((200, ok("key1")), (200, ok("key2")))
    backend_with(wire).send(
        [viber(1, ttl_minutes=ttl_minutes), viber(2, channel="sms", ttl_minutes=ttl_minutes)]
    )
    assert [call.body["validity"] for call in wire.calls] == [seconds, hours]


def test_more_than_50_recipients_are_split_into_requests_of_50():
    references = [f"key{i}" for i in range(60)]
    wire = Wire((200, ok(*references[:50])), (200, ok(*references[50:])))
    results = backend_with(wire).send([viber(i) for i in range(60)])
    assert [sum(len(m["to"]) for m in call.body["messages"]) for call in wire.calls] == [50, 10]
    assert all(result.accepted for result in results)


def test_a_recipient_without_a_phone_is_refused_without_a_request():
    wire = Wire()
    [result] = backend_with(wire).send([viber(1, phone="")])
    assert (result.accepted, result.permanent, result.error_code) == (False, True, "no_address")
    assert wire.calls == []


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"credentials": {}}, "credentials['api_key']"),
        ({"sender_names": {"sms": "ShopSMS"}}, "sender_names['viber']"),
        ({"options": {"method": "GET"}}, "options['method']"),
        ({"options": {"tariff": "cheap"}}, "options['tariff']"),
        ({"options": {"tariff": 12}}, "options['tariff']"),
    ],
)
def test_a_missing_setting_is_a_configuration_error_naming_it(overrides, setting):
    with pytest.raises(ConfigurationError, match=setting.replace("[", r"\[")):
        backend_with(Wire((200, ok("key1"))), **overrides).send([viber(1)])


def test_a_fallback_without_an_sms_sender_is_a_configuration_error():
    backend = backend_with(Wire((200, ok("key1"))), sender_names={"viber": "Shop"})
    with pytest.raises(ConfigurationError, match=r"sender_names\['sms'\]"):
        backend.send([viber(1, fallback_channels=["sms"])])


# ---- reading the answers ----


def test_the_seeds_success_answer_becomes_an_accepted_result_with_price():
    wire = Wire((200, fixture("viber_create_answer.json")))
    [result] = backend_with(wire).send([viber(19, idempotency_key="ext_id_19")])
    assert result.accepted
    assert result.provider_message_id == "217"
    assert result.status == DeliveryStatus.SENT
    assert (result.price, result.currency) == (Decimal("0.23"), "EUR")
    assert json.loads(result.raw)["id"] == "217"


def test_the_seeds_43_answer_means_already_sent_and_the_id_is_looked_up_by_reference():
    wire = Wire(
        (200, fixture("viber_create_answer_43.json")),
        (200, fixture("viber_status_answer.json")),
    )
    [result] = backend_with(wire).send([viber(19, idempotency_key="ext_id_19")])
    assert wire.calls[1].method == "GET"
    assert wire.calls[1].url == "https://app.bsg.hk/rest/viber/reference/ext_id_19"
    assert result.accepted
    assert result.error_code == "43"
    assert result.provider_message_id == "470093225"
    # The SMS leg's id stays in the raw answer, which the submit event keeps.
    assert json.loads(result.raw)["alt_route"][0]["id"] in (470094225, "470094225")


def test_a_43_whose_lookup_finds_nothing_is_still_accepted_without_an_id():
    wire = Wire(
        (200, fixture("viber_create_answer_43.json")),
        (404, fixture("viber_status_not_found.json")),
    )
    [result] = backend_with(wire).send([viber(19, idempotency_key="ext_id_19")])
    assert (result.accepted, result.error_code, result.provider_message_id) == (True, "43", "")


def test_a_23_from_the_sms_api_is_looked_up_in_the_sms_api():
    refused = {"result": [{"error": "23", "errorDescription": "x", "reference": "key1"}]}
    found = {"error": 0, "id": "22125", "reference": "key1", "status": "sent", "price": "0.02"}
    wire = Wire((200, refused), (200, found))
    [result] = backend_with(wire).send([viber(1, channel="sms")])
    assert wire.calls[1].url == "https://app.bsg.hk/rest/sms/reference/key1"
    assert (result.accepted, result.provider_message_id) == (True, "sms:22125")


@pytest.mark.parametrize(
    ("code", "permanent", "status"),
    [
        (41, True, DeliveryStatus.REJECTED),
        (45, True, DeliveryStatus.REJECTED),
        (46, True, DeliveryStatus.REJECTED),
        (47, True, DeliveryStatus.REJECTED),
        (49, True, DeliveryStatus.REJECTED),
        (21, True, DeliveryStatus.REJECTED),
        (8, False, DeliveryStatus.FAILED),
        (11, False, DeliveryStatus.FAILED),
        (51, False, DeliveryStatus.FAILED),
        (31, False, DeliveryStatus.FAILED),
        (99, False, DeliveryStatus.FAILED),
    ],
)
def test_a_recipients_error_code_maps_to_a_refusal_of_the_right_kind(code, permanent, status):
    answer = {"result": [{"error": code, "errorDescription": "BSG says no", "reference": "key1"}]}
    [result] = backend_with(Wire((200, answer))).send([viber(1)])
    assert result.accepted is False
    assert (result.permanent, result.status, result.error_code) == (permanent, status, str(code))
    assert result.error_message == "BSG says no"


def test_a_recipient_error_without_bsgs_words_gets_ours():
    answer = {"result": [{"error": 41, "reference": "key1"}]}
    [result] = backend_with(Wire((200, answer))).send([viber(1)])
    assert result.error_message == "Invalid phone number" == ERRORS[41][0]


def test_a_recipient_missing_from_the_answer_may_be_resent():
    [first, second] = backend_with(Wire((200, ok("key1")))).send([viber(1), viber(2)])
    assert first.accepted
    assert (second.accepted, second.permanent, second.error_code) == (False, False, "no_answer")


@pytest.mark.parametrize(
    ("status", "answer", "permanent", "code"),
    [
        (401, {"error": 1, "errorDescription": "Invalid API key"}, True, "1"),
        (200, {"error": "1", "errorDescription": "Invalid API key"}, True, "1"),
        (400, {"error": "12", "errorDescription": "Exceeded batch size limit"}, True, "12"),
        (400, {"error": 44, "errorDescription": "Invalid request payload"}, True, "44"),
        (400, {"error": 3, "errorDescription": "Not enough params"}, True, "3"),
        (200, {"error": 8, "errorDescription": "Not enough money"}, False, "8"),
        (200, {"error": 11, "errorDescription": "Exceeded limit"}, False, "11"),
        (200, {"error": 5, "errorDescription": "Unknown error"}, False, "5"),
    ],
)
def test_a_whole_request_error_raises_with_bsgs_code_and_words(status, answer, permanent, code):
    with pytest.raises(ProviderError) as caught:
        backend_with(Wire((status, answer))).send([viber(1)])
    assert caught.value.permanent is permanent
    assert caught.value.code == code
    assert answer["errorDescription"] in caught.value.message


@pytest.mark.parametrize(
    ("status", "body", "permanent"),
    [
        (200, "<html><body>Bad Gateway</body></html>", False),
        (200, '{"result": [{"error": 0, "refer', False),
        (200, "[1, 2]", False),
        (200, '{"currency": "EUR"}', False),
        (404, "<html>Not found</html>", True),
        (403, "Forbidden", True),
    ],
)
def test_an_answer_that_is_not_bsgs_json_raises(status, body, permanent):
    with pytest.raises(ProviderError) as caught:
        backend_with(Wire((status, body))).send([viber(1)])
    assert caught.value.permanent is permanent
    assert caught.value.response_text == body


# ---- statuses ----


def test_the_seeds_status_answer_gives_the_viber_leg_and_the_sms_leg():
    wire = Wire((200, fixture("viber_status_answer.json")))
    ref = ProviderRef(delivery_id=19, provider_message_id="470093225", idempotency_key="ext_id_19")
    viber_event, sms_event = backend_with(wire).fetch_statuses([ref])
    assert wire.calls[0].url == "https://app.bsg.hk/rest/viber/470093225"
    assert viber_event.channel == "viber"
    assert viber_event.status == DeliveryStatus.UNDELIVERABLE
    assert viber_event.provider_status == "undeliverable"
    assert viber_event.provider_message_id == "470093225"
    assert viber_event.idempotency_key == "ext_id_19"
    assert viber_event.occurred_at == datetime(2017, 1, 17, 9, 20, 2, tzinfo=UTC)
    assert (viber_event.price, viber_event.currency) == (Decimal("0.00"), "EUR")
    assert sms_event.channel == "sms"
    assert sms_event.status == DeliveryStatus.DELIVERED
    assert sms_event.provider_message_id == "sms:470094225"
    assert sms_event.idempotency_key == "ext_id_19"
    assert (sms_event.price, sms_event.currency) == (Decimal("0.023"), "EUR")
    assert json.loads(sms_event.raw) == fixture("viber_status_answer.json")


def test_an_in_progress_status_takes_the_latest_time_it_has():
    answer = {
        "error": 0,
        "id": "5",
        "reference": "key5",
        "time_in": "2024-03-01 10:00:00",
        "time_sent": "2024-03-01 10:00:07",
        "time_dr": None,
        "status": "sent",
    }
    [event] = backend_with(Wire((200, answer))).fetch_statuses([ProviderRef(5, "5", "key5")])
    assert (event.status, event.occurred_at) == (
        DeliveryStatus.SENT,
        datetime(2024, 3, 1, 10, 0, 7, tzinfo=UTC),
    )
    assert event.price is None


def test_sms_ids_are_polled_at_the_sms_api_and_missing_ids_by_reference():
    sms_answer = {"error": 0, "id": "22125", "reference": "key1", "status": "delivered"}
    viber_answer = {"error": 0, "id": "900", "reference": "key2", "status": "read"}
    wire = Wire((200, sms_answer), (200, viber_answer))
    refs = [ProviderRef(1, "sms:22125", "key1"), ProviderRef(2, "", "key2"), ProviderRef(3, "")]
    events = backend_with(wire).fetch_statuses(refs)
    assert [call.url for call in wire.calls] == [
        "https://app.bsg.hk/rest/sms/22125",
        "https://app.bsg.hk/rest/viber/reference/key2",
    ]
    assert [(e.channel, e.provider_message_id, e.status) for e in events] == [
        ("sms", "sms:22125", DeliveryStatus.DELIVERED),
        ("viber", "900", DeliveryStatus.READ),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        {"error": 40, "errorDescription": "Message not found"},
        {"error": "40", "errorDescription": "Message not found"},
        {"error": "20", "errorDescription": "SMS not found"},
    ],
)
def test_a_message_bsg_does_not_know_gives_no_event_and_no_error(answer):
    assert backend_with(Wire((404, answer))).fetch_statuses([ProviderRef(1, "1")]) == []


def test_one_failed_poll_does_not_lose_the_other_statuses():
    answer = {"error": 0, "id": "2", "reference": "key2", "status": "delivered"}
    wire = Wire((200, "<html>oops</html>"), (200, answer))
    events = backend_with(wire).fetch_statuses([ProviderRef(1, "1"), ProviderRef(2, "2")])
    assert [e.provider_message_id for e in events] == ["2"]


def test_polling_raises_when_no_message_could_be_asked_about():
    wire = Wire((200, "<html>oops</html>"), (200, "<html>oops</html>"))
    with pytest.raises(ProviderError) as caught:
        backend_with(wire).fetch_statuses([ProviderRef(1, "1"), ProviderRef(2, "2")])
    assert caught.value.permanent is False


def test_polling_stops_at_once_when_the_key_is_refused():
    wire = Wire((401, {"error": 1, "errorDescription": "Invalid API key"}))
    with pytest.raises(ProviderError) as caught:
        backend_with(wire).fetch_statuses([ProviderRef(1, "1"), ProviderRef(2, "2")])
    assert (caught.value.permanent, caught.value.code) == (True, "1")
    assert len(wire.calls) == 1


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("scheduled", DeliveryStatus.SENT),
        ("sent", DeliveryStatus.SENT),
        ("delivered", DeliveryStatus.DELIVERED),
        ("read", DeliveryStatus.READ),
        ("expired", DeliveryStatus.EXPIRED),
        ("undeliverable", DeliveryStatus.UNDELIVERABLE),
        ("rejected", DeliveryStatus.REJECTED),
        ("unknown", DeliveryStatus.UNKNOWN),
    ],
)
def test_each_bsg_status_word_maps_to_its_normalized_status(word, status):
    assert STATUS_MAP[word] == status
    answer = {"error": 0, "id": "1", "status": word}
    [event] = backend_with(Wire((200, answer))).fetch_statuses([ProviderRef(1, "1")])
    assert (event.status, event.provider_status) == (status, word)


def test_a_status_word_bsg_never_documented_is_unknown():
    answer = {"error": 0, "id": "1", "status": "partly_delivered"}
    [event] = backend_with(Wire((200, answer))).fetch_statuses([ProviderRef(1, "1")])
    assert (event.status, event.provider_status) == (DeliveryStatus.UNKNOWN, "partly_delivered")


# ---- callbacks ----


def post(body, query=""):
    data = body if isinstance(body, str) else json.dumps(body)
    return RequestFactory().post(
        "/providers/webhooks/bsg/7/s3cret/" + query, data=data, content_type="application/json"
    )


def test_a_callback_in_the_status_answer_shape_gives_both_legs():
    events = Backend(account()).parse_callback(post(fixture("viber_status_answer.json")))
    assert [(e.channel, e.provider_message_id, e.status) for e in events] == [
        ("viber", "470093225", DeliveryStatus.UNDELIVERABLE),
        ("sms", "sms:470094225", DeliveryStatus.DELIVERED),
    ]
    assert all(e.idempotency_key == "ext_id_19" for e in events)


def test_a_callback_from_the_sms_api_names_the_sms_id():
    body = {"error": 0, "id": "22125", "reference": "key1", "status": "expired"}
    [event] = Backend(account()).parse_callback(post(body, "?bsg_api=sms"))
    assert (event.channel, event.provider_message_id, event.status) == (
        "sms",
        "sms:22125",
        DeliveryStatus.EXPIRED,
    )


def test_a_callback_with_a_list_of_answers_gives_each_its_events():
    body = [
        {"error": 0, "id": "1", "reference": "a", "status": "delivered"},
        {"error": 0, "id": "2", "reference": "b", "status": "read"},
    ]
    events = Backend(account()).parse_callback(post(body))
    assert [(e.provider_message_id, e.status) for e in events] == [
        ("1", DeliveryStatus.DELIVERED),
        ("2", DeliveryStatus.READ),
    ]
    assert json.loads(events[1].raw)["id"] == "2"


@pytest.mark.parametrize("body", ["<html>", "42", '["x"]'])
def test_an_unreadable_callback_is_a_value_error(body):
    with pytest.raises(ValueError):
        Backend(account()).parse_callback(post(body))


def test_the_error_table_covers_every_documented_viber_code():
    assert {40, 41, 43, 44, 45, 46, 47, 48, 49, 51} <= set(ERRORS)
    assert {code for code, (_text, permanent) in ERRORS.items() if not permanent} == {
        5,
        8,
        11,
        31,
        51,
    }
