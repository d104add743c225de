"""A small threaded HTTP server that plays a gateway, with knobs for tests and benchmarks.

Each simulator subclass speaks one gateway's wire protocol (routes), keeps
every accepted message in memory, decides each message's fate from the
configured outcome mix, answers status queries from that fate, and posts
callbacks with the gateway's retry schedule. Faults (5xx, timeouts, malformed
bodies, dropped connections) and latency are injected before a request
reaches the protocol code.

Control endpoints, the same for every simulator:
  GET  /_sim/stats   counts: requests, accepted recipients, keys seen, callbacks
  GET  /_sim/messages?limit=N  the last accepted messages, with timestamps
  POST /_sim/config  JSON knobs to change (see SimulatorConfig)
  POST /_sim/reset   forget everything
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

logger = logging.getLogger(__name__)

OUTCOMES = ("delivered", "read", "undeliverable", "expired")


@dataclass
class SimulatorConfig:
    # Weights of the final outcome of each accepted message (per channel step).
    outcome_mix: dict[str, float] = field(default_factory=lambda: {"delivered": 1.0})
    # Seconds from acceptance to the final status.
    delivery_delay: float = 0.2
    # Fractions of requests that fail instead of reaching the protocol code.
    error_rate: float = 0.0  # HTTP error_status, before the request is looked at
    error_status: int = 500
    timeout_rate: float = 0.0  # sleeps `timeout_seconds`, then answers 504
    malformed_rate: float = 0.0  # 200 with a body that is not the protocol's
    drop_rate: float = 0.0  # closes the connection without an answer
    # Faults after the request was served (messages stored, callbacks scheduled): the
    # answer is lost, as when a gateway commits and then its proxy or the network fails.
    error_after_store_rate: float = 0.0  # HTTP 500 instead of the answer
    timeout_after_store_rate: float = 0.0  # sleeps `timeout_seconds`, then answers 504
    drop_after_store_rate: float = 0.0  # closes the connection instead of answering
    timeout_seconds: float = 15.0
    latency: float = 0.0  # added to every protocol answer, seconds
    # Multiply the gateway's callback retry delays (1 and 10 minutes for
    # 1-pulse) by this, so tests need not wait minutes.
    callback_time_scale: float = 1.0
    send_callbacks: bool = True
    # Callbacks to drop on purpose (fraction) — the gateway's retries recover them.
    callback_drop_rate: float = 0.0
    seed: int | None = None


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class SimResponse:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"

    def encoded(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


def json_response(
    payload: Any, status: int = 200, content_type: str = "application/json"
) -> SimResponse:
    return SimResponse(
        status, json.dumps(payload, ensure_ascii=False), f"{content_type}; charset=utf-8"
    )


@dataclass
class SimMessage:
    """One accepted recipient: what was asked, and what will happen to it."""

    id: str
    key: str  # the idempotency key the client sent, or ""
    phone: str
    channels: list[str]  # cascade order; one channel for plain sends
    accepted_at: float
    final_at: float
    # Fate per channel: ("delivered" | "read" | "undeliverable" | "expired").
    outcomes: dict[str, str]
    callback_url: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def final_channel(self) -> str:
        """The channel the cascade ends on: the first whose fate is a success."""
        for channel in self.channels:
            if self.outcomes.get(channel) in ("delivered", "read"):
                return channel
        return self.channels[-1] if self.channels else ""

    def is_final(self, now: float | None = None) -> bool:
        return (now or time.time()) >= self.final_at


class Simulator:
    name = "simulator"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, config: SimulatorConfig | None = None
    ):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("Simulators bind to the loopback interface only.")
        self.host = host
        self.requested_port = port
        self.config = config or SimulatorConfig()
        self.lock = threading.RLock()
        self.rng = random.Random(self.config.seed)
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self._ids = itertools.count(1000001)
        self._callbacks: list[tuple[float, int, Callable[[], None]]] = []
        self._callback_seq = itertools.count()
        self._callback_wakeup = threading.Condition(self.lock)
        self._callback_thread: threading.Thread | None = None
        self._stopping = False
        self._callback_session = requests.Session()
        self.reset()

    # ---- lifecycle ----
    def start(self) -> Simulator:
        simulator = self

        class Handler(_Handler):
            sim = simulator

        self.server = _Server((self.host, self.requested_port), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-http",
            daemon=True,
        )
        self.thread.start()
        self._stopping = False
        self._callback_thread = threading.Thread(
            target=self._callback_loop, name=f"{self.name}-cb", daemon=True
        )
        self._callback_thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        with self.lock:
            self._callback_wakeup.notify_all()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    @property
    def port(self) -> int:
        assert self.server is not None, "start() first"
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.messages: dict[str, SimMessage] = {}
            self.by_key: dict[str, str] = {}
            self.key_submissions: dict[str, int] = {}  # key -> times it was accepted (must stay 1)
            # key -> times a request carried it, counted on receipt before any deduplication:
            # what the engine sent, not what the gateway kept.
            self.key_receipts: dict[str, int] = {}
            self.requests_faulted_after_store = 0
            self.requests_total = 0
            self.requests_faulted = 0
            self.accepted_total = 0
            self.rejected_total = 0
            self.callbacks_sent = 0
            self.callbacks_failed = 0
            self.callbacks_dropped = 0
            self.accept_log: list[tuple[float, str]] = []  # (time, message id), for rate checks
            self.in_flight = 0
            self.max_in_flight = 0  # most protocol requests served at the same moment
            self._callbacks = []

    # ---- protocol hooks for subclasses ----
    def routes(self) -> dict[tuple[str, str], Callable[[SimRequest], SimResponse]]:
        raise NotImplementedError

    def malformed_body(self) -> SimResponse:
        return SimResponse(200, "<html><body>Bad Gateway</body></html>", "text/html")

    # ---- shared helpers ----
    def next_id(self) -> str:
        return str(next(self._ids))

    def choose_outcome(self) -> str:
        mix = {k: v for k, v in self.config.outcome_mix.items() if k in OUTCOMES and v > 0}
        if not mix:
            return "delivered"
        return self.rng.choices(list(mix), weights=list(mix.values()))[0]

    def accept(
        self,
        *,
        key: str,
        phone: str,
        channels: list[str],
        callback_url: str = "",
        request: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> SimMessage:
        """Record a newly accepted recipient and schedule its fate and callback."""
        now = time.time()
        with self.lock:
            message = SimMessage(
                id=self.next_id(),
                key=key,
                phone=phone,
                channels=list(channels),
                accepted_at=now,
                final_at=now + self.config.delivery_delay,
                outcomes={channel: self.choose_outcome() for channel in channels},
                callback_url=callback_url,
                request=request or {},
                extra=extra or {},
            )
            self.messages[message.id] = message
            if key:
                self.by_key[key] = message.id
                self.key_submissions[key] = self.key_submissions.get(key, 0) + 1
            self.accepted_total += 1
            self.accept_log.append((now, message.id))
            if callback_url and self.config.send_callbacks:
                self.schedule(message.final_at, lambda m=message: self.fire_callback(m))
        return message

    def received(self, key: str) -> None:
        """Count a recipient's key as it arrives, before the protocol code deduplicates it."""
        if key:
            with self.lock:
                self.key_receipts[key] = self.key_receipts.get(key, 0) + 1

    def find_by_key(self, key: str) -> SimMessage | None:
        with self.lock:
            message_id = self.by_key.get(key)
            return self.messages.get(message_id) if message_id else None

    def fire_callback(self, message: SimMessage) -> None:
        """Subclasses send the callback(s) for a message that reached its final status."""

    def deliver_callback(
        self, method: str, url: str, retry_delays: list[float], attempt: int = 0, **kwargs
    ) -> None:
        """Send one callback; on anything but HTTP 200 retry after the gateway's delays."""
        if self.rng.random() < self.config.callback_drop_rate:
            ok = False
            with self.lock:
                self.callbacks_dropped += 1
        else:
            try:
                response = self._callback_session.request(method, url, timeout=10, **kwargs)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            with self.lock:
                if ok:
                    self.callbacks_sent += 1
                else:
                    self.callbacks_failed += 1
        if not ok and attempt < len(retry_delays):
            delay = retry_delays[attempt] * self.config.callback_time_scale
            self.schedule(
                time.time() + delay,
                lambda: self.deliver_callback(method, url, retry_delays, attempt + 1, **kwargs),
            )

    def schedule(self, when: float, action: Callable[[], None]) -> None:
        with self.lock:
            heapq.heappush(self._callbacks, (when, next(self._callback_seq), action))
            self._callback_wakeup.notify()

    def _callback_loop(self) -> None:
        while not self._stopping:
            with self.lock:
                if not self._callbacks:
                    self._callback_wakeup.wait(0.5)
                    continue
                when, _, action = self._callbacks[0]
                delay = when - time.time()
                if delay > 0:
                    self._callback_wakeup.wait(min(delay, 0.5))
                    continue
                heapq.heappop(self._callbacks)
            try:
                action()
            except Exception:  # a broken callback must not stop the others
                logger.exception("%s: callback failed", self.name)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            duplicates = {key: count for key, count in self.key_receipts.items() if count > 1}
            kept_twice = {key: count for key, count in self.key_submissions.items() if count > 1}
            return {
                "simulator": self.name,
                "requests": self.requests_total,
                "faulted_requests": self.requests_faulted,
                "accepted": self.accepted_total,
                "rejected": self.rejected_total,
                "messages": len(self.messages),
                "keys": len(self.key_submissions),
                # Keys that arrived more than once (whether or not the gateway deduplicated).
                "duplicate_keys": duplicates,
                # Keys the gateway took as a new message more than once: sent twice.
                "duplicate_sends": kept_twice,
                "faulted_after_store": self.requests_faulted_after_store,
                "callbacks_sent": self.callbacks_sent,
                "callbacks_failed": self.callbacks_failed,
                "callbacks_dropped": self.callbacks_dropped,
                "callbacks_pending": len(self._callbacks),
                "max_in_flight": self.max_in_flight,
                "config": asdict(self.config),
            }

    # ---- request handling ----
    def handle(self, request: SimRequest) -> SimResponse | None:
        """None means: drop the connection without answering."""
        if request.path.startswith("/_sim/"):
            return self.handle_control(request)
        with self.lock:
            self.requests_total += 1
            roll = self.rng.random()
        config = self.config
        fault = None
        if roll < config.drop_rate:
            fault = "drop"
        elif roll < config.drop_rate + config.error_rate:
            fault = "error"
        elif roll < config.drop_rate + config.error_rate + config.timeout_rate:
            fault = "timeout"
        elif (
            roll
            < config.drop_rate + config.error_rate + config.timeout_rate + config.malformed_rate
        ):
            fault = "malformed"
        if fault:
            with self.lock:
                self.requests_faulted += 1
            if fault == "drop":
                return None
            if fault == "error":
                return SimResponse(config.error_status, "Server error")
            if fault == "timeout":
                time.sleep(config.timeout_seconds)
                return SimResponse(504, "Gateway Timeout")
            return self.malformed_body()
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if config.latency:
                time.sleep(config.latency)
            response = self.route(request)
        finally:
            with self.lock:
                self.in_flight -= 1
        return self.fault_after_store(response)

    def fault_after_store(self, response: SimResponse | None) -> SimResponse | None:
        config = self.config
        with self.lock:
            roll = self.rng.random()
        error = config.error_after_store_rate
        timeout = error + config.timeout_after_store_rate
        drop = timeout + config.drop_after_store_rate
        if roll >= drop:
            return response
        with self.lock:
            self.requests_faulted_after_store += 1
        if roll < error:
            return SimResponse(500, "Internal Server Error")
        if roll < timeout:
            time.sleep(config.timeout_seconds)
            return SimResponse(504, "Gateway Timeout")
        return None

    def route(self, request: SimRequest) -> SimResponse | None:
        route = self.routes().get((request.method, request.path))
        if route is None:
            allowed = [method for method, path in self.routes() if path == request.path]
            if allowed:
                return SimResponse(405, f"Method not allowed; use {', '.join(allowed)}")
            return SimResponse(404, "Not found")
        return route(request)

    def handle_control(self, request: SimRequest) -> SimResponse:
        if request.path == "/_sim/stats":
            return json_response(self.stats())
        if request.path == "/_sim/messages":
            limit = int(request.param("limit", "100") or 100)
            with self.lock:
                recent = list(self.messages.values())[-limit:]
                return json_response(
                    [
                        {
                            "id": m.id,
                            "key": m.key,
                            "phone": m.phone,
                            "channels": m.channels,
                            "accepted_at": m.accepted_at,
                            "outcomes": m.outcomes,
                            "request": m.request,
                        }
                        for m in recent
                    ]
                )
        if request.path == "/_sim/config" and request.method == "POST":
            changes = json.loads(request.body or b"{}")
            with self.lock:
                for key, value in changes.items():
                    if not hasattr(self.config, key):
                        return json_response({"error": f"unknown knob {key}"}, 400)
                    setattr(self.config, key, value)
                if "seed" in changes:
                    self.rng.seed(changes["seed"])
            return json_response(asdict(self.config))
        if request.path == "/_sim/reset" and request.method == "POST":
            self.reset()
            return json_response({"reset": True})
        return SimResponse(404, "Unknown control endpoint")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    sim: Simulator
    protocol_version = "HTTP/1.1"  # keep-alive, as the real gateways allow
    # Headers and body go out in two writes; with Nagle on, the second waits for
    # the client's delayed ACK (~40 ms per answer).
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        logger.debug("%s %s", self.sim.name, format % args)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = SimRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
        )
        try:
            response = self.sim.handle(request)
        except Exception as error:  # a simulator bug should look like a 500, not hang
            logger.exception("%s: handler failed", self.sim.name)
            response = SimResponse(500, f"simulator error: {error}")
        if response is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = response.encoded()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
