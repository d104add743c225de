"""Driving the engine step by step, as the tasks would: the engine tests' helpers."""

import time

from campaigns import dispatch, services
from campaigns.models import Campaign, Message
from clients.models import Client


def make_clients(operator, count, **fields):
    Client.objects.bulk_create(
        [
            Client(operator=operator, phone=f"7916{i:07d}", first_name=f"C{i}", **fields)
            for i in range(count)
        ]
    )


def campaign_for(setup, channels, **fields):
    values = {"name": "Sale", "state": Campaign.State.RUNNING, **fields}
    return Campaign.objects.create(
        operator=setup["operator"], template=setup["template"], channels=channels, **values
    )


def drive(campaign, accounts, seconds=15):
    """Dispatch and sweep until every message of the campaign is final."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for account in accounts:
            dispatch.dispatch_account(account.pk, budget_seconds=5)
        time.sleep(0.1)
        services.sweep_once()
        if not Message.objects.filter(
            campaign=campaign, status__in=["pending", "in_progress"]
        ).exists():
            return True
    return False
