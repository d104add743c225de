"""May this recipient get this channel now? The one definition, for every path.

Fan-out decides in SQL, for a whole campaign at once; dispatch decides again at
send time, for the claimed batch, from the client rows it reads in bulk anyway
(consent may have been withdrawn while the message waited); the cascade decides
when it picks the next step; the builder's forecast counts the segment's clients. All four
take their rules from `rules_for`, and every rule carries both its renderings
side by side (a Python test on plain values, a SQL condition, a Q over clients), so they cannot
drift apart: tests/campaigns/test_eligibility.py runs both over every
combination and compares.

The SQL assumes the aliases of the fan-out query: `m` for campaigns_message and
`c` for clients_client (LEFT JOINed, so `c.id IS NULL` means no client).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import Q

from clients.channels import ADDRESS_FIELD_BY_CHANNEL, required_consent

# Why a recipient is skipped; stored as Delivery.error_code and mapped to partner answers
# (config/lcmanager/codes.py).
NO_ROUTE = "no_route"
NO_CLIENT = "no_client"
NO_CONSENT = "no_consent"
NO_ADDRESS = "no_address"


@dataclass
class Recipient:
    """Who a message is for, the one type the engine and the partner door share.

    The eligibility rules look at the client row's values (or None) and the message's
    addresses; the partner door adds the key it deduplicates a request by and a purpose
    that overrides the channel's; dispatch adds what rendering needs.
    """

    key: str = ""  # partner door: "client:<id>", "phone:<digits>", "lead:<id>", …
    client: object | None = None  # anything with the consent flags and push_tokens
    phone: str = ""
    email: str = ""
    purpose: str | None = None
    # The message as stored, for rendering at send time (campaigns.outgoing).
    title: str = ""
    text: str = ""
    variables: dict = field(default_factory=dict)
    template: object | None = None  # a one-off message's own template
    attachments: list = field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    code: str
    explanation: str
    holds: Callable[[Recipient], bool]
    sql: str  # true when the rule holds, over `m` and `c`
    client_q: Q  # the same over the clients table alone (a segment, before any message exists)


def _has_push_token(recipient: Recipient) -> bool:
    return bool(recipient.client is not None and recipient.client.push_tokens)


def rules_for(channel: str, purpose: str, routes) -> list[Rule]:
    """Every condition for `channel`, in the order their reasons are reported."""
    if channel not in routes:
        return [
            Rule(
                NO_ROUTE,
                f"No provider account serves {channel}.",
                lambda _r: False,
                "FALSE",
                Q(pk__in=[]),
            )
        ]
    rules = []
    flag = required_consent(channel, purpose)
    if flag is not None:
        rules.append(
            Rule(
                NO_CLIENT,
                "Not a known client, so no consent is on record.",
                lambda r: r.client is not None,
                "c.id IS NOT NULL",
                Q(),
            )
        )
        rules.append(
            Rule(
                NO_CONSENT,
                f"The client has not consented ({flag} is off).",
                lambda r: r.client is not None and bool(getattr(r.client, flag)),
                f"c.{flag} = TRUE",
                Q(**{flag: True}),
            )
        )
    address = ADDRESS_FIELD_BY_CHANNEL[channel]
    if address == "phone":
        rules.append(
            Rule(
                NO_ADDRESS,
                f"No phone number for {channel}.",
                lambda r: bool(r.phone),
                "m.phone <> ''",
                ~Q(phone=""),
            )
        )
    elif address == "email":
        rules.append(
            Rule(
                NO_ADDRESS,
                "No email address.",
                lambda r: bool(r.email),
                "m.email <> ''",
                ~Q(email=""),
            )
        )
    else:
        rules.append(
            Rule(
                NO_ADDRESS,
                "No push token.",
                _has_push_token,
                "c.id IS NOT NULL AND CAST(c.push_tokens AS TEXT) NOT IN ('[]', 'null', '')",
                ~Q(push_tokens=[]),
            )
        )
    return rules


def skip_reason(
    *, channel: str, purpose: str, client, phone: str, email: str, routes
) -> tuple[str, str]:
    """('', '') when the recipient may get this channel, else (code, explanation)."""
    recipient = Recipient(client=client, phone=phone or "", email=email or "")
    for rule in rules_for(channel, purpose, routes):
        if not rule.holds(recipient):
            return rule.code, rule.explanation
    return "", ""


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def eligible_sql(channel: str, purpose: str, routes) -> tuple[str, str, str]:
    """SQL for: may this message's recipient get `channel`? and, if not, why (code, text)."""
    rules = rules_for(channel, purpose, routes)
    condition = " AND ".join(f"({rule.sql})" for rule in rules)
    # The first rule that does not hold names the reason, as skip_reason does.
    code = (
        "CASE "
        + " ".join(f"WHEN NOT ({rule.sql}) THEN {_quoted(rule.code)}" for rule in rules)
        + " ELSE '' END"
    )
    text = (
        "CASE "
        + " ".join(f"WHEN NOT ({rule.sql}) THEN {_quoted(rule.explanation)}" for rule in rules)
        + " ELSE '' END"
    )
    return condition, code, text


def eligible_q(channel: str, purpose: str, routes) -> Q:
    """The same question over the clients table (phone and email are the client's own)."""
    q = Q()
    for rule in rules_for(channel, purpose, routes):
        q &= rule.client_q
    return q
