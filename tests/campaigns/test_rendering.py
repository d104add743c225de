"""campaigns.rendering: {{ variable }} placeholders and which text each channel takes."""

from decimal import Decimal

from campaigns.models import MessageTemplate
from campaigns.rendering import content_for, placeholders, render


def test_placeholders_are_filled_case_insensitively_and_missing_ones_are_empty():
    assert render("Hi {{ First_Name }}{{ nope }}!", {"first_name": "Anna"}) == "Hi Anna!"


def test_whole_numbers_read_without_decimals_and_others_without_trailing_zeros():
    values = {"a": Decimal("150.00"), "b": Decimal("12.50"), "c": 3.0, "d": 2.5}
    assert render("{{ a }} {{ b }} {{ c }} {{ d }}", values) == "150 12.5 3 2.5"


def test_a_template_cannot_reach_attributes_or_run_tags():
    assert render("{{ client.phone }}{% now 'Y' %}", {"client": object()}) == (
        "{{ client.phone }}{% now 'Y' %}"
    )


def test_placeholders_lists_each_name_once():
    assert placeholders("{{ a }} {{b}} {{ a }}") == ["a", "b"]


def test_each_channel_takes_its_own_text_and_falls_back_to_the_default():
    template = MessageTemplate(
        text="default", sms_text="sms", viber_text="viber", button_caption="Go", html="<p>x</p>"
    )
    assert content_for("sms", template=template).text == "sms"
    assert content_for("viber", template=template).text == "viber"
    assert content_for("viber", template=template).button_caption == "Go"
    assert content_for("email", template=template).html == "<p>x</p>"
    assert content_for("push", template=template).text == "default"
    assert content_for("sms", template=MessageTemplate(text="only")).text == "only"


def test_a_one_off_message_uses_its_own_title_and_text():
    content = content_for("sms", title="T", text="Body")
    assert (content.title, content.text, content.sms_text) == ("T", "Body", "Body")
