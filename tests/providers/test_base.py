"""providers.base: what a failed request says about whether the gateway may have the message,
and the one rule dispatch and the sweeper follow after a failure."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from providers.base import (
    Backend,
    OutgoingMessage,
    ProviderError,
    after_failure,
    failed_results,
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


def test_failed_results_keep_the_error_for_each_message():
    error = ProviderError("lost", permanent=False, code="x", response_text="raw")
    messages = [
        OutgoingMessage(delivery_id=n, idempotency_key=str(n), channel="sms") for n in (1, 2)
    ]
    results = failed_results(messages, error, may_have_reached=False)
    assert [(r.delivery_id, r.accepted, r.permanent, r.may_have_reached) for r in results] == [
        (1, False, False, False),
        (2, False, False, False),
    ]
    assert results[0].error_message == str(error) and results[0].raw == "raw"
