"""Marketers' pages over the Django test client: builder, preview, control, dashboard, messages."""

import csv
import io
import json
from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as Browser

from campaigns.models import AudienceListEntry, Campaign, Delivery, Message, MessageTemplate
from clients.models import Card, Client
from providers.models import ChannelRoute, ProviderAccount
from providers.status import DeliveryStatus
from tests.conftest import make_client


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("campaigns.queue.enqueue_fan_out", lambda campaign_id: None)
    monkeypatch.setattr("campaigns.queue.kick_campaign", lambda campaign_id: None)


@pytest.fixture
def shop(sunrise):
    """Routes for viber and sms at a priced account, a template, and three clients."""
    account = ProviderAccount.objects.create(
        operator=sunrise,
        name="Gateway",
        backend="cascade_gateway",
        channels=["viber", "sms"],
        cost_per_part="1.50",
    )
    for channel in ("viber", "sms"):
        ChannelRoute.objects.create(operator=sunrise, channel=channel, account=account)
    template = MessageTemplate.objects.create(
        operator=sunrise,
        name="Sale",
        text="Hi {{ first_name }}, sale -20% on Viber",
        sms_text="Привет, {{ first_name }}! Скидка 20%",
    )
    anna = make_client(sunrise, phone="79120000001", first_name="Anna", allow_sms=True)
    make_client(sunrise, phone="79120000002", first_name="Boris", allow_sms=True)
    make_client(sunrise, phone="79120000003", first_name="Vera", allow_sms=False)
    Card.objects.create(operator=sunrise, client=anna, number=5001, bonus=300)
    return {"account": account, "template": template, "operator": sunrise}


def browser(user) -> Browser:
    b = Browser()
    b.force_login(user)
    return b


def builder_post(chosen, **overrides):
    data = {
        "name": "Weekend",
        "template": chosen.pk,
        "new_text": "",
        "channel_0": "viber",
        "channel_1": "sms",
        "channel_2": "",
        "audience_kind": "segment",
        "start": "now",
        "ttl_minutes": "60",
        "consent": "",
    }
    data.update(overrides)
    return data


def test_a_marketer_builds_a_draft_on_a_segment(mark, shop):
    response = browser(mark).post(
        "/campaigns/new/",
        builder_post(
            shop["template"], bonus_min="100", send_window_start="09:00", send_window_end="21:00"
        ),
    )
    campaign = Campaign.objects.get()
    assert (
        response.status_code == 302 and response["Location"] == f"/campaigns/{campaign.pk}/preview/"
    )
    assert campaign.state == Campaign.State.DRAFT and campaign.created_by == mark
    assert campaign.channels == ["viber", "sms"] and campaign.ttl_minutes == 60
    assert campaign.segment == {"bonus_min": 100.0}
    assert (campaign.send_window_start, campaign.send_window_end) == (time(9), time(21))


def test_written_text_becomes_a_template_of_its_own(mark, shop):
    browser(mark).post(
        "/campaigns/new/",
        builder_post(shop["template"], template="", new_text="Hi {{ first_name }}"),
    )
    campaign = Campaign.objects.get()
    assert campaign.template.text == "Hi {{ first_name }}" and campaign.template.name == "Weekend"


def test_a_start_time_is_read_in_the_operators_zone(mark, shop):
    browser(mark).post(
        "/campaigns/new/",
        builder_post(shop["template"], start="at", scheduled_at="2026-12-01T10:00"),
    )
    scheduled = Campaign.objects.get().scheduled_at
    assert scheduled.isoformat() == "2026-12-01T07:00:00+00:00"  # 10:00 in Moscow


def test_the_builder_refuses_a_repeated_channel_and_saves_nothing(mark, shop):
    response = browser(mark).post(
        "/campaigns/new/", builder_post(shop["template"], channel_1="viber")
    )
    assert response.status_code == 200
    assert "only once" in response.content.decode()
    assert not Campaign.objects.exists()


def test_an_uploaded_list_becomes_the_audience_with_its_variables(mark, shop):
    upload = SimpleUploadedFile(
        "list.csv", b"phone;Bonus\n+7 912 000-00-01;150\n89120000002;20\n", "text/csv"
    )
    browser(mark).post(
        "/campaigns/new/",
        {**builder_post(shop["template"], audience_kind="list"), "audience_file": upload},
    )
    entries = AudienceListEntry.objects.order_by("phone")
    assert [(e.phone, e.variables) for e in entries] == [
        ("79120000001", {"Bonus": "150"}),
        ("79120000002", {"Bonus": "20"}),
    ]


def test_a_list_with_a_bad_row_is_refused_with_the_row_and_nothing_saved(mark, shop):
    upload = SimpleUploadedFile(
        "list.csv", b"phone,card\n79120000001,\nnot-a-phone,\n,999\n", "text/csv"
    )
    response = browser(mark).post(
        "/campaigns/new/",
        {**builder_post(shop["template"], audience_kind="list"), "audience_file": upload},
    )
    page = response.content.decode()
    assert response.status_code == 200 and "2 problems" in page
    assert "not-a-phone" in page and "No such card." in page
    assert not Campaign.objects.exists() and not AudienceListEntry.objects.exists()


def test_the_live_count_says_who_will_be_skipped_and_why(mark, shop):
    response = browser(mark).get(
        "/campaigns/audience-count/", {"channel_0": "viber", "channel_1": "sms"}
    )
    page = response.content.decode()
    assert 'data-testid="recipient-count">3<' in page
    assert 'data-testid="reachable-count">2<' in page
    assert 'data-testid="skipped-count">1<' in page and "no consent for viber" in page


def test_the_preview_shows_segments_highlights_and_cost(mark, shop):
    browser(mark).post("/campaigns/new/", builder_post(shop["template"]))
    campaign = Campaign.objects.get()
    page = browser(mark).get(f"/campaigns/{campaign.pk}/preview/").content.decode()
    assert "Hi Anna, sale -20% on Viber" in page  # rendered for the first client
    assert "UCS-2" in page and '<mark title="forces UCS-2">Привет</mark>' in page
    assert 'data-testid="segments-sms">1<' in page  # 29 UCS-2 characters: one part of 70
    assert 'data-testid="cost-total">' in page and "RUB" in page


def test_launch_pause_resume_and_cancel_go_through_the_services(mark, shop):
    browser_ = browser(mark)
    browser_.post("/campaigns/new/", builder_post(shop["template"]))
    campaign = Campaign.objects.get()
    states = []
    for action in ("launch", "pause", "resume", "cancel"):
        response = browser_.post(f"/campaigns/{campaign.pk}/{action}/")
        assert response.status_code == 302
        states.append(Campaign.objects.get().state)
    assert states == ["running", "paused", "running", "cancelled"]


def test_an_impossible_action_is_a_message_not_an_error(mark, shop):
    browser(mark).post("/campaigns/new/", builder_post(shop["template"]))
    campaign = Campaign.objects.get()
    response = browser(mark).post(f"/campaigns/{campaign.pk}/resume/", follow=True)
    assert "cannot become" in response.content.decode()
    assert Campaign.objects.get().state == "draft"


def test_actions_need_a_post(mark, shop):
    browser(mark).post("/campaigns/new/", builder_post(shop["template"]))
    campaign = Campaign.objects.get()
    assert browser(mark).get(f"/campaigns/{campaign.pk}/launch/").status_code == 405
    assert Campaign.objects.get().state == "draft"


def test_another_operators_campaign_is_not_found(bob, world):
    campaign = world["campaign"]
    for url in (
        f"/campaigns/{campaign.pk}/",
        f"/campaigns/{campaign.pk}/preview/",
        f"/campaigns/{campaign.pk}/stats.json",
        f"/campaigns/{campaign.pk}/messages/",
        f"/campaigns/{campaign.pk}/messages/{world['message'].pk}/",
        f"/campaigns/{campaign.pk}/export.csv",
        f"/campaigns/{campaign.pk}/edit/",
        f"/campaigns/templates/{world['messagetemplate'].pk}/",
    ):
        assert browser(bob).get(url).status_code == 404, url
    assert browser(bob).post(f"/campaigns/{campaign.pk}/cancel/").status_code == 404
    assert Campaign.objects.get(pk=campaign.pk).state == "draft"


def test_a_consent_admin_has_no_campaign_pages(connie, world):
    assert browser(connie).get("/campaigns/").status_code == 403
    assert browser(connie).get(f"/campaigns/{world['campaign'].pk}/").status_code == 403


def test_signed_out_visitors_are_sent_to_sign_in(client, world):
    response = client.get("/campaigns/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_dashboard_numbers_come_as_json(mark, world):
    body = json.loads(browser(mark).get(f"/campaigns/{world['campaign'].pk}/stats.json").content)
    assert body["recipients"] == 1 and body["state"] == "draft"
    assert [stage["stage"] for stage in body["funnel"]] == ["queued", "sent", "delivered", "read"]


def test_messages_are_found_by_phone_and_card_and_exported(mark, world):
    campaign = world["campaign"]
    page = (
        browser(mark)
        .get(f"/campaigns/{campaign.pk}/messages/", {"q": "+7 912 345"})
        .content.decode()
    )
    assert f"/messages/{world['message'].pk}/" in page
    page = (
        browser(mark).get(f"/campaigns/{campaign.pk}/messages/", {"q": "1000001"}).content.decode()
    )
    assert f"/messages/{world['message'].pk}/" in page
    page = (
        browser(mark)
        .get(f"/campaigns/{campaign.pk}/messages/", {"q": "79000000000"})
        .content.decode()
    )
    assert "No messages match." in page
    response = browser(mark).get(f"/campaigns/{campaign.pk}/export.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["message_id", "client_id", "phone"]
    assert rows[1][0] == str(world["message"].pk) and rows[1][6] == "sent"


def test_the_export_comes_plain_for_programs_and_with_semicolons_for_russian_excel(mark, world):
    delivery = world["message"].deliveries.get()
    submitted = datetime(2026, 12, 1, 21, 30, 5, tzinfo=UTC)  # 00:30:05 next day in Moscow
    Delivery.objects.filter(pk=delivery.pk).update(
        price=Decimal("1.2500"), currency="RUB", submitted_at=submitted
    )
    url = f"/campaigns/{world['campaign'].pk}/export.csv"

    plain = b"".join(browser(mark).get(url).streaming_content).decode("utf-8")
    assert not plain.startswith("\ufeff")
    header, row = list(csv.reader(io.StringIO(plain)))
    values = dict(zip(header, row, strict=True))
    assert (values["price"], values["submitted_at"]) == ("1.2500", "2026-12-01T21:30:05Z")

    excel = b"".join(browser(mark).get(url, {"sep": ";"}).streaming_content).decode("utf-8")
    assert excel.startswith("\ufeffmessage_id;client_id;")
    header, row = list(csv.reader(io.StringIO(excel.lstrip("\ufeff")), delimiter=";"))
    values = dict(zip(header, row, strict=True))
    assert values["price"] == "1,2500"
    assert values["submitted_at"] == "02.12.2026 00:30:05"  # the operator's zone, Moscow
    assert values["delivered_at"] == ""


def test_a_message_shows_its_steps_and_raw_payloads(mark, world):
    page = (
        browser(mark)
        .get(f"/campaigns/{world['campaign'].pk}/messages/{world['message'].pk}/")
        .content.decode()
    )
    assert "Step 1: Viber" in page and "Raw payload" in page


def test_a_template_is_created_and_previewed(mark, sunrise):
    response = browser(mark).post(
        "/campaigns/templates/new/",
        {"name": "Hello", "text": "Hi {{ first_name }} {", "sms_text": "", "viber_text": ""},
    )
    template = MessageTemplate.objects.get()
    assert response["Location"] == f"/campaigns/templates/{template.pk}/"
    page = browser(mark).get(response["Location"]).content.decode()
    assert "GSM-7" in page and "Hi Anna {" in page  # made-up sample client; { costs two septets


# --- query counts: pages cost the same whatever the data size ---------------------------------


def grow(operator, campaign, n):
    clients = Client.objects.bulk_create(
        Client(operator=operator, phone=f"7913{i:07d}", allow_sms=True) for i in range(n)
    )
    messages = Message.objects.bulk_create(
        Message(
            operator=operator, campaign=campaign, client=c, recipient_key=f"c{c.pk}", phone=c.phone
        )
        for c in clients
    )
    Delivery.objects.bulk_create(
        Delivery(
            operator=operator,
            message=m,
            campaign=campaign,
            channel="sms",
            idempotency_key=f"{m.pk}00",
            status=DeliveryStatus.DELIVERED,
        )
        for m in messages
    )
    for _ in range(30):
        Campaign.objects.create(
            operator=operator, name=f"c{_}", template=campaign.template, channels=["sms"]
        )


@pytest.mark.parametrize("size", [0, 500])
def test_every_page_renders_in_at_most_ten_queries(
    mark, world, size, django_assert_max_num_queries
):
    campaign = world["campaign"]
    if size:
        grow(world["operator"], campaign, size)
    b = browser(mark)
    b.get("/campaigns/")  # the session is warm, as for a user clicking around
    for url in (
        "/campaigns/",
        f"/campaigns/{campaign.pk}/",
        f"/campaigns/{campaign.pk}/stats.json",
        f"/campaigns/{campaign.pk}/messages/",
        f"/campaigns/{campaign.pk}/messages/{world['message'].pk}/",
        f"/campaigns/{campaign.pk}/preview/",
        f"/campaigns/{campaign.pk}/edit/",
        "/campaigns/templates/",
        f"/campaigns/templates/{world['messagetemplate'].pk}/",
        "/campaigns/audience-count/?channel_0=sms",
    ):
        with django_assert_max_num_queries(10, info=url):
            assert b.get(url).status_code == 200
