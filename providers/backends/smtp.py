"""Email over SMTP, through Django's email machinery.

Account credentials: host, port, username, password, use_tls (STARTTLS),
use_ssl, from_email (or sender_names["email"]). One SMTP session per batch
(session_scope); each message is a chunk of its own, handed over with its own
MAIL/RCPT/DATA so one refused recipient does not sink the others.

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
from django.utils.html import escape
from django.utils.translation import gettext as _

from providers.base import Backend as BaseBackend
from providers.base import (
    Chunk,
    ConfigurationError,
    Item,
    OutgoingMessage,
    ProviderError,
    SendResult,
    refusal,
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
        headers = {"Message-ID": message_id, "X-Cascade-Key": message.idempotency_key}
        text, html = message.text, message.html
        if message.unsubscribe_url:
            link = message.unsubscribe_url
            headers["List-Unsubscribe"] = f"<{link}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            text += "\n\n-- \n" + _("Unsubscribe: %(link)s") % {"link": link}
            if html:
                html += f'<p><a href="{escape(link)}">{escape(_("Unsubscribe"))}</a></p>'
        email = EmailMultiAlternatives(
            subject=message.title,
            body=text,
            from_email=from_email,
            to=[message.email],
            headers=headers,
        )
        if html:
            email.attach_alternative(html, "text/html")
        return message_id, email

    def messages_within(self, requests: int) -> int:
        return requests  # each email is its own round trip, each may wait the full timeout

    # ---- the send pipeline (providers/base.py) ----
    @contextlib.contextmanager
    def session_scope(self):
        """One SMTP session for the whole batch."""
        self.settings_now = self.settings()
        self.connection = self.open(self.settings_now)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self.connection.quit()

    def chunk(self, items: list[Item]) -> list[Chunk]:
        # Each email its own MAIL/RCPT/DATA, so one refused recipient sinks no other. A lost
        # session fails its email (which may have been queued before the line dropped)
        # and leaves the later ones unsent, which the base class does.
        return [Chunk([item]) for item in items]

    def submit(self, chunk: Chunk) -> SendResult:
        [(_index, message)] = chunk.items
        from_email = self.settings_now["from_email"]
        message_id, email = self.build(message, from_email)
        try:
            self.connection.sendmail(
                from_email, [message.email], email.message().as_bytes(linesep="\r\n")
            )
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            return refusal(
                message,
                str(code),
                f"Recipient refused: {text.decode(errors='replace')}",
                permanent=code not in TEMPORARY_REPLY,
            )
        except smtplib.SMTPResponseException as error:
            return refusal(
                message,
                str(error.smtp_code),
                f"Server refused the message: {error.smtp_error!r}",
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

    def parse_results(self, chunk: Chunk, answer: SendResult) -> dict[int, SendResult]:
        return {chunk.items[0][0]: answer}

    def fetch_statuses(self, refs):
        return []

    def parse_callback(self, request):
        return []
