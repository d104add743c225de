"""Email over SMTP, through Django's email machinery.

Account credentials: host, port, username, password, use_tls (STARTTLS),
use_ssl, from_email (or sender_names["email"]). One SMTP session per batch;
each message is handed over with its own MAIL/RCPT/DATA so one refused
recipient does not sink the others.

SMTP has no delivery reports we can read back, so acceptance by the relay is
the final status we can know: it is reported as `delivered`. A bounce that
arrives later by mail is out of Cascade's sight (documented in
ADDING_PROVIDERS.md).
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from email.utils import make_msgid

from django.core.mail import EmailMultiAlternatives

from providers.base import Backend as BaseBackend
from providers.base import (
    ConfigurationError,
    OutgoingMessage,
    ProviderError,
    SendResult,
    failed_results,
)
from providers.status import DeliveryStatus

# SMTP reply codes: 4xx are temporary by definition (RFC 5321 §4.2.1), 5xx permanent.
TEMPORARY_REPLY = range(400, 500)


class Backend(BaseBackend):
    name = "smtp"
    channels = ("email",)
    max_batch = 100
    supports_native_cascade = False
    idempotent_submit = False
    has_callbacks = False
    polls_statuses = False

    def settings(self) -> dict:
        credentials = self.account.credentials or {}
        if not credentials.get("host"):
            raise ConfigurationError(
                f"Provider account {self.account.name!r} needs credentials['host'] for SMTP."
            )
        from_email = credentials.get("from_email") or self.sender_for("email")
        if not from_email:
            raise ConfigurationError(
                f"Provider account {self.account.name!r} needs credentials['from_email'] "
                "or sender_names['email']."
            )
        return {
            "host": credentials["host"],
            "port": int(credentials.get("port", 25)),
            "username": credentials.get("username", ""),
            "password": credentials.get("password", ""),
            "use_tls": bool(credentials.get("use_tls", False)),
            "use_ssl": bool(credentials.get("use_ssl", False)),
            "from_email": from_email,
        }

    def open(self, settings: dict) -> smtplib.SMTP:
        try:
            if settings["use_ssl"]:
                connection = smtplib.SMTP_SSL(
                    settings["host"],
                    settings["port"],
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                connection = smtplib.SMTP(settings["host"], settings["port"], timeout=self.timeout)
                if settings["use_tls"]:
                    connection.starttls(context=ssl.create_default_context())
            if settings["username"]:
                connection.login(settings["username"], settings["password"])
        except smtplib.SMTPAuthenticationError as error:
            raise ProviderError(
                f"smtp: the server refused the login: {error.smtp_error!r}",
                permanent=True,
                code=str(error.smtp_code),
            ) from error
        except (OSError, smtplib.SMTPException) as error:
            # Nothing of the batch has been handed over yet.
            raise ProviderError(
                f"smtp: cannot connect: {error}", permanent=False, may_have_reached=False
            ) from error
        return connection

    def build(
        self, message: OutgoingMessage, from_email: str
    ) -> tuple[str, EmailMultiAlternatives]:
        domain = from_email.rpartition("@")[2] or "cascade.local"
        message_id = make_msgid(idstring=message.idempotency_key, domain=domain)
        email = EmailMultiAlternatives(
            subject=message.title,
            body=message.text,
            from_email=from_email,
            to=[message.email],
            headers={"Message-ID": message_id, "X-Cascade-Key": message.idempotency_key},
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return message_id, email

    def messages_within(self, requests: int) -> int:
        return requests  # each email is its own round trip, each may wait the full timeout

    def send(self, batch: list[OutgoingMessage]) -> list[SendResult]:
        settings = self.settings()
        connection = self.open(settings)
        results = []
        try:
            for position, message in enumerate(batch):
                try:
                    results.append(self.send_one(connection, message, settings["from_email"]))
                except ProviderError as error:
                    # The session is gone. What the server accepted stays accepted; the
                    # email on the wire may have been queued before the line dropped; the
                    # rest never left and can go again.
                    results += failed_results([message], error, may_have_reached=True)
                    results += failed_results(batch[position + 1 :], error, may_have_reached=False)
                    break
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                connection.quit()
        return results

    def send_one(
        self, connection: smtplib.SMTP, message: OutgoingMessage, from_email: str
    ) -> SendResult:
        if not message.email:
            return SendResult(
                message.delivery_id,
                message.idempotency_key,
                accepted=False,
                status=DeliveryStatus.FAILED,
                error_code="no_address",
                error_message="No email address",
                permanent=True,
            )
        message_id, email = self.build(message, from_email)
        try:
            connection.sendmail(
                from_email, [message.email], email.message().as_bytes(linesep="\r\n")
            )
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            return SendResult(
                message.delivery_id,
                message.idempotency_key,
                accepted=False,
                status=DeliveryStatus.REJECTED,
                error_code=str(code),
                error_message=f"Recipient refused: {text.decode(errors='replace')}",
                permanent=code not in TEMPORARY_REPLY,
            )
        except smtplib.SMTPResponseException as error:
            return SendResult(
                message.delivery_id,
                message.idempotency_key,
                accepted=False,
                status=DeliveryStatus.FAILED,
                error_code=str(error.smtp_code),
                error_message=f"Server refused the message: {error.smtp_error!r}",
                permanent=error.smtp_code not in TEMPORARY_REPLY,
            )
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as error:
            raise ProviderError(f"smtp: connection lost: {error}", permanent=False) from error
        return SendResult(
            message.delivery_id,
            message.idempotency_key,
            accepted=True,
            provider_message_id=message_id.strip("<>"),
            status=DeliveryStatus.DELIVERED,
            parts=1,
        )

    def fetch_statuses(self, refs):
        return []

    def parse_callback(self, request):
        return []
