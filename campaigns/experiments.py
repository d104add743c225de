"""Experiments: content variants (fixed split or test-then-winner) and a control group.

Every recipient falls into a bucket of 0 to 9999 computed in SQL from the client id (the
message id for a list row without a client) and the campaign id, so the same client
lands in the same group whenever the fan-out runs, and the assignment is one UPDATE
over the new messages, never a Python loop. Two different multipliers give two buckets:
one for the control group, one for the variant. Both multipliers are coprime with
10,000, so consecutive client ids spread evenly over the buckets.

- Control group (`holdout_percent`): the message is kept with status `holdout` and no
  delivery, so it is never sent and the dashboard can compare purchases.
- Fixed split: variants by their weights.
- Test then winner: the test share is split evenly between the variants; the rest wait
  (`pending`, no variant) until campaigns.winners picks the best variant by the
  chosen rate after the chosen wait, then get the winner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q
from django.utils.translation import gettext as _

from campaigns.models import Campaign, CampaignVariant, Delivery, LinkClick, Message
from clients.models import ClientEvent

BUCKETS = 10_000
HOLDOUT_MULTIPLIER = 2654435761  # Knuth's multiplicative hash constant
VARIANT_MULTIPLIER = 40503


def bucket_sql(multiplier: int, campaign_id: int) -> str:
    return f"((COALESCE(client_id, id) * {multiplier} + {int(campaign_id) * 7919}) %% {BUCKETS})"


def variant_ranges(campaign: Campaign, variants: list[CampaignVariant]) -> list[tuple[int, int]]:
    """(variant id, upper bucket bound) in label order; buckets at or above the last wait."""
    if campaign.ab_mode == Campaign.Testing.WINNER:
        test_buckets = BUCKETS * campaign.ab_test_percent // 100
        each = test_buckets / len(variants)
        return [(v.pk, round(each * (i + 1))) for i, v in enumerate(variants)]
    total = sum(v.weight for v in variants) or 1
    bounds, running = [], 0
    for variant in variants:
        running += variant.weight
        bounds.append((variant.pk, BUCKETS * running // total))
    return bounds


def assign_groups(campaign: Campaign, now) -> None:
    """Control group, variant and waiting status of the campaign's messages created at `now`."""
    if not campaign.has_experiment:
        return
    variants = list(campaign.variants.order_by("label"))
    holdout = bucket_sql(HOLDOUT_MULTIPLIER, campaign.pk)
    bucket = bucket_sql(VARIANT_MULTIPLIER, campaign.pk)
    params: list = []
    holdout_bound = BUCKETS * campaign.holdout_percent // 100
    status_sql = f"CASE WHEN {holdout} < %s THEN %s"
    params += [holdout_bound, Message.Status.HOLDOUT]
    if campaign.ab_mode == Campaign.Testing.WINNER and campaign.ab_winner_id is None and variants:
        status_sql += f" WHEN {bucket} >= %s THEN %s"
        params += [BUCKETS * campaign.ab_test_percent // 100, Message.Status.PENDING]
    status_sql += " ELSE status END"
    if campaign.ab_mode == Campaign.Testing.NONE or not variants:
        variant_sql = "NULL"
    elif campaign.ab_winner_id is not None:
        variant_sql = "%s"
        params.append(campaign.ab_winner_id)
    else:
        whens = []
        for variant_id, upper in variant_ranges(campaign, variants):
            whens.append(f"WHEN {bucket} < %s THEN CAST(%s AS BIGINT)")
            params += [upper, variant_id]
        variant_sql = "CASE " + " ".join(whens) + " ELSE NULL END"
    table = Message._meta.db_table
    sql = (
        f"UPDATE {table} SET status = {status_sql}, variant_id = {variant_sql} "  # noqa: S608
        "WHERE campaign_id = %s AND created_at = %s AND status = %s"
    )
    params += [campaign.pk, connection.ops.adapt_datetimefield_value(now)]
    params.append(Message.Status.IN_PROGRESS)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@dataclass
class VariantResult:
    variant_id: int
    label: str
    template: str
    sent: int
    delivered: int
    read: int
    clicked: int

    def count(self, metric: str) -> int:
        return {"delivered": self.delivered, "read": self.read, "click": self.clicked}[metric]

    def rate(self, metric: str) -> float:
        return self.count(metric) / self.sent if self.sent else 0.0


SENT_STATUSES = [
    Message.Status.IN_PROGRESS,
    Message.Status.DELIVERED,
    Message.Status.READ,
    Message.Status.FAILED,
]


def variant_results(campaign: Campaign) -> list[VariantResult]:
    rows = {
        row["variant_id"]: row
        for row in Message.objects.filter(campaign=campaign, variant__isnull=False)
        .values("variant_id")
        .annotate(
            sent=Count("id", filter=Q(status__in=SENT_STATUSES)),
            delivered=Count("id", filter=Q(status__in=["delivered", "read"])),
            read=Count("id", filter=Q(status="read")),
        )
        .order_by()
    }
    clicks = dict(
        LinkClick.objects.filter(campaign=campaign, variant__isnull=False)
        .values("variant_id")
        .annotate(n=Count("message_id"))
        .values_list("variant_id", "n")
        .order_by()
    )
    results = []
    for variant in campaign.variants.select_related("template").order_by("label"):
        row = rows.get(variant.pk, {})
        results.append(
            VariantResult(
                variant_id=variant.pk,
                label=variant.label,
                template=variant.template.name,
                sent=row.get("sent", 0),
                delivered=row.get("delivered", 0),
                read=row.get("read", 0),
                clicked=clicks.get(variant.pk, 0),
            )
        )
    return results


def reason_text(best: VariantResult, results: list[VariantResult], metric: str, metric_name) -> str:
    others = "; ".join(
        _("%(label)s %(rate).1f%% (%(count)d of %(sent)d)")
        % {
            "label": r.label,
            "rate": 100 * r.rate(metric),
            "count": r.count(metric),
            "sent": r.sent,
        }
        for r in results
        if r.variant_id != best.variant_id
    )
    return _(
        "%(label)s won on %(metric)s: %(rate).1f%% (%(count)d of %(sent)d) against %(others)s."
    ) % {
        "label": best.label,
        "metric": str(metric_name).lower(),
        "rate": 100 * best.rate(metric),
        "count": best.count(metric),
        "sent": best.sent,
        "others": others,
    }


@dataclass
class Uplift:
    sent: int
    sent_buyers: int
    holdout: int
    holdout_buyers: int
    days: int

    @property
    def sent_rate(self) -> float:
        return self.sent_buyers / self.sent if self.sent else 0.0

    @property
    def holdout_rate(self) -> float:
        return self.holdout_buyers / self.holdout if self.holdout else 0.0

    @property
    def uplift(self) -> float:
        """Percentage points of purchase rate the message added."""
        return 100 * (self.sent_rate - self.holdout_rate)

    @property
    def margin(self) -> float:
        """Half-width of the 95% confidence interval of the uplift, in percentage points
        (normal approximation of the difference of two proportions)."""
        if not self.sent or not self.holdout:
            return 0.0
        p1, p2 = self.sent_rate, self.holdout_rate
        variance = p1 * (1 - p1) / self.sent + p2 * (1 - p2) / self.holdout
        return 100 * 1.96 * math.sqrt(variance)


def holdout_uplift(campaign: Campaign) -> Uplift | None:
    """Purchase rate of the clients sent to against the control group's, over the campaign's
    measuring days from its start: a purchase is `last_purchase_at` moving past the start, or
    a partner `purchase` event in the window."""
    start = campaign.fanned_out_at or campaign.launched_at
    if start is None or not campaign.holdout_percent:
        return None
    end = start + timedelta(days=campaign.holdout_days)
    event = ClientEvent.objects.filter(
        client_id=OuterRef("client_id"),
        kind=ClientEvent.Kind.PURCHASE,
        occurred_at__gt=start,
        occurred_at__lte=end,
    )
    bought = Q(client__last_purchase_at__gt=start, client__last_purchase_at__lte=end) | Q(
        Exists(event)
    )
    rows = Message.objects.filter(campaign=campaign, client__isnull=False).aggregate(
        sent=Count("id", filter=Q(status__in=SENT_STATUSES)),
        sent_buyers=Count("id", filter=Q(status__in=SENT_STATUSES) & bought),
        holdout=Count("id", filter=Q(status=Message.Status.HOLDOUT)),
        holdout_buyers=Count("id", filter=Q(status=Message.Status.HOLDOUT) & bought),
    )
    return Uplift(days=campaign.holdout_days, **rows)


@dataclass
class VariantChannelRow:
    variant: str
    channel: str
    sent: int
    delivered: int
    read: int
    clicked: int

    @property
    def click_rate(self) -> float:
        return self.clicked / self.sent if self.sent else 0.0


def variant_channel_rows(campaign: Campaign) -> list[VariantChannelRow]:
    """Per variant and channel: deliveries handed to a gateway, delivered, read, and messages
    with a clicked link (the channel the click came through). Variant "" is no variant."""
    labels = dict(campaign.variants.values_list("pk", "label"))
    counts = (
        Delivery.objects.filter(campaign=campaign, submitted_at__isnull=False)
        .values("message__variant_id", "channel")
        .annotate(
            sent=Count("id"),
            delivered=Count("id", filter=Q(status__in=["delivered", "read"])),
            read=Count("id", filter=Q(status="read")),
        )
        .order_by()
    )
    clicks = {
        (row["variant_id"], row["channel"]): row["n"]
        for row in LinkClick.objects.filter(campaign=campaign)
        .values("variant_id", "channel")
        .annotate(n=Count("message_id"))
        .order_by()
    }
    rows = [
        VariantChannelRow(
            variant=labels.get(row["message__variant_id"], ""),
            channel=row["channel"],
            sent=row["sent"],
            delivered=row["delivered"],
            read=row["read"],
            clicked=clicks.get((row["message__variant_id"], row["channel"]), 0),
        )
        for row in counts
    ]
    return sorted(rows, key=lambda r: (r.variant, r.channel))
