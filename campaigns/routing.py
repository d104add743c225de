"""Which provider account serves a channel, and whether a recipient can take it."""

from __future__ import annotations

from dataclasses import dataclass

from clients.channels import ADDRESS_FIELD_BY_CHANNEL, required_consent
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


def skip_reason(
    *, channel: str, purpose: str, client, phone: str, email: str, routes
) -> tuple[str, str]:
    """('', '') when the recipient may get this channel, else (code, explanation)."""
    if channel not in routes:
        return "no_route", f"No provider account serves {channel}."
    flag = required_consent(channel, purpose)
    if flag is not None:
        if client is None:
            return "no_client", "Not a known client, so no consent is on record."
        if not getattr(client, flag):
            return "no_consent", f"The client has not consented ({flag} is off)."
    address_field = ADDRESS_FIELD_BY_CHANNEL[channel]
    if address_field == "phone" and not phone:
        return "no_address", f"No phone number for {channel}."
    if address_field == "email" and not email:
        return "no_address", "No email address."
    if address_field == "push_tokens" and not (client and client.push_tokens):
        return "no_address", "No push token."
    return "", ""
