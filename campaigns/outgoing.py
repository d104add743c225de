"""Outgoing: the claimed deliveries read, decided again and rendered for the wire.

Messages and clients are read as plain values in a constant number of queries
(load_batch), each delivery is checked once more against the one eligibility
rule (send_time_skip_reason) and rendered into the backend's OutgoingMessage.
"""

from __future__ import annotations

from types import SimpleNamespace

from django.db.models import OuterRef, Subquery

from campaigns import caps, links, unsubscribe, windows
from campaigns.eligibility import Recipient, skip_reason
from campaigns.models import Campaign, CampaignVariant, Delivery, Message, MessageTemplate
from campaigns.rendering import content_for, placeholders, render
from clients.channels import CONSENT_FLAGS
from clients.models import Card, Client, Operator
from clients.zones import effective_zone
from providers.base import OutgoingMessage
from providers.models import ProviderAccount

MESSAGE_FIELDS = (
    "phone",
    "email",
    "title",
    "text",
    "variables",
    "purpose",
    "client_id",
    "template_id",
    "attachments",
    "variant_id",
)


CLIENT_FIELDS = (
    "first_name",
    "last_name",
    "middle_name",
    "push_tokens",
    "time_zone",
    *CONSENT_FLAGS,
)


TEMPLATE_TEXT_FIELDS = ("title", "text", "html", "sms_text", "viber_text")


CARD_VARIABLES = {"bonus", "card"}


def load_batch(ids: list[int]) -> list[Delivery]:
    """The claimed deliveries, each with `.recipient`, `.campaign` and `.operator` attached.

    Messages and clients are read as plain values and campaigns, templates and
    operators once per batch: building three Django models per row cost more
    than all the SQL of a claim.
    """
    deliveries = list(Delivery.objects.filter(pk__in=ids).order_by("pk"))
    messages = {
        row["id"]: row
        for row in Message.objects.filter(pk__in={d.message_id for d in deliveries}).values(
            "id", *MESSAGE_FIELDS
        )
    }
    campaigns = Campaign.objects.select_related("template").in_bulk(
        {d.campaign_id for d in deliveries if d.campaign_id}
    )
    own_templates = MessageTemplate.objects.in_bulk(
        {m["template_id"] for m in messages.values() if m["template_id"]}
    )
    variant_ids = {m["variant_id"] for m in messages.values() if m["variant_id"]}
    variant_templates = (
        {
            v.pk: v.template
            for v in CampaignVariant.objects.filter(pk__in=variant_ids).select_related("template")
        }
        if variant_ids
        else {}
    )
    clients = Client.objects.filter(
        pk__in={m["client_id"] for m in messages.values() if m["client_id"]}
    )
    card_fields = ()
    templates = [
        *(c.template for c in campaigns.values() if c.template),
        *own_templates.values(),
        *variant_templates.values(),
    ]
    texts = [m["text"] for m in messages.values()] + [
        getattr(template, name) for template in templates for name in TEMPLATE_TEXT_FIELDS
    ]
    if CARD_VARIABLES & {name.lower() for text in texts for name in placeholders(text)}:
        # Two correlated subqueries per client: only when some text asks for them.
        best_card = Card.objects.filter(
            client_id=OuterRef("pk"), status=Card.Status.ACTIVE
        ).order_by("-bonus")
        clients = clients.annotate(
            bonus=Subquery(best_card.values("bonus")[:1]),
            card=Subquery(best_card.values("number")[:1]),
        )
        card_fields = ("bonus", "card")
    clients = {
        row["id"]: SimpleNamespace(**{"bonus": None, "card": None, "pk": row["id"], **row})
        for row in clients.values("id", *CLIENT_FIELDS, *card_fields)
    }
    operators = Operator.objects.only(
        "name", "time_zone", "cap_per_day", "cap_per_week", "cap_min_gap_minutes"
    ).in_bulk({d.operator_id for d in deliveries})
    for delivery in deliveries:
        message = messages[delivery.message_id]
        delivery.recipient = Recipient(
            phone=message["phone"],
            email=message["email"],
            title=message["title"],
            text=message["text"],
            variables=message["variables"] or {},
            purpose=message["purpose"],
            client=clients.get(message["client_id"]),
            # A variant's template stands in for the campaign's.
            template=variant_templates.get(message["variant_id"])
            or own_templates.get(message["template_id"]),
            attachments=message["attachments"] or [],
        )
        delivery.campaign = campaigns.get(delivery.campaign_id)
        delivery.operator = operators[delivery.operator_id]
    return deliveries


def variables_for(delivery: Delivery) -> dict:
    recipient = delivery.recipient
    client = recipient.client
    values = {
        "operator": delivery.operator.name,
        "phone": recipient.phone,
        "email": recipient.email,
    }
    if client is not None:
        values.update(
            first_name=client.first_name,
            last_name=client.last_name,
            middle_name=client.middle_name,
            bonus=client.bonus,
            card=client.card,
        )
    values.update(recipient.variables)
    return values


def send_time_skip_reason(delivery: Delivery, routes) -> tuple[str, str]:
    """Why this delivery may no longer go out on its channel, or ('', '')."""
    recipient = delivery.recipient
    campaign = delivery.campaign
    return skip_reason(
        channel=delivery.channel,
        purpose=campaign.purpose if campaign else recipient.purpose,
        client=recipient.client,
        phone=recipient.phone,
        email=recipient.email,
        routes=routes,
    )


def send_later(deliveries: list[Delivery], now) -> dict[int, tuple[object, str]]:
    """Deliveries that may not go out yet, with when they may and why.

    Outside the campaign's send window in the client's own zone; or past a
    frequency cap, for a triggered campaign, which tries again in the next slot
    (a one-off's capped recipient is skipped instead: see capped_now).
    Takes the cap slots of every other promotional delivery, so call it once,
    just before sending.
    """
    later = {}
    candidates = []
    for delivery in deliveries:
        recipient, campaign, operator = delivery.recipient, delivery.campaign, delivery.operator
        client_zone = recipient.client.time_zone if recipient.client else ""
        opening = windows.client_opening(now, campaign, client_zone, operator.time_zone)
        if opening > now:
            later[delivery.pk] = (opening, "Waiting for the send window in the client's time zone")
            continue
        purpose = campaign.purpose if campaign else recipient.purpose
        limits = caps.caps_for(campaign, operator)
        if recipient.client is None or purpose != "promotional" or not limits.active:
            continue
        zone = effective_zone(client_zone, operator.time_zone)
        candidates.append((delivery.pk, recipient.client.pk, delivery.channel, zone, limits))
    granted = caps.take_slots(candidates, now) if candidates else set()
    for delivery_id, _client_id, _channel, zone, limits in candidates:
        if delivery_id not in granted:
            later[delivery_id] = (caps.next_slot(now, zone, limits), caps.SKIP_REASON)
    return later


def native_fallbacks(delivery: Delivery, backend, account: ProviderAccount, routes) -> list[str]:
    """Channels after this step that this same gateway can run itself, in cascade order."""
    campaign = delivery.campaign
    if campaign is None or not getattr(backend, "supports_native_cascade", False):
        return []
    rest = list(campaign.channels)[delivery.step + 1 :]
    fallbacks = []
    for channel in rest:
        route = routes.get(channel)
        if route is None or route.primary != account.pk or channel not in backend.channels:
            break  # the gateway's cascade must be the remaining cascade, in order
        code, _ = skip_reason(
            channel=channel,
            purpose=campaign.purpose,
            client=delivery.recipient.client,
            phone=delivery.recipient.phone,
            email=delivery.recipient.email,
            routes=routes,
        )
        if code:
            break
        fallbacks.append(channel)
    return fallbacks


def first_image_url(attachments: list | None) -> str:
    """A partner's Files: the first image becomes the Viber picture (other files have no slot)."""
    for attachment in attachments or []:
        if "image" in str(attachment.get("Type") or "").lower() and attachment.get("Url"):
            return str(attachment["Url"])
    return ""


def outgoing_for(delivery: Delivery, backend, account, routes) -> OutgoingMessage:
    recipient = delivery.recipient
    campaign = delivery.campaign
    content = content_for(
        delivery.channel,
        template=recipient.template or (campaign.template if campaign else None),
        title=recipient.title,
        text=recipient.text,
    )
    if campaign is not None and campaign.track_links:
        links.rewrite(content, delivery.message_id, delivery.channel)
    if delivery.channel == "viber" and not content.image_url:
        content.image_url = first_image_url(recipient.attachments)
    variables = variables_for(delivery)
    fallbacks = native_fallbacks(delivery, backend, account, routes)
    delivery.native_channels = fallbacks
    client = recipient.client
    promotional = (campaign.purpose if campaign else recipient.purpose) == "promotional"
    return OutgoingMessage(
        delivery_id=delivery.pk,
        idempotency_key=delivery.idempotency_key,
        channel=delivery.channel,
        phone=recipient.phone,
        email=recipient.email,
        push_tokens=list(client.push_tokens) if client else [],
        title=render(content.title, variables),
        text=render(content.text, variables),
        html=render(content.html, variables),
        sms_text=render(content.sms_text, variables),
        button_caption=content.button_caption,
        button_url=content.button_url,
        image_url=content.image_url,
        fallback_channels=fallbacks,
        ttl_minutes=campaign.ttl_minutes if campaign else 1440,
        callback_url=account.callback_url(),
        is_promotional=promotional,
        unsubscribe_url=unsubscribe.url_for(delivery.message_id)
        if delivery.channel == "email" and promotional and client is not None
        else "",
    )
