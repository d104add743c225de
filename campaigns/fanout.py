"""Fan-out: one Message and one first Delivery per recipient, set-based in the database.

Two INSERT … SELECT statements do the work whatever the audience size: the
messages (one per client of the segment, or per row of the list), then each
message's first delivery on the first channel of the cascade that the
recipient may get (consent, address, a provider route). A recipient who may
get none gets a `skipped` delivery with the reason of the first channel.
Re-running creates nothing new: messages are unique per campaign and
recipient, and a message that has a delivery is passed over.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import CharField, Count, F, JSONField, Value
from django.db.models.functions import Cast, Coalesce, Concat, NullIf
from django.utils import timezone

from campaigns import counters, experiments
from campaigns.audience import segment_queryset
from campaigns.eligibility import eligible_sql
from campaigns.models import AudienceListEntry, Campaign, Delivery, Message
from campaigns.routing import routes_for
from clients.models import Client
from providers.status import DeliveryStatus

KEY_STEP_FACTOR = 100  # idempotency key = message id * 100 + step: digits only, unique


def db_time(value):
    """A datetime as the ORM would store it: raw SQL on SQLite otherwise gets another format."""
    return connection.ops.adapt_datetimefield_value(value)


def delivery_key(message_id: int, step: int) -> str:
    """Our idempotency key: digits only, because the cascade gateway's is a number."""
    return str(message_id * KEY_STEP_FACTOR + step)


@dataclass
class FanOutResult:
    messages: int
    queued: int
    skipped: int


MESSAGE_COLUMNS = [
    "operator_id",
    "campaign_id",
    "client_id",
    "recipient_key",
    "phone",
    "email",
    "purpose",
    "title",
    "text",
    "variables",
    "status",
    "created_at",
    "updated_at",
]


def insert_from(queryset, columns: list[str], *, model=Message) -> int:
    """INSERT … SELECT of a queryset's values into `model`'s table (messages unless told);
    a row that would break a unique constraint (an existing recipient) is kept as it is."""
    select_sql, params = queryset.query.sql_with_params()
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) {select_sql} "
        "ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def message_values(source, campaign: Campaign, now, **per_row):
    """`source` annotated with every message column, in MESSAGE_COLUMNS order.

    `per_row` gives m_client, m_key, m_phone, m_email and m_variables as expressions over
    the source's rows; the rest is the campaign's.
    """
    common = {
        "m_operator": Value(campaign.operator_id),
        "m_campaign": Value(campaign.pk),
        "m_purpose": Value(campaign.purpose),
        "m_title": Value(""),
        "m_text": Value(""),
        # In progress from the start: the skipped few are marked after, rather
        # than rewriting every message row once more.
        "m_status": Value(Message.Status.IN_PROGRESS),
        "m_created": Value(now),
        "m_updated": Value(now),
    }
    return (
        source.annotate(**common, **per_row)
        .order_by()
        .values_list(
            "m_operator",
            "m_campaign",
            "m_client",
            "m_key",
            "m_phone",
            "m_email",
            "m_purpose",
            "m_title",
            "m_text",
            "m_variables",
            "m_status",
            "m_created",
            "m_updated",
        )
    )


def insert_messages(campaign: Campaign, now) -> int:
    if campaign.audience_kind == Campaign.AudienceKind.LIST:
        source = message_values(
            AudienceListEntry.objects.filter(campaign=campaign),
            campaign,
            now,
            m_client=F("client_id"),
            m_key=Coalesce(
                Concat(Value("client:"), Cast("client_id", CharField())),
                Concat(Value("phone:"), NullIf("phone", Value(""))),
                Concat(Value("card:"), Cast("card_number", CharField())),
                output_field=CharField(),
            ),
            m_phone=Coalesce(NullIf("phone", Value("")), "client__phone", Value("")),
            m_email=Coalesce("client__email", Value("")),
            m_variables=F("variables"),
        )
    else:
        source = message_values(
            segment_queryset(operator_id=campaign.operator_id, segment=campaign.segment),
            campaign,
            now,
            m_client=F("pk"),
            m_key=Concat(Value("client:"), Cast("pk", CharField())),
            m_phone=F("phone"),
            m_email=F("email"),
            m_variables=Value({}, output_field=JSONField()),
        )
    return insert_from(source, MESSAGE_COLUMNS)


def insert_first_deliveries(campaign: Campaign, now, *, created_at=True) -> None:
    """The first delivery of each of the campaign's messages created at `now` that has none
    (of every message in progress that has none, with created_at=False)."""
    routes = routes_for(campaign.operator_id)
    channels = list(campaign.channels)
    eligible = [eligible_sql(channel, campaign.purpose, routes) for channel in channels]
    step_case = (
        "CASE " + " ".join(f"WHEN {e[0]} THEN {i}" for i, e in enumerate(eligible)) + " ELSE 0 END"
    )
    channel_case = "CASE " + " ".join(f"WHEN {e[0]} THEN %s" for e in eligible) + " ELSE %s END"
    # Typed: with no route at all every THEN is NULL, and PostgreSQL would call the CASE text.
    account_case = (
        "CASE "
        + " ".join(f"WHEN {e[0]} THEN CAST(%s AS BIGINT)" for e in eligible)
        + " ELSE NULL END"
    )
    any_eligible = " OR ".join(f"({e[0]})" for e in eligible) or "FALSE"
    channel_params = [*channels, channels[0]]
    account_params = [routes[c].primary if c in routes else None for c in channels]
    expires_at = now + timedelta(minutes=campaign.ttl_minutes)
    sql = f"""
        INSERT INTO {Delivery._meta.db_table} (
            operator_id, message_id, campaign_id, step, channel, account_id, status,
            idempotency_key, provider_message_id, parts, currency, error_code, error_message,
            native_channels, attempts, next_attempt_at, expires_at, created_at, updated_at, final_at
        )
        SELECT m.operator_id, m.id, m.campaign_id, {step_case}, {channel_case}, {account_case},
            CASE WHEN {any_eligible} THEN %s ELSE %s END,
            CAST(m.id * {KEY_STEP_FACTOR} + {step_case} AS VARCHAR(32)), '', 0, '',
            CASE WHEN {any_eligible} THEN '' ELSE {eligible[0][1]} END,
            CASE WHEN {any_eligible} THEN '' ELSE {eligible[0][2]} END,
            %s, 0, %s, %s, %s, %s,
            CASE WHEN {any_eligible} THEN NULL ELSE %s END
        FROM {Message._meta.db_table} m LEFT JOIN {Client._meta.db_table} c ON c.id = m.client_id
        WHERE m.campaign_id = %s AND m.status = %s {"AND m.created_at = %s" if created_at else ""}
          AND NOT EXISTS (SELECT 1 FROM {Delivery._meta.db_table} d WHERE d.message_id = m.id)
    """  # noqa: S608 - only our own column and flag names are interpolated
    params = [
        *channel_params,
        *account_params,
        DeliveryStatus.QUEUED,
        DeliveryStatus.SKIPPED,
        "[]",
        *map(db_time, (now, expires_at, now, now, now)),
        campaign.pk,
        Message.Status.IN_PROGRESS,
        *([db_time(now)] if created_at else []),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@transaction.atomic
def fan_out(campaign_id: int) -> FanOutResult | None:
    """Create the campaign's messages and first deliveries; safe to run twice."""
    campaign = Campaign.objects.select_for_update(no_key=True).filter(pk=campaign_id).first()
    if campaign is None or campaign.state not in (Campaign.State.RUNNING, Campaign.State.PAUSED):
        return None
    if campaign.fanned_out_at is not None or campaign.kind != Campaign.Kind.ONE_OFF:
        # A triggered campaign has no one-time audience: the sweeper's passes
        # (campaigns.triggers) create its messages as occurrences fall due. A recurring
        # one's runs are child campaigns of their own (campaigns.recurring).
        return FanOutResult(0, 0, 0)
    now = timezone.now()
    created = insert_messages(campaign, now)
    queued, skipped = settle_new_messages(campaign, now)
    Campaign.objects.filter(pk=campaign.pk).update(fanned_out_at=now, updated_at=now)
    return FanOutResult(created, queued, skipped)


def settle_new_messages(campaign: Campaign, now) -> tuple[int, int]:
    """First deliveries, counters and skipped messages for the messages created at `now`.

    The fan-out calls it once; a trigger pass calls it for each batch of newcomers.
    Returns (queued, skipped).
    """
    experiments.assign_groups(campaign, now)
    insert_first_deliveries(campaign, now)
    return count_new_deliveries(campaign, now)


def settle_waiting_messages(campaign: Campaign, now) -> tuple[int, int]:
    """First deliveries for the messages that waited for a test's winner (now in progress)."""
    insert_first_deliveries(campaign, now, created_at=False)
    return count_new_deliveries(campaign, now)


def count_new_deliveries(campaign: Campaign, now) -> tuple[int, int]:
    deltas: Counter = Counter()
    tally: Counter = Counter()
    for (channel, status), count in _grouped(campaign.pk, now).items():
        deltas[(campaign.pk, channel, status)] += count
        tally[status] += count
    counters.bump(deltas)
    if tally[DeliveryStatus.SKIPPED]:
        Message.objects.filter(
            campaign=campaign,
            status=Message.Status.IN_PROGRESS,
            deliveries__created_at=now,
            deliveries__status=DeliveryStatus.SKIPPED,
        ).update(status=Message.Status.SKIPPED, updated_at=now)
    return tally[DeliveryStatus.QUEUED], tally[DeliveryStatus.SKIPPED]


def _grouped(campaign_id: int, created_at) -> Counter:
    rows = (
        Delivery.objects.filter(campaign_id=campaign_id, created_at=created_at)
        .values("channel", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return Counter({(row["channel"], row["status"]): row["n"] for row in rows})
