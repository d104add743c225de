"""One definition of eligibility: the SQL the fan-out runs, the Python dispatch and the
cascade run, and the Q the forecast counts with agree on every combination."""

import itertools

import pytest
from django.db import connection

from campaigns.eligibility import eligible_q, eligible_sql, rules_for, skip_reason
from campaigns.models import Message
from campaigns.routing import Route
from clients.channels import ADDRESS_FIELD_BY_CHANNEL, Purpose
from clients.models import Client

ROUTES = {channel: Route(channel, (1,)) for channel in ADDRESS_FIELD_BY_CHANNEL if channel != "vk"}


@pytest.fixture
def every_recipient(sunrise):
    """A message for each combination of consents and addresses, and one without a client."""
    messages = []
    combinations = itertools.product([True, False], [True, False], [True, False], [True, False])
    for number, (sms, email, push, cheque) in enumerate(combinations):
        for phone, address, tokens in [(f"7916000{number:04d}", "", []), ("", "a@x.ru", ["t"])]:
            client = Client.objects.create(
                operator=sunrise,
                phone=phone,
                email=address,
                push_tokens=tokens,
                allow_sms=sms,
                allow_email=email,
                allow_push=push,
                allow_email_online_cheque=cheque,
            )
            messages.append(
                Message.objects.create(
                    operator=sunrise,
                    client=client,
                    recipient_key=f"client:{client.pk}",
                    phone=phone,
                    email=address,
                )
            )
    messages.append(
        Message.objects.create(operator=sunrise, recipient_key="phone:1", phone="79169999999")
    )
    return messages


def in_sql(channel, purpose):
    condition, code, text = eligible_sql(channel, purpose, ROUTES)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.id, COALESCE({condition}, FALSE), {code}, {text} FROM campaigns_message m "  # noqa: S608
            "LEFT JOIN clients_client c ON c.id = m.client_id"
        )
        return {row[0]: (bool(row[1]), row[2], row[3]) for row in cursor.fetchall()}


@pytest.mark.parametrize("purpose", Purpose.values)
@pytest.mark.parametrize("channel", sorted(ADDRESS_FIELD_BY_CHANNEL))
def test_sql_and_python_give_the_same_answer_and_reason(every_recipient, channel, purpose):
    sql = in_sql(channel, purpose)
    for message in every_recipient:
        code, text = skip_reason(
            channel=channel,
            purpose=purpose,
            client=message.client,
            phone=message.phone,
            email=message.email,
            routes=ROUTES,
        )
        assert sql[message.pk] == (code == "", code, text), (message.client, message.phone)


@pytest.mark.parametrize("purpose", Purpose.values)
@pytest.mark.parametrize("channel", sorted(ADDRESS_FIELD_BY_CHANNEL))
def test_the_forecast_counts_the_clients_the_fan_out_would_queue(every_recipient, channel, purpose):
    sql = in_sql(channel, purpose)
    by_client = {m.client_id: sql[m.pk][0] for m in every_recipient if m.client_id}
    counted = set(
        Client.objects.filter(eligible_q(channel, purpose, ROUTES)).values_list("pk", flat=True)
    )
    assert counted == {client_id for client_id, ok in by_client.items() if ok}


def test_a_channel_without_a_route_is_refused_first():
    assert [rule.code for rule in rules_for("vk", Purpose.PROMOTIONAL, ROUTES)] == ["no_route"]
    assert skip_reason(
        channel="vk", purpose=Purpose.PROMOTIONAL, client=None, phone="7", email="", routes=ROUTES
    ) == ("no_route", "No provider account serves vk.")


def test_withdrawn_sms_consent_names_the_flag():
    client = Client(allow_sms=False, push_tokens=[])
    assert skip_reason(
        channel="viber",
        purpose=Purpose.PROMOTIONAL,
        client=client,
        phone="79160000001",
        email="",
        routes=ROUTES,
    ) == ("no_consent", "The client has not consented (allow_sms is off).")
