"""providers.checks: an account whose one request may outlast a claim is refused."""

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ValidationError

from providers.models import ProviderAccount


def errors():
    return [m for m in run_checks(databases=["default"]) if m.id == "providers.E001"]


def test_a_timeout_longer_than_a_claim_may_take_is_an_error(sunrise, settings):
    settings.CASCADE_CLAIM_LEASE_SECONDS = 30  # requests may wait 24 s
    ProviderAccount.objects.create(
        operator=sunrise, name="Fine", backend="pulse", timeout_seconds=20
    )
    slow = ProviderAccount.objects.create(
        operator=sunrise, name="Slow", backend="bsg", timeout_seconds=25
    )
    [error] = errors()
    assert error.obj == f"ProviderAccount {slow.pk}" and "Slow" in error.msg
    ProviderAccount.objects.filter(pk=slow.pk).update(enabled=False)
    assert errors() == []


def test_half_the_task_timeout_bounds_it_too(sunrise, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 20}  # requests may wait 8 s
    ProviderAccount.objects.create(operator=sunrise, name="Gw", backend="pulse", timeout_seconds=9)
    assert len(errors()) == 1


def test_the_admin_form_refuses_such_a_timeout(sunrise, settings):
    settings.CASCADE_CLAIM_LEASE_SECONDS = 30
    account = ProviderAccount(operator=sunrise, name="Slow", backend="pulse", timeout_seconds=25)
    with pytest.raises(ValidationError) as caught:
        account.clean()
    assert "timeout_seconds" in caught.value.message_dict
    account.timeout_seconds = 24
    account.clean()


def test_the_admin_form_refuses_a_batch_larger_than_the_protocol_takes(sunrise):
    account = ProviderAccount(operator=sunrise, name="Bsg", backend="bsg", max_batch=51)
    with pytest.raises(ValidationError) as caught:
        account.clean()
    assert "max_batch" in caught.value.message_dict
    assert "50" in caught.value.message_dict["max_batch"][0]
    account.max_batch = 50
    account.clean()
