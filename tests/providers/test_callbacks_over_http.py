"""A simulator's callback crosses real HTTP to the webhook and moves the delivery."""

import time

import pytest

from campaigns.models import Delivery, DeliveryEvent
from providers.base import OutgoingMessage
from providers.models import ProviderAccount
from providers.registry import get_backend
from providers.simulators.base import SimulatorConfig
from providers.simulators.bsg import BsgSimulator
from providers.simulators.pulse import PulseSimulator
from providers.status import DeliveryStatus

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def pulse_sim():
    sim = PulseSimulator(
        config=SimulatorConfig(delivery_delay=0.2, callback_time_scale=0.01)
    ).start()
    yield sim
    sim.stop()


@pytest.fixture
def bsg_sim():
    sim = BsgSimulator(
        config=SimulatorConfig(delivery_delay=0.2, callback_time_scale=0.01),
        sms_outcome_mix={"delivered": 1},
    ).start()
    yield sim
    sim.stop()


def submitted_delivery(world, account, backend_name, *, channel="sms", fallback=()):
    delivery = world["delivery"]
    delivery.account = account
    delivery.channel = channel
    delivery.save()
    message = OutgoingMessage(
        delivery_id=delivery.pk,
        idempotency_key=delivery.idempotency_key,
        channel=channel,
        phone="79123456789",
        text="Hello",
        sms_text="Hello",
        callback_url=account.callback_url(),
        fallback_channels=list(fallback),
    )
    result = get_backend(account).send([message])[0]
    assert result.accepted, result
    delivery.provider_message_id = result.provider_message_id
    delivery.status = DeliveryStatus.SENT
    delivery.save()
    return delivery


def test_a_pulse_callback_reaches_the_webhook_and_delivers(live_server, settings, world, pulse_sim):
    settings.CASCADE_PUBLIC_URL = live_server.url
    account = ProviderAccount.objects.create(
        operator=world["operator"],
        name="Pulse",
        backend="pulse",
        base_url=pulse_sim.url + "/api/v1",
        credentials={"token": "test-token"},
        channels=["sms"],
        sender_names={"sms": "Shop"},
        callback_secrets=["pulse-secret-1234567890"],
    )
    delivery = submitted_delivery(world, account, "pulse")
    assert wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED)
    events = DeliveryEvent.objects.filter(delivery=delivery, source="callback")
    assert events.filter(status="delivered").count() == 1
    assert pulse_sim.stats()["callbacks_sent"] >= 1


def test_a_bsg_callback_with_sms_fallback_reaches_the_webhook(
    live_server, settings, world, bsg_sim
):
    settings.CASCADE_PUBLIC_URL = live_server.url
    bsg_sim.config.outcome_mix = {"undeliverable": 1.0}
    account = ProviderAccount.objects.create(
        operator=world["operator"],
        name="BSG",
        backend="bsg",
        base_url=bsg_sim.url + "/rest",
        credentials={"api_key": "live_test"},
        channels=["viber", "sms"],
        sender_names={"viber": "Shop", "sms": "Shop"},
        callback_secrets=["bsg-secret-1234567890"],
    )
    delivery = submitted_delivery(world, account, "bsg", channel="viber", fallback=["sms"])
    assert wait_for(
        lambda: Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.UNDELIVERABLE
    )
    assert wait_for(
        lambda: (
            DeliveryEvent.objects.filter(
                delivery=delivery, source="callback", provider_status="delivered"
            ).exists()
            or Delivery.objects.filter(
                message=delivery.message, channel="sms", status="delivered"
            ).exists()
        )
    )


def test_a_callback_with_a_bad_secret_is_refused_over_http(live_server, world, pulse_sim):
    import requests

    account = ProviderAccount.objects.create(
        operator=world["operator"],
        name="Pulse",
        backend="pulse",
        base_url=pulse_sim.url + "/api/v1",
        credentials={"token": "test-token"},
        channels=["sms"],
        callback_secrets=["right-secret-123456"],
    )
    delivery = world["delivery"]
    delivery.account, delivery.provider_message_id = account, "777"
    delivery.save()
    base = f"{live_server.url}/providers/webhooks/pulse/{account.pk}"
    refused = requests.get(
        f"{base}/wrong-secret/", params={"id": "777", "status": "delivered"}, timeout=5
    )
    assert refused.status_code == 403
    unknown = requests.get(
        f"{base}/right-secret-123456/",
        params={"id": "no-such-id", "status": "delivered"},
        timeout=5,
    )
    assert unknown.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert not DeliveryEvent.objects.filter(source="callback").exists()
