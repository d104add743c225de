"""The webhook's inbox: store a callback durably first, apply callbacks in batches.

A callback costs one INSERT before the gateway gets its 200; applying it
(locking the deliveries, counters, events, the cascade) is the expensive part,
and it costs about the same for one report as for a thousand (measured: about
4 ms of CPU to apply one callback alone, 1 ms to take one in). So reports
are applied in batches, by whoever comes along:

- the webhook request itself, at most once per CASCADE_CALLBACK_DRAIN_INTERVAL
  per process (under light load that is every request, so a report is applied
  before its 200; under heavy load each drain applies what arrived since);
- otherwise a task it kicks (at most one kick per second per process);
- the sweeper, every few seconds, whatever is still waiting (a drainer killed
  mid-batch, a kick that found another drainer busy).

One drainer at a time (a transaction-level advisory lock): two batches that
touch the same deliveries would only wait on each other's row locks. A
drainer that finds the lock taken kicks the task and returns at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, OperationalError, connection, transaction
from django.utils import timezone

from providers.base import StatusEvent
from providers.models import InboundCallback

logger = logging.getLogger(__name__)

CALLBACK = "callback"  # the event source recorded for a report that came by callback

# pg_try_advisory_xact_lock key: any constant no other lock uses ("CBQ" in ASCII).
DRAIN_LOCK = 0x434251
BATCH_SIZE = 2000


def as_json(events: list[StatusEvent]) -> list[dict]:
    """Status reports as JSON values, for the inbox row (read back by from_json)."""
    return [
        {
            "status": event.status,
            "provider_status": event.provider_status,
            "provider_message_id": event.provider_message_id,
            "idempotency_key": event.idempotency_key,
            "channel": event.channel,
            "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
            "price": str(event.price) if event.price is not None else None,
            "currency": event.currency,
            "parts": event.parts,
            "error_message": event.error_message,
            "raw": event.raw,
        }
        for event in events
    ]


def from_json(values: list[dict]) -> list[StatusEvent]:
    events = []
    for value in values:
        occurred_at = value.get("occurred_at")
        price = value.get("price")
        try:
            price = Decimal(price) if price is not None else None
        except InvalidOperation:
            price = None
        events.append(
            StatusEvent(
                status=value["status"],
                provider_status=value.get("provider_status", ""),
                provider_message_id=value.get("provider_message_id", ""),
                idempotency_key=value.get("idempotency_key", ""),
                channel=value.get("channel", ""),
                occurred_at=datetime.fromisoformat(occurred_at) if occurred_at else None,
                price=price,
                currency=value.get("currency", ""),
                parts=value.get("parts"),
                error_message=value.get("error_message", ""),
                raw=value.get("raw", ""),
            )
        )
    return events


def store_callback(account_id: int, events: list[StatusEvent]) -> int | None:
    """Keep a callback's reports until they are applied: the inbox row's id, or None when
    there is nothing to keep.

    One plain INSERT: it is the only query a callback costs in the steady state, and
    building a model instance and its INSERT took longer than the statement itself.
    """
    events = [event for event in events if event.provider_message_id or event.idempotency_key]
    if not events:
        return None
    received_at = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {InboundCallback._meta.db_table} (account_id, events, received_at, error)"  # noqa: S608 - our table
            " VALUES (%s, %s, %s, '') RETURNING id",
            [account_id, json.dumps(as_json(events)), received_at],
        )
        return cursor.fetchone()[0]


# Per process: when this process's requests last applied the inbox themselves; None until
# the first did. Not 0.0: time.monotonic() counts from boot, so on a machine up for less
# than an interval a zero would make the first callback wait for a task.
_last_inline_drain: float | None = None


def reset_inline_drain() -> None:
    """Forget when this process last drained inline: its next callback applies at once."""
    global _last_inline_drain
    _last_inline_drain = None


def after_store() -> None:
    """The webhook's part: apply the inbox now, or leave it to a task if we did so just now."""
    global _last_inline_drain
    now = time.monotonic()
    last = _last_inline_drain
    if last is None or now - last >= settings.CASCADE_CALLBACK_DRAIN_INTERVAL:
        _last_inline_drain = now
        drain_callbacks(seconds=settings.CASCADE_CALLBACK_DRAIN_SECONDS)
    else:
        _hand_over()


def drain_callbacks(
    *, seconds: float = 1.0, batch_size: int = BATCH_SIZE, wait_for_lock: float = 0
) -> int:
    """Apply waiting callbacks, a batch at a time while batches come full, for up to `seconds`.

    Returns how many were applied. A drainer stops at the first batch that is
    not full rather than chasing each new arrival with a tiny batch (that cost
    more than taking the callbacks in). When another drainer holds the lock, or
    time runs out with callbacks waiting, a task is kicked to take over. The
    task waits up to `wait_for_lock` seconds for the lock instead: the request
    that kicked it may have stored its callback after the holder read the inbox.
    """
    deadline = time.monotonic() + seconds
    applied = 0
    while True:
        taken, fetched, done = _drain_batch(batch_size, wait_for_lock)
        applied += done
        if not taken:
            # The holder may have read the inbox before our row was committed.
            _hand_over()
            return applied
        if fetched < batch_size:
            return applied
        if time.monotonic() >= deadline:
            _hand_over()
            return applied


def _drain_batch(batch_size: int, wait_for_lock: float = 0) -> tuple[bool, int, int]:
    """(whether we held the lock, callbacks read, callbacks applied): one batch, one transaction."""
    with transaction.atomic():
        if connection.vendor == "postgresql" and not _lock(wait_for_lock):
            return False, 0, 0
        rows = list(
            InboundCallback.objects.filter(error="")
            .order_by("pk")
            .values_list("pk", "account_id", "events")[:batch_size]
        )
        if not rows:
            return True, 0, 0
        failed = _apply(rows)
        done = [pk for pk, _, _ in rows if pk not in failed]
        InboundCallback.objects.filter(pk__in=done).delete()
        for pk, error in failed.items():
            InboundCallback.objects.filter(pk=pk).update(error=error[:2000])
    return True, len(rows), len(done)


def _lock(wait: float) -> bool:
    with connection.cursor() as cursor:
        if wait <= 0:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [DRAIN_LOCK])
            return cursor.fetchone()[0]
        # lock_timeout bounds the wait; SET LOCAL ends with the transaction.
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{int(wait * 1000)}ms"])
        try:
            with transaction.atomic():  # a savepoint: the timeout must not spoil the transaction
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DRAIN_LOCK])
        except OperationalError:
            return False
        cursor.execute("SELECT set_config('lock_timeout', '0', true)")
        return True


# What applies status events to the deliveries: the engine registers it when Django starts
# (campaigns/apps.py), as django-anymail's tracking signal hands events to the app. So
# providers knows nothing of campaigns. Called as handler(account_id=, events=, source=),
# in a savepoint of its own, raising when the batch cannot be applied.
_status_handler = None


def register_status_handler(handler) -> None:
    global _status_handler
    _status_handler = handler


def apply_status_events(*, account_id: int, events: list[StatusEvent], source: str) -> None:
    if _status_handler is None:
        raise ImproperlyConfigured(
            "No status handler registered: is the campaigns app in INSTALLED_APPS?"
        )
    _status_handler(account_id=account_id, events=events, source=source)


# What keeps clients' replies (campaigns.replies), registered the same way. Called as
# handler(account=, replies=) inside the webhook's request; replies are few, so they are
# recorded at once rather than queued like status callbacks.
_reply_handler = None


def register_reply_handler(handler) -> None:
    global _reply_handler
    _reply_handler = handler


def record_replies(*, account, replies: list) -> int:
    if _reply_handler is None:
        raise ImproperlyConfigured(
            "No reply handler registered: is the campaigns app in INSTALLED_APPS?"
        )
    return _reply_handler(account=account, replies=replies)


def _apply(rows: list[tuple[int, int, list]]) -> dict[int, str]:
    """Apply the rows' reports, one batch per account; returns {row id: error} for rows that failed."""
    by_account: dict[int, list[tuple[int, list]]] = defaultdict(list)
    for pk, account_id, events in rows:
        by_account[account_id].append((pk, events))
    failed: dict[int, str] = {}
    for account_id, items in by_account.items():
        try:
            # apply_status_events runs in a savepoint: a failure undoes only this account's batch.
            apply_status_events(
                account_id=account_id,
                events=[event for _, events in items for event in from_json(events)],
                source=CALLBACK,
            )
        except (DatabaseError, ValueError, KeyError, TypeError):
            # Find the row that fails, one by one, so the others still go through.
            for pk, events in items:
                try:
                    apply_status_events(
                        account_id=account_id,
                        events=from_json(events),
                        source=CALLBACK,
                    )
                except (DatabaseError, ValueError, KeyError, TypeError) as error:
                    logger.exception("Callback %s for account %s cannot be applied", pk, account_id)
                    failed[pk] = f"{type(error).__name__}: {error}"
    return failed


def _hand_over() -> None:
    from django.core.cache import cache
    from django_q.tasks import async_task

    # At most one task a second per process (per installation with a shared cache).
    if cache.add("cascade:drain-callbacks", 1, timeout=1):
        async_task("providers.inbox.drain_callbacks", seconds=30, wait_for_lock=5)
