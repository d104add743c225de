"""CSRF on every URL that takes a form, and the security headers of a production deployment.

`check --deploy` with production values is tested in tests/config/test_settings.py;
here the same settings module is read in a fresh process (so its production
defaults apply, not the test run's) and the headers and cookies a browser
actually receives are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client as Browser
from django.test import override_settings

from tests.security.urlwalk import page_urls, routes

ROOT = Path(__file__).resolve().parents[2]

# Any value does for CSRF: the middleware refuses before the view looks at it.
ANY_VALUE = {
    "code": "ZZZZZZZZZZ",
    "pk": 1,
    "message_id": 1,
    "action": "cancel",
    "object_id": 1,
    "id": 1,
    "content_type_id": 1,
    "app_label": "clients",
    "url": "no-such-page/",
    "backend": "smtp",
    "account_id": 1,
    "secret": "x",
    "uidb64": "MQ",
    "token": "set-password",
}

# Exempt by design: the partner API authenticates every call by the Token or SiteCode in its
# body and ignores sessions; a gateway's callback by the secret in its URL. The schema and its
# viewer are read-only. A mail provider's one-click unsubscribe posts to a signed link.
CSRF_EXEMPT = {
    "send-message-process",
    "client-update-communication",
    "client-event",
    "message-status",
    "api-schema",
    "api-docs",
    "providers:webhook",
    "providers:replies-webhook",
    "unsubscribe",  # RFC 8058 one-click: the signed token in the URL is the check
}


def test_exactly_the_partner_api_webhooks_and_schema_are_csrf_exempt():
    assert {route.name for route in routes() if route.csrf_exempt} == CSRF_EXEMPT


def test_every_other_url_refuses_a_post_without_the_csrf_token(alice):
    browser = Browser(enforce_csrf_checks=True)
    browser.force_login(alice)
    checked, problems = [], []
    for route in routes():
        if route.csrf_exempt:
            continue
        url = route.fill(ANY_VALUE)
        response = browser.post(url, {"name": "no token", "post": "yes"})
        if response.status_code != 403 or b"CSRF verification failed" not in response.content:
            problems.append(f"{route.name} {url}: {response.status_code}")
        checked.append(url)
    assert not problems, "\n".join(problems)
    # Every page and admin form: the builder, consent, import, switcher, the admin's add,
    # change, delete and action forms, sign in and out, password change and reset.
    assert len(checked) >= 180, len(checked)


def test_the_same_post_with_the_token_gets_past_the_check(alice):
    """The 403s above are the missing token, not something else refusing the POST."""
    browser = Browser(enforce_csrf_checks=True)
    page = browser.get("/accounts/login/")
    token = page.cookies["csrftoken"].value
    response = browser.post(
        "/accounts/login/",
        {"username": "alice", "password": "pw-alice", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302


def test_the_exempt_doors_answer_with_their_own_authentication(alice):
    """No CSRF page: the API wants its Token, a webhook its secret; a session counts for nothing."""
    browser = Browser(enforce_csrf_checks=True)
    browser.force_login(alice)  # a signed-in staff session must not stand in for a token
    for url in (
        "/api/marketing/SendMessageProcess",
        "/api/client/ClientUpdateCommunication",
        "/api/marketing/MessageStatus",
    ):
        response = browser.post(url, "{}", content_type="application/json")
        assert response.status_code == 401, url
        assert json.loads(response.content)["ErrorCode"] == 11
    webhook = browser.post("/providers/webhooks/smtp/1/guess/")
    assert webhook.status_code == 403 and b"CSRF" not in webhook.content
    for url in ("/api/schema/", "/api/docs/"):
        # Read-only (405); for a signed-in user DRF's session authentication checks the
        # token first (403).
        assert browser.post(url).status_code == 403, url
        assert Browser(enforce_csrf_checks=True).post(url).status_code == 405, url


# --- headers and cookies under production settings -----------------------------------------

SECURITY_SETTINGS = (
    "DEBUG",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "SECURE_CROSS_ORIGIN_OPENER_POLICY",
    "X_FRAME_OPTIONS",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SAMESITE",
)
# What tests/settings_env.py relaxes for the test run; production leaves them unset.
TEST_RELAXATIONS = (
    "DEBUG",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "STATIC_MANIFEST",
)


@pytest.fixture(scope="module")
def production() -> dict:
    """config/settings.py's security settings with only the variables production must set."""
    env = {key: value for key, value in os.environ.items() if key not in TEST_RELAXATIONS}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="production-like-secret-key-" + "x" * 40,
        DEBUG="0",
        ALLOWED_HOSTS="cascade.example.com",
    )
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {SECURITY_SETTINGS!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_production_defaults_are_the_strict_ones(production):
    assert production == {
        "DEBUG": False,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SECURE_REFERRER_POLICY": "same-origin",
        "SECURE_CROSS_ORIGIN_OPENER_POLICY": "same-origin",
        "X_FRAME_OPTIONS": "DENY",
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SECURE": True,
        # The CSRF cookie stays readable by scripts (Django's default); no page script reads
        # it, so HttpOnly would be free hardening, but not a hole: see the report.
        "CSRF_COOKIE_HTTPONLY": False,
        "CSRF_COOKIE_SAMESITE": "Lax",
    }


@pytest.fixture
def production_browser(production):
    with override_settings(**production, ALLOWED_HOSTS=["testserver"]):
        yield Browser()  # built inside: the middleware reads the settings when first used


def assert_security_headers(response):
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Strict-Transport-Security"] == "max-age=3600"


def test_plain_http_is_sent_to_https(production_browser):
    response = production_browser.get("/accounts/login/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/accounts/login/"


def test_pages_admin_api_and_errors_carry_the_security_headers(production_browser, alice, world):
    browser = production_browser
    login = browser.get("/accounts/login/", secure=True)
    assert login.status_code == 200
    assert_security_headers(login)
    csrf = login.cookies["csrftoken"]
    assert csrf["secure"] and csrf["samesite"] == "Lax"
    signed_in = browser.post(
        "/accounts/login/",
        {"username": "alice", "password": "pw-alice"},
        secure=True,
    )
    assert signed_in.status_code == 302
    session = signed_in.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"
    for url, status in (
        ("/clients/", 200),
        ("/admin/", 200),
        (f"/admin/clients/client/{world['client'].pk}/change/", 200),
        ("/api/marketing/MessageStatus", 401),
        ("/no-such-page/", 404),
    ):
        response = browser.get(url, secure=True)
        assert response.status_code == status, url
        assert_security_headers(response)


def directives(policy: str) -> dict[str, list[str]]:
    """A policy's directives: {"default-src": ["'self'"], "img-src": ["'self'", "data:"], …}."""
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split() or [""]
        if name:
            parsed[name.lower()] = values
    return parsed


class InlineCode(HTMLParser):
    """What a policy without 'unsafe-inline' scripts would block: inline <script> (a
    json_script's application/json is data, not run), on…= handlers, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line = self.getpos()[0]
        values = dict(attrs)
        if tag == "script" and not values.get("src") and values.get("type") != "application/json":
            self.found.append(f"line {line}: inline <script>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"line {line}: <{tag} {name}=…>")
            elif (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"line {line}: <{tag} {name}={value!r}>")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    parser.close()
    return parser.found


def test_inline_code_is_found():
    assert inline_code(
        '<script>go()</script><script src="/s.js"></script>'
        '<script id="d" type="application/json">{"a": 1}</script>'
        '<button onclick="go()">x</button><a href=" JavaScript:go()">y</a><a href="/ok">z</a>'
    ) == [
        "line 1: inline <script>",
        "line 1: <button onclick=…>",
        "line 1: <a href=' JavaScript:go()'>",
    ]


def test_pages_send_a_content_security_policy(production_browser, alice, world):
    browser = production_browser
    login = browser.get("/accounts/login/", secure=True)
    policy = login["Content-Security-Policy"]
    rules = directives(policy)
    assert rules["default-src"] == ["'self'"]
    scripts = rules.get("script-src", rules["default-src"])
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, scripts
    assert rules["object-src"] == ["'none'"]
    assert rules["frame-ancestors"] == ["'none'"]
    assert rules["base-uri"] == ["'self'"]

    browser.force_login(alice)
    # alice works in every operator; pick sunrise, whose rows the pages are about.
    switched = browser.post("/operator/", {"operator": world["operator"].pk}, secure=True)
    assert switched.status_code == 302
    urls = ["/", "/accounts/login/", "/accounts/password_change/"]
    urls += [url for _route, url in page_urls(world)]
    urls += [
        "/admin/",
        "/admin/clients/client/",
        f"/admin/clients/client/{world['client'].pk}/change/",
        "/admin/clients/client/add/",
        f"/admin/clients/client/{world['client'].pk}/delete/",
        f"/admin/campaigns/campaign/{world['campaign'].pk}/change/",
    ]
    pages, problems = 0, []
    for url in urls:
        response = browser.get(url, secure=True)
        if response.get("Content-Type", "").startswith("text/html"):
            pages += 1
            problems += [f"{url}: {found}" for found in inline_code(response.content.decode())]
        if response.get("Content-Security-Policy") != policy:
            problems.append(f"{url}: policy {response.get('Content-Security-Policy')!r}")
    assert not problems, "\n".join(problems)
    # The builder, dashboard and import pages (which had inline scripts) are among them.
    assert pages >= 20, pages
    assert browser.get("/no-such-page/", secure=True)["Content-Security-Policy"] == policy


def test_the_api_docs_run_under_the_same_policy_their_starter_script_a_file(
    production_browser,
):
    """Swagger UI's start-up code comes from ?script, a file of our own origin."""
    response = production_browser.get("/api/docs/", secure=True)
    assert response.status_code == 200
    rules = directives(response["Content-Security-Policy"])
    assert rules["script-src"] == ["'self'"]
    page = response.content.decode()
    assert "SwaggerUIBundle(" not in page
    assert "?script" in page
    script = production_browser.get("/api/docs/?script=", secure=True)
    assert script.status_code == 200
    assert "SwaggerUIBundle(" in script.content.decode()
