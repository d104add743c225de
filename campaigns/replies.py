"""Clients' replies: kept and listed on the campaign; a "stop" word withdraws consent.

A gateway that forwards replies (providers.webhooks.replies_webhook) hands them
here. Each reply is recorded once per account and gateway id, so a redelivered
reply neither doubles the list nor writes a second history row. The reply is
tied to the message it answers by the gateway's id of that message when the
gateway gives one, else to the latest message this account carried to that
phone; the client is that message's, else the operator's client with that phone.

An opt-out is a reply that is, as a whole, one of the operator's keywords
(Operator.opt_out_keywords), ignoring case, spaces and trailing punctuation:
"Stop!", " с т о п " and "ОТПИСКА." all match; "please stop the spam" does not,
as carriers' STOP handling reads only whole-word replies. It turns off the
consent flag of the channel the reply came on (allow_sms for every phone
channel) through clients.services.change_consent with source "reply".
"""

# Keywords and examples are Russian on purpose.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import re

from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import Delivery, InboundReply
from clients.channels import PROMOTIONAL_CONSENT_BY_CHANNEL, Channel
from clients.models import Client, ConsentChange, Operator
from clients.services import change_consent
from providers.base import InboundMessage

_IGNORED = re.compile(r"[\s.,!?;:\"'«»()\-]+")


def normalized(text: str) -> str:
    return _IGNORED.sub("", text).casefold().replace("ё", "е")


def keywords_of(operator: Operator) -> set[str]:
    return {normalized(word) for word in operator.opt_out_keywords.split(",") if normalized(word)}


def is_opt_out(text: str, keywords: set[str]) -> bool:
    return normalized(text) in keywords


def record_replies(*, account, replies: list[InboundMessage]) -> int:
    """Keep the replies that are new; withdraw consent for the opt-outs. Returns how many were new."""
    if not replies:
        return 0
    operator = Operator.objects.only("id", "opt_out_keywords").get(pk=account.operator_id)
    keywords = keywords_of(operator)
    answered = _answered_deliveries(account, replies)
    recorded = 0
    for reply in replies:
        delivery = answered.get(reply.provider_message_id) or _latest_delivery(account, reply)
        if delivery is not None and delivery["message__phone"] != reply.phone:
            delivery = None  # an id that names another phone's message is not trusted
        with transaction.atomic():
            created = _record(account, operator, reply, delivery, keywords)
        recorded += created
    return recorded


def _answered_deliveries(account, replies: list[InboundMessage]) -> dict[str, dict]:
    ids = {reply.provider_message_id for reply in replies if reply.provider_message_id}
    if not ids:
        return {}
    rows = (
        Delivery.objects.filter(account_id=account.pk, provider_message_id__in=ids)
        .order_by("id")
        .values("provider_message_id", "message_id", "campaign_id", "channel", *_MESSAGE_FIELDS)
    )
    return {row["provider_message_id"]: row for row in rows}


_MESSAGE_FIELDS = ("message__phone", "message__client_id")


def _latest_delivery(account, reply: InboundMessage) -> dict | None:
    return (
        Delivery.objects.filter(account_id=account.pk, message__phone=reply.phone)
        .order_by("-id")
        .values("provider_message_id", "message_id", "campaign_id", "channel", *_MESSAGE_FIELDS)
        .first()
    )


def _record(account, operator, reply: InboundMessage, delivery, keywords) -> bool:
    client_id = delivery["message__client_id"] if delivery else None
    if client_id is None:
        client_id = (
            Client.objects.filter(operator_id=operator.pk, phone=reply.phone)
            .values_list("id", flat=True)
            .first()
        )
    channel = reply.channel or (delivery["channel"] if delivery else "") or Channel.SMS
    opt_out = is_opt_out(reply.text, keywords)
    try:
        with transaction.atomic():
            row = InboundReply.objects.create(
                operator_id=operator.pk,
                account_id=account.pk,
                provider_reply_id=reply.provider_reply_id,
                phone=reply.phone,
                text=reply.text,
                channel=channel,
                client_id=client_id,
                message_id=delivery["message_id"] if delivery else None,
                campaign_id=delivery["campaign_id"] if delivery else None,
                is_opt_out=opt_out,
                received_at=reply.received_at or timezone.now(),
            )
    except IntegrityError:
        return False  # already recorded: a redelivery
    if opt_out and client_id is not None:
        flag = PROMOTIONAL_CONSENT_BY_CHANNEL.get(channel, "allow_sms")
        answered = f"message {row.message_id}" if row.message_id else "no known message"
        change_consent(
            client_id=client_id,
            flags={flag: False},
            source=ConsentChange.Source.REPLY,
            reason=f"Replied {reply.text.strip()[:100]!r} on {channel} to {answered}",
        )
    return True
