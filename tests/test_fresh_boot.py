"""The process-local caches and throttles on a machine booted seconds ago (issue 15).

time.monotonic() counts from boot. A cache or throttle that starts from 0.0, or
compares "now" with a default, behaves on a machine up for days and not on one
booted a minute ago (a CI runner). Each one is driven here with the clock at a
few seconds since boot and at a week, through its own code: the first use reads
(or sends), the second within the window is served from memory, and a later one
after the window reads again. tests/providers/test_inbox.py does the same for the
inbox's inline drain.
"""

import time

import pytest

from campaigns import links, routing
from clients.models import Operator
from providers import webhooks
from providers.models import ChannelRoute, ProviderAccount
from providers.registry import get_backend

BOOTS = [3.0, 7 * 24 * 3600.0]


class Clock:
    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BOOTS, ids=["3 s since boot", "a week since boot"])
def clock(request, monkeypatch):
    fake = Clock(request.param)
    monkeypatch.setattr(time, "monotonic", fake)
    routing.reset_route_cache()
    webhooks.reset_account_cache()
    links._targets.clear()
    yield fake
    routing.reset_route_cache()
    webhooks.reset_account_cache()
    links._targets.clear()


@pytest.fixture
def account(db):
    operator = Operator.objects.create(name="Fresh boot", code="fresh-boot")
    account = ProviderAccount.objects.create(
        operator=operator,
        name="Gateway",
        backend="cascade_gateway",
        base_url="http://127.0.0.1:9",
        credentials={"login": "demo", "password": "x"},
        channels=["sms"],
    )
    ChannelRoute.objects.create(operator=operator, channel="sms", account=account)
    return account


def test_routes_are_read_first_then_served_then_read_again(
    clock, account, django_assert_num_queries
):
    with django_assert_num_queries(1):
        assert routing.cached_routes_for(account.operator_id)["sms"].primary == account.pk
    with django_assert_num_queries(0):
        routing.cached_routes_for(account.operator_id)
    clock.now += routing.ROUTE_CACHE_SECONDS
    with django_assert_num_queries(1):
        routing.cached_routes_for(account.operator_id)


def test_webhook_accounts_are_read_first_then_served_then_read_again(
    clock, account, django_assert_num_queries
):
    with django_assert_num_queries(1):
        assert webhooks.account_for_callbacks(account.pk, "cascade_gateway") == account
    with django_assert_num_queries(0):
        webhooks.account_for_callbacks(account.pk, "cascade_gateway")
    clock.now += webhooks.ACCOUNT_CACHE_SECONDS
    with django_assert_num_queries(1):
        webhooks.account_for_callbacks(account.pk, "cascade_gateway")


def test_the_first_status_poll_of_a_process_goes_out(clock, account):
    backend = get_backend(account)
    body = f"poll-{clock.now}"
    assert backend.poll_allowed(body)  # never sent from this process: allowed
    assert not backend.poll_allowed(body)  # identical, within the gateway's window
    clock.now += backend.identical_request_seconds
    assert backend.poll_allowed(body)
