"""Fixtures of the engine's tests: simulators over HTTP and accounts routed to them."""

from decimal import Decimal

import pytest

from campaigns import outcomes, services
from campaigns.models import MessageTemplate
from providers.models import ChannelRoute, ProviderAccount
from providers.simulators.base import SimulatorConfig
from providers.simulators.cascade_gateway import CascadeGatewaySimulator
from providers.simulators.pulse import PulseSimulator


@pytest.fixture
def no_background_tasks(monkeypatch):
    """The tests drive every step themselves; nothing goes to a broker."""
    monkeypatch.setattr("campaigns.queue.kick_account", lambda *args, **kwargs: None)
    monkeypatch.setattr("campaigns.queue.enqueue_fan_out", lambda *args, **kwargs: None)
    monkeypatch.setattr("campaigns.queue.kick_campaign", lambda *args, **kwargs: None)
    monkeypatch.setattr(services, "POLL_INTERVAL_SECONDS", 0)
    monkeypatch.setattr(outcomes, "FIRST_POLL_SECONDS", 0)


@pytest.fixture
def gateway_sim():
    sim = CascadeGatewaySimulator(
        config=SimulatorConfig(delivery_delay=0.05), identical_window=0
    ).start()
    yield sim
    sim.stop()


@pytest.fixture
def pulse_sim():
    sim = PulseSimulator(config=SimulatorConfig(delivery_delay=0.05, send_callbacks=False)).start()
    yield sim
    sim.stop()


@pytest.fixture
def setup(sunrise, gateway_sim, pulse_sim):
    gateway = ProviderAccount.objects.create(
        operator=sunrise,
        name="Gateway",
        backend="cascade_gateway",
        base_url=gateway_sim.url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["viber", "vk", "sms"],
        options={"flavour": "json", "identical_request_seconds": 0},
        sender_names={"viber": "Shop", "sms": "Shop"},
        max_batch=200,
        cost_per_part=Decimal("0.35"),
    )
    pulse = ProviderAccount.objects.create(
        operator=sunrise,
        name="Pulse",
        backend="pulse",
        base_url=pulse_sim.url + "/api/v1",
        credentials={"token": "test-token"},
        channels=["sms", "email"],
        sender_names={"sms": "Shop"},
        max_batch=500,
        callback_secrets=["s3cr3t-value-123"],
    )
    ChannelRoute.objects.create(operator=sunrise, channel="viber", account=gateway, priority=1)
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=pulse, priority=1)
    template = MessageTemplate.objects.create(
        operator=sunrise,
        name="Sale",
        text="Hi {{ first_name }}, {{ bonus }} points",
        viber_text="Viber: hi {{ first_name }}",
        sms_text="SMS: hi {{ first_name }}",
    )
    return {
        "operator": sunrise,
        "gateway": gateway,
        "pulse": pulse,
        "template": template,
        "gateway_sim": gateway_sim,
        "pulse_sim": pulse_sim,
    }
