"""campaigns.claims.claim_size: a claim fits its lease even if every request times out."""

from types import SimpleNamespace

import pytest

from campaigns.claims import claim_size
from providers.registry import get_backend


def account(backend, **fields):
    values = {
        "pk": None,
        "backend": backend,
        "max_batch": 200,
        "timeout_seconds": 10,
        "rate_limit_per_second": 0,
        "name": "A",
        "credentials": {},
        "options": {},
    }
    values.update(fields)
    return SimpleNamespace(**values)


@pytest.mark.parametrize(
    ("backend", "seconds", "size"),
    [
        ("cascade_gateway", 120, 1000),  # 5 requests of 200: the claim target
        ("cascade_gateway", 30, 400),  # 24 s for requests: 2 of 200
        ("bsg", 120, 9),  # personalised texts: one request per message, 10 s each
        ("smtp", 120, 9),  # one SMTP round trip per email
        ("smtp", 5, 1),  # always at least one
    ],
)
def test_every_request_timing_out_still_ends_within_the_time(settings, backend, seconds, size):
    settings.CASCADE_CLAIM_TARGET = 1000
    gateway = account(backend)
    assert claim_size(gateway, get_backend(gateway), seconds) == size


def test_the_rate_limit_caps_a_claim_at_one_seconds_worth(settings):
    settings.CASCADE_CLAIM_TARGET = 1000
    gateway = account("cascade_gateway", rate_limit_per_second=50)
    assert claim_size(gateway, get_backend(gateway), 120) == 50


@pytest.mark.parametrize(
    ("backend", "chosen", "size"),
    [("pulse", 500, 500), ("pulse", 900, 500), ("bsg", 200, 50), ("cascade_gateway", 20, 20)],
)
def test_a_batch_is_the_accounts_choice_within_what_the_protocol_takes(backend, chosen, size):
    assert get_backend(account(backend, max_batch=chosen)).batch_size() == size
