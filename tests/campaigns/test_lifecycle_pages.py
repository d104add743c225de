"""The builder, preview and dashboard of triggered and recurring campaigns."""

import zoneinfo
from datetime import time, timedelta

from django.utils import timezone

from campaigns import recurring, services, triggers
from campaigns.models import Campaign, Message
from clients.models import Client
from tests.campaigns.test_views import browser, builder_post, no_broker, shop  # noqa: F401


def test_a_birthday_trigger_is_built_previewed_launched_and_charted(mark, shop):  # noqa: F811
    today = timezone.now().astimezone(zoneinfo.ZoneInfo("Europe/Moscow")).date()
    for phone, day in (("79120000001", today), ("79120000002", today + timedelta(days=3))):
        Client.objects.filter(phone=phone).update(birth_date=day.replace(year=1990))
    page = browser(mark)
    response = page.post(
        "/campaigns/new/",
        builder_post(
            shop["template"],
            kind="trigger",
            trigger="birthday",
            trigger_days="0",
            trigger_local_hour="0",
            cap_per_day="1",
        ),
    )
    campaign = Campaign.objects.get()
    assert response.status_code == 302, response.content.decode()[:2000]
    assert (campaign.kind, campaign.trigger, campaign.cap_per_day) == ("trigger", "birthday", 1)
    preview = page.get(f"/campaigns/{campaign.pk}/preview/").content.decode()
    assert 'data-testid="caught-today">1<' in preview
    assert 'data-testid="caught-week">2<' in preview
    assert "1 message per client per channel a day" in preview
    services.launch(campaign_id=campaign.pk)
    assert triggers.run_pass(campaign.pk) == 1
    dashboard = page.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'id="sends-per-day"' in dashboard
    assert f'data-day="{today.isoformat()}" data-messages="1"' in dashboard
    assert Message.objects.filter(campaign=campaign).count() == 1


def test_the_builder_says_what_a_trigger_or_a_recurrence_lacks(mark, shop):  # noqa: F811
    page = browser(mark)
    response = page.post("/campaigns/new/", builder_post(shop["template"], kind="trigger"))
    assert "Choose what triggers the campaign." in response.content.decode()
    response = page.post(
        "/campaigns/new/", builder_post(shop["template"], kind="recurring", recurrence="daily")
    )
    assert "Choose the time of day each run starts." in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_recurring_campaign_lists_its_runs(mark, shop):  # noqa: F811
    page = browser(mark)
    page.post(
        "/campaigns/new/",
        builder_post(
            shop["template"],
            kind="recurring",
            recurrence="weekly",
            recurrence_day="4",
            recurrence_time="10:00",
        ),
    )
    campaign = Campaign.objects.get()
    assert (campaign.recurrence, campaign.recurrence_day, campaign.recurrence_time) == (
        "weekly",
        4,
        time(10),
    )
    launched = services.launch(campaign_id=campaign.pk)
    assert launched.next_run_at.astimezone(zoneinfo.ZoneInfo("Europe/Moscow")).weekday() == 4
    [run] = recurring.start_due_runs(launched.next_run_at)
    dashboard = page.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'id="runs"' in dashboard and f'href="/campaigns/{run}/"' in dashboard
