"""Clients' time zones: where a client's clock says 10:00.

A client's zone is, in order: the one set on the client (import column, admin),
the zone of the point of sale the client registered at, or the one their phone
number places them in when it places them in exactly one (a Vladivostok or
Moscow landline, a Belarusian mobile; a Russian mobile could be anywhere from
Kaliningrad to Kamchatka and gives no zone). Without any of those the client
lives in the operator's zone. The first three are stored on the client when it
is created, so the engine reads one column.
"""

from __future__ import annotations

import zoneinfo

import phonenumbers
from django.core.cache import cache
from phonenumbers import timezone as phone_zones

from clients.models import Client

# libphonenumber names a zone by its offset's most populous city: Kaliningrad's
# landlines come back as Bucharest, which keeps summer time Kaliningrad does not.
PHONE_ZONE_FIXES = {("7", "Europe/Bucharest"): "Europe/Kaliningrad"}

ZONES_CACHE_SECONDS = 300


def is_valid_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def zone_from_phone(phone: str) -> str:
    """The one IANA zone the number belongs to, or '' when it is unknown or ambiguous."""
    if not phone:
        return ""
    try:
        number = phonenumbers.parse("+" + phone.lstrip("+"))
    except phonenumbers.NumberParseException:
        return ""
    zones = phone_zones.time_zones_for_number(number)
    if len(zones) != 1 or zones[0] == phone_zones.UNKNOWN_TIMEZONE:
        return ""
    zone = PHONE_ZONE_FIXES.get((str(number.country_code), zones[0]), zones[0])
    return zone if is_valid_zone(zone) else ""


def zone_for_new_client(*, explicit: str = "", pos=None, phone: str = "") -> str:
    """What a new client's `time_zone` is set to ('' leaves them in the operator's zone)."""
    if explicit and is_valid_zone(explicit):
        return explicit
    if pos is not None and pos.time_zone:
        return pos.time_zone
    return zone_from_phone(phone)


def effective_zone(client_zone: str, operator_zone: str) -> str:
    return client_zone or operator_zone


def zones_in_use(operator_id: int, operator_zone: str, *, cached: bool = True) -> list[str]:
    """Every zone the operator's clients live in, the operator's own included.

    Read on every claim of a campaign with a send window, so it is cached for a
    few minutes: a client in a zone new to the operator waits at most that long
    for the window to count their zone. The sweeper's trigger passes read it fresh.
    """
    key = f"client-zones:{operator_id}"
    zones = cache.get(key) if cached else None
    if zones is None:
        names = (
            Client.objects.filter(operator_id=operator_id)
            .exclude(time_zone="")
            .values_list("time_zone", flat=True)
            .distinct()
            .order_by()
        )
        zones = sorted(name for name in set(names) if is_valid_zone(name))
        cache.set(key, zones, ZONES_CACHE_SECONDS)
    return sorted({*zones, operator_zone})


def forget_zones(operator_id: int) -> None:
    cache.delete(f"client-zones:{operator_id}")
