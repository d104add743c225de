import pytest

from clients.channels import (
    ADDRESS_FIELD_BY_CHANNEL,
    CHANNEL_BY_COMMUNICATION_TYPE,
    PROMOTIONAL_CONSENT_BY_CHANNEL,
    Channel,
    Purpose,
    required_consent,
)


def test_every_lcmanager_communication_type_has_a_channel():
    assert CHANNEL_BY_COMMUNICATION_TYPE == {
        1: "sms",
        2: "email",
        3: "push",
        4: "telegram",
        5: "whatsapp",
        6: "viber",
        7: "call_code",
    }


def test_every_channel_has_a_consent_flag_and_an_address():
    assert set(PROMOTIONAL_CONSENT_BY_CHANNEL) == set(Channel.values)
    assert set(ADDRESS_FIELD_BY_CHANNEL) == set(Channel.values)


@pytest.mark.parametrize(
    ("channel", "flag"),
    [
        ("sms", "allow_sms"),
        ("viber", "allow_sms"),
        ("vk", "allow_sms"),
        ("whatsapp", "allow_sms"),
        ("telegram", "allow_sms"),
        ("call_code", "allow_sms"),
        ("email", "allow_email"),
        ("push", "allow_push"),
    ],
)
def test_promotional_messages_need_the_channel_family_consent(channel, flag):
    assert required_consent(channel, Purpose.PROMOTIONAL) == flag


def test_online_cheques_follow_their_own_flag():
    assert required_consent(Channel.EMAIL, Purpose.ONLINE_CHEQUE) == "allow_email_online_cheque"


def test_registration_codes_need_no_marketing_consent():
    assert required_consent(Channel.SMS, Purpose.SERVICE) is None
