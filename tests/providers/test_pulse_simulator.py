"""The 1-pulse backend against the 1-pulse simulator, over real HTTP on loopback."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from providers.backends.pulse import Backend
from providers.base import OutgoingMessage, ProviderError
from providers.simulators.base import SimulatorConfig
from providers.simulators.pulse import PulseSimulator
from providers.status import DeliveryStatus

FIXTURES = Path(__file__).parent / "fixtures" / "pulse"


@pytest.fixture(scope="module")
def shared_sim():
    # One server for the module: stopping one takes half a second (serve_forever's poll).
    simulator = PulseSimulator().start()
    yield simulator
    simulator.stop()


@pytest.fixture
def sim(shared_sim):
    shared_sim.reset()
    shared_sim.config = SimulatorConfig(delivery_delay=0.05, callback_time_scale=0.001)
    shared_sim.progress_callbacks = True
    return shared_sim


class CallbackReceiver:
    """A tiny HTTP server standing in for Cascade's webhook; answers from a script."""

    def __init__(self, answers=()):
        self.answers = list(answers)  # HTTP statuses to give, in order; then 200
        self.hits: list[tuple[float, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with receiver.lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                    receiver.hits.append((time.monotonic(), self.path, query))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        return (
            f"http://127.0.0.1:{self.server.server_address[1]}/providers/webhooks/pulse/3/s3cret/"
        )

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.hits) >= count:
                    return [query for _t, _path, query in self.hits]
            time.sleep(0.01)
        raise AssertionError(f"expected {count} callbacks, got {len(self.hits)}")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = CallbackReceiver()
    yield server
    server.stop()


def account_for(sim, **options):
    return SimpleNamespace(
        pk=None,
        name="Pulse",
        base_url=f"{sim.url}/api/v1",
        credentials={"token": "test-token"},
        sender_names={"sms": "SunriseMkt", "viber": "SunriseV"},
        channels=list(Backend.channels),
        options=options,
        max_batch=500,
        timeout_seconds=5,
        callback_secrets=["s3cret"],
    )


def message(index=1, **fields):
    values = {
        "delivery_id": index,
        "idempotency_key": f"k{index}",
        "channel": "sms",
        "phone": f"7916{index:07d}",
        "text": "Скидка 20% по вашей карте",
    }
    values.update(fields)
    return OutgoingMessage(**values)


def post(sim, path, data):
    return requests.post(f"{sim.url}/api/v1/bulk/{path}", data=data, timeout=5).json()


# ---- sending ----
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_one_message_is_accepted_with_the_gateway_id(sim, method):
    [result] = Backend(account_for(sim, method=method)).send([message(1, ttl_minutes=90)])
    assert (result.accepted, result.status) == (True, DeliveryStatus.SENT)
    stored = sim.messages[result.provider_message_id]
    assert (stored.phone, stored.channels) == ("79160000001", ["sms"])
    assert stored.request["ttl"] == "90" and stored.request["sent_text"].startswith("Скидка")
    assert "token" not in stored.request


def test_a_list_is_accepted_item_by_item(sim):
    batch = [message(1), message(2, phone="123"), message(3), message(4, channel="viber")]
    results = Backend(account_for(sim)).send(batch)
    assert [r.accepted for r in results] == [True, False, True, True]
    assert (results[1].error_code, results[1].permanent) == ("invalid_recipient", True)
    ids = [r.provider_message_id for r in results if r.accepted]
    assert len(set(ids)) == 3
    assert [sim.messages[i].channels for i in ids] == [["sms"], ["sms"], ["viber"]]
    assert sim.messages[ids[2]].request["sender"] == "SunriseV"
    assert sim.stats()["rejected"] == 1


def test_a_wrong_token_is_a_permanent_error(sim):
    account = account_for(sim)
    account.credentials = {"token": "stolen"}
    with pytest.raises(ProviderError) as error:
        Backend(account).send([message(1), message(2)])
    assert (error.value.permanent, error.value.code) == (True, "invalid_token")
    assert sim.accepted_total == 0


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"channel": "viber", "text": "x" * 1001}, "too_long"),
        ({"channel": "viber", "button_caption": "Go"}, "invalid_button"),
        ({"phone": "+7 916"}, "invalid_recipient"),
    ],
)
def test_a_refused_message_is_a_permanent_per_recipient_failure(sim, fields, code):
    [result] = Backend(account_for(sim)).send([message(1, **fields)])
    assert (result.accepted, result.permanent, result.error_code) == (False, True, code)


def test_a_long_viber_text_at_the_limit_is_accepted(sim):
    [result] = Backend(account_for(sim)).send([message(1, channel="viber", text="x" * 1000)])
    assert result.accepted


def test_a_cascade_runs_the_scenario_mailing(sim):
    backend = Backend(account_for(sim, bulk_sender="1"))
    [result] = backend.send([message(1, channel="viber", fallback_channels=["sms"])])
    assert result.accepted
    assert sim.messages[result.provider_message_id].channels == ["viber", "sms"]


def test_an_unknown_scenario_mailing_is_a_permanent_error(sim):
    backend = Backend(account_for(sim, bulk_sender="99"))
    with pytest.raises(ProviderError) as error:
        backend.send([message(1, channel="viber", fallback_channels=["sms"])])
    assert (error.value.permanent, error.value.code) == (True, "invalid_scenario")


# ---- the seed's requests replayed ----
def test_the_sample_get_request_is_accepted(sim):
    path = (FIXTURES / "send-message.get.txt").read_text().strip()
    answer = requests.get(sim.url + path, timeout=5).json()
    assert answer["type"] == "success" and isinstance(answer["id"], int)
    stored = sim.messages[str(answer["id"])]
    assert stored.request["sent_date"] == "2024-06-01 12:00"
    assert stored.callback_url.endswith("?id={id}&status={status}&kannel=1")


def test_the_sample_post_request_is_accepted(sim):
    body = (FIXTURES / "send-message.post.txt").read_text().strip()
    answer = requests.post(
        f"{sim.url}/api/v1/bulk/send-message",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    ).json()
    assert answer["type"] == "success"
    assert sim.messages[str(answer["id"])].request["button"] == "Подробнее"


def test_the_sample_list_request_is_accepted(sim):
    params = json.loads((FIXTURES / "send-list-messages.params.json").read_text())
    params["messages"] = json.dumps(params["messages"], ensure_ascii=False)
    answer = post(sim, "send-list-messages", params)
    assert answer["type"] == "success"
    assert [item["type"] for item in answer["messages"]] == ["success"] * 3
    email = sim.messages[str(answer["messages"][2]["id"])]
    assert (email.channels, email.phone) == (["email"], "anna@example.com")


# ---- the simulator's own validation ----
GOOD = {"token": "test-token", "type": "sms", "sent_to": "79161234567", "sent_text": "Hi"}


@pytest.mark.parametrize(
    ("changes", "msg"),
    [
        ({"token": None}, "Token is required"),
        ({"token": "nope"}, "Invalid token"),
        ({"type": None}, "Field type (message type) is required"),
        ({"type": "fax"}, "Unknown message type: fax"),
        ({"sent_to": None}, "Field sent_to is required"),
        ({"sent_to": "+79161234567"}, "Invalid recipient for type sms: +79161234567"),
        ({"sent_text": None}, "Field sent_text is required"),
        ({"sent_date": "01.06.2024 12:00"}, "Invalid sent_date, expected YYYY-MM-DD HH:MM"),
        ({"sent_date": "2024-06-01 12:00:00"}, "Invalid sent_date, expected YYYY-MM-DD HH:MM"),
        ({"ttl": "1.5"}, "Field ttl must be an integer number of minutes"),
        ({"charset": "KOI8-R"}, "Unsupported charset: KOI8-R"),
        ({"type": "viber", "sent_text": "я" * 1001}, "Viber text is longer than 1000 characters"),
        ({"type": "viber", "button": "Go"}, "Field button requires action (the button's URL)"),
        ({"type": "email"}, "Invalid recipient for type email: 79161234567"),
        ({"type": "bulk", "sender": "5"}, "Scenario mailing not found: 5"),
    ],
)
def test_the_simulator_refuses_what_the_docs_forbid(sim, changes, msg):
    data = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    assert post(sim, "send-message", data) == {"type": "error", "msg": msg}
    assert sim.accepted_total == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"charset": "CP1251"},
        {"ttl": "60", "sent_date": "2024-06-01 23:59"},
        {"type": "email", "sent_to": "a@b.example", "sent_text": None, "html_text": "<p>x</p>"},
        {"type": "push", "sent_to": "tokA,tokB"},
        {"type": "push", "sent_to": "79161234567", "find_token": "1"},
        {"type": "bulk", "sender": "1", "sent_to": "a@b.example"},
        {"type": "viber", "button": "Go", "action": "https://g.example", "image": "https://i.png"},
    ],
)
def test_the_simulator_accepts_what_the_docs_allow(sim, changes):
    data = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    answer = post(sim, "send-message", data)
    assert answer["type"] == "success", answer


def test_a_list_that_is_not_json_is_refused_as_a_whole(sim):
    answer = post(sim, "send-list-messages", {"token": "test-token", "messages": "[{"})
    assert answer == {"type": "error", "msg": "Field messages must be a JSON array of messages"}


# ---- faults ----
@pytest.mark.parametrize("knob", ["error_rate", "drop_rate", "malformed_rate"])
def test_gateway_faults_are_transient_errors(sim, knob):
    setattr(sim.config, knob, 1.0)
    with pytest.raises(ProviderError) as error:
        Backend(account_for(sim)).send([message(1)])
    assert error.value.permanent is False


def test_a_timeout_is_a_transient_error(sim):
    sim.config.timeout_rate = 1.0
    sim.config.timeout_seconds = 2
    account = account_for(sim)
    account.timeout_seconds = 1
    started = time.monotonic()
    with pytest.raises(ProviderError, match="timed out") as error:
        Backend(account).send([message(1)])
    assert error.value.permanent is False
    assert error.value.may_have_reached is True  # sent, then no answer: it may be there
    assert time.monotonic() - started < 1.9


# ---- callbacks ----
def test_callbacks_bring_the_id_then_sent_then_the_final_status(sim, receiver):
    backend = Backend(account_for(sim))
    [result] = backend.send([message(7, callback_url=receiver.url)])
    hits = receiver.wait_for(2)
    assert [hit["status"] for hit in hits] == ["sent", "delivered"]
    assert {(hit["id"], hit["key"]) for hit in hits} == {(result.provider_message_id, "k7")}
    assert receiver.hits[0][1].startswith("/providers/webhooks/pulse/3/s3cret/?id=")


def test_kannel_callbacks_carry_dlr_codes(sim, receiver):
    sim.config.outcome_mix = {"undeliverable": 1.0}
    backend = Backend(account_for(sim, kannel_status=True))
    backend.send([message(1, callback_url=receiver.url)])
    hits = receiver.wait_for(2)
    assert [(hit["status"], hit["kannel"]) for hit in hits] == [("8", "1"), ("2", "1")]
    assert [Backend.normalize(hit["status"], kannel=True) for hit in hits] == [
        DeliveryStatus.SENT,
        DeliveryStatus.UNDELIVERABLE,
    ]


@pytest.mark.parametrize(
    ("outcome", "word"),
    [("read", "read"), ("undeliverable", "undelivered"), ("expired", "expired")],
)
def test_each_fate_has_its_callback_word(sim, receiver, outcome, word):
    sim.config.outcome_mix = {outcome: 1.0}
    sim.progress_callbacks = False
    Backend(account_for(sim)).send([message(1, callback_url=receiver.url)])
    assert receiver.wait_for(1)[0]["status"] == word


def test_a_failed_callback_is_retried_until_it_gets_200(sim, receiver):
    sim.progress_callbacks = False
    receiver.answers = [500]
    [result] = Backend(account_for(sim)).send([message(1, callback_url=receiver.url)])
    hits = receiver.wait_for(2)
    assert [hit["id"] for hit in hits] == [result.provider_message_id] * 2
    gap = receiver.hits[1][0] - receiver.hits[0][0]
    assert gap >= 0.055  # the 1-minute retry, scaled by 0.001
    time.sleep(0.8)  # past the 10-minute retry: nothing more once one got through
    assert len(receiver.hits) == 2
    assert (sim.callbacks_failed, sim.callbacks_sent) == (1, 1)


def test_a_callback_is_tried_three_times_in_all(sim, receiver):
    sim.progress_callbacks = False
    receiver.answers = [500, 503, 404, 500]
    Backend(account_for(sim)).send([message(1, callback_url=receiver.url)])
    receiver.wait_for(3)
    gaps = [b[0] - a[0] for a, b in zip(receiver.hits, receiver.hits[1:], strict=False)]
    assert gaps[0] >= 0.055 and gaps[1] >= 0.55  # 1 and 10 minutes, scaled
    time.sleep(0.3)
    assert len(receiver.hits) == 3
    assert sim.callbacks_failed == 3


def test_no_callback_url_means_no_callbacks(sim, receiver):
    Backend(account_for(sim)).send([message(1)])
    time.sleep(0.2)
    assert receiver.hits == [] and sim.callbacks_sent == 0
