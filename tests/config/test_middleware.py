"""config/middleware.py: the Content-Security-Policy header."""

import pytest
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from config.middleware import ContentSecurityPolicyMiddleware

POLICY = "default-src 'self'; frame-ancestors 'none'"


def answer(path, response=None):
    request = RequestFactory().get(path)
    middleware = ContentSecurityPolicyMiddleware(lambda request: response or HttpResponse("ok"))
    return middleware(request)


@override_settings(CASCADE_CSP=POLICY)
def test_it_sends_the_policy_with_every_answer():
    assert answer("/accounts/login/")["Content-Security-Policy"] == POLICY
    assert answer("/no-such-page/")["Content-Security-Policy"] == POLICY
    assert answer("/api/docs/")["Content-Security-Policy"] == POLICY


@override_settings(CASCADE_CSP=POLICY)
def test_it_keeps_a_policy_the_view_set_itself():
    own = HttpResponse("ok", headers={"Content-Security-Policy": "sandbox"})
    assert answer("/accounts/login/", own)["Content-Security-Policy"] == "sandbox"


@override_settings(CASCADE_CSP="")
def test_an_empty_policy_sends_no_header():
    assert "Content-Security-Policy" not in answer("/accounts/login/")


@pytest.mark.django_db
def test_pages_show_times_in_the_operators_zone(client, mark, world):
    from datetime import UTC, datetime

    from campaigns.models import Campaign

    launched = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    Campaign.objects.filter(pk=world["campaign"].pk).update(launched_at=launched, scheduled_at=None)
    client.force_login(mark)
    world["campaign"].operator.__class__.objects.filter(pk=world["campaign"].operator_id).update(
        time_zone="Asia/Vladivostok"
    )
    assert "1 Dec 10:30" in client.get("/campaigns/").content.decode()  # UTC+10
    world["campaign"].operator.__class__.objects.filter(pk=world["campaign"].operator_id).update(
        time_zone="Europe/Moscow"
    )
    assert "1 Dec 03:30" in client.get("/campaigns/").content.decode()  # UTC+3
    # A mistyped zone falls back to the server's, and the page still renders.
    world["campaign"].operator.__class__.objects.filter(pk=world["campaign"].operator_id).update(
        time_zone="Mars/Olympus"
    )
    assert client.get("/campaigns/").status_code == 200


def test_the_health_check_answers_ok_without_a_login_or_the_database(
    client, db, django_assert_num_queries
):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok" and response["Content-Type"] == "text/plain"
    assert "Set-Cookie" not in response
    assert client.post("/healthz").status_code in (403, 405)
