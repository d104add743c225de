"""Secrets stay secret: provider credentials, webhook secrets and partner tokens.

Where one could surface: the admin (change form, lists, history), the pages (a
delivery's error, an event's raw payload), the partner API's answers, and the
logs (a failing gateway request, a refused webhook, a failed authentication).
The secrets below are long random strings; any eight characters of one found in
those places is a leak (the admin's mask shows the last two, the API credential's
hint the last four).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns import dispatch
from campaigns.models import Campaign, Delivery, DeliveryEvent, Message
from clients.models import ApiCredential, Client
from clients.services import issue_credential, revoke_credential
from providers.models import ChannelRoute, ProviderAccount
from providers.status import DeliveryStatus
from tests.forms import form_fields
from tests.security.conftest import tenant_models
from tests.security.urlwalk import page_urls

GATEWAY_PASSWORD = "pw-9f8e7d6c5b4a3210"
PULSE_TOKEN = "tk-5e4d3c2b1a09f8e7"
GATEWAY_CALLBACK = "cb-0a1b2c3d4e5f6071"
GATEWAY_CALLBACK_OLD = "cb-6a7b8c9d0e1f2a3b"
PULSE_CALLBACK = "cb-1122aabbccddeeff"
PROVIDER_SECRETS = (GATEWAY_PASSWORD, PULSE_TOKEN)
CALLBACK_SECRETS = (GATEWAY_CALLBACK, GATEWAY_CALLBACK_OLD, PULSE_CALLBACK)


def exposed(text: str | bytes, secrets) -> list[str]:
    """The secrets of which the text holds the whole or any eight characters in a row."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return [
        secret
        for secret in secrets
        if any(secret[start : start + 8] in text for start in range(len(secret) - 7))
    ]


def logged_text(caplog) -> str:
    """Everything the log records say: message, arguments, exception and stack."""
    formatter = logging.Formatter()
    parts = []
    for record in caplog.records:
        parts += [record.getMessage(), repr(record.args), record.stack_info or ""]
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


@pytest.fixture
def caplog_everything(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("django", "django.request", "campaigns", "providers", "config"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def accounts(world):
    """sunrise's gateway (world's account) and a 1-pulse account, each with a secret and callbacks.

    Both talk to a closed port, and both put their credentials in the query string
    (the gateway's GET flavour, 1-pulse's GET method), where a careless error message
    would repeat them.
    """
    gateway = world["provideraccount"]
    gateway.credentials = {"login": "demo", "password": GATEWAY_PASSWORD}
    gateway.options = {"flavour": "get"}
    gateway.callback_secrets = [GATEWAY_CALLBACK, GATEWAY_CALLBACK_OLD]
    gateway.sender_names = {"viber": "Shop", "sms": "Shop"}
    gateway.save()
    pulse = ProviderAccount.objects.create(
        operator=world["operator"],
        name="Pulse",
        backend="pulse",
        base_url="http://127.0.0.1:9/api/v1",
        credentials={"token": PULSE_TOKEN},
        options={"method": "GET"},
        channels=["sms"],
        sender_names={"sms": "Shop"},
        callback_secrets=[PULSE_CALLBACK],
    )
    ChannelRoute.objects.create(
        operator=world["operator"], channel="sms", account=pulse, priority=2
    )
    return {"gateway": gateway, "pulse": pulse}


def queue_deliveries(world, accounts) -> dict[str, Delivery]:
    """world's delivery on the gateway, and a second message's on 1-pulse, due now."""
    now = timezone.now()
    Campaign.objects.filter(pk=world["campaign"].pk).update(state=Campaign.State.RUNNING)
    gateway_delivery = world["delivery"]
    # Dispatch checks route and consent again at send time: both hold, so requests go out.
    ChannelRoute.objects.get_or_create(
        operator=world["operator"],
        channel=gateway_delivery.channel,
        account=gateway_delivery.account,
    )
    Client.objects.filter(pk=world["client"].pk).update(allow_sms=True)
    Delivery.objects.filter(pk=gateway_delivery.pk).update(
        status=DeliveryStatus.QUEUED, next_attempt_at=now, expires_at=now + timedelta(hours=1)
    )
    message = Message.objects.create(
        operator=world["operator"],
        campaign=world["campaign"],
        client=world["client"],
        recipient_key="phone:second",
        phone=world["client"].phone,
    )
    pulse_delivery = Delivery.objects.create(
        operator=world["operator"],
        message=message,
        campaign=world["campaign"],
        channel="sms",
        account=accounts["pulse"],
        idempotency_key="pulse1",
        status=DeliveryStatus.QUEUED,
        next_attempt_at=now,
        expires_at=now + timedelta(hours=1),
    )
    return {"gateway": gateway_delivery, "pulse": pulse_delivery}


# --- the admin --------------------------------------------------------------------------------


def admin_url(obj_or_model, view, *args):
    meta = obj_or_model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


def provider_admin_pages(account) -> list[str]:
    route = account.routes.first()
    return [
        admin_url(ProviderAccount, "changelist"),
        admin_url(ProviderAccount, "change", account.pk),
        admin_url(ProviderAccount, "history", account.pk),
        admin_url(ProviderAccount, "delete", account.pk),
        admin_url(ProviderAccount, "add"),
        admin_url(ChannelRoute, "changelist"),
        admin_url(ChannelRoute, "change", route.pk),
    ]


@pytest.mark.parametrize("persona", ["alice", "mark"])
def test_the_admin_never_shows_provider_credentials_in_full(
    client, request, world, accounts, persona
):
    """Superuser or read-only marketer: the credentials are masked wherever the account appears."""
    client.force_login(request.getfixturevalue(persona))
    for url in provider_admin_pages(accounts["gateway"]):
        response = client.get(url)
        assert response.status_code in (200, 403), url
        assert not exposed(response.content, PROVIDER_SECRETS), url


def test_new_credentials_saved_in_the_admin_are_kept_but_never_echoed(client, alice, accounts):
    client.force_login(alice)
    account = accounts["gateway"]
    url = admin_url(ProviderAccount, "change", account.pk)
    data = form_fields(client.get(url).content.decode(), form_id="provideraccount_form")
    new_password = "pw-0f1e2d3c4b5a6978"
    data["new_credentials"] = json.dumps({"login": "demo", "password": new_password})
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.credentials["password"] == new_password
    for page in (url, admin_url(ProviderAccount, "history", account.pk), reverse("admin:index")):
        assert not exposed(client.get(page).content, (new_password, GATEWAY_PASSWORD)), page
    # Saving again without new credentials keeps the current ones.
    data = form_fields(client.get(url).content.decode(), form_id="provideraccount_form")
    assert client.post(url, data).status_code == 302
    account.refresh_from_db()
    assert account.credentials["password"] == new_password


@pytest.mark.parametrize("persona", ["alice", "mark"])
def test_the_admin_never_shows_webhook_secrets_in_full(client, request, world, accounts, persona):
    client.force_login(request.getfixturevalue(persona))
    for url in provider_admin_pages(accounts["gateway"]):
        assert not exposed(client.get(url).content, CALLBACK_SECRETS), url


def test_a_new_callback_url_is_shown_once_and_afterwards_only_by_its_hint(client, alice, accounts):
    """Like a partner token: the admin who rotates sees the new URL once, then nobody does."""
    client.force_login(alice)
    gateway = accounts["gateway"]
    url = admin_url(ProviderAccount, "change", gateway.pk)
    data = form_fields(client.get(url).content.decode(), form_id="provideraccount_form")
    client.post(url, {**data, "add_callback_secret": "on"})
    gateway.refresh_from_db()
    new = gateway.callback_secrets[0]
    assert gateway.callback_secrets[1:] == [GATEWAY_CALLBACK, GATEWAY_CALLBACK_OLD]
    # The page after the save carries the one-time message with the full URL…
    assert (
        gateway.callback_url()
        in client.get(admin_url(ProviderAccount, "changelist")).content.decode()
    )
    # …and no page after that shows any of the secrets.
    for page in provider_admin_pages(gateway):
        assert not exposed(client.get(page).content, (new, *CALLBACK_SECRETS)), page
    assert f"{new[:4]}… (current)" in client.get(url).content.decode()


def test_a_partner_token_is_shown_once_and_afterwards_only_by_its_hint(client, alice, sunrise):
    issued = issue_credential(operator=sunrise, name="Till")
    site = issue_credential(operator=sunrise, name="Widget", kind=ApiCredential.Kind.SITE_CODE)
    client.force_login(alice)
    for credential in (issued.credential, site.credential):
        for url in (
            admin_url(ApiCredential, "changelist"),
            admin_url(ApiCredential, "change", credential.pk),
            admin_url(ApiCredential, "history", credential.pk),
        ):
            page = client.get(url).content.decode()
            assert not exposed(page, (issued.secret, site.secret)), url
            assert credential.secret_hint in page, url


# --- logs, pages and API answers after gateways failed ---------------------------------------


def provoke_gateway_failures(world, accounts) -> dict[str, Delivery]:
    deliveries = queue_deliveries(world, accounts)
    for account in accounts.values():
        dispatch.dispatch_account(account.pk, budget_seconds=2)
    for delivery in deliveries.values():
        delivery.refresh_from_db()
        # Refused connection: a transient error, queued again with the error text kept.
        assert delivery.attempts >= 1 and delivery.error_message, delivery
    return deliveries


def test_a_failing_gateway_request_logs_no_credential(caplog_everything, world, accounts):
    deliveries = provoke_gateway_failures(world, accounts)
    text = logged_text(caplog_everything)
    assert "request of 1 failed" in text  # the failure is logged, with its reason
    assert not exposed(text, PROVIDER_SECRETS + CALLBACK_SECRETS)
    for delivery in deliveries.values():
        assert not exposed(delivery.error_message, PROVIDER_SECRETS + CALLBACK_SECRETS)


def test_no_page_admin_page_or_api_answer_shows_a_secret_after_failures_and_callbacks(
    client, alice, world, accounts
):
    """Gateways failed and 1-pulse called back; then every page, admin page and status answer."""
    deliveries = provoke_gateway_failures(world, accounts)
    Delivery.objects.filter(pk=deliveries["pulse"].pk).update(provider_message_id="p-77")
    callback = client.get(
        f"/providers/webhooks/pulse/{accounts['pulse'].pk}/{PULSE_CALLBACK}/",
        {"id": "p-77", "status": "delivered"},
    )
    assert callback.status_code == 200
    assert DeliveryEvent.objects.filter(delivery=deliveries["pulse"], source="callback").exists()
    secrets = PROVIDER_SECRETS + CALLBACK_SECRETS
    client.force_login(alice)
    # alice works in every operator; pick sunrise, whose rows the pages are about.
    assert client.post("/operator/", {"operator": world["operator"].pk}).status_code == 302
    problems = []
    urls = [url for _route, url in page_urls(world)]  # world's message is the gateway's
    urls.append(
        reverse("campaigns:message", args=[world["campaign"].pk, deliveries["pulse"].message_id])
    )
    for url in urls:
        response = client.get(url)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        problems += [f"{url}: {secret}" for secret in exposed(content, secrets)]
    # (ProviderAccount's own admin pages: test_the_admin_never_shows_… above.)
    for model in (m for m in tenant_models() if m is not ProviderAccount):
        for row in model._default_manager.filter(pk__in=_ids_of(model, world, deliveries)):
            for view in ("changelist", "change"):
                url = admin_url(model, view, *([row.pk] if view == "change" else []))
                problems += [f"{url}: {s}" for s in exposed(client.get(url).content, secrets)]
    token = issue_credential(operator=world["operator"], name="Status reader").secret
    status = client.get(
        "/api/marketing/MessageStatus",
        {"Operator": world["operator"].pk, "Token": token, "MessageId": world["partnersend"].pk},
    )
    assert json.loads(status.content)["ErrorCode"] == 0
    problems += [f"MessageStatus: {secret}" for secret in exposed(status.content, secrets)]
    assert not problems, "\n".join(problems)


def _ids_of(model, world, deliveries) -> list[int]:
    rows = [obj for obj in world.values() if isinstance(obj, model)]
    rows += [d for d in deliveries.values() if isinstance(d, model)]
    rows += [d.message for d in deliveries.values() if model is Message]
    rows += list(DeliveryEvent.objects.all()) if model is DeliveryEvent else []
    return [row.pk for row in rows]


# --- webhooks ---------------------------------------------------------------------------------


def webhook(account, secret) -> str:
    return f"/providers/webhooks/{account.backend}/{account.pk}/{secret}/"


def test_a_webhook_with_a_wrong_secret_is_refused_and_logs_no_real_secret(
    client, caplog_everything, accounts
):
    for account in accounts.values():
        assert client.post(webhook(account, "guess-0123456789")).status_code == 403
        assert client.get(webhook(account, "")).status_code == 404
    assert not exposed(logged_text(caplog_everything), CALLBACK_SECRETS)


def test_a_callback_refused_after_its_secret_matched_logs_no_secret(
    client, caplog_everything, accounts
):
    pulse = accounts["pulse"]
    # The secret is right, the body is not a 1-pulse callback: 400, logged.
    assert client.get(webhook(pulse, PULSE_CALLBACK), {"nothing": "here"}).status_code == 400
    text = logged_text(caplog_everything)
    # Logged (config/logging.py keeps the path, without its secret).
    assert f"/providers/webhooks/pulse/{pulse.pk}/***/" in text
    assert not exposed(text, CALLBACK_SECRETS)


def test_a_callbacks_raw_payload_keeps_no_secret(client, world, accounts):
    deliveries = queue_deliveries(world, accounts)
    Delivery.objects.filter(pk=deliveries["pulse"].pk).update(
        status=DeliveryStatus.SENT, provider_message_id="p-78"
    )
    response = client.get(
        webhook(accounts["pulse"], PULSE_CALLBACK), {"id": "p-78", "status": "delivered"}
    )
    assert response.status_code == 200
    event = DeliveryEvent.objects.get(delivery=deliveries["pulse"], source="callback")
    assert "status=delivered" in event.payload  # the gateway's words are kept…
    assert not exposed(event.payload, CALLBACK_SECRETS)  # …and our secret is not


def test_webhook_secrets_are_required(client, world):
    bare = ProviderAccount.objects.create(
        operator=world["operator"], name="No secrets", backend="pulse", channels=["sms"]
    )
    for secret in ("x", "none", "null", "[]"):
        assert client.get(webhook(bare, secret), {"id": "1", "status": "1"}).status_code == 403


def test_a_removed_webhook_secret_is_refused_at_once(client, accounts):
    gateway = accounts["gateway"]
    for secret in (GATEWAY_CALLBACK, GATEWAY_CALLBACK_OLD):
        assert client.post(webhook(gateway, secret)).status_code == 200
    # Rotation done: the gateway uses the new secret, the old one is dropped.
    gateway.callback_secrets = [GATEWAY_CALLBACK]
    gateway.save()
    assert client.post(webhook(gateway, GATEWAY_CALLBACK_OLD)).status_code == 403
    assert client.post(webhook(gateway, GATEWAY_CALLBACK)).status_code == 200
    # A new secret put first signs new callback URLs at once, and the previous one still works.
    gateway.callback_secrets = [GATEWAY_CALLBACK_OLD + "x", GATEWAY_CALLBACK]
    gateway.save()
    assert gateway.callback_url().endswith(f"/{GATEWAY_CALLBACK_OLD}x/")
    assert client.post(webhook(gateway, GATEWAY_CALLBACK)).status_code == 200


# --- the partner API --------------------------------------------------------------------------

ENDPOINTS = {
    "send": "/api/marketing/SendMessageProcess",
    "update": "/api/client/ClientUpdateCommunication",
    "status": "/api/marketing/MessageStatus",
}


def test_partner_api_answers_and_logs_never_repeat_a_token_or_site_code(
    client, caplog_everything, world
):
    sunrise = world["operator"]
    token = issue_credential(operator=sunrise, name="Till")
    revoked = issue_credential(operator=sunrise, name="Old till")
    revoke_credential(credential_id=revoked.credential.pk)
    site = issue_credential(operator=sunrise, name="Widget", kind=ApiCredential.Kind.SITE_CODE)
    secrets = (token.secret, revoked.secret, site.secret)
    fields = {
        "send": {"CommunicationType": 1, "Client": world["client"].pk, "TextMessage": "Hi"},
        "update": {"Client": world["client"].pk, "AllowPush": True},
        "status": {"MessageId": world["partnersend"].pk},
    }
    credentials = [
        {"Operator": sunrise.pk, "Token": int(token.secret)},  # accepted
        {"Operator": sunrise.pk, "Token": int(revoked.secret)},  # revoked
        {"Operator": sunrise.pk + 1, "Token": int(token.secret)},  # another operator
        {"SiteCode": site.secret},  # accepted
        {"SiteCode": site.secret[::-1]},  # unknown
    ]
    for name, url in ENDPOINTS.items():
        for auth in credentials:
            response = client.post(
                url, json.dumps({**auth, **fields[name]}), content_type="application/json"
            )
            assert response.status_code < 500, (url, auth, response.content)
            assert not exposed(response.content, secrets), (url, auth, response.content)
    assert not exposed(logged_text(caplog_everything), secrets)
