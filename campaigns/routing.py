"""Which provider accounts serve a channel (whether a recipient may take it: campaigns.eligibility)."""

from __future__ import annotations

from dataclasses import dataclass

from providers.models import ChannelRoute


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
