"""One-click unsubscribe from promotional email (RFC 8058).

Each promotional email carries a signed link to /u/<token>, in its footer and in the
List-Unsubscribe and List-Unsubscribe-Post headers. The token is the message id signed
with our secret key, so it needs no table and cannot be made up for another client. A
GET shows a confirmation page (mail scanners fetch links; they must not unsubscribe
anyone); a POST, ours or a mail provider's `List-Unsubscribe=One-Click`, turns the
client's email consent off through change_consent, so the history shows it.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing

from campaigns.models import Message
from clients.models import ConsentChange
from clients.services import change_consent

SALT = "cascade.unsubscribe"


def token_for(message_id: int) -> str:
    return signing.Signer(salt=SALT).sign(str(message_id))


def url_for(message_id: int) -> str:
    return f"{settings.CASCADE_PUBLIC_URL.rstrip('/')}/u/{token_for(message_id)}"


def message_for(token: str) -> Message | None:
    """The message a token was made for, or None for a tampered or unknown one."""
    try:
        message_id = int(signing.Signer(salt=SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None
    return Message.objects.filter(pk=message_id, client__isnull=False).first()


def unsubscribe(message: Message) -> list[ConsentChange]:
    return change_consent(
        client_id=message.client_id,
        flags={"allow_email": False},
        source=ConsentChange.Source.UNSUBSCRIBE,
        reason=f"Unsubscribe link in message {message.pk}",
    )
