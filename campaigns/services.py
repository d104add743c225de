"""Campaign control and the sweeper: the functions the admin, pages, API and tasks call.

State machine: draft → scheduled → running ⇄ paused → done, and any of
draft/scheduled/running/paused → cancelled. Launching fans the audience out
(in a task); pausing stops claims at once (in-flight batches finish);
cancelling turns every delivery not yet handed to a gateway into `cancelled`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns import counters, queue, recurring, triggers, windows, winners
from campaigns.audience import validate_segment
from campaigns.fanout import db_time
from campaigns.models import (
    VARIANT_LABELS,
    AudienceListEntry,
    Campaign,
    CampaignVariant,
    Delivery,
    Message,
    MessageTemplate,
)
from campaigns.outcomes import Changes, commit_changes
from campaigns.statuses import apply_status_events
from clients.channels import Channel
from providers.base import ProviderError, ProviderRef
from providers.inbox import drain_callbacks
from providers.models import ProviderAccount
from providers.registry import get_backend
from providers.status import DeliveryStatus

logger = logging.getLogger(__name__)

__all__ = ["apply_status_events", "cancel", "launch", "pause", "resume", "sweep"]

POLL_INTERVAL_SECONDS = 60  # the cascade gateway refuses an identical request within a minute
POLL_BATCH = 200


class TransitionError(ValidationError):
    pass


def _set_state(
    campaign_id: int, allowed_from: tuple[str, ...], new_state: str, **fields
) -> Campaign:
    with transaction.atomic():
        # NO KEY: a claim or a counter update committing meanwhile checks its foreign key to
        # this row (KEY SHARE); a plain FOR UPDATE would wait on it while it waits on us.
        campaign = Campaign.objects.select_for_update(no_key=True).get(pk=campaign_id)
        if campaign.state not in allowed_from:
            raise TransitionError(
                _("A %(state)s campaign cannot become %(new_state)s.")
                % {"state": campaign.get_state_display().lower(), "new_state": new_state}
            )
        campaign.state = new_state
        for name, value in fields.items():
            setattr(campaign, name, value)
        campaign.save()
    return campaign


def save_draft(
    *,
    operator,
    user,
    campaign_id: int | None = None,
    name: str,
    template=None,
    new_text: str = "",
    channels: list[str],
    audience_kind: str,
    segment: dict | None = None,
    list_entries: list | None = None,
    scheduled_at=None,
    send_window: tuple | None = None,
    ttl_minutes: int = 1440,
    read_is_final: bool = False,
    lifecycle: dict | None = None,
    variant_templates: list | None = None,
) -> Campaign:
    """Create or change a draft campaign as the builder page describes it; one transaction.

    `lifecycle` holds the kind, trigger, recurrence, cap and experiment fields
    (CampaignForm.lifecycle); `variant_templates`, when given, are variants B, C, …
    (variant A is the campaign's template) and replace the campaign's variants.

    `new_text` makes a template of its own when no template is picked;
    `list_entries` (unsaved AudienceListEntry rows) replace the list when given.
    """
    with transaction.atomic():
        if campaign_id is None:
            campaign = Campaign(operator=operator, created_by=user, source=Campaign.Source.PAGE)
        else:
            campaign = Campaign.objects.select_for_update(no_key=True).get(
                pk=campaign_id, operator=operator
            )
            if campaign.state != Campaign.State.DRAFT:
                raise TransitionError(_("Only a draft can be edited."))
        if template is None:
            base = name[:180]
            taken = set(
                MessageTemplate.objects.filter(
                    operator=operator, name__startswith=base
                ).values_list("name", flat=True)
            )
            template_name = next(
                candidate
                for candidate in (base, *(f"{base} ({n})" for n in range(2, 1000)))
                if candidate not in taken
            )
            template = MessageTemplate.objects.create(
                operator=operator, name=template_name, text=new_text
            )
        campaign.name = name
        campaign.template = template
        campaign.channels = list(channels)
        campaign.audience_kind = audience_kind
        campaign.segment = segment or {}
        campaign.scheduled_at = scheduled_at
        campaign.send_window_start, campaign.send_window_end = send_window or (None, None)
        campaign.ttl_minutes = ttl_minutes
        campaign.read_is_final = read_is_final
        for name, value in (lifecycle or {}).items():
            setattr(campaign, name, value)
        validate_for_launch(campaign)
        campaign.save()
        if variant_templates is not None:
            CampaignVariant.objects.filter(campaign=campaign).delete()
            chosen = [template, *variant_templates] if campaign.ab_mode != "none" else []
            CampaignVariant.objects.bulk_create(
                CampaignVariant(
                    campaign=campaign,
                    label=label,
                    template=chosen_template,
                    weight=100 // len(chosen),
                )
                for label, chosen_template in zip(VARIANT_LABELS, chosen, strict=False)
            )
        if list_entries is not None:
            AudienceListEntry.objects.filter(campaign=campaign).delete()
            for entry in list_entries:
                entry.campaign = campaign
            AudienceListEntry.objects.bulk_create(list_entries, batch_size=2000)
    return campaign


def validate_for_launch(campaign: Campaign) -> None:
    if not campaign.channels:
        raise ValidationError(_("Choose at least one channel."))
    unknown = [c for c in campaign.channels if c not in Channel.values]
    if unknown:
        raise ValidationError(
            _("Unknown channels: %(channels)s.") % {"channels": ", ".join(unknown)}
        )
    if len(set(campaign.channels)) != len(campaign.channels):
        raise ValidationError(_("A channel may appear only once in the cascade."))
    if campaign.audience_kind == Campaign.AudienceKind.SEGMENT:
        validate_segment(campaign.segment or {})
    if campaign.kind == Campaign.Kind.TRIGGER:
        validate_trigger(campaign)
    if campaign.kind == Campaign.Kind.RECURRING:
        validate_recurrence(campaign)


def validate_recurrence(campaign: Campaign) -> None:
    if campaign.recurrence not in Campaign.Recurrence.values:
        raise ValidationError(_("Choose how often the campaign repeats."))
    if campaign.recurrence_time is None:
        raise ValidationError(_("Choose the time of day each run starts."))
    if campaign.audience_kind != Campaign.AudienceKind.SEGMENT:
        raise ValidationError(_("A recurring campaign's audience is a segment, not a list."))
    day = campaign.recurrence_day
    if campaign.recurrence == Campaign.Recurrence.WEEKLY and not (day is not None and day <= 6):
        raise ValidationError(_("Choose the day of the week."))
    if campaign.recurrence == Campaign.Recurrence.MONTHLY and not (day and 1 <= day <= 28):
        raise ValidationError(_("Choose the day of the month, 1 to 28."))


def validate_trigger(campaign: Campaign) -> None:
    trigger = Campaign.Trigger
    if campaign.trigger not in trigger.values:
        raise ValidationError(_("Choose what triggers the campaign."))
    if campaign.audience_kind != Campaign.AudienceKind.SEGMENT:
        raise ValidationError(_("A triggered campaign's audience is a segment, not a list."))
    if campaign.trigger in (trigger.BONUS_EXPIRING, trigger.NO_PURCHASE) and not (
        campaign.trigger_days
    ):
        raise ValidationError(_("Say within how many days (at least 1)."))
    hour = campaign.trigger_local_hour
    if hour is not None and not 0 <= hour <= 23:
        raise ValidationError(_("The local hour is from 0 to 23."))


def launch(*, campaign_id: int, at=None) -> Campaign:
    """Start now, or at `at` (the sweeper starts scheduled campaigns when due)."""
    campaign = Campaign.objects.get(pk=campaign_id)
    validate_for_launch(campaign)
    now = timezone.now()
    if campaign.kind == Campaign.Kind.RECURRING:
        # Running from now on; its runs start at their times (campaigns/recurring.py).
        return _set_state(
            campaign_id,
            (Campaign.State.DRAFT, Campaign.State.SCHEDULED),
            Campaign.State.RUNNING,
            launched_at=now,
            next_run_at=recurring.next_run(campaign, max(now, at or now)),
        )
    if at is not None and at > now:
        return _set_state(
            campaign_id, (Campaign.State.DRAFT,), Campaign.State.SCHEDULED, scheduled_at=at
        )
    campaign = _set_state(
        campaign_id,
        (Campaign.State.DRAFT, Campaign.State.SCHEDULED),
        Campaign.State.RUNNING,
        launched_at=now,
    )
    transaction.on_commit(lambda: queue.enqueue_fan_out(campaign_id))
    return campaign


def pause(*, campaign_id: int) -> Campaign:
    return _set_state(campaign_id, (Campaign.State.RUNNING,), Campaign.State.PAUSED)


def resume(*, campaign_id: int) -> Campaign:
    campaign = _set_state(campaign_id, (Campaign.State.PAUSED,), Campaign.State.RUNNING)
    transaction.on_commit(lambda: queue.kick_campaign(campaign_id))
    return campaign


def cancel(*, campaign_id: int) -> Campaign:
    """Cancelled: nothing more is sent; what a gateway already has may still report back."""
    now = timezone.now()
    with transaction.atomic():
        campaign = _set_state(
            campaign_id,
            (
                Campaign.State.DRAFT,
                Campaign.State.SCHEDULED,
                Campaign.State.RUNNING,
                Campaign.State.PAUSED,
            ),
            Campaign.State.CANCELLED,
            finished_at=now,
        )
        # The counters move by what each UPDATE really changed: a claim committing
        # meanwhile takes rows out of `queued`, and a count made beforehand would
        # still move them.
        deltas: Counter = Counter()
        with connection.cursor() as cursor:
            for waiting in (DeliveryStatus.PENDING, DeliveryStatus.QUEUED):
                cursor.execute(
                    "UPDATE campaigns_delivery SET status = %s, final_at = %s, updated_at = %s, "
                    "next_attempt_at = NULL WHERE campaign_id = %s AND status = %s "
                    "RETURNING channel",
                    [DeliveryStatus.CANCELLED, db_time(now), db_time(now), campaign_id, waiting],
                )
                for (channel,) in cursor.fetchall():
                    deltas[(campaign_id, channel, waiting)] -= 1
                    deltas[(campaign_id, channel, DeliveryStatus.CANCELLED)] += 1
        counters.bump(deltas)
        Message.objects.filter(
            campaign_id=campaign_id, status__in=[Message.Status.PENDING, Message.Status.IN_PROGRESS]
        ).exclude(
            Exists(
                Delivery.objects.filter(
                    message_id=OuterRef("pk"),
                    status__in=[
                        DeliveryStatus.SUBMITTING,
                        DeliveryStatus.SENT,
                        DeliveryStatus.UNKNOWN,
                    ],
                )
            )
        ).update(status=Message.Status.CANCELLED, updated_at=now)
    return campaign


# ---------------------------------------------------------------- the sweeper


def requeue_expired_leases(now) -> int:
    """Claims of a worker that died: resubmit where the gateway deduplicates, else wait for its report."""
    with transaction.atomic():
        # Locked, skipping rows a live worker or another sweeper holds.
        stale = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("account")
            .filter(status=DeliveryStatus.SUBMITTING, lease_expires_at__lt=now)
            .order_by("pk")[:5000]
        )
        if not stale:
            return 0
        changes = Changes()
        backends = {}
        for delivery in stale:
            account = delivery.account
            if account.pk not in backends:
                backends[account.pk] = get_backend(account)
            changes.touch(delivery)
            delivery.lease_expires_at = None
            # The worker may have stopped after the gateway took the request.
            decision = backends[account.pk].after_failure(permanent=False, may_have_reached=True)
            if decision == "retry":
                delivery.status = DeliveryStatus.QUEUED
                delivery.next_attempt_at = now
                delivery.may_be_at_gateway = True  # resent to the same gateway only
                changes.event(
                    delivery, DeliveryStatus.QUEUED, "system", provider_status="lease_expired"
                )
            else:
                delivery.status = DeliveryStatus.UNKNOWN
                delivery.error_message = (
                    "A worker stopped while submitting; the gateway has no idempotency key, so the "
                    "message is not resent. Waiting for the gateway's report until the TTL."
                )
                changes.event(
                    delivery, DeliveryStatus.UNKNOWN, "system", provider_status="lease_expired"
                )
        commit_changes(changes)
    return len(stale)


def expire_past_ttl(now) -> int:
    """Steps past their TTL: still-open ones expire; delivered-unread ones fall through when read is final."""
    changes = Changes()
    open_statuses = [
        DeliveryStatus.QUEUED,
        DeliveryStatus.SENT,
        DeliveryStatus.UNKNOWN,
        DeliveryStatus.PENDING,
    ]
    with transaction.atomic():
        expired = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status__in=open_statuses, expires_at__lt=now)
            .order_by("pk")[:5000]
        )
        for delivery in expired:
            changes.move(
                delivery,
                DeliveryStatus.EXPIRED,
                error="No final status within the TTL.",
                force=True,
            )
            changes.event(delivery, DeliveryStatus.EXPIRED, "system", provider_status="ttl")
        # Locked, so a `read` report being applied right now either lands first (and the
        # row no longer matches) or waits for the next step to exist; skipped when held.
        unread = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                status=DeliveryStatus.DELIVERED, expires_at__lt=now, campaign__read_is_final=True
            )
            .exclude(
                Exists(
                    Delivery.objects.filter(
                        message_id=OuterRef("message_id"), step__gt=OuterRef("step")
                    )
                )
            )
            .order_by("pk")[:5000]
        )
        changes.fall_through.extend(unread)
        commit_changes(changes)
    return len(expired) + len(unread)


def poll_statuses(now, *, account_ids: list[int] | None = None, budget_seconds: float = 10) -> int:
    """Ask gateways about submitted deliveries, each delivery at most once a minute."""
    accounts = ProviderAccount.objects.filter(enabled=True)
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
    deadline = time.monotonic() + budget_seconds
    polled = 0
    for account in accounts:
        backend = get_backend(account)
        if not backend.polls_statuses:
            continue
        while time.monotonic() < deadline:
            # Locked and stamped in one short transaction: two sweepers never poll
            # the same deliveries, and rows are locked in one order (no deadlock).
            with transaction.atomic():
                due = list(
                    Delivery.objects.select_for_update(skip_locked=True)
                    .filter(
                        account=account, status__in=[DeliveryStatus.SENT, DeliveryStatus.UNKNOWN]
                    )
                    .exclude(next_attempt_at__gt=now)
                    .exclude(provider_message_id="")
                    .order_by("next_attempt_at", "pk")
                    .values_list("pk", "provider_message_id", "idempotency_key")[:POLL_BATCH]
                )
                if not due:
                    break
                # Stamped after `now`, so this pass does not pick the same deliveries again.
                Delivery.objects.filter(pk__in=[pk for pk, _, _ in due]).update(
                    next_attempt_at=timezone.now() + timedelta(seconds=POLL_INTERVAL_SECONDS)
                )
            refs = [
                ProviderRef(delivery_id=pk, provider_message_id=pid, idempotency_key=key)
                for pk, pid, key in due
            ]
            try:
                events = backend.fetch_statuses(refs)
            except ProviderError as error:
                logger.warning("Polling %s failed: %s", account.name, error)
                break
            apply_status_events(account_id=account.pk, events=events, source="poll")
            polled += len(refs)
    return polled


def start_due_campaigns(now) -> list[int]:
    due = list(
        Campaign.objects.filter(state=Campaign.State.SCHEDULED, scheduled_at__lte=now).values_list(
            "pk", flat=True
        )
    )
    for campaign_id in due:
        launch(campaign_id=campaign_id)
    return due


def finish_campaigns(now) -> list[int]:
    """Running campaigns whose every message is final are done."""
    open_message = Message.objects.filter(
        campaign_id=OuterRef("pk"), status__in=[Message.Status.PENDING, Message.Status.IN_PROGRESS]
    )
    done = list(
        Campaign.objects.filter(
            state=Campaign.State.RUNNING,
            kind=Campaign.Kind.ONE_OFF,  # a triggered campaign runs until paused or cancelled
            fanned_out_at__isnull=False,
        )
        .exclude(Exists(open_message))
        .values_list("pk", flat=True)
    )
    if done:
        Campaign.objects.filter(pk__in=done, state=Campaign.State.RUNNING).update(
            state=Campaign.State.DONE, finished_at=now, updated_at=now
        )
    return done


def accounts_with_due_work(now) -> list[int]:
    return list(
        Delivery.objects.filter(status=DeliveryStatus.QUEUED, account__enabled=True)
        .exclude(next_attempt_at__gt=now)
        .exclude(
            campaign__state__in=[
                Campaign.State.PAUSED,
                Campaign.State.CANCELLED,
                Campaign.State.DONE,
            ]
        )
        .values_list("account_id", flat=True)
        .distinct()
        .order_by()
    )


def sweep_once() -> dict[str, int]:
    now = timezone.now()
    report = {
        # First: callbacks a drainer left behind (one killed mid-batch) count before finishing.
        "callbacks": drain_callbacks(seconds=5),
        "started": len(start_due_campaigns(now)),
        "triggered": triggers.run_due_triggers(now),
        "recurring_runs": len(recurring.start_due_runs(now)),
        "winners": len(winners.decide_due_winners(now)),
        "requeued": requeue_expired_leases(now),
        "expired": expire_past_ttl(now),
        "polled": poll_statuses(now),
        "finished": len(finish_campaigns(now)),
        "held": windows.hold_outside_windows(now),
    }
    queue.kick_accounts(accounts_with_due_work(now))
    return report


def sweep(*, seconds: float = 0, interval: float = 2.0) -> dict[str, int]:
    """Run sweep passes for `seconds` (one pass if 0); the minute schedule runs it for ~50 s."""
    deadline = time.monotonic() + seconds
    total: Counter = Counter()
    while True:
        total.update(sweep_once())
        if time.monotonic() + interval > deadline:
            return dict(total)
        time.sleep(interval)
