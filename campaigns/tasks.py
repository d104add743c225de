"""django-q2 entry points: thin, idempotent, ids only. The logic is in the modules they call."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django_q.tasks import async_task

from campaigns import dispatch, fanout, services


def fan_out(campaign_id: int) -> None:
    fanout.fan_out(campaign_id)
    kick_campaign(campaign_id)


def enqueue_fan_out(campaign_id: int) -> None:
    async_task("campaigns.tasks.fan_out", campaign_id, task_name=f"fan-out-{campaign_id}")


def dispatch_account(account_id: int) -> int:
    sent = dispatch.dispatch_account(account_id)
    if dispatch.has_due_work(account_id):
        # More than one budget's worth: hand the rest to the next free worker.
        async_task("campaigns.tasks.dispatch_account", account_id)
    return sent


def kick_account(account_id: int, workers: int | None = None) -> None:
    """Start dispatchers for an account; at most one kick per account every two seconds."""
    if not cache.add(f"cascade:kick:{account_id}", 1, timeout=2):
        return
    for _ in range(workers or 1):
        async_task("campaigns.tasks.dispatch_account", account_id)


def kick_campaign(campaign_id: int) -> None:
    from campaigns.models import Delivery
    from providers.models import ProviderAccount
    from providers.status import DeliveryStatus

    account_ids = set(
        Delivery.objects.filter(campaign_id=campaign_id, status=DeliveryStatus.QUEUED)
        .values_list("account_id", flat=True)
        .distinct()
        .order_by()
    ) - {None}
    # A rate-limited account gets one dispatcher: more would only wait for the same
    # tokens, holding workers other accounts need.
    limited = set(
        ProviderAccount.objects.filter(pk__in=account_ids, rate_limit_per_second__gt=0).values_list(
            "pk", flat=True
        )
    )
    for account_id in account_ids:
        workers = 1 if account_id in limited else settings.Q_CLUSTER["workers"]
        kick_account(account_id, workers=workers)


def sweep() -> dict:
    # Runs every minute; keeps sweeping for most of that minute so statuses,
    # retries and cascades move within seconds, not minutes.
    return services.sweep(seconds=45, interval=2)
