"""Phone numbers are stored as international digits without '+' (E.164 minus the plus)."""

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def normalize_phone(raw: str | int, *, region: str | None = None) -> str:
    """Return the number as E.164 digits without '+', or raise ValidationError.

    Accepts what people and partner systems send: '+7 (912) 345-67-89',
    '89123456789' (read in the default region), or the integer 79123456789.
    """
    text = str(raw).strip()
    if not text:
        raise ValidationError(_("Phone number is empty."), code="phone_empty")
    region = region or settings.CASCADE_DEFAULT_REGION
    international = _valid_e164(f"+{text}" if text.isdigit() else text, region)
    if not text.isdigit():
        if international:
            return international
        raise ValidationError(
            _("%(phone)s is not a valid phone number.") % {"phone": repr(text)},
            code="phone_invalid",
        )
    # Partner APIs send integers: 79123456789 is international digits without the
    # plus, but 89123456789 is a Russian national number with its trunk prefix.
    # When both readings are valid, the region's own country code decides.
    national = _valid_e164(text, region)
    if international and national and international != national:
        country_code = str(phonenumbers.country_code_for_region(region))
        return international if text.startswith(country_code) else national
    if international or national:
        return international or national
    raise ValidationError(
        _("%(phone)s is not a valid phone number.") % {"phone": repr(text)},
        code="phone_invalid",
    )


def _valid_e164(text: str, region: str) -> str:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
