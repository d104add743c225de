import threading

import pytest
from django.db import connection

from clients import services
from clients.models import ApiCredential, Client, ConsentChange
from tests.conftest import make_client


def test_a_consent_change_leaves_a_history_row_with_source_and_author(sunrise, connie):
    client = make_client(sunrise, allow_sms=True)
    changes = services.change_consent(
        client_id=client.pk,
        flags={"allow_sms": False, "allow_email": True},
        source="page",
        changed_by=connie,
        reason="Asked by phone",
    )
    client.refresh_from_db()
    assert (client.allow_sms, client.allow_email) == (False, True)
    rows = {row.flag: row for row in ConsentChange.objects.filter(client=client)}
    assert set(rows) == {"allow_sms", "allow_email"}
    assert (rows["allow_sms"].old_value, rows["allow_sms"].new_value) == (True, False)
    assert all(row.source == "page" and row.changed_by == connie for row in rows.values())
    assert rows["allow_email"].reason == "Asked by phone"
    assert len(changes) == 2


def test_an_api_change_records_the_credential(sunrise):
    client = make_client(sunrise)
    credential = services.issue_credential(operator=sunrise, name="POS").credential
    services.change_consent(
        client_id=client.pk, flags={"allow_push": True}, source="api", api_credential=credential
    )
    row = ConsentChange.objects.get(client=client)
    assert (row.source, row.api_credential, row.changed_by) == ("api", credential, None)


def test_absent_flags_stay_unchanged_and_no_op_writes_nothing(sunrise):
    client = make_client(sunrise, allow_sms=True, allow_email=False)
    changes = services.change_consent(
        client_id=client.pk, flags={"allow_sms": True, "allow_email": None}, source="api"
    )
    assert changes == []
    assert not ConsentChange.objects.exists()
    client.refresh_from_db()
    assert (client.allow_sms, client.allow_email) == (True, False)


def test_unknown_flags_and_sources_are_refused(sunrise):
    client = make_client(sunrise)
    with pytest.raises(ValueError, match="allow_fax"):
        services.change_consent(client_id=client.pk, flags={"allow_fax": True}, source="api")
    with pytest.raises(ValueError, match="pigeon"):
        services.change_consent(client_id=client.pk, flags={"allow_sms": True}, source="pigeon")
    assert not ConsentChange.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_changes_to_one_client_both_land_in_the_history(sunrise):
    client = make_client(sunrise)
    barrier = threading.Barrier(2)
    errors = []

    def change(flags, source):
        try:
            barrier.wait()
            services.change_consent(client_id=client.pk, flags=flags, source=source)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=change, args=({"allow_sms": True}, "api")),
        threading.Thread(target=change, args=({"allow_email": True}, "admin")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    client.refresh_from_db()
    assert (client.allow_sms, client.allow_email) == (True, True)
    assert set(ConsentChange.objects.values_list("flag", "source")) == {
        ("allow_sms", "api"),
        ("allow_email", "admin"),
    }


def test_issued_secrets_are_stored_only_as_digests(sunrise):
    issued = services.issue_credential(operator=sunrise, name="POS software")
    assert issued.secret.isdigit() and len(issued.secret) == 18
    stored = ApiCredential.objects.get(pk=issued.credential.pk)
    assert issued.secret not in (stored.secret_digest, stored.name)
    assert stored.secret_digest == services.digest_secret(issued.secret)
    assert stored.secret_hint == issued.secret[-4:]

    site = services.issue_credential(operator=sunrise, name="Widget", kind="site_code")
    assert len(site.secret) >= 30 and site.credential.kind == "site_code"


def test_revoking_a_credential_stamps_it_once(sunrise):
    credential = services.issue_credential(operator=sunrise, name="POS").credential
    services.revoke_credential(credential_id=credential.pk)
    credential.refresh_from_db()
    first = credential.revoked_at
    assert first is not None and not credential.is_active
    services.revoke_credential(credential_id=credential.pk)
    credential.refresh_from_db()
    assert credential.revoked_at == first


def test_client_count_unchanged_by_failed_consent_change(sunrise):
    with pytest.raises(Client.DoesNotExist):
        services.change_consent(client_id=999999, flags={"allow_sms": True}, source="api")
    assert not ConsentChange.objects.exists()
