"""Queue the engine's tasks by dotted name: the one place the engine reaches the task queue.

A leaf: it imports models and django-q, never the engine's modules or `campaigns.tasks`,
so that services, statuses and the partner API can queue work without importing the
entry points that import them (one direction of dependencies: engine → this module;
`campaigns.tasks` → engine).
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django_q.tasks import async_task

from campaigns.models import Delivery
from providers.models import ProviderAccount
from providers.status import DeliveryStatus

FAN_OUT = "campaigns.tasks.fan_out"
DISPATCH_ACCOUNT = "campaigns.tasks.dispatch_account"


def enqueue_fan_out(campaign_id: int) -> None:
    async_task(FAN_OUT, campaign_id, task_name=f"fan-out-{campaign_id}")


def enqueue_dispatch(account_id: int) -> None:
    async_task(DISPATCH_ACCOUNT, account_id)


def kick_account(account_id: int, workers: int | None = None) -> None:
    """Start dispatchers for an account; at most one kick per account every two seconds."""
    if not cache.add(f"cascade:kick:{account_id}", 1, timeout=2):
        return
    for _ in range(workers or 1):
        enqueue_dispatch(account_id)


def kick_accounts(account_ids) -> None:
    for account_id in account_ids:
        kick_account(account_id)


def kick_campaign(campaign_id: int) -> None:
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
