"""Two qcluster processes on a Redis broker work one campaign: nothing is claimed or sent twice."""

import os
import time

import pytest
from django.db import connection

from campaigns import counters, fanout
from campaigns.models import Campaign, Delivery, MessageTemplate
from clients.models import Client
from providers.models import ChannelRoute, ProviderAccount
from providers.simulators.base import SimulatorConfig
from providers.simulators.cascade_gateway import CascadeGatewaySimulator
from tests.campaigns.clusters import run_in_django, start_cluster, stop

REDIS_URL = os.environ.get("REDIS_TEST_URL", "")

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not REDIS_URL, reason="make test starts Redis and sets REDIS_TEST_URL"),
]


def test_two_clusters_share_a_campaign_without_double_claims(sunrise):
    sim = CascadeGatewaySimulator(
        config=SimulatorConfig(delivery_delay=3600, latency=0.02), identical_window=0
    ).start()
    try:
        account = ProviderAccount.objects.create(
            operator=sunrise,
            name="Gateway",
            backend="cascade_gateway",
            base_url=sim.url,
            credentials={"login": "demo", "password": "demo-pass"},
            channels=["viber"],
            options={"flavour": "json"},
            sender_names={"viber": "Shop"},
            max_batch=20,
        )
        ChannelRoute.objects.create(operator=sunrise, channel="viber", account=account, priority=1)
        Client.objects.bulk_create(
            [Client(operator=sunrise, phone=f"7916{i:07d}", allow_sms=True) for i in range(2000)]
        )
        template = MessageTemplate.objects.create(operator=sunrise, name="T", text="Hi")
        campaign = Campaign.objects.create(
            operator=sunrise,
            name="Scale",
            template=template,
            channels=["viber"],
            state=Campaign.State.RUNNING,
        )
        fanout.fan_out(campaign.pk)
        # Small claims keep all four dispatchers busy for the whole campaign.
        clusters = [
            start_cluster(REDIS_URL=REDIS_URL, Q_WORKERS="2", CASCADE_CLAIM_TARGET="40")
            for _ in range(2)
        ]
        try:
            time.sleep(3)
            # Two dispatchers per cluster, enqueued on the shared Redis broker.
            run_in_django(
                "from django_q.tasks import async_task\n"
                f"for _ in range(4): async_task('campaigns.tasks.dispatch_account', {account.pk})",
                REDIS_URL=REDIS_URL,
            )
            deadline = time.monotonic() + 90
            while sim.stats()["accepted"] < 2000 and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            for cluster in clusters:
                stop(cluster)
            connection.close()
        stats = sim.stats()
        assert stats["accepted"] == 2000
        assert stats["duplicate_keys"] == {}
        deliveries = Delivery.objects.filter(campaign=campaign)
        assert set(deliveries.values_list("status", flat=True)) == {"sent"}
        assert set(deliveries.values_list("attempts", flat=True)) == {1}  # each claimed once
        assert counters.counts(campaign.pk) == counters.recount(campaign.pk)
        # Both clusters took part: each has two workers, and more than two
        # requests were at the gateway at the same moment.
        assert stats["max_in_flight"] >= 3, stats["max_in_flight"]
    finally:
        sim.stop()
