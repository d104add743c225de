"""config/middleware.py: the Content-Security-Policy header."""

from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from django.urls import resolve

from config.middleware import ContentSecurityPolicyMiddleware

POLICY = "default-src 'self'; frame-ancestors 'none'"
DOCS_POLICY = "default-src 'self'; script-src 'self' 'unsafe-inline'"


def answer(path, response=None):
    request = RequestFactory().get(path)
    try:
        request.resolver_match = resolve(path)
    except Exception:  # a 404: Django leaves resolver_match unset too
        request.resolver_match = None
    middleware = ContentSecurityPolicyMiddleware(lambda request: response or HttpResponse("ok"))
    return middleware(request)


@override_settings(CASCADE_CSP=POLICY, CASCADE_CSP_BY_VIEW={"api-docs": DOCS_POLICY})
def test_it_sends_the_policy_and_a_views_own_where_one_is_named():
    assert answer("/accounts/login/")["Content-Security-Policy"] == POLICY
    assert answer("/no-such-page/")["Content-Security-Policy"] == POLICY
    assert answer("/api/docs/")["Content-Security-Policy"] == DOCS_POLICY


@override_settings(CASCADE_CSP=POLICY, CASCADE_CSP_BY_VIEW={})
def test_it_keeps_a_policy_the_view_set_itself():
    own = HttpResponse("ok", headers={"Content-Security-Policy": "sandbox"})
    assert answer("/accounts/login/", own)["Content-Security-Policy"] == "sandbox"


@override_settings(CASCADE_CSP="", CASCADE_CSP_BY_VIEW={})
def test_an_empty_policy_sends_no_header():
    assert "Content-Security-Policy" not in answer("/accounts/login/")
