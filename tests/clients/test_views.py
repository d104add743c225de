import csv
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as Browser
from django.urls import reverse
from openpyxl import Workbook

from clients import services
from clients.groups import CONSENT_ADMINS
from clients.models import Card, Client, ConsentChange
from tests.conftest import make_client, make_staff
from tests.forms import form_fields


@pytest.fixture
def anna(sunrise):
    anna = make_client(
        sunrise, first_name="Anna", last_name="Ivanova", email="anna@example.com", allow_sms=True
    )
    Card.objects.create(operator=sunrise, client=anna, number=1000001, bonus=150)
    return anna


@pytest.fixture
def nora(northwind):
    """A consent admin, but in the other operator."""
    return make_staff("nora", CONSENT_ADMINS, northwind)


def search(client, query: str, **params) -> set[int]:
    """The ids of the clients the search page lists."""
    response = client.get(reverse("clients:search"), {"q": query, **params})
    assert response.status_code == 200
    return {int(pk) for pk in re.findall(r'href="/clients/(\d+)/"', response.content.decode())}


def csv_upload(text: str, name: str = "clients.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def post_import(client, upload):
    return client.post(reverse("clients:import"), {"file": upload}, follow=True)


# --- search -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed", ["+7 912 345-67-89", "8 (912) 345-67-89", "79123456789", "912 345", "+7912", "8912"]
)
def test_search_finds_a_client_by_the_phone_however_it_is_typed(client, connie, anna, typed):
    make_client(anna.operator, phone="79990000000", first_name="Zoe")
    client.force_login(connie)
    assert search(client, typed) == {anna.pk}


def test_search_finds_a_client_by_card_number(client, connie, anna):
    make_client(anna.operator, phone="79990000000", first_name="Zoe")
    client.force_login(connie)
    assert search(client, "1000001") == {anna.pk}


@pytest.mark.parametrize("typed", ["anna", "IVANOVA", "Anna Ivan"])
def test_search_finds_clients_by_name(client, connie, anna, typed):
    make_client(anna.operator, phone="79990000000", first_name="Zoe")
    client.force_login(connie)
    assert search(client, typed) == {anna.pk}


def test_search_never_shows_another_operators_clients(client, bob, anna, northwind):
    nick = make_client(northwind, phone="79990000000", first_name="Nick")
    client.force_login(bob)
    for typed in ("79123456789", "+7 912", "1000001", "Anna", ""):
        assert anna.pk not in search(client, typed)
    assert search(client, "") == {nick.pk}


def test_an_empty_search_lists_the_newest_clients_a_page_at_a_time(client, connie, sunrise):
    clients = Client.objects.bulk_create(
        [Client(operator=sunrise, phone=f"7912000{i:04d}") for i in range(30)]
    )
    newest_first = sorted((c.pk for c in clients), reverse=True)
    client.force_login(connie)
    assert search(client, "") == set(newest_first[:25])
    first = client.get(reverse("clients:search")).content.decode()
    assert 'rel="next"' in first and 'rel="prev"' not in first
    assert search(client, "", page=2) == set(newest_first[25:])
    second = client.get(reverse("clients:search"), {"page": 2}).content.decode()
    assert 'rel="prev"' in second and 'rel="next"' not in second


def test_the_search_page_needs_the_view_permission(client, sunrise):
    nobody = make_staff("charlie", None, sunrise)
    assert client.get(reverse("clients:search")).status_code == 302  # to the login page
    client.force_login(nobody)
    assert client.get(reverse("clients:search")).status_code == 403


# --- the client page ----------------------------------------------------------------------


def test_the_client_page_shows_the_history_with_source_and_author(client, connie, anna):
    credential = services.issue_credential(operator=anna.operator, name="POS at shop 12").credential
    services.change_consent(
        client_id=anna.pk, flags={"allow_email": True}, source="api", api_credential=credential
    )
    services.change_consent(
        client_id=anna.pk,
        flags={"allow_sms": False},
        source="page",
        changed_by=connie,
        reason="Asked by phone",
    )
    client.force_login(connie)
    response = client.get(reverse("clients:detail", args=[anna.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "1000001" in page and "150" in page
    history = page[page.index('id="history"') :]
    assert history.index("Asked by phone") < history.index("POS at shop 12")  # newest first
    assert "Client page" in history and "connie" in history
    assert "Partner API" in history and "API: POS at shop 12" in history
    assert "Change consent" in page


def test_a_marketer_sees_the_client_page_without_the_change_button(client, mark, anna):
    client.force_login(mark)
    response = client.get(reverse("clients:detail", args=[anna.pk]))
    assert response.status_code == 200
    assert "Anna Ivanova" in response.content.decode()
    assert reverse("clients:consent", args=[anna.pk]) not in response.content.decode()


def test_another_operators_client_is_a_404(client, bob, nora, anna):
    client.force_login(bob)
    assert client.get(reverse("clients:detail", args=[anna.pk])).status_code == 404
    client.force_login(nora)
    assert client.get(reverse("clients:detail", args=[anna.pk])).status_code == 404
    url = reverse("clients:consent", args=[anna.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"reason": "Mine now"}).status_code == 404
    anna.refresh_from_db()
    assert anna.allow_sms is True
    assert not ConsentChange.objects.exists()


# --- changing consent ---------------------------------------------------------------------


def test_connie_turns_sms_consent_off_with_a_reason(client, connie, anna):
    client.force_login(connie)
    url = reverse("clients:consent", args=[anna.pk])
    data = form_fields(client.get(url).content.decode(), "consent-form")
    assert data["allow_sms"] == "on"
    del data["allow_sms"]
    data["reason"] = "Asked to stop SMS at the till"
    response = client.post(url, data, follow=True)
    assert response.redirect_chain == [(reverse("clients:detail", args=[anna.pk]), 302)]
    assert "SMS consent turned off." in response.content.decode()
    anna.refresh_from_db()
    assert anna.allow_sms is False
    change = ConsentChange.objects.get(client=anna)
    assert (change.flag, change.old_value, change.new_value) == ("allow_sms", True, False)
    assert (change.changed_by, change.reason, change.source) == (
        connie,
        "Asked to stop SMS at the till",
        ConsentChange.Source.PAGE,
    )


@pytest.mark.parametrize("reason", ["", "   ", "ok"])
def test_a_missing_or_too_short_reason_is_a_form_error_and_changes_nothing(
    client, connie, anna, reason
):
    client.force_login(connie)
    response = client.post(reverse("clients:consent", args=[anna.pk]), {"reason": reason})
    assert response.status_code == 200
    assert 'id="reason-errors"' in response.content.decode()
    anna.refresh_from_db()
    assert anna.allow_sms is True
    assert not ConsentChange.objects.exists()


def test_saving_the_same_values_says_nothing_changed(client, connie, anna):
    client.force_login(connie)
    url = reverse("clients:consent", args=[anna.pk])
    data = form_fields(client.get(url).content.decode(), "consent-form")
    data["reason"] = "Checked with the client"
    response = client.post(url, data, follow=True)
    assert "Nothing changed." in response.content.decode()
    assert not ConsentChange.objects.exists()


def test_a_flag_changed_elsewhere_while_the_form_was_open_is_left_alone(client, connie, anna):
    client.force_login(connie)
    url = reverse("clients:consent", args=[anna.pk])
    data = form_fields(client.get(url).content.decode(), "consent-form")
    services.change_consent(client_id=anna.pk, flags={"allow_email": True}, source="api")
    del data["allow_sms"]
    data["reason"] = "Asked to stop SMS"
    client.post(url, data)
    anna.refresh_from_db()
    assert (anna.allow_sms, anna.allow_email) == (False, True)


def test_a_marketer_cannot_open_the_consent_page(client, mark, anna):
    client.force_login(mark)
    url = reverse("clients:consent", args=[anna.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"reason": "Marketing wants it"}).status_code == 403
    assert client.get(reverse("clients:detail", args=[anna.pk])).status_code == 200
    anna.refresh_from_db()
    assert anna.allow_sms is True
    assert not ConsentChange.objects.exists()


# --- CSRF ---------------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused(connie, anna):
    browser = Browser(enforce_csrf_checks=True)
    browser.force_login(connie)
    url = reverse("clients:consent", args=[anna.pk])
    assert browser.post(url, {"reason": "No token"}).status_code == 403
    upload = csv_upload("phone\n79120000001\n")
    assert browser.post(reverse("clients:import"), {"file": upload}).status_code == 403
    anna.refresh_from_db()
    assert anna.allow_sms is True
    assert Client.objects.count() == 1
    # The page's own form carries the token and goes through.
    data = form_fields(browser.get(url).content.decode(), "consent-form")
    data["reason"] = "With the token"
    del data["allow_sms"]
    assert browser.post(url, data).status_code == 302


# --- query counts -------------------------------------------------------------------------


@pytest.fixture(params=[1, 2_000], ids=["1-client", "2000-clients"])
def crowd(request, sunrise, connie):
    """`size` clients with a card each; the last one has a long consent history."""
    size = request.param
    clients = Client.objects.bulk_create(
        [
            Client(operator=sunrise, phone=f"7912{i:07d}", first_name=f"Name{i}", allow_sms=True)
            for i in range(size)
        ]
    )
    Card.objects.bulk_create(
        [Card(operator=sunrise, client=c, number=500_000 + i) for i, c in enumerate(clients)]
    )
    target = clients[-1]
    for step in range(min(size, 40)):
        services.change_consent(
            client_id=target.pk,
            flags={"allow_email": step % 2 == 0},
            source="page",
            changed_by=connie,
            reason=f"step {step}",
        )
    return target


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("clients:search", {}),
        ("clients:search", {"q": "Name"}),
        ("clients:search", {"q": "+7 912"}),
        ("clients:search", {"q": "500000"}),
        ("clients:detail", {}),
        ("clients:consent", {}),
        ("clients:import", {}),
    ],
)
def test_each_page_renders_in_at_most_ten_queries(
    client, connie, crowd, name, params, django_assert_max_num_queries
):
    client.force_login(connie)
    args = [crowd.pk] if name in ("clients:detail", "clients:consent") else []
    with django_assert_max_num_queries(10):
        response = client.get(reverse(name, args=args), params)
    assert response.status_code == 200


# --- import -------------------------------------------------------------------------------


def test_a_valid_csv_creates_and_updates_clients_and_writes_import_history(client, connie, anna):
    client.force_login(connie)
    response = post_import(
        client,
        csv_upload(
            "phone,first_name,last_name,card,bonus,allow_sms,allow_email\n"
            "+7 912 345-67-89,,,,,no,yes\n"
            "79120000002,Boris,Petrov,2000002,10,да,\n"
        ),
    )
    page = response.content.decode()
    assert response.redirect_chain == [(reverse("clients:import"), 302)]
    assert 'id="import-result"' in page
    assert "clients created" in page and "consent changes recorded" in page
    anna.refresh_from_db()
    assert (anna.first_name, anna.allow_sms, anna.allow_email) == ("Anna", False, True)
    boris = Client.objects.get(phone="79120000002")
    assert (boris.last_name, boris.allow_sms, boris.allow_email) == ("Petrov", True, False)
    assert boris.cards.get().number == 2000002
    history = ConsentChange.objects.filter(source=ConsentChange.Source.IMPORT)
    assert history.count() == 3
    assert {row.changed_by for row in history} == {connie}
    assert {row.reason for row in history} == {"Import clients.csv"}
    # The summary is shown once: reloading does not import again or repeat it.
    assert 'id="import-result"' not in client.get(reverse("clients:import")).content.decode()


def test_a_csv_with_one_bad_row_imports_nothing_and_shows_the_error(client, connie, anna):
    client.force_login(connie)
    response = post_import(
        client,
        csv_upload("phone,allow_sms\n79120000002,yes\n79120000003,perhaps\n+79123456789,no\n"),
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was imported: 1 problem" in page
    assert "perhaps" in page and "allow_sms" in page
    assert reverse("clients:import-errors") in page
    assert Client.objects.count() == 1
    anna.refresh_from_db()
    assert anna.allow_sms is True
    assert not ConsentChange.objects.exists()


def test_the_error_report_downloads_as_csv(client, connie, sunrise):
    client.force_login(connie)
    lines = ["phone,email"] + [f"79120000{i:03d},bad-{i}" for i in range(150)]
    page = post_import(client, csv_upload("\n".join(lines) + "\n", "spring.csv"))
    assert "Nothing was imported: 150 problems" in page.content.decode()
    response = client.get(reverse("clients:import-errors"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="spring-errors.csv"'
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["row", "column", "value", "message"]
    assert len(rows) == 151  # the page shows 100, the report all of them
    assert rows[1] == ["2", "email", "bad-0", "Not a valid email address."]


def test_without_a_failed_import_there_is_no_report_to_download(client, connie):
    client.force_login(connie)
    response = client.get(reverse("clients:import-errors"))
    assert response.status_code == 302


def test_an_xlsx_file_imports_through_the_page(client, connie, sunrise):
    workbook = Workbook()
    workbook.active.append(["Phone", "First_Name", "Allow_Email"])
    workbook.active.append([79120000002, "Boris", "yes"])
    out = io.BytesIO()
    workbook.save(out)
    client.force_login(connie)
    post_import(client, SimpleUploadedFile("clients.xlsx", out.getvalue()))
    boris = Client.objects.get(operator=sunrise, phone="79120000002")
    assert (boris.first_name, boris.allow_email) == ("Boris", True)


def test_a_semicolon_csv_with_a_bom_imports_through_the_page(client, connie, sunrise):
    client.force_login(connie)
    post_import(client, csv_upload("\ufeffphone;first_name;allow_push\n89120000002;Борис;да\n"))
    boris = Client.objects.get(operator=sunrise, phone="79120000002")
    assert (boris.first_name, boris.allow_push) == ("Борис", True)


def test_a_file_of_the_wrong_type_is_refused_with_a_clear_error(client, connie):
    client.force_login(connie)
    response = post_import(client, csv_upload("phone\n79120000002\n", "clients.txt"))
    assert "Upload a .csv or .xlsx file." in response.content.decode()
    assert not Client.objects.exists()


def test_the_import_page_shows_a_progress_bar_while_uploading(client, connie):
    client.force_login(connie)
    page = client.get(reverse("clients:import")).content.decode()
    # The upload itself is in static/cascade/client-import.js (no inline scripts under the
    # Content-Security-Policy); tests/browser/test_content_security_policy.py runs it.
    assert "<progress" in page and "cascade/client-import.js" in page
    assert 'enctype="multipart/form-data"' in page and "csrfmiddlewaretoken" in page


def test_a_marketer_cannot_import(client, mark):
    client.force_login(mark)
    assert client.get(reverse("clients:import")).status_code == 403
    response = client.post(reverse("clients:import"), {"file": csv_upload("phone\n79120000002\n")})
    assert response.status_code == 403
    assert client.get(reverse("clients:import-errors")).status_code == 403
    assert not Client.objects.exists()


def test_an_import_lands_in_the_current_operator_only(client, nora, northwind, anna):
    client.force_login(nora)
    post_import(client, csv_upload("phone,allow_sms\n79123456789,no\n"))
    anna.refresh_from_db()
    assert anna.allow_sms is True
    assert Client.objects.get(operator=northwind).phone == "79123456789"
