"""kupon.mobi "1-pulse" HTTP API (seed 002; ../shared/docs/protocols.md §2).

Account settings:
  base_url                 e.g. https://1-pulse.kupon.mobi/api/v1
  credentials["token"]     the API token from the 1-pulse dashboard
  sender_names[channel]    the `sender` per channel ("default" as a fallback)
  options["method"]        "POST" (default, form-encoded) or "GET" (query string) for
                           single sends; lists are always POSTed (a list does not fit a URL)
  options["bulk_sender"]   number of a "scenario mailing" set up in the 1-pulse account;
                           when set, a message with fallback_channels goes out as
                           type=bulk with sender=<that number> and 1-pulse runs the cascade
  options["kannel_status"] true: ask for Kannel DLR codes in callbacks (kannel_status=1)
  options["find_token"]    true: push messages without tokens are addressed by phone or
                           email and 1-pulse looks the tokens up (find_token=1)

One message goes to `bulk/send-message` as the seed's parameters. Several go to
`bulk/send-list-messages`: `token`, `type`, `sender`, `charset` (plus `kannel_status`
and `find_token`) at the top level, and `messages`, a JSON array with one object per
message holding that message's own parameters under the seed's names: sent_to,
sent_text, html_text, ttl, button, action, image, callback, and `type` /
`sender` only when they differ from the top-level ones. Empty parameters are left
out, as in single sends. The seed does not give the item schema or the answer to a
list; we read the answer as `{"type": "success", "messages": [...]}` with one
`{"type": "success", "id": ...}` or `{"type": "error", "msg": ...}` per item, in the
order sent, and a whole-request failure as the usual `{"type": "error", "msg": ...}`.
Our simulator answers the same way; a real account must confirm it.

max_batch = 500: the seed states no limit. 500 items of ~1 KB make a body of about
half a megabyte, which a stock web server accepts and the gateway answers well within
our timeout; a failed request then costs at most 500 recipients.

No idempotency key: 1-pulse has no field that deduplicates a repeated submission, so
a request resent after a timeout may send twice. The dispatch engine must not resubmit
blindly (idempotent_submit = False). Our key rides along in the callback URL (`key=`)
so callbacks can be matched even when the gateway's id was never recorded.

Statuses come only by callback: the seed documents no status endpoint, so
fetch_statuses() returns nothing and polls_statuses is False. The callback is a URL
template: we send our webhook URL with `id={id}&status={status}` appended and 1-pulse
fills in the placeholders; `kannel=1` marks URLs that will carry Kannel codes.

Not carried, because the seed has no field for them: OutgoingMessage.title (email
subject) and sms_text (in a bulk cascade the scenario mailing holds the per-channel
settings). Buttons and images go only with Viber and bulk messages. `sent_date` is
never sent: the engine dispatches each message when it is due.
"""

from __future__ import annotations

import json
import re

from providers.base import Backend as BaseBackend
from providers.base import (
    Chunk,
    ConfigurationError,
    OutgoingMessage,
    ProviderError,
    ProviderRef,
    SendResult,
    StatusEvent,
)
from providers.status import DeliveryStatus

SEND_PATH = "/bulk/send-message"
SEND_LIST_PATH = "/bulk/send-list-messages"

# Our channel -> 1-pulse `type`. The names happen to coincide; the dict makes it explicit.
CHANNEL_TYPES = {
    "sms": "sms",
    "viber": "viber",
    "vk": "vk",
    "whatsapp": "whatsapp",
    "telegram": "telegram",
    "email": "email",
    "push": "push",
}
BULK_TYPE = "bulk"  # the virtual type that starts a scenario mailing (a native cascade)
PHONE_CHANNELS = frozenset({"sms", "viber", "vk", "whatsapp", "telegram"})
# `button`, `action` and `image` are Viber features; for bulk the scenario decides.
RICH_TYPES = frozenset({"viber", BULK_TYPE})

# Native callback words. The page that lists them ("Возможные статусы сообщений") could
# not be read, so these are the words our simulator uses plus the obvious spellings;
# anything else becomes UNKNOWN with the word kept. Extend the dict when a real
# callback shows a new word. "queued"/"new" mean queued at the gateway, i.e. already
# past our submission, hence SENT rather than our own QUEUED.
STATUS_MAP = {
    "new": DeliveryStatus.SENT,
    "queued": DeliveryStatus.SENT,
    "scheduled": DeliveryStatus.SENT,
    "sending": DeliveryStatus.SENT,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "seen": DeliveryStatus.READ,
    "undelivered": DeliveryStatus.UNDELIVERABLE,
    "not_delivered": DeliveryStatus.UNDELIVERABLE,
    "undeliverable": DeliveryStatus.UNDELIVERABLE,
    "expired": DeliveryStatus.EXPIRED,
    "rejected": DeliveryStatus.REJECTED,
    "error": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
}

# Kannel DLR codes (gw/dlr.h), sent when kannel_status=1. 4 (queued on the SMSC) and
# 8 (delivered to the SMSC) both mean the gateway has the message and is working on
# it: SENT. Kannel has no "expired": SMSC expiry arrives as 2 (undeliverable).
KANNEL_STATUS_MAP = {
    1: DeliveryStatus.DELIVERED,
    2: DeliveryStatus.UNDELIVERABLE,
    4: DeliveryStatus.SENT,
    8: DeliveryStatus.SENT,
    16: DeliveryStatus.REJECTED,
}

# What a `type=error` answer means, by a fragment of its `msg` (lower case). The seed
# gives the shape but not the texts; these are the texts our simulator uses and their
# likely variants. Kinds:
#   account   - the request as a whole cannot succeed: permanent ProviderError
#   transient - try again later: transient ProviderError
#   message   - this message cannot be sent as written: permanent per-recipient failure
# An unknown text is treated as "message": permanent for that message only.
ERRORS: list[tuple[str, str, str, str]] = [
    # (fragment, code, explanation, kind)
    ("invalid token", "invalid_token", "the API token was refused", "account"),
    ("token is required", "invalid_token", "the API token is missing", "account"),
    ("message type", "invalid_type", "the message type is unknown or not enabled", "account"),
    ("scenario", "invalid_scenario", "the scenario mailing (bulk sender) is unknown", "account"),
    ("charset", "invalid_charset", "the charset is not one 1-pulse accepts", "account"),
    ("messages", "invalid_list", "the message list was refused", "account"),
    ("balance", "no_balance", "the account balance is too low", "account"),
    ("too many requests", "throttled", "the gateway is throttling us", "transient"),
    ("try again", "try_again", "the gateway asked to try again later", "transient"),
    ("temporarily", "try_again", "the gateway is temporarily unavailable", "transient"),
    ("invalid recipient", "invalid_recipient", "the recipient address is invalid", "message"),
    ("sent_to", "invalid_recipient", "the recipient address is missing", "message"),
    ("sent_text", "no_text", "the message has no text", "message"),
    ("sent_date", "invalid_date", "the send date was refused", "message"),
    ("ttl", "invalid_ttl", "the lifetime (ttl) was refused", "message"),
    ("longer than", "too_long", "the text is too long for the channel", "message"),
    ("action", "invalid_button", "the button needs an action URL", "message"),
]


def classify_error(msg: str) -> tuple[str, str, str]:
    """(code, explanation, kind) for the `msg` of a type=error answer."""
    lowered = msg.lower()
    for fragment, code, explanation, kind in ERRORS:
        if fragment in lowered:
            return code, explanation, kind
    return "error", "the gateway refused the message", "message"


def is_truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class Backend(BaseBackend):
    name = "pulse"
    channels = ("sms", "viber", "vk", "whatsapp", "telegram", "email", "push")
    max_batch = 500  # see the module docstring
    # False for the class; True on an instance whose account has options["bulk_sender"]
    # (set in __init__), because only a scenario mailing lets 1-pulse run the cascade.
    supports_native_cascade = False
    idempotent_submit = False  # 1-pulse has no idempotency key (module docstring)
    has_callbacks = True
    polls_statuses = False  # no status endpoint is documented

    def __init__(self, account):
        super().__init__(account)
        if self.options.get("bulk_sender"):
            self.supports_native_cascade = True

    # ---- account settings ----
    def bulk_sender(self) -> str:
        sender = str(self.options.get("bulk_sender") or "").strip()
        if sender and not sender.isdigit():
            raise ConfigurationError(
                f"Provider account {self.account.name!r}: options['bulk_sender'] must be the "
                f"number of a 1-pulse scenario mailing, not {sender!r}."
            )
        return sender

    # ---- building requests ----
    def message_type(self, message: OutgoingMessage) -> str:
        if message.fallback_channels and self.bulk_sender():
            return BULK_TYPE
        try:
            return CHANNEL_TYPES[message.channel]
        except KeyError:
            raise ConfigurationError(
                f"The {self.name} backend cannot send over {message.channel!r}."
            ) from None

    def message_sender(self, message: OutgoingMessage, kind: str) -> str:
        if kind == BULK_TYPE:
            return self.bulk_sender()
        return self.sender_for(message.channel)

    def recipient(self, message: OutgoingMessage, kind: str) -> str:
        """`sent_to`: phone digits without '+', an email, or comma-separated push tokens."""
        phone = message.phone.lstrip("+")
        if kind == BULK_TYPE:
            return phone or message.email
        if message.channel == "email":
            return message.email
        if message.channel == "push":
            if message.push_tokens:
                return ",".join(message.push_tokens)
            if self.option_flag("find_token"):
                return phone or message.email
            return ""
        return phone

    def callback(self, message: OutgoingMessage) -> str:
        """Our webhook URL as a 1-pulse template; requests URL-encodes it, braces and all."""
        if not message.callback_url:
            return ""
        joiner = "&" if "?" in message.callback_url else "?"
        url = f"{message.callback_url}{joiner}id={{id}}&status={{status}}"
        if message.idempotency_key:
            url += f"&key={message.idempotency_key}"
        if self.option_flag("kannel_status"):
            url += "&kannel=1"
        return url

    def message_fields(self, message: OutgoingMessage, kind: str) -> dict:
        """The per-message parameters, empty ones left out."""
        fields = {
            "sent_to": self.recipient(message, kind),
            "sent_text": message.text,
            "html_text": message.html if message.channel in ("email", "push") else "",
            "ttl": int(message.ttl_minutes) if message.ttl_minutes else "",
            "callback": self.callback(message),
        }
        if kind in RICH_TYPES:
            fields.update(
                button=message.button_caption, action=message.button_url, image=message.image_url
            )
        return {name: value for name, value in fields.items() if value not in ("", None)}

    def common_fields(self) -> dict:
        fields = {"token": self.credential("token"), "charset": "UTF-8"}
        if self.option_flag("kannel_status"):
            fields["kannel_status"] = 1
        return fields

    def find_token(self, message: OutgoingMessage, kind: str) -> bool:
        return kind == "push" and not message.push_tokens and self.option_flag("find_token")

    def send_params(self, message: OutgoingMessage) -> dict:
        """All parameters of one `bulk/send-message` request."""
        kind = self.message_type(message)
        params = self.common_fields()
        params["type"] = kind
        sender = self.message_sender(message, kind)
        if sender:
            params["sender"] = sender
        params.update(self.message_fields(message, kind))
        if self.find_token(message, kind):
            params["find_token"] = 1
        return params

    def list_params(self, messages: list[OutgoingMessage]) -> dict:
        """All parameters of one `bulk/send-list-messages` request."""
        kinds = [self.message_type(message) for message in messages]
        senders = [self.message_sender(m, kind) for m, kind in zip(messages, kinds, strict=True)]
        params = self.common_fields()
        params["type"] = kinds[0]
        if senders[0]:
            params["sender"] = senders[0]
        items = []
        for message, kind, sender in zip(messages, kinds, senders, strict=True):
            item = {}
            if kind != kinds[0]:
                item["type"] = kind
            if sender != senders[0]:
                item["sender"] = sender
            item.update(self.message_fields(message, kind))
            if self.find_token(message, kind):
                item["find_token"] = 1
            items.append(item)
        params["messages"] = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
        return params

    # ---- the send pipeline (providers/base.py) ----
    def address(self, message: OutgoingMessage) -> str:
        return self.recipient(message, self.message_type(message))

    def submit(self, chunk: Chunk) -> tuple[list[dict], str]:
        """One message to `send-message`, several to `send-list-messages`; the answer's
        entries (one per message) and its text."""
        messages = [message for _index, message in chunk.items]
        if len(messages) == 1:
            url = self.base_url() + SEND_PATH
            params = self.send_params(messages[0])
            if self.option_choice("method", ("POST", "GET"), "POST") == "GET":
                response = self.request("GET", url, params=params)
            else:
                response = self.request("POST", url, data=params)
            answer = self.read_answer(response)
            if answer.get("type") == "error":
                self.raise_for_request_error(answer, response.text)
            return [answer], response.text
        response = self.request(
            "POST", self.base_url() + SEND_LIST_PATH, data=self.list_params(messages)
        )
        answer = self.read_answer(response)
        if answer.get("type") == "error":
            # A failure of the list as a whole: nothing in it was sent.
            self.raise_for_request_error(answer, response.text, whole_list=True)
        items = answer.get("messages")
        if not isinstance(items, list) or len(items) != len(messages):
            # Some or all of the list may be on its way and nothing says which: waited
            # for (callbacks carry our key), never resent (after_failure).
            raise ProviderError(
                f"{self.name}: the list answer does not have one entry per message "
                f"({len(messages)} sent)",
                permanent=False,
                response_text=response.text[:2000],
                status_code=response.status_code,
            )
        return [item if isinstance(item, dict) else {} for item in items], ""

    def parse_results(self, chunk: Chunk, answer: tuple[list[dict], str]) -> dict[int, SendResult]:
        entries, text = answer
        return {
            index: self.result(message, entry, text or json.dumps(entry))
            for (index, message), entry in zip(chunk.items, entries, strict=True)
        }

    def read_answer(self, response) -> dict:
        """The JSON object of an answer, or the right ProviderError."""
        if response.status_code in (401, 403):
            raise ProviderError(
                f"{self.name}: the gateway refused our token (HTTP {response.status_code})",
                permanent=True,
                code="invalid_token",
                status_code=response.status_code,
                response_text=response.text[:2000],
            )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("type") not in ("success", "error"):
            if response.status_code != 200:
                # A 4xx that is not the gateway's JSON: a wrong base_url or method.
                raise ProviderError(
                    f"{self.name}: gateway answered HTTP {response.status_code}",
                    permanent=True,
                    status_code=response.status_code,
                    response_text=response.text[:2000],
                )
            raise ProviderError(
                f"{self.name}: malformed answer (not the gateway's JSON): {response.text[:200]!r}",
                permanent=False,
                status_code=response.status_code,
                response_text=response.text[:2000],
            )
        return answer

    def raise_for_request_error(self, answer: dict, text: str, whole_list: bool = False) -> None:
        """Raise for a type=error that sinks the request; return for a per-message one."""
        msg = str(answer.get("msg") or "")
        code, explanation, kind = classify_error(msg)
        if kind == "message" and not whole_list:
            return
        raise ProviderError(
            f"{self.name}: {explanation}: {msg or 'no description'}",
            permanent=kind != "transient",
            code=code,
            response_text=text[:2000],
            may_have_reached=False,  # the gateway answered that it refused the request
        )

    def result(self, message: OutgoingMessage, answer: dict, raw: str) -> SendResult:
        if answer.get("type") == "error":
            msg = str(answer.get("msg") or "")
            code, explanation, kind = classify_error(msg)
            return SendResult(
                message.delivery_id,
                message.idempotency_key,
                accepted=False,
                status=DeliveryStatus.REJECTED,
                error_code=code,
                error_message=f"{explanation}: {msg}" if msg else explanation,
                permanent=kind != "transient",
                raw=raw,
            )
        # Success, with or without an id: the message is on its way, so it must not be
        # resent. Without an id the callback is still matched by our key.
        message_id = answer.get("id")
        return SendResult(
            message.delivery_id,
            message.idempotency_key,
            accepted=True,
            provider_message_id="" if message_id is None else str(message_id),
            status=DeliveryStatus.SENT,
            raw=raw,
        )

    # ---- statuses ----
    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusEvent]:
        # 1-pulse documents no status endpoint: statuses arrive only by callback.
        return []

    def parse_callback(self, request) -> list[StatusEvent]:
        """One status from the filled-in callback template (GET, or a POSTed form)."""
        body = request.body  # read first: Django forbids it after a multipart POST is parsed
        params = dict(request.GET.items())
        if request.method == "POST":
            params.update(request.POST.items())
        message_id = unfilled(params.get("id", ""))
        key = unfilled(params.get("key", ""))
        status = unfilled(params.get("status", ""))
        if not (message_id or key):
            raise ValueError("1-pulse callback without a message id")
        if not status:
            raise ValueError("1-pulse callback without a status")
        # The query only: the path holds the account's callback secret.
        raw = "?" + request.META.get("QUERY_STRING", "")
        if body:
            raw += "\n" + body.decode("utf-8", errors="replace")
        return [
            StatusEvent(
                status=self.normalize(status, kannel=is_truthy(params.get("kannel", ""))),
                provider_status=status,
                provider_message_id=message_id,
                idempotency_key=key,
                raw=raw[:4000],
            )
        ]

    @staticmethod
    def normalize(status: str, kannel: bool = False) -> str:
        """A callback status in our vocabulary: Kannel codes when asked for or numeric."""
        if kannel or re.fullmatch(r"\d+", status):
            try:
                return KANNEL_STATUS_MAP.get(int(status), DeliveryStatus.UNKNOWN)
            except ValueError:
                pass  # kannel=1 but a word came: read it as a word
        return STATUS_MAP.get(status.strip().lower(), DeliveryStatus.UNKNOWN)


def unfilled(value: str) -> str:
    """'' for a placeholder the gateway left unfilled ('{id}'), else the value stripped."""
    value = value.strip()
    return "" if value.startswith("{") and value.endswith("}") else value
