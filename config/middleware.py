"""Content-Security-Policy: Django 5.2 has none built in (6.0 brings SECURE_CSP)."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


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
