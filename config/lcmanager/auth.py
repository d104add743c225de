"""Who is calling: `Token` (+ `Operator`) or `SiteCode` → an active credential of one operator.

Secrets are stored as SHA-256 digests (see `clients.services.issue_credential`),
so the lookup is by digest: an attacker who can time it learns about the
digest, not the secret. The final comparison is still constant-time, for the
habit. Failed attempts are counted per client address, and an address that
keeps guessing is refused before any lookup (see `FailedAuthThrottle`).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from clients.models import ApiCredential
from clients.services import digest_secret
from config.lcmanager import codes

LAST_USED_RESOLUTION_SECONDS = 60  # last_used_at is written at most once a minute per credential


class AuthenticationFailed(Exception):
    def __init__(self, error: codes.ErrorCode, detail: str = ""):
        super().__init__(detail or error.message)
        self.error = error
        self.detail = detail


def authenticate(data: dict) -> ApiCredential:
    token, site_code, operator_id = data.get("Token"), data.get("SiteCode"), data.get("Operator")
    if token is not None:
        if operator_id is None:
            raise AuthenticationFailed(codes.CREDENTIALS_MISSING, "Operator is required with Token")
        secret, kind = str(token), ApiCredential.Kind.TOKEN
    elif site_code:
        secret, kind = site_code, ApiCredential.Kind.SITE_CODE
    else:
        raise AuthenticationFailed(codes.CREDENTIALS_MISSING)
    digest = digest_secret(secret)
    # The digest is unique: no ORDER BY, and no join (nothing on the hot path reads the
    # operator row). Read on every request, not cached, so a revocation counts at once.
    found = list(ApiCredential.objects.filter(secret_digest=digest, kind=kind).order_by()[:1])
    credential = found[0] if found else None
    if (
        credential is None
        or not hmac.compare_digest(credential.secret_digest, digest)
        or (operator_id is not None and credential.operator_id != operator_id)
    ):
        raise AuthenticationFailed(codes.CREDENTIALS_INVALID)
    if credential.revoked_at is not None:
        raise AuthenticationFailed(codes.CREDENTIAL_REVOKED)
    _touch(credential)
    return credential


def _touch(credential: ApiCredential) -> None:
    # One UPDATE per request per credential would be the hottest row in the
    # database under load; a minute's resolution is enough to see who is active.
    if cache.add(f"lcm:used:{credential.pk}", 1, timeout=LAST_USED_RESOLUTION_SECONDS):
        ApiCredential.objects.filter(pk=credential.pk).update(last_used_at=timezone.now())


class FailedAuthThrottle:
    """At most CASCADE_API_AUTH_FAILURES failed authentications per address per minute."""

    window_seconds = 60

    def __init__(self, address: str):
        self.key = f"lcm:authfail:{address}"

    def blocked(self) -> bool:
        return (cache.get(self.key) or 0) >= settings.CASCADE_API_AUTH_FAILURES

    def record_failure(self) -> None:
        if not cache.add(self.key, 1, timeout=self.window_seconds):
            try:
                cache.incr(self.key)
            except ValueError:  # expired between add and incr
                cache.add(self.key, 1, timeout=self.window_seconds)


def over_rate(credential: ApiCredential) -> bool:
    """A fixed one-minute window per credential, shared by all web workers through the cache."""
    window = int(timezone.now().timestamp() // 60)
    key = f"lcm:rate:{credential.pk}:{window}"
    if cache.add(key, 1, timeout=90):
        return False
    try:
        count = cache.incr(key)
    except ValueError:
        return False
    return count > settings.CASCADE_API_REQUESTS_PER_MINUTE
