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
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns import caps, ratelimit
from campaigns.claims import claim, claim_size, lease_seconds, new_claim_token
from campaigns.models import Delivery
from campaigns.outcomes import (
    REPORTED_FIELDS,
    Changes,
    Hold,
    commit_changes,
    record_results,
    request_failed,
    retry_later,
    wait_until,
)
from campaigns.outgoing import load_batch, outgoing_for, send_later, send_time_skip_reason
from campaigns.routing import routes_for
from providers.base import ConfigurationError, ProviderError
from providers.models import ProviderAccount
from providers.registry import get_backend
from providers.status import DeliveryStatus

logger = logging.getLogger(__name__)


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
    claimed, deliveries = deliveries, [d for d in deliveries if d.pk not in ineligible]
    # After the eligibility rule, so a client without consent takes no cap slot.
    later = send_later(deliveries, timezone.now())
    for delivery in deliveries:
        when, reason = later.get(delivery.pk, (None, ""))
        if reason == caps.SKIP_REASON and not is_triggered(delivery.campaign):
            ineligible[delivery.pk] = (caps.SKIP_REASON, str(_("Frequency cap reached")))
            del later[delivery.pk]
    skipped = [d for d in claimed if d.pk in ineligible]
    waiting = [d for d in deliveries if d.pk in later]
    deliveries = [d for d in deliveries if d.pk not in ineligible and d.pk not in later]
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
    changes = Changes()
    with transaction.atomic():
        # A callback may have beaten us here (the gateway reported before we
        # wrote its answer), or the sweeper taken back an expired claim and
        # another worker claimed it again: start from the rows as they are now, locked.
        fresh = {
            row["id"]: row
            for row in Delivery.objects.select_for_update()
            .filter(pk__in=[d.pk for d in deliveries + skipped + waiting])
            .order_by("pk")
            .values("id", "claim_token", *REPORTED_FIELDS)
        }
        hold = Hold()
        for delivery in deliveries + skipped + waiting:
            row = fresh.get(delivery.pk, {})
            for name in REPORTED_FIELDS:
                setattr(delivery, name, row.get(name, getattr(delivery, name)))
            if delivery.status == DeliveryStatus.SUBMITTING:
                if not token or row.get("claim_token") == token:
                    hold.ours.add(delivery.pk)
                else:
                    # Another worker's claim now: nothing of ours may be written to it.
                    hold.others.add(delivery.pk)
        for delivery in skipped:
            if delivery.pk not in hold.ours:
                continue  # the sweeper or a cancel took it back meanwhile
            code, text = ineligible[delivery.pk]
            changes.move(delivery, DeliveryStatus.SKIPPED, error=text, force=True)
            delivery.error_code = code
            delivery.native_channels = []  # a native cascade of an earlier attempt is void
            changes.event(delivery, delivery.status, "system", provider_status=code)
            changes.fall_through.append(delivery)  # the cascade tries the next channel
        for delivery in waiting:
            if delivery.pk in hold.ours:
                when, reason = later[delivery.pk]
                wait_until(changes, delivery, when, reason)
        for chunk, outcome in outcomes:
            if isinstance(outcome, ConfigurationError):
                for delivery in chunk:
                    if delivery.pk in hold.ours:
                        changes.move(
                            delivery, DeliveryStatus.FAILED, error=str(outcome), force=True
                        )
                        delivery.error_code = "configuration"
            elif isinstance(outcome, ProviderError):
                request_failed(changes, chunk, outcome, routes, hold, backend=backend)
            else:
                record_results(changes, chunk, outcome, routes, hold, backend=backend)
        for delivery in deliveries:
            if delivery.pk not in changes.rows and delivery.pk in hold.ours:
                retry_later(changes, delivery, "No result from the backend", routes)
        commit_changes(changes)


def is_triggered(campaign) -> bool:
    return campaign is not None and campaign.kind == campaign.Kind.TRIGGER


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
