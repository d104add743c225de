"""Every admin page, for every persona, and the consent round trip through the admin."""

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.models import Campaign, Delivery, Message
from clients.models import Client, ConsentChange
from providers.status import DeliveryStatus
from tests.forms import form_fields

OUR_APPS = ("clients", "campaigns", "providers")
MODELS = sorted(
    (model for model in admin.site._registry if model._meta.app_label in OUR_APPS),
    key=lambda model: model._meta.label,
)
OTHER_MODELS = [model for model in admin.site._registry if model._meta.app_label not in OUR_APPS]


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model._meta.label)
def test_every_admin_page_opens_for_a_superuser(client, alice, world, model):
    client.force_login(alice)
    model_admin = admin.site._registry[model]
    assert client.get(admin_url(model, "changelist")).status_code == 200
    assert client.get(admin_url(model, "changelist"), {"q": "79"}).status_code == 200
    obj = world.get(model._meta.model_name) or model.objects.first()
    assert obj is not None, f"no {model._meta.label} in the fixture"
    assert client.get(admin_url(model, "change", obj.pk)).status_code == 200
    request = type("Request", (), {"user": alice})()
    expected_add = 200 if model_admin.has_add_permission(request) else 403
    assert client.get(admin_url(model, "add")).status_code == expected_add


@pytest.mark.parametrize("model", OTHER_MODELS, ids=lambda model: model._meta.label)
def test_library_admin_pages_open_for_a_superuser(client, alice, model):
    client.force_login(alice)
    assert client.get(admin_url(model, "changelist")).status_code == 200


def test_the_admin_index_lists_every_app(client, alice):
    client.force_login(alice)
    page = client.get("/admin/").content.decode()
    for label in ("Clients and consent", "Campaigns and messages", "Providers"):
        assert label in page


@pytest.mark.parametrize(
    ("persona", "model_label", "view", "expected"),
    [
        ("mark", "campaigns.campaign", "changelist", 200),
        ("mark", "campaigns.campaign", "add", 200),
        ("mark", "campaigns.messagetemplate", "add", 200),
        ("mark", "clients.client", "changelist", 200),
        ("mark", "clients.client", "add", 403),
        ("mark", "clients.consentchange", "changelist", 403),
        ("mark", "clients.apicredential", "changelist", 403),
        ("mark", "providers.provideraccount", "add", 403),
        ("connie", "clients.client", "changelist", 200),
        ("connie", "clients.client", "add", 200),
        ("connie", "clients.consentchange", "changelist", 200),
        ("connie", "campaigns.campaign", "changelist", 403),
        ("connie", "campaigns.messagetemplate", "add", 403),
        ("connie", "providers.provideraccount", "changelist", 403),
        ("connie", "campaigns.delivery", "changelist", 403),
    ],
)
def test_each_group_gets_exactly_its_pages(
    client, request, world, persona, model_label, view, expected
):
    from django.apps import apps

    client.force_login(request.getfixturevalue(persona))
    model = apps.get_model(model_label)
    assert client.get(admin_url(model, view)).status_code == expected


def test_a_marketer_sees_clients_read_only(client, mark, world):
    client.force_login(mark)
    page = client.get(admin_url(Client, "change", world["client"].pk))
    assert page.status_code == 200
    assert b'name="allow_sms"' not in page.content  # no editable consent for marketers
    response = client.post(admin_url(Client, "change", world["client"].pk), {"allow_sms": "on"})
    assert response.status_code == 403


def test_a_user_cannot_open_another_operators_rows(client, bob, world):
    client.force_login(bob)
    response = client.get(admin_url(Campaign, "change", world["campaign"].pk), follow=True)
    assert b"Spring" not in response.content
    assert b"doesn" in response.content  # "... with ID ... doesn't exist"
    changelist = client.get(admin_url(Campaign, "changelist"))
    assert b"Spring" not in changelist.content


def test_consent_edited_in_the_admin_lands_in_the_history(client, connie, world):
    client.force_login(connie)
    anna = world["client"]
    url = admin_url(Client, "change", anna.pk)
    page = client.get(url)
    data = form_fields(page.content.decode(), form_id="client_form")
    assert "allow_sms" not in data  # Anna starts without SMS consent
    data["allow_sms"] = "on"
    data["allow_email"] = "on"
    data["consent_reason"] = "Signed the paper form"
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    anna.refresh_from_db()
    assert anna.allow_sms and anna.allow_email
    rows = ConsentChange.objects.filter(client=anna, source="admin").order_by("flag")
    assert [(row.flag, row.old_value, row.new_value) for row in rows] == [
        ("allow_email", False, True),
        ("allow_sms", False, True),
    ]
    assert {row.changed_by for row in rows} == {connie}
    assert {row.reason for row in rows} == {"Signed the paper form"}
    # The history is visible on the client's page.
    page = client.get(url).content.decode()
    assert "Consent history" in page and "Signed the paper form" in page


def test_saving_a_client_without_consent_changes_writes_no_history(client, connie, world):
    client.force_login(connie)
    url = admin_url(Client, "change", world["client"].pk)
    data = form_fields(client.get(url).content.decode(), form_id="client_form")
    data["last_name"] = "Smirnova"
    before = ConsentChange.objects.count()
    assert client.post(url, data).status_code == 302
    assert ConsentChange.objects.count() == before


def test_a_client_added_in_the_admin_gets_a_normalized_phone_and_initial_history(
    client, connie, sunrise
):
    client.force_login(connie)
    url = admin_url(Client, "add")
    data = form_fields(client.get(url).content.decode(), form_id="client_form")
    data.update({"operator": str(sunrise.pk), "phone": "+7 (912) 000-11-22", "allow_sms": "on"})
    response = client.post(url, data)
    assert response.status_code == 302, response.context["errors"]
    created = Client.objects.get(operator=sunrise)
    assert created.phone == "79120001122"
    assert list(
        ConsentChange.objects.filter(client=created).values_list("flag", "old_value", "new_value")
    ) == [("allow_sms", None, True)]


def test_a_malformed_phone_in_the_admin_is_a_form_error(client, connie, sunrise):
    client.force_login(connie)
    url = admin_url(Client, "add")
    data = form_fields(client.get(url).content.decode(), form_id="client_form")
    data.update({"operator": str(sunrise.pk), "phone": "12345"})
    response = client.post(url, data)
    assert response.status_code == 200
    assert b"not a valid phone number" in response.content
    assert not Client.objects.exists()


def test_provider_credentials_are_never_shown_in_full(client, alice, world):
    client.force_login(alice)
    account = world["provideraccount"]
    page = client.get(admin_url(type(account), "change", account.pk)).content.decode()
    assert "secret-password" not in page
    assert "rd" in page  # the masked hint of the password's last characters


def test_a_new_api_credential_is_shown_once(client, alice, sunrise):
    from clients.models import ApiCredential

    client.force_login(alice)
    url = admin_url(ApiCredential, "add")
    data = form_fields(client.get(url).content.decode(), form_id="apicredential_form")
    data.update({"operator": str(sunrise.pk), "name": "Till software", "kind": "token"})
    response = client.post(url, data, follow=True)
    credential = ApiCredential.objects.get(name="Till software")
    page = response.content.decode()
    assert "copy it now" in page
    assert credential.secret_hint in page
    again = client.get(admin_url(ApiCredential, "change", credential.pk)).content.decode()
    assert "copy it now" not in again


def bulk_clients(operator, count, start=0):
    Client.objects.bulk_create(
        [Client(operator=operator, phone=f"7916{start + index:07d}") for index in range(count)],
        batch_size=5000,
    )


def changelist_queries(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def test_client_changelist_query_count_is_constant_up_to_100k_clients(
    client, alice, connie, sunrise
):
    bulk_clients(sunrise, 10)
    url = admin_url(Client, "changelist")
    client.force_login(alice)
    few_superuser = changelist_queries(client, url)
    client.force_login(connie)
    few_staff = changelist_queries(client, url)
    bulk_clients(sunrise, 100_000, start=10)
    client.force_login(alice)
    assert changelist_queries(client, url) == few_superuser
    assert changelist_queries(client, url + "?allow_sms__exact=0&q=7916") == few_superuser
    client.force_login(connie)
    assert changelist_queries(client, url) == few_staff


def test_delivery_changelist_query_count_is_constant(client, alice, world):
    sunrise, campaign, account = world["operator"], world["campaign"], world["provideraccount"]

    def add_deliveries(count, start):
        messages = Message.objects.bulk_create(
            [
                Message(operator=sunrise, campaign=campaign, recipient_key=f"phone:{start + index}")
                for index in range(count)
            ]
        )
        Delivery.objects.bulk_create(
            [
                Delivery(
                    operator=sunrise,
                    message=message,
                    campaign=campaign,
                    channel="sms",
                    account=account,
                    idempotency_key=f"q{message.pk}",
                    status=DeliveryStatus.QUEUED,
                )
                for message in messages
            ]
        )

    client.force_login(alice)
    url = admin_url(Delivery, "changelist")
    add_deliveries(5, 0)
    few = changelist_queries(client, url)
    add_deliveries(2000, 100)
    assert changelist_queries(client, url) == few
    assert changelist_queries(client, url + "?status__exact=queued") == few
