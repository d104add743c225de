"""providers.base: the fixed send pipeline, what a failed request says about whether the
gateway may have the message, the one rule dispatch and the sweeper follow after a failure,
and the shared helpers."""

import logging
import socket
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from providers.base import (
    Backend,
    Chunk,
    ConfigurationError,
    OutgoingMessage,
    ProviderError,
    SendResult,
    after_failure,
    failed,
    parse_decimal,
    parse_time,
)


class Answer(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = int(self.path.strip("/"))
        if status == 0:
            time.sleep(1.5)  # took the request, answers too late
            status = 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def backend():
    return Backend(SimpleNamespace(pk=None, timeout_seconds=0.5, name="test"))


def failure(url):
    with pytest.raises(ProviderError) as caught:
        backend().request("POST", url, data=b"x")
    return caught.value


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_refused_connection_cannot_have_reached_the_gateway():
    error = failure(f"http://127.0.0.1:{closed_port()}/send")
    assert (error.permanent, error.may_have_reached) == (False, False)


def test_an_unresolvable_host_cannot_have_reached_the_gateway():
    error = failure("http://no-such-gateway.invalid/send")
    assert (error.permanent, error.may_have_reached) == (False, False)


def test_no_answer_in_time_may_have_reached_the_gateway(server):
    error = failure(f"{server}/0")
    assert "timed out" in str(error)
    assert (error.permanent, error.may_have_reached) == (False, True)


@pytest.mark.parametrize(
    ("status", "reached"), [(429, False), (503, False), (500, True), (502, True), (504, True)]
)
def test_server_errors_say_whether_the_gateway_turned_the_request_away(server, status, reached):
    error = failure(f"{server}/{status}")
    assert error.status_code == status
    assert (error.permanent, error.may_have_reached) == (False, reached)


def test_a_permanent_error_never_reached_and_a_transient_one_is_assumed_to():
    assert ProviderError("bad token", permanent=True).may_have_reached is False
    assert ProviderError("odd answer", permanent=False).may_have_reached is True
    assert (
        ProviderError("refused", permanent=False, may_have_reached=False).may_have_reached is False
    )


@pytest.mark.parametrize(
    ("permanent", "reached", "idempotent", "decision"),
    [
        (True, False, False, "fail"),
        (True, True, True, "fail"),
        (False, False, False, "retry"),
        (False, False, True, "retry"),
        (False, True, True, "retry"),  # the same key is refused the second time
        (False, True, False, "wait"),  # a resend would be a second message
    ],
)
def test_after_failure(permanent, reached, idempotent, decision):
    assert (
        after_failure(permanent=permanent, may_have_reached=reached, idempotent=idempotent)
        == decision
    )


def test_failed_keeps_the_error_for_each_recipient():
    error = ProviderError("lost", permanent=False, code="x", response_text="raw")
    items = [(n, sms(n)) for n in (0, 1)]
    results = failed(items, error, may_have_reached=None)
    assert [
        (r.delivery_id, r.accepted, r.permanent, r.may_have_reached) for r in results.values()
    ] == [
        (0, False, False, True),  # the error's own judgement: a transient error may have reached
        (1, False, False, True),
    ]
    assert results[0].error_code == "x" and results[0].raw == "raw"
    assert failed(items, error, may_have_reached=False)[1].may_have_reached is False


# ---- the pipeline, over a scripted backend (no wire: the backends' tests cover that) ----


def sms(n, **fields):
    return OutgoingMessage(
        delivery_id=n,
        idempotency_key=f"k{n}",
        channel=fields.pop("channel", "sms"),
        phone=fields.pop("phone", f"7900000000{n}"),
        **fields,
    )


class Scripted(Backend):
    """Two recipients per request; answers as scripted, one entry per request."""

    name = "scripted"
    channels = ("sms", "email")
    max_batch = 2

    def __init__(self, *answers):
        super().__init__(SimpleNamespace(pk=None, name="scripted", max_batch=2, credentials={}))
        self.answers = list(answers)
        self.submitted: list[list[int]] = []

    def submit(self, chunk: Chunk):
        self.submitted.append([message.delivery_id for _index, message in chunk.items])
        answer = self.answers.pop(0)
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    def parse_results(self, chunk, answer):
        return {
            index: SendResult(message.delivery_id, message.idempotency_key, accepted=True)
            for index, message in chunk.items
            if message.delivery_id in answer
        }


def test_results_come_in_batch_order_with_refusals_for_what_cannot_go():
    backend = Scripted({1, 3}, {4})
    batch = [sms(1), sms(2, channel="vk"), sms(3), sms(4, phone=""), sms(5, channel="email")]
    results = backend.send([*batch[:4], sms(4, channel="sms"), batch[4]][:5])
    assert backend.submitted == [[1, 3], [4]]
    assert [r.delivery_id for r in results] == [1, 2, 3, 4, 4]
    assert [r.error_code for r in results] == ["", "channel", "", "no_address", ""]
    assert results[1].permanent and not results[1].accepted


def test_a_recipient_the_answer_leaves_out_is_not_answered_and_may_be_resent():
    [first, second] = Scripted({1}).send([sms(1), sms(2)])
    assert first.accepted
    assert (second.accepted, second.error_code, second.permanent) == (False, "no_answer", False)


def test_the_only_request_failing_raises_so_the_batch_fails_alike():
    with pytest.raises(ProviderError):
        Scripted(ProviderError("down", permanent=False)).send([sms(1), sms(2)])


def test_a_request_failing_after_others_keeps_their_results_and_the_rest_never_left():
    timeout = ProviderError("no answer in time", permanent=False)
    backend = Scripted({1, 2}, timeout, {5})
    results = backend.send([sms(n) for n in range(1, 7)])
    assert backend.submitted == [[1, 2], [3, 4]]  # the third request was never made
    assert [r.accepted for r in results] == [True, True, False, False, False, False]
    assert [r.may_have_reached for r in results[2:]] == [True, True, False, False]


def test_the_first_of_several_requests_failing_leaves_the_later_ones_unsent():
    results = Scripted(ProviderError("lost", permanent=False), {3}).send(
        [sms(n) for n in range(1, 4)]
    )
    assert [r.may_have_reached for r in results] == [True, True, False]


def test_the_resend_decision_follows_the_gateway_s_idempotency():
    backend = Scripted()
    assert backend.after_failure(permanent=False, may_have_reached=True) == "wait"
    backend.idempotent_submit = True
    assert backend.after_failure(permanent=False, may_have_reached=True) == "retry"


def test_the_wire_log_masks_the_account_s_secrets(server, caplog):
    account = SimpleNamespace(
        pk=None, timeout_seconds=2, name="test", credentials={"token": "s3cr3t/token"}
    )
    with caplog.at_level(logging.DEBUG, logger="providers.wire"):
        Backend(account).request("POST", f"{server}/200", data=b"token=s3cr3t%2Ftoken")
    [record] = [r for r in caplog.records if r.name == "providers.wire"]
    assert "HTTP 200" in record.getMessage()
    assert "s3cr3t" not in record.getMessage()


# ---- shared helpers ----


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("1.25", Decimal("1.25")),
        ("1,25", Decimal("1.25")),
        (0.5, Decimal("0.5")),
        ("", None),
        ("n/a", None),
        (None, None),
    ],
)
def test_parse_decimal(written, value):
    assert parse_decimal(written) == value


def test_parse_time_is_aware_and_placeholders_are_none():
    assert parse_time("2024-06-01 09:00:00", "%Y-%m-%d %H:%M:%S", UTC) == datetime(
        2024, 6, 1, 9, tzinfo=UTC
    )
    assert parse_time("0000-00-00 00:00:00", "%Y-%m-%d %H:%M:%S", UTC) is None


def test_option_accessors_name_the_setting_to_fix():
    backend = Backend(SimpleNamespace(name="acc", options={"method": "get", "on": "yes"}))
    assert backend.option_choice("method", ("POST", "GET"), "POST") == "GET"
    assert backend.option_flag("on") and not backend.option_flag("off")
    with pytest.raises(ConfigurationError, match=r"options\['method'\] must be PUT or POST"):
        backend.option_choice("method", ("PUT", "POST"), "PUT")
    with pytest.raises(ConfigurationError, match="zone"):
        Backend(SimpleNamespace(name="acc", options={"tz": "Mars/Olympus"})).option_time_zone("tz")
