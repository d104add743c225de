"""Two doors, one client: the partner API and the admin change the same client's consent at once.

Consent is what the law asks us to prove, so every change of either door must be
in the history, the flags must end as the last writes left them, and each
flag's history must read as one chain (each row's old value is the previous
row's new value), with nothing written around it.
"""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection
from django.test import Client as Browser
from django.urls import reverse

from clients.admin import ClientAdminForm
from clients.models import Client, ConsentChange
from clients.services import change_consent, issue_credential
from tests.forms import form_fields

ROUNDS = 20
UPDATE = "/api/client/ClientUpdateCommunication"


@pytest.fixture
def doors(sunrise, alice):
    """Anna without SMS or email consent, a partner token, and alice signed in to the admin."""
    anna = Client.objects.create(operator=sunrise, phone="79161112233", first_name="Anna")
    token = int(issue_credential(operator=sunrise, name="Till").secret)
    admin_browser = Browser()
    admin_browser.force_login(alice)
    return {
        "anna": anna,
        "api": {"Operator": sunrise.pk, "Token": token, "Client": anna.pk},
        "admin": admin_browser,
        "url": reverse("admin:clients_client_change", args=[anna.pk]),
    }


def admin_form(doors) -> dict:
    page = doors["admin"].get(doors["url"])
    assert page.status_code == 200
    return form_fields(page.content.decode(), form_id="client_form")


def admin_save(doors, data: dict, *, allow_email: bool, reason: str):
    data = dict(data, consent_reason=reason)
    if allow_email:
        data["allow_email"] = "on"
    else:
        data.pop("allow_email", None)
    response = doors["admin"].post(doors["url"], data)
    assert response.status_code == 302, response.content.decode()[:2000]


def api_save(doors, *, allow_sms: bool):
    response = Browser().post(
        UPDATE, json.dumps({**doors["api"], "AllowSms": allow_sms}), content_type="application/json"
    )
    assert (response.status_code, json.loads(response.content)["ErrorCode"]) == (200, 0)


def assert_history_is_one_chain(anna: Client, initial: dict[str, bool]):
    anna.refresh_from_db()
    for flag, start in initial.items():
        rows = list(
            ConsentChange.objects.filter(client=anna, flag=flag)
            .order_by("id")
            .values_list("old_value", "new_value")
        )
        previous = start
        for number, (old, new) in enumerate(rows):
            assert old == previous, f"{flag} row {number}: {old}->{new} after {previous}"
            previous = new
        assert getattr(anna, flag) == previous, (
            f"{flag} is {getattr(anna, flag)}, history says {previous}"
        )


@pytest.mark.django_db(transaction=True)
def test_api_and_admin_changing_one_clients_consent_at_once_both_land_in_the_history(doors):
    anna = doors["anna"]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2, timeout=30)
    values = [round_number % 2 == 0 for round_number in range(ROUNDS)]  # True, False, True, …

    def run(door):
        try:
            for round_number, value in enumerate(values):
                if door == "admin":
                    data = admin_form(doors)  # opened before the API's change of this round
                    barrier.wait()
                    admin_save(doors, data, allow_email=value, reason=f"round {round_number}")
                else:
                    barrier.wait()
                    api_save(doors, allow_sms=value)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(door,)) for door in ("admin", "api")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    anna.refresh_from_db()
    # Each door changed only its own flag, every round, and each change is one history row.
    assert (anna.allow_sms, anna.allow_email) == (values[-1], values[-1])
    by_door = {
        source: list(
            ConsentChange.objects.filter(client=anna, source=source).values_list("flag", flat=True)
        )
        for source in ("api", "admin")
    }
    assert by_door == {"api": ["allow_sms"] * ROUNDS, "admin": ["allow_email"] * ROUNDS}
    assert ConsentChange.objects.filter(client=anna).count() == 2 * ROUNDS
    assert_history_is_one_chain(anna, {"allow_sms": False, "allow_email": False})


def test_an_admin_form_opened_before_an_api_change_does_not_undo_it(doors):
    """The admin form carries every flag; one the admin did not touch must stay as the API left it."""
    anna = doors["anna"]
    data = admin_form(doors)  # shows SMS off
    api_save(doors, allow_sms=True)  # the client agrees to SMS through the partner's till
    admin_save(doors, data, allow_email=True, reason="Asked for email by phone")
    anna.refresh_from_db()
    assert (anna.allow_sms, anna.allow_email) == (True, True)
    assert list(
        ConsentChange.objects.filter(client=anna).order_by("id").values_list("source", "flag")
    ) == [("api", "allow_sms"), ("admin", "allow_email")]
    assert_history_is_one_chain(anna, {"allow_sms": False, "allow_email": False})


def test_an_api_change_while_the_admin_saves_is_not_overwritten_without_history(doors, monkeypatch):
    """The API's change lands between the admin's read of the client and its save of the row."""
    anna = doors["anna"]
    data = admin_form(doors)
    clean_phone = ClientAdminForm.clean_phone

    def api_changes_meanwhile(form):
        change_consent(client_id=anna.pk, flags={"allow_sms": True}, source="api")
        return clean_phone(form)

    monkeypatch.setattr(ClientAdminForm, "clean_phone", api_changes_meanwhile)
    admin_save(doors, data, allow_email=True, reason="Asked for email by phone")
    anna.refresh_from_db()
    assert (anna.allow_sms, anna.allow_email) == (True, True)
    assert_history_is_one_chain(anna, {"allow_sms": False, "allow_email": False})
