"""Who a campaign is for: a saved segment over clients, or an explicit list.

A segment is a small JSON object; every key narrows the audience:

    {"pos": [1, 2],                   registered at one of these points of sale
     "tags": ["vip"],                 has any of these tags
     "bonus_min": 100, "bonus_max": 5000,   has a card with bonus in the range
     "registered_from": "2025-01-01", "registered_to": "2025-12-31",
     "last_purchase_from": "...", "last_purchase_to": "...",
     "consent": "allow_sms",          the flag must be on (narrowing; the cascade checks anyway)
     "has_phone": true, "has_email": true,
     "clients": [1, 2, 3]}            these ids only

Consent and addresses are not filtered here on purpose: the fan-out checks them
per channel and records a skipped delivery with the reason, so the marketer
sees who was left out and why.
"""

from __future__ import annotations

from datetime import date, datetime

from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext as _

from campaigns.eligibility import NO_ADDRESS, NO_CONSENT, eligible_q, rules_for
from campaigns.routing import routes_for
from clients.channels import CONSENT_FLAGS
from clients.models import Card, Client

SEGMENT_KEYS = {
    "pos",
    "tags",
    "bonus_min",
    "bonus_max",
    "registered_from",
    "registered_to",
    "last_purchase_from",
    "last_purchase_to",
    "consent",
    "has_phone",
    "has_email",
    "clients",
}


def _date(value, key: str) -> date:
    try:
        return value if isinstance(value, date) else datetime.fromisoformat(str(value)).date()
    except ValueError:
        raise ValidationError(
            _("Segment %(key)s must be a date (YYYY-MM-DD), got %(value)s.")
            % {"key": key, "value": repr(value)}
        ) from None


def _number(value, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValidationError(
            _("Segment %(key)s must be a number, got %(value)s.")
            % {"key": key, "value": repr(value)}
        ) from None


def _ids(value, key: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(item, int) for item in value):
        raise ValidationError(_("Segment %(key)s must be a list of ids.") % {"key": key})
    return value


def validate_segment(segment: dict) -> None:
    unknown = set(segment) - SEGMENT_KEYS
    if unknown:
        raise ValidationError(
            _("Unknown segment filters: %(keys)s.") % {"keys": ", ".join(sorted(unknown))}
        )
    segment_queryset(operator_id=0, segment=segment)  # raises on bad values


def segment_queryset(*, operator_id: int, segment: dict) -> QuerySet[Client]:
    """The clients of one operator that the segment selects."""
    clients = Client.objects.filter(operator_id=operator_id)
    if "pos" in segment:
        clients = clients.filter(registered_pos_id__in=_ids(segment["pos"], "pos"))
    if "clients" in segment:
        clients = clients.filter(pk__in=_ids(segment["clients"], "clients"))
    if "tags" in segment:
        tags = segment["tags"]
        if not isinstance(tags, list):
            raise ValidationError(_("Segment tags must be a list of tag names."))
        tagged = Client.tags.through.objects.filter(client_id=OuterRef("pk"), tag__name__in=tags)
        clients = clients.filter(Exists(tagged))
    if "bonus_min" in segment or "bonus_max" in segment:
        cards = Card.objects.filter(client_id=OuterRef("pk"), status=Card.Status.ACTIVE)
        if "bonus_min" in segment:
            cards = cards.filter(bonus__gte=_number(segment["bonus_min"], "bonus_min"))
        if "bonus_max" in segment:
            cards = cards.filter(bonus__lte=_number(segment["bonus_max"], "bonus_max"))
        clients = clients.filter(Exists(cards))
    for key, lookup in (
        ("registered_from", "registered_at__date__gte"),
        ("registered_to", "registered_at__date__lte"),
        ("last_purchase_from", "last_purchase_at__date__gte"),
        ("last_purchase_to", "last_purchase_at__date__lte"),
    ):
        if key in segment:
            clients = clients.filter(**{lookup: _date(segment[key], key)})
    if "consent" in segment:
        flag = segment["consent"]
        if flag not in CONSENT_FLAGS:
            raise ValidationError(
                _("Segment consent must be one of %(flags)s.") % {"flags": ", ".join(CONSENT_FLAGS)}
            )
        clients = clients.filter(**{flag: True})
    if segment.get("has_phone"):
        clients = clients.exclude(phone="")
    if segment.get("has_email"):
        clients = clients.exclude(email="")
    return clients


def forecast(*, operator_id: int, segment: dict, channels: list[str], purpose: str) -> dict:
    """How many the segment selects and how many the fan-out would skip, and why: one query.

    The same rules as the fan-out (campaigns.eligibility): a recipient is
    reached if any channel of the cascade has a route, the consent it needs and
    an address; otherwise the first channel's reason is the one recorded.
    """
    routes = routes_for(operator_id)
    eligible = Q(pk__in=[])
    for channel in channels:
        eligible |= eligible_q(channel, purpose, routes)
    aggregates = {"recipients": Count("pk"), "reachable": Count("pk", filter=eligible)}
    first = channels[0] if channels else None
    if first and first in routes:
        # The first rule that fails names the reason, as the fan-out records it.
        held = Q()
        for rule in rules_for(first, purpose, routes):
            if rule.code in (NO_CONSENT, NO_ADDRESS):
                aggregates[rule.code] = Count("pk", filter=~eligible & held & ~rule.client_q)
            held &= rule.client_q
    counts = segment_queryset(operator_id=operator_id, segment=segment).aggregate(**aggregates)
    skipped = counts["recipients"] - counts["reachable"]
    reasons = {}
    if first and first not in routes:
        reasons["no_route"] = skipped
    elif first:
        reasons = {key: counts[key] for key in (NO_CONSENT, NO_ADDRESS) if counts.get(key)}
        other = skipped - sum(reasons.values())
        if other:
            reasons["other"] = other
    return {
        "recipients": counts["recipients"],
        "reachable": counts["reachable"],
        "skipped": skipped,
        "reasons": reasons,
        "routes": {channel: channel in routes for channel in channels},
    }
