"""Test then winner: after the campaign's wait, the best variant goes to everyone waiting.

Kept apart from campaigns.experiments, which the fan-out imports: the rollout here
calls the fan-out.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from campaigns import experiments
from campaigns.fanout import settle_waiting_messages
from campaigns.models import Campaign, CampaignVariant, Message


def test_started_at(campaign: Campaign):
    return (
        campaign.fanned_out_at if campaign.kind == Campaign.Kind.ONE_OFF else campaign.launched_at
    )


def decide_due_winners(now) -> list[int]:
    """Pick the winner of every test whose wait is over; returns the campaigns decided."""
    decided = []
    candidates = Campaign.objects.filter(
        state=Campaign.State.RUNNING, ab_mode=Campaign.Testing.WINNER, ab_winner__isnull=True
    ).only("pk", "kind", "fanned_out_at", "launched_at", "ab_wait_minutes")
    for campaign in candidates:
        started = test_started_at(campaign)
        due = started is not None and started + timedelta(minutes=campaign.ab_wait_minutes) <= now
        if due and decide_winner(campaign.pk, now) is not None:
            decided.append(campaign.pk)
    return decided


def decide_winner(campaign_id: int, now=None) -> CampaignVariant | None:
    """Pick the best variant by the campaign's metric (ties: the earlier label) and send
    it to everyone who was waiting. Safe to run twice: the row lock and the empty winner
    let one caller through."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(pk=campaign_id, ab_winner__isnull=True)
            .first()
        )
        if campaign is None:
            return None
        results = experiments.variant_results(campaign)
        if not results:
            return None
        metric = campaign.ab_metric
        best = max(results, key=lambda r: (r.rate(metric), -ord(r.label)))
        campaign.ab_winner_id = best.variant_id
        campaign.ab_decided_at = now
        campaign.ab_reason = experiments.reason_text(
            best, results, metric, campaign.get_ab_metric_display()
        )
        campaign.save(update_fields=["ab_winner", "ab_decided_at", "ab_reason", "updated_at"])
        Message.objects.filter(
            campaign=campaign, status=Message.Status.PENDING, variant__isnull=True
        ).update(variant_id=best.variant_id, status=Message.Status.IN_PROGRESS, updated_at=now)
        settle_waiting_messages(campaign, now)
        return CampaignVariant.objects.get(pk=best.variant_id)
