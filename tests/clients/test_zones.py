"""Clients' time zones: from the client, the point of sale, or a phone that names one zone."""

from types import SimpleNamespace

from clients import zones
from clients.models import Client


def test_a_landline_names_its_zone_and_a_russian_mobile_names_none():
    assert zones.zone_from_phone("74232123456") == "Asia/Vladivostok"
    assert zones.zone_from_phone("74951234567") == "Europe/Moscow"
    assert zones.zone_from_phone("74012123456") == "Europe/Kaliningrad"  # not Bucharest
    assert zones.zone_from_phone("79141234567") == ""
    assert zones.zone_from_phone("") == ""
    assert zones.zone_from_phone("12") == ""


def test_the_explicit_zone_wins_then_the_point_of_sale_then_the_phone():
    pos = SimpleNamespace(time_zone="Asia/Yekaterinburg")
    assert zones.zone_for_new_client(explicit="Asia/Omsk", pos=pos, phone="74232123456") == (
        "Asia/Omsk"
    )
    assert zones.zone_for_new_client(explicit="Not/AZone", pos=pos) == "Asia/Yekaterinburg"
    assert zones.zone_for_new_client(phone="74232123456") == "Asia/Vladivostok"


def test_zones_in_use_lists_valid_zones_and_the_operators(sunrise):
    Client.objects.create(operator=sunrise, phone="79160000001", time_zone="Asia/Vladivostok")
    Client.objects.create(operator=sunrise, phone="79160000002", time_zone="Bogus/Zone")
    assert zones.zones_in_use(sunrise.pk, "Europe/Moscow") == [
        "Asia/Vladivostok",
        "Europe/Moscow",
    ]
