"""Claims: due deliveries of one account taken `queued -> submitting` with a lease.

One conditional UPDATE (FOR UPDATE SKIP LOCKED on PostgreSQL, so any number of
workers can share an account); its size keeps every request of the claim inside
the lease (claim_size).
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import counters, windows
from campaigns.bulk import on_postgresql
from campaigns.fanout import db_time
from campaigns.models import Campaign, Delivery
from providers.limits import CLAIM_TIME_FOR_REQUESTS
from providers.models import ProviderAccount
from providers.status import DeliveryStatus


def new_claim_token() -> str:
    return uuid.uuid4().hex


def claim(account_id: int, limit: int, *, token: str = "") -> list[int]:
    """Take up to `limit` due deliveries of running campaigns (or one-off messages); one statement.

    The rows carry `token` (a fresh one if none is given) until their outcome is written:
    send_batch writes only to rows that still carry it.
    """
    now = timezone.now()
    token = token or new_claim_token()
    lock = " FOR UPDATE OF d SKIP LOCKED" if on_postgresql() else ""
    shut = list(windows.closed_campaigns(now))
    outside_window = (
        f" AND (d.campaign_id IS NULL OR d.campaign_id NOT IN ({', '.join(['%s'] * len(shut))}))"
        if shut
        else ""
    )
    # The claim is a CTE: PostgreSQL materializes a FOR UPDATE CTE once, whereas
    # the same SELECT inside `IN (…)` may be rescanned and claim past its LIMIT.
    # No ORDER BY: sorting every queued row of a 100k campaign on each claim
    # costs more than the fairness it buys; the index order is near enough FIFO.
    sql = f"""
        WITH claimed AS (
            SELECT d.id FROM {Delivery._meta.db_table} d
            LEFT JOIN {Campaign._meta.db_table} c ON c.id = d.campaign_id
            WHERE d.account_id = %s AND d.status = %s
              AND d.next_attempt_at <= %s
              AND (d.campaign_id IS NULL OR c.state = %s){outside_window}
            LIMIT %s{lock}
        )
        UPDATE {Delivery._meta.db_table} SET status = %s, lease_expires_at = %s, attempts = attempts + 1,
            updated_at = %s, claim_token = %s
        WHERE id IN (SELECT id FROM claimed)
        RETURNING id, campaign_id, channel
    """  # noqa: S608 - only fixed clauses and placeholders are interpolated
    params = [
        account_id,
        DeliveryStatus.QUEUED,
        db_time(now),
        Campaign.State.RUNNING,
        *shut,
        limit,
        DeliveryStatus.SUBMITTING,
        db_time(now + timedelta(seconds=settings.CASCADE_CLAIM_LEASE_SECONDS)),
        db_time(now),
        token,
    ]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            claimed = cursor.fetchall()
        deltas: Counter = Counter()
        for _id, campaign_id, channel in claimed:
            counters.transition(
                deltas, campaign_id, channel, DeliveryStatus.QUEUED, DeliveryStatus.SUBMITTING
            )
        counters.bump(deltas)
    return [row[0] for row in claimed]


def lease_seconds() -> float:
    return float(settings.CASCADE_CLAIM_LEASE_SECONDS)


def claim_size(account: ProviderAccount, backend, seconds: float) -> int:
    """How many deliveries to claim at once: several requests' worth (the database work is
    per claim), no more than the rate limit allows in a second, and few enough that every
    request timing out in turn still ends within `seconds` (the lease, the task's time):
    a claim that outlives its lease is taken back by the sweeper while it is still sending.
    """
    batch = backend.batch_size()
    size = batch * max(1, settings.CASCADE_CLAIM_TARGET // batch)
    if account.rate_limit_per_second:
        size = min(size, account.rate_limit_per_second)
    requests = int(seconds * CLAIM_TIME_FOR_REQUESTS // max(1, account.timeout_seconds))
    return max(1, min(size, backend.messages_within(requests)))


def has_due_work(account_id: int, within_seconds: float = 0) -> bool:
    horizon = timezone.now() + timedelta(seconds=within_seconds)
    return (
        Delivery.objects.filter(account_id=account_id, status=DeliveryStatus.QUEUED)
        .exclude(next_attempt_at__gt=horizon)
        .filter(Q(campaign__isnull=True) | Q(campaign__state=Campaign.State.RUNNING))
        .exists()
    )
