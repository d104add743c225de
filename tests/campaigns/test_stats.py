"""The dashboard's numbers, and the cache of its two scans under the counters' state."""

from collections import Counter

from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import counters, stats
from campaigns.models import Delivery, Message
from providers.status import DeliveryStatus


def running(world):
    campaign = world["campaign"]
    campaign.state = campaign.State.RUNNING
    campaign.save()
    delivery = world["delivery"]
    counters.bump(Counter({(campaign.pk, delivery.channel, delivery.status): 1}))
    return campaign, delivery


def test_unchanged_counters_reuse_the_scans_and_a_change_reads_again(world):
    campaign, delivery = running(world)
    with CaptureQueriesContext(connection) as first:
        before = stats.dashboard(campaign)
    with CaptureQueriesContext(connection) as again:
        assert stats.dashboard(campaign) == before
    assert len(again) == len(first) - 2  # the two scans, and nothing else, were skipped

    # The engine moves a status and its counter in one transaction: the scans run again.
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.UNDELIVERABLE, error_code="not_viber_user"
    )
    Message.objects.filter(pk=delivery.message_id).update(status=Message.Status.FAILED)
    counters.bump(
        Counter(
            {
                (campaign.pk, delivery.channel, DeliveryStatus.SENT): -1,
                (campaign.pk, delivery.channel, DeliveryStatus.UNDELIVERABLE): 1,
            }
        )
    )
    with CaptureQueriesContext(connection) as changed:
        after = stats.dashboard(campaign)
    assert len(changed) == len(first)
    assert after["failures"] == [
        {
            "channel": "viber",
            "channel_label": "Viber",
            "status": "undeliverable",
            "status_label": "Undeliverable",
            # A gateway's own code is shown as it came.
            "reason": "not_viber_user",
            "reason_label": "not_viber_user",
            "count": 1,
        }
    ]
    assert after != before


def test_another_campaign_never_gets_these_numbers(world, sunrise):
    campaign, _delivery = running(world)
    stats.dashboard(campaign)
    other = type(campaign).objects.create(
        operator=sunrise, name="Other", template=campaign.template, channels=["viber", "sms"]
    )
    assert stats.dashboard(other)["failures"] == []
    assert stats.dashboard(other)["id"] == other.pk
