"""Which provider accounts serve a channel (whether a recipient may take it: campaigns.eligibility)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from providers.models import ChannelRoute, ProviderAccount


@dataclass(frozen=True)
class Route:
    channel: str
    account_ids: tuple[int, ...]  # in priority order; the first is used, the rest are failover

    @property
    def primary(self) -> int:
        return self.account_ids[0]


def routes_for(operator_id: int) -> dict[str, Route]:
    """Enabled accounts per channel, in priority order. One query."""
    accounts: dict[str, list[int]] = {}
    rows = (
        ChannelRoute.objects.filter(operator_id=operator_id, account__enabled=True)
        .order_by("channel", "priority")
        .values_list("channel", "account_id")
    )
    for channel, account_id in rows:
        accounts.setdefault(channel, []).append(account_id)
    return {channel: Route(channel, tuple(ids)) for channel, ids in accounts.items()}


# Routes as this process last read them, per operator, for ROUTE_CACHE_SECONDS: the
# partner API's send reads them on every request, and they change a few times a year.
# Saving or deleting a route or an account here drops the copy at once; other processes
# see the change within the second (as the webhook's account cache does). The engine's
# own batches keep reading routes_for: one query per batch is nothing there.
ROUTE_CACHE_SECONDS = 1.0
_cached_routes: dict[int, tuple[float, dict[str, Route]]] = {}


def cached_routes_for(operator_id: int) -> dict[str, Route]:
    now = time.monotonic()
    cached = _cached_routes.get(operator_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    routes = routes_for(operator_id)
    _cached_routes[operator_id] = (now + ROUTE_CACHE_SECONDS, routes)
    return routes


def reset_route_cache() -> None:
    """Forget every operator's routes (tests, or after changing routes outside the ORM)."""
    _cached_routes.clear()


@receiver([post_save, post_delete], sender=ChannelRoute)
@receiver([post_save, post_delete], sender=ProviderAccount)
def forget_routes(sender, instance, **kwargs) -> None:
    _cached_routes.pop(instance.operator_id, None)
