"""A qcluster killed with SIGKILL mid-campaign: afterwards every message is final,
the gateway saw each idempotency key once, and the counters equal a recount.

Real parts: a `manage.py qcluster` process on the test's PostgreSQL database
(ORM broker), the cascade gateway simulator over HTTP, and the sweeper.
"""

import signal
import time

import pytest
from django.db import connection

from campaigns import counters, fanout, queue, services
from campaigns.models import Campaign, DeliveryEvent, Message, MessageTemplate
from clients.models import Client
from providers.models import ChannelRoute, ProviderAccount
from providers.simulators.base import SimulatorConfig
from providers.simulators.cascade_gateway import CascadeGatewaySimulator
from tests.campaigns.clusters import start_cluster, stop

LEASE_SECONDS = 3

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway_sim():
    # Latency keeps batches in flight long enough for the kill to land mid-batch.
    sim = CascadeGatewaySimulator(
        config=SimulatorConfig(
            delivery_delay=0.2, latency=0.05, outcome_mix={"delivered": 0.8, "undeliverable": 0.2}
        ),
        identical_window=0,
    ).start()
    yield sim
    sim.stop()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="runs a qcluster on the test database"
)
def test_a_killed_cluster_loses_nothing_and_sends_nothing_twice(
    sunrise, gateway_sim, settings, monkeypatch
):
    settings.CASCADE_CLAIM_LEASE_SECONDS = LEASE_SECONDS
    monkeypatch.setattr(services, "POLL_INTERVAL_SECONDS", 1)
    account = ProviderAccount.objects.create(
        operator=sunrise,
        name="Gateway",
        backend="cascade_gateway",
        base_url=gateway_sim.url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["viber", "sms"],
        options={"flavour": "json", "identical_request_seconds": 0},
        sender_names={"viber": "Shop", "sms": "Shop"},
        max_batch=25,
        # A 3 s lease fits a request timing out only under 2.4 s (providers.E001).
        timeout_seconds=2,
    )
    ChannelRoute.objects.create(operator=sunrise, channel="viber", account=account, priority=1)
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=account, priority=1)
    Client.objects.bulk_create(
        [Client(operator=sunrise, phone=f"7916{i:07d}", allow_sms=True) for i in range(1500)]
    )
    template = MessageTemplate.objects.create(operator=sunrise, name="T", text="Hi", sms_text="Hi")
    campaign = Campaign.objects.create(
        operator=sunrise,
        name="Chaos",
        template=template,
        channels=["viber", "sms"],
        state=Campaign.State.RUNNING,
    )
    fanout.fan_out(campaign.pk)

    cluster = start_cluster(CASCADE_CLAIM_LEASE_SECONDS=str(LEASE_SECONDS))
    try:
        time.sleep(3)
        queue.kick_campaign(campaign.pk)
        deadline = time.monotonic() + 60
        while gateway_sim.stats()["accepted"] < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop(cluster, signal.SIGKILL)
        killed_at = gateway_sim.stats()["accepted"]
        assert 0 < killed_at < 1500, "the kill must land mid-campaign"

        cluster = start_cluster(CASCADE_CLAIM_LEASE_SECONDS=str(LEASE_SECONDS))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            services.sweep_once()
            open_messages = Message.objects.filter(campaign=campaign, status="in_progress").count()
            if open_messages == 0:
                break
            time.sleep(1)
    finally:
        stop(cluster)
        connection.close()

    assert (
        Message.objects.filter(campaign=campaign, status__in=["pending", "in_progress"]).count()
        == 0
    )
    stats = gateway_sim.stats()
    assert stats["duplicate_sends"] == {}  # the gateway took each key once
    # Counted on receipt: only claims taken back from the killed cluster went out twice,
    # under the same key, to a gateway that refuses a repeated one.
    taken_back = DeliveryEvent.objects.filter(provider_status="lease_expired").count()
    assert len(stats["duplicate_keys"]) <= taken_back
    assert stats["keys"] == stats["accepted"] >= 1500
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)
