"""The partner endpoints: LCManager's two methods, byte for byte, and Cascade's status extension.

Every answer, success or not, is the method's own envelope (`ErrorCode`,
`Message`, and `MessageId` where the method has one) in the negotiated format,
with a meaningful HTTP status beside it. The order of checks is fixed so that
nothing is written unless everything before it passed: size → parse → types →
credentials → rate → ids → write (one transaction).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import counters, partner
from campaigns.models import Delivery, PartnerSend
from clients.models import Client, ClientEvent
from clients.services import EventRefused, change_consent, record_client_event
from config.lcmanager import codes
from config.lcmanager.auth import AuthenticationFailed, FailedAuthThrottle, authenticate, over_rate
from config.lcmanager.errors import FormatError
from config.lcmanager.extension import (
    CLIENT_EVENT_REQUEST,
    CLIENT_EVENT_RESPONSE,
    MESSAGE_STATUS_REQUEST,
    MESSAGE_STATUS_RESPONSE,
)
from config.lcmanager.negotiation import RequestFormatNegotiation
from config.lcmanager.openapi import describe
from config.lcmanager.parsers import (
    DataContractFormParser,
    DataContractJSONParser,
    DataContractXMLParser,
)
from config.lcmanager.renderers import DataContractJSONRenderer, DataContractXMLRenderer
from config.lcmanager.schemas import (
    CLIENT_UPDATE_COMMUNICATION_REQUEST,
    CLIENT_UPDATE_COMMUNICATION_RESPONSE,
    SEND_MESSAGE_PROCESS_REQUEST,
    SEND_MESSAGE_PROCESS_RESPONSE,
)
from config.lcmanager.validation import validate

logger = logging.getLogger(__name__)


class BodyTooLarge(exceptions.APIException):
    status_code = 413


class Answer(Exception):
    """Stop here and answer with this ErrorCode (and detail)."""

    def __init__(self, error: codes.ErrorCode, detail: str = "", **extra):
        super().__init__(detail or error.message)
        self.error = error
        self.detail = detail
        self.extra = extra


class LCManagerView(APIView):
    request_contract = None
    response_contract = None
    parser_classes = [DataContractJSONParser, DataContractXMLParser, DataContractFormParser]
    renderer_classes = [DataContractJSONRenderer, DataContractXMLRenderer]
    content_negotiation_class = RequestFormatNegotiation
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > settings.CASCADE_API_MAX_BODY_BYTES:
            raise BodyTooLarge()

    def answer(self, error: codes.ErrorCode, detail: str = "", **extra) -> Response:
        message = f"{error.message}: {detail}" if detail else str(error.message)
        data = {"ErrorCode": error.code, "Message": message, **extra}
        if "MessageId" in {f.name for f in self.response_contract.fields}:
            data.setdefault("MessageId", 0)
        headers = {}
        if error is codes.THROTTLED:
            headers["Retry-After"] = "60"
        return Response(data, status=error.http_status, headers=headers)

    def handle_exception(self, exc):
        if isinstance(exc, Answer):
            return self.answer(exc.error, exc.detail, **exc.extra)
        if isinstance(exc, BodyTooLarge | RequestDataTooBig):
            limit = min(settings.CASCADE_API_MAX_BODY_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
            return self.answer(codes.BODY_TOO_LARGE, f"at most {limit} bytes")
        if isinstance(exc, exceptions.UnsupportedMediaType):
            return self.answer(
                codes.UNSUPPORTED_MEDIA_TYPE,
                f"{exc.detail}; send application/json, text/json, application/xml, text/xml "
                "or application/x-www-form-urlencoded",
            )
        if isinstance(exc, exceptions.ParseError):
            return self.answer(codes.MALFORMED_BODY, str(exc.detail))
        if isinstance(exc, exceptions.MethodNotAllowed):
            response = self.answer(codes.METHOD_NOT_ALLOWED, str(exc.detail))
            response["Allow"] = ", ".join(self.allowed_methods)
            return response
        logger.exception("Partner API request failed")
        return self.answer(codes.INTERNAL_ERROR)

    def authenticated(self, request, data: dict):
        """The credential, or an answer: checked before any id in the request is looked up."""
        throttle = FailedAuthThrottle(request.META.get("REMOTE_ADDR", ""))
        if throttle.blocked():
            raise Answer(codes.THROTTLED, "too many failed authentications from this address")
        try:
            credential = authenticate(data)
        except AuthenticationFailed as failure:
            throttle.record_failure()
            raise Answer(failure.error, failure.detail) from failure
        if over_rate(credential):
            raise Answer(
                codes.THROTTLED,
                f"at most {settings.CASCADE_API_REQUESTS_PER_MINUTE} requests a minute "
                "per credential",
            )
        return credential

    def validated(self, raw) -> dict:
        try:
            return validate(self.request_contract, raw)
        except FormatError as error:
            raise Answer(codes.INVALID_REQUEST, str(error)) from error


class SendMessageProcessView(LCManagerView):
    """POST api/marketing/SendMessageProcess: send a message to one recipient or to a list."""

    request_contract = SEND_MESSAGE_PROCESS_REQUEST
    response_contract = SEND_MESSAGE_PROCESS_RESPONSE

    @describe(
        request_contract=SEND_MESSAGE_PROCESS_REQUEST,
        response_contract=SEND_MESSAGE_PROCESS_RESPONSE,
        stem="send_message_process",
        summary="Send a message over a channel to a client or user (LCManager)",
        description=(
            "One recipient (Client, Person, Phone, Email, Leads, Subscriber, User, ChatId) "
            "or a CardPhoneClientList, which becomes a campaign. MessageId identifies the "
            "call; an identical retry within 60 s gets the same answer."
        ),
    )
    @transaction.atomic  # an unexpected failure half-way leaves nothing behind
    def post(self, request):
        data = self.validated(request.data)
        credential = self.authenticated(request, data)
        try:
            outcome = partner.send_message_process(credential=credential, request=data)
        except partner.UnknownId as error:
            raise Answer(codes.NOT_FOUND, error.message) from error
        except partner.PartnerRequestError as error:
            raise Answer(_request_error_code(error), error.message) from error
        message_id = outcome.partner_send.pk
        if outcome.refusal:
            error = codes.BY_SKIP_REASON.get(outcome.refusal, codes.NO_ROUTE)
            # The step's stored explanation is the engine's English; a Russian
            # answer says the same through its ErrorCode's own text.
            detail = outcome.refusal_text if translation.get_language() == "en" else ""
            return self.answer(error, detail, MessageId=message_id)
        return self.answer(codes.OK, MessageId=message_id)


def _request_error_code(error: partner.PartnerRequestError) -> codes.ErrorCode:
    if error.field == "CommunicationType":
        return codes.UNKNOWN_COMMUNICATION_TYPE
    if error.field == "TextMessage":
        return codes.NO_CONTENT
    if error.field is None:
        return codes.NO_RECIPIENT
    return codes.INVALID_REQUEST


class ClientUpdateCommunicationView(LCManagerView):
    """POST api/client/ClientUpdateCommunication: a client's consent flags; absent = unchanged."""

    request_contract = CLIENT_UPDATE_COMMUNICATION_REQUEST
    response_contract = CLIENT_UPDATE_COMMUNICATION_RESPONSE

    @describe(
        request_contract=CLIENT_UPDATE_COMMUNICATION_REQUEST,
        response_contract=CLIENT_UPDATE_COMMUNICATION_RESPONSE,
        stem="client_update_communication",
        summary="Update a client's ways of contact (LCManager)",
        description="An absent or nil flag is left unchanged; every change is in the history.",
    )
    def post(self, request):
        return self.update(request)

    FLAGS = {
        "AllowSms": "allow_sms",
        "AllowEmail": "allow_email",
        "AllowPush": "allow_push",
        "AllowEmailOnlineCheque": "allow_email_online_cheque",
    }

    # No transaction around the whole call: the credential is only read, and
    # change_consent's own is the one that writes (no savepoint, two statements less).
    def update(self, request):
        data = self.validated(request.data)
        credential = self.authenticated(request, data)
        client_id = data.get("Client")
        if client_id is None:
            raise Answer(codes.INVALID_REQUEST, "Client is required")
        flags = {flag: data.get(field) for field, flag in self.FLAGS.items()}
        try:
            # Looked up inside the credential's operator: another operator's client
            # is "not found", by the same locking read that takes the row.
            change_consent(
                client_id=client_id,
                operator_id=credential.operator_id,
                flags=flags,
                source="api",
                api_credential=credential,
                reason=f"ClientUpdateCommunication by {credential.name}",
            )
        except ObjectDoesNotExist as error:
            raise Answer(codes.NOT_FOUND, f"Client {client_id} not found") from error
        return self.answer(codes.OK)


class MessageStatusView(LCManagerView):
    """GET (or POST) api/marketing/MessageStatus: Cascade's extension, a MessageId's progress."""

    request_contract = MESSAGE_STATUS_REQUEST
    response_contract = MESSAGE_STATUS_RESPONSE

    @describe(
        request_contract=MESSAGE_STATUS_REQUEST,
        response_contract=MESSAGE_STATUS_RESPONSE,
        summary="Where a MessageId has got to (Cascade's extension)",
        description="Query parameters MessageId, Operator, Token or SiteCode.",
        in_query=True,
    )
    def get(self, request):
        return self.status(request.query_params.dict())

    @describe(
        request_contract=MESSAGE_STATUS_REQUEST,
        response_contract=MESSAGE_STATUS_RESPONSE,
        summary="Where a MessageId has got to (Cascade's extension)",
        description="The same as GET, with the fields in a body.",
    )
    def post(self, request):
        return self.status(request.data)

    def status(self, raw) -> Response:
        data = self.validated(raw)
        credential = self.authenticated(request=self.request, data=data)
        message_id = data.get("MessageId")
        if message_id is None:
            raise Answer(codes.INVALID_REQUEST, "MessageId is required")
        partner_send = (
            PartnerSend.objects.filter(pk=message_id, operator_id=credential.operator_id)
            .select_related("campaign")
            .prefetch_related(
                Prefetch("message__deliveries", queryset=Delivery.objects.order_by("step"))
            )
            .first()
        )
        if partner_send is None:
            raise Answer(codes.NOT_FOUND, f"MessageId {message_id} not found")
        return self.answer(codes.OK, **status_fields(partner_send))


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def status_fields(partner_send: PartnerSend) -> dict:
    if partner_send.campaign_id:
        campaign = partner_send.campaign
        totals = [
            {"Channel": channel, "Status": status, "Count": count}
            for (channel, status), count in sorted(counters.counts(campaign.pk).items())
            if count
        ]
        return {"MessageId": partner_send.pk, "Status": campaign.state, "Totals": totals}
    message = partner_send.message
    steps = [
        {
            "Step": delivery.step,
            "Channel": delivery.channel,
            "Status": delivery.status,
            "ErrorCode": delivery.error_code or None,
            "ErrorMessage": delivery.error_message or None,
            "CreatedAt": _iso(delivery.created_at),
            "SubmittedAt": _iso(delivery.submitted_at),
            "DeliveredAt": _iso(delivery.delivered_at),
            "ReadAt": _iso(delivery.read_at),
            "FinalAt": _iso(delivery.final_at),
            "Parts": delivery.parts,
            "Price": delivery.price,
            "Currency": delivery.currency or None,
        }
        for delivery in message.deliveries.all()
    ]
    return {"MessageId": partner_send.pk, "Status": message.status, "Steps": steps}


class ClientEventView(LCManagerView):
    """POST api/client/ClientEvent: Cascade's extension, a purchase, registration or bonus change.

    Partners' purchases and registrations reach Cascade here, so the purchase,
    registration, win-back and bonus-expiring triggers fire from partner data.
    """

    request_contract = CLIENT_EVENT_REQUEST
    response_contract = CLIENT_EVENT_RESPONSE

    @describe(
        request_contract=CLIENT_EVENT_REQUEST,
        response_contract=CLIENT_EVENT_RESPONSE,
        summary="Record a client's purchase, registration or bonus change (Cascade's extension)",
        description=(
            "purchase moves the client's last purchase forward; registration sets the "
            "registration time once; bonus sets a card's balance and its expiry. Each is kept "
            "as an event. Same envelope, credentials and ErrorCode table as the LCManager methods."
        ),
    )
    @transaction.atomic
    def post(self, request):
        data = self.validated(request.data)
        credential = self.authenticated(request, data)
        client_id = data.get("Client")
        if client_id is None:
            raise Answer(codes.INVALID_REQUEST, "Client is required")
        kind = (data.get("Event") or "").strip().lower()
        if kind not in ClientEvent.Kind.values:
            raise Answer(
                codes.INVALID_REQUEST,
                f"Event must be one of {', '.join(ClientEvent.Kind.values)}",
            )
        occurred_at = _moment(data, "OccurredAt") or timezone.now()
        expires_at = _moment(data, "BonusExpiresAt")
        if kind == ClientEvent.Kind.BONUS and data.get("Card") is None:
            raise Answer(codes.INVALID_REQUEST, "Card is required for a bonus event")
        bonus = data.get("Bonus")
        if bonus is not None and not 0 <= bonus < BONUS_LIMIT:
            raise Answer(codes.INVALID_REQUEST, f"Bonus must be from 0 to {BONUS_LIMIT - 1}")
        client = Client.objects.filter(pk=client_id, operator_id=credential.operator_id).first()
        if client is None:
            raise Answer(codes.NOT_FOUND, f"Client {client_id} not found")
        try:
            event = record_client_event(
                client=client,
                kind=kind,
                occurred_at=occurred_at,
                card_number=data.get("Card"),
                bonus=data.get("Bonus"),
                bonus_expires_at=expires_at,
                api_credential=credential,
            )
        except EventRefused as error:
            raise Answer(codes.NOT_FOUND, str(error)) from error
        return self.answer(codes.OK, EventId=event.pk)


# Card.bonus holds 14 digits, 2 of them after the point.
BONUS_LIMIT = 10**12


def _moment(data: dict, field: str):
    """An ISO 8601 date and time with an offset, or None when absent; a clear error otherwise."""
    value = data.get(field)
    if value in (None, ""):
        return None
    try:
        moment = parse_datetime(value.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise Answer(
            codes.INVALID_REQUEST,
            f"{field} must be an ISO 8601 date and time with an offset, "
            "e.g. 2026-12-07T10:15:00+03:00",
        )
    return moment
