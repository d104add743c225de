"""Gateway callbacks: one URL per account, authenticated by a secret in the path.

The secret is compared in constant time against every secret the account
lists, so a new secret can be added, gateways moved over, and the old one
removed without losing callbacks (rotation). Unknown message ids get 200 so a
gateway stops retrying; an unknown account or a wrong secret gets 403 (the
same answer for both, so the answer tells an attacker nothing).

A readable callback is stored in the inbox (providers.inbox) before the 200,
then applied with whatever else is waiting; see that module for why.
"""

from __future__ import annotations

import hmac
import logging
import time

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from providers.base import ProviderError
from providers.inbox import after_store, record_replies, store_callback
from providers.models import ProviderAccount
from providers.registry import BACKENDS, get_backend

logger = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 256 * 1024
# What parsing a callback needs of the account (credentials: a backend may check a signature).
ACCOUNT_FIELDS = (
    "id",
    "operator",
    "backend",
    "name",
    "callback_secrets",
    "credentials",
    "options",
    "base_url",
    "sender_names",
    "timeout_seconds",
    "updated_at",
)


def secret_matches(secrets: list[str], candidate: str) -> bool:
    matched = False
    for secret in secrets or []:
        # No early exit: the time taken does not depend on which secret matched.
        if secret and hmac.compare_digest(str(secret).encode(), candidate.encode()):
            matched = True
    return matched


# Accounts as this process last read them, for ACCOUNT_CACHE_SECONDS: at hundreds of
# callbacks a second the lookup (its query and the ORM's work to build it) was the largest
# part of taking a callback in. Saving or deleting an account drops it here at once; other
# processes see the change (a retired secret) within the second.
ACCOUNT_CACHE_SECONDS = 1.0
ACCOUNT_CACHE_SIZE = 1000
_accounts: dict[tuple[int, str], tuple[float, ProviderAccount]] = {}


def reset_account_cache() -> None:
    """Forget every account read (tests, or after changing accounts outside the ORM)."""
    _accounts.clear()


def cached_account_ids() -> set[int]:
    return {account_id for account_id, _backend in _accounts}


def account_for_callbacks(account_id: int, backend: str) -> ProviderAccount | None:
    key = (account_id, backend)
    now = time.monotonic()
    cached = _accounts.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    # Without the model's ordering, which joins the operator.
    account = (
        ProviderAccount.objects.only(*ACCOUNT_FIELDS)
        .filter(pk=account_id, backend=backend)
        .order_by()
        .first()
    )
    if account is None:
        return None  # unknown ids are not kept: guessing them must not fill the memory
    if len(_accounts) >= ACCOUNT_CACHE_SIZE:
        _accounts.clear()
    _accounts[key] = (now + ACCOUNT_CACHE_SECONDS, account)
    return account


@receiver([post_save, post_delete], sender=ProviderAccount)
def forget_account(sender, instance: ProviderAccount, **kwargs) -> None:
    for key in [key for key in _accounts if key[0] == instance.pk]:
        _accounts.pop(key, None)


def _refusal(request: HttpRequest, backend: str, account_id: int, secret: str, methods):
    """The account a webhook call is for, or the answer refusing the call."""
    if request.method not in methods:
        return None, HttpResponse("Method not allowed", status=405)
    if backend not in BACKENDS:
        return None, HttpResponse("Unknown backend", status=404)
    if int(request.headers.get("Content-Length") or 0) > MAX_CALLBACK_BYTES:
        return None, HttpResponse("Callback too large", status=413)
    account = account_for_callbacks(account_id, backend)
    if account is None or not secret_matches(account.callback_secrets, secret):
        return None, HttpResponse("Forbidden", status=403)
    return account, None


@csrf_exempt
def webhook(request: HttpRequest, backend: str, account_id: int, secret: str) -> HttpResponse:
    account, refusal = _refusal(request, backend, account_id, secret, ("GET", "POST", "PUT"))
    if refusal is not None:
        return refusal
    try:
        events = get_backend(account).parse_callback(request)
    except (ValueError, KeyError, TypeError, ProviderError) as error:
        logger.warning("Unreadable %s callback for account %s: %s", backend, account.pk, error)
        return HttpResponse(f"Unreadable callback: {error}", status=400)
    if store_callback(account.pk, events) is not None:
        after_store()
    return HttpResponse("OK")


@csrf_exempt
def replies_webhook(
    request: HttpRequest, backend: str, account_id: int, secret: str
) -> HttpResponse:
    """Clients' replies forwarded by a gateway; kept once each, opt-outs applied at once."""
    account, refusal = _refusal(request, backend, account_id, secret, ("POST",))
    if refusal is not None:
        return refusal
    gateway = get_backend(account)
    if not gateway.has_inbound:
        return HttpResponse("This gateway forwards no replies", status=404)
    try:
        replies = gateway.parse_inbound(request)
    except (ValueError, KeyError, TypeError, ProviderError) as error:
        logger.warning("Unreadable %s replies for account %s: %s", backend, account.pk, error)
        return HttpResponse(f"Unreadable replies: {error}", status=400)
    record_replies(account=account, replies=replies)
    return HttpResponse("OK")
