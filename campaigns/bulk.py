"""Bulk writes of deliveries and events: the one place that knows SQLite from PostgreSQL.

On PostgreSQL rows are streamed with COPY into a temporary table and applied by one
UPDATE … FROM or INSERT … SELECT; on SQLite (the embedded default) Django's
bulk_update and bulk_create do. Table and column names come from the models' _meta.
"""

from __future__ import annotations

import hashlib
from functools import partial

from django.db import connection
from django.utils import timezone

from campaigns.models import Delivery, DeliveryEvent


def copy_to_temp(cursor, fields, rows: list, with_id: bool) -> str:
    """Stream rows into a per-connection temporary table with COPY; returns its name.

    psycopg adapts str, int, Decimal and aware datetimes itself in C; only JSON
    needs Django's preparation. Thousands of query parameters, or Django's
    bulk_update (a CASE WHEN per row and field), cost far more than the SQL.
    """
    model = fields[0].model
    names = ",".join(field.column for field in fields)
    table = (
        "_copy_"
        + hashlib.sha1(
            f"{model._meta.db_table}:{names}:{with_id}".encode(), usedforsecurity=False
        ).hexdigest()[:12]
    )
    preparers = [
        (field.attname, partial(field.get_db_prep_save, connection=connection))
        if field.get_internal_type() == "JSONField"
        else (field.attname, _as_is)
        for field in fields
    ]
    definitions = ", ".join(f"{field.column} {field.db_type(connection)}" for field in fields)
    id_column = "id bigint, " if with_id else ""
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {table} ({id_column}{definitions}) ON COMMIT DELETE ROWS"
    )
    id_name = "id, " if with_id else ""
    with cursor.cursor.copy(
        f"COPY {table} ({id_name}{names.replace(',', ', ')}) FROM STDIN"
    ) as copy:
        for row in rows:
            values = [prepare(getattr(row, attname)) for attname, prepare in preparers]
            copy.write_row([row.pk, *values] if with_id else values)
    return table


def on_postgresql() -> bool:
    """PostgreSQL (COPY, SKIP LOCKED, ON CONFLICT … DO UPDATE) rather than SQLite."""
    return connection.vendor == "postgresql"


def bulk_update_deliveries(rows: list[Delivery], field_names: list[str]) -> None:
    """COPY the new values into a temporary table, then one UPDATE … FROM it (PostgreSQL)."""
    if not on_postgresql():
        Delivery.objects.bulk_update(rows, field_names)
        return
    fields = [Delivery._meta.get_field(name) for name in field_names]
    assignments = ", ".join(f"{field.column} = v.{field.column}" for field in fields)
    with connection.cursor() as cursor:
        table = copy_to_temp(cursor, fields, rows, with_id=True)
        cursor.execute(
            f"UPDATE {Delivery._meta.db_table} AS d SET {assignments} FROM {table} AS v "  # noqa: S608 - our own names
            "WHERE d.id = v.id"
        )
        cursor.execute(f"TRUNCATE {table}")


def insert_events(events: list[DeliveryEvent]) -> None:
    """Insert events, skipping reports already recorded (dedupe key); COPY on PostgreSQL."""
    if not on_postgresql():
        DeliveryEvent.objects.bulk_create(events, ignore_conflicts=True)
        return
    now = timezone.now()
    for event in events:
        event.received_at = event.received_at or now
    fields = [f for f in DeliveryEvent._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(field.column for field in fields)
    with connection.cursor() as cursor:
        table = copy_to_temp(cursor, fields, events, with_id=False)
        cursor.execute(
            f"INSERT INTO {DeliveryEvent._meta.db_table} ({columns}) SELECT {columns} FROM {table} "  # noqa: S608
            "ON CONFLICT DO NOTHING"
        )
        cursor.execute(f"TRUNCATE {table}")


def _as_is(value):
    return value
