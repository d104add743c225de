"""SendMessageProcess, the partner API's send: one message now, or a CardPhoneClientList campaign.

The request arrives parsed and typed (wire names, see `config/lcmanager`) and
authenticated; this module decides who the recipient is, inside the
credential's operator only, and records the send the same way a campaign
does: a `Message` and its first `Delivery`, queued for the dispatcher, or
skipped with the reason when consent, an address or a route is missing. A
refusal is therefore kept, visible and answered, never a silent drop.

What the fields mean here (the seed leaves some open):
- one recipient: `Client` or `Person` (a participant id, read as a client id),
  `Phone` or `Email` (the operator's client with that address if there is one,
  else a stranger whose consent is unknown), `Leads`, `Subscriber`, `User` (an
  operator staff member: a service message), `ChatId` (a messenger group);
- `CommunicationType` 7 (call code) is a service message and needs no
  marketing consent; every other type is promotional;
- `TypeOpen` and `IdTypeOpen` are accepted and unused, as in LCManager;
- `Files`: kept with the message; the first image is the Viber picture.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models.expressions import DatabaseDefault
from django.utils import timezone

from campaigns import queue, services
from campaigns.eligibility import Recipient, skip_reason
from campaigns.fanout import KEY_STEP_FACTOR, delivery_key
from campaigns.models import (
    AudienceListEntry,
    Campaign,
    Delivery,
    Message,
    MessageTemplate,
    PartnerSend,
)
from campaigns.routing import cached_routes_for
from clients.channels import CHANNEL_BY_COMMUNICATION_TYPE, CONSENT_FLAGS, Channel, Purpose
from clients.models import (
    ApiCredential,
    Card,
    Client,
    Lead,
    MessengerChat,
    OperatorMember,
    PointOfSale,
    Subscriber,
)
from clients.phones import normalize_phone
from providers.status import DeliveryStatus

RETRY_WINDOW = timedelta(seconds=60)
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit, and Message.email's
ONE_OFF_TTL_MINUTES = 24 * 60
RECIPIENT_CLIENT_FIELDS = ("id", "operator_id", "phone", "email", "push_tokens", *CONSENT_FLAGS)
RECIPIENT_FIELDS = ("Client", "Person", "Phone", "Email", "Leads", "Subscriber", "User", "ChatId")


class PartnerRequestError(Exception):
    """The request cannot be carried out as asked; nothing was written."""

    kind = "invalid"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class UnknownId(PartnerRequestError):
    """An id that does not exist in the credential's operator (or exists in another one)."""

    kind = "not_found"

    def __init__(self, what: str, value, *, field: str):
        super().__init__(f"{what} {value} not found.", field=field)
        self.what = what


@dataclass
class SendOutcome:
    partner_send: PartnerSend
    repeated: bool  # an identical request within a minute: the first answer, nothing new
    refusal: str = ""  # skip code of a one-recipient send (no_consent, no_address, …)
    refusal_text: str = ""


CREDENTIAL_FIELDS = ("Operator", "Token", "SiteCode")


def request_digest(request: dict) -> str:
    """A digest of the request's meaning, so JSON, XML and form retries compare alike.

    The credential is left out: retries are looked up per credential anyway, and
    a stored hash of a request holding the Token would be a guessing target.
    """
    meaning = {key: value for key, value in request.items() if key not in CREDENTIAL_FIELDS}
    canonical = json.dumps(meaning, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def send_message_process(*, credential: ApiCredential, request: dict) -> SendOutcome:
    """Queue (or refuse, recorded) what the request asks; an identical retry gets the first answer."""
    operator_id = credential.operator_id
    digest = request_digest(request)
    # No savepoint inside the view's transaction: it would be two statements more.
    with transaction.atomic(savepoint=False):
        _lock(f"{credential.pk}:{digest}")
        if request.get("CardPhoneClientList"):
            previous = _previous(credential, digest)
            if previous is not None:
                return _outcome(previous, repeated=True)
        channel = _channel(request.get("CommunicationType"))
        purpose = Purpose.SERVICE if channel == Channel.CALL_CODE else Purpose.PROMOTIONAL
        pos = _point_of_sale(operator_id, request.get("PosCode"))
        template = _template(operator_id, request.get("MessageTemplate"))
        if template is None and not (request.get("TextMessage") or "").strip():
            raise PartnerRequestError(
                "Give MessageTemplate or TextMessage: there is nothing to send.",
                field="TextMessage",
            )
        if request.get("CardPhoneClientList"):
            campaign = _list_campaign(
                credential, request, channel=channel, purpose=purpose, template=template
            )
            partner_send = PartnerSend.objects.create(
                operator_id=operator_id,
                api_credential=credential,
                request_digest=digest,
                campaign=campaign,
            )
            services.launch(campaign_id=campaign.pk)
            return SendOutcome(partner_send=partner_send, repeated=False)
        message, delivery = _one_message(
            credential, request, channel=channel, purpose=purpose, template=template, pos=pos
        )
        partner_send = PartnerSend(
            operator_id=operator_id, api_credential=credential, request_digest=digest
        )
        if not insert_one_send(message, delivery, partner_send):
            return _outcome(_previous(credential, digest), repeated=True)
        if delivery.status == DeliveryStatus.QUEUED:
            account_id = delivery.account_id
            transaction.on_commit(lambda: queue.kick_account(account_id))
        skipped = delivery.status == DeliveryStatus.SKIPPED
        return SendOutcome(
            partner_send=partner_send,
            repeated=False,
            refusal=delivery.error_code if skipped else "",
            refusal_text=delivery.error_message if skipped else "",
        )


def _previous(credential: ApiCredential, digest: str) -> PartnerSend | None:
    return (
        PartnerSend.objects.filter(
            api_credential=credential,
            request_digest=digest,
            created_at__gte=timezone.now() - RETRY_WINDOW,
        )
        .order_by("-id")
        .first()
    )


def _lock(key: str) -> None:
    # Two identical requests at once must not both send: the second waits for
    # the first to commit, then finds it. SQLite serializes writers anyway.
    if connection.vendor == "postgresql":
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [number])


def insert_one_send(message: Message, delivery: Delivery, partner_send: PartnerSend) -> bool:
    """Write a one-recipient send (its message, first delivery and PartnerSend) unless the
    same request was recorded within RETRY_WINDOW; False when it was, and nothing written.

    On PostgreSQL one statement does all three (INSERT … RETURNING chained in a WITH):
    the partner API's hot path was a third ORM work building three INSERTs. The retry
    lock is held, so this statement's snapshot sees an identical request that committed
    while this one waited. Elsewhere (SQLite) the ORM writes them one by one.
    """
    since = timezone.now() - RETRY_WINDOW
    if connection.vendor != "postgresql":
        if _previous(partner_send.api_credential, partner_send.request_digest) is not None:
            return False
        message.save()
        delivery.message = message
        delivery.idempotency_key = delivery_key(message.pk, delivery.step)
        delivery.save()
        partner_send.message = message
        partner_send.save()
        return True
    message_columns, message_values = _insert_values(message)
    delivery_columns, delivery_values = _insert_values(
        delivery, skip={"message_id", "idempotency_key"}
    )
    send_columns, send_values = _insert_values(partner_send, skip={"message_id"})
    sql = f"""
        WITH m AS (
            INSERT INTO {Message._meta.db_table} ({", ".join(message_columns)})
            SELECT {_placeholders(message_values)}
            WHERE NOT EXISTS (
                SELECT 1 FROM {PartnerSend._meta.db_table}
                WHERE api_credential_id = %s AND request_digest = %s AND created_at >= %s
            )
            RETURNING id
        ), d AS (
            INSERT INTO {Delivery._meta.db_table}
                (message_id, idempotency_key, {", ".join(delivery_columns)})
            SELECT m.id, (m.id * {KEY_STEP_FACTOR} + %s)::text, {_placeholders(delivery_values)}
            FROM m
            RETURNING id
        ), p AS (
            INSERT INTO {PartnerSend._meta.db_table} (message_id, {", ".join(send_columns)})
            SELECT m.id, {_placeholders(send_values)} FROM m
            RETURNING id
        )
        SELECT m.id, d.id, p.id FROM m, d, p
    """  # noqa: S608 - only the models' own table and column names are interpolated
    params = [
        *message_values,
        partner_send.api_credential_id,
        partner_send.request_digest,
        since,
        delivery.step,
        *delivery_values,
        *send_values,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    message.pk, delivery.pk, partner_send.pk = row
    for instance in (message, delivery, partner_send):
        instance._state.adding = False
    delivery.message = partner_send.message = message
    delivery.idempotency_key = delivery_key(message.pk, delivery.step)
    return True


def _insert_values(instance, skip=frozenset()) -> tuple[list[str], list]:
    """An unsaved instance's columns and database values, as Model.save() would write them
    (auto_now fields set); a field left to its database default is left out."""
    columns, values = [], []
    for field in instance._meta.concrete_fields:
        if field.primary_key or field.attname in skip:
            continue
        value = field.pre_save(instance, add=True)
        if isinstance(value, DatabaseDefault):
            continue
        columns.append(field.column)
        values.append(field.get_db_prep_save(value, connection=connection))
    return columns, values


def _placeholders(values: list) -> str:
    return ", ".join(["%s"] * len(values))


def _outcome(partner_send: PartnerSend, *, repeated: bool) -> SendOutcome:
    refusal = refusal_text = ""
    if partner_send.message_id:
        first = (
            Delivery.objects.filter(message_id=partner_send.message_id, step=0)
            .only("status", "error_code", "error_message")
            .first()
        )
        if first is not None and first.status == DeliveryStatus.SKIPPED:
            refusal, refusal_text = first.error_code, first.error_message
    return SendOutcome(
        partner_send=partner_send, repeated=repeated, refusal=refusal, refusal_text=refusal_text
    )


def _channel(communication_type) -> str:
    if communication_type is None:
        raise PartnerRequestError("CommunicationType is required.", field="CommunicationType")
    channel = CHANNEL_BY_COMMUNICATION_TYPE.get(communication_type)
    if channel is None:
        raise PartnerRequestError(
            f"CommunicationType {communication_type} is not one of 1 sms, 2 email, 3 push, "
            "4 telegram, 5 whatsapp, 6 viber, 7 call code.",
            field="CommunicationType",
        )
    return channel


def _point_of_sale(operator_id: int, code) -> PointOfSale | None:
    if not code:
        return None
    pos = PointOfSale.objects.filter(operator_id=operator_id, code=code).first()
    if pos is None:
        raise UnknownId("Point of sale", repr(code), field="PosCode")
    return pos


def _template(operator_id: int, template_id) -> MessageTemplate | None:
    if template_id is None:
        return None
    template = MessageTemplate.objects.filter(operator_id=operator_id, pk=template_id).first()
    if template is None:
        raise UnknownId("Message template", template_id, field="MessageTemplate")
    return template


def _phone(value, field: str) -> str:
    try:
        return normalize_phone(value)
    except ValidationError as error:
        raise PartnerRequestError(
            f"{field} {value} is not a valid phone number: {' '.join(error.messages)}", field=field
        ) from error


def _email(value) -> str:
    email = (value or "").strip()
    if not email:
        return ""
    try:
        if len(email) > MAX_EMAIL_LENGTH:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError as error:
        shown = email if len(email) <= 60 else email[:57] + "..."
        raise PartnerRequestError(f"Email {shown!r} is not valid.", field="Email") from error
    return email


def _recipient(operator_id: int, request: dict) -> Recipient:
    given = [name for name in RECIPIENT_FIELDS if request.get(name) not in (None, "")]
    if not given:
        raise PartnerRequestError(
            "Say who gets the message: Client, Phone, Email, Subscriber, ChatId, User, Person, "
            "Leads, or a CardPhoneClientList.",
            field=None,
        )
    # Only what the eligibility rules and the message read: a client row has some
    # forty columns, and building them all was a tenth of the request.
    clients = Client.objects.filter(operator_id=operator_id).only(*RECIPIENT_CLIENT_FIELDS)
    email = _email(request.get("Email"))  # checked even beside a Phone: it may become the address
    for field in ("Client", "Person"):
        if request.get(field) is not None:
            client = clients.filter(pk=request[field]).first()
            if client is None:
                raise UnknownId("Client", request[field], field=field)
            return Recipient(f"client:{client.pk}", client, client.phone, client.email)
    if request.get("Phone") is not None:
        phone = _phone(request["Phone"], "Phone")
        client = clients.filter(phone=phone).order_by("pk").first()
        return Recipient(
            f"client:{client.pk}" if client else f"phone:{phone}",
            client,
            phone,
            (client.email if client else "") or email,
        )
    if email:
        client = clients.filter(email__iexact=email).order_by("pk").first()
        # Keys are at most 100 characters; an address may be 254.
        key = f"email:{hashlib.sha256(email.lower().encode()).hexdigest()}"
        return Recipient(
            f"client:{client.pk}" if client else key,
            client,
            client.phone if client else "",
            client.email if client else email,
        )
    if request.get("Leads") is not None:
        lead = (
            Lead.objects.filter(operator_id=operator_id, pk=request["Leads"])
            .select_related("client")
            .first()
        )
        if lead is None:
            raise UnknownId("Lead", request["Leads"], field="Leads")
        # A lead becomes someone we may write to once they are a consenting client.
        return Recipient(f"lead:{lead.pk}", lead.client, lead.phone, lead.email)
    if request.get("Subscriber") is not None:
        subscriber = (
            Subscriber.objects.filter(operator_id=operator_id, pk=request["Subscriber"])
            .select_related("client")
            .first()
        )
        if subscriber is None:
            raise UnknownId("Subscriber", request["Subscriber"], field="Subscriber")
        client = subscriber.client if subscriber.is_subscribed else None
        return Recipient(f"subscriber:{subscriber.pk}", client, subscriber.phone, "")
    if request.get("User") is not None:
        member = (
            OperatorMember.objects.filter(operator_id=operator_id, user_id=request["User"])
            .select_related("user")
            .first()
        )
        if member is None:
            raise UnknownId("User", request["User"], field="User")
        return Recipient(
            f"user:{member.user_id}",
            None,
            "",  # staff are reached by email: their accounts hold no phone
            member.user.email,
            purpose=Purpose.SERVICE,
        )
    chat = MessengerChat.objects.filter(operator_id=operator_id, chat_id=request["ChatId"]).first()
    if chat is None:
        raise UnknownId("Chat", request["ChatId"], field="ChatId")
    # Posting to a group is not a message to a person; no gateway we run posts to groups.
    return Recipient(f"chat:{chat.pk}", None, "", "", purpose=Purpose.SERVICE)


def _one_message(credential, request, *, channel, purpose, template, pos):
    """The message and its first delivery, unsaved: queued, or skipped with the reason."""
    operator_id = credential.operator_id
    recipient = _recipient(operator_id, request)
    purpose = recipient.purpose or purpose
    now = timezone.now()
    variables = {"pos_code": pos.code, "pos_name": pos.name} if pos else {}
    routes = cached_routes_for(operator_id)
    if request.get("ChatId") is not None:
        code, text = "no_route", "Cascade has no gateway that posts to messenger groups."
    else:
        code, text = skip_reason(
            channel=channel,
            purpose=purpose,
            client=recipient.client,
            phone=recipient.phone,
            email=recipient.email,
            routes=routes,
        )
    message = Message(
        operator_id=operator_id,
        client=recipient.client,
        recipient_key=recipient.key,
        phone=recipient.phone,
        email=recipient.email,
        purpose=purpose,
        title=(request.get("Title") or "")[:200],
        text=request.get("TextMessage") or "",
        variables=variables,
        template=template,
        attachments=_attachments(request.get("Files") or []),
        api_credential=credential,
        status=Message.Status.SKIPPED if code else Message.Status.IN_PROGRESS,
    )
    delivery = Delivery(
        operator_id=operator_id,
        step=0,
        channel=channel,
        account_id=None if code else routes[channel].primary,
        status=DeliveryStatus.SKIPPED if code else DeliveryStatus.QUEUED,
        error_code=code,
        error_message=text,
        next_attempt_at=None if code else now,
        expires_at=now + timedelta(minutes=ONE_OFF_TTL_MINUTES),
        final_at=now if code else None,
    )
    return message, delivery


def _attachments(files: list[dict]) -> list[dict]:
    return [
        {key: file.get(key) for key in ("Id", "Url", "Type", "Name", "LevelStep")} for file in files
    ]


def _list_campaign(credential, request, *, channel, purpose, template) -> Campaign:
    """A CardPhoneClientList becomes a running campaign of those rows, each with its Bonus."""
    operator_id = credential.operator_id
    rows = request["CardPhoneClientList"]
    client_ids = {row["Client"] for row in rows if row.get("Client") is not None}
    known_clients = set(
        Client.objects.filter(operator_id=operator_id, pk__in=client_ids).values_list(
            "pk", flat=True
        )
    )
    card_numbers = {row["Card"] for row in rows if row.get("Card") is not None}
    card_clients = dict(
        Card.objects.filter(operator_id=operator_id, number__in=card_numbers).values_list(
            "number", "client_id"
        )
    )
    entries = []
    for index, row in enumerate(rows):
        where = f"CardPhoneClientList[{index}]"
        client_id, card, phone = row.get("Client"), row.get("Card"), row.get("Phone")
        if client_id is None and card is None and phone is None:
            raise PartnerRequestError(
                f"{where} names nobody: give Phone, Client or Card.", field=where
            )
        if client_id is not None and client_id not in known_clients:
            raise UnknownId("Client", client_id, field=f"{where}.Client")
        if card is not None and card not in card_clients:
            raise UnknownId("Card", card, field=f"{where}.Card")
        if client_id is None and card is not None:
            client_id = card_clients[card]
        variables = {}
        if row.get("Bonus") is not None:
            variables["Bonus"] = _number(row["Bonus"])
        if row.get("Id") is not None:
            variables["Id"] = row["Id"]
        if card is not None:
            variables["Card"] = card
        entries.append(
            AudienceListEntry(
                operator_id=operator_id,
                client_id=client_id,
                phone=_phone(phone, f"{where}.Phone") if phone is not None else "",
                card_number=card,
                variables=variables,
            )
        )
    if template is None:
        template = MessageTemplate.objects.create(
            operator_id=operator_id,
            # Names are unique per operator and two partners may send in the same second.
            name=f"Partner message {timezone.now():%Y-%m-%d %H:%M} {secrets.token_hex(4)}",
            title=(request.get("Title") or "")[:200],
            text=request["TextMessage"],
        )
    campaign = Campaign.objects.create(
        operator_id=operator_id,
        name=f"{credential.name}: list of {len(rows)}"[:200],
        template=template,
        purpose=purpose,
        channels=[channel],
        audience_kind=Campaign.AudienceKind.LIST,
        source=Campaign.Source.API,
        api_credential=credential,
    )
    for entry in entries:
        entry.campaign = campaign
    AudienceListEntry.objects.bulk_create(entries, batch_size=1000)
    return campaign


def _number(value: Decimal):
    # JSON variables: whole bonuses render as "150", not "150.00".
    return int(value) if value == value.to_integral_value() else float(value)
