"""A consent admin in the browser: find a client, turn SMS consent off with a reason, see
it in the history; the next campaign skips that client. A marketer may not edit consent.
"""

import pytest
from playwright.sync_api import expect

from campaigns import fanout, services
from campaigns.models import Campaign, Delivery, Message, MessageTemplate
from clients.models import Client, ConsentChange
from providers.models import ChannelRoute, ProviderAccount
from providers.status import DeliveryStatus
from tests.browser.conftest import said
from tests.conftest import make_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clients(sunrise):
    people = [
        ("79161234567", "Olga", "Petrova"),
        ("79160000001", "Anna", "Ivanova"),
        ("79160000002", "Boris", "Sidorov"),
        ("79160000003", "Vera", "Orlova"),
    ]
    return [
        make_client(sunrise, phone=phone, first_name=first, last_name=last, allow_sms=True)
        for phone, first, last in people
    ]


def test_a_consent_admin_turns_sms_off_and_the_next_campaign_skips_the_client(
    page, live_server, login, sunrise, connie, mark, clients, language
):
    """In Russian and in English; the reason is the admin's own words, kept as typed."""
    olga = clients[0]
    reason = {"ru": "Попросила по телефону не слать SMS", "en": "Asked by phone to stop SMS"}[
        language
    ]

    login(page, live_server, "connie", language)
    expect(page.get_by_role("heading", name=said(language, "Clients"))).to_be_visible()
    page.get_by_label(said(language, "Phone, card number or name")).fill("8 (916) 123-45-67")
    page.get_by_role("button", name=said(language, "Find")).click()
    rows = page.locator("#clients tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("+79161234567")
    rows.get_by_role("link", name="Olga Petrova").click()

    expect(page.get_by_role("heading", name="Olga Petrova")).to_be_visible()
    expect(page.locator("#history")).to_have_count(0)  # no consent changes recorded yet
    page.get_by_role("link", name=said(language, "Change consent")).click()
    heading = said(language, "Change consent of %(client)s", client="Olga Petrova")
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    sms = page.get_by_label(said(language, "SMS (and phone messengers)"))
    expect(sms).to_be_checked()
    sms.uncheck()
    page.get_by_label(said(language, "Reason (required)")).fill(reason)
    page.get_by_role("button", name=said(language, "Save consent")).click()

    flash = said(language, "%(flag)s consent turned off", flag="SMS")
    expect(page.locator(".flash")).to_have_text(f"{flash}.")
    entry = page.locator("#history li").first
    expect(page.locator("#history li")).to_have_count(1)
    expect(entry.locator("strong")).to_have_text("SMS")
    expect(entry).to_contain_text(f"{said(language, 'on')} → {said(language, 'off')}")
    expect(entry).to_contain_text(said(language, "Client page"))  # the door it came through
    expect(entry).to_contain_text("connie")
    expect(entry).to_contain_text(reason)
    olga.refresh_from_db()
    assert olga.allow_sms is False
    change = ConsentChange.objects.get(client=olga)
    assert (change.flag, change.old_value, change.new_value) == ("allow_sms", True, False)
    assert change.changed_by == connie
    assert change.reason == reason

    # The next SMS campaign over every client: fanned out as the launch task does.
    account = ProviderAccount.objects.create(
        operator=sunrise, name="SMS gateway", backend="cascade_gateway", channels=["sms"]
    )
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=account)
    template = MessageTemplate.objects.create(operator=sunrise, name="News", text="News")
    campaign = services.save_draft(
        operator=sunrise,
        user=mark,
        name="Everyone",
        template=template,
        channels=["sms"],
        audience_kind=Campaign.AudienceKind.SEGMENT,
    )
    services.launch(campaign_id=campaign.pk)  # its fan-out task waits: no cluster runs here
    fanout.fan_out(campaign.pk)

    skipped = Message.objects.get(campaign=campaign, client=olga)
    assert skipped.status == Message.Status.SKIPPED
    delivery = Delivery.objects.get(message=skipped)
    assert (delivery.status, delivery.error_code) == (DeliveryStatus.SKIPPED, "no_consent")
    others = Delivery.objects.filter(campaign=campaign).exclude(message=skipped)
    assert others.count() == Client.objects.filter(operator=sunrise).count() - 1
    assert set(others.values_list("status", flat=True)) == {DeliveryStatus.QUEUED}


def test_a_marketer_cannot_open_the_consent_page(page, live_server, login, mark, clients):
    login(page, live_server, "mark")
    response = page.goto(f"{live_server.url}/clients/{clients[0].pk}/consent/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Your role does not include this page.")
    expect(page.locator("#consent-form")).to_have_count(0)

    # Nor is the way there offered: the client page has no "Change consent" for a marketer.
    page.goto(f"{live_server.url}/clients/{clients[0].pk}/")
    expect(page.get_by_role("heading", name="Olga Petrova")).to_be_visible()
    expect(page.get_by_role("link", name="Change consent")).to_have_count(0)
