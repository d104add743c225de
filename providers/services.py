"""Rotating an account's callback secrets; the admin and `manage.py rotate_callback_secret` call these.

A gateway calls back on /providers/webhooks/<backend>/<id>/<secret>/ and any
listed secret is accepted (see providers.webhooks). Rotation is two steps so no
callback is lost: add a new secret first (new callback URLs use it at once,
messages already at the gateway still call back with the old one), then retire
the old ones when the gateway has moved over.
"""

from __future__ import annotations

import secrets

from django.db import transaction

from providers.models import ProviderAccount


def new_callback_secret() -> str:
    # 32 URL-safe characters (192 bits): it travels in a URL path, so no padding or slashes.
    return secrets.token_urlsafe(24)


def secret_hint(secret: str) -> str:
    """What a page may show of a secret: its first few characters, never more than a quarter."""
    return str(secret)[: min(4, len(str(secret)) // 4)] + "…"


@transaction.atomic
def add_callback_secret(*, account_id: int) -> ProviderAccount:
    """Put a new secret first, so callback_url uses it; the old ones stay valid."""
    # Locked so two rotations at once cannot drop each other's new secret.
    account = ProviderAccount.objects.select_for_update().get(pk=account_id)
    account.callback_secrets = [new_callback_secret(), *(account.callback_secrets or [])]
    account.save(update_fields=["callback_secrets", "updated_at"])
    return account


@transaction.atomic
def retire_old_callback_secrets(*, account_id: int) -> ProviderAccount:
    """Keep only the current (first) secret: callbacks signed with the others get 403 at once."""
    account = ProviderAccount.objects.select_for_update().get(pk=account_id)
    account.callback_secrets = (account.callback_secrets or [])[:1]
    account.save(update_fields=["callback_secrets", "updated_at"])
    return account
