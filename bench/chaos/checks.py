"""The checks after the run: every guarantee, counted from the simulators' and the database's own records."""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.chaos.harness import log, retrying
from bench.chaos.workload import INITIAL_FLAGS

OPEN_MESSAGE_STATUSES = ["pending", "in_progress"]


OPEN_DELIVERY_STATUSES = ["pending", "queued", "submitting", "sent", "unknown"]


CHECKS = (
    "non_final",
    "duplicate_sends",
    "duplicate_recipients",
    "sent_without_consent",
    "counter_mismatches",
    "cost_mismatches",
    "lost_consent_changes",
    "consent_history_breaks",
    "replay_changes",
    "replay_new_events",
)


def failed(result: dict) -> bool:
    checks = (*CHECKS, "sweeper_errors", "consent_errors")
    return any(result.get(name) for name in checks)


def accepted_sends(sim) -> list[tuple[str, str, float]]:
    """(consent flag, phone, when the gateway took it) for every message a simulator accepted."""
    with sim.lock:
        return [("allow_sms", m.phone, m.accepted_at) for m in sim.messages.values()]


def received_mails(smtp) -> list[tuple[str, str, float]]:
    """(consent flag, address, when the server stored it) for every email, resets included."""
    with smtp.lock:
        return [
            ("allow_email", address, mail.received_at)
            for mail in smtp.received
            for address in mail.recipients
        ]


def duplicate_addresses(smtp) -> int:
    with smtp.lock:
        seen = Counter(address for mail in smtp.received for address in mail.recipients)
    return sum(1 for count in seen.values() if count > 1)


# A batch read before a withdrawal committed may still be on the wire for up to one
# request (the accounts' 5 s timeout): consent is honoured as of the claim, not after it.
CONSENT_GRACE_SECONDS = 6.0


def sent_without_consent(operator, sends) -> tuple[int, int, list]:
    """Messages a gateway took after the client withdrew the consent their channel needs
    (allow_sms for Viber and SMS, allow_email for email): (beyond the grace, within it,
    examples)."""
    from clients.models import Client, ConsentChange

    clients = Client.objects.filter(operator=operator)
    client_by_address = {
        "allow_sms": dict(clients.values_list("phone", "pk")),
        "allow_email": dict(clients.values_list("email", "pk")),
    }
    changes = defaultdict(list)
    for client_id, flag, changed_at, value in (
        ConsentChange.objects.filter(operator=operator, flag__in=list(client_by_address))
        .order_by("changed_at", "pk")
        .values_list("client_id", "flag", "changed_at", "new_value")
    ):
        changes[(client_id, flag)].append((changed_at.timestamp(), value))

    def allowed(client_id, flag: str, at: float) -> bool:
        value = INITIAL_FLAGS[flag]  # as at fan-out (a client without it was skipped there)
        for when, new_value in changes.get((client_id, flag), []):
            if when > at:
                break
            value = new_value
        return value

    beyond, within, examples = 0, 0, []
    for flag, address, accepted_at in sends:
        client_id = client_by_address[flag].get(address)
        if client_id is None or allowed(client_id, flag, accepted_at):
            continue
        if not allowed(client_id, flag, accepted_at - CONSENT_GRACE_SECONDS):
            beyond += 1
            examples.append({"flag": flag, "address": address, "accepted_at": accepted_at})
        else:
            within += 1
    return beyond, within, examples[:50]


def duplicate_phones(sim) -> int:
    """Phones a simulator accepted more than once on the same first channel, whatever the keys."""
    with sim.lock:
        seen = Counter(
            (m.phone, m.channels[0] if m.channels else "") for m in sim.messages.values()
        )
    return sum(1 for count in seen.values() if count > 1)


def replay_callbacks(campaign_id: int, urls: list[str], limit: int = 5000) -> dict:
    """The last successful callbacks again, twice, newest first: nothing may change."""
    from campaigns.models import Delivery, DeliveryEvent

    def snapshot():
        return dict(Delivery.objects.filter(campaign_id=campaign_id).values_list("pk", "status"))

    def events():
        return DeliveryEvent.objects.filter(delivery__campaign_id=campaign_id).count()

    until = time.monotonic() + 60
    before, events_before = retrying(snapshot, until=until), retrying(events, until=until)
    replayed = list(reversed(urls[-limit:])) * 2
    session = requests.Session()

    def get(url: str) -> int:
        try:
            return session.get(url, timeout=30).status_code
        except requests.RequestException:
            return 0

    with ThreadPoolExecutor(8) as pool:
        answers = Counter(pool.map(get, replayed))
    after, events_after = retrying(snapshot, until=until), retrying(events, until=until)
    changed = [pk for pk, status in after.items() if before.get(pk) != status]
    log(
        f"replayed {len(replayed)} callbacks (the last {len(replayed) // 2}, twice, newest first): "
        f"answers {dict(answers)}, {len(changed)} deliveries changed, "
        f"{events_after - events_before} new events"
    )
    return {
        "replayed": len(replayed),
        "replay_non_200": sum(count for status, count in answers.items() if status != 200),
        "replay_changes": len(changed) + len(set(after) ^ set(before)),
        "replay_new_events": events_after - events_before,
        "changed_ids": changed[:50],
    }


def check(
    args, *, campaign, operator, consent, stats, duplicate_recipients, sends, replay, log_dir
):
    from django.db.models import Count

    from campaigns import counters
    from campaigns.models import CampaignCost, Delivery, DeliveryEvent, Message
    from clients.models import Client, ConsentChange

    until = time.monotonic() + 120
    evidence: dict = {}

    # 1. Every message final.
    open_messages = Message.objects.filter(campaign=campaign, status__in=OPEN_MESSAGE_STATUSES)
    non_final = retrying(open_messages.count, until=until)
    open_deliveries = Delivery.objects.filter(
        campaign=campaign, status__in=OPEN_DELIVERY_STATUSES
    ).count()
    message_statuses = Counter(
        dict(
            Message.objects.filter(campaign=campaign)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
    )
    if non_final or open_deliveries:
        samples = []
        for message in open_messages.order_by("pk")[:20]:
            samples.append(
                {
                    "message": message.pk,
                    "status": message.status,
                    "deliveries": [
                        {
                            **row,
                            "events": list(
                                DeliveryEvent.objects.filter(delivery_id=row["id"])
                                .order_by("pk")
                                .values("status", "source", "provider_status", "received_at")
                            ),
                        }
                        for row in Delivery.objects.filter(message=message)
                        .order_by("step")
                        .values(
                            "id",
                            "step",
                            "channel",
                            "status",
                            "attempts",
                            "idempotency_key",
                            "provider_message_id",
                            "error_message",
                            "lease_expires_at",
                            "next_attempt_at",
                            "expires_at",
                        )
                    ],
                }
            )
        evidence["non_final"] = samples

    # 2. Each simulator took each idempotency key as a new message once. Keys are also
    # counted on receipt, before a gateway deduplicates: on 1-pulse (no idempotency key)
    # a key received twice is a message sent twice; on the cascade gateway it is a
    # resubmission after a claim was taken back, which the gateway answers from the
    # earlier message (reported as resubmitted_keys).
    duplicate_keys = {name: s["duplicate_sends"] for name, s in stats.items()}
    duplicate_keys["pulse"] = stats["pulse"]["duplicate_keys"]
    duplicate_sends = sum(len(keys) for keys in duplicate_keys.values())
    resubmitted_keys = len(stats["cascade_gateway"]["duplicate_keys"])
    if duplicate_sends or any(duplicate_recipients.values()):
        evidence["duplicate_keys"] = {
            name: dict(list(k.items())[:50]) for name, k in duplicate_keys.items()
        }
        evidence["duplicate_recipients"] = duplicate_recipients

    # 3. Counters and costs equal a recount of the delivery rows.
    have, want = counters.counts(campaign.pk), counters.recount(campaign.pk)
    counter_diff = {
        f"{channel}/{status}": {
            "counter": have.get((channel, status), 0),
            "rows": want.get((channel, status), 0),
        }
        for channel, status in sorted(set(have) | set(want))
        if have.get((channel, status), 0) != want.get((channel, status), 0)
    }
    costs = {
        (row.channel, row.currency): row.amount
        for row in CampaignCost.objects.filter(campaign=campaign)
        if row.amount
    }
    recosted = {key: amount for key, amount in counters.recost(campaign.pk).items() if amount}
    cost_diff = {
        f"{channel}/{currency}": {
            "counter": str(costs.get((channel, currency))),
            "rows": str(recosted.get((channel, currency))),
        }
        for channel, currency in sorted(set(costs) | set(recosted))
        if costs.get((channel, currency)) != recosted.get((channel, currency))
    }
    # 3b. Nothing went out after a withdrawal (consent honoured at send time).
    without_consent, within_grace, without_consent_examples = sent_without_consent(operator, sends)
    if without_consent:
        evidence["sent_without_consent"] = without_consent_examples
    if counter_diff or cost_diff:
        evidence["counters"] = counter_diff
        evidence["costs"] = cost_diff

    # 4. No consent change lost: each is in the history, and the final flags are the last ones set.
    history = defaultdict(list)
    for reason, client_id, flag, old, new in ConsentChange.objects.filter(
        operator=operator, reason__startswith="chaos:"
    ).values_list("reason", "client_id", "flag", "old_value", "new_value"):
        history[reason].append((client_id, flag, old, new))
    missing = [
        change
        for change in consent.made
        if [row[:2] + row[3:] for row in history.get(change[0], [])] != [change[1:]]
    ]
    made_reasons = {change[0] for change in consent.made}
    phantom = [reason for reason in history if reason not in made_reasons]
    touched = defaultdict(dict)
    for _reason, client_id, flag, value in consent.made:
        touched[client_id][flag] = value
    final_rows = Client.objects.filter(pk__in=list(touched)).values("pk", *INITIAL_FLAGS)
    wrong_flags = [
        (row["pk"], flag, value, row[flag])
        for row in final_rows
        for flag, value in touched[row["pk"]].items()
        if row[flag] != value
    ]
    # Each flag's history, in the order the thread made the changes, must chain: old = previous new.
    breaks = []
    previous: dict[tuple[int, str], bool] = {}
    for reason, client_id, flag, value in consent.made:
        rows = history.get(reason, [])
        expected_old = previous.get((client_id, flag), INITIAL_FLAGS[flag])
        if rows and rows[0][2] != expected_old:
            breaks.append((reason, client_id, flag, rows[0][2], expected_old))
        previous[(client_id, flag)] = value
    lost_consent_changes = len(missing) + len(wrong_flags)
    if missing or wrong_flags or breaks or phantom or consent.abandoned:
        evidence["consent"] = {
            "missing": missing[:50],
            "wrong_final_flags": wrong_flags[:50],
            "history_breaks": breaks[:50],
            "phantom_rows": phantom[:50],
            "abandoned": consent.abandoned[:50],
        }
    if replay["replay_changes"] or replay["replay_new_events"]:
        evidence["replay"] = replay

    # Proof that the crash landed mid-claim: claims whose lease the sweeper took back.
    lease_expired = DeliveryEvent.objects.filter(
        delivery__campaign=campaign, provider_status="lease_expired"
    ).count()
    attempts = Counter(
        Delivery.objects.filter(campaign=campaign).values_list("attempts", flat=True)
    )
    deliveries_by_channel = Counter(
        Delivery.objects.filter(campaign=campaign).values_list("channel", flat=True)
    )
    gateway, pulse = stats["cascade_gateway"], stats["pulse"]
    log(
        f"messages: {dict(message_statuses)}; deliveries per channel: {dict(deliveries_by_channel)}"
    )
    log(
        f"claims taken back after their lease: {lease_expired}; "
        f"deliveries by claims made: {dict(sorted(attempts.items()))}"
    )
    log(
        f"cascade gateway: {gateway['requests']} requests ({gateway['faulted_requests']} faulted), "
        f"{gateway['accepted']} accepted, {gateway['keys']} keys, "
        f"{gateway['deduplicated']} resubmissions answered from the earlier message, "
        f"{len(gateway['duplicate_keys'])} keys received twice, "
        f"{len(gateway['duplicate_sends'])} keys accepted twice, "
        f"{duplicate_recipients['cascade_gateway']} phones sent twice"
    )
    log(
        f"1-pulse: {pulse['requests']} requests, {pulse['accepted']} accepted, {pulse['keys']} keys, "
        f"{len(pulse['duplicate_keys'])} keys received twice, {duplicate_recipients['pulse']} phones sent twice; "
        f"callbacks ok {pulse['callbacks_sent']}, failed {pulse['callbacks_failed']}, "
        f"dropped {pulse['callbacks_dropped']}, twice {pulse['callbacks_duplicated']}, "
        f"late {pulse['callbacks_reordered']}, not sent {pulse['callbacks_backlog']}"
    )
    mail = stats["smtp"]
    log(
        f"SMTP: {mail['accepted']} emails stored ({mail['faulted_after_store']} then reset), "
        f"{len(mail['duplicate_sends'])} keys received twice, "
        f"{duplicate_recipients['smtp']} addresses sent twice"
    )
    log(
        f"non-final messages {non_final} (open deliveries {open_deliveries}); "
        f"counter mismatches {len(counter_diff)}, cost mismatches {len(cost_diff)}"
    )
    log(
        f"consent: {len(consent.made)} changes ({consent.retries} retries through outages), "
        f"{len(missing)} missing from the history, {len(wrong_flags)} final flags wrong, "
        f"{len(breaks)} history breaks, {len(phantom)} rows nobody made, "
        f"{len(consent.abandoned)} abandoned"
    )
    for name, detail in evidence.items():
        log(f"EVIDENCE {name}: {json.dumps(detail, default=str)[:1500]}")
    if evidence:
        with open(os.path.join(log_dir, "evidence.json"), "w") as output:
            json.dump(evidence, output, default=str, indent=1)

    return {
        "recipients": args.recipients,
        "non_final": non_final,
        "duplicate_sends": duplicate_sends,
        "resubmitted_keys": resubmitted_keys,
        "counter_mismatches": len(counter_diff),
        "lost_consent_changes": lost_consent_changes,
        "sent_without_consent": without_consent,
        "sent_as_consent_was_withdrawn": within_grace,
        "open_deliveries": open_deliveries,
        "duplicate_recipients": sum(duplicate_recipients.values()),
        "cost_mismatches": len(cost_diff),
        "consent_history_breaks": len(breaks),
        "consent_changes": len(consent.made),
        "consent_retries": consent.retries,
        "replay_changes": replay["replay_changes"],
        "replay_new_events": replay["replay_new_events"],
        "replayed_callbacks": replay["replayed"],
        "messages": dict(message_statuses),
        "sms_steps": deliveries_by_channel.get("sms", 0),
        "lease_expired": lease_expired,
        "gateway_faulted_requests": gateway["faulted_requests"],
        "email_steps": deliveries_by_channel.get("email", 0),
        "faulted_after_store": {
            "cascade_gateway": gateway["faulted_after_store"],
            "pulse": pulse["faulted_after_store"],
            "smtp": stats["smtp"]["faulted_after_store"],
        },
        "gateway_deduplicated": gateway["deduplicated"],
        "callbacks": {
            name: pulse[f"callbacks_{name}"]
            for name in ("sent", "failed", "dropped", "duplicated", "reordered", "backlog")
        },
    }
