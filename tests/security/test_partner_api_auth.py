"""Token guessing and revocation on every partner endpoint, not only SendMessageProcess.

tests/config/test_lcmanager_views.py covers SendMessageProcess (throttled guessing,
revoked token, another operator's token); these are the other two endpoints, the
site code, and the throttle counted across endpoints.
"""

from __future__ import annotations

import json

import pytest

from clients.models import ApiCredential, ConsentChange
from clients.services import issue_credential, revoke_credential

SEND = "/api/marketing/SendMessageProcess"
UPDATE = "/api/client/ClientUpdateCommunication"
STATUS = "/api/marketing/MessageStatus"


@pytest.fixture
def calls(client, world):
    """A valid call to each endpoint: endpoint → function(credentials) → (HTTP status, ErrorCode)."""

    def post(url, fields):
        def call(credentials):
            body = json.dumps({**credentials, **fields})
            return answer(client.post(url, body, content_type="application/json"))

        return call

    def status_get(credentials):
        return answer(client.get(STATUS, {**credentials, "MessageId": world["partnersend"].pk}))

    return {
        "send": post(
            SEND, {"CommunicationType": 1, "Client": world["client"].pk, "TextMessage": "Hi"}
        ),
        "update": post(UPDATE, {"Client": world["client"].pk, "AllowPush": True}),
        "status-post": post(STATUS, {"MessageId": world["partnersend"].pk}),
        "status-get": status_get,
    }


def answer(response) -> tuple[int, int]:
    return response.status_code, json.loads(response.content)["ErrorCode"]


@pytest.fixture
def token(world):
    issued = issue_credential(operator=world["operator"], name="Till")
    return {"Operator": world["operator"].pk, "Token": int(issued.secret)}, issued.credential


@pytest.fixture
def site_code(world):
    issued = issue_credential(
        operator=world["operator"], name="Widget", kind=ApiCredential.Kind.SITE_CODE
    )
    return {"SiteCode": issued.secret}, issued.credential


ENDPOINTS = ["send", "update", "status-post", "status-get"]
ACCEPTED = {"send": {0, 40, 41, 42, 43}, "update": {0}, "status-post": {0}, "status-get": {0}}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", ["token", "site_code"])
def test_a_revoked_credential_is_refused_on_the_next_call_of_every_endpoint(
    request, calls, endpoint, kind
):
    credentials, credential = request.getfixturevalue(kind)
    status, code = calls[endpoint](credentials)
    assert code in ACCEPTED[endpoint], (status, code)  # works, and is now in the last-used cache
    revoke_credential(credential_id=credential.pk)
    assert calls[endpoint](credentials) == (403, 13)


def test_a_revoked_credential_changes_no_consent(calls, token, world):
    credentials, credential = token
    revoke_credential(credential_id=credential.pk)
    before = ConsentChange.objects.count()
    assert calls["update"](credentials) == (403, 13)
    assert ConsentChange.objects.count() == before


@pytest.mark.parametrize("guessed_on", ENDPOINTS)
def test_guessing_on_any_endpoint_blocks_the_address_on_every_endpoint(
    calls, token, settings, guessed_on
):
    settings.CASCADE_API_AUTH_FAILURES = 3
    credentials, _ = token
    wrong = dict(credentials, Token=credentials["Token"] + 1)
    for _ in range(3):
        assert calls[guessed_on](wrong) == (401, 12)
    # Blocked before any lookup: the right token is refused too, wherever it is used.
    for endpoint in ENDPOINTS:
        assert calls[endpoint](credentials) == (429, 14), endpoint


def test_guessing_site_codes_is_throttled_too(calls, site_code, settings):
    settings.CASCADE_API_AUTH_FAILURES = 3
    credentials, _ = site_code
    for _ in range(3):
        assert calls["update"]({"SiteCode": credentials["SiteCode"][::-1]}) == (401, 12)
    assert calls["update"](credentials) == (429, 14)


def test_the_throttle_is_per_address(calls, token, settings, client):
    settings.CASCADE_API_AUTH_FAILURES = 3
    credentials, _ = token
    wrong = dict(credentials, Token=credentials["Token"] + 1)
    for _ in range(3):
        assert calls["status-post"](wrong) == (401, 12)
    other = client.post(
        STATUS,
        json.dumps({**credentials, "MessageId": 1}),
        content_type="application/json",
        REMOTE_ADDR="203.0.113.7",
    )
    assert json.loads(other.content)["ErrorCode"] != 14
