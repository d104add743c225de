"""A real SMTP server (aiosmtpd) that keeps what it receives, for tests and the demo."""

from __future__ import annotations

import email
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope


@dataclass
class ReceivedMail:
    mail_from: str
    recipients: list[str]
    message: email.message.Message
    received_at: float = field(default_factory=time.time)


class _Handler:
    def __init__(self, server: SmtpSimulator):
        self.server = server

    async def handle_RCPT(self, server, session, envelope: Envelope, address: str, options):
        if address in self.server.refused_recipients:
            return "550 5.1.1 Mailbox unavailable"
        if address in self.server.deferred_recipients:
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope: Envelope):
        parsed = email.message_from_bytes(envelope.original_content or envelope.content)
        with self.server.lock:
            self.server.received.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), parsed)
            )
            reset = len(self.server.received) in self.server.reset_after_mails or (
                self.server.reset_rate and self.server.rng.random() < self.server.reset_rate
            )
            if reset:
                self.server.resets += 1
        if reset:
            # Stored, and the connection dropped before the 250: the sender cannot know.
            server.transport.abort()
            return "421 4.3.0 Never seen: the connection is gone"
        return "250 Message accepted for delivery"


class SmtpSimulator:
    name = "smtp"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("Simulators bind to the loopback interface only.")
        self.host = host
        self.requested_port = port
        self.lock = threading.Lock()
        self.received: list[ReceivedMail] = []
        self.refused_recipients: set[str] = set()
        self.deferred_recipients: set[str] = set()
        # Fault: after storing the Nth mail received (counting from 1), reset the connection
        # instead of answering, as a server that crashes between queueing and replying.
        self.reset_after_mails: set[int] = set()
        # The same at random, for a share of the mails (bench.chaos).
        self.reset_rate = 0.0
        self.rng = random.Random(seed)
        self.resets = 0
        self.controller: Controller | None = None

    def start(self) -> SmtpSimulator:
        # aiosmtpd logs every SMTP command at INFO: thousands of lines a second.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        port = self.requested_port or _free_port(self.host)
        self.controller = Controller(_Handler(self), hostname=self.host, port=port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()

    @property
    def port(self) -> int:
        assert self.controller is not None, "start() first"
        return self.controller.port

    def stats(self) -> dict:
        with self.lock:
            keys = Counter(mail.message.get("X-Cascade-Key", "") for mail in self.received)
            resets = self.resets
        duplicate_keys = {key: count for key, count in keys.items() if count > 1}
        return {
            "simulator": self.name,
            "accepted": sum(keys.values()),
            "keys": len(keys),
            # Counted as received: an SMTP server never deduplicates, so a key received
            # twice is an email sent twice.
            "duplicate_keys": duplicate_keys,
            "duplicate_sends": duplicate_keys,
            "faulted_after_store": resets,
        }


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
