"""The workload: the campaign, the sweeper and the stream of consent changes beside it."""

from __future__ import annotations

import math
import random
import threading
import time
import traceback
from collections import Counter, defaultdict

from bench.chaos.harness import close_connection, db_errors

# Clients start with allow_sms only (see create_campaign).
INITIAL_FLAGS = {
    "allow_sms": True,
    "allow_email": True,
    "allow_push": False,
    "allow_email_online_cheque": False,
}


CONSENT_FLAG_WEIGHTS = {"allow_sms": 7, "allow_email": 2, "allow_push": 1}


CALLBACK_SECRET = "chaos-callback-secret"  # noqa: S105 - a throw-away database's webhook


class Sweeper(threading.Thread):
    """sweep_once() every second, as the cascade-sweeper schedule does, through outages."""

    def __init__(self, error_log: str):
        super().__init__(name="sweeper", daemon=True)
        self.halt = threading.Event()
        self.error_log = error_log
        self.passes = 0
        self.outages = 0  # passes cut short by the database or Redis being away
        self.errors: Counter = Counter()  # anything else, by type: a finding

    def run(self) -> None:
        from campaigns import services

        expected = db_errors()
        while not self.halt.is_set():
            try:
                services.sweep_once()
                self.passes += 1
            except expected:
                self.outages += 1
                close_connection()
            except Exception as error:
                self.errors[type(error).__name__] += 1
                with open(self.error_log, "a") as output:
                    output.write(traceback.format_exc() + "\n")
                close_connection()
            self.halt.wait(1)
        close_connection()


class ConsentStream(threading.Thread):
    """Consent changes of random recipients through change_consent, remembered one by one.

    A change that failed because the database was away is retried with the same
    values and reason until it goes through: it counts once, whether the first try
    had committed (the retry then changes nothing and writes no row) or not.
    """

    def __init__(self, client_ids: list[int], rate: float, seed: int):
        super().__init__(name="consent", daemon=True)
        self.client_ids = client_ids
        self.rate = rate
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.flags: dict[int, dict[str, bool]] = defaultdict(lambda: dict(INITIAL_FLAGS))
        self.made: list[tuple[str, int, str, bool]] = []  # (reason, client id, flag, value)
        self.retries = 0
        self.abandoned: list[tuple[str, int, str, bool]] = []
        self.errors: Counter = Counter()

    def run(self) -> None:
        from clients.services import change_consent

        flags, weights = list(CONSENT_FLAG_WEIGHTS), list(CONSENT_FLAG_WEIGHTS.values())
        expected = db_errors()
        number = 0
        while not self.halt.is_set():
            client_id = self.rng.choice(self.client_ids)
            flag = self.rng.choices(flags, weights)[0]
            value = not self.flags[client_id][flag]
            number += 1
            change = (f"chaos:{number}", client_id, flag, value)
            give_up = time.monotonic() + 120
            while True:
                try:
                    change_consent(
                        client_id=client_id, flags={flag: value}, source="admin", reason=change[0]
                    )
                    self.flags[client_id][flag] = value
                    self.made.append(change)
                    break
                except expected:
                    self.retries += 1
                    close_connection()
                    if time.monotonic() > give_up:
                        self.abandoned.append(change)
                        break
                    time.sleep(0.2)
                except Exception as error:
                    self.errors[type(error).__name__] += 1
                    self.abandoned.append(change)
                    close_connection()
                    break
            self.halt.wait(1 / self.rate)
        close_connection()


def create_campaign(args, gateway, pulse, smtp):
    from django.db import connection

    from campaigns.models import Campaign, MessageTemplate
    from clients.models import Operator
    from providers.models import ChannelRoute, ProviderAccount

    operator = Operator.objects.create(code="chaos", name="Chaos")
    # Spread the first step over the window: the limit lives in Redis (ratelimit.py).
    # Requests of a fifth of a second's worth, so that even a small run makes a few
    # requests a second for the faults to meet.
    rate = max(10, math.ceil(args.recipients / args.window))
    fast_polls = args.poll_seconds < 60
    viber = ProviderAccount.objects.create(
        operator=operator,
        name="Cascade gateway (Viber)",
        backend="cascade_gateway",
        base_url=gateway.url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["viber"],
        options={"flavour": "json", "identical_request_seconds": 0 if fast_polls else 60},
        sender_names={"viber": "Chaos"},
        max_batch=min(200, max(10, rate // 5)),
        rate_limit_per_second=rate,
        timeout_seconds=5,
    )
    sms = ProviderAccount.objects.create(
        operator=operator,
        name="1-pulse (SMS)",
        backend="pulse",
        base_url=f"{pulse.url}/api/v1",
        credentials={"token": "test-token"},
        channels=["sms"],
        sender_names={"sms": "Chaos"},
        # Lists of 500 would carry a small run's SMS traffic in a handful of requests,
        # too few for the faults to meet.
        max_batch=min(500, max(10, rate // 5)),
        timeout_seconds=5,
        callback_secrets=[CALLBACK_SECRET],
    )
    mail = ProviderAccount.objects.create(
        operator=operator,
        name="SMTP (email)",
        backend="smtp",
        credentials={"host": "127.0.0.1", "port": smtp.port, "from_email": "news@chaos.test"},
        channels=["email"],
        max_batch=50,
        # One email per round trip: a short timeout lets a claim carry a few (claim_size).
        timeout_seconds=2,
    )
    ChannelRoute.objects.create(operator=operator, channel="viber", account=viber, priority=1)
    ChannelRoute.objects.create(operator=operator, channel="sms", account=sms, priority=1)
    ChannelRoute.objects.create(operator=operator, channel="email", account=mail, priority=1)
    template = MessageTemplate.objects.create(
        operator=operator,
        name="Chaos",
        title="The weekend sale",
        text="Hi {{ first_name }}, the weekend sale is on",
        sms_text="Hi {{ first_name }}, sale this weekend",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_client (operator_id, phone, email, first_name, last_name, middle_name, push_tokens,"
            " viber_id, vk_id, allow_sms, allow_email, allow_push, allow_email_online_cheque, created_at, updated_at)"
            " SELECT %s, CAST(79000000000 + g AS VARCHAR), 'client' || g || '@chaos.test', 'Client' || g,"
            " '', '', '[]', '', '', TRUE, TRUE,"
            " FALSE, FALSE, now(), now() FROM generate_series(1, %s) g",
            [operator.pk, args.recipients],
        )
    campaign = Campaign.objects.create(
        operator=operator,
        name="Chaos: Viber, then SMS, then email",
        template=template,
        channels=["viber", "sms", "email"],
        ttl_minutes=args.ttl_minutes,
    )
    return operator, campaign, rate
