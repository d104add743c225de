"""Shared fixtures: two operators and the people who work in them.

Personas: alice is a superuser; mark is a marketer and connie a consent admin,
both in operator `sunrise`; bob is a marketer in the other operator `northwind`.
"""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from campaigns.models import (
    AudienceListEntry,
    Campaign,
    Delivery,
    DeliveryEvent,
    InboundReply,
    Message,
    MessageTemplate,
    PartnerSend,
)
from clients.channels import Channel
from clients.groups import CONSENT_ADMINS, MARKETERS
from clients.models import (
    Card,
    Client,
    ConsentChange,
    Lead,
    MessengerChat,
    Operator,
    OperatorMember,
    PointOfSale,
    Subscriber,
    Tag,
)
from clients.services import issue_credential
from providers.models import ChannelRoute, ProviderAccount
from providers.status import DeliveryStatus

# What `make test-fast` leaves out: real browsers, subprocess clusters, the chaos and
# load scenarios and the schema fuzzer (minutes, not seconds). `make test` runs them all.
SLOW_TESTS = (
    "tests/browser/",
    "tests/bench/",
    "tests/fuzz/test_api_schemathesis.py",
    "tests/campaigns/test_chaos.py",
    "tests/campaigns/test_chaos_suite.py",
    "tests/campaigns/test_scale_out.py",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SLOW_TESTS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def callbacks_applied_before_their_answer(settings):
    """A test client's callbacks follow each other within microseconds, in one process:
    with the production interval the second would wait for a task. Each test that is
    about the interval sets its own (tests/providers/test_inbox.py); subprocesses (a
    live qcluster, gunicorn) keep the production default."""
    settings.CASCADE_CALLBACK_DRAIN_INTERVAL = 0
    from providers import inbox

    inbox.reset_inline_drain()


@pytest.fixture(autouse=True)
def no_webhook_accounts_from_another_test():
    from providers import webhooks

    webhooks.reset_account_cache()


@pytest.fixture(autouse=True)
def no_routes_from_another_test():
    # Operator ids repeat across tests (each test's rows are rolled back).
    from campaigns import routing

    routing.reset_route_cache()


@pytest.fixture
def sunrise(db):
    return Operator.objects.create(name="Sunrise Market", code="sunrise")


@pytest.fixture
def northwind(db):
    return Operator.objects.create(name="Northwind Pharmacy", code="northwind")


def ensure_staff_groups() -> None:
    """The Marketers and Consent admins groups, as migration campaigns 0002 makes them.

    A transactional test ends by emptying every table; post_migrate brings back
    permissions and content types but not the groups, so a later test must.
    """
    from django.contrib.auth.models import Permission

    from clients.groups import GROUP_PERMISSIONS

    for name, grants in GROUP_PERMISSIONS.items():
        group, created = Group.objects.get_or_create(name=name)
        if created:
            group.permissions.set(
                Permission.objects.get(
                    content_type__app_label=app_label, codename=f"{action}_{model_name}"
                )
                for (app_label, model_name), actions in grants.items()
                for action in actions
            )


def make_staff(username, group_name, operator):
    user = User.objects.create_user(username, password="pw-" + username, is_staff=True)
    if group_name:
        ensure_staff_groups()
        user.groups.add(Group.objects.get(name=group_name))
    if operator:
        OperatorMember.objects.create(operator=operator, user=user)
    return user


@pytest.fixture
def alice(db):
    return User.objects.create_superuser("alice", "alice@example.com", "pw-alice")


@pytest.fixture
def mark(sunrise):
    return make_staff("mark", MARKETERS, sunrise)


@pytest.fixture
def connie(sunrise):
    return make_staff("connie", CONSENT_ADMINS, sunrise)


@pytest.fixture
def bob(northwind):
    return make_staff("bob", MARKETERS, northwind)


def make_client(operator, phone="79123456789", **fields):
    return Client.objects.create(operator=operator, phone=phone, **fields)


@pytest.fixture
def world(sunrise, northwind):
    """One row of every model in `sunrise`, so every admin page has something to show."""
    pos = PointOfSale.objects.create(operator=sunrise, code="S-1", name="Shop 1")
    tag = Tag.objects.create(operator=sunrise, name="vip")
    client = make_client(sunrise, email="anna@example.com", first_name="Anna", registered_pos=pos)
    client.tags.add(tag)
    card = Card.objects.create(
        operator=sunrise, client=client, number=1000001, bonus=Decimal("150")
    )
    consent = ConsentChange.objects.create(
        operator=sunrise,
        client=client,
        flag="allow_sms",
        old_value=False,
        new_value=True,
        source=ConsentChange.Source.IMPORT,
    )
    lead = Lead.objects.create(operator=sunrise, phone="79123450000", name="Lead")
    subscriber = Subscriber.objects.create(operator=sunrise, messenger="telegram", external_id="42")
    chat = MessengerChat.objects.create(operator=sunrise, messenger="telegram", chat_id=-100123)
    credential = issue_credential(operator=sunrise, name="POS").credential
    account = ProviderAccount.objects.create(
        operator=sunrise,
        name="Gateway",
        backend="cascade_gateway",
        base_url="http://127.0.0.1:9",
        credentials={"login": "demo", "password": "secret-password"},
        channels=["viber", "sms"],
    )
    route = ChannelRoute.objects.create(operator=sunrise, channel=Channel.SMS, account=account)
    template = MessageTemplate.objects.create(
        operator=sunrise, name="Hello", text="Hello {{ first_name }}"
    )
    campaign = Campaign.objects.create(
        operator=sunrise, name="Spring", template=template, channels=["viber", "sms"]
    )
    entry = AudienceListEntry.objects.create(operator=sunrise, campaign=campaign, client=client)
    message = Message.objects.create(
        operator=sunrise,
        campaign=campaign,
        client=client,
        recipient_key=f"client:{client.pk}",
        phone=client.phone,
    )
    delivery = Delivery.objects.create(
        operator=sunrise,
        message=message,
        campaign=campaign,
        channel=Channel.VIBER,
        account=account,
        idempotency_key="k1",
        status=DeliveryStatus.SENT,
    )
    event = DeliveryEvent.objects.create(
        operator=sunrise,
        delivery=delivery,
        status=DeliveryStatus.SENT,
        source="submit",
        payload="{}",
    )
    partner_send = PartnerSend.objects.create(
        operator=sunrise, api_credential=credential, request_digest="0" * 64, message=message
    )
    reply = InboundReply.objects.create(
        operator=sunrise,
        account=account,
        provider_reply_id="r-1",
        phone="79160009931",
        text="Thanks",
        channel="sms",
        client=client,
        message=message,
        campaign=campaign,
        received_at=timezone.now(),
    )
    return {
        "operator": sunrise,
        "inboundreply": reply,
        "partnersend": partner_send,
        "pointofsale": pos,
        "tag": tag,
        "client": client,
        "card": card,
        "consentchange": consent,
        "lead": lead,
        "subscriber": subscriber,
        "messengerchat": chat,
        "apicredential": credential,
        "provideraccount": account,
        "channelroute": route,
        "messagetemplate": template,
        "campaign": campaign,
        "audiencelistentry": entry,
        "message": message,
        "delivery": delivery,
        "deliveryevent": event,
    }


@pytest.fixture(autouse=True)
def no_client_zones_from_another_test():
    # Operator ids come back across tests: a zone list cached by one test would be another's.
    from django.core.cache import cache

    cache.clear()
