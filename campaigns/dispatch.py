"""Dispatch: claim due deliveries of one account, render, send, write the outcome back.

Record first, send, record the outcome: rows are claimed `queued → submitting`
with a lease by one conditional UPDATE (FOR UPDATE SKIP LOCKED on PostgreSQL,
so any number of workers can share an account), sent in one backend call, and
written back in bulk. The number of queries per batch does not depend on its
size. A worker that dies mid-batch leaves `submitting` rows whose lease the
sweeper expires: resubmitted under the same idempotency key where the gateway
deduplicates, otherwise left waiting for the gateway's report (never blindly
resent).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace

from django.conf import settings
from django.db import connection, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from campaigns import counters, ratelimit, windows
from campaigns.eligibility import skip_reason
from campaigns.fanout import db_time
from campaigns.models import Campaign, Delivery, Message, MessageTemplate
from campaigns.rendering import content_for, placeholders, render
from campaigns.routing import routes_for
from campaigns.statuses import Changes, commit_changes, load
from clients.channels import CONSENT_FLAGS
from clients.models import Card, Client, Operator
from providers.base import ConfigurationError, OutgoingMessage, ProviderError, after_failure
from providers.limits import CLAIM_TIME_FOR_REQUESTS
from providers.models import ProviderAccount
from providers.registry import get_backend
from providers.status import DeliveryStatus

logger = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 15 * 60
FAILOVER_AFTER_ATTEMPTS = 3  # transient failures in a row before trying the next account
# Most gateways settle within seconds; polling right after submit would only
# learn "in progress" and then wait out the once-a-minute rule.
FIRST_POLL_SECONDS = 5


def backoff(attempts: int) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's 'full jitter')."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


def new_claim_token() -> str:
    return uuid.uuid4().hex


def claim(account_id: int, limit: int, *, token: str = "") -> list[int]:
    """Take up to `limit` due deliveries of running campaigns (or one-off messages); one statement.

    The rows carry `token` (a fresh one if none is given) until their outcome is written:
    send_batch writes only to rows that still carry it.
    """
    now = timezone.now()
    token = token or new_claim_token()
    lock = " FOR UPDATE OF d SKIP LOCKED" if connection.vendor == "postgresql" else ""
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
            SELECT d.id FROM campaigns_delivery d
            LEFT JOIN campaigns_campaign c ON c.id = d.campaign_id
            WHERE d.account_id = %s AND d.status = %s
              AND d.next_attempt_at <= %s
              AND (d.campaign_id IS NULL OR c.state = %s){outside_window}
            LIMIT %s{lock}
        )
        UPDATE campaigns_delivery SET status = %s, lease_expires_at = %s, attempts = attempts + 1,
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


MESSAGE_FIELDS = (
    "phone",
    "email",
    "title",
    "text",
    "variables",
    "purpose",
    "client_id",
    "template_id",
    "attachments",
)
CLIENT_FIELDS = ("first_name", "last_name", "middle_name", "push_tokens", *CONSENT_FLAGS)
TEMPLATE_TEXT_FIELDS = ("title", "text", "html", "sms_text", "viber_text")
CARD_VARIABLES = {"bonus", "card"}


@dataclass
class Recipient:
    """What rendering and routing need of a delivery's message and client, read as plain values."""

    phone: str
    email: str
    title: str
    text: str
    variables: dict
    purpose: str
    client: SimpleNamespace | None  # first_name, …, consent flags, bonus, card
    template: MessageTemplate | None = None  # a one-off message's own template
    attachments: list | None = None


def load_batch(ids: list[int]) -> list[Delivery]:
    """The claimed deliveries, each with `.recipient`, `.campaign` and `.operator` attached.

    Messages and clients are read as plain values and campaigns, templates and
    operators once per batch: building three Django models per row cost more
    than all the SQL of a claim.
    """
    deliveries = load(Delivery.objects.filter(pk__in=ids).order_by("pk"))
    messages = {
        row["id"]: row
        for row in Message.objects.filter(pk__in={d.message_id for d in deliveries}).values(
            "id", *MESSAGE_FIELDS
        )
    }
    campaigns = Campaign.objects.select_related("template").in_bulk(
        {d.campaign_id for d in deliveries if d.campaign_id}
    )
    own_templates = MessageTemplate.objects.in_bulk(
        {m["template_id"] for m in messages.values() if m["template_id"]}
    )
    clients = Client.objects.filter(
        pk__in={m["client_id"] for m in messages.values() if m["client_id"]}
    )
    card_fields = ()
    templates = [c.template for c in campaigns.values()] + list(own_templates.values())
    texts = [m["text"] for m in messages.values()] + [
        getattr(template, name) for template in templates for name in TEMPLATE_TEXT_FIELDS
    ]
    if CARD_VARIABLES & {name.lower() for text in texts for name in placeholders(text)}:
        # Two correlated subqueries per client: only when some text asks for them.
        best_card = Card.objects.filter(
            client_id=OuterRef("pk"), status=Card.Status.ACTIVE
        ).order_by("-bonus")
        clients = clients.annotate(
            bonus=Subquery(best_card.values("bonus")[:1]),
            card=Subquery(best_card.values("number")[:1]),
        )
        card_fields = ("bonus", "card")
    clients = {
        row.pop("id"): SimpleNamespace(**{"bonus": None, "card": None, **row})
        for row in clients.values("id", *CLIENT_FIELDS, *card_fields)
    }
    operators = Operator.objects.only("name").in_bulk({d.operator_id for d in deliveries})
    for delivery in deliveries:
        message = messages[delivery.message_id]
        delivery.recipient = Recipient(
            phone=message["phone"],
            email=message["email"],
            title=message["title"],
            text=message["text"],
            variables=message["variables"] or {},
            purpose=message["purpose"],
            client=clients.get(message["client_id"]),
            template=own_templates.get(message["template_id"]),
            attachments=message["attachments"] or [],
        )
        delivery.campaign = campaigns.get(delivery.campaign_id)
        delivery.operator = operators[delivery.operator_id]
    return deliveries


def variables_for(delivery: Delivery) -> dict:
    recipient = delivery.recipient
    client = recipient.client
    values = {
        "operator": delivery.operator.name,
        "phone": recipient.phone,
        "email": recipient.email,
    }
    if client is not None:
        values.update(
            first_name=client.first_name,
            last_name=client.last_name,
            middle_name=client.middle_name,
            bonus=client.bonus,
            card=client.card,
        )
    values.update(recipient.variables)
    return values


def send_time_skip_reason(delivery: Delivery, routes) -> tuple[str, str]:
    """Why this delivery may no longer go out on its channel, or ('', '')."""
    recipient = delivery.recipient
    campaign = delivery.campaign
    return skip_reason(
        channel=delivery.channel,
        purpose=campaign.purpose if campaign else recipient.purpose,
        client=recipient.client,
        phone=recipient.phone,
        email=recipient.email,
        routes=routes,
    )


def native_fallbacks(delivery: Delivery, backend, account: ProviderAccount, routes) -> list[str]:
    """Channels after this step that this same gateway can run itself, in cascade order."""
    campaign = delivery.campaign
    if campaign is None or not getattr(backend, "supports_native_cascade", False):
        return []
    rest = list(campaign.channels)[delivery.step + 1 :]
    fallbacks = []
    for channel in rest:
        route = routes.get(channel)
        if route is None or route.primary != account.pk or channel not in backend.channels:
            break  # the gateway's cascade must be the remaining cascade, in order
        code, _ = skip_reason(
            channel=channel,
            purpose=campaign.purpose,
            client=delivery.recipient.client,
            phone=delivery.recipient.phone,
            email=delivery.recipient.email,
            routes=routes,
        )
        if code:
            break
        fallbacks.append(channel)
    return fallbacks


def first_image_url(attachments: list | None) -> str:
    """A partner's Files: the first image becomes the Viber picture (other files have no slot)."""
    for attachment in attachments or []:
        if "image" in str(attachment.get("Type") or "").lower() and attachment.get("Url"):
            return str(attachment["Url"])
    return ""


def outgoing_for(delivery: Delivery, backend, account, routes) -> OutgoingMessage:
    recipient = delivery.recipient
    campaign = delivery.campaign
    content = content_for(
        delivery.channel,
        template=campaign.template if campaign else recipient.template,
        title=recipient.title,
        text=recipient.text,
    )
    if delivery.channel == "viber" and not content.image_url:
        content.image_url = first_image_url(recipient.attachments)
    variables = variables_for(delivery)
    fallbacks = native_fallbacks(delivery, backend, account, routes)
    delivery.native_channels = fallbacks
    client = recipient.client
    return OutgoingMessage(
        delivery_id=delivery.pk,
        idempotency_key=delivery.idempotency_key,
        channel=delivery.channel,
        phone=recipient.phone,
        email=recipient.email,
        push_tokens=list(client.push_tokens) if client else [],
        title=render(content.title, variables),
        text=render(content.text, variables),
        html=render(content.html, variables),
        sms_text=render(content.sms_text, variables),
        button_caption=content.button_caption,
        button_url=content.button_url,
        image_url=content.image_url,
        fallback_channels=fallbacks,
        ttl_minutes=campaign.ttl_minutes if campaign else 1440,
        callback_url=account.callback_url(),
        is_promotional=(campaign.purpose if campaign else recipient.purpose) == "promotional",
    )


# What a gateway report may have written while the batch was on the wire.
REPORTED_FIELDS = (
    "status",
    "price",
    "currency",
    "parts",
    "error_message",
    "delivered_at",
    "read_at",
    "final_at",
)


def send_batch(account: ProviderAccount, ids: list[int], *, token: str = "") -> None:
    """Send claimed deliveries, `max_batch` to a request, and write the outcome once.

    A claim may span several gateway requests: the database work (load, update,
    events, counters) is paid once per claim, in a constant number of queries.
    With the claim's `token`, outcomes are written only to rows that still carry
    it (without one, to rows still submitting: a test's or a benchmark's claim).
    """
    deliveries = load_batch(ids)
    if not deliveries:
        return
    backend = get_backend(account)
    routes = routes_for(account.operator_id)
    # Consent may have been withdrawn (or the address or route removed) while the
    # delivery waited in the queue: decided again here, from the client rows just read.
    ineligible = {}
    for delivery in deliveries:
        code, text = send_time_skip_reason(delivery, routes)
        if code:
            ineligible[delivery.pk] = (code, text)
    skipped = [d for d in deliveries if d.pk in ineligible]
    deliveries = [d for d in deliveries if d.pk not in ineligible]
    outgoing = [outgoing_for(delivery, backend, account, routes) for delivery in deliveries]
    size = backend.batch_size()
    outcomes = []  # (chunk, results or the error), written together below
    for start in range(0, len(outgoing), size):
        chunk = deliveries[start : start + size]
        try:
            outcomes.append((chunk, backend.send(outgoing[start : start + size])))
        except ProviderError as error:
            logger.warning("%s: request of %d failed: %s", account.name, len(chunk), error)
            outcomes.append((chunk, error))
        except ConfigurationError as error:
            # Nothing can go through this account until someone fixes it: the
            # steps fail so the cascade can try another channel; the log says why.
            logger.error("%s is misconfigured: %s", account.name, error)
            outcomes.append((deliveries[start:], error))
            break
    idempotent = backend.idempotent_submit
    changes = Changes()
    with transaction.atomic():
        # A callback may have beaten us here (the gateway reported before we
        # wrote its answer), or the sweeper taken back an expired claim and
        # another worker claimed it again: start from the rows as they are now, locked.
        fresh = {
            row["id"]: row
            for row in Delivery.objects.select_for_update()
            .filter(pk__in=[d.pk for d in deliveries + skipped])
            .order_by("pk")
            .values("id", "claim_token", *REPORTED_FIELDS)
        }
        for delivery in deliveries + skipped:
            row = fresh.get(delivery.pk, {})
            for name in REPORTED_FIELDS:
                setattr(delivery, name, row.get(name, getattr(delivery, name)))
            delivery._loaded_status = delivery.status
            submitting = delivery.status == DeliveryStatus.SUBMITTING
            held = not token or row.get("claim_token") == token
            delivery.ours = submitting and held
            # Another worker's claim now: nothing of ours may be written to it.
            delivery.claimed_by_other = submitting and not held
        for delivery in skipped:
            if not delivery.ours:
                continue  # the sweeper or a cancel took it back meanwhile
            code, text = ineligible[delivery.pk]
            changes.move(delivery, DeliveryStatus.SKIPPED, error=text, force=True)
            delivery.error_code = code
            delivery.native_channels = []  # a native cascade of an earlier attempt is void
            changes.event(delivery, delivery.status, "system", provider_status=code)
            changes.fall_through.append(delivery)  # the cascade tries the next channel
        for chunk, outcome in outcomes:
            if isinstance(outcome, ConfigurationError):
                for delivery in chunk:
                    if delivery.ours:
                        changes.move(
                            delivery, DeliveryStatus.FAILED, error=str(outcome), force=True
                        )
                        delivery.error_code = "configuration"
            elif isinstance(outcome, ProviderError):
                request_failed(changes, chunk, outcome, routes, idempotent=idempotent)
            else:
                record_results(changes, chunk, outcome, routes, idempotent=idempotent)
        for delivery in deliveries:
            if delivery.pk not in changes.rows and delivery.ours:
                retry_later(changes, delivery, "No result from the backend", routes)
        commit_changes(changes)


def submit_failed(
    changes: Changes,
    delivery: Delivery,
    *,
    permanent: bool,
    may_have_reached: bool,
    idempotent: bool,
    error: str,
    code: str,
    routes,
    final: str = DeliveryStatus.FAILED,
) -> None:
    """One failed submit of a delivery we hold, decided by providers.base.after_failure."""
    delivery.error_code = code[:50]
    decision = after_failure(
        permanent=permanent, may_have_reached=may_have_reached, idempotent=idempotent
    )
    if decision == "fail":
        changes.move(delivery, final, error=error, force=True)
    elif decision == "wait":
        wait_for_report(changes, delivery, error)
    else:
        if may_have_reached:
            # Harmless to resend under the same key to the same gateway only.
            delivery.may_be_at_gateway = True
        retry_later(changes, delivery, error, routes)


def wait_for_report(changes: Changes, delivery: Delivery, error: str) -> None:
    """The gateway may have the message and cannot tell a resend from a new one: ask it
    (poll or callback) and let the TTL expire the step if it never says."""
    changes.move(
        delivery,
        DeliveryStatus.UNKNOWN,
        error=(
            f"{error} - the gateway may have taken the message and has no idempotency key, "
            "so it is not resent; waiting for the gateway's report until the TTL."
        ),
        force=True,
    )
    delivery.lease_expires_at = None
    delivery.next_attempt_at = changes.now + timedelta(seconds=FIRST_POLL_SECONDS)


def request_failed(
    changes: Changes, chunk: list[Delivery], error: ProviderError, routes, *, idempotent: bool
) -> None:
    for delivery in chunk:
        if not delivery.ours:
            continue  # no longer ours to change
        submit_failed(
            changes,
            delivery,
            permanent=error.permanent,
            may_have_reached=error.may_have_reached,
            idempotent=idempotent,
            error=str(error),
            code=error.code,
            routes=routes,
        )
        changes.event(
            delivery,
            delivery.status,
            "submit",
            provider_status=error.code,
            payload=error.response_text[:2000],
        )


def record_results(
    changes: Changes, chunk: list[Delivery], results, routes, *, idempotent: bool
) -> None:
    by_id = {delivery.pk: delivery for delivery in chunk}
    now = changes.now
    for result in results:
        delivery = by_id.get(result.delivery_id)
        if delivery is None:
            continue
        if delivery.claimed_by_other:
            # Our lease ran out and another worker holds the row now: its outcome stands;
            # what the gateway told us is kept as an event.
            submit_event(changes, delivery, result)
            continue
        ours = delivery.ours
        changes.touch(delivery)
        delivery.lease_expires_at = None
        if result.accepted:
            # The gateway's message id is what status queries and callbacks use;
            # per-channel ids of a native cascade stay in the submit event's payload.
            delivery.provider_message_id = result.provider_message_id[:100]
            delivery.submitted_at = now
            delivery.next_attempt_at = now + timedelta(seconds=FIRST_POLL_SECONDS)
            delivery.parts = result.parts or delivery.parts
            changes.set_price(delivery, result.price, result.currency)
            status = (
                result.status if result.status in DeliveryStatus.values else DeliveryStatus.SENT
            )
            # Forced only out of our own claim; a report that came first stands.
            changes.move(delivery, DeliveryStatus.SENT, force=ours)
            if status != DeliveryStatus.SENT:
                changes.move(delivery, status)
        elif not ours:
            pass  # a report or the sweeper already moved it on
        else:
            final = (
                result.status
                if result.status
                in (DeliveryStatus.REJECTED, DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERABLE)
                else DeliveryStatus.FAILED
            )
            submit_failed(
                changes,
                delivery,
                permanent=result.permanent,
                may_have_reached=result.may_have_reached,
                idempotent=idempotent,
                error=result.error_message,
                code=result.error_code,
                routes=routes,
                final=final,
            )
        submit_event(changes, delivery, result)


def submit_event(changes: Changes, delivery: Delivery, result) -> None:
    """What the gateway answered for one delivery, kept whoever holds the row now."""
    changes.event(
        delivery,
        delivery.status,
        "submit",
        provider_status=result.error_code or "accepted",
        payload=result.raw[:4000],
    )


def retry_later(changes: Changes, delivery: Delivery, error: str, routes) -> None:
    """Back to the queue with backoff, on the next account after repeated failures, or expired.

    A delivery that may be at its gateway already stays on that account: another
    gateway would not know its idempotency key and would send it a second time.
    """
    changes.touch(delivery)
    delivery.lease_expires_at = None
    delivery.error_message = error[:500]
    delay = backoff(delivery.attempts)
    if delivery.expires_at and changes.now + timedelta(seconds=delay) > delivery.expires_at:
        changes.move(
            delivery,
            DeliveryStatus.EXPIRED,
            error=f"TTL passed while retrying: {error}",
            force=True,
        )
        return
    route = routes.get(delivery.channel)
    if (
        route
        and not delivery.may_be_at_gateway
        and delivery.attempts >= FAILOVER_AFTER_ATTEMPTS
        and len(route.account_ids) > 1
    ):
        accounts = list(route.account_ids)
        current = accounts.index(delivery.account_id) if delivery.account_id in accounts else -1
        delivery.account_id = accounts[(current + 1) % len(accounts)]
        delivery.attempts = 0
        delay = 0
    delivery.status = DeliveryStatus.QUEUED
    delivery.next_attempt_at = changes.now + timedelta(seconds=delay)


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


# The longest a dispatcher sleeps for a rate-limited account's tokens before it gives its
# worker back: a slow account's dispatchers must not hold every worker while other
# accounts (an SMS fall-through) have work. The task queues itself again (tasks.py).
RATE_WAIT_SECONDS = 1.0


def dispatch_account(account_id: int, *, budget_seconds: float | None = None) -> int:
    """Send this account's due deliveries for up to `budget_seconds`; returns how many were sent."""
    account = ProviderAccount.objects.filter(pk=account_id, enabled=True).first()
    if account is None:
        return 0
    budget = budget_seconds if budget_seconds is not None else settings.Q_CLUSTER["timeout"] / 2
    started = time.monotonic()
    deadline = started + budget
    backend = get_backend(account)
    sent = 0
    while time.monotonic() < deadline:
        # What is left of the task before django-q2 kills it, and never more than a lease.
        task_left = settings.Q_CLUSTER["timeout"] - (time.monotonic() - started)
        batch_size = claim_size(account, backend, min(task_left, lease_seconds()))
        if account.rate_limit_per_second and not ratelimit.take(
            account.pk,
            account.rate_limit_per_second,
            batch_size,
            deadline=deadline,
            max_wait=RATE_WAIT_SECONDS,
        ):
            break
        token = new_claim_token()
        ids = claim(account.pk, batch_size, token=token)
        if not ids:
            break
        send_batch(account, ids, token=token)
        sent += len(ids)
    return sent
