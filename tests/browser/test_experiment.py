"""A marketer builds a two-variant test-then-winner campaign and watches the winner roll out.

Real parts: Chromium, a `manage.py qcluster` on the test database, the cascade
gateway simulator over HTTP, and the sweeper run by the test every second (it
picks the winner, as the minute schedule does). The test share's wait is the
one thing shortened: once the test share is delivered, the test moves the
fan-out's time back past the wait instead of sleeping a minute.
"""

import time
from datetime import timedelta

import pytest
from django_q.models import Schedule
from playwright.sync_api import expect

from campaigns import outcomes, services
from campaigns.models import Campaign, Message, MessageTemplate
from tests.browser.conftest import route_sms_through
from tests.browser.test_marketer import sweeper
from tests.campaigns.clusters import start_cluster, stop
from tests.conftest import make_client

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 20

DELIVERED_BY_VARIANT = """label => {
  const chart = Chart.getChart("timeline-chart");
  if (!chart) return -1;
  return chart.data.datasets
    .filter(d => d.label.endsWith(" · " + label) && d.borderDash.length === 0)
    .reduce((sum, d) => sum + d.data.reduce((a, b) => a + b, 0), 0);
}"""


@pytest.fixture
def audience(sunrise, delivering_gateway):
    route_sms_through(sunrise, delivering_gateway)
    MessageTemplate.objects.create(operator=sunrise, name="Spring A", text="Spring sale: -20%")
    MessageTemplate.objects.create(operator=sunrise, name="Spring B", text="Spring: 2 for 1")
    for n in range(CLIENTS):
        make_client(sunrise, phone=f"7916{n:07d}", first_name=f"Client{n}", allow_sms=True)


def test_a_test_then_winner_campaign_sends_the_winner_to_the_rest_on_the_chart(
    page,
    live_server,
    login,
    mark,
    audience,
    delivering_gateway,
    monkeypatch,
):
    monkeypatch.setattr(services, "POLL_INTERVAL_SECONDS", 1)
    monkeypatch.setattr(outcomes, "FIRST_POLL_SECONDS", 1)
    Schedule.objects.filter(name="cascade-sweeper").delete()  # this test runs its own
    cluster = start_cluster()
    try:
        with sweeper() as sweeper_errors:
            login(page, live_server, "mark")
            page.get_by_role("link", name="New campaign").click()
            page.locator("#id_name").fill("Spring test")
            page.locator("#id_template").select_option(label="Spring A")
            page.locator("#id_channel_0").select_option("sms")
            page.locator("#id_ab_mode").select_option("winner")
            page.locator("#id_variant_b").select_option(label="Spring B")
            page.locator("#id_ab_test_percent").fill("50")
            page.locator("#id_ab_wait_minutes").fill("1")
            page.locator("#id_ab_metric").select_option("delivered")
            page.get_by_role("button", name="Save and preview").click()
            expect(page.get_by_role("heading", name="Preview: Spring test")).to_be_visible()

            page.once("dialog", lambda dialog: dialog.accept())
            page.get_by_role("button", name="Launch now").click()
            expect(page.get_by_role("heading", name="Spring test")).to_be_visible()
            campaign = Campaign.objects.get(name="Spring test")
            messages = Message.objects.filter(campaign=campaign)
            deadline = time.monotonic() + 30
            while messages.count() < CLIENTS and time.monotonic() < deadline:
                time.sleep(0.1)
            # About half: the share is a hash bucket of each client, not an exact count.
            test_share = messages.filter(variant__isnull=False).count()
            assert 0 < test_share < CLIENTS
            # The test share goes out, the rest waits; the chart shows both variants.
            expect(page.locator("[data-field=delivered]")).to_have_text(
                str(test_share), timeout=60_000
            )
            page.wait_for_function(
                f"() => ({DELIVERED_BY_VARIANT})('A') + ({DELIVERED_BY_VARIANT})('B') "
                f"=== {test_share}",
                timeout=30_000,
            )
            assert Message.objects.filter(campaign=campaign, status="pending").count() == (
                CLIENTS - test_share
            )
            # The wait is over: the sweeper picks the winner and sends it to the rest.
            campaign.refresh_from_db()
            Campaign.objects.filter(pk=campaign.pk).update(
                fanned_out_at=campaign.fanned_out_at - timedelta(minutes=2)
            )
            expect(page.locator("[data-field=delivered]")).to_have_text(
                str(CLIENTS), timeout=60_000
            )
        assert sweeper_errors == []
    finally:
        stop(cluster)

    campaign.refresh_from_db()
    winner = campaign.ab_winner.label
    loser = "B" if winner == "A" else "A"
    page.reload()
    expect(page.locator("#winner-reason")).to_contain_text(f"{winner} won on delivery rate")
    winners = Message.objects.filter(campaign=campaign, variant__label=winner).count()
    assert winners > CLIENTS - test_share  # its own test share and everyone who waited
    page.wait_for_function(
        f"() => ({DELIVERED_BY_VARIANT})('{winner}') === {winners}", timeout=30_000
    )
    losers = page.evaluate(f"({DELIVERED_BY_VARIANT})('{loser}')")
    assert losers == CLIENTS - winners
    assert delivering_gateway.stats()["accepted"] == CLIENTS
