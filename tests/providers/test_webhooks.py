"""The webhook door: secrets, rotation, unknown ids, sizes."""

import pytest

from campaigns.models import DeliveryEvent
from providers.models import ProviderAccount
from providers.webhooks import secret_matches


@pytest.fixture
def mail_account(sunrise):
    return ProviderAccount.objects.create(
        operator=sunrise,
        name="Mail",
        backend="smtp",
        channels=["email"],
        callback_secrets=["new-secret-0123456789", "old-secret-0123456789"],
    )


def url(account, secret, backend=None):
    return f"/providers/webhooks/{backend or account.backend}/{account.pk}/{secret}/"


def test_secret_matching_accepts_any_listed_secret_and_nothing_else():
    assert secret_matches(["a1", "b2"], "b2")
    assert not secret_matches(["a1", "b2"], "b3")
    assert not secret_matches([], "")
    assert not secret_matches(["", "x"], "")


def test_the_callback_url_is_signed_with_the_current_secret(mail_account, settings):
    settings.CASCADE_PUBLIC_URL = "https://cascade.example.com/"
    assert mail_account.callback_url() == (
        f"https://cascade.example.com/providers/webhooks/smtp/{mail_account.pk}/new-secret-0123456789/"
    )


def test_both_current_and_previous_secrets_are_accepted_during_rotation(client, mail_account):
    assert client.post(url(mail_account, "new-secret-0123456789")).status_code == 200
    assert client.get(url(mail_account, "old-secret-0123456789")).status_code == 200


def test_a_wrong_secret_or_unknown_account_is_refused_alike(client, mail_account):
    wrong = client.post(url(mail_account, "guess"))
    missing = client.post("/providers/webhooks/smtp/999999/new-secret-0123456789/")
    assert (wrong.status_code, missing.status_code) == (403, 403)
    assert wrong.content == missing.content
    assert not DeliveryEvent.objects.exists()


def test_a_secret_of_another_backend_is_refused(client, mail_account):
    assert client.post(url(mail_account, "new-secret-0123456789", backend="bsg")).status_code == 403
    assert client.post(url(mail_account, "new-secret-0123456789", backend="fax")).status_code == 404


def test_oversized_callbacks_and_other_methods_are_refused(client, mail_account):
    too_big = client.post(
        url(mail_account, "new-secret-0123456789"),
        data=b"x" * (300 * 1024),
        content_type="application/json",
    )
    assert too_big.status_code == 413
    assert client.delete(url(mail_account, "new-secret-0123456789")).status_code == 405


def test_the_account_is_read_once_a_second_and_again_at_once_after_a_save(
    client, mail_account, django_assert_num_queries, monkeypatch
):
    from providers import webhooks

    assert client.post(url(mail_account, "new-secret-0123456789")).status_code == 200
    with django_assert_num_queries(0):  # an empty SMTP callback stores nothing
        assert client.post(url(mail_account, "new-secret-0123456789")).status_code == 200

    # Changed behind the model's back (no signal): this process notices within the second.
    ProviderAccount.objects.filter(pk=mail_account.pk).update(
        callback_secrets=["new-secret-0123456789"]
    )
    assert client.post(url(mail_account, "old-secret-0123456789")).status_code == 200
    later = webhooks.time.monotonic() + webhooks.ACCOUNT_CACHE_SECONDS + 0.1
    monkeypatch.setattr(webhooks.time, "monotonic", lambda: later)
    assert client.post(url(mail_account, "old-secret-0123456789")).status_code == 403

    # Saved through the model (the admin, rotate_callback_secret): refused at once.
    mail_account.callback_secrets = ["newest-secret-0123456789"]
    mail_account.save()
    assert client.post(url(mail_account, "new-secret-0123456789")).status_code == 403
    assert client.post(url(mail_account, "newest-secret-0123456789")).status_code == 200


def test_unknown_accounts_are_not_remembered(client, mail_account):
    from providers import webhooks

    for guess in range(5):
        client.post(f"/providers/webhooks/smtp/{mail_account.pk + 1000 + guess}/x/")
    assert webhooks.cached_account_ids() <= {mail_account.pk}
