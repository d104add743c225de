"""Language per user for the pages, Russian by default; English for partners unless asked."""

# Russian texts are the point here.
# ruff: noqa: RUF001

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.middleware import partner_language
from tests.config.test_lcmanager_views import (  # noqa: F401 (fixtures)
    SEND,
    answer,
    api,
    auth,
    fresh_cache_and_no_broker,
    post_json,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def test_the_default_language_is_russian_and_the_environment_can_change_it():
    def language(**env):
        environment = {k: v for k, v in os.environ.items() if k != "LANGUAGE_CODE"}
        environment.update(env, SECRET_KEY="x", DJANGO_SETTINGS_MODULE="config.settings")
        code = "import django; django.setup(); from django.conf import settings; print(settings.LANGUAGE_CODE)"
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
        )
        return result.stdout.strip() or result.stderr.strip().splitlines()[-1]

    assert language() == "ru"
    assert language(LANGUAGE_CODE="en") == "en"
    assert "LANGUAGE_CODE must be one of ru, en" in language(LANGUAGE_CODE="de")


def test_a_user_switches_language_in_the_header_and_it_is_remembered(client, mark, settings):
    settings.LANGUAGE_CODE = "ru"
    client.force_login(mark)
    page = client.get("/campaigns/")
    assert '<html lang="ru">' in page.content.decode()
    assert 'id="language-switch"' in page.content.decode()
    switched = client.post("/i18n/setlang/", {"language": "en", "next": "/campaigns/"})
    assert switched.status_code == 302 and switched["Location"] == "/campaigns/"
    assert switched.cookies["django_language"].value == "en"
    assert '<html lang="en">' in client.get("/campaigns/").content.decode()
    # The admin follows the same choice (Django ships its Russian).
    client.post("/i18n/setlang/", {"language": "ru", "next": "/admin/"})
    client.logout()
    assert "Имя пользователя" in client.get("/admin/login/").content.decode()


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("", "en"),
        ("ru", "ru"),
        ("ru-RU,ru;q=0.9,en;q=0.8", "ru"),
        ("en-US,en;q=0.9,ru;q=0.8", "en"),
        ("de-DE,ru;q=0.5", "ru"),
        ("de-DE", "en"),
        ("*", "en"),
    ],
)
def test_the_partner_language_follows_only_the_accept_language_header(header, language):
    assert partner_language(header) == language


def test_the_partner_api_answers_in_english_unless_asked_for_russian(client, api, settings):  # noqa: F811
    settings.LANGUAGE_CODE = "ru"
    client.cookies["django_language"] = "ru"  # a page's choice must not reach the API
    body = {**auth(api), "Client": api["client"].pk, "CommunicationType": 256, "TextMessage": "x"}
    english = post_json(client, SEND, body)
    russian = post_json(client, SEND, body, HTTP_ACCEPT_LANGUAGE="ru-RU,ru;q=0.9")
    assert (english["Content-Language"], russian["Content-Language"]) == ("en", "ru")
    assert answer(english)["ErrorCode"] == answer(russian)["ErrorCode"] == 1
    assert answer(english)["Message"].startswith("The request is not valid")
    assert answer(russian)["Message"].startswith("Запрос некорректен: ")
    assert "CommunicationType" in answer(russian)["Message"]  # the wire name stays as it is
    assert not any("a" <= ch <= "z" for ch in answer(russian)["Message"].split(": ", 1)[0])


def test_a_refusal_keeps_its_code_and_speaks_russian_when_asked(client, api, settings):  # noqa: F811
    client_row = api["client"]
    client_row.allow_sms = False
    client_row.save(update_fields=["allow_sms"])
    body = {**auth(api), "Client": client_row.pk, "CommunicationType": 1, "TextMessage": "Привет"}
    english = answer(post_json(client, SEND, body))
    russian = answer(post_json(client, SEND, body, HTTP_ACCEPT_LANGUAGE="ru"))
    assert english["ErrorCode"] == russian["ErrorCode"] == 40
    assert english["Message"].startswith("Not sent: the client has not consented")
    assert russian["Message"] == "Не отправлено: клиент не дал согласия на этот канал"


@pytest.mark.parametrize(
    ("n", "word"), [(1, "сообщение"), (2, "сообщения"), (5, "сообщений"), (21, "сообщение")]
)
def test_russian_plurals_follow_the_number(n, word):
    from django.utils import translation

    with translation.override("ru"):
        text = translation.ngettext(
            "%(n)s message per client per channel a day",
            "%(n)s messages per client per channel a day",
            n,
        ) % {"n": n}
    assert text.startswith(f"{n} {word} ")


def test_the_pages_speak_russian_to_a_russian_user(client, mark, settings):
    settings.LANGUAGE_CODE = "ru"
    client.force_login(mark)
    page = client.get("/campaigns/").content.decode()
    assert ">Кампании<" in page and "Выйти" in page
    client.cookies["django_language"] = "en"
    page = client.get("/campaigns/").content.decode()
    assert ">Campaigns<" in page and "Sign out" in page


def test_the_javascript_catalog_follows_the_users_language(client, settings):
    settings.LANGUAGE_CODE = "en"
    client.cookies["django_language"] = "ru"
    catalog = client.get("/jsi18n/")
    assert catalog.status_code == 200 and "javascript" in catalog["Content-Type"]
    escaped = json.dumps("Пока нет.")[1:-1]  # the catalog may escape non-ASCII text

    def has_russian(body: bytes) -> bool:
        return "Пока нет." in body.decode() or escaped in body.decode()

    assert has_russian(catalog.content)
    client.cookies["django_language"] = "en"
    assert not has_russian(client.get("/jsi18n/").content)


def test_the_dashboard_funnel_is_labelled_in_the_users_language(client, mark, world, settings):
    settings.LANGUAGE_CODE = "ru"
    client.force_login(mark)
    page = client.get(f"/campaigns/{world['campaign'].pk}/").content.decode()
    assert "<span>В очереди</span>" in page and "<span>Доставлено</span>" in page
    client.cookies["django_language"] = "en"
    page = client.get(f"/campaigns/{world['campaign'].pk}/").content.decode()
    assert "<span>Queued</span>" in page


def test_the_dashboard_shows_money_counts_statuses_and_reasons_in_russian(
    client, mark, world, settings
):
    from decimal import Decimal

    from campaigns.models import CampaignCost, Delivery

    campaign = world["campaign"]
    CampaignCost.objects.create(
        campaign=campaign, channel="viber", currency="RUB", amount=Decimal("117.30")
    )
    Delivery.objects.filter(message=world["message"]).update(
        status="skipped", error_code="no_consent"
    )
    settings.LANGUAGE_CODE = "ru"
    client.force_login(mark)
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-field="cost_text">117,30\xa0₽<' in page
    assert "<td>Пропущено</td><td>нет согласия</td>" in page
    stats = client.get(f"/campaigns/{campaign.pk}/stats.json").json()
    assert stats["cost_text"] == "117,30\xa0₽"
    assert stats["failures"][0]["reason_label"] == "нет согласия"
    message = client.get(f"/campaigns/{campaign.pk}/messages/{world['message'].pk}/")
    assert "Нет согласия" in message.content.decode()  # not the stored English explanation

    client.cookies["django_language"] = "en"
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-field="cost_text">RUB117.30<' in page
    assert "<td>Skipped</td><td>no consent</td>" in page
