"""A partner's message over real HTTP: API → dispatcher → 1-pulse simulator → callback → status.

The dispatcher is called the way its django-q2 task calls it; everything else
crosses a socket: the partner's request, the gateway request, the gateway's
callback to our webhook, and the partner's status query.
"""

import json
import time

import pytest
import requests
from django.core.cache import cache

from campaigns import dispatch
from clients.services import issue_credential
from providers.models import ChannelRoute, ProviderAccount
from providers.simulators.base import SimulatorConfig
from providers.simulators.pulse import PulseSimulator
from tests.conftest import make_client

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return None


@pytest.fixture
def pulse_sim():
    sim = PulseSimulator(
        config=SimulatorConfig(delivery_delay=0.2, callback_time_scale=0.01)
    ).start()
    yield sim
    sim.stop()


def test_a_partner_message_is_sent_reported_and_shown_delivered(
    live_server, settings, sunrise, pulse_sim, monkeypatch
):
    cache.clear()
    monkeypatch.setattr("campaigns.queue.kick_account", lambda account_id: None)
    settings.CASCADE_PUBLIC_URL = live_server.url
    account = ProviderAccount.objects.create(
        operator=sunrise,
        name="Pulse",
        backend="pulse",
        base_url=pulse_sim.url + "/api/v1",
        credentials={"token": "test-token"},
        channels=["sms"],
        sender_names={"sms": "Shop"},
        callback_secrets=["pulse-secret-1234567890"],
    )
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=account)
    client = make_client(sunrise, first_name="Anna", allow_sms=True)
    token = issue_credential(operator=sunrise, name="POS").secret
    partner = {"Operator": sunrise.pk, "Token": int(token)}

    response = requests.post(
        f"{live_server.url}/api/marketing/SendMessageProcess",
        json={
            **partner,
            "CommunicationType": 1,
            "Client": client.pk,
            "TextMessage": "Hi {{ first_name }}",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    message_id = response.json()["MessageId"]

    assert dispatch.dispatch_account(account.pk, budget_seconds=5) == 1
    received = requests.get(f"{pulse_sim.url}/_sim/messages", timeout=10).json()
    assert len(received) == 1 and received[0]["phone"] == client.phone
    assert "Hi Anna" in json.dumps(received[0]["request"], ensure_ascii=False)

    def delivered():
        status = requests.get(
            f"{live_server.url}/api/marketing/MessageStatus",
            params={**partner, "MessageId": message_id},
            headers={"Accept": "application/json"},
            timeout=10,
        ).json()
        return status if status["Status"] == "delivered" else None

    status = wait_for(delivered)
    assert status is not None, "no delivery report reached the status endpoint"
    step = status["Steps"][0]
    assert (step["Channel"], step["Status"], status["ErrorCode"]) == ("sms", "delivered", 0)
    assert step["SubmittedAt"] and step["DeliveredAt"] and step["FinalAt"]
