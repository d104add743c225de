"""django-q2 entry points: thin, idempotent, ids only. The logic is in the modules they call;
the engine queues these by dotted name through `campaigns.queue`, never by importing this."""

from __future__ import annotations

from campaigns import claims, dispatch, fanout, queue, services


def fan_out(campaign_id: int) -> None:
    fanout.fan_out(campaign_id)
    queue.kick_campaign(campaign_id)


def dispatch_account(account_id: int) -> int:
    sent = dispatch.dispatch_account(account_id)
    if claims.has_due_work(account_id):
        # More than one budget's worth: hand the rest to the next free worker.
        queue.enqueue_dispatch(account_id)
    return sent


def sweep() -> dict:
    # Runs every minute; keeps sweeping for most of that minute so statuses,
    # retries and cascades move within seconds, not minutes.
    return services.sweep(seconds=45, interval=2)
