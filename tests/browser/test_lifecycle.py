"""A marketer builds a birthday trigger in the browser, activates it, and sees it send.

Real parts: Chromium, a `manage.py qcluster` on the test database, the cascade
gateway simulator over HTTP, and the sweeper run by the test every second (the
minute schedule would run the trigger's pass the same way).
"""

import re
import zoneinfo
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule
from playwright.sync_api import expect

from campaigns import outcomes, services
from campaigns.models import Campaign, Message, MessageTemplate
from tests.browser.conftest import route_sms_through
from tests.browser.test_marketer import sweeper
from tests.campaigns.clusters import start_cluster, stop
from tests.conftest import make_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def birthdays(sunrise, delivering_gateway):
    """Three clients whose birthday is today in Moscow, one whose birthday is in two days."""
    route_sms_through(sunrise, delivering_gateway)
    MessageTemplate.objects.create(
        operator=sunrise, name="Birthday", text="Happy birthday, {{ first_name }}! 15% off today."
    )
    today = timezone.now().astimezone(zoneinfo.ZoneInfo(sunrise.time_zone)).date()
    for n, day in enumerate([today, today, today, today + timedelta(days=2)]):
        make_client(
            sunrise,
            phone=f"7916{n:07d}",
            first_name=f"Client{n}",
            allow_sms=True,
            birth_date=day.replace(year=1991),
        )
    return today


def test_a_birthday_trigger_built_in_the_builder_sends_and_charts_its_first_day(
    page, live_server, login, mark, birthdays, delivering_gateway, monkeypatch
):
    monkeypatch.setattr(services, "POLL_INTERVAL_SECONDS", 1)
    monkeypatch.setattr(outcomes, "FIRST_POLL_SECONDS", 1)
    Schedule.objects.filter(name="cascade-sweeper").delete()  # this test runs its own
    cluster = start_cluster()
    try:
        with sweeper() as sweeper_errors:
            login(page, live_server, "mark")
            page.get_by_role("link", name="New campaign").click()
            page.locator("#id_name").fill("Birthday greeting")
            page.locator("#id_template").select_option(label="Birthday")
            page.locator("#id_channel_0").select_option("sms")
            page.get_by_label("On a trigger, for each client it catches").check()
            page.locator("#id_trigger").select_option("birthday")
            page.locator("#id_trigger_days").fill("0")
            page.locator("#id_trigger_local_hour").fill("0")
            page.locator("#id_cap_per_day").fill("1")
            page.get_by_role("button", name="Save and preview").click()

            expect(page.get_by_role("heading", name="Preview: Birthday greeting")).to_be_visible()
            expect(page.get_by_test_id("caught-today")).to_have_text("3")
            expect(page.get_by_test_id("caught-week")).to_have_text("4")
            expect(page.get_by_test_id("caps")).to_contain_text("1 message per client")

            page.once("dialog", lambda dialog: dialog.accept())
            page.get_by_role("button", name="Launch now").click()
            expect(page.get_by_role("heading", name="Birthday greeting")).to_be_visible()
            expect(page.locator("[data-field=recipients]")).to_have_text("3", timeout=60_000)
            expect(page.locator("[data-field=delivered]")).to_have_text("3", timeout=60_000)
        assert sweeper_errors == []
    finally:
        stop(cluster)

    campaign = Campaign.objects.get(name="Birthday greeting")
    assert (campaign.kind, campaign.trigger, campaign.state) == ("trigger", "birthday", "running")
    page.reload()
    expect(page.locator("#state")).to_have_text("Running")
    today_bar = page.locator(f'#sends-per-day [data-day="{birthdays.isoformat()}"]')
    expect(today_bar).to_have_attribute("data-messages", "3")
    expect(today_bar.locator(".fill")).to_have_attribute("style", re.compile(r"height: 100%"))
    assert Message.objects.filter(campaign=campaign).count() == 3
    assert delivering_gateway.stats()["accepted"] == 3
