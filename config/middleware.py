"""Content-Security-Policy (Django 5.2 has none built in; 6.0 brings SECURE_CSP), and the
partner API's language."""

import zoneinfo
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils import timezone, translation
from django.utils.translation.trans_real import parse_accept_lang_header

PARTNER_API_PREFIX = "/api/"


class ContentSecurityPolicyMiddleware:
    """Sends settings.CASCADE_CSP with every answer.

    A policy the view set itself is kept; an empty policy sends no header.
    Settings are read per request so that override_settings applies in tests.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.CASCADE_CSP
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response


class PartnerApiLanguageMiddleware:
    """The partner API speaks English unless the request's Accept-Language prefers Russian.

    Partners' code compares ErrorCodes, not texts, and LCManager answers in English; a
    partner's cookie or the site's default language (Russian) must not change that. Runs
    after LocaleMiddleware, which chose the language for the pages.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(PARTNER_API_PREFIX):
            return self.get_response(request)
        language = partner_language(request.headers.get("Accept-Language", ""))
        with translation.override(language):
            request.LANGUAGE_CODE = language
            response = self.get_response(request)
        response.headers.setdefault("Content-Language", language)
        return response


def partner_language(header: str) -> str:
    """Russian ("ru") when it is the most preferred language we speak, else "en"."""
    for code, _quality in parse_accept_lang_header(header[:255]):
        code = code.lower()
        if code.startswith("ru"):
            return "ru"
        if code.startswith("en") or code == "*":
            return "en"
    return "en"


class OperatorTimeZoneMiddleware:
    """Pages show times in the zone of the operator the user works in, not the server's.

    A marketer in Vladivostok reads "launched 10:00" as their ten o'clock. The
    operator is the one `current_operator` caches on the request, which every page
    reads anyway, so this costs no query of its own. The partner API and the
    webhooks answer in UTC ISO 8601 and are left alone.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = None
        if not request.path.startswith(("/api/", "/providers/")) and request.user.is_authenticated:
            # Deferred: clients.tenancy reads models, which load after settings import this.
            from clients.tenancy import current_operator

            try:
                zone = zoneinfo.ZoneInfo(current_operator(request).time_zone)
            except (PermissionDenied, zoneinfo.ZoneInfoNotFoundError, ValueError):
                zone = None  # no operator yet, or a zone name the admin mistyped
        if zone is None:
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
