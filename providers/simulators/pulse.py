"""The kupon.mobi "1-pulse" HTTP API, played locally (seed 002; ../shared/docs/protocols.md §2).

Routes, each for GET (query string) and POST (form-encoded body; query parameters
count too):
  /api/v1/bulk/send-message        one message -> {"type":"success","id":<int>}
  /api/v1/bulk/send-list-messages  `messages` = JSON array of per-message objects ->
                                   {"type":"success","messages":[<one answer per item>]}

Every refusal is HTTP 200 with the documented `{"type":"error","msg":...}` shape, the
missing token included: the seed describes no other error form, so the simulator
uses none. A list whose own parameters are bad (token, type, charset, the JSON) is
refused as a whole; a bad item gets its own error entry and the rest go through.
The error texts below are ours (the real ones are not published); the backend reads
them by fragment, so keep the two in step.

Callbacks: GET on the message's `callback` template with `{id}` and `{status}` filled
in: first "sent" when accepted (progress_callbacks), then the final word when the
message's fate is due. With kannel_status=1 the status is a Kannel DLR code instead.
A callback counts as delivered on HTTP 200; otherwise it is retried after 1 and 10
minutes (times config.callback_time_scale), three tries in all, as the seed says.

type=bulk needs `sender` = the number of a scenario mailing (constructor argument
`scenarios`, number -> channel order); the simulator then runs that cascade, and the
callback reports the cascade's final status.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, quote, urlsplit

from providers.simulators.base import (
    SimMessage,
    SimRequest,
    SimResponse,
    Simulator,
    SimulatorConfig,
    json_response,
)

PREFIX = "/api/v1/bulk"
TYPES = frozenset(
    {
        "sms",
        "push",
        "viber",
        "whatsapp",
        "telegram",
        "vk",
        "ok",
        "email",
        "hlr",
        "voice",
        "mms",
        "bot",
        "bulk",
    }
)
CHARSETS = frozenset(
    {
        "UTF16BE",
        "UTF16LE",
        "CP1251",
        "UTF-8",
        "UTF-16BE",
        "UTF-16LE",
        "UCS-2BE",
        "UCS-2LE",
        "UCS2BE",
        "UCS2LE",
    }
)
HTML_TYPES = frozenset({"email", "push"})  # where html_text may stand in for sent_text
TOKEN_TYPES = frozenset({"push", "bot"})  # addressed by tokens, or by phone/email with find_token
VIBER_TEXT_LIMIT = 1000
LIST_LIMIT = 1000  # ours: the seed gives none; the backend sends at most 500

PHONE = re.compile(r"[1-9]\d{9,14}")
EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+\.[^@\s,]+")
SENT_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]) ([01]\d|2[0-3]):[0-5]\d")
TTL = re.compile(r"\d{1,7}")

# Fate (base simulator outcome) -> the status word the callback carries.
FINAL_WORDS = {
    "delivered": "delivered",
    "read": "read",
    "undeliverable": "undelivered",
    "expired": "expired",
}
# Native word -> Kannel DLR code (gw/dlr.h): expiry has no code of its own, it is 2.
KANNEL_CODES = {"sent": 8, "delivered": 1, "read": 1, "undelivered": 2, "expired": 2}
CALLBACK_RETRY_DELAYS = [60.0, 600.0]  # seconds; three tries in all


class ValidationError(Exception):
    """A refusal: its text becomes the answer's `msg`."""


class PulseSimulator(Simulator):
    name = "pulse"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SimulatorConfig | None = None,
        tokens: set[str] | None = None,
        scenarios: dict[str, list[str]] | None = None,
        progress_callbacks: bool = True,
    ):
        self.tokens = set(tokens) if tokens is not None else {"test-token"}
        # Scenario mailing number -> channel order, as set up in the 1-pulse dashboard.
        self.scenarios = scenarios if scenarios is not None else {"1": ["viber", "sms"]}
        self.progress_callbacks = progress_callbacks
        super().__init__(host, port, config)

    def routes(self):
        return {
            ("GET", f"{PREFIX}/send-message"): self.send_message,
            ("POST", f"{PREFIX}/send-message"): self.send_message,
            ("GET", f"{PREFIX}/send-list-messages"): self.send_list_messages,
            ("POST", f"{PREFIX}/send-list-messages"): self.send_list_messages,
        }

    # ---- routes ----
    def send_message(self, request: SimRequest) -> SimResponse:
        params = parameters(request)
        try:
            self.check_account(params)
            fields = self.check_message(params)
        except ValidationError as error:
            return self.refuse(str(error))
        return json_response({"type": "success", "id": int(self.take(fields).id)})

    def send_list_messages(self, request: SimRequest) -> SimResponse:
        params = parameters(request)
        try:
            self.check_account(params)
            try:
                items = json.loads(params.get("messages") or "")
            except ValueError:
                raise ValidationError("Field messages must be a JSON array of messages") from None
            if not isinstance(items, list) or not items:
                raise ValidationError("Field messages must be a non-empty JSON array")
            if len(items) > LIST_LIMIT:
                raise ValidationError(f"Too many messages in the list (at most {LIST_LIMIT})")
        except ValidationError as error:
            return self.refuse(str(error))
        answers = []
        shared = {name: params[name] for name in ("type", "sender", "kannel_status", "find_token")}
        for item in items:
            if not isinstance(item, dict):
                answers.append(self.refusal("Each message must be a JSON object"))
                continue
            item_params = {**shared, **{name: stringify(value) for name, value in item.items()}}
            item_params["charset"] = params["charset"]
            try:
                fields = self.check_message(item_params)
            except ValidationError as error:
                answers.append(self.refusal(str(error)))
                continue
            answers.append({"type": "success", "id": int(self.take(fields).id)})
        return json_response({"type": "success", "messages": answers})

    # ---- validation ----
    def check_account(self, params: dict[str, str]) -> None:
        """The parameters of the request itself: token, type, charset."""
        if not params.get("token"):
            raise ValidationError("Token is required")
        if params["token"] not in self.tokens:
            raise ValidationError("Invalid token")
        kind = params.setdefault("type", "")
        if kind and kind not in TYPES:
            raise ValidationError(f"Unknown message type: {kind}")
        charset = params.setdefault("charset", "UTF-8") or "UTF-8"
        if charset not in CHARSETS:
            raise ValidationError(f"Unsupported charset: {charset}")
        params["charset"] = charset
        params.setdefault("sender", "")
        params.setdefault("kannel_status", "")
        params.setdefault("find_token", "")

    def check_message(self, params: dict[str, str]) -> dict:
        """One message's parameters; returns what accept() needs."""
        kind = params.get("type", "")
        if not kind:
            raise ValidationError("Field type (message type) is required")
        if kind not in TYPES:
            raise ValidationError(f"Unknown message type: {kind}")
        channels = [kind]
        if kind == "bulk":
            scenario = params.get("sender", "")
            if scenario not in self.scenarios:
                raise ValidationError(f"Scenario mailing not found: {scenario or '(no sender)'}")
            channels = list(self.scenarios[scenario])
        sent_to = params.get("sent_to", "").strip()
        if not sent_to:
            raise ValidationError("Field sent_to is required")
        find_token = params.get("find_token") == "1"
        if not valid_recipient(kind, sent_to, find_token):
            raise ValidationError(f"Invalid recipient for type {kind}: {sent_to}")
        text = params.get("sent_text", "")
        if not text and not (kind in HTML_TYPES and params.get("html_text")):
            raise ValidationError("Field sent_text is required")
        if kind == "viber" and len(text) > VIBER_TEXT_LIMIT:
            raise ValidationError(f"Viber text is longer than {VIBER_TEXT_LIMIT} characters")
        sent_date = params.get("sent_date", "")
        if sent_date and not SENT_DATE.fullmatch(sent_date):
            raise ValidationError("Invalid sent_date, expected YYYY-MM-DD HH:MM")
        ttl = params.get("ttl", "")
        if ttl and not TTL.fullmatch(ttl):
            raise ValidationError("Field ttl must be an integer number of minutes")
        if params.get("button") and not params.get("action"):
            raise ValidationError("Field button requires action (the button's URL)")
        return {
            "phone": sent_to,
            "channels": channels,
            "callback_url": params.get("callback", ""),
            "request": params,
            "extra": {"kannel": params.get("kannel_status") == "1"},
        }

    def refusal(self, msg: str) -> dict:
        with self.lock:
            self.rejected_total += 1
        return {"type": "error", "msg": msg}

    def refuse(self, msg: str) -> SimResponse:
        return json_response(self.refusal(msg))

    # ---- acceptance and callbacks ----
    def take(self, fields: dict) -> SimMessage:
        request = {k: v for k, v in fields["request"].items() if k != "token"}
        # 1-pulse has no idempotency key and takes every request as new. Cascade's own key
        # rides in the callback URL: counted here so a resend shows as a duplicate send.
        key = cascade_key(fields["callback_url"])
        self.received(key)
        message = self.accept(
            key=key,
            phone=fields["phone"],
            channels=fields["channels"],
            callback_url=fields["callback_url"],
            request=request,
            extra=fields["extra"],
        )
        if message.callback_url and self.config.send_callbacks and self.progress_callbacks:
            self.schedule(message.accepted_at, lambda: self.send_callback(message, "sent"))
        return message

    def fire_callback(self, message: SimMessage) -> None:
        fate = message.outcomes.get(message.final_channel(), "delivered")
        self.send_callback(message, FINAL_WORDS.get(fate, "delivered"))

    def send_callback(self, message: SimMessage, word: str) -> None:
        status = str(KANNEL_CODES[word]) if message.extra.get("kannel") else word
        url = message.callback_url.replace("{id}", quote(message.id, safe="")).replace(
            "{status}", quote(status, safe="")
        )
        self.deliver_callback("GET", url, CALLBACK_RETRY_DELAYS)


def parameters(request: SimRequest) -> dict[str, str]:
    """Query string and form body together, first value of each (the body wins)."""
    params = {name: values[0] for name, values in request.query.items()}
    if request.method == "POST" and request.body:
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type and "multipart" not in content_type:
            body = parse_qs(request.text(), keep_blank_values=True)
            params.update({name: values[0] for name, values in body.items()})
    return params


def stringify(value) -> str:
    """A JSON item value as a form would carry it (ttl 1440 -> "1440")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def valid_recipient(kind: str, sent_to: str, find_token: bool) -> bool:
    if kind == "email":
        return bool(EMAIL.fullmatch(sent_to))
    if kind == "bulk":
        return bool(PHONE.fullmatch(sent_to) or EMAIL.fullmatch(sent_to))
    if kind in TOKEN_TYPES:
        if find_token:
            return bool(PHONE.fullmatch(sent_to) or EMAIL.fullmatch(sent_to))
        return all(token.strip() for token in sent_to.split(","))
    return bool(PHONE.fullmatch(sent_to))


def cascade_key(callback_url: str) -> str:
    """The `key` query parameter Cascade puts in its 1-pulse callback URL, or ''."""
    values = parse_qs(urlsplit(callback_url or "").query).get("key")
    return values[0] if values else ""
