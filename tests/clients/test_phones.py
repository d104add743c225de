import pytest
from django.core.exceptions import ValidationError

from clients.models import Client
from clients.phones import normalize_phone
from tests.phones import every_regions_example_numbers


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


def test_stored_digits_with_their_plus_put_back_normalize_to_themselves():
    """What a form must show for a stored phone: "+" + digits reads back exactly."""
    changed = {}
    for international in every_regions_example_numbers():
        stored = normalize_phone(international)
        if normalize_phone(f"+{stored}") != stored:
            changed[international] = stored
    assert not changed


@pytest.mark.parametrize(
    ("digits", "russian", "foreign"),
    [
        ("9607712345", "79607712345", "Maldives +960 771-2345"),
        ("4721234567", "74721234567", "Norway +47 21 23 45 67"),
        ("4951234567", "74951234567", "Germany +49 5123 4567"),
        ("84912345678", "74912345678", "Vietnam +84 912 345 678"),
    ],
)
def test_bare_digits_that_read_both_ways_are_read_as_a_russian_national_number(
    digits, russian, foreign
):
    """Ten digits, or eleven after an 8, are how people here write Russian numbers.

    The same digits are also a foreign number's stored form (as the third column
    says), so stored digits must not go back through normalize_phone without their
    "+": the string alone cannot tell the two apart.
    """
    assert normalize_phone(digits) == russian
    assert normalize_phone(f"+{digits}") == digits


def test_the_operators_region_decides_for_its_own_country_code():
    assert normalize_phone("4721234567", region="NO") == "4721234567"
    assert normalize_phone("79161234567", region="NO") == "79161234567"


def test_saving_a_foreign_clients_admin_page_unchanged_keeps_the_number(client, alice, sunrise):
    from tests.forms import form_fields

    # Norway's +47 21 23 45 67 is stored as 4721234567, also a Belgorod number read bare.
    norwegian = Client.objects.create(operator=sunrise, phone="4721234567", first_name="Ola")
    client.force_login(alice)
    url = f"/admin/clients/client/{norwegian.pk}/change/"
    data = form_fields(client.get(url).content.decode(), form_id="client_form")
    assert data["phone"] == "+4721234567"
    data["consent_reason"] = ""
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    norwegian.refresh_from_db()
    assert norwegian.phone == "4721234567"
