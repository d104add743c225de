"""Frequency caps: at most N promotional messages per client per channel a day and a
week, and a minimum gap between two, across every campaign.

Checked at send time, when the claim has been read and just before the request
(dispatch.send_batch): a client's slot is taken by one conditional upsert per
batch into FrequencyLedger, which returns the rows it took. The upsert's row
lock serializes two dispatchers racing for the same client, and each sees the
count the other committed, so a cap of 1 lets exactly one through. Days and
weeks are the client's local calendar. Service messages (call codes, partner
type-7 sends) are never capped. A taken slot stays taken if the send then
fails: the client may still have had it.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection

from campaigns.models import FrequencyLedger
from clients.zones import is_valid_zone

SKIP_REASON = "frequency_cap"


@dataclass(frozen=True)
class Caps:
    per_day: int = 0
    per_week: int = 0
    min_gap_minutes: int = 0

    @property
    def active(self) -> bool:
        return bool(self.per_day or self.per_week or self.min_gap_minutes)


def caps_for(campaign, operator) -> Caps:
    """The campaign's own caps where it sets them, the operator's elsewhere."""

    def pick(name):
        own = getattr(campaign, name, None) if campaign is not None else None
        return own if own is not None else getattr(operator, name, 0) or 0

    return Caps(pick("cap_per_day"), pick("cap_per_week"), pick("cap_min_gap_minutes"))


def local_day(now: datetime, zone: str):
    return now.astimezone(zoneinfo.ZoneInfo(zone)).date()


def next_slot(now: datetime, zone: str, caps: Caps) -> datetime:
    """When a capped client may be tried again: the gap's end or the next local midnight."""
    if caps.per_day or caps.per_week:
        local = now.astimezone(zoneinfo.ZoneInfo(zone))
        return (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return now + timedelta(minutes=caps.min_gap_minutes)


def take_slots(candidates: list[tuple[int, int, str, str, Caps]], now: datetime) -> set[int]:
    """Of (delivery id, client id, channel, zone, caps), the delivery ids that got a slot.

    One statement per distinct set of caps and per repeated (client, channel) in
    the batch: an upsert may not touch one row twice.
    """
    taken: set[int] = set()
    groups: dict[Caps, list] = defaultdict(list)
    for candidate in candidates:
        groups[candidate[4]].append(candidate)
    for caps, rows in groups.items():
        while rows:
            seen, this_round, later = set(), [], []
            for row in rows:
                key = (row[1], row[2])
                (later if key in seen else this_round).append(row)
                seen.add(key)
            taken |= _upsert(this_round, caps, now)
            rows = later
    return taken


def _upsert(rows, caps: Caps, now: datetime) -> set[int]:
    ops = connection.ops
    table = FrequencyLedger._meta.db_table
    values, params = [], []
    for _delivery_id, client_id, channel, zone, _caps in rows:
        day = local_day(now, zone if is_valid_zone(zone) else "UTC")
        week = day - timedelta(days=day.weekday())
        values.append("(%s, %s, %s, 1, %s, 1, %s)")
        params += [
            client_id,
            channel,
            ops.adapt_datefield_value(day),
            ops.adapt_datefield_value(week),
            ops.adapt_datetimefield_value(now),
        ]
    gap_before = ops.adapt_datetimefield_value(now - timedelta(minutes=caps.min_gap_minutes))
    # A cap of N lets a first message through only if N ≥ 1, which any set cap is.
    # Table name from _meta, values as placeholders: nothing from outside enters the text.
    sql = f"""
        INSERT INTO {table} (client_id, channel, day, day_count, week, week_count, last_sent_at)
        VALUES {", ".join(values)}
        ON CONFLICT (client_id, channel) DO UPDATE SET
            day_count = CASE WHEN {table}.day = excluded.day
                THEN {table}.day_count + 1 ELSE 1 END,
            week_count = CASE WHEN {table}.week = excluded.week
                THEN {table}.week_count + 1 ELSE 1 END,
            day = excluded.day,
            week = excluded.week,
            last_sent_at = excluded.last_sent_at
        WHERE ({table}.day <> excluded.day OR %s = 0 OR {table}.day_count < %s)
          AND ({table}.week <> excluded.week OR %s = 0 OR {table}.week_count < %s)
          AND (%s = 0 OR {table}.last_sent_at <= %s)
        RETURNING client_id, channel
    """  # noqa: S608
    params += [
        caps.per_day,
        caps.per_day,
        caps.per_week,
        caps.per_week,
        caps.min_gap_minutes,
        gap_before,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        granted = {(client_id, channel) for client_id, channel in cursor.fetchall()}
    return {row[0] for row in rows if (row[1], row[2]) in granted}
