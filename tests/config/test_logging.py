"""config/logging.py: a webhook's secret never reaches a log line."""

import io
import logging

import pytest
from django.conf import settings

from config.logging import RedactWebhookSecrets, redact_webhook_secrets

SECRET = "cb-1122aabbccddeeff"
PATH = f"/providers/webhooks/pulse/7/{SECRET}/"


def record(msg, *args, name="django.request") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args or None, None)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (PATH, "/providers/webhooks/pulse/7/***/"),
        (f"Bad Request: {PATH}", "Bad Request: /providers/webhooks/pulse/7/***/"),
        # runserver's request line, with a query string and no trailing slash
        (
            f'"GET {PATH}?id=1&status=delivered HTTP/1.1" 400 0',
            '"GET /providers/webhooks/pulse/7/***/?id=1&status=delivered HTTP/1.1" 400 0',
        ),
        (
            f'"POST /providers/webhooks/smtp/3/{SECRET} HTTP/1.1" 301 0',
            '"POST /providers/webhooks/smtp/3/*** HTTP/1.1" 301 0',
        ),
        # behind a URL prefix (SCRIPT_NAME)
        (f"/cascade{PATH}", "/cascade/providers/webhooks/pulse/7/***/"),
        # two in one message
        (
            f"{PATH} then {PATH}",
            "/providers/webhooks/pulse/7/***/ then /providers/webhooks/pulse/7/***/",
        ),
        # nothing to hide
        ("/providers/webhooks/pulse/7//", "/providers/webhooks/pulse/7//"),
        ("/campaigns/7/messages/", "/campaigns/7/messages/"),
    ],
)
def test_it_replaces_the_secret_segment_of_a_webhook_path(text, redacted):
    assert redact_webhook_secrets(text) == redacted


def test_it_redacts_the_message_and_its_arguments_and_keeps_the_record():
    rec = record("%s: %s", "Bad Request", PATH)
    assert RedactWebhookSecrets().filter(rec) is True
    assert rec.args == ("Bad Request", "/providers/webhooks/pulse/7/***/")
    assert rec.getMessage() == "Bad Request: /providers/webhooks/pulse/7/***/"

    rec = record(f"Callback refused at {PATH}")
    RedactWebhookSecrets().filter(rec)
    assert rec.getMessage() == "Callback refused at /providers/webhooks/pulse/7/***/"


def test_it_redacts_mapping_arguments_and_leaves_other_values_alone():
    rec = record("%(path)s answered %(status)d", {"path": PATH, "status": 400})
    RedactWebhookSecrets().filter(rec)
    assert rec.getMessage() == "/providers/webhooks/pulse/7/***/ answered 400"

    error = ValueError(PATH)
    rec = record(error)
    RedactWebhookSecrets().filter(rec)
    assert rec.msg is error  # not a string: untouched (and nothing we log this way)


@pytest.mark.parametrize("name", ["django.request", "django.server"])
def test_the_request_loggers_redact_before_any_handler_and_still_reach_the_console(name):
    """As configured in settings.LOGGING: a handler of the root's (like pytest's caplog, or
    an error tracker) gets the redacted record, and the console writes it."""
    seen = []

    class Keep(logging.Handler):
        def emit(self, rec):
            seen.append(self.format(rec))

    root = logging.getLogger()
    console = next(h for h in root.handlers if type(h) is logging.StreamHandler)
    keep = Keep()
    root.addHandler(keep)
    written = io.StringIO()
    old_stream = console.setStream(written)
    try:
        logging.getLogger(name).warning("%s: %s", "Bad Request", PATH)
    finally:
        console.setStream(old_stream)
        root.removeHandler(keep)
    assert seen == ["Bad Request: /providers/webhooks/pulse/7/***/"]
    assert f"{name} Bad Request: /providers/webhooks/pulse/7/***/" in written.getvalue()
    assert SECRET not in written.getvalue()


def test_the_console_handler_redacts_every_logger():
    assert "redact_webhook_secrets" in settings.LOGGING["handlers"]["console"]["filters"]
    console = next(h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler)
    written = io.StringIO()
    old_stream = console.setStream(written)
    try:
        logging.getLogger("providers.anything").warning("odd callback at %s", PATH)
    finally:
        console.setStream(old_stream)
    assert "odd callback at /providers/webhooks/pulse/7/***/" in written.getvalue()
