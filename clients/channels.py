"""Channels, LCManager's CommunicationType codes, and which consent each needs.

This is the one table that decides whether a client may be written to; the
admin shows it and tests walk it case by case.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    EMAIL = "email", _("Email")
    PUSH = "push", _("Push")
    TELEGRAM = "telegram", "Telegram"
    WHATSAPP = "whatsapp", "WhatsApp"
    VIBER = "viber", "Viber"
    VK = "vk", "VK"
    CALL_CODE = "call_code", _("Call code")


# LCManager SendMessageProcess.CommunicationType (seed 000). VK has no code there:
# it only appears as a cascade step of the gateways.
CHANNEL_BY_COMMUNICATION_TYPE: dict[int, str] = {
    1: Channel.SMS,
    2: Channel.EMAIL,
    3: Channel.PUSH,
    4: Channel.TELEGRAM,
    5: Channel.WHATSAPP,
    6: Channel.VIBER,
    7: Channel.CALL_CODE,
}


class Purpose(models.TextChoices):
    PROMOTIONAL = "promotional", _("Promotional")
    ONLINE_CHEQUE = "online_cheque", _("Online cheque")
    SERVICE = "service", _("Service (registration code)")


CONSENT_FLAGS = ("allow_sms", "allow_email", "allow_push", "allow_email_online_cheque")

# Promotional messages need the consent of the channel's family: everything
# addressed by phone number counts as SMS-like.
PROMOTIONAL_CONSENT_BY_CHANNEL: dict[str, str] = {
    Channel.SMS: "allow_sms",
    Channel.VIBER: "allow_sms",
    Channel.VK: "allow_sms",
    Channel.WHATSAPP: "allow_sms",
    Channel.TELEGRAM: "allow_sms",
    Channel.CALL_CODE: "allow_sms",
    Channel.EMAIL: "allow_email",
    Channel.PUSH: "allow_push",
}

# Which address a channel needs on the client.
ADDRESS_FIELD_BY_CHANNEL: dict[str, str] = {
    Channel.SMS: "phone",
    Channel.VIBER: "phone",
    Channel.VK: "phone",
    Channel.WHATSAPP: "phone",
    Channel.TELEGRAM: "phone",
    Channel.CALL_CODE: "phone",
    Channel.EMAIL: "email",
    Channel.PUSH: "push_tokens",
}


def required_consent(channel: str, purpose: str) -> str | None:
    """The client flag that must be on to send on this channel, or None.

    Online cheques go by email only and follow their own flag; a registration
    code is a service message the client asked for, so no marketing consent
    applies to it.
    """
    if purpose == Purpose.SERVICE:
        return None
    if purpose == Purpose.ONLINE_CHEQUE:
        return "allow_email_online_cheque"
    return PROMOTIONAL_CONSENT_BY_CHANNEL[channel]
