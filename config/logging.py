"""Log filters. Named in settings.LOGGING."""

import logging
import re

# A gateway's webhook URL, /providers/webhooks/<backend>/<account_id>/<secret>/, carries the
# secret that lets it report delivery statuses. Django's request logger writes the path of
# every 4xx and 5xx answer, and runserver's the request line of every request.
WEBHOOK_SECRET = re.compile(r"(/providers/webhooks/[^/\s]+/[^/\s]+/)[^/\s?#\"']+")


def redact_webhook_secrets(text: str) -> str:
    return WEBHOOK_SECRET.sub(r"\1***", text)


def _redacted(value: object) -> object:
    return redact_webhook_secrets(value) if isinstance(value, str) else value


class RedactWebhookSecrets(logging.Filter):
    """Replaces the secret of every webhook path in a record's message and arguments by ***.

    Changes the record itself, so the handlers that see it after this filter get the
    redacted one too. The record's `request` is the live request and is left alone: our
    formatter does not print it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):  # logger.info("%(path)s", {"path": …})
            record.args = {key: _redacted(arg) for key, arg in record.args.items()}
        return True
