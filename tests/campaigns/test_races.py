"""Writers that meet on the same delivery rows at once, on PostgreSQL with real transactions.

Each test holds one writer's transaction open in a thread while the other runs,
so the interleaving that used to break a guarantee happens every time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns import claims, counters, fanout, services
from campaigns.models import Campaign, Delivery, MessageTemplate
from campaigns.statuses import apply_status_events
from clients.models import Client
from providers.base import StatusEvent
from providers.models import ChannelRoute, ProviderAccount

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_background_tasks"),
]


@pytest.fixture
def campaign(sunrise):
    account = ProviderAccount.objects.create(
        operator=sunrise, name="Gateway", backend="cascade_gateway", channels=["viber", "sms"]
    )
    for channel in ("viber", "sms"):
        ChannelRoute.objects.create(operator=sunrise, channel=channel, account=account, priority=1)
    Client.objects.bulk_create(
        [Client(operator=sunrise, phone=f"7916{i:07d}", allow_sms=True) for i in range(20)]
    )
    template = MessageTemplate.objects.create(operator=sunrise, name="T", text="Hi")
    campaign = Campaign.objects.create(
        operator=sunrise,
        name="Race",
        template=template,
        channels=["viber", "sms"],
        state=Campaign.State.RUNNING,
        read_is_final=True,
    )
    fanout.fan_out(campaign.pk)
    return campaign


def hold_open(work, release: threading.Event, done: threading.Event):
    """Run `work` in a transaction of its own and keep it open until `release`."""

    def run():
        try:
            with transaction.atomic():
                work()
                done.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert done.wait(10)
    return thread


def test_cancel_during_a_claim_moves_the_counters_by_what_it_cancelled(campaign):
    release, claimed = threading.Event(), threading.Event()
    account_id = Delivery.objects.filter(campaign=campaign).first().account_id
    claimer = hold_open(lambda: claims.claim(account_id, 5), release, claimed)
    cancelling = threading.Thread(
        target=lambda: (services.cancel(campaign_id=campaign.pk), connection.close())
    )
    cancelling.start()
    time.sleep(0.5)  # cancel has read the rows and waits for the claim's locks
    release.set()
    claimer.join(10)
    cancelling.join(10)
    statuses = list(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert (
        sorted(set(statuses)) == ["cancelled", "submitting"] and statuses.count("submitting") == 5
    )
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


def test_a_read_report_being_applied_stops_the_unread_fall_through(campaign):
    first = Delivery.objects.filter(campaign=campaign).order_by("pk").first()
    Delivery.objects.filter(pk=first.pk).update(
        status="delivered",
        provider_message_id="p1",
        delivered_at=timezone.now(),
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    counters.bump(
        Counter({(campaign.pk, "viber", "queued"): -1, (campaign.pk, "viber", "delivered"): 1})
    )
    release, applied = threading.Event(), threading.Event()
    read = StatusEvent(status="read", provider_status="read", provider_message_id="p1")
    reporter = hold_open(
        lambda: apply_status_events(account_id=first.account_id, events=[read], source="callback"),
        release,
        applied,
    )
    services.expire_past_ttl(timezone.now())  # meets the row the report holds
    release.set()
    reporter.join(10)
    services.expire_past_ttl(timezone.now())  # the row is read now: nothing falls through
    steps = list(
        Delivery.objects.filter(message_id=first.message_id).values_list("channel", "status")
    )
    assert steps == [("viber", "read")]
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)
