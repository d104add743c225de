"""Triggered campaigns: the sweeper's pass that turns occurrences into messages.

A triggered campaign stays running until paused or cancelled. Every
TRIGGER_INTERVAL_SECONDS the sweeper runs one pass per campaign: one
INSERT … SELECT of the clients whose occurrence fell due (never a Python loop
over clients), then the same settle step as the fan-out (first delivery on the
first channel the client may get, counters, skipped with a reason).

"At most once per occurrence" is the database's: the occurrence is part of the
message's recipient key, and messages are unique per (campaign, recipient key).

    registration     registration:<client>                        once ever
    birthday         birthday:<year>:<client>                     once a year
    bonus_expiring   expiry:<card>:<expires at>:<client>          once per expiry date of a card
    no_purchase      lapse:<last purchase or registration>:<client>   once per lapse
    purchase         purchase:<purchase time>:<client>            once per purchase
    entered_segment  entered:<entry time>:<client>                once per entry

A pass only looks back TRIGGER_LOOKBACK_HOURS and never before the campaign was
launched: activating a welcome campaign does not greet every client ever
registered, and a sweeper that was down an hour catches up on that hour.
"""

from __future__ import annotations

import copy
import zoneinfo
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import (
    Case,
    CharField,
    DateTimeField,
    Exists,
    F,
    IntegerField,
    JSONField,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Concat, JSONObject
from django.utils import timezone

from campaigns import queue
from campaigns.audience import segment_queryset
from campaigns.fanout import MESSAGE_COLUMNS, insert_from, message_values, settle_new_messages
from campaigns.models import Campaign, TriggerMembership
from clients.models import Card
from clients.zones import zones_in_use

Trigger = Campaign.Trigger


def interval_seconds() -> int:
    return int(getattr(settings, "TRIGGER_INTERVAL_SECONDS", 60))


def lookback() -> timedelta:
    return timedelta(hours=int(getattr(settings, "TRIGGER_LOOKBACK_HOURS", 24)))


def run_due_triggers(now) -> int:
    """One pass of every running triggered campaign whose interval has passed; messages made."""
    due = Campaign.objects.filter(kind=Campaign.Kind.TRIGGER, state=Campaign.State.RUNNING).filter(
        Q(triggers_checked_at__isnull=True)
        | Q(triggers_checked_at__lte=now - timedelta(seconds=interval_seconds()))
    )
    created = 0
    for campaign_id in due.values_list("pk", flat=True):
        created += run_pass(campaign_id, now)
    return created


def run_pass(campaign_id: int, now=None) -> int:
    """Evaluate one campaign's trigger once; safe to run concurrently and twice."""
    now = now or timezone.now()
    with transaction.atomic():
        # Two sweepers: the second skips the row rather than queueing behind the first.
        campaign = (
            Campaign.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(pk=campaign_id, kind=Campaign.Kind.TRIGGER, state=Campaign.State.RUNNING)
            .select_related("operator")
            .first()
        )
        if campaign is None:
            return 0
        checked = campaign.triggers_checked_at
        if checked is not None and checked > now - timedelta(seconds=interval_seconds()):
            return 0
        created = insert_occurrences(campaign, now)
        queued = 0
        if created:
            queued, _skipped = settle_new_messages(campaign, now)
        Campaign.objects.filter(pk=campaign.pk).update(triggers_checked_at=now, updated_at=now)
    if queued:
        transaction.on_commit(lambda: queue.kick_campaign(campaign_id))
    return created


def insert_occurrences(campaign: Campaign, now) -> int:
    if campaign.trigger == Trigger.ENTERED_SEGMENT:
        return _entered_segment(campaign, now)
    source = occurrences(campaign, now)
    return insert_from(source, MESSAGE_COLUMNS)


def audience(campaign: Campaign):
    return segment_queryset(operator_id=campaign.operator_id, segment=campaign.segment or {})


def forecast(campaign: Campaign, now, days: int = 7) -> list[int] | None:
    """How many clients the trigger would catch on each of the next `days` days (the preview).

    Dates already known (birthdays, expiry dates, lapses) are counted ahead, one day
    at a time; registrations and purchases are not known in advance, so the past
    days' counts stand for the coming ones. Existing messages are not subtracted:
    it is what the trigger catches, not what is left to send.
    """
    if campaign.trigger == Trigger.ENTERED_SEGMENT:
        return None  # who will start matching the rules cannot be known ahead
    probe = copy.copy(campaign)
    per_day = []
    for day in range(days):
        if campaign.trigger == Trigger.BONUS_EXPIRING:
            # Cards entering the window by the end of day `day`, less those of the days before.
            probe.trigger_days = campaign.trigger_days + day + 1
            total = occurrences(probe, now).count()
            per_day.append(total - sum(per_day))
            continue
        if campaign.trigger in (Trigger.REGISTRATION, Trigger.PURCHASE):
            end = now - timedelta(days=day)
        else:
            end = now + timedelta(days=day)
        probe.launched_at = end - min(timedelta(days=1), lookback())
        per_day.append(occurrences(probe, end).count())
    return per_day


def window_start(campaign: Campaign, now) -> datetime:
    """The earliest due time a pass still honours."""
    start = now - lookback()
    if campaign.launched_at and campaign.launched_at > start:
        start = campaign.launched_at
    return start


def _key(prefix: str, occurrence, client="pk"):
    """`<prefix>:<occurrence>:<client id>`, built in SQL."""
    parts = [Value(f"{prefix}:")]
    if occurrence is not None:
        parts += [occurrence, Value(":")]
    parts.append(Cast(client, CharField()))
    return Concat(*parts, output_field=CharField())


def _for_clients(campaign: Campaign, now, clients, key, variables=None):
    return message_values(
        clients,
        campaign,
        now,
        m_client=F("pk"),
        m_key=key,
        m_phone=F("phone"),
        m_email=F("email"),
        m_variables=variables or Value({}, output_field=JSONField()),
    )


def occurrences(campaign: Campaign, now):
    """The message rows this pass would insert, as a values queryset (also the preview's)."""
    trigger = campaign.trigger
    start = window_start(campaign, now)
    delay = timedelta(minutes=campaign.trigger_delay_minutes)
    days = timedelta(days=campaign.trigger_days)
    clients = audience(campaign)
    if trigger == Trigger.REGISTRATION:
        due = clients.filter(registered_at__lte=now - delay, registered_at__gte=start - delay)
        return _for_clients(campaign, now, due, _key("registration", None))
    if trigger == Trigger.PURCHASE:
        due = clients.filter(last_purchase_at__lte=now - delay, last_purchase_at__gte=start - delay)
        key = _key("purchase", Cast("last_purchase_at", CharField()))
        return _for_clients(campaign, now, due, key)
    if trigger == Trigger.NO_PURCHASE:
        # A client who never bought lapses counting from registration.
        clients = clients.annotate(
            lapse_from=Coalesce("last_purchase_at", "registered_at", output_field=DateTimeField())
        )
        due = clients.filter(lapse_from__lte=now - days, lapse_from__gte=start - days)
        key = _key("lapse", Cast("lapse_from", CharField()))
        return _for_clients(campaign, now, due, key)
    if trigger == Trigger.BIRTHDAY:
        due = clients.filter(birthday_q(campaign, now))
        key = _key("birthday", Cast("trigger_year", CharField()))
        return _for_clients(
            campaign, now, due.annotate(trigger_year=_birthday_year(campaign, now)), key
        )
    if trigger == Trigger.BONUS_EXPIRING:
        return _bonus_expiring(campaign, now, clients)
    raise ValueError(f"Unknown trigger {trigger!r}")


# ---------------------------------------------------------------- birthdays


def _zone(name: str):
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def _birthday_targets(campaign: Campaign, now) -> list[tuple[str, date]]:
    """(zone, the birthday greeted today in that zone) for each zone past the local hour."""
    hour = campaign.trigger_local_hour or 0
    targets = []
    for name in zones_in_use(campaign.operator_id, campaign.operator.time_zone, cached=False):
        zone = _zone(name)
        if zone is None:
            continue
        local = now.astimezone(zone)
        if local.hour < hour:
            continue
        targets.append((name, local.date() + timedelta(days=campaign.trigger_days)))
    return targets


def _in_zone(name: str, operator_zone: str) -> Q:
    if name == operator_zone:
        return Q(time_zone=name) | Q(time_zone="")
    return Q(time_zone=name)


def _born_on(day: date) -> Q:
    q = Q(birth_date__month=day.month, birth_date__day=day.day)
    if day.month == 2 and day.day == 28 and not _is_leap(day.year):
        q |= Q(birth_date__month=2, birth_date__day=29)  # greeted on the 28th in common years
    return q


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def birthday_q(campaign: Campaign, now) -> Q:
    operator_zone = campaign.operator.time_zone
    q = Q(pk__in=[])
    for name, day in _birthday_targets(campaign, now):
        q |= _in_zone(name, operator_zone) & _born_on(day)
    return q


def _birthday_year(campaign: Campaign, now):
    """The year of the birthday being greeted, per client zone (it differs around New Year)."""
    operator_zone = campaign.operator.time_zone
    whens = [
        When(_in_zone(name, operator_zone), then=Value(day.year))
        for name, day in _birthday_targets(campaign, now)
    ]
    return Case(*whens, default=Value(now.year), output_field=IntegerField())


# ---------------------------------------------------------------- bonus expiry


def _bonus_expiring(campaign: Campaign, now, clients):
    cards = Card.objects.filter(
        client_id__in=clients.values("pk"),
        status=Card.Status.ACTIVE,
        bonus__gt=0,
        bonus_expires_at__gt=now,
        bonus_expires_at__lte=now + timedelta(days=campaign.trigger_days),
    )
    key = Concat(
        Value("expiry:"),
        Cast("pk", CharField()),
        Value(":"),
        Cast("bonus_expires_at", CharField()),
        Value(":"),
        Cast("client_id", CharField()),
        output_field=CharField(),
    )
    return message_values(
        cards,
        campaign,
        now,
        m_client=F("client_id"),
        m_key=key,
        m_phone=F("client__phone"),
        m_email=F("client__email"),
        m_variables=JSONObject(
            expiring_bonus=F("bonus"), expires_at=Cast("bonus_expires_at", CharField())
        ),
    )


# ---------------------------------------------------------------- entered the segment


def _entered_segment(campaign: Campaign, now) -> int:
    """Forget who left the segment, record who entered, message the newcomers.

    The first pass only records the members: "newly matches" means after launch,
    not everyone who matched already.
    """
    # NOT EXISTS, not NOT IN: PostgreSQL turns NOT IN over a million-row subquery
    # into a nested loop (minutes at 1,000,000 clients), NOT EXISTS into a hash anti-join.
    still_member = audience(campaign).filter(pk=OuterRef("client_id"))
    TriggerMembership.objects.filter(campaign=campaign).filter(~Exists(still_member)).delete()
    known = TriggerMembership.objects.filter(campaign=campaign, client_id=OuterRef("pk"))
    newcomers = (
        audience(campaign)
        .filter(~Exists(known))
        .annotate(t_campaign=Value(campaign.pk), t_entered=Value(now))
        .order_by()
        .values_list("t_campaign", "pk", "t_entered")
    )
    entered = insert_from(
        newcomers, ["campaign_id", "client_id", "entered_at"], model=TriggerMembership
    )
    if not entered or campaign.triggers_checked_at is None:
        return 0
    fresh = audience(campaign).filter(
        pk__in=TriggerMembership.objects.filter(campaign=campaign, entered_at=now).values(
            "client_id"
        )
    )
    key = _key("entered", Value(now.isoformat()))
    return insert_from(_for_clients(campaign, now, fresh, key), MESSAGE_COLUMNS)
