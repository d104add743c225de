"""The cascade gateway backend against its simulator over HTTP, in all three flavours."""

# ruff: noqa: RUF001

import itertools
import json
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import defusedxml.ElementTree as SafeET
import pytest
import requests

from providers.backends.cascade_gateway import Backend, client_id_for
from providers.base import OutgoingMessage, ProviderError, ProviderRef
from providers.simulators.base import SimulatorConfig
from providers.simulators.cascade_gateway import CascadeGatewaySimulator, sms_parts

FIXTURES = Path(__file__).parent / "fixtures" / "cascade_gateway"
FLAVOURS = ["json", "xml", "get"]
IDENTICAL = "Попытка отправки более одного одинакового запроса в течение минуты"
_pks = itertools.count(1000)


@pytest.fixture
def sim():
    # A short "identical request" window so tests can poll repeatedly; the
    # test of the rule itself widens it.
    simulator = CascadeGatewaySimulator(
        config=SimulatorConfig(delivery_delay=0.1, seed=7), identical_window=0.05
    ).start()
    yield simulator
    simulator.stop()


def account_for(sim, flavour="json", password=None, **options):
    return SimpleNamespace(
        pk=next(_pks),
        name="Gateway",
        base_url=sim.url,
        credentials={"login": "demo", "password": password or "demo-pass"},
        sender_names={"viber": "SunriseMkt", "sms": "SunriseMkt"},
        channels=["viber", "vk", "sms"],
        options={"flavour": flavour, "identical_request_seconds": 0.05, **options},
        timeout_seconds=5,
    )


def message(index, run="", **fields):
    values = {
        "delivery_id": index,
        "idempotency_key": f"{run}{index}",
        "channel": "viber",
        "fallback_channels": ["sms"],
        "phone": f"7916{index:07d}",
        "text": "Скидка 20% на всё до воскресенья!",
        "sms_text": "Sunrise: -20% do voskresenya",
    }
    values.update(fields)
    return OutgoingMessage(**values)


def refs(results):
    return [
        ProviderRef(r.delivery_id, r.provider_message_id, r.idempotency_key)
        for r in results
        if r.accepted
    ]


def poll_until_final(backend, results, timeout=3.0):
    """Poll until every message has a final overall event; returns the last events per id."""
    wanted = {r.provider_message_id for r in results if r.accepted}
    final: dict[str, list] = {}
    deadline = time.time() + timeout
    while time.time() < deadline and set(final) != wanted:
        time.sleep(0.06)
        events = backend.fetch_statuses(refs(results))
        for message_id in wanted:
            mine = [e for e in events if e.provider_message_id == message_id]
            overall = [e for e in mine if e.channel == ""]
            if overall and overall[0].status != "sent":
                final[message_id] = mine
    assert set(final) == wanted, "messages did not reach a final status"
    return final


def set_fates(sim, results, **outcomes):
    """Decide each channel's fate before the first poll looks at it."""
    with sim.lock:
        for result in results:
            sim.messages[result.provider_message_id].outcomes.update(outcomes)


# ---- send and poll, every flavour ----


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_it_sends_and_polls_to_delivered_over_each_flavour(sim, flavour):
    backend = Backend(account_for(sim, flavour))
    results = backend.send([message(1), message(2), message(3)])
    assert all(r.accepted and r.status == "sent" for r in results)
    assert len({r.provider_message_id for r in results}) == 3
    final = poll_until_final(backend, results)
    for result in results:
        events = final[result.provider_message_id]
        by_channel = {e.channel: e for e in events}
        assert by_channel[""].status == "delivered"
        if flavour != "get":  # GET answers only the overall word
            # The cascade stopped on Viber: no SMS report at all.
            assert set(by_channel) == {"viber", ""}
            assert by_channel["viber"].price == Decimal("0.85")
            assert "id_viber" in result.raw and "id_sms" in result.raw
    assert sim.stats()["accepted"] == 3


@pytest.mark.parametrize("flavour", ["json", "xml"])
def test_viber_undeliverable_falls_through_to_sms_delivered(sim, flavour):
    sim.config.delivery_delay = 0.6
    backend = Backend(account_for(sim, flavour))
    long_sms = "Ж" * 100  # UCS-2: two parts
    results = backend.send([message(1, sms_text=long_sms)])
    set_fates(sim, results, viber="undeliverable", sms="delivered")
    time.sleep(0.4)  # Viber is final at 0.3 s, SMS at 0.6 s
    midway = {e.channel: e.status for e in backend.fetch_statuses(refs(results))}
    assert midway == {"viber": "undeliverable", "": "sent"}
    events = poll_until_final(backend, results)[results[0].provider_message_id]
    summary = {e.channel: (e.status, e.price, e.parts) for e in events}
    assert summary == {
        "viber": ("undeliverable", Decimal("0.85"), None),
        "sms": ("delivered", Decimal("4.90"), 2),
        "": ("delivered", None, None),
    }


@pytest.mark.parametrize("read_is_final", [False, True])
def test_finale_viber_read_makes_an_unread_viber_message_fall_through(sim, read_is_final):
    backend = Backend(account_for(sim, finale_viber_read=read_is_final))
    results = backend.send([message(1)])
    set_fates(sim, results, viber="delivered", sms="delivered")
    events = poll_until_final(backend, results)[results[0].provider_message_id]
    channels = {e.channel: e.status for e in events}
    if read_is_final:
        assert channels == {"viber": "delivered", "sms": "delivered", "": "delivered"}
    else:
        assert channels == {"viber": "delivered", "": "delivered"}


def test_a_read_viber_message_ends_the_cascade_even_with_finale_viber_read(sim):
    backend = Backend(account_for(sim, finale_viber_read=True))
    results = backend.send([message(1)])
    set_fates(sim, results, viber="read", sms="delivered")
    events = poll_until_final(backend, results)[results[0].provider_message_id]
    assert {e.channel: e.status for e in events} == {"viber": "read", "": "delivered"}


def test_vk_runs_from_the_accounts_template(sim):
    backend = Backend(account_for(sim, vk_template_id=100, vk_template_data={"Name": "Анна"}))
    results = backend.send([message(1, fallback_channels=["vk", "sms"])])
    assert all(f"id_{channel}" in results[0].raw for channel in ("viber", "vk", "sms"))
    stored = sim.messages[results[0].provider_message_id]
    assert stored.channels == ["viber", "vk", "sms"]
    assert stored.request["templateData"] == {"Name": "Анна"}


def test_an_unknown_id_polls_as_unknown_with_the_gateways_words(sim):
    backend = Backend(account_for(sim))
    events = backend.fetch_statuses([ProviderRef(1, "999")])
    assert [(e.status, e.provider_status) for e in events] == [
        ("unknown", "Сообщение с таким ID не принималось")
    ]


# ---- the seed's sample requests, replayed ----


def test_the_seeds_json_sample_request_is_accepted(sim):
    body = (FIXTURES / "json_send_request.json").read_bytes()
    answer = requests.post(
        f"{sim.url}/sendmessagejson.php",
        data=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=5,
    ).json()
    items = [item for entry in answer["message"] for item in entry]
    assert [item["phone"] for item in items] == [
        "79801234567",
        "79800000001",
        "79800000002",
        "79800000003",
    ]
    assert all(item["id_message"].isdigit() and "error" not in item for item in items)
    assert items[0]["id_vk"] != "0" and items[2]["id_sms"] == "0"
    # The third sample message has no send_* at all: it goes by Viber.
    assert sim.messages[items[3]["id_message"]].channels == ["viber"]
    state = json.loads((FIXTURES / "json_state_request.json").read_text())
    state["state"] = [{"id_message": item["id_message"]} for item in items[:2]]
    answer = requests.post(f"{sim.url}/sendmessagejson.php", json=state, timeout=5).json()
    assert [item["state"] for item in answer["state"]] == ["send", "send"]


def test_the_seeds_xml_sample_request_is_accepted(sim):
    body = (FIXTURES / "xml_send_request.xml").read_bytes()
    response = requests.post(
        f"{sim.url}/xml/message.php",
        data=body,
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=5,
    )
    root = SafeET.fromstring(response.content)
    information = root.findall("message/information")
    assert [element.text for element in information] == ["send"] * 4
    assert all(element.get("id_message") for element in information)
    state = (FIXTURES / "xml_state_request.xml").read_text()
    ids = [element.get("id_message") for element in information[:3]]
    for placeholder, real in zip(["111", "112", "113"], ids, strict=True):
        state = state.replace(f"<id_message>{placeholder}<", f"<id_message>{real}<")
    root = SafeET.fromstring(
        requests.post(f"{sim.url}/xml/state_message.php", data=state.encode(), timeout=5).content
    )
    assert [(s.get("id_message"), s.text) for s in root.findall("state")] == [
        (message_id, "send") for message_id in ids
    ]


def test_the_seeds_get_sample_requests_are_accepted(sim):
    url = (FIXTURES / "get_send_request.txt").read_text().strip()
    local = sim.url + "/sendmessage.php?" + urlsplit(url).query
    message_id = requests.get(local, timeout=5).text
    assert message_id.isdigit()
    assert sim.messages[message_id].channels == ["viber", "vk", "sms"]
    status_url = (FIXTURES / "get_status_request.txt").read_text().strip()
    query = urlsplit(status_url).query.replace("1179038981", message_id)
    assert requests.get(f"{sim.url}/sendmessage.php?{query}", timeout=5).text == "send"


def test_a_get_request_may_name_several_phones(sim):
    answer = requests.get(
        f"{sim.url}/sendmessage.php",
        params={
            "login": "demo",
            "password": "demo-pass",
            "phone": "79160000001,79160000002",
            "send_viber": "1",
            "sender_viber": "SunriseMkt",
            "text_viber": "Привет",
        },
        timeout=5,
    ).text
    assert len(answer.split(",")) == 2 and all(part.isdigit() for part in answer.split(","))


# ---- the gateway's rules ----


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_identical_request_within_a_minute_is_a_transient_error(sim, flavour):
    sim.identical_window = 60
    backend = Backend(account_for(sim, flavour))
    batch = [message(1)]
    assert backend.send(batch)[0].accepted
    with pytest.raises(ProviderError) as error:
        backend.send(batch)
    assert (error.value.permanent, error.value.code) == (False, "identical_request")
    assert sim.identical_refused == 1
    assert sim.stats()["accepted"] == 1


def test_an_identical_poll_is_not_sent_within_the_window(sim):
    sim.identical_window = 60
    backend = Backend(account_for(sim, identical_request_seconds=60))
    results = backend.send([message(1)])
    assert backend.fetch_statuses(refs(results))
    before = sim.stats()["requests"]
    assert backend.fetch_statuses(refs(results)) == []
    assert sim.stats()["requests"] == before
    assert sim.identical_refused == 0


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_repeated_client_id_message_is_not_sent_twice(sim, flavour):
    backend = Backend(account_for(sim, flavour))
    first = backend.send([message(1, run="r")])[0]
    # GET carries one recipient per request, so its resubmission is the identical
    # request: it may go out only once the gateway's window (here 0.05 s) is over.
    time.sleep(0.06)
    # A different request (another recipient added), so the identical-request rule is not what stops it.
    again, other = backend.send([message(1, run="r"), message(2, run="r")])
    assert again.accepted and again.provider_message_id == first.provider_message_id
    assert other.accepted and other.provider_message_id != first.provider_message_id
    key = f"demo:{client_id_for('r1')}"
    assert sim.key_submissions[key] == 1
    assert sim.stats()["duplicate_sends"] == {}
    assert sim.stats()["duplicate_keys"] == {key: 2}  # counted as received, before the dedupe
    assert sim.stats()["accepted"] == 2


def test_keys_that_are_not_numbers_are_deduplicated_too(sim):
    backend = Backend(account_for(sim))
    key = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    first = backend.send([message(1, idempotency_key=key)])[0]
    again = backend.send([message(1, idempotency_key=key), message(2)])[0]
    assert again.provider_message_id == first.provider_message_id
    assert sim.key_submissions == {
        f"demo:{client_id_for(key)}": 1,
        f"demo:{client_id_for('2')}": 1,
    }


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_viber_text_over_1000_characters_is_refused(sim, flavour):
    backend = Backend(account_for(sim, flavour))
    too_long, fine = backend.send([message(1, text="x" * 1001), message(2)])
    assert (too_long.accepted, too_long.permanent) == (False, True)
    assert "1000" in too_long.error_message
    assert fine.accepted
    assert sim.stats()["accepted"] == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_button_without_a_url_is_refused(sim, flavour):
    backend = Backend(account_for(sim, flavour))
    result = backend.send([message(1, button_caption="Подробнее")])[0]
    assert (result.accepted, result.error_code, result.permanent) == (False, "no_link", True)


def test_an_image_needs_a_button_and_a_caption_needs_19_characters_at_most(sim):
    backend = Backend(account_for(sim))
    no_button, long_caption = backend.send(
        [
            message(1, image_url="https://sunrise.example/a.png"),
            message(2, button_caption="x" * 20, button_url="https://sunrise.example"),
        ]
    )
    assert not no_button.accepted and "изображения" in no_button.error_message
    assert not long_caption.accepted and "19" in long_caption.error_message


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_wrong_password_is_a_permanent_error(sim, flavour):
    backend = Backend(account_for(sim, flavour, password="wrong"))
    with pytest.raises(ProviderError) as error:
        backend.send([message(1)])
    assert (error.value.permanent, error.value.code) == (True, "bad_credentials")
    with pytest.raises(ProviderError) as error:
        backend.fetch_statuses([ProviderRef(1, "1000001")])
    assert (error.value.permanent, error.value.code) == (True, "bad_credentials")


def test_a_bad_phone_is_refused_for_that_recipient_only(sim):
    backend = Backend(account_for(sim))
    bad, good = backend.send([message(1, phone="7916123456789012"), message(2)])
    assert (bad.accepted, bad.error_code) == (False, "phone_too_long")
    assert good.accepted


def test_an_xml_document_with_line_breaks_is_refused(sim):
    body = (FIXTURES / "xml_send_request.xml").read_text().replace("> <", ">\n<")
    answer = requests.post(f"{sim.url}/xml/message.php", data=body.encode(), timeout=5).text
    assert "<error>Неправильный формат XML документа</error>" in answer


def test_sms_parts_follow_gsm7_and_ucs2_limits():
    assert [sms_parts("a" * n) for n in (160, 161, 306, 307)] == [1, 2, 2, 3]
    assert [sms_parts("Ж" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]
    assert sms_parts("{" * 80) == 1 and sms_parts("{" * 81) == 2


# ---- faults ----


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("knob", ["error_rate", "drop_rate", "malformed_rate", "timeout_rate"])
def test_faults_are_transient_errors(sim, flavour, knob):
    setattr(sim.config, knob, 1.0)
    sim.config.timeout_seconds = 0.5
    account = account_for(sim, flavour)
    account.timeout_seconds = 0.2
    backend = Backend(account)
    with pytest.raises(ProviderError) as error:
        backend.send([message(1)])
    assert error.value.permanent is False
    with pytest.raises(ProviderError) as error:
        backend.fetch_statuses([ProviderRef(1, "1000001")])
    assert error.value.permanent is False
    assert sim.stats()["accepted"] == 0


def test_a_reply_goes_to_the_logins_inbound_url_in_the_format_the_backend_parses(sim):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    bodies = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        backend = Backend(account_for(sim))
        sent = backend.send([message(1, run="reply")])[0]
        assert sent.accepted
        control = f"{sim.url}/_sim"
        unset = requests.post(
            f"{control}/reply",
            json={"message_id": sent.provider_message_id, "text": "x"},
            timeout=5,
        )
        assert unset.status_code == 400 and "no inbound URL" in unset.json()["error"]
        url = f"http://127.0.0.1:{receiver.server_port}/in"
        assert requests.post(f"{control}/inbound", json={"login": "demo", "url": url}, timeout=5).ok
        answer = requests.post(
            f"{control}/reply",
            json={"message_id": sent.provider_message_id, "text": "СТОП"},
            timeout=5,
        )
        assert answer.ok
        deadline = time.monotonic() + 5
        while not bodies and time.monotonic() < deadline:
            time.sleep(0.02)
        [reply] = backend.parse_inbound(SimpleNamespace(body=bodies[0]))
        assert (reply.phone, reply.text, reply.channel) == ("79160000001", "СТОП", "viber")
        assert reply.provider_message_id == sent.provider_message_id
        assert reply.provider_reply_id == answer.json()["id_incoming"]
        assert reply.received_at is not None
    finally:
        receiver.shutdown()
