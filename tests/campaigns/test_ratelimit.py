"""The shared token bucket (database flavour here; the Redis one runs in the scale-out test)."""

import time

import pytest

from campaigns import queue, ratelimit


@pytest.fixture
def account(world):
    return world["provideraccount"]


def test_a_full_bucket_gives_a_second_of_tokens_then_asks_to_wait(account):
    assert ratelimit.acquire(account.pk, 10, 10) == 0
    wait = ratelimit.acquire(account.pk, 10, 5)
    assert 0.3 < wait <= 0.5


def test_take_gives_up_instead_of_sleeping_longer_than_max_wait(account, monkeypatch):
    slept = []
    monkeypatch.setattr(ratelimit.time, "sleep", slept.append)
    assert ratelimit.take(account.pk, 2, 2, deadline=time.monotonic() + 60, max_wait=5)
    # Empty now: two tokens at 2/s need ~1 s, more than we may wait.
    assert not ratelimit.take(account.pk, 2, 2, deadline=time.monotonic() + 60, max_wait=0.5)
    assert slept == []


def test_take_sleeps_for_its_tokens_when_the_wait_is_short(account, monkeypatch):
    slept = []
    monkeypatch.setattr(ratelimit.time, "sleep", slept.append)
    assert ratelimit.acquire(account.pk, 100, 100) == 0
    # The fake sleep returns at once, so take asks again until the refill (real time) is enough.
    assert ratelimit.take(account.pk, 100, 1, deadline=time.monotonic() + 60, max_wait=1)
    assert slept and all(0 < seconds <= 0.01 for seconds in slept)


def test_a_rate_limited_account_gets_one_dispatcher_others_one_per_worker(
    world, settings, monkeypatch
):
    from campaigns.models import Delivery
    from providers.models import ProviderAccount
    from providers.status import DeliveryStatus

    kicked = {}
    monkeypatch.setattr(
        queue, "kick_account", lambda account_id, workers: kicked.update({account_id: workers})
    )
    slow = world["provideraccount"]
    slow.rate_limit_per_second = 5
    slow.save()
    fast = ProviderAccount.objects.create(
        operator=world["operator"], name="Fast", backend="pulse", channels=["sms"]
    )
    delivery = world["delivery"]
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.QUEUED)
    Delivery.objects.create(
        operator=world["operator"],
        message=delivery.message,
        campaign=delivery.campaign,
        step=1,
        channel="sms",
        account=fast,
        idempotency_key="k2",
        status=DeliveryStatus.QUEUED,
    )
    queue.kick_campaign(delivery.campaign_id)
    assert kicked == {slow.pk: 1, fast.pk: settings.Q_CLUSTER["workers"]}
