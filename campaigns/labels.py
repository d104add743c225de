"""What the pages call the engine's codes, in the reader's language.

Rows store codes (a channel, a status, a skip reason) and the engine's own
English explanation, which logs and the admin keep; the pages show these labels
instead, so a Russian reader sees Russian. A gateway's error code is its own word
and is shown as it came.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from campaigns import caps
from campaigns.eligibility import NO_ADDRESS, NO_CLIENT, NO_CONSENT, NO_ROUTE
from campaigns.models import Message
from clients.channels import Channel
from providers.status import DeliveryStatus

REASON_LABELS = {
    NO_ROUTE: _("no provider account serves the channel"),
    NO_CLIENT: _("not a known client, so no consent is on record"),
    NO_CONSENT: _("no consent"),
    NO_ADDRESS: _("no address for the channel"),
    caps.SKIP_REASON: _("frequency cap reached"),
    "configuration": _("the provider account is misconfigured"),
    "other": _("other reasons"),
}

_CHANNELS = dict(Channel.choices)
_STATUSES = {**dict(DeliveryStatus.choices), **dict(Message.Status.choices)}


def channel_label(code: str) -> str:
    return str(_CHANNELS.get(code, code))


def status_label(code: str) -> str:
    return str(_STATUSES.get(code, code))


def is_engine_reason(code: str) -> bool:
    return code in REASON_LABELS


def reason_label(code: str) -> str:
    """The engine's reason in words; a gateway's own code as it came."""
    return str(REASON_LABELS.get(code, code))
