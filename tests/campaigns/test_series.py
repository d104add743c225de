"""The dashboard chart's series over the simulator: each line adds up to what the table says."""

import hashlib
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db.models import Sum
from django.test import Client as HttpClient
from django.utils import timezone

from campaigns import fanout, series
from campaigns.models import Campaign, Delivery, LinkClick, Message
from clients.models import Operator
from tests.campaigns.driving import campaign_for, drive, make_clients
from tests.campaigns.test_experiments import gateway_only, with_variants

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_background_tasks"),
]

ROOT = Path(__file__).resolve().parents[2]


def total(data, metric, **match):
    return sum(
        sum(line["counts"])
        for line in data["series"]
        if line["metric"] == metric and all(line[k] == v for k, v in match.items())
    )


@pytest.fixture
def ran(setup):
    gateway_only(setup)
    setup["gateway_sim"].config.outcome_mix = {"delivered": 0.5, "read": 0.5}
    make_clients(setup["operator"], 60, allow_sms=True)
    campaign = campaign_for(
        setup,
        ["viber"],
        ab_mode=Campaign.Testing.SPLIT,
        launched_at=timezone.now() - timedelta(minutes=3),
    )
    with_variants(setup, campaign)
    fanout.fan_out(campaign.pk)
    assert drive(campaign, [setup["gateway"]])
    now = timezone.now()
    for message in Message.objects.filter(campaign=campaign).order_by("id")[:5]:
        LinkClick.objects.create(
            message=message,
            operator=message.operator,
            campaign=campaign,
            variant=message.variant,
            channel="viber",
            first_clicked_at=now,
            last_clicked_at=now,
        )
    return campaign


def test_each_metric_adds_up_per_variant_and_channel_to_the_deliveries(ran):
    data = series.timeline(ran)
    assert data["unit"] == "minute" and 4 <= len(data["buckets"]) <= 6
    assert len(data["labels"]) == len(data["buckets"])
    deliveries = Delivery.objects.filter(campaign=ran)
    for label in "AB":
        mine = deliveries.filter(message__variant__label=label)
        assert total(data, "delivered", variant=label) == mine.exclude(delivered_at=None).count()
        assert total(data, "read", variant=label) == mine.exclude(read_at=None).count()
    assert total(data, "read") > 0 and total(data, "delivered") > 0
    assert total(data, "clicked") == 5
    assert {line["channel"] for line in data["series"]} == {"viber"}
    cost = deliveries.aggregate(amount=Sum("price"))["amount"] or Decimal(0)
    assert cost > 0
    [line] = data["costs"]
    assert line["currency"] == "RUB"
    assert sum(line["amounts"]) == pytest.approx(float(cost))


def test_a_long_campaign_is_counted_per_hour_and_a_triggered_one_per_day(setup):
    launched = timezone.now() - timedelta(hours=30)
    long_one = campaign_for(setup, ["viber"], launched_at=launched)
    data = series.timeline(long_one)
    assert data["unit"] == "hour" and 30 <= len(data["buckets"]) <= 32
    trigger = campaign_for(
        setup, ["viber"], kind=Campaign.Kind.TRIGGER, trigger="birthday", launched_at=launched
    )
    data = series.timeline(trigger)
    assert data["unit"] == "day" and len(data["buckets"]) == series.DAYS
    today = timezone.now().astimezone(timezone.get_default_timezone()).date()
    assert data["buckets"][-1].startswith(today.isoformat())
    draft = campaign_for(setup, ["viber"], state=Campaign.State.DRAFT)
    assert series.timeline(draft)["buckets"] == []


def test_the_endpoint_answers_json_in_a_few_queries_and_not_for_another_tenant(
    ran, mark, django_assert_max_num_queries
):
    http = HttpClient()
    http.force_login(mark)
    with django_assert_max_num_queries(11):  # session, user, permissions, campaign, 4 series
        answer = http.get(f"/campaigns/{ran.pk}/series.json")
    assert answer.status_code == 200 and answer.json()["unit"] == "minute"
    other = Operator.objects.create(name="Other", code="other")
    theirs = Campaign.objects.create(
        operator=other, name="Theirs", template=ran.template, channels=["viber"]
    )
    assert http.get(f"/campaigns/{theirs.pk}/series.json").status_code == 404


def test_the_page_loads_the_vendored_chart_only_once_launched(ran, mark):
    http = HttpClient()
    http.force_login(mark)
    page = http.get(f"/campaigns/{ran.pk}/").content.decode()
    assert "vendor/chartjs/chart.umd.min.js" in page and 'id="timeline-chart"' in page
    assert 'data-split="variant"' in page
    Campaign.objects.filter(pk=ran.pk).update(launched_at=None, state=Campaign.State.DRAFT)
    page = http.get(f"/campaigns/{ran.pk}/").content.decode()
    assert "chart.umd.min.js" not in page


def test_the_vendored_chart_js_is_the_file_its_source_note_names():
    note = (ROOT / "static/vendor/chartjs/SOURCE.md").read_text()
    recorded = re.search(r"sha256 `([0-9a-f]{64})`", note).group(1)
    actual = hashlib.sha256((ROOT / "static/vendor/chartjs/chart.umd.min.js").read_bytes())
    assert actual.hexdigest() == recorded
