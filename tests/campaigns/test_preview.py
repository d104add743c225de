"""Campaign preview: SMS encoding and parts, Viber limits, per-channel content, cost estimate."""

# ruff: noqa: RUF001 - Cyrillic letters and curly quotes are what these tests are about

import random
from decimal import Decimal

import pytest

from campaigns.models import Campaign, MessageTemplate
from campaigns.preview import (
    DEFAULT_FALL_THROUGH,
    GSM7_BASIC,
    GSM7_EXTENSION,
    estimate_cost,
    highlight,
    preview_campaign,
    sms_segments,
    viber_checks,
)
from clients.models import Card
from providers.models import ChannelRoute, ProviderAccount
from tests.conftest import make_client

CYRILLIC = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
EMOJI = "😀🎉👍🔥❤🛒"  # ❤ is in the BMP (one UTF-16 unit); the others need a surrogate pair


# --- GSM-7 ------------------------------------------------------------------


def test_the_gsm_tables_are_the_3gpp_ones():
    assert len(GSM7_BASIC) == 127  # 128 codes less the escape
    assert len(set(GSM7_BASIC)) == 127
    assert set(GSM7_EXTENSION) == set("^{}\\[~]|€\f")
    assert not set(GSM7_BASIC) & set(GSM7_EXTENSION)
    assert "Ç" in GSM7_BASIC and "ç" not in GSM7_BASIC


def test_empty_text_is_no_part_at_all():
    info = sms_segments("")
    assert (info.encoding, info.length, info.segments, info.remaining) == ("GSM-7", 0, 0, 160)


def test_plain_ascii_is_gsm7_and_counts_one_per_character():
    info = sms_segments("Hello Anna, you have 150 points!")
    assert info.encoding == "GSM-7"
    assert info.length == 32
    assert (info.segments, info.per_segment, info.remaining) == (1, 160, 128)
    assert info.ucs2_characters == ()


def test_160_gsm_characters_fit_in_one_part():
    info = sms_segments("a" * 160)
    assert (info.segments, info.per_segment, info.remaining) == (1, 160, 0)


def test_161_gsm_characters_take_two_parts_of_153():
    info = sms_segments("a" * 161)
    assert (info.segments, info.per_segment, info.remaining) == (2, 153, 145)


def test_306_characters_fill_two_parts_and_307_need_a_third():
    assert sms_segments("a" * 306).segments == 2
    assert sms_segments("a" * 307).segments == 3


def test_extension_characters_count_two_septets():
    info = sms_segments("Price: 5€ {sale}")
    assert info.encoding == "GSM-7"
    assert info.length == 19
    assert sms_segments("€" * 80).segments == 1
    assert sms_segments("€" * 80 + "a").segments == 2


def test_form_feed_is_an_extension_character():
    assert sms_segments("\f").length == 2


def test_an_extension_character_that_straddles_a_part_boundary_moves_to_the_next_part():
    # 152 septets, then € needs 2 where 1 is left: it opens part two.
    info = sms_segments("a" * 152 + "€" + "a" * 10)
    assert info.length == 164
    assert (info.segments, info.remaining) == (2, 153 - 12)


def test_a_wasted_septet_can_cost_one_part_more_than_dividing_the_length():
    # 306 septets would fit two parts if € could be cut; it cannot, so three.
    info = sms_segments("a" * 152 + "€" + "a" * 152)
    assert info.length == 306
    assert (info.segments, info.remaining) == (3, 152)


def test_an_extension_character_that_fits_exactly_stays_in_the_part():
    info = sms_segments("a" * 151 + "€" + "a" * 10)
    assert (info.segments, info.remaining) == (2, 143)


def test_greek_capitals_and_accented_letters_of_the_table_stay_gsm7():
    assert sms_segments("ΔΦΓΛΩΠΨΣΘΞ èéùìò ÄÖÑÜ äöñüà Ç ¿¡ £¥¤§").encoding == "GSM-7"


def test_a_small_c_cedilla_is_not_in_the_3gpp_table():
    info = sms_segments("Garçon")
    assert info.encoding == "UCS-2"
    assert info.ucs2_characters == ("ç",)


# --- UCS-2 ------------------------------------------------------------------


def test_russian_text_is_ucs2():
    info = sms_segments("Привет, Анна! У вас 150 баллов.")
    assert info.encoding == "UCS-2"
    assert info.length == 31
    assert (info.segments, info.per_segment, info.remaining) == (1, 70, 39)


def test_ucs2_characters_are_distinct_and_in_order_of_first_appearance():
    info = sms_segments("Sale — скидка")
    assert info.ucs2_characters == ("—", "с", "к", "и", "д", "а")


def test_70_cyrillic_characters_fit_in_one_part():
    info = sms_segments("я" * 70)
    assert (info.segments, info.per_segment, info.remaining) == (1, 70, 0)


def test_71_cyrillic_characters_take_two_parts_of_67():
    info = sms_segments("я" * 71)
    assert (info.segments, info.per_segment, info.remaining) == (2, 67, 63)


def test_a_non_breaking_space_or_a_curly_quote_is_enough_for_ucs2():
    assert sms_segments("Hello\u00a0Anna").encoding == "UCS-2"
    assert sms_segments("Anna’s points").ucs2_characters == ("’",)


def test_an_emoji_counts_two_utf16_units():
    info = sms_segments("Hi 😀")
    assert (info.encoding, info.length) == ("UCS-2", 5)
    assert sms_segments("😀" * 35).segments == 1
    assert sms_segments("😀" * 35 + "a").segments == 2


def test_an_emoji_is_not_split_across_parts():
    info = sms_segments("я" * 66 + "😀" + "я" * 5)
    assert info.length == 73
    assert (info.segments, info.remaining) == (2, 67 - 7)
    info = sms_segments("я" * 66 + "😀" + "я" * 66)
    assert info.length == 134
    assert (info.segments, info.remaining) == (3, 66)


def test_extension_characters_count_one_in_a_ucs2_message():
    info = sms_segments("€я")
    assert (info.encoding, info.length) == ("UCS-2", 2)
    assert info.ucs2_characters == ("я",)


# --- Property-style ---------------------------------------------------------


def random_text(rng: random.Random) -> str:
    pools = ["abcXYZ 019.,!?", CYRILLIC, GSM7_EXTENSION, EMOJI]
    chosen = rng.sample(pools, rng.randint(1, len(pools)))
    return "".join(rng.choice(rng.choice(chosen)) for _ in range(rng.randint(1, 500)))


def test_parts_always_hold_the_text_and_no_part_is_needless():
    rng = random.Random(20240501)
    for _ in range(3000):
        text = random_text(rng)
        info = sms_segments(text)
        assert info.segments * info.per_segment >= info.length, text
        # A part is closed only when the next character does not fit, so it
        # wastes at most one unit (a 2-unit character never straddles parts).
        assert (info.segments - 1) * (info.per_segment - 1) < info.length, text
        assert 0 <= info.remaining < info.per_segment or info.segments == 1
        assert (info.encoding == "UCS-2") == bool(info.ucs2_characters)
        if info.segments == 1:
            assert info.remaining == info.per_segment - info.length
        assert "".join(run for run, _ in highlight(text)) == text


def test_without_two_unit_characters_parts_are_exactly_the_length_divided():
    rng = random.Random(7)
    for _ in range(2000):
        pool = rng.choice(["abc XYZ@£", CYRILLIC + "abc"])
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 700)))
        info = sms_segments(text)
        assert info.segments * info.per_segment >= info.length
        assert (info.segments - 1) * info.per_segment < info.length


# --- Highlight --------------------------------------------------------------


def test_highlight_marks_runs_that_force_ucs2():
    assert highlight("Привет, Anna! 😀") == [
        ("Привет", True),
        (", Anna! ", False),
        ("😀", True),
    ]


def test_highlight_of_gsm7_text_marks_nothing():
    assert highlight("Hi {name} €5") == [("Hi {name} €5", False)]
    assert highlight("") == []


# --- Viber ------------------------------------------------------------------


def viber(**fields):
    values = {"text": "Sale!", "button_caption": "", "button_url": "", "image_url": ""}
    return viber_checks(**{**values, **fields})


def test_a_plain_viber_text_is_fine():
    assert viber() == []


def test_a_full_viber_message_with_image_and_button_is_fine():
    assert (
        viber(
            text="x" * 1000,
            button_caption="c" * 19,
            button_url="https://shop.example/sale",
            image_url="https://shop.example/sale.png",
        )
        == []
    )


def test_viber_text_over_1000_characters_is_a_problem():
    assert viber(text="x" * 1001) == ["The Viber text is 1001 characters long; the limit is 1000."]


def test_an_empty_viber_text_is_a_problem():
    assert viber(text="") == ["The Viber text is empty; the gateway requires one."]


def test_a_caption_over_19_characters_is_a_problem():
    problems = viber(button_caption="c" * 20, button_url="https://shop.example")
    assert problems == ["The button caption is 20 characters long; the limit is 19."]


def test_a_caption_without_url_is_a_problem():
    assert viber(button_caption="Open") == ["The button has a caption but no URL."]


def test_a_url_without_caption_is_a_problem():
    assert viber(button_url="https://shop.example") == ["The button has a URL but no caption."]


def test_an_image_without_a_button_is_a_problem():
    assert viber(image_url="https://shop.example/a.png") == [
        "An image needs a button (caption and URL)."
    ]


# --- Preview ----------------------------------------------------------------


@pytest.fixture
def gateway(sunrise):
    return ProviderAccount.objects.create(
        operator=sunrise,
        name="Gateway",
        backend="cascade_gateway",
        channels=["viber", "vk", "sms"],
        cost_per_part=Decimal("2.4500"),
    )


@pytest.fixture
def backup(sunrise):
    return ProviderAccount.objects.create(
        operator=sunrise,
        name="Backup",
        backend="pulse",
        channels=["sms", "email"],
        cost_per_part=Decimal("0.0200"),
        currency="EUR",
    )


@pytest.fixture
def routed(sunrise, gateway, backup):
    ChannelRoute.objects.create(
        operator=sunrise, channel="viber", account=gateway, cost_per_part=Decimal("0.8500")
    )
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=gateway, priority=1)
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=backup, priority=2)
    ChannelRoute.objects.create(operator=sunrise, channel="email", account=backup)
    return sunrise


def make_campaign(operator, channels, **template_fields):
    fields = {"text": "Hello {{ first_name }}, you have {{ bonus }} points", **template_fields}
    template = MessageTemplate.objects.create(operator=operator, name="Sale", **fields)
    return Campaign.objects.create(
        operator=operator, name="Sale", template=template, channels=channels
    )


def by_channel(preview):
    return {item.channel: item for item in preview.channels}


@pytest.mark.django_db
def test_preview_renders_each_channel_for_the_given_client(routed):
    client = make_client(routed, first_name="Olga", last_name="Ivanova", email="olga@example.com")
    Card.objects.create(operator=routed, client=client, number=42, bonus=Decimal("10"))
    Card.objects.create(operator=routed, client=client, number=43, bonus=Decimal("300"))
    campaign = make_campaign(
        routed,
        ["viber", "sms", "email"],
        title="For {{ first_name }}",
        html="<p>Hi {{ first_name }} {{ last_name }}</p>",
        viber_text="Viber for {{ first_name }}, card {{ card }}",
        sms_text="SMS {{ first_name }} from {{ operator }}",
    )
    channels = by_channel(preview_campaign(campaign, client=client))
    assert channels["viber"].text == "Viber for Olga, card 43"
    assert channels["sms"].text == "SMS Olga from Sunrise Market"
    assert channels["email"].title == "For Olga"
    assert channels["email"].html == "<p>Hi Olga Ivanova</p>"
    assert channels["email"].text == "Hello Olga, you have 300 points"  # 300.00 reads as 300


@pytest.mark.django_db
def test_preview_takes_the_operators_first_client_with_a_phone(routed):
    make_client(routed, phone="", email="nophone@example.com", first_name="Nobody")
    first = make_client(routed, phone="79110000001", first_name="Ivan")
    make_client(routed, phone="79110000002", first_name="Second")
    preview = preview_campaign(make_campaign(routed, ["sms"]))
    assert preview.client == first
    assert not preview.is_made_up
    assert preview.channels[0].text == "Hello Ivan, you have  points"


@pytest.mark.django_db
def test_preview_makes_up_a_recipient_when_the_operator_has_no_clients(routed):
    preview = preview_campaign(make_campaign(routed, ["sms"]))
    assert preview.is_made_up
    assert preview.variables["operator"] == "Sunrise Market"
    assert preview.channels[0].text == "Hello Anna, you have 150 points"


@pytest.mark.django_db
def test_given_variables_override_the_recipients_own(routed):
    preview = preview_campaign(make_campaign(routed, ["sms"]), variables={"Bonus": 999})
    assert preview.channels[0].text == "Hello Anna, you have 999 points"


@pytest.mark.django_db
def test_sms_channels_carry_their_parts(routed):
    campaign = make_campaign(routed, ["sms"], sms_text="Привет, {{ first_name }}!")
    sms = preview_campaign(campaign).channels[0]
    assert sms.sms_text == "Привет, Anna!"
    assert sms.sms.encoding == "UCS-2"
    assert sms.sms.segments == 1


@pytest.mark.django_db
def test_viber_shows_the_parts_of_its_sms_fallback(routed):
    campaign = make_campaign(
        routed, ["viber", "vk"], viber_text="Viber text", sms_text="{{ first_name }} " + "x" * 200
    )
    channels = by_channel(preview_campaign(campaign))
    assert channels["viber"].text == "Viber text"
    assert channels["viber"].sms_text.startswith("Anna xxx")
    assert channels["viber"].sms.segments == 2
    assert channels["vk"].sms.segments == 2


@pytest.mark.django_db
def test_viber_without_any_sms_text_has_no_fallback_parts(routed):
    campaign = make_campaign(routed, ["viber"], text="", viber_text="Only Viber")
    viber_item = preview_campaign(campaign).channels[0]
    assert viber_item.sms is None
    assert viber_item.sms_text == ""


@pytest.mark.django_db
def test_viber_problems_are_checked_on_the_rendered_text(routed):
    # The model limits viber_text as written; a placeholder can still grow it past 1000.
    campaign = make_campaign(routed, ["viber"], text="{{ first_name }}" + "x" * 996)
    assert preview_campaign(campaign).channels[0].viber_problems == []
    long_name = preview_campaign(campaign, variables={"first_name": "Annabelle"})
    assert long_name.channels[0].viber_problems == [
        "The Viber text is 1005 characters long; the limit is 1000."
    ]


@pytest.mark.django_db
def test_viber_carries_its_button_and_image(routed):
    campaign = make_campaign(
        routed,
        ["viber"],
        button_caption="Open",
        button_url="https://shop.example",
        image_url="https://shop.example/a.png",
    )
    item = preview_campaign(campaign).channels[0]
    assert (item.button_caption, item.button_url, item.image_url) == (
        "Open",
        "https://shop.example",
        "https://shop.example/a.png",
    )
    assert item.viber_problems == []


@pytest.mark.django_db
def test_routes_list_accounts_in_priority_order_with_the_primarys_price(routed):
    channels = by_channel(preview_campaign(make_campaign(routed, ["viber", "sms", "email"])))
    assert channels["sms"].route == ["Gateway", "Backup"]
    assert (channels["sms"].unit_price, channels["sms"].currency) == (Decimal("2.45"), "RUB")
    assert (channels["email"].unit_price, channels["email"].currency) == (Decimal("0.02"), "EUR")


@pytest.mark.django_db
def test_a_routes_own_price_overrides_the_accounts(routed):
    viber_item = preview_campaign(make_campaign(routed, ["viber"])).channels[0]
    assert viber_item.route == ["Gateway"]
    assert viber_item.unit_price == Decimal("0.85")


@pytest.mark.django_db
def test_a_disabled_account_is_not_part_of_the_route(routed, gateway):
    gateway.enabled = False
    gateway.save()
    sms = preview_campaign(make_campaign(routed, ["sms"])).channels[0]
    assert sms.route == ["Backup"]
    assert (sms.unit_price, sms.currency) == (Decimal("0.02"), "EUR")


@pytest.mark.django_db
def test_a_channel_without_a_route_says_so(routed):
    preview = preview_campaign(make_campaign(routed, ["push", "sms"]))
    push = preview.channels[0]
    assert push.route is None
    assert push.unit_price is None
    assert push.warnings == ["no provider account serves push"]
    assert preview.warnings == ["no provider account serves push"]


@pytest.mark.django_db
def test_preview_takes_a_fixed_number_of_queries(routed, django_assert_num_queries):
    client = make_client(routed)
    campaign = make_campaign(routed, ["viber", "vk", "sms", "email", "push"])
    campaign = Campaign.objects.select_related("operator", "template").get(pk=campaign.pk)
    # the given client's card, and the routes with their accounts
    with django_assert_num_queries(2):
        preview_campaign(campaign, client=client)


# --- Cost -------------------------------------------------------------------


@pytest.mark.django_db
def test_cost_follows_the_cascade_with_the_default_fall_through(routed):
    campaign = make_campaign(routed, ["viber", "sms"], sms_text="x" * 200)
    estimate = estimate_cost(campaign, recipients=1000)
    viber_line, sms_line = estimate.lines
    assert (viber_line.messages, viber_line.parts, viber_line.cost) == (1000, 1, Decimal("850"))
    assert (sms_line.messages, sms_line.parts, sms_line.cost) == (100, 2, Decimal("490"))
    assert estimate.totals == {"RUB": Decimal("1340")}
    assert estimate.fall_through == {"viber": DEFAULT_FALL_THROUGH, "sms": DEFAULT_FALL_THROUGH}
    assert estimate.notes == []


@pytest.mark.django_db
def test_fall_through_shares_can_be_given_per_channel(routed):
    campaign = make_campaign(routed, ["viber", "sms", "email"], sms_text="short")
    estimate = estimate_cost(campaign, recipients=1000, fall_through={"viber": 0.3, "sms": 0.5})
    assert [line.messages for line in estimate.lines] == [1000, 300, 150]
    assert estimate.totals == {"RUB": Decimal("850") + Decimal("735"), "EUR": Decimal("3")}


@pytest.mark.django_db
def test_expected_messages_are_rounded_but_the_reach_is_kept(routed):
    campaign = make_campaign(routed, ["viber", "sms"], sms_text="short")
    estimate = estimate_cost(campaign, recipients=7, fall_through={"viber": 0.25})
    assert estimate.lines[1].reach == Decimal("1.75")
    assert estimate.lines[1].messages == 2


@pytest.mark.django_db
def test_a_channel_without_a_route_costs_nothing_and_passes_everyone_on(routed):
    campaign = make_campaign(routed, ["push", "sms"], sms_text="short")
    estimate = estimate_cost(campaign, recipients=500)
    push, sms = estimate.lines
    assert (push.messages, push.cost) == (0, Decimal(0))
    assert "no provider account serves it" in push.note
    assert sms.messages == 500
    assert estimate.totals == {"RUB": Decimal("1225")}


@pytest.mark.django_db
def test_a_channel_without_a_price_costs_nothing_and_says_so(routed, backup):
    backup.cost_per_part = Decimal(0)
    backup.save()
    campaign = make_campaign(routed, ["email"])
    estimate = estimate_cost(campaign, recipients=100)
    assert estimate.lines[0].cost == Decimal(0)
    assert estimate.notes == ["email: no price per part on Backup: counted as 0"]
    assert estimate.totals == {"EUR": Decimal(0)}


@pytest.mark.django_db
def test_cost_reuses_a_preview_it_is_given(routed, django_assert_num_queries):
    campaign = make_campaign(routed, ["sms"], sms_text="Привет " + "я" * 70)
    preview = preview_campaign(campaign)
    with django_assert_num_queries(0):
        estimate = estimate_cost(campaign, recipients=10, preview=preview)
    assert estimate.lines[0].parts == 2
    assert estimate.totals == {"RUB": Decimal("49")}


@pytest.mark.django_db
def test_shares_outside_zero_to_one_are_refused(routed):
    campaign = make_campaign(routed, ["viber", "sms"])
    with pytest.raises(ValueError, match="between 0 and 1"):
        estimate_cost(campaign, recipients=10, fall_through={"viber": 1.5})
    with pytest.raises(ValueError, match="negative"):
        estimate_cost(campaign, recipients=-1)
