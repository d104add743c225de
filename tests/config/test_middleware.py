"""config/middleware.py: the Content-Security-Policy header."""

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
