"""Per-account token buckets shared by every worker: Redis when configured, else the database."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from providers.models import RateBucket


def acquire(account_id: int, rate_per_second: int, count: int) -> float:
    """Take `count` tokens; return 0 when taken, else the seconds to wait before asking again.

    The bucket holds at most one second of tokens, so a burst never exceeds the rate.
    """
    if rate_per_second <= 0:
        return 0.0
    count = min(count, rate_per_second)
    if settings.REDIS_URL:
        return _acquire_redis(account_id, rate_per_second, count)
    with transaction.atomic():
        now = timezone.now()
        bucket, _ = RateBucket.objects.select_for_update().get_or_create(
            account_id=account_id, defaults={"tokens": rate_per_second, "refreshed_at": now}
        )
        elapsed = max(0.0, (now - bucket.refreshed_at).total_seconds())
        tokens = min(float(rate_per_second), bucket.tokens + elapsed * rate_per_second)
        if tokens >= count:
            bucket.tokens, bucket.refreshed_at = tokens - count, now
            bucket.save(update_fields=["tokens", "refreshed_at"])
            return 0.0
        bucket.tokens, bucket.refreshed_at = tokens, now
        bucket.save(update_fields=["tokens", "refreshed_at"])
        return (count - tokens) / rate_per_second


# Refill and take in one atomic step inside Redis.
_LUA = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or ARGV[1])
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or ARGV[3])
local rate = tonumber(ARGV[1])
local now = tonumber(ARGV[3])
tokens = math.min(rate, tokens + math.max(0, now - at) * rate)
local wanted = tonumber(ARGV[2])
local wait = 0
if tokens >= wanted then tokens = tokens - wanted else wait = (wanted - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], 60)
return tostring(wait)
"""

_redis_client = None


def _acquire_redis(account_id: int, rate: int, count: int) -> float:
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(settings.REDIS_URL)
    wait = _redis_client.eval(_LUA, 1, f"cascade:bucket:{account_id}", rate, count, time.time())
    return float(wait)


def take(
    account_id: int, rate_per_second: int, count: int, *, deadline: float, max_wait: float
) -> bool:
    """Block until the tokens are taken; False if that would pass `deadline` or take longer
    than `max_wait` seconds (the caller then gives its worker back)."""
    while True:
        wait = acquire(account_id, rate_per_second, count)
        if wait <= 0:
            return True
        if wait > max_wait or time.monotonic() + wait > deadline:
            return False
        time.sleep(wait)
