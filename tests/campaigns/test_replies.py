"""Clients' replies over real HTTP: kept once, listed, and STOP withdraws consent."""

# Replies are Russian on purpose.
# ruff: noqa: RUF001

import json

import pytest
from django.test import Client as HttpClient

from campaigns import fanout, replies
from campaigns.models import Delivery, InboundReply
from clients.models import Client, ConsentChange, Operator
from tests.campaigns.driving import campaign_for, drive, make_clients
from tests.providers.test_callbacks_over_http import wait_for

pytestmark = [
    pytest.mark.usefixtures("no_background_tasks"),
    pytest.mark.django_db(transaction=True),
]

KEYWORDS = replies.keywords_of(Operator(opt_out_keywords="STOP, СТОП, ОТПИСАТЬСЯ, ОТПИСКА"))


@pytest.mark.parametrize(
    "text", ["STOP", "stop", " Stop! ", "с т о п", "СТОП.", "Отписаться", "ОТПИСКА", "отписка!!"]
)
def test_stop_words_match_whatever_the_case_spacing_or_trailing_punctuation(text):
    assert replies.is_opt_out(text, KEYWORDS)


@pytest.mark.parametrize("text", ["", "please stop the spam", "stopper", "Спасибо", "не стоп"])
def test_other_replies_are_not_opt_outs(text):
    assert not replies.is_opt_out(text, KEYWORDS)


def test_an_operator_sets_its_own_keywords():
    keywords = replies.keywords_of(Operator(opt_out_keywords="хватит, Unsubscribe"))
    assert replies.is_opt_out("Хватит!", keywords)
    assert replies.is_opt_out("UNSUBSCRIBE", keywords)
    assert not replies.is_opt_out("stop", keywords)


@pytest.fixture
def sent(setup, live_server, settings):
    """Three clients who got a campaign on Viber through the gateway, with replies wired up."""
    settings.CASCADE_PUBLIC_URL = live_server.url
    gateway = setup["gateway"]
    gateway.callback_secrets = ["replies-secret-123456"]
    gateway.save()
    setup["gateway_sim"].config.outcome_mix = {"delivered": 1.0}
    setup["gateway_sim"].set_inbound_url("demo", gateway.replies_url())
    make_clients(setup["operator"], 3, allow_sms=True)
    campaign = campaign_for(setup, ["viber"])
    fanout.fan_out(campaign.pk)
    assert drive(campaign, [gateway])
    return setup, campaign


def sim_message_for(setup, client):
    return next(m for m in setup["gateway_sim"].messages.values() if m.phone == client.phone)


def test_a_stop_reply_turns_consent_off_with_history_and_the_next_campaign_skips(sent):
    setup, campaign = sent
    stopper = Client.objects.order_by("id").first()
    setup["gateway_sim"].reply(sim_message_for(setup, stopper).id, "  Стоп! ")
    assert wait_for(lambda: InboundReply.objects.exists())
    reply = InboundReply.objects.get()
    assert (reply.client_id, reply.campaign_id, reply.is_opt_out) == (
        stopper.pk,
        campaign.pk,
        True,
    )
    assert reply.message.client_id == stopper.pk and reply.channel == "viber"
    stopper.refresh_from_db()
    assert stopper.allow_sms is False
    change = ConsentChange.objects.get(client=stopper, flag="allow_sms")
    assert (change.source, change.old_value, change.new_value) == ("reply", True, False)
    assert f"message {reply.message_id}" in change.reason and "viber" in change.reason
    # The others keep their consent; the next campaign skips only the one who stopped.
    assert Client.objects.filter(allow_sms=True).count() == 2
    following = campaign_for(setup, ["viber"])
    fanout.fan_out(following.pk)
    skipped = Delivery.objects.get(campaign=following, status="skipped")
    assert (skipped.message.client_id, skipped.error_code) == (stopper.pk, "no_consent")
    assert Delivery.objects.filter(campaign=following, status="queued").count() == 2


def test_other_replies_are_kept_and_listed_on_the_campaign_without_changing_consent(sent, mark):
    setup, campaign = sent
    client = Client.objects.order_by("id").last()
    setup["gateway_sim"].reply(sim_message_for(setup, client).id, "Когда начнётся распродажа?")
    assert wait_for(lambda: InboundReply.objects.exists())
    client.refresh_from_db()
    assert client.allow_sms is True and not ConsentChange.objects.filter(source="reply").exists()
    http = HttpClient()
    http.force_login(mark)
    page = http.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "1 client reply, 0 of them opt-outs" in page
    listed = http.get(f"/campaigns/{campaign.pk}/replies/")
    assert listed.status_code == 200
    assert "Когда начнётся распродажа?" in listed.content.decode()
    assert "Когда" not in http.get(f"/campaigns/{campaign.pk}/replies/?opt_out=1").content.decode()


def test_a_redelivered_reply_is_recorded_and_applied_once(sent):
    setup, _campaign = sent
    client = Client.objects.order_by("id").first()
    item = setup["gateway_sim"].reply(sim_message_for(setup, client).id, "STOP")
    assert wait_for(lambda: InboundReply.objects.exists())
    gateway = setup["gateway"]
    again = HttpClient().post(
        f"/providers/webhooks/cascade_gateway/{gateway.pk}/replies-secret-123456/replies/",
        json.dumps({"incoming": [item]}),
        content_type="application/json",
    )
    assert again.status_code == 200
    assert InboundReply.objects.count() == 1
    assert ConsentChange.objects.filter(source="reply").count() == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("not json", "Unreadable replies"),
        ('{"incoming": {}}', '"incoming" list'),
        ('{"incoming": [{"phone": "79160000001", "text": "STOP"}]}', "id_incoming"),
        ('{"incoming": [{"id_incoming": "1", "phone": "x", "text": "STOP"}]}', "phone"),
        ('{"incoming": [{"id_incoming": "1", "phone": "79160000001", "text": 5}]}', "text"),
        (
            '{"incoming": [{"id_incoming": "1", "phone": "79160000001", "text": "a", '
            '"channel": "fax"}]}',
            "channel",
        ),
    ],
)
def test_unreadable_replies_get_a_clear_400_and_record_nothing(setup, body, error):
    gateway = setup["gateway"]
    gateway.callback_secrets = ["replies-secret-123456"]
    gateway.save()
    answer = HttpClient().post(
        f"/providers/webhooks/cascade_gateway/{gateway.pk}/replies-secret-123456/replies/",
        body,
        content_type="application/json",
    )
    assert answer.status_code == 400 and error in answer.content.decode()
    assert not InboundReply.objects.exists()


def test_replies_need_the_secret_and_a_gateway_that_forwards_replies(setup):
    gateway, pulse = setup["gateway"], setup["pulse"]
    gateway.callback_secrets = ["replies-secret-123456"]
    gateway.save()
    body = '{"incoming": [{"id_incoming": "1", "phone": "79160000001", "text": "STOP"}]}'
    http = HttpClient()
    wrong = http.post(
        f"/providers/webhooks/cascade_gateway/{gateway.pk}/wrong-secret-000000/replies/",
        body,
        content_type="application/json",
    )
    assert wrong.status_code == 403
    no_inbound = http.post(
        f"/providers/webhooks/pulse/{pulse.pk}/s3cr3t-value-123/replies/",
        body,
        content_type="application/json",
    )
    assert no_inbound.status_code == 404
    assert not InboundReply.objects.exists()
