"""Variants and control groups over the cascade gateway simulator (PostgreSQL in CI)."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from campaigns import experiments, fanout, services, winners
from campaigns.models import Campaign, CampaignVariant, Delivery, Message, MessageTemplate
from providers.models import ChannelRoute
from tests.campaigns.driving import campaign_for, drive, make_clients

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_background_tasks"),
]


def with_variants(setup, campaign, weights=(50, 50)):
    for label, weight in zip("AB", weights, strict=False):
        template = MessageTemplate.objects.create(
            operator=setup["operator"], name=f"Variant {label}", text=f"Text {label}"
        )
        CampaignVariant.objects.create(
            campaign=campaign, label=label, template=template, weight=weight
        )


def gateway_only(setup):
    ChannelRoute.objects.filter(channel="sms").update(account=setup["gateway"])
    setup["gateway_sim"].config.outcome_mix = {"delivered": 1.0}


def variant_of(campaign):
    labels = dict(CampaignVariant.objects.filter(campaign=campaign).values_list("pk", "label"))
    return {
        m.client_id: labels.get(m.variant_id) for m in Message.objects.filter(campaign=campaign)
    }


def test_a_fixed_split_is_even_and_each_client_gets_its_variants_text(setup):
    gateway_only(setup)
    make_clients(setup["operator"], 400, allow_sms=True)
    campaign = campaign_for(setup, ["viber"], ab_mode=Campaign.Testing.SPLIT)
    with_variants(setup, campaign)
    fanout.fan_out(campaign.pk)
    counts = Message.objects.filter(campaign=campaign).values_list("variant__label", flat=True)
    a, b = list(counts).count("A"), list(counts).count("B")
    assert a + b == 400 and 180 <= a <= 220
    assert drive(campaign, [setup["gateway"]])
    texts = {
        m.request.get("text_viber") or m.request.get("text")
        for m in setup["gateway_sim"].messages.values()
    }
    assert texts == {"Text A", "Text B"}


def test_the_split_is_the_same_for_the_same_client_whenever_the_fan_out_runs(setup):
    make_clients(setup["operator"], 300, allow_sms=True)
    first = campaign_for(setup, ["viber"], ab_mode=Campaign.Testing.SPLIT)
    with_variants(setup, first, (30, 70))
    fanout.fan_out(first.pk)
    before = variant_of(first)
    # A crash before the fan-out committed leaves nothing; the rerun must match.
    Message.objects.filter(campaign=first).delete()
    Campaign.objects.filter(pk=first.pk).update(fanned_out_at=None)
    fanout.fan_out(first.pk)
    assert variant_of(first) == before
    shares = list(before.values())
    assert 60 <= shares.count("A") <= 120  # 30% of 300 = 90


def test_the_control_group_is_never_sent(setup):
    gateway_only(setup)
    make_clients(setup["operator"], 200, allow_sms=True)
    campaign = campaign_for(setup, ["viber"], holdout_percent=20)
    fanout.fan_out(campaign.pk)
    held = Message.objects.filter(campaign=campaign, status=Message.Status.HOLDOUT)
    assert 25 <= held.count() <= 55
    assert not held.filter(deliveries__isnull=False).exists()
    held_phones = set(held.values_list("phone", flat=True))
    assert drive(campaign, [setup["gateway"]])
    sent_phones = {m.phone for m in setup["gateway_sim"].messages.values()}
    assert len(sent_phones) == 200 - len(held_phones)
    assert not held_phones & sent_phones
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.DONE


def test_test_then_winner_waits_then_sends_the_best_variant_to_the_rest(setup):
    gateway_only(setup)
    make_clients(setup["operator"], 500, allow_sms=True)
    campaign = campaign_for(
        setup,
        ["viber"],
        ab_mode=Campaign.Testing.WINNER,
        ab_test_percent=20,
        ab_wait_minutes=60,
        ab_metric=Campaign.WinnerMetric.DELIVERED,
    )
    with_variants(setup, campaign)
    fanout.fan_out(campaign.pk)
    waiting = Message.objects.filter(campaign=campaign, status=Message.Status.PENDING)
    assert 350 <= waiting.count() <= 450 and not waiting.filter(variant__isnull=False).exists()
    for _ in range(30):
        from campaigns import dispatch

        dispatch.dispatch_account(setup["gateway"].pk, budget_seconds=5)
        services.sweep_once()
        if not Message.objects.filter(campaign=campaign, status="in_progress").exists():
            break
    # Variant B's deliveries fail: A must win on delivery rate.
    b = CampaignVariant.objects.get(campaign=campaign, label="B")
    Message.objects.filter(campaign=campaign, variant=b).update(status=Message.Status.FAILED)
    waiting_ids = set(waiting.values_list("pk", flat=True))
    now = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(fanned_out_at=now - timedelta(minutes=59))
    assert winners.decide_due_winners(now) == []
    Campaign.objects.filter(pk=campaign.pk).update(fanned_out_at=now - timedelta(minutes=61))
    assert winners.decide_due_winners(now) == [campaign.pk]
    campaign.refresh_from_db()
    assert campaign.ab_winner.label == "A"
    assert campaign.ab_reason.startswith("A won on delivery rate: 100.0%")
    assert "B 0.0%" in campaign.ab_reason
    assert winners.decide_winner(campaign.pk, now) is None  # decided once
    rest = Message.objects.filter(pk__in=waiting_ids)
    assert set(rest.values_list("variant__label", flat=True)) == {"A"}
    assert not rest.exclude(status="in_progress").exists()
    assert drive(campaign, [setup["gateway"]])
    results = {r.label: r for r in experiments.variant_results(campaign)}
    assert results["A"].sent >= 350 and results["A"].delivered == results["A"].sent


def test_no_experiment_costs_no_update(setup, django_assert_max_num_queries):
    make_clients(setup["operator"], 10, allow_sms=True)
    campaign = campaign_for(setup, ["viber"])
    now = timezone.now()
    with django_assert_max_num_queries(0):
        experiments.assign_groups(campaign, now)


def test_the_dashboard_compares_purchases_of_sent_and_control_group(setup, client):
    from django.contrib.auth.models import User

    from clients.models import Client

    make_clients(setup["operator"], 400, allow_sms=True)
    campaign = campaign_for(setup, ["viber"], holdout_percent=25, holdout_days=7)
    fanout.fan_out(campaign.pk)
    campaign.refresh_from_db()
    start = campaign.fanned_out_at
    sent = Message.objects.filter(campaign=campaign).exclude(status=Message.Status.HOLDOUT)
    held = Message.objects.filter(campaign=campaign, status=Message.Status.HOLDOUT)
    # Half the sent clients buy within the week, a tenth of the control group; one more
    # control client buys after the window, which must not count.
    sent_ids = list(sent.values_list("client_id", flat=True))
    held_ids = list(held.values_list("client_id", flat=True))
    Client.objects.filter(pk__in=sent_ids[::2]).update(last_purchase_at=start + timedelta(days=1))
    Client.objects.filter(pk__in=held_ids[::10]).update(last_purchase_at=start + timedelta(days=2))
    Client.objects.filter(pk=held_ids[1]).update(last_purchase_at=start + timedelta(days=8))
    uplift = experiments.holdout_uplift(campaign)
    assert uplift.sent == len(sent_ids) and uplift.holdout == len(held_ids)
    assert uplift.sent_buyers == len(sent_ids[::2])
    assert uplift.holdout_buyers == len(held_ids[::10])
    expected = 100 * (len(sent_ids[::2]) / len(sent_ids) - len(held_ids[::10]) / len(held_ids))
    assert abs(uplift.uplift - expected) < 1e-9
    assert 3 < uplift.margin < 15
    user = User.objects.create_superuser("boss", "b@example.com", "pw")
    client.force_login(user)
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Uplift over 7 days" in page and f"{uplift.uplift:.1f}" in page


def test_the_sweeper_picks_the_winner_when_the_frozen_clock_reaches_the_wait(setup):
    """The sweeper reads the clock itself: frozen, it decides at the wait's end, not before."""
    gateway_only(setup)
    make_clients(setup["operator"], 100, allow_sms=True)
    start = timezone.now().replace(microsecond=0) + timedelta(days=1)
    campaign = campaign_for(
        setup,
        ["viber"],
        ab_mode=Campaign.Testing.WINNER,
        ab_test_percent=50,
        ab_wait_minutes=30,
        ab_metric=Campaign.WinnerMetric.READ,
    )
    with_variants(setup, campaign)
    with time_machine.travel(start, tick=False):
        fanout.fan_out(campaign.pk)
    tested = Message.objects.filter(campaign=campaign, variant__isnull=False)
    tested_ids = list(tested.values_list("pk", flat=True))
    assert 30 <= len(tested_ids) <= 70
    # B's test share was read, A's only delivered: B wins on read rate.
    now = timezone.now()
    Delivery.objects.filter(message__in=tested.filter(variant__label="A")).update(
        status="delivered", delivered_at=now
    )
    Delivery.objects.filter(message__in=tested.filter(variant__label="B")).update(
        status="read", delivered_at=now, read_at=now
    )
    tested.filter(variant__label="A").update(status=Message.Status.DELIVERED)
    tested.filter(variant__label="B").update(status=Message.Status.READ)
    almost = start + timedelta(minutes=29, seconds=59)
    with time_machine.travel(almost, tick=False):
        services.sweep_once()
    campaign.refresh_from_db()
    assert campaign.ab_winner is None and campaign.ab_decided_at is None
    due = start + timedelta(minutes=30)
    with time_machine.travel(due, tick=False):
        assert services.sweep_once()["winners"] == 1
    campaign.refresh_from_db()
    assert campaign.ab_winner.label == "B" and campaign.ab_decided_at == due
    assert campaign.ab_reason.startswith("B won on read rate: 100.0%")
    waiting = Message.objects.filter(campaign=campaign).exclude(pk__in=tested_ids)
    assert waiting.count() == 100 - len(tested_ids)
    assert set(waiting.values_list("variant__label", flat=True)) == {"B"}
