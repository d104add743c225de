"""A marketer in the browser: build, preview, launch and watch a Viber → SMS campaign;
pause and cancel another; and another operator's marketer cannot open it.

Real parts in the first test: the pages in Chromium, a `manage.py qcluster`
process on the test database, the cascade gateway simulator over HTTP, and the
sweeper (run by the test every second, as the minute schedule would).
"""

import re
import threading
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import translation
from django_q.models import Schedule
from playwright.sync_api import expect

from campaigns import fanout, outcomes, services
from campaigns.models import Campaign, CampaignCost, Delivery, Message, MessageTemplate
from clients import formats
from clients.models import Card
from providers.models import ChannelRoute, ProviderAccount
from providers.simulators.base import SimulatorConfig
from providers.simulators.cascade_gateway import CascadeGatewaySimulator
from providers.status import DeliveryStatus
from tests.browser.conftest import said
from tests.campaigns.clusters import start_cluster, stop
from tests.conftest import make_client

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = 40
# Cyrillic on purpose: it forces UCS-2, and this text then needs two SMS parts.
SMS_TEXT = "{{ first_name }}, у вас {{ bonus }} бонусов! Скидка 20% на всё до воскресенья в Sunrise Market."  # noqa: RUF001
FINAL = [
    Message.Status.DELIVERED,
    Message.Status.READ,
    Message.Status.FAILED,
    Message.Status.SKIPPED,
    Message.Status.CANCELLED,
]


@pytest.fixture
def gateway_sim():
    # About 30% of Viber steps are undeliverable; the gateway then falls through
    # to SMS by itself (a native cascade) and the poll reports both legs.
    sim = CascadeGatewaySimulator(
        config=SimulatorConfig(
            delivery_delay=0.4, outcome_mix={"delivered": 0.7, "undeliverable": 0.3}, seed=3
        ),
        identical_window=0,
    ).start()
    yield sim
    sim.stop()


@pytest.fixture
def shop(sunrise):
    """A gateway account routed for Viber and SMS, a template, and the operator's clients.

    40 clients may get SMS and have at least 100 bonus points: the segment the
    test builds. Two have SMS consent off, two have too few points.
    """
    account = ProviderAccount.objects.create(
        operator=sunrise,
        name="Cascade gateway",
        backend="cascade_gateway",
        base_url="http://127.0.0.1:9",  # the test that sends points it at its simulator
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["viber", "sms"],
        # The poll rule "no identical request within a minute" would hold statuses back.
        options={"flavour": "json", "identical_request_seconds": 0},
        sender_names={"viber": "Sunrise", "sms": "Sunrise"},
        cost_per_part=Decimal("2.45"),
        currency="RUB",
        max_batch=25,
    )
    ChannelRoute.objects.create(
        operator=sunrise, channel="viber", account=account, priority=1, cost_per_part="0.85"
    )
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=account, priority=1)
    template = MessageTemplate.objects.create(
        operator=sunrise,
        name="Weekend sale",
        text="{{ first_name }}, you have {{ bonus }} points: 20% off everything until Sunday!",
        sms_text=SMS_TEXT,
    )
    people = [("Anna", True, 150), ("Boris", True, 420)] + [
        (f"Client{n:02d}", True, 100 + 10 * n) for n in range(RECIPIENTS - 2)
    ]
    people += [("Vera", False, 300), ("Gleb", False, 500), ("Dina", True, 20), ("Egor", True, 5)]
    for n, (first_name, allow_sms, bonus) in enumerate(people):
        client = make_client(
            sunrise, phone=f"7916{n:07d}", first_name=first_name, allow_sms=allow_sms
        )
        Card.objects.create(operator=sunrise, client=client, number=5000 + n, bonus=bonus)
    return {"account": account, "template": template}


@contextmanager
def sweeper(interval: float = 1.0):
    """services.sweep_once() every `interval` seconds in a thread, as the schedule does."""
    done = threading.Event()
    errors: list[BaseException] = []

    def run():
        try:
            while not done.is_set():
                try:
                    services.sweep_once()
                except Exception as error:  # reported by the test, not lost in the thread
                    errors.append(error)
                done.wait(interval)
        finally:
            connection.close()  # the thread's own connection, or the test database stays busy

    thread = threading.Thread(target=run, name="sweeper", daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        done.set()
        thread.join(30)


def cell(page, channel: str, column: str):
    return page.locator(f'#channels tr[data-channel="{channel}"] [data-col="{column}"]')


def test_a_marketer_builds_launches_and_watches_a_viber_to_sms_campaign(
    page, live_server, login, screenshot, mark, shop, gateway_sim, monkeypatch, language
):
    """In Russian (whose run refreshes the README's screenshots) and in English."""
    name = {"ru": "Распродажа выходных", "en": "Weekend sale"}[language]
    shop["template"].name = name
    shop["template"].save(update_fields=["name"])

    def shoot(shot: str) -> None:
        if language == "ru":
            screenshot(page, shot)

    ProviderAccount.objects.filter(pk=shop["account"].pk).update(base_url=gateway_sim.url)
    monkeypatch.setattr(services, "POLL_INTERVAL_SECONDS", 1)
    monkeypatch.setattr(outcomes, "FIRST_POLL_SECONDS", 1)  # dispatch in this process, if any
    # The migration's minute schedule would run a second sweeper inside the
    # cluster, with the one-minute poll interval; this test runs its own.
    Schedule.objects.filter(name="cascade-sweeper").delete()
    cluster = start_cluster()
    try:
        with sweeper() as sweeper_errors:
            login(page, live_server, "mark", language)
            page.get_by_role("link", name=said(language, "New campaign")).click()
            expect(page.get_by_role("heading", name=said(language, "New campaign"))).to_be_visible()

            page.locator("#id_name").fill(name)
            page.locator("#id_template").select_option(label=name)
            page.locator("#id_channel_0").select_option("viber")
            page.locator("#id_channel_1").select_option("sms")
            page.locator("#id_consent").select_option("allow_sms")
            page.get_by_label(said(language, "Bonus from")).fill("100")

            count = page.locator("#audience-count")
            expect(count.get_by_test_id("recipient-count")).to_have_text(str(RECIPIENTS))
            expect(count.get_by_test_id("reachable-count")).to_have_text(str(RECIPIENTS))
            expect(count.get_by_test_id("skipped-count")).to_have_text("0")
            reached = said(language, "can be reached")
            expect(count).to_contain_text(
                f"{reached} {said(language, 'on %(channels)s', channels='Viber → SMS')}"
            )
            shoot("builder")

            page.get_by_role("button", name=said(language, "Save and preview")).click()
            heading = said(language, "Preview: %(name)s", name=name)
            expect(page.get_by_role("heading", name=heading)).to_be_visible()
            campaign = Campaign.objects.get(operator__code="sunrise", name=name)
            assert campaign.channels == ["viber", "sms"]
            assert campaign.segment == {"consent": "allow_sms", "bonus_min": 100.0}

            sms = page.get_by_test_id("sms-sms")
            expect(sms).to_contain_text("UCS-2")
            expect(page.get_by_test_id("segments-sms")).to_have_text("2")
            expect(page.get_by_test_id("segments-viber")).to_have_text("2")  # its SMS fallback
            expect(sms.locator("mark").first).to_be_visible()
            expect(
                page.locator(".channel-preview[data-channel=sms] .phone-preview mark").first
            ).to_be_visible()
            # 40 Viber messages at 0.85, and the assumed 10% (4) fall through to
            # SMS: 2 UCS-2 parts at 2.45 each. 34.00 + 19.60.
            with translation.override(language):
                total, unit = formats.money(Decimal("53.60"), "RUB"), formats.money(0.85, "RUB")
            expect(page.get_by_test_id("cost-total")).to_have_text(total)  # 53,60 ₽ / RUB53.60
            expect(page.locator("#cost")).to_contain_text(unit)
            shoot("preview")

            page.once("dialog", lambda dialog: dialog.accept())
            page.get_by_role("button", name=said(language, "Launch now")).click()
            expect(page.get_by_role("heading", name=name)).to_be_visible()
            expect(page.locator(".flash")).to_contain_text(
                said(language, "“%(name)s” launched.", name=name)
            )

            expect(page.locator("[data-field=recipients]")).to_have_text(str(RECIPIENTS))
            expect(page.locator("[data-field=progress]")).to_have_text(
                re.compile(r"^100(\.0)?$"), timeout=90_000
            )
            done = said(language, "Done")
            expect(page.locator("#state")).to_have_text(done, timeout=30_000)
            fell_through = cell(page, "sms", "fell_through_here")
            expect(fell_through).to_have_text(re.compile(r"^[1-9]\d*$"))
        assert sweeper_errors == []
    finally:
        stop(cluster)

    # The live page stops polling once the campaign is done but keeps the Pause
    # and Cancel buttons of a running one; a reload shows what a marketer sees next.
    page.reload()
    expect(page.locator("#state")).to_have_text(done)
    expect(page.locator("#actions button")).to_have_count(0)
    expect(page.locator("[data-funnel=queued]")).to_have_attribute(
        "style", re.compile(r"width: 100%")
    )
    shoot("dashboard")

    messages = Message.objects.filter(campaign=campaign)
    assert messages.count() == RECIPIENTS
    assert messages.exclude(status__in=FINAL).count() == 0
    sms_legs = Delivery.objects.filter(campaign=campaign, channel="sms", step=1)
    assert int(fell_through.text_content()) == sms_legs.count() > 0
    viber_failed = Delivery.objects.filter(
        campaign=campaign, channel="viber", step=0, status=DeliveryStatus.UNDELIVERABLE
    )
    assert viber_failed.count() == sms_legs.count()
    delivered = messages.filter(status=Message.Status.DELIVERED).count()
    expect(page.locator("[data-field=delivered]")).to_have_text(str(delivered))
    expect(page.locator("[data-field=failed]")).to_have_text(
        str(messages.filter(status=Message.Status.FAILED).count())
    )
    spent = CampaignCost.objects.filter(campaign=campaign, currency="RUB").aggregate(
        total=Sum("amount")
    )["total"]
    with translation.override(language):
        expect(page.locator("[data-field=cost_text]")).to_have_text(formats.money(spent, "RUB"))
    assert gateway_sim.stats()["duplicate_keys"] == {}


def test_a_marketer_pauses_and_then_cancels_a_running_campaign(
    page, live_server, login, sunrise, mark, shop
):
    campaign = services.save_draft(
        operator=sunrise,
        user=mark,
        name="Midweek reminder",
        template=shop["template"],
        channels=["viber", "sms"],
        audience_kind=Campaign.AudienceKind.SEGMENT,
        segment={"consent": "allow_sms"},
    )
    services.launch(campaign_id=campaign.pk)  # its fan-out task waits: no cluster runs here
    fanout.fan_out(campaign.pk)  # so the messages exist, queued, never sent

    login(page, live_server, "mark")
    page.get_by_role("link", name="Midweek reminder").click()
    expect(page.locator("#state")).to_have_text("Running")
    expect(page.locator("[data-field=recipients]")).to_have_text("42")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".flash")).to_contain_text("“Midweek reminder” paused.")
    expect(page.locator("#state")).to_have_text("Paused")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.PAUSED

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel campaign").click()
    expect(page.locator(".flash")).to_contain_text("“Midweek reminder” cancelled.")
    expect(page.locator("#state")).to_have_text("Cancelled")
    expect(page.locator("#actions button")).to_have_count(0)
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.CANCELLED
    assert campaign.finished_at is not None
    messages = Message.objects.filter(campaign=campaign)
    assert messages.count() == 42
    assert set(messages.values_list("status", flat=True)) == {Message.Status.CANCELLED}
    assert not Delivery.objects.filter(
        campaign=campaign, status__in=[DeliveryStatus.QUEUED, DeliveryStatus.PENDING]
    ).exists()


def test_a_marketer_of_another_operator_gets_not_found_for_the_campaign_url(
    page, live_server, login, sunrise, mark, bob, shop
):
    campaign = services.save_draft(
        operator=sunrise,
        user=mark,
        name="Sunrise secret sale",
        template=shop["template"],
        channels=["sms"],
        audience_kind=Campaign.AudienceKind.SEGMENT,
    )

    login(page, live_server, "bob")
    for path in ("", "preview/", "messages/", "edit/", "stats.json"):
        response = page.goto(f"{live_server.url}/campaigns/{campaign.pk}/{path}")
        assert response.status == 404, path
        if path != "stats.json":
            expect(page.get_by_role("heading", name="Not found")).to_be_visible()
            expect(page.locator("main")).to_contain_text("belongs to another operator")
        assert "Sunrise secret sale" not in page.content()
        assert "Weekend sale" not in page.content()  # nor its template's name
