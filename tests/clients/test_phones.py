import pytest
from django.core.exceptions import ValidationError

from clients.phones import normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 (912) 345-67-89", "79123456789"),
        ("89123456789", "79123456789"),  # Russian trunk prefix
        (79123456789, "79123456789"),  # the partner API's integer
        ("9123456789", "79123456789"),  # national number, default region
        ("84951234567", "74951234567"),  # both readings valid: the region wins
        ("+84 912 345 678", "84912345678"),
        ("+44 20 7946 0958", "442079460958"),
    ],
)
def test_it_normalizes_to_international_digits(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "12", "+7 912 abc", "+7 000 000 00 00", "not a phone"])
def test_it_rejects_what_is_not_a_phone_number(raw):
    with pytest.raises(ValidationError):
        normalize_phone(raw)


def test_region_can_be_chosen_per_call():
    assert normalize_phone("020 7946 0958", region="GB") == "442079460958"
