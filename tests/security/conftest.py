"""Fixtures of the security tests: an intruder from another operator, and what must not leak.

bob works in `northwind`; `world` (tests/conftest.py) fills `sunrise`. Here bob
also gets every permission of Cascade's own apps, so that whatever refuses him
sunrise's rows is the operator check, not a missing permission.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection, models

from campaigns.models import MessageTemplate
from clients.models import Operator
from clients.services import issue_credential
from tests.conftest import make_client

OUR_APPS = ("clients", "campaigns", "providers")


@pytest.fixture(autouse=True)
def no_broker_and_fresh_cache(monkeypatch):
    """Nothing is queued for real, and the partner API's throttle counters start at zero."""
    monkeypatch.setattr("campaigns.queue.kick_account", lambda *args, **kwargs: None)
    monkeypatch.setattr("campaigns.queue.kick_campaign", lambda campaign_id: None)
    monkeypatch.setattr("campaigns.queue.enqueue_fan_out", lambda campaign_id: None)
    cache.clear()
    yield
    cache.clear()


# Names no page shows by chance, so finding one in a page means the row leaked.
TELLING_NAMES = {
    "pointofsale": {"name": "Sunrise Shop One"},
    "tag": {"name": "sunrise-vip"},
    "lead": {"name": "Larisa Sunrise-Lead", "email": "larisa@sunrise.example"},
    "subscriber": {"display_name": "Sunrise Subscriber", "external_id": "sunrise-tg-4242"},
    "messengerchat": {"title": "Sunrise staff chat"},
    "apicredential": {"name": "Sunrise POS till"},
    "provideraccount": {"name": "Sunrise Gateway"},
    "messagetemplate": {"name": "Sunrise Hello"},
    "campaign": {"name": "Sunrise Spring sale"},
}


SUNRISE_PHONE = "79161112233"


@pytest.fixture
def world(world):
    """tests/conftest.py's `world`, with telling names instead of words like "Lead" or "vip"."""
    for key, fields in TELLING_NAMES.items():
        obj = world[key]
        type(obj)._default_manager.filter(pk=obj.pk).update(**fields)
        obj.refresh_from_db()
    # Not 79123456789: the phone field's help text uses that one as its example.
    for key in ("client", "message"):
        type(world[key])._default_manager.filter(pk=world[key].pk).update(phone=SUNRISE_PHONE)
        world[key].refresh_from_db()
    return world


@pytest.fixture
def intruder(bob):
    """bob, a northwind marketer with every permission on Cascade's own models."""
    bob.user_permissions.set(Permission.objects.filter(content_type__app_label__in=OUR_APPS))
    return bob


@pytest.fixture
def northwind_api(northwind):
    """northwind's own token and a client of theirs, for requests that need a valid recipient."""
    issued = issue_credential(operator=northwind, name="Northwind till")
    return {
        "operator": northwind,
        "token": int(issued.secret),
        "credential": issued.credential,
        "client": make_client(northwind, phone="79000000001", allow_sms=True),
        "template": MessageTemplate.objects.create(operator=northwind, name="N", text="x"),
    }


def auth(api: dict) -> dict:
    return {"Operator": api["operator"].pk, "Token": api["token"]}


# --- what must not leak ---------------------------------------------------------------------

# Text fields that name a row to a person reading a page.
TELLING_FIELDS = (
    "name",
    "title",
    "text",
    "first_name",
    "last_name",
    "phone",
    "email",
    "code",
    "external_id",
    "chat_id",
    "number",
    "display_name",
    "base_url",
)


def markers(objects: dict, *, min_length: int = 4) -> dict[str, str]:
    """Strings that identify sunrise's rows: str(row) and its telling fields → where from."""
    found: dict[str, str] = {}
    for label, obj in objects.items():
        candidates = [("str", str(obj))]
        candidates += [
            (field, getattr(obj, field, None)) for field in TELLING_FIELDS if hasattr(obj, field)
        ]
        for field, value in candidates:
            text = "" if value is None else str(value)
            if field == "str" and text.isdigit():
                continue  # a row shown by its bare id (a list entry): any number on a page matches
            if len(text) >= min_length:
                found.setdefault(text, f"{label}.{field}")
    return found


def leaked(content: bytes, marker_map: dict[str, str]) -> list[str]:
    text = content.decode(errors="replace")
    return [f"{where}={value!r}" for value, where in marker_map.items() if value in text]


# --- "nothing changed" ----------------------------------------------------------------------


def tenant_models() -> list[type[models.Model]]:
    return [
        model
        for app_label in OUR_APPS
        for model in apps.get_app_config(app_label).get_models()
        if any(field.name == "operator" for field in model._meta.fields) or model is Operator
    ]


def snapshot(*, operator: Operator | None = None, ignore: tuple[str, ...] = ()) -> dict:
    """Every row of Cascade's models and the admin's log, as plain values.

    With `operator`: that operator's rows of the models that have an operator, only.
    """
    state = {}
    every = [model for label in OUR_APPS for model in apps.get_app_config(label).get_models()]
    for model in tenant_models() if operator is not None else every:
        rows = model._default_manager.all()
        if operator is not None:
            rows = (
                rows.filter(pk=operator.pk) if model is Operator else rows.filter(operator=operator)
            )
        state[model._meta.label] = [
            {key: value for key, value in row.items() if key not in ignore}
            for row in rows.order_by("pk").values()
        ]
    if operator is None:
        state["admin.LogEntry"] = list(LogEntry.objects.order_by("pk").values())
    return state


def differences(before: dict, after: dict) -> list[str]:
    return [label for label in before if before[label] != after.get(label)]


def fingerprint() -> dict[str, str]:
    """A digest of every table `snapshot()` reads, in one query: cheap enough for every request."""
    if connection.vendor != "postgresql":
        return {label: repr(rows) for label, rows in snapshot().items()}
    tables = [
        model._meta.db_table
        for label in (*OUR_APPS, "admin")
        for model in apps.get_app_config(label).get_models()
    ]
    sql = " UNION ALL ".join(
        f"SELECT '{table}', md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "  # noqa: S608 - table names from the app registry
        f"FROM {connection.ops.quote_name(table)} t"
        for table in tables
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return dict(cursor.fetchall())
