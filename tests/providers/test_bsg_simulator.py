"""The BSG backend against the BSG simulator, over real HTTP on loopback."""

import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from django.test import RequestFactory

from providers.backends import bsg as bsg_module
from providers.backends.bsg import Backend
from providers.base import OutgoingMessage, ProviderError, ProviderRef
from providers.simulators.base import SimulatorConfig
from providers.simulators.bsg import BsgSimulator
from providers.status import DeliveryStatus

FIXTURES = Path(__file__).parent / "fixtures" / "bsg"


@pytest.fixture(scope="module")
def server():
    # One server for the module: stopping one takes up to half a second (the poll
    # interval of serve_forever), so each test resets it instead.
    simulator = BsgSimulator(senders={"Shop", "BSG"}).start()
    yield simulator
    simulator.stop()


def fresh(simulator, sms_outcome_mix=None, **knobs):
    simulator.reset()
    simulator.config = SimulatorConfig(delivery_delay=0.05, seed=7, **knobs)
    simulator.rng.seed(7)
    simulator.sms_outcome_mix = sms_outcome_mix
    return simulator


@pytest.fixture
def sim(server):
    return fresh(server)


@pytest.fixture
def cascade_sim(server):
    """Viber always fails, the SMS fallback always arrives."""
    return fresh(server, outcome_mix={"undeliverable": 1.0}, sms_outcome_mix={"delivered": 1.0})


class Hook:
    """A tiny callback receiver: records every POST and answers with the next status."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.received = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.lock:
                    hook.received.append((self.path, body))
                    status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/providers/webhooks/bsg/1/s/"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    receiver = Hook()
    yield receiver
    receiver.stop()


def account_for(simulator, **overrides):
    values = {
        "pk": None,
        "name": "BSG",
        "base_url": simulator.url + "/rest",
        "credentials": {"api_key": "live_test"},
        "sender_names": {"viber": "Shop", "sms": "Shop"},
        "options": {},
        "timeout_seconds": 5,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def message(index, **fields):
    values = {
        "delivery_id": index,
        "idempotency_key": f"k{index}",
        "channel": "viber",
        "phone": f"7916{index:07d}",
        "text": "Weekend sale: -20% on everything with your card!",
        "sms_text": "Weekend sale -20%",
    }
    values.update(fields)
    return OutgoingMessage(**values)


def wait_for(condition, timeout=3.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def refs(results):
    return [ProviderRef(r.delivery_id, r.provider_message_id, r.idempotency_key) for r in results]


def test_fifty_recipients_go_in_one_request_and_all_are_accepted(sim):
    results = Backend(account_for(sim)).send([message(i) for i in range(50)])
    assert all(result.accepted for result in results)
    assert len({result.provider_message_id for result in results}) == 50
    assert {result.price for result in results} == {Decimal("0.023")}
    stats = sim.stats()
    assert (stats["requests"], stats["accepted"], stats["keys"]) == (1, 50, 50)


def test_fifty_one_recipients_in_one_request_are_refused_with_12(sim, monkeypatch):
    monkeypatch.setattr(bsg_module, "MAX_RECIPIENTS", 60)  # make the backend overfill
    with pytest.raises(ProviderError) as caught:
        Backend(account_for(sim)).send([message(i) for i in range(51)])
    assert (caught.value.permanent, caught.value.code) == (True, "12")
    assert sim.accepted_total == 0


def test_the_backend_splits_a_larger_batch_into_requests_of_fifty(sim):
    results = Backend(account_for(sim)).send([message(i) for i in range(120)])
    assert sum(result.accepted for result in results) == 120
    assert sim.stats()["requests"] == 3


def test_a_bad_key_is_a_permanent_error(sim):
    backend = Backend(account_for(sim, credentials={"api_key": "live_wrong"}))
    with pytest.raises(ProviderError) as caught:
        backend.send([message(1)])
    assert (caught.value.permanent, caught.value.code, caught.value.status_code) == (
        True,
        "1",
        401,
    )
    assert "Invalid API key" in str(caught.value)


def test_resubmitted_references_are_not_sent_twice_and_come_back_with_their_ids(sim):
    backend = Backend(account_for(sim))
    batch = [message(i) for i in range(3)] + [message(9, channel="sms", text="Code 42")]
    first = backend.send(batch)
    again = backend.send(batch)
    assert all(result.accepted for result in first + again)
    assert [r.provider_message_id for r in again] == [r.provider_message_id for r in first]
    assert [r.error_code for r in again] == ["43", "43", "43", "23"]
    assert [r.error_code for r in first] == ["", "", "", ""]
    assert sim.key_submissions == {"k0": 1, "k1": 1, "k2": 1, "k9": 1}
    assert sim.accepted_total == 4


def test_the_seeds_sample_request_is_accepted_with_a_conforming_reference(sim):
    body = json.loads((FIXTURES / "viber_create_request.json").read_text())
    body["messages"][0]["to"][0]["reference"] = "extid19"
    answer = requests.put(
        sim.url + "/rest/viber/create", json=body, headers={"X-API-KEY": "live_test"}, timeout=5
    ).json()
    [entry] = answer["result"]
    assert (entry["error"], entry["reference"], entry["currency"]) == (0, "extid19", "EUR")
    assert answer["total_price"] == entry["price"]
    assert sim.find_by_key("extid19").channels == ["viber", "sms"]


def test_the_seeds_own_reference_breaks_the_documented_reference_rule(sim):
    body = json.loads((FIXTURES / "viber_create_request.json").read_text())
    answer = requests.put(
        sim.url + "/rest/viber/create", json=body, headers={"X-API-KEY": "live_test"}, timeout=5
    ).json()
    assert answer["result"] == [
        {"error": 47, "errorDescription": "Invalid External ID", "reference": "ext_id_19"}
    ]


def test_recipient_errors_come_back_per_recipient(sim):
    backend = Backend(account_for(sim))
    results = backend.send(
        [
            message(1),
            message(2, phone="12345"),
            message(3, idempotency_key="bad_key"),
            message(4, image_url="https://shop.example/a.png"),
        ]
    )
    assert [(r.accepted, r.error_code, r.permanent) for r in results] == [
        (True, "", True),
        (False, "41", True),
        (False, "47", True),
        (False, "49", True),
    ]


def test_an_unregistered_sender_is_refused_with_45(sim):
    backend = Backend(account_for(sim, sender_names={"viber": "Nobody", "sms": "Shop"}))
    [result] = backend.send([message(1)])
    assert (result.accepted, result.error_code, result.permanent) == (False, "45", True)


def test_viber_undeliverable_falls_back_to_sms_and_both_legs_are_polled(cascade_sim):
    backend = Backend(account_for(cascade_sim))
    results = backend.send([message(i, fallback_channels=["sms"]) for i in range(2)])
    assert all(result.accepted for result in results)

    def legs():
        return backend.fetch_statuses(refs(results))

    assert wait_for(lambda: any(e.status == DeliveryStatus.DELIVERED for e in legs()))
    assert wait_for(lambda: len(legs()) == 4 and legs()[1].status == DeliveryStatus.DELIVERED)
    events = legs()
    assert [(e.channel, e.status) for e in events] == [
        ("viber", DeliveryStatus.UNDELIVERABLE),
        ("sms", DeliveryStatus.DELIVERED),
    ] * 2
    assert events[0].provider_message_id == results[0].provider_message_id
    assert events[1].provider_message_id.startswith("sms:")
    assert events[1].idempotency_key == "k0"
    # The SMS leg can also be asked about by its own id.
    [leg] = backend.fetch_statuses([ProviderRef(0, events[1].provider_message_id)])
    assert (leg.channel, leg.status) == ("sms", DeliveryStatus.DELIVERED)


def test_a_delivered_viber_message_has_no_sms_leg(sim):
    backend = Backend(account_for(sim))
    results = backend.send([message(1, fallback_channels=["sms"])])
    assert wait_for(
        lambda: backend.fetch_statuses(refs(results))[0].status == DeliveryStatus.DELIVERED
    )
    events = backend.fetch_statuses(refs(results))
    assert [(e.channel, e.status) for e in events] == [("viber", DeliveryStatus.DELIVERED)]


def test_an_sms_only_step_is_sent_and_polled_through_the_sms_api(sim):
    backend = Backend(account_for(sim))
    results = backend.send([message(i, channel="sms", text="Code 1234") for i in range(3)])
    assert all(r.provider_message_id.startswith("sms:") for r in results)
    assert wait_for(
        lambda: (
            [e.status for e in backend.fetch_statuses(refs(results))]
            == [DeliveryStatus.DELIVERED] * 3
        )
    )
    assert all(e.channel == "sms" for e in backend.fetch_statuses(refs(results)))


def test_an_unknown_message_gives_no_status(sim):
    assert Backend(account_for(sim)).fetch_statuses([ProviderRef(1, "424242")]) == []
    assert Backend(account_for(sim)).fetch_statuses([ProviderRef(1, "sms:424242")]) == []


@pytest.mark.parametrize(
    ("knob", "status_code"),
    [("error_rate", 500), ("drop_rate", None), ("malformed_rate", 200)],
)
def test_gateway_faults_are_transient_errors(sim, knob, status_code):
    setattr(sim.config, knob, 1.0)
    backend = Backend(account_for(sim))
    with pytest.raises(ProviderError) as caught:
        backend.send([message(1)])
    assert caught.value.permanent is False
    assert caught.value.status_code == status_code
    with pytest.raises(ProviderError) as polled:
        backend.fetch_statuses([ProviderRef(1, "1000001")])
    assert polled.value.permanent is False
    assert sim.accepted_total == 0


def test_a_gateway_that_does_not_answer_in_time_is_a_transient_error(sim):
    sim.config.timeout_rate = 1.0
    sim.config.timeout_seconds = 0.6
    backend = Backend(account_for(sim, timeout_seconds=0.2))
    with pytest.raises(ProviderError) as caught:
        backend.send([message(1)])
    assert caught.value.permanent is False
    assert caught.value.may_have_reached is True
    assert "timed out" in str(caught.value)


def test_callbacks_reach_cascade_and_parse_into_both_legs(server, hook):
    simulator = fresh(server, outcome_mix={"expired": 1.0}, sms_outcome_mix={"delivered": 1.0})
    backend = Backend(account_for(simulator))
    [result] = backend.send([message(1, fallback_channels=["sms"], callback_url=hook.url)])
    # One callback when Viber expires, one more when the SMS leg is delivered.
    assert wait_for(lambda: len(hook.received) == 2)
    factory = RequestFactory()
    parsed = [
        backend.parse_callback(factory.post(path, data=body, content_type="application/json"))
        for path, body in hook.received
    ]
    assert [(e.channel, e.status) for e in parsed[0]] == [
        ("viber", DeliveryStatus.EXPIRED),
        ("sms", DeliveryStatus.SENT),
    ]
    assert [(e.channel, e.status) for e in parsed[1]] == [
        ("viber", DeliveryStatus.EXPIRED),
        ("sms", DeliveryStatus.DELIVERED),
    ]
    assert parsed[1][0].provider_message_id == result.provider_message_id
    assert parsed[1][1].idempotency_key == "k1"


def test_an_sms_callback_is_marked_so_its_id_is_read_as_an_sms_id(sim, hook):
    backend = Backend(account_for(sim))
    [result] = backend.send([message(1, channel="sms", text="Code 1", callback_url=hook.url)])
    assert wait_for(lambda: len(hook.received) == 1)
    path, body = hook.received[0]
    assert path.endswith("?bsg_api=sms")
    request = RequestFactory().post(path, data=body, content_type="application/json")
    [event] = backend.parse_callback(request)
    assert (event.provider_message_id, event.status) == (
        result.provider_message_id,
        DeliveryStatus.DELIVERED,
    )


def test_a_refused_callback_is_retried(server, hook):
    hook.statuses = [500, 200]
    simulator = fresh(server, callback_time_scale=0.01)
    Backend(account_for(simulator)).send([message(1, callback_url=hook.url)])
    assert wait_for(lambda: len(hook.received) == 2)
    assert (simulator.callbacks_failed, simulator.callbacks_sent) == (1, 1)
    assert hook.received[0][1] == hook.received[1][1]


def test_the_simulator_keeps_up_with_thousands_of_recipients_a_second(sim):
    sim.config.send_callbacks = False
    backend = Backend(account_for(sim))
    started = time.perf_counter()
    results = backend.send([message(i) for i in range(2000)])
    elapsed = time.perf_counter() - started
    assert sum(result.accepted for result in results) == 2000
    # ~0.2 s here; 40 requests that each waited for a delayed ACK would take ~1.8 s.
    assert elapsed < 1.0, f"2000 recipients took {elapsed:.2f} s"


def test_a_failed_request_keeps_the_results_of_the_requests_before_it(sim, monkeypatch):
    backend = Backend(account_for(sim))
    submit = backend.submit

    def sms_answer_lost(chunk):
        if chunk.detail[0] == "sms":
            sim.config.error_after_store_rate = 1.0  # BSG stores the SMS, its answer is a 500
        return submit(chunk)

    monkeypatch.setattr(backend, "submit", sms_answer_lost)
    viber, sms, later = backend.send(
        [
            message(1),
            message(2, channel="sms", text="First SMS"),
            message(3, channel="sms", text="Another SMS, another request"),
        ]
    )
    assert viber.accepted and viber.provider_message_id  # recorded, not thrown away
    assert (sms.accepted, sms.permanent, sms.may_have_reached) == (False, False, True)
    assert (later.accepted, later.permanent, later.may_have_reached) == (False, False, False)
    assert sim.stats()["requests"] == 2  # the third request was never made


def test_a_failure_of_a_single_request_fails_the_batch_as_a_whole(sim):
    sim.config.error_rate, sim.config.error_status = 1.0, 503
    with pytest.raises(ProviderError) as caught:
        Backend(account_for(sim)).send([message(1), message(2)])
    assert (caught.value.permanent, caught.value.may_have_reached) == (False, False)


def test_a_failure_of_the_first_of_two_requests_leaves_the_second_unsent(sim):
    sim.config.error_rate, sim.config.error_status = 1.0, 503
    results = Backend(account_for(sim)).send([message(1), message(2, channel="sms")])
    assert [(r.accepted, r.permanent, r.may_have_reached) for r in results] == [
        (False, False, False),  # turned away (503)
        (False, False, False),  # never sent
    ]
    assert sim.stats()["requests"] == 1
