"""BSG (bsg.world, legacy app.bsg.hk): Viber with an SMS fallback (`alt_route`), and plain SMS.

Wire format: ../shared/docs/protocols.md §4 and protocols-sources.md §4 (seed 004).

Account: base_url ".../rest"; credentials["api_key"], sent as the X-API-KEY header;
sender_names["viber"] (alpha_name: at most 14 characters, registered at BSG) and
sender_names["sms"] (originator of the SMS fallback and of SMS-only steps); options
"method" ("PUT", the default, or "POST") and "tariff" (0-9, default 0).

Sending
- A Viber step goes to /viber/create, at most 50 recipients a request. Recipients with
  identical content share one message object with several `to` entries. When the step's
  fallback_channels contain "sms", the message carries options.viber.alt_route and BSG sends
  the SMS itself when Viber fails (a native cascade).
- An SMS step goes to /sms/create in the `phones` mode (one body, many phones), one request
  per distinct body.
- One phone never appears twice in one `to` list or `phones` list: BSG refuses the repeat
  (51 / 31), so such a recipient goes into another message object or request.
- Our idempotency key is BSG's `reference`. A repeat is refused per recipient with 43 (Viber)
  or 23 (SMS) "External ID already exists", which means *already sent*: the result is
  accepted, error_code names the code, and the id is looked up by reference so the result
  carries it when BSG knows it (else the id is empty and polling goes by reference).
- A batch that needs several requests is sent request by request; if one fails as a whole,
  the error is raised and the engine resends the batch. That is safe: the recipients that
  did go through come back as "already sent".
- No send time is sent (the engine dispatches each message when it is due); BSG's scheduling field is spelt two
  ways in its own documents.

Ids: a Viber id is BSG's as it is; an id from the SMS API (an SMS-only step, or the SMS leg
of an alt_route) is written "sms:<id>" everywhere in Cascade. The two APIs number their
messages separately, and polling must know which one to ask.

Statuses: polled one message at a time (GET /viber/{id}, /sms/{id}: BSG has no bulk status
call for Viber), and pushed to callback_url. BSG does not document the callback body; we
take it to be the status answer itself, POSTed as JSON (a list of them is read too), which
is what our simulator sends. The SMS API's callback URL gets "?bsg_api=sms" so that
parse_callback knows which numbering it reads. BSG's times ("YYYY-MM-DD HH:MM:SS") carry no
zone; they are taken as UTC.
"""

from __future__ import annotations

import json
import math
from datetime import UTC
from typing import Any
from urllib.parse import quote

from providers.base import (
    DEFAULT_TTL_MINUTES,
    Chunk,
    ConfigurationError,
    Item,
    OutgoingMessage,
    ProviderError,
    ProviderRef,
    SendResult,
    StatusEvent,
    parse_decimal,
    parse_time,
    refusal,
)
from providers.base import Backend as BaseBackend
from providers.status import DeliveryStatus

STATUS_MAP: dict[str, str] = {
    # Accepted by BSG and waiting for its send time: in Cascade's words the gateway has
    # it, which is `sent` ("queued" means waiting in our own queue).
    "scheduled": DeliveryStatus.SENT,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "expired": DeliveryStatus.EXPIRED,
    "undeliverable": DeliveryStatus.UNDELIVERABLE,
    "rejected": DeliveryStatus.REJECTED,
    "unknown": DeliveryStatus.UNKNOWN,
}

# BSG's error codes (protocols-sources §4.5): our English text, and whether sending the
# same request again can never succeed (permanent) or might (transient).
ERRORS: dict[int, tuple[str, bool]] = {
    1: ("Invalid API key", True),
    # BSG's two tables swap 2 and 3; both are permanent either way.
    2: ("Account blocked, or not enough parameters", True),
    3: ("Not enough parameters, or account blocked", True),
    4: ("Function not supported", True),
    5: ("Unknown error at BSG", False),
    6: ("Non-existent tariff", True),
    7: ("Invalid or missing parameters", True),
    # Our account's balance, not the recipient: a top-up makes the resend succeed, and
    # failing every step of a campaign for it would throw the messages away.
    8: ("Not enough funds on the BSG account", False),
    9: ("Tariff is inactive", True),
    10: ("Invalid sending time", True),
    11: ("Too many messages being processed at once", False),
    12: ("Too many recipients in one request", True),
    20: ("SMS not found", True),
    21: ("Invalid phone number", True),
    22: ("External ID (reference) missing", True),
    23: ("External ID already exists", True),
    24: ("Invalid request payload", True),
    25: ("Invalid originator", True),
    26: ("SMS text empty or too long", True),
    27: ("Invalid external ID (reference)", True),
    28: ("Invalid validity", True),
    29: ("Invalid task ID", True),
    30: ("Task not found", True),
    # The phone was already in this request: in another request it goes through.
    31: ("Phone already in this request", False),
    32: ("Originator not allowed", True),
    40: ("Message not found", True),
    41: ("Invalid phone number", True),
    43: ("External ID already exists", True),
    44: ("Invalid request payload", True),
    45: ("Sender (alpha_name) not registered", True),
    46: ("Viber text empty or too long", True),
    47: ("Invalid external ID (reference)", True),
    48: ("Invalid validity", True),
    49: ("Invalid combination of Viber options", True),
    51: ("Phone already in this request", False),
}
# A code not in the table: BSG has more than it documents. Resending is safe (the
# reference deduplicates), so an unknown code is treated as transient.
UNKNOWN_ERROR = ("Unknown BSG error", False)
UNNUMBERED = -1  # an `error` that is text, not a code

ALREADY_SENT = {43, 23}
NOT_FOUND = {40, 20}
ACCOUNT_ERRORS = {1, 2, 3}  # no point in asking about the next message either
SMS_PREFIX = "sms:"
MAX_RECIPIENTS = 50  # per request [seed]
VIBER_VALIDITY_SECONDS = (15, 86400)
SMS_VALIDITY_HOURS = (1, 72)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def error_code(value: Any) -> int:
    """BSG writes `error` as 0 or "0"; 0 when absent, UNNUMBERED when it is not a number."""
    if value in (None, ""):
        return 0
    try:
        return int(str(value).strip())
    except ValueError:
        return UNNUMBERED


def describe(code: int, answer: dict) -> tuple[str, bool]:
    """(message, permanent) for an error code, in BSG's own words when it gave them."""
    text, permanent = ERRORS.get(code, UNKNOWN_ERROR)
    their = answer.get("errorDescription")
    if code == UNNUMBERED:
        their = their or answer.get("error")
    return str(their or text), permanent


def viber_validity(ttl_minutes: int | None) -> int:
    low, high = VIBER_VALIDITY_SECONDS
    return max(low, min(high, int(ttl_minutes or DEFAULT_TTL_MINUTES) * 60))


def sms_validity_hours(ttl_minutes: int | None) -> int:
    low, high = SMS_VALIDITY_HOURS
    return max(low, min(high, math.ceil(int(ttl_minutes or DEFAULT_TTL_MINUTES) / 60)))


def with_query(url: str, name: str, value: str) -> str:
    if not url:
        return url
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


def pack(items: list[Item], limit: int) -> list[list[Item]]:
    """Split into lists of at most `limit` in which no phone repeats, keeping the order."""
    packs: list[tuple[list[Item], set[str]]] = []
    for item in items:
        phone = item[1].phone
        for members, phones in packs:
            if len(members) < limit and phone not in phones:
                members.append(item)
                phones.add(phone)
                break
        else:
            packs.append(([item], {phone}))
    return [members for members, _phones in packs]


class Backend(BaseBackend):
    name = "bsg"
    channels = ("viber", "sms")
    max_batch = MAX_RECIPIENTS
    supports_native_cascade = True
    idempotent_submit = True
    has_callbacks = True
    polls_statuses = True

    # ---- settings ----
    def method(self) -> str:
        return self.option_choice("method", ("PUT", "POST"), "PUT")

    def tariff(self) -> int:
        value = self.options.get("tariff", 0)
        try:
            tariff = int(value)
        except (TypeError, ValueError):
            tariff = -1
        if not 0 <= tariff <= 9:
            raise ConfigurationError(
                f"Provider account {self.account.name!r}: options['tariff'] must be 0-9, "
                f"not {value!r}."
            )
        return tariff

    def sender(self, channel: str) -> str:
        sender = self.sender_for(channel)
        if not sender:
            raise ConfigurationError(
                f"Provider account {self.account.name!r} needs sender_names[{channel!r}] "
                "(a sender registered at BSG)."
            )
        return sender

    def headers(self) -> dict[str, str]:
        return {
            "X-API-KEY": self.credential("api_key"),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    # ---- HTTP ----
    def call(
        self, method: str, path: str, body: dict | None = None, *, not_found_ok: bool = False
    ) -> tuple[dict, str]:
        """One request; the answer's JSON and text. A whole-request error raises ProviderError."""
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        response = self.request(
            method, f"{self.base_url()}{path}", data=data, headers=self.headers()
        )
        text = response.text
        try:
            answer = json.loads(text)
        except ValueError as error:
            if response.status_code >= 400:
                raise ProviderError(
                    f"bsg: gateway answered HTTP {response.status_code}",
                    permanent=True,
                    status_code=response.status_code,
                    response_text=text[:2000],
                ) from error
            raise ProviderError(
                "bsg: unreadable answer (not JSON)",
                permanent=False,
                status_code=response.status_code,
                response_text=text[:2000],
            ) from error
        if not isinstance(answer, dict):
            raise ProviderError(
                "bsg: unexpected answer (not a JSON object)",
                permanent=False,
                status_code=response.status_code,
                response_text=text[:2000],
            )
        code = error_code(answer.get("error"))
        if code and not (not_found_ok and code in NOT_FOUND):
            message, permanent = describe(code, answer)
            raise ProviderError(
                f"bsg: {message}",
                permanent=permanent,
                code=str(answer.get("error")),
                status_code=response.status_code,
                response_text=text[:2000],
            )
        if response.status_code >= 400 and not code:
            raise ProviderError(
                f"bsg: gateway answered HTTP {response.status_code}",
                permanent=True,
                status_code=response.status_code,
                response_text=text[:2000],
            )
        return answer, text

    # ---- send ----
    def messages_within(self, requests: int) -> int:
        # Recipients share a request only when their rendered text is the same: a
        # personalised campaign is one request per message.
        return requests

    def chunk(self, items: list[Item]) -> list[Chunk]:
        """Viber requests by validity (one request carries one); SMS requests by content,
        since /sms/create sends one text to every phone of the request."""
        by_validity: dict[int, list[Item]] = {}
        by_sms_content: dict[tuple[str, int, str], list[Item]] = {}
        for item in items:
            message = item[1]
            if message.channel == "viber":
                by_validity.setdefault(viber_validity(message.ttl_minutes), []).append(item)
            else:
                key = (
                    message.text or message.sms_text,
                    sms_validity_hours(message.ttl_minutes),
                    message.callback_url,
                )
                by_sms_content.setdefault(key, []).append(item)
        return [
            Chunk(members[start : start + MAX_RECIPIENTS], ("viber", validity))
            for validity, members in by_validity.items()
            for start in range(0, len(members), MAX_RECIPIENTS)
        ] + [
            Chunk(part, ("sms", *content))
            for content, members in by_sms_content.items()
            for part in pack(members, MAX_RECIPIENTS)
        ]

    def submit(self, chunk: Chunk) -> dict:
        api, *settings = chunk.detail
        if api == "viber":
            body = self.viber_body(chunk.items, *settings)
        else:
            body = self.sms_body(chunk.items, *settings)
        answer, _text = self.call(self.method(), f"/{api}/create", body)
        return answer

    def parse_results(self, chunk: Chunk, answer: dict) -> dict[int, SendResult]:
        return self.read_results(chunk.items, answer, api=chunk.detail[0])

    def viber_body(self, items: list[Item], validity: int) -> dict:
        """The /viber/create body: identical content shares one message object."""
        alpha_name = self.sender("viber")
        groups: dict[tuple, list[Item]] = {}
        for item in items:
            message = item[1]
            key = (
                message.text,
                message.is_promotional,
                message.callback_url,
                message.image_url,
                message.button_caption,
                message.button_url,
                "sms" in message.fallback_channels,
                message.sms_text,
            )
            groups.setdefault(key, []).append(item)
        objects = []
        for members in groups.values():
            for same_content in pack(members, MAX_RECIPIENTS):
                objects.append(self.viber_message(same_content, alpha_name))
        return {"tariff": self.tariff(), "validity": validity, "messages": objects}

    def viber_message(self, items: list[Item], alpha_name: str) -> dict:
        first = items[0][1]
        message: dict[str, Any] = {
            "to": [{"msisdn": m.phone, "reference": m.idempotency_key} for _i, m in items],
            "text": first.text,
            "alpha_name": alpha_name,
            # Sent always: BSG's documents disagree on its default (false vs 1).
            "is_promotional": bool(first.is_promotional),
        }
        if first.callback_url:
            message["callback_url"] = first.callback_url
        viber: dict[str, Any] = {}
        if first.image_url:
            viber["img"] = first.image_url
        if first.button_caption:
            viber["caption"] = first.button_caption
        if first.button_url:
            viber["action"] = first.button_url
        if "sms" in first.fallback_channels:
            viber["alt_route"] = {
                "originator": self.sender("sms"),
                "text": first.sms_text or first.text,
            }
        if viber:
            message["options"] = {"viber": viber}
        return message

    def sms_body(self, items: list[Item], text: str, hours: int, callback_url: str) -> dict:
        body: dict[str, Any] = {
            "destination": "phones",
            "originator": self.sender("sms"),
            "body": text,
            "validity": hours,
            "tariff": self.tariff(),
            "phones": [{"msisdn": m.phone, "reference": m.idempotency_key} for _i, m in items],
        }
        if callback_url:
            body["callback_url"] = with_query(callback_url, "bsg_api", "sms")
        return body

    def read_results(self, items: list[Item], answer: dict, *, api: str) -> dict[int, SendResult]:
        entries = answer.get("result")
        if isinstance(entries, dict):  # the SMS API's single-phone shape
            entries = [entries]
        if not isinstance(entries, list):
            raise ProviderError(
                "bsg: answer without a result list",
                permanent=False,
                response_text=json.dumps(answer)[:2000],
            )
        by_reference = {
            str(entry.get("reference")): entry for entry in entries if isinstance(entry, dict)
        }
        currency = str(answer.get("currency") or "")
        # One BSG said nothing about is left to the base class: not answered, and safe to
        # resend (the reference deduplicates).
        return {
            index: self.result_for(
                message, by_reference[message.idempotency_key], api=api, currency=currency
            )
            for index, message in items
            if message.idempotency_key in by_reference
        }

    def result_for(
        self, message: OutgoingMessage, entry: dict, *, api: str, currency: str
    ) -> SendResult:
        raw = json.dumps(entry, ensure_ascii=False)
        code = error_code(entry.get("error"))
        if code in ALREADY_SENT:
            return self.already_sent(message, code, api=api, raw=raw)
        if code:
            text, permanent = describe(code, entry)
            return refusal(message, str(code), text, permanent=permanent, raw=raw)
        provider_id = self.our_id(api, entry.get("id"))
        return SendResult(
            message.delivery_id,
            message.idempotency_key,
            accepted=True,
            provider_message_id=provider_id,
            status=DeliveryStatus.SENT,
            price=parse_decimal(entry.get("price")),
            currency=str(entry.get("currency") or currency),
            raw=raw,
        )

    def already_sent(
        self, message: OutgoingMessage, code: int, *, api: str, raw: str
    ) -> SendResult:
        """43/23: an earlier request with this reference went through; find its id."""
        result = SendResult(
            message.delivery_id,
            message.idempotency_key,
            accepted=True,
            status=DeliveryStatus.SENT,
            error_code=str(code),
            error_message="Already sent: BSG knows this reference (External ID already exists)",
            raw=raw,
        )
        try:
            answer, text = self.call(
                "GET",
                f"/{api}/reference/{quote(message.idempotency_key, safe='')}",
                not_found_ok=True,
            )
        except ProviderError:
            return result  # the id stays empty; polling by reference recovers it
        if error_code(answer.get("error")) in NOT_FOUND:
            return result
        result.provider_message_id = self.our_id(api, answer.get("id"))
        result.price = parse_decimal(answer.get("price"))
        result.currency = str(answer.get("currency") or "")
        result.raw = text
        return result

    @staticmethod
    def our_id(api: str, bsg_id: Any) -> str:
        if bsg_id in (None, ""):
            return ""
        return f"{SMS_PREFIX}{bsg_id}" if api == "sms" else str(bsg_id)

    # ---- statuses ----
    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusEvent]:
        """One GET per message. A message BSG does not know (40/20) gives no event.

        A failure for one message does not lose the others' statuses; it is raised only
        when no message could be asked about, or at once when the account itself is
        refused (bad key, blocked).
        """
        events: list[StatusEvent] = []
        first_failure: ProviderError | None = None
        answered = 0
        for ref in refs:
            try:
                events.extend(self.fetch_one(ref))
                answered += 1
            except ProviderError as error:
                if error_code(error.code) in ACCOUNT_ERRORS:
                    raise
                first_failure = first_failure or error
        if first_failure and not answered:
            raise first_failure
        return events

    def fetch_one(self, ref: ProviderRef) -> list[StatusEvent]:
        provider_id = ref.provider_message_id
        if provider_id.startswith(SMS_PREFIX):
            api, path = "sms", f"/sms/{quote(provider_id[len(SMS_PREFIX) :], safe='')}"
        elif provider_id:
            api, path = "viber", f"/viber/{quote(provider_id, safe='')}"
        elif ref.idempotency_key:
            # A 43 whose id could not be looked up at send time.
            api, path = "viber", f"/viber/reference/{quote(ref.idempotency_key, safe='')}"
        else:
            return []
        answer, text = self.call("GET", path, not_found_ok=True)
        if error_code(answer.get("error")) in NOT_FOUND:
            return []
        return self.events_from_status(answer, api=api, raw=text, key=ref.idempotency_key)

    def events_from_status(
        self, answer: dict, *, api: str, raw: str, key: str = ""
    ) -> list[StatusEvent]:
        """The message's own event, then one per alt_route leg (channel "sms")."""
        word = str(answer.get("status") or "")
        reference = str(answer.get("reference") or key)
        currency = str(answer.get("currency") or "")
        times = [
            parse_time(answer.get(name), TIME_FORMAT, UTC)
            for name in ("time_dr", "time_sent", "time_in")
        ]
        events = [
            StatusEvent(
                status=STATUS_MAP.get(word, DeliveryStatus.UNKNOWN),
                provider_status=word,
                provider_message_id=self.our_id(api, answer.get("id")),
                idempotency_key=reference,
                channel=api,
                occurred_at=next((moment for moment in times if moment), None),
                price=parse_decimal(answer.get("price")),
                currency=currency,
                raw=raw,
            )
        ]
        for leg in answer.get("alt_route") or []:
            if not isinstance(leg, dict):
                continue
            leg_word = str(leg.get("status") or "")
            events.append(
                StatusEvent(
                    status=STATUS_MAP.get(leg_word, DeliveryStatus.UNKNOWN),
                    provider_status=leg_word,
                    provider_message_id=self.our_id("sms", leg.get("id")),
                    idempotency_key=reference,
                    channel=str(leg.get("channel") or "sms").lower(),
                    price=parse_decimal(leg.get("price")),
                    currency=str(leg.get("currency") or currency),
                    raw=raw,
                )
            )
        return events

    def parse_callback(self, request) -> list[StatusEvent]:
        """A POSTed status answer (or a list of them); ValueError when it is not one."""
        api = "sms" if request.GET.get("bsg_api") == "sms" else "viber"
        text = request.body.decode("utf-8")
        payload = json.loads(text)
        single = isinstance(payload, dict)
        if not single and not isinstance(payload, list):
            raise ValueError("bsg callback: expected a JSON object in the status-answer shape")
        events: list[StatusEvent] = []
        for item in [payload] if single else payload:
            if not isinstance(item, dict):
                raise ValueError("bsg callback: expected a JSON object in the status-answer shape")
            if error_code(item.get("error")) in NOT_FOUND:
                continue
            raw = text if single else json.dumps(item, ensure_ascii=False)
            events.extend(self.events_from_status(item, api=api, raw=raw))
        return events
