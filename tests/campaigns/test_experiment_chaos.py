"""The A/B split under a SIGKILLed qcluster: same client, same variant, one text each.

The cluster is killed twice: once inside the fan-out's transaction (held there by
a row lock the test takes on a counter the fan-out must update, so the kill lands
after the messages and their variants are written but before the commit), and
once mid-dispatch. The fan-out task comes back through the broker's retry.

Real parts: `manage.py qcluster` processes on the test's PostgreSQL database (ORM
broker), the cascade gateway simulator over HTTP, and the sweeper.
"""

import signal
import time

import psycopg
import pytest
from django.db import connection

from campaigns import fanout, queue, services
from campaigns.models import Campaign, CampaignCounter, Message
from providers.models import ChannelRoute, ProviderAccount
from tests.campaigns.clusters import database_url, start_cluster, stop
from tests.campaigns.driving import campaign_for, make_clients
from tests.campaigns.test_experiments import with_variants

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="runs a qcluster on the test database"
    ),
]

CLIENTS = 1200
LEASE_SECONDS = 3
# The broker hands a task taken by a dead cluster to another after Q_RETRY seconds.
CLUSTER_ENV = {
    "CASCADE_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
    "Q_TIMEOUT": "6",
    "Q_RETRY": "8",
}


def wait_until(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def blocked_on_a_lock(side) -> bool:
    # pg_stat_activity is read once per transaction unless its snapshot is dropped.
    side.execute("SELECT pg_stat_clear_snapshot()")
    row = side.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    ).fetchone()
    return row[0] > 0


def variants_by_client(campaign):
    return dict(
        Message.objects.filter(campaign=campaign).values_list("client_id", "variant__label")
    )


def test_a_killed_cluster_keeps_every_clients_variant_and_sends_one_text_each(
    setup, settings, monkeypatch
):
    settings.CASCADE_CLAIM_LEASE_SECONDS = LEASE_SECONDS
    monkeypatch.setattr(services, "POLL_INTERVAL_SECONDS", 1)
    gateway, sim = setup["gateway"], setup["gateway_sim"]
    ChannelRoute.objects.filter(channel="sms").update(account=gateway)
    sim.config.outcome_mix = {"delivered": 1.0}
    sim.config.latency = 0.05  # batches stay in flight long enough for the kill to land
    gateway.max_batch = 25
    gateway.timeout_seconds = 1
    gateway.save()
    # Every account's timeout must fit the short lease and Q_TIMEOUT (providers.E001).
    ProviderAccount.objects.filter(pk=setup["pulse"].pk).update(timeout_seconds=1)
    make_clients(setup["operator"], CLIENTS, allow_sms=True)
    campaign = campaign_for(setup, ["viber"], ab_mode=Campaign.Testing.SPLIT)
    with_variants(setup, campaign)
    counter = CampaignCounter.objects.create(
        campaign=campaign, channel="viber", status="queued", count=0
    )

    side = psycopg.connect(database_url(), autocommit=False)
    cluster = start_cluster(**CLUSTER_ENV)
    try:
        side.execute(
            "SELECT id FROM campaigns_campaigncounter WHERE id = %s FOR UPDATE", [counter.pk]
        )
        queue.enqueue_fan_out(campaign.pk)
        wait_until(lambda: blocked_on_a_lock(side), 60, "the fan-out to reach the counter")
        stop(cluster, signal.SIGKILL)
        side.rollback()  # the dead cluster's transaction goes with its connection
        assert not Message.objects.filter(campaign=campaign).exists()
        campaign.refresh_from_db()
        assert campaign.fanned_out_at is None

        cluster = start_cluster(**CLUSTER_ENV)
        wait_until(lambda: sim.stats()["accepted"] >= 300, 90, "the retried fan-out to send")
        stop(cluster, signal.SIGKILL)
        killed_at = sim.stats()["accepted"]
        assert killed_at < CLIENTS, "the second kill must land mid-dispatch"

        cluster = start_cluster(**CLUSTER_ENV)
        queue.kick_campaign(campaign.pk)

        def finished():
            services.sweep_once()
            return not Message.objects.filter(
                campaign=campaign, status__in=["pending", "in_progress"]
            ).exists()

        wait_until(finished, 120, "every message to be final")
    finally:
        stop(cluster)
        side.close()
        connection.close()

    split = variants_by_client(campaign)
    assert len(split) == CLIENTS and set(split.values()) == {"A", "B"}
    assert 0.4 < list(split.values()).count("A") / CLIENTS < 0.6
    # Each phone got its own variant's text and no other, each key once.
    texts_by_phone: dict[str, set] = {}
    for message in sim.messages.values():
        texts_by_phone.setdefault(message.phone, set()).add(message.request.get("text_viber"))
    phone_of = dict(
        Message.objects.filter(campaign=campaign).values_list("client_id", "client__phone")
    )
    assert len(texts_by_phone) == CLIENTS
    for client_id, label in split.items():
        assert texts_by_phone[phone_of[client_id]] == {f"Text {label}"}
    assert sim.stats()["duplicate_sends"] == {}
    # And a fan-out run from scratch in this process assigns exactly the same.
    Message.objects.filter(campaign=campaign).delete()
    Campaign.objects.filter(pk=campaign.pk).update(fanned_out_at=None, state=Campaign.State.RUNNING)
    assert fanout.fan_out(campaign.pk).messages == CLIENTS
    assert variants_by_client(campaign) == split
