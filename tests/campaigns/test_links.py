"""Tracked links: short codes, the redirect, and one click row per message."""

import pytest
from django.test import Client as HttpClient

from campaigns import experiments, fanout, links
from campaigns.models import LinkClick, Message
from campaigns.rendering import Content
from clients.models import Operator
from providers.models import ChannelRoute
from tests.campaigns.driving import campaign_for, drive, make_clients

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_background_tasks"),
]


def test_a_code_round_trips_and_a_tampered_one_is_refused():
    code = links.encode(123456789, "viber", 3)
    assert links.decode(code) == (123456789, "viber", 3)
    assert len(code) <= 14
    tampered = code[:-1] + ("A" if code[-1] != "A" else "B")
    assert links.decode(tampered) is None
    assert links.decode("not-a-code!") is None
    assert links.decode(links.encode(123456780, "viber", 3)[:-5] + code[-5:]) is None


def test_rewrite_replaces_each_url_and_keeps_placeholder_urls():
    content = Content(
        text="Sale https://shop.example/sale. Card: https://shop.example/c/{{ card }}",
        html='<a href="https://shop.example/sale">go</a>',
        button_url="https://shop.example/app",
    )
    links.rewrite(content, 42, "email")
    assert "https://shop.example/sale" not in content.text + content.html
    assert "https://shop.example/c/{{ card }}" in content.text
    first = links.short_url(links.encode(42, "email", 0))
    assert first + "." in content.text and f'href="{first}"' in content.html
    assert content.button_url == links.short_url(links.encode(42, "email", 1))


def test_a_click_redirects_with_utm_and_is_counted_once_per_message(setup):
    ChannelRoute.objects.filter(channel="sms").update(account=setup["gateway"])
    setup["gateway_sim"].config.outcome_mix = {"delivered": 1.0}
    template = setup["template"]
    template.viber_text = "Hi {{ first_name }}: https://shop.example/sale?x=1"
    template.save()
    make_clients(setup["operator"], 3, allow_sms=True)
    campaign = campaign_for(setup, ["viber"], track_links=True)
    fanout.fan_out(campaign.pk)
    assert drive(campaign, [setup["gateway"]])
    sent = [m.request.get("text_viber") or "" for m in setup["gateway_sim"].messages.values()]
    assert all("/l/" in text and "shop.example" not in text for text in sent)
    path = sent[0].split("http://127.0.0.1:8000")[-1].strip()
    http = HttpClient()
    first = http.get(path)
    assert first.status_code == 302
    assert first["Location"].startswith("https://shop.example/sale?x=1&utm_source=cascade")
    assert "utm_medium=viber" in first["Location"] and "utm_content=main" in first["Location"]
    assert http.get(path).status_code == 302
    click = LinkClick.objects.get()
    assert click.clicks == 2 and click.campaign_id == campaign.pk and click.channel == "viber"
    assert click.first_clicked_at <= click.last_clicked_at
    assert LinkClick.objects.count() == 1
    rows = experiments.variant_channel_rows(campaign)
    assert [(r.variant, r.channel, r.sent, r.delivered, r.clicked) for r in rows] == [
        ("", "viber", 3, 3, 1)
    ]
    from django.contrib.auth.models import User

    http.force_login(User.objects.create_superuser("boss", "b@example.com", "pw"))
    export = http.get(f"/campaigns/{campaign.pk}/variants.csv?sep=;").content.decode("utf-8")
    assert export.startswith("\ufeffvariant;channel;sent;delivered;read;clicked;click_rate")
    assert ";viber;3;3;0;1;0,3333" in export  # a decimal comma, as Russian Excel reads numbers


def test_unknown_and_tampered_codes_are_a_plain_404_that_records_nothing(setup):
    make_clients(setup["operator"], 1, allow_sms=True)
    other = Operator.objects.create(name="Other")
    message = Message.objects.create(operator=other, recipient_key="x", phone="79160000001")
    http = HttpClient()
    # A valid code for a message with no campaign (a partner send) is not a tracked link.
    assert http.get(f"/l/{links.encode(message.pk, 'sms', 0)}").status_code == 404
    response = http.get("/l/ZZZZZZZZZZ")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/plain")
    assert not LinkClick.objects.exists()


def test_the_preview_counts_sms_parts_with_the_short_link(setup):
    from campaigns import preview

    long_url = "https://shop.example/" + "x" * 150
    setup["template"].sms_text = f"Sale {long_url}"
    setup["template"].save()
    make_clients(setup["operator"], 1, allow_sms=True)
    plain = campaign_for(setup, ["sms"])
    tracked = campaign_for(setup, ["sms"], track_links=True)
    before = preview.preview_campaign(plain).channels[0]
    after = preview.preview_campaign(tracked).channels[0]
    assert before.sms.segments == 2 and after.sms.segments == 1
    assert "/l/" in after.sms_text and long_url not in after.sms_text
