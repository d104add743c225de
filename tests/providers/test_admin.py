"""Callback secrets in the admin and on the command line: generated, rotated, retired, hinted."""

from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import CommandError, call_command
from django.urls import reverse

from providers.models import ProviderAccount
from providers.services import secret_hint
from tests.forms import form_fields

CURRENT = "cb-current-0123456789abcdef"
OLD = "cb-old-fedcba9876543210"
CHANGELIST = reverse("admin:providers_provideraccount_changelist")


@pytest.fixture
def account(sunrise):
    return ProviderAccount.objects.create(
        operator=sunrise,
        name="Mail",
        backend="smtp",
        channels=["email"],
        callback_secrets=[CURRENT, OLD],
    )


def change_url(account):
    return reverse("admin:providers_provideraccount_change", args=[account.pk])


def webhook(account, secret):
    return f"/providers/webhooks/{account.backend}/{account.pk}/{secret}/"


def run_action(client, action, account):
    return client.post(
        CHANGELIST, {"action": action, "_selected_action": [account.pk]}, follow=True
    )


def test_a_secret_hint_shows_at_most_a_quarter_of_the_secret():
    assert secret_hint("cb-current-0123456789abcdef") == "cb-c…"
    assert secret_hint("s3cret") == "s…"
    assert secret_hint("abc") == "…"


def test_the_change_page_shows_each_secret_only_by_its_first_characters(client, alice, account):
    client.force_login(alice)
    page = client.get(change_url(account)).content.decode()
    assert "cb-c… (current)" in page
    assert "cb-o… (old, still accepted)" in page
    assert f"/providers/webhooks/smtp/{account.pk}/cb-c…/" in page
    assert CURRENT[:8] not in page and OLD[:8] not in page


def test_the_action_puts_a_new_secret_first_and_the_old_ones_stay_valid(client, alice, account):
    client.force_login(alice)
    response = run_action(client, "add_callback_secret_to_selected", account)
    account.refresh_from_db()
    new, *old = account.callback_secrets
    assert old == [CURRENT, OLD]
    assert len(new) == 32  # secrets.token_urlsafe(24)
    assert account.callback_url().endswith(f"/{new}/")
    # Shown once, in full, right after the rotation…
    assert account.callback_url() in response.content.decode()
    # …and afterwards only by its hint.
    page = client.get(change_url(account)).content.decode()
    assert new not in page and f"{secret_hint(new)} (current)" in page
    for secret in (new, CURRENT, OLD):
        assert client.post(webhook(account, secret)).status_code == 200
    entry = LogEntry.objects.get(object_id=str(account.pk))
    assert entry.get_change_message() == f"Added a new callback secret {secret_hint(new)}"


def test_retiring_keeps_only_the_current_secret_and_the_old_ones_get_403(client, alice, account):
    client.force_login(alice)
    run_action(client, "add_callback_secret_to_selected", account)
    account.refresh_from_db()
    new = account.callback_secrets[0]
    run_action(client, "retire_old_callback_secrets_of_selected", account)
    account.refresh_from_db()
    assert account.callback_secrets == [new]
    assert client.post(webhook(account, new)).status_code == 200
    for secret in (CURRENT, OLD):
        assert client.post(webhook(account, secret)).status_code == 403


def test_the_change_form_boxes_add_a_secret_and_retire_the_old_ones(client, alice, account):
    client.force_login(alice)
    url = change_url(account)
    data = form_fields(client.get(url).content.decode(), form_id="provideraccount_form")
    assert "callback_secrets" not in data  # not typed in, not echoed
    response = client.post(url, {**data, "add_callback_secret": "on"}, follow=True)
    account.refresh_from_db()
    new = account.callback_secrets[0]
    assert account.callback_secrets[1:] == [CURRENT, OLD]
    assert account.callback_url() in response.content.decode()

    data = form_fields(client.get(url).content.decode(), form_id="provideraccount_form")
    assert client.post(url, {**data, "retire_old_callback_secrets": "on"}).status_code == 302
    account.refresh_from_db()
    assert account.callback_secrets == [new]
    # Saving without ticking anything changes no secret.
    data = form_fields(client.get(url).content.decode(), form_id="provideraccount_form")
    assert client.post(url, data).status_code == 302
    account.refresh_from_db()
    assert account.callback_secrets == [new]


def test_both_boxes_together_leave_only_a_new_secret(client, alice, account):
    """After a leak: the old secrets stop working at once."""
    client.force_login(alice)
    url = change_url(account)
    data = form_fields(client.get(url).content.decode(), form_id="provideraccount_form")
    data.update(add_callback_secret="on", retire_old_callback_secrets="on")
    assert client.post(url, data).status_code == 302
    account.refresh_from_db()
    [new] = account.callback_secrets
    assert new not in (CURRENT, OLD)
    assert client.post(webhook(account, CURRENT)).status_code == 403


def test_an_account_saved_in_the_admin_without_a_secret_gets_one(client, alice, sunrise):
    bare = ProviderAccount.objects.create(
        operator=sunrise, name="Bare", backend="smtp", channels=["email"]
    )
    client.force_login(alice)
    url = change_url(bare)
    data = form_fields(client.get(url).content.decode(), form_id="provideraccount_form")
    response = client.post(url, data, follow=True)
    bare.refresh_from_db()
    [secret] = bare.callback_secrets
    assert len(secret) == 32
    assert bare.callback_url() in response.content.decode()


def test_a_marketer_who_may_only_view_accounts_cannot_rotate(client, mark, account):
    client.force_login(mark)
    page = client.get(change_url(account)).content.decode()
    assert "cb-c… (current)" in page
    assert "Add a new callback secret" not in page and "Retire old" not in page
    for action in ("add_callback_secret_to_selected", "retire_old_callback_secrets_of_selected"):
        run_action(client, action, account)
    account.refresh_from_db()
    assert account.callback_secrets == [CURRENT, OLD]


def test_the_command_prints_the_new_callback_url_and_keeps_the_old_secrets(client, account):
    out = StringIO()
    call_command("rotate_callback_secret", account=account.pk, stdout=out)
    account.refresh_from_db()
    new, *old = account.callback_secrets
    assert old == [CURRENT, OLD]
    assert out.getvalue().strip() == account.callback_url()
    assert out.getvalue().strip().endswith(f"/{new}/")
    for secret in (new, CURRENT, OLD):
        assert client.post(webhook(account, secret)).status_code == 200


def test_the_command_with_retire_old_leaves_only_the_new_secret(client, account):
    out = StringIO()
    call_command("rotate_callback_secret", account=account.pk, retire_old=True, stdout=out)
    account.refresh_from_db()
    [new] = account.callback_secrets
    assert out.getvalue().strip() == account.callback_url()
    assert client.post(webhook(account, new)).status_code == 200
    for secret in (CURRENT, OLD):
        assert client.post(webhook(account, secret)).status_code == 403


def test_the_command_names_an_unknown_account(db):
    with pytest.raises(CommandError, match="No provider account with id 999999"):
        call_command("rotate_callback_secret", account=999999)


def test_the_callback_url_says_when_the_gateway_sends_no_callbacks(client, alice, sunrise):
    client.force_login(alice)
    polled, called = (
        ProviderAccount.objects.create(
            operator=sunrise, name=backend, backend=backend, callback_secrets=[CURRENT]
        )
        for backend in ("cascade_gateway", "pulse")
    )
    assert "sends no callbacks" in client.get(change_url(polled)).content.decode()
    assert "sends no callbacks" not in client.get(change_url(called)).content.decode()
