"""The cascade: the next step of a message whose step failed, or a gateway's native leg.

The next channel is the campaign's next one the recipient may get (the one
eligibility rule, campaigns.eligibility); a native cascade's next leg is the
channel the gateway runs itself, reported by the gateway.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from campaigns.eligibility import skip_reason
from campaigns.fanout import delivery_key
from campaigns.models import Campaign, Delivery, Message
from campaigns.routing import routes_for
from providers.status import DeliveryStatus


def native_leg(parent: Delivery, channel: str, channels: list[str], expires_at) -> Delivery:
    """The step of a channel that a gateway runs itself after `parent` (native cascade)."""
    position = parent.native_channels.index(channel)
    step = channels.index(channel) if channel in channels else parent.step + 1 + position
    return Delivery(
        operator_id=parent.operator_id,
        message_id=parent.message_id,
        campaign_id=parent.campaign_id,
        step=step,
        channel=channel,
        account_id=parent.account_id,
        status=DeliveryStatus.SENT,
        idempotency_key=delivery_key(parent.message_id, step),
        provider_message_id=parent.provider_message_id,
        native_channels=parent.native_channels[position + 1 :],
        submitted_at=parent.submitted_at,
        expires_at=expires_at,
    )


def _next_step(
    delivery: Delivery, campaign: Campaign | None, *, routes, client, message
) -> Delivery | None:
    if campaign is None:
        return None  # a one-off partner message has one channel
    channels = list(campaign.channels)
    if delivery.native_channels:
        # The gateway runs the rest natively: its next leg takes over, reported by the gateway.
        expires_at = timezone.now() + timedelta(minutes=campaign.ttl_minutes)
        return native_leg(delivery, delivery.native_channels[0], channels, expires_at)
    for step in range(delivery.step + 1, len(channels)):
        channel = channels[step]
        code, _text = skip_reason(
            channel=channel,
            purpose=campaign.purpose,
            client=client,
            phone=message.phone,
            email=message.email,
            routes=routes,
        )
        if code:
            continue
        return Delivery(
            operator_id=delivery.operator_id,
            message_id=delivery.message_id,
            campaign_id=delivery.campaign_id,
            step=step,
            channel=channel,
            account_id=routes[channel].primary,
            status=DeliveryStatus.QUEUED,
            idempotency_key=delivery_key(delivery.message_id, step),
            next_attempt_at=timezone.now(),  # claims look for due rows only
            expires_at=timezone.now() + timedelta(minutes=campaign.ttl_minutes),
        )
    return None


def advance_cascade(falling: list[Delivery]) -> list[Delivery]:
    """Next steps for deliveries that failed (or were delivered but unread when read is final)."""
    if not falling:
        return []
    messages = {
        m.pk: m
        for m in Message.objects.filter(pk__in={d.message_id for d in falling}).select_related(
            "client", "campaign"
        )
    }
    routes_by_operator: dict[int, dict] = {}
    new_steps = []
    for delivery in falling:
        message = messages.get(delivery.message_id)
        if message is None or message.campaign is None:
            continue
        campaign = message.campaign
        if campaign.state == Campaign.State.CANCELLED:
            continue
        if delivery.operator_id not in routes_by_operator:
            routes_by_operator[delivery.operator_id] = routes_for(delivery.operator_id)
        step = _next_step(
            delivery,
            campaign,
            routes=routes_by_operator[delivery.operator_id],
            client=message.client,
            message=message,
        )
        if step is not None:
            new_steps.append(step)
    if new_steps:
        # A step may exist already (a native leg the gateway reported first, a
        # re-run): only the missing ones are created and counted.
        present = set(
            Delivery.objects.filter(
                idempotency_key__in=[d.idempotency_key for d in new_steps]
            ).values_list("idempotency_key", flat=True)
        )
        new_steps = [d for d in new_steps if d.idempotency_key not in present]
        Delivery.objects.bulk_create(new_steps, ignore_conflicts=True)
        # ignore_conflicts gives no ids: read back the rows just made.
        new_steps = list(
            Delivery.objects.filter(idempotency_key__in=[d.idempotency_key for d in new_steps])
        )
    return new_steps
