"""The cascade gateway backend without a network: requests built, answers read.

Requests are compared with the seed's samples and the seed's sample answers
are parsed, all kept as files in fixtures/cascade_gateway/.
"""

# ruff: noqa: RUF001

import itertools
import json
import re
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest

from providers.backends.cascade_gateway import (
    STATUS_MAP,
    Backend,
    client_id_for,
    explain_error,
    reset_poll_memo,
)
from providers.base import ConfigurationError, OutgoingMessage, ProviderError, ProviderRef
from providers.status import DeliveryStatus

FIXTURES = Path(__file__).parent / "fixtures" / "cascade_gateway"
MOSCOW = ZoneInfo("Europe/Moscow")
_pks = itertools.count(1)


def fixture(name):
    return (FIXTURES / name).read_text(encoding="utf-8")


def account(flavour="json", **options):
    return SimpleNamespace(
        pk=next(_pks),
        name="Gateway",
        base_url="https://gw.example.ru",
        credentials={"login": "demo", "password": "demo-pass"},
        sender_names={"viber": "SunriseMkt", "sms": "SunriseMkt"},
        channels=["viber", "vk", "sms"],
        options={"flavour": flavour, **options},
        timeout_seconds=5,
        max_batch=200,
    )


def group(backend, batch):
    """The batch as the pipeline groups it: (content groups, refusals by position)."""
    items, refused = backend.prepare(batch)
    return backend.group(items), refused


def seed_account(flavour="json", **options):
    """The settings behind the seed's first sample message."""
    values = {
        "name_delivery": "Весенняя распродажа",
        "finale_viber_read": True,
        "vk_template_id": 100,
        "vk_template_data": {"Name": "Анна", "Where": "Москва"},
    }
    values.update(options)
    return account(flavour, **values)


def seed_message(key, phone, **fields):
    values = {
        "delivery_id": int(key),
        "idempotency_key": key,
        "channel": "viber",
        "fallback_channels": ["vk", "sms"],
        "phone": phone,
        "text": "Скидка 20% на всё до воскресенья!",
        "sms_text": "Sunrise: -20% do voskresenya",
        "button_caption": "Подробнее",
        "button_url": "https://sunrise.example/sale",
        "image_url": "https://sunrise.example/sale.png",
        "ttl_minutes": 60,
    }
    values.update(fields)
    return OutgoingMessage(**values)


def plain_message(index, **fields):
    values = {
        "delivery_id": index,
        "idempotency_key": f"key{index}",
        "channel": "viber",
        "phone": f"7916000{index:04d}",
        "text": "Weekend sale",
    }
    values.update(fields)
    return OutgoingMessage(**values)


def one_line(xml):
    return re.sub(r">\s+<", "><", xml.strip())


class FakeResponse:
    def __init__(self, body, status_code=200):
        self.content = body.encode("utf-8")
        self.text = body
        self.status_code = status_code


def stub(backend, *answers):
    """Replace the network: each call takes the next answer and is recorded."""
    calls = []
    queue = list(answers)

    def request(method, url, **kwargs):
        calls.append(SimpleNamespace(method=method, url=url, **kwargs))
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return FakeResponse(answer) if isinstance(answer, str) else answer

    backend.request = request
    return calls


# ---- requests, compared with the seed's samples ----


def test_the_json_send_document_is_the_seeds_first_sample_message():
    backend = Backend(seed_account())
    groups, refused = group(
        backend, [seed_message("111", "79801234567"), seed_message("112", "79800000001")]
    )
    document = backend.json_send_document(groups)
    sample = json.loads(fixture("json_send_request.json"))
    assert refused == {}
    assert (document["login"], document["password"]) == ("demo", "demo-pass")
    # The seed's sample less time_send: the engine dispatches each message when it is due.
    expected = {key: value for key, value in sample["message"][0].items() if key != "time_send"}
    assert document["message"] == [expected]
    assert list(document["message"][0]) == list(expected)  # the seed's field order


def test_a_viber_only_message_is_the_seeds_second_sample_with_explicit_zeros():
    backend = Backend(account(name_delivery="Весенняя распродажа 2"))
    message = plain_message(113, idempotency_key="113", phone="79800000002")
    message.text = "Ваш бонус: 150 баллов"
    groups, _ = group(backend, [message])
    built = backend.json_send_document(groups)["message"][0]
    sample = json.loads(fixture("json_send_request.json"))["message"][1]
    assert {key: built[key] for key in sample} == sample
    # Unused channels are 0 rather than left to the gateway's defaults.
    assert set(built) - set(sample) == {
        "send_vk",
        "send_sms",
        "validity_period_viber",
        "finale_viber_read",
    }
    assert (built["send_vk"], built["send_sms"], built["finale_viber_read"]) == ("0", "0", "0")


def test_the_xml_send_document_is_the_seeds_first_sample_message():
    backend = Backend(seed_account("xml"))
    groups, _ = group(
        backend, [seed_message("111", "79801234567"), seed_message("112", "79800000001")]
    )
    document = backend.xml_send_document(groups)
    sample = one_line(fixture("xml_send_request.xml"))
    first_message = sample[: sample.index("</message>") + len("</message>")] + "</request>"
    first_message = re.sub("<time_send>[^<]*</time_send>", "", first_message)  # never sent
    assert "\n" not in document
    assert document == first_message


def test_line_breaks_in_xml_data_are_written_as_backslash_n():
    backend = Backend(account("xml"))
    groups, _ = group(backend, [plain_message(1, text="Line one\nLine two\r\nthree")])
    document = backend.xml_send_document(groups)
    assert "\n" not in document and "\r" not in document
    assert "<text_viber>Line one\\nLine two\\nthree</text_viber>" in document


def test_the_get_query_is_the_seeds_sample_plus_our_client_id():
    backend = Backend(seed_account("get", finale_viber_read=False, name_delivery=""))
    message = seed_message("111", "79161234567")
    groups, _ = group(backend, [message])
    params = backend.get_send_params(groups[0].fields, message.phone, "111")
    sample = parse_qsl(urlsplit(fixture("get_send_request.txt").strip()).query)
    assert params == [*sample, ("client_id_message", "111")]


def test_the_status_requests_are_the_seeds_samples():
    backend = Backend(account())
    assert backend.json_state_document(["111", "112"]) == json.loads(
        fixture("json_state_request.json")
    )
    assert backend.xml_state_document(["111", "112", "113"]) == one_line(
        fixture("xml_state_request.xml")
    )


def test_a_get_status_poll_is_the_seeds_sample_url():
    backend = Backend(account("get"))
    calls = stub(backend, "deliver")
    backend.fetch_statuses([ProviderRef(1, "1179038981")])
    sample = parse_qsl(urlsplit(fixture("get_status_request.txt").strip()).query)
    assert calls[0].url == "https://gw.example.ru/sendmessage.php"
    assert calls[0].params == sample


def test_send_posts_json_with_the_documented_content_type_and_groups_identical_content():
    backend = Backend(account())
    calls = stub(
        backend,
        json.dumps(
            {
                "message": [
                    [
                        {"id_message": "11", "client_id_message": "", "phone": "79160000001"},
                        {"id_message": "12", "client_id_message": "", "phone": "79160000002"},
                    ],
                    [{"id_message": "13", "client_id_message": "", "phone": "79160000003"}],
                ]
            }
        ),
    )
    batch = [plain_message(1), plain_message(2), plain_message(3, text="Other text")]
    results = backend.send(batch)
    assert calls[0].method == "POST"
    assert calls[0].url == "https://gw.example.ru/sendmessagejson.php"
    assert calls[0].headers == {"Content-Type": "application/json; charset=utf-8"}
    body = json.loads(calls[0].data.decode("utf-8"))
    assert [len(message["phones"]) for message in body["message"]] == [2, 1]
    assert [r.provider_message_id for r in results] == ["11", "12", "13"]


def test_send_posts_xml_to_the_xml_script():
    backend = Backend(account("xml"))
    calls = stub(
        backend,
        '<?xml version="1.0" encoding="utf-8"?><response><message><information id_message="7" '
        'client_id_message="101" phone="79160000001">send</information></message></response>',
    )
    result = backend.send([plain_message(1, idempotency_key="101")])[0]
    assert calls[0].url == "https://gw.example.ru/xml/message.php"
    assert calls[0].headers == {"Content-Type": "text/xml; charset=utf-8"}
    assert (
        calls[0].data.decode("utf-8").startswith('<?xml version="1.0" encoding="utf-8" ?><request>')
    )
    assert (result.accepted, result.provider_message_id) == (True, "7")


def test_the_cascade_order_is_the_steps_channel_then_its_fallbacks():
    backend = Backend(account(vk_template_id=5))
    sms_first = plain_message(1, channel="sms", fallback_channels=["viber"])
    with_foreign = plain_message(2, fallback_channels=["email", "vk", "sms", "vk"])
    fields = [group(backend, [m])[0][0].fields for m in (sms_first, with_foreign)]
    assert [(f["send_viber"], f["send_vk"], f["send_sms"]) for f in fields] == [
        ("2", "0", "1"),
        ("1", "2", "3"),
    ]
    assert fields[0]["text_sms"] == "Weekend sale"


def test_no_send_time_is_sent_the_engine_dispatches_on_time():
    fields = group(Backend(account()), [plain_message(1)])[0][0].fields
    assert "time_send" not in fields


def test_the_viber_validity_follows_the_ttl_within_vibers_limit():
    backend = Backend(account())
    short, long = plain_message(1, ttl_minutes=90), plain_message(2, ttl_minutes=10**6)
    validity = [group(backend, [m])[0][0].fields["validity_period_viber"] for m in (short, long)]
    assert validity == ["90", "20160"]


def test_vk_without_a_template_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="vk_template_id"):
        Backend(account()).send([plain_message(1, channel="vk")])


def test_an_unknown_flavour_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="flavour"):
        Backend(account("soap")).send([plain_message(1)])


def test_recipients_we_cannot_send_fail_without_a_request():
    backend = Backend(account())
    calls = stub(backend, '{"message": []}')
    results = backend.send([plain_message(1, phone=""), plain_message(2, channel="email")])
    assert calls == []
    assert [(r.accepted, r.error_code, r.permanent) for r in results] == [
        (False, "no_address", True),
        (False, "channel", True),
    ]


def test_a_large_batch_is_split_into_requests_of_at_most_max_batch():
    backend = Backend(account())
    batch = [plain_message(i) for i in range(450)]

    def answer(method, url, data, **kwargs):
        document = json.loads(data)
        return FakeResponse(
            json.dumps(
                {
                    "message": [
                        [
                            {"id_message": f"9{p['client_id_message']}", **p}
                            for p in message["phones"]
                        ]
                        for message in document["message"]
                    ]
                }
            )
        )

    sizes = []
    backend.request = lambda method, url, **kw: (
        sizes.append(sum(len(m["phones"]) for m in json.loads(kw["data"])["message"]))
        or answer(method, url, **kw)
    )
    results = backend.send(batch)
    assert sizes == [200, 200, 50]
    assert all(r.accepted for r in results)


# ---- idempotency keys as numbers ----


def test_all_digit_keys_are_sent_as_they_are():
    assert client_id_for("111") == "111"
    assert client_id_for("0") == "0"
    assert client_id_for("12345678901234567") == "12345678901234567"


def test_other_keys_become_stable_18_digit_numbers_outside_the_literal_range():
    keys = ["abc", "ABC", "0123", "123456789012345678", "f" * 32]
    numbers = [client_id_for(key) for key in keys]
    assert numbers == [client_id_for(key) for key in keys]
    assert all(n.isdigit() and len(n) == 18 and n[0] != "0" for n in numbers)
    assert len(set(numbers)) == len(keys)


# ---- answers: the seed's samples ----


def seed_groups(backend):
    """Three messages as in the seed's send sample: two phones, one, one."""
    batch = [
        seed_message("111", "79801234567"),
        seed_message("112", "79800000001"),
        plain_message(113, idempotency_key="113", phone="79800000002"),
        plain_message(114, idempotency_key="114", phone="79800000003", text="Спасибо"),
    ]
    groups, _ = group(backend, batch)
    assert [len(group.members) for group in groups] == [2, 1, 1]
    return groups


def assert_seed_send_results(results):
    first, stop_listed, second, refused = (results[i] for i in range(4))
    assert (first.accepted, first.provider_message_id, first.status) == (True, "1179038981", "sent")
    # Per-channel ids stay in the raw answer the submit event keeps; statuses use the overall id.
    assert all(id_ in first.raw for id_ in ("1179038982", "1179038983", "1179038984"))
    assert (stop_listed.accepted, stop_listed.error_code, stop_listed.permanent) == (
        False,
        "stop_list",
        True,
    )
    assert stop_listed.error_message == "The phone number is stop-listed"
    assert "стоп-листе" in stop_listed.raw
    assert (second.accepted, second.provider_message_id) == (True, "1179038985")
    assert "1179038986" in second.raw
    assert (refused.accepted, refused.error_code, refused.permanent) == (False, "no_sender", True)


def test_the_seeds_json_send_answer_becomes_send_results():
    backend = Backend(seed_account())
    results = backend.parse_json_send_answer(fixture("json_send_answer.json"), seed_groups(backend))
    assert_seed_send_results(results)
    assert results[0].parts == 1
    assert json.loads(results[0].raw)["id_message"] == "1179038981"


def test_the_seeds_xml_send_answer_becomes_send_results():
    backend = Backend(seed_account("xml"))
    results = backend.parse_xml_send_answer(fixture("xml_send_answer.xml"), seed_groups(backend))
    assert_seed_send_results(results)
    assert results[0].raw.startswith("<information")


def test_the_seeds_get_answers_become_send_results():
    backend = Backend(account("get"))
    one = backend.parse_get_send_answer(fixture("get_send_answer_one.txt"), plain_message(1))
    many = backend.parse_get_send_answer(fixture("get_send_answer_many.txt"), plain_message(1))
    assert (one.accepted, one.provider_message_id) == (True, "1179038981")
    assert many.provider_message_id == "1178440060"


def test_a_get_answer_with_a_per_number_error_refuses_that_recipient():
    backend = Backend(account("get"))
    result = backend.parse_get_send_answer("Текст SMS отклонен модератором.", plain_message(1))
    assert (result.accepted, result.error_code, result.permanent) == (False, "text_rejected", True)


@pytest.mark.parametrize("name", ["json_error_answer.json", "xml_error_answer.xml"])
def test_the_seeds_error_answer_is_a_permanent_provider_error(name):
    backend = Backend(account("xml" if name.endswith("xml") else "json"))
    parse = (
        backend.parse_xml_send_answer if name.endswith("xml") else backend.parse_json_send_answer
    )
    with pytest.raises(ProviderError) as error:
        parse(fixture(name), [])
    assert error.value.permanent is True
    assert error.value.code == "bad_credentials"
    assert "Wrong gateway login or password" in str(error.value)


@pytest.mark.parametrize(
    ("flavour", "answer"),
    [
        ("json", '{"error":"Попытка отправки более одного одинакового запроса в течение минуты"}'),
        (
            "xml",
            "<response><error>Попытка отправки более одного одинакового запроса в течение минуты"
            "</error></response>",
        ),
        ("get", "error: Попытка отправки более одного одинакового запроса в течение минуты"),
    ],
)
def test_an_identical_request_refusal_is_transient(flavour, answer):
    backend = Backend(account(flavour))
    stub(backend, answer)
    with pytest.raises(ProviderError) as error:
        backend.send([plain_message(1)])
    assert (error.value.permanent, error.value.code) == (False, "identical_request")


@pytest.mark.parametrize(
    ("flavour", "answer"),
    [
        ("json", "<html><body>Bad Gateway</body></html>"),
        ("json", '{"message": [[{"id_message": "1"'),
        ("xml", "<html><body>Bad Gateway</body></html>"),
        ("xml", "<response><message><information"),
        ("get", "<html><body>Bad Gateway</body></html>"),
        ("get", ""),
    ],
)
def test_a_malformed_answer_is_a_transient_error(flavour, answer):
    backend = Backend(account(flavour))
    stub(backend, answer)
    with pytest.raises(ProviderError) as error:
        backend.send([plain_message(1)])
    assert error.value.permanent is False
    assert "malformed" in error.value.message


def test_a_4xx_answer_is_permanent():
    backend = Backend(account())
    stub(backend, FakeResponse("Not found", 404))
    with pytest.raises(ProviderError) as error:
        backend.send([plain_message(1)])
    assert (error.value.permanent, error.value.status_code) == (True, 404)


def test_an_already_sent_answer_counts_as_sent():
    backend = Backend(account())
    message = plain_message(1, idempotency_key="101")
    groups, _ = group(backend, [message])
    text = json.dumps(
        {
            "message": [
                [
                    {
                        "client_id_message": "101",
                        "phone": message.phone,
                        "error": "Данное сообщение уже было отправлено.",
                    }
                ]
            ]
        }
    )
    result = backend.parse_json_send_answer(text, groups)[0]
    assert (result.accepted, result.error_code, result.provider_message_id) == (
        True,
        "already_sent",
        "",
    )
    assert "cannot be polled" in result.error_message


def test_answers_are_matched_by_client_id_even_out_of_order():
    backend = Backend(account())
    batch = [plain_message(1, idempotency_key="101"), plain_message(2, idempotency_key="102")]
    groups, _ = group(backend, batch)
    text = json.dumps(
        {
            "message": [
                [
                    {"id_message": "902", "client_id_message": "102", "phone": batch[1].phone},
                    {"id_message": "901", "client_id_message": "101", "phone": batch[0].phone},
                ]
            ]
        }
    )
    results = backend.parse_json_send_answer(text, groups)
    assert [results[0].provider_message_id, results[1].provider_message_id] == ["901", "902"]


def test_a_recipient_the_answer_leaves_out_may_be_resubmitted():
    backend = Backend(account())
    text = json.dumps(
        {"message": [[{"id_message": "5", "client_id_message": client_id_for("key1")}]]}
    )
    stub(backend, text)
    results = backend.send([plain_message(1), plain_message(2)])
    assert results[0].accepted
    assert (results[1].accepted, results[1].error_code, results[1].permanent) == (
        False,
        "no_answer",
        False,
    )


def test_a_failure_midway_reports_the_sent_part_and_lets_the_rest_be_retried():
    backend = Backend(account("get"))
    stub(backend, "501", ProviderError("gateway: timed out", permanent=False), "503")
    results = backend.send([plain_message(1), plain_message(2), plain_message(3)])
    assert [(r.accepted, r.permanent) for r in results] == [
        (True, True),
        (False, False),
        (False, False),
    ]
    assert results[0].provider_message_id == "501"


def test_a_failure_of_the_only_request_raises():
    backend = Backend(account())
    stub(backend, ProviderError("gateway: timed out", permanent=False))
    with pytest.raises(ProviderError):
        backend.send([plain_message(1), plain_message(2)])


def test_a_failure_of_the_first_get_request_leaves_the_next_unsent():
    backend = Backend(account("get"))
    calls = stub(backend, ProviderError("gateway: timed out", permanent=False))
    results = backend.send([plain_message(1), plain_message(2)])
    assert len(calls) == 1
    assert [(r.accepted, r.may_have_reached) for r in results] == [(False, True), (False, False)]


# ---- statuses ----


def seed_refs():
    return [
        ProviderRef(1, "1179038981", idempotency_key="k1"),
        ProviderRef(2, "1179038985", idempotency_key="k2"),
        ProviderRef(3, "1179038990", idempotency_key="k3"),
    ]


def by_id(refs):
    return {ref.provider_message_id: ref for ref in refs}


def test_the_seeds_json_status_answer_becomes_events_per_channel_and_overall():
    backend = Backend(account())
    events = backend.parse_json_state_answer(fixture("json_state_answer.json"), by_id(seed_refs()))
    summary = [(e.provider_message_id, e.channel, e.status, e.price, e.parts) for e in events]
    assert summary == [
        ("1179038981", "viber", "undeliverable", Decimal("0.85"), None),
        ("1179038981", "vk", "expired", Decimal("0.60"), None),
        ("1179038981", "sms", "delivered", Decimal("4.90"), 2),
        ("1179038981", "", "delivered", None, None),
        # in progress: every channel still "send", only the overall word
        ("1179038985", "", "sent", None, None),
    ]
    assert events[0].occurred_at == datetime(2017, 11, 23, 13, 15, 25, tzinfo=MOSCOW)
    assert events[0].idempotency_key == "k1" and events[0].currency == "RUB"
    assert json.loads(events[0].raw)["price_sms"] == "4.90"


def test_the_seeds_xml_status_answer_becomes_events():
    backend = Backend(account("xml"))
    events = backend.parse_xml_state_answer(fixture("xml_state_answer.xml"), by_id(seed_refs()))
    summary = [(e.provider_message_id, e.channel, e.status, e.provider_status) for e in events]
    assert summary == [
        ("1179038981", "viber", "undeliverable", "not_deliver"),
        ("1179038981", "vk", "expired", "expired"),
        ("1179038981", "sms", "delivered", "deliver"),
        ("1179038981", "", "delivered", "deliver"),
        ("1179038985", "viber", "read", "read"),
        ("1179038985", "", "delivered", "deliver"),
        ("1179038990", "", "unknown", "Сообщение с таким ID не принималось"),
    ]
    assert events[-1].error_message == "The gateway has no message with this id"
    assert events[-1].occurred_at is None


def test_the_seeds_get_status_answer_becomes_one_overall_event():
    backend = Backend(account("get"))
    stub(backend, fixture("get_status_answer.txt"))
    events = backend.fetch_statuses([ProviderRef(1, "1179038981", idempotency_key="k1")])
    assert [(e.channel, e.status, e.provider_status, e.idempotency_key) for e in events] == [
        ("", "delivered", "deliver", "k1")
    ]


def test_a_status_error_answer_raises_by_its_meaning():
    backend = Backend(account())
    stub(backend, '{"error": "Неправильный логин или пароль"}')
    with pytest.raises(ProviderError) as error:
        backend.fetch_statuses([ProviderRef(1, "5")])
    assert error.value.permanent is True


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("send", DeliveryStatus.SENT),
        ("deliver", DeliveryStatus.DELIVERED),
        ("not_deliver", DeliveryStatus.UNDELIVERABLE),
        ("expired", DeliveryStatus.EXPIRED),
        ("partly_deliver", DeliveryStatus.UNKNOWN),
        ("read", DeliveryStatus.READ),
        ("link", DeliveryStatus.READ),
        ("unsubscribe", DeliveryStatus.DELIVERED),
    ],
)
def test_status_map(word, status):
    assert STATUS_MAP[word] == status


def test_an_unlisted_status_word_is_unknown():
    assert STATUS_MAP.get("queued_somewhere", DeliveryStatus.UNKNOWN) == DeliveryStatus.UNKNOWN


def test_partly_deliver_keeps_the_word_and_says_why():
    backend = Backend(account())
    item = {"id_message": "1", "state": "partly_deliver", "state_sms": "partly_deliver"}
    events = backend.state_events(item, {"1": ProviderRef(1, "1")}, "{}")
    assert [(e.channel, e.status) for e in events] == [("sms", "unknown"), ("", "unknown")]
    assert "never received a delivery report" in events[-1].error_message


@pytest.mark.parametrize(
    ("text", "code", "permanent"),
    [
        ("Неправильный логин или пароль", "bad_credentials", True),
        ("Ваш аккаунт заблокирован", "account_blocked", True),
        ("Неправильный формат XML документа", "bad_document", True),
        (
            "error: Попытка отправки более одного одинакового запроса в течение минуты",
            "identical_request",
            False,
        ),
        ("Номер телефона присутствует в стоп-листе.", "stop_list", True),
        ("номер телефона присутствует в стоп-листе", "stop_list", True),
        ("Закончились SMS.", "out_of_sms", False),
        (
            "Недостаточно средств для отправки SMS. SMS будет отправлена как только вы пополните "
            "счет по данному направлению.",
            "insufficient_funds",
            False,
        ),
        ("Отправитель не прошел модерацию.", "sender_not_moderated", True),
        ("Нет ссылки.", "no_link", True),
        ("Данное сообщение уже было отправлено.", "already_sent", False),
    ],
)
def test_error_texts_map_to_codes_and_permanence(text, code, permanent):
    assert explain_error(text)[0] == code
    assert explain_error(text)[2] is permanent


def test_an_unknown_error_text_is_permanent_and_quoted():
    code, english, permanent = explain_error("Что-то пошло не так")
    assert (code, permanent) == ("gateway_error", True)
    assert english == "Gateway error: Что-то пошло не так"


def test_an_identical_poll_within_the_window_is_skipped():
    backend = Backend(account(identical_request_seconds=0.2))
    calls = stub(backend, '{"state": [{"id_message": "5", "state": "send"}]}')
    refs = [ProviderRef(1, "5")]
    assert len(backend.fetch_statuses(refs)) == 1
    assert backend.fetch_statuses(refs) == []  # same body within the window: not sent
    assert len(Backend(backend.account).fetch_statuses(refs)) == 0  # a new instance remembers
    assert len(calls) == 1
    time.sleep(0.25)
    assert len(backend.fetch_statuses(refs)) == 1
    assert len(calls) == 2


def test_the_poll_memo_has_a_reset():
    backend = Backend(account())
    calls = stub(backend, '{"state": []}')
    backend.fetch_statuses([ProviderRef(1, "5")])
    reset_poll_memo()
    backend.fetch_statuses([ProviderRef(1, "5")])  # forgotten: sent again
    assert len(calls) == 2


def test_refs_in_any_order_make_the_same_poll():
    backend = Backend(account())
    calls = stub(backend, '{"state": []}')
    backend.fetch_statuses([ProviderRef(1, "10"), ProviderRef(2, "9")])
    backend.fetch_statuses([ProviderRef(2, "9"), ProviderRef(1, "10")])
    assert len(calls) == 1
    assert json.loads(calls[0].data)["state"] == [{"id_message": "9"}, {"id_message": "10"}]


def test_the_gateway_has_no_callbacks():
    backend = Backend(account())
    assert backend.has_callbacks is False
    assert backend.parse_callback(SimpleNamespace(body=b"", GET={})) == []
