"""Domain operations on clients, consent and partner credentials.

The admin, the pages, the partner API and imports all call these functions, so
consent history is written the same way whichever door a change comes through.
"""

import hashlib
import secrets
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q

from clients.channels import CONSENT_FLAGS
from clients.models import ApiCredential, Card, Client, ClientEvent, ConsentChange, Operator


def change_consent(
    *,
    client_id: int,
    flags: dict[str, bool | None],
    source: str,
    changed_by: AbstractBaseUser | None = None,
    api_credential: ApiCredential | None = None,
    reason: str = "",
    operator_id: int | None = None,
) -> list[ConsentChange]:
    """Set consent flags and record one history row per flag that really changed.

    A flag given as None is left as it is (the partner API's "absent = unchanged").
    The client row is locked for the read-compare-write, so two concurrent
    changes both land in the history in the order they were applied. With
    `operator_id`, a client of another operator is Client.DoesNotExist, found by
    the same locking read (the partner API needs no query of its own for it).
    """
    unknown = set(flags) - set(CONSENT_FLAGS)
    if unknown:
        raise ValueError(f"Unknown consent flags: {', '.join(sorted(unknown))}")
    if source not in ConsentChange.Source.values:
        raise ValueError(f"Unknown consent source {source!r}")
    wanted = {flag: value for flag, value in flags.items() if value is not None}
    clients = Client.objects.all()
    if operator_id is not None:
        clients = clients.filter(operator_id=operator_id)
    with transaction.atomic():
        client = (
            clients.select_for_update().only("id", "operator_id", *CONSENT_FLAGS).get(pk=client_id)
        )
        changes = [
            ConsentChange(
                operator_id=client.operator_id,
                client_id=client.pk,
                flag=flag,
                old_value=getattr(client, flag),
                new_value=value,
                source=source,
                changed_by=changed_by if changed_by and changed_by.is_authenticated else None,
                api_credential=api_credential,
                reason=reason[:500],
            )
            for flag, value in wanted.items()
            if getattr(client, flag) != value
        ]
        if changes:
            Client.objects.filter(pk=client.pk).update(
                **{change.flag: change.new_value for change in changes}
            )
            ConsentChange.objects.bulk_create(changes)
    return changes


def record_initial_consent(
    *, client: Client, source: str, changed_by: AbstractBaseUser | None = None, reason: str = ""
) -> list[ConsentChange]:
    """History rows (old value empty) for the flags a newly created client starts with on."""
    changes = [
        ConsentChange(
            operator_id=client.operator_id,
            client_id=client.pk,
            flag=flag,
            old_value=None,
            new_value=True,
            source=source,
            changed_by=changed_by if changed_by and changed_by.is_authenticated else None,
            reason=reason[:500],
        )
        for flag in CONSENT_FLAGS
        if getattr(client, flag)
    ]
    ConsentChange.objects.bulk_create(changes)
    return changes


@dataclass(frozen=True)
class IssuedCredential:
    credential: ApiCredential
    secret: str  # shown once; only its digest is stored


def digest_secret(secret: str) -> str:
    # Secrets are long random values, so a fast unsalted hash is enough: there
    # is nothing to brute-force offline that is cheaper than guessing online.
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_credential(
    *,
    operator: Operator,
    name: str,
    kind: str = ApiCredential.Kind.TOKEN,
    created_by: AbstractBaseUser | None = None,
) -> IssuedCredential:
    """Create a partner credential and return its secret, which is never stored.

    The partner protocol types `Token` as an integer, so tokens are 18 random
    digits (about 60 bits, fits .NET's long); site codes are URL-safe strings.
    """
    if kind == ApiCredential.Kind.TOKEN:
        secret = str(10**17 + secrets.randbelow(9 * 10**17))
    elif kind == ApiCredential.Kind.SITE_CODE:
        secret = secrets.token_urlsafe(24)
    else:
        raise ValueError(f"Unknown credential kind {kind!r}")
    credential = ApiCredential.objects.create(
        operator=operator,
        name=name,
        kind=kind,
        secret_digest=digest_secret(secret),
        secret_hint=secret[-4:],
        created_by=created_by if created_by and created_by.is_authenticated else None,
    )
    return IssuedCredential(credential=credential, secret=secret)


def revoke_credential(*, credential_id: int) -> None:
    from django.utils import timezone

    ApiCredential.objects.filter(pk=credential_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def operator_ids_for(user) -> list[int] | None:
    """Operators a user may see; None means all of them (superuser)."""
    if user.is_superuser:
        return None
    return list(user.operator_memberships.values_list("operator_id", flat=True))


# --- many clients at once (imports) -----------------------------------------------------

# psycopg sends at most 65,535 parameters per query; stay well below it.
_CHUNK = 5_000


def _bulk_now():
    # The rows of one bulk call share one timestamp. Leaving `changed_at` to its
    # database default makes Django compile a DEFAULT expression for every row,
    # which costs four times the insert itself on 10,000 rows.
    from django.utils import timezone

    return timezone.now()


def change_consent_many(
    *,
    flags_by_client: dict[int, dict[str, bool | None]],
    source: str,
    changed_by: AbstractBaseUser | None = None,
    reason: str = "",
) -> list[ConsentChange]:
    """`change_consent` for many clients in a few queries: same checks, same history rows.

    One call of `change_consent` costs several round trips; an import of 10,000
    clients cannot pay that per client. The clients are locked in id order (two
    bulk changes cannot deadlock), compared, updated with one UPDATE per distinct
    set of new values, and their history rows inserted in bulk.
    """
    unknown = {flag for flags in flags_by_client.values() for flag in flags} - set(CONSENT_FLAGS)
    if unknown:
        raise ValueError(f"Unknown consent flags: {', '.join(sorted(unknown))}")
    if source not in ConsentChange.Source.values:
        raise ValueError(f"Unknown consent source {source!r}")
    author = changed_by if changed_by and changed_by.is_authenticated else None
    now = _bulk_now()
    ids = sorted(flags_by_client)
    changes: list[ConsentChange] = []
    ids_by_assignment: dict[tuple[tuple[str, bool], ...], list[int]] = {}
    with transaction.atomic():
        clients: dict[int, Client] = {}
        for start in range(0, len(ids), _CHUNK):
            clients.update(
                (client.pk, client)
                for client in Client.objects.select_for_update()
                .filter(pk__in=ids[start : start + _CHUNK])
                .order_by("pk")
                .only("id", "operator_id", *CONSENT_FLAGS)
            )
        missing = set(ids) - set(clients)
        if missing:
            raise Client.DoesNotExist(f"No clients with ids {sorted(missing)[:10]}")
        for client_id in ids:
            client = clients[client_id]
            mine = [
                ConsentChange(
                    operator_id=client.operator_id,
                    client_id=client.pk,
                    flag=flag,
                    old_value=getattr(client, flag),
                    new_value=value,
                    source=source,
                    changed_by=author,
                    reason=reason[:500],
                    changed_at=now,
                )
                for flag, value in flags_by_client[client_id].items()
                if value is not None and getattr(client, flag) != value
            ]
            if mine:
                changes.extend(mine)
                assignment = tuple(sorted((change.flag, change.new_value) for change in mine))
                ids_by_assignment.setdefault(assignment, []).append(client_id)
        for assignment, client_ids in ids_by_assignment.items():
            for start in range(0, len(client_ids), _CHUNK):
                Client.objects.filter(pk__in=client_ids[start : start + _CHUNK]).update(
                    **dict(assignment)
                )
        ConsentChange.objects.bulk_create(changes, batch_size=2_000)
    return changes


def record_initial_consent_many(
    *,
    clients: list[Client],
    source: str,
    changed_by: AbstractBaseUser | None = None,
    reason: str = "",
) -> list[ConsentChange]:
    """`record_initial_consent` for many newly created clients, in one bulk insert."""
    if source not in ConsentChange.Source.values:
        raise ValueError(f"Unknown consent source {source!r}")
    author = changed_by if changed_by and changed_by.is_authenticated else None
    now = _bulk_now()
    changes = [
        ConsentChange(
            operator_id=client.operator_id,
            client_id=client.pk,
            flag=flag,
            old_value=None,
            new_value=True,
            source=source,
            changed_by=author,
            reason=reason[:500],
            changed_at=now,
        )
        for client in clients
        for flag in CONSENT_FLAGS
        if getattr(client, flag)
    ]
    ConsentChange.objects.bulk_create(changes, batch_size=2_000)
    return changes


class EventRefused(ValueError):
    """The event names something that is not there (a card of another client)."""


def record_client_event(
    *,
    client: Client,
    kind: str,
    occurred_at,
    card_number: int | None = None,
    bonus=None,
    bonus_expires_at=None,
    api_credential=None,
) -> ClientEvent:
    """Keep a partner's event and move what triggers read; call inside a transaction.

    A purchase moves `last_purchase_at` forward only (a late report of an older
    purchase does not make the client look lapsed); a registration sets
    `registered_at` once; a bonus event sets the card's balance and expiry.
    """
    card = None
    if kind == ClientEvent.Kind.BONUS:
        card = (
            Card.objects.select_for_update(no_key=True)
            .filter(operator_id=client.operator_id, client=client, number=card_number)
            .first()
        )
        if card is None:
            raise EventRefused(f"Card {card_number} is not this client's")
        if bonus is not None:
            card.bonus = bonus
        card.bonus_expires_at = bonus_expires_at
        card.save(update_fields=["bonus", "bonus_expires_at"])
    elif kind == ClientEvent.Kind.PURCHASE:
        Client.objects.filter(pk=client.pk).filter(
            Q(last_purchase_at__isnull=True) | Q(last_purchase_at__lt=occurred_at)
        ).update(last_purchase_at=occurred_at)
    elif kind == ClientEvent.Kind.REGISTRATION:
        Client.objects.filter(pk=client.pk, registered_at__isnull=True).update(
            registered_at=occurred_at
        )
    return ClientEvent.objects.create(
        operator_id=client.operator_id,
        client=client,
        kind=kind,
        occurred_at=occurred_at,
        card=card,
        bonus=bonus,
        bonus_expires_at=bonus_expires_at,
        api_credential=api_credential,
    )
