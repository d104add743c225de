"""The Viber/VK/SMS cascade gateway (seed 003): one request runs a whole cascade.

A white-label Russian platform (public docs: smsgate/CascadingDoc, copied in
docs/reference/). Each message names the channels to try with `send_viber`,
`send_vk` and `send_sms` (0 = not used, otherwise the order, lowest first);
the gateway falls through to the next channel by itself. There are no
callbacks: statuses are polled.

Account settings:
  credentials  login, password
  options      flavour "json" (default) | "xml" | "get"
               finale_viber_read  true: only "read" ends a Viber step; delivered
                                  but unread falls through to the next channel
               name_delivery      the mailing's name in the gateway's cabinet
               vk_template_id, vk_template_data (dict)   required when VK is used:
                                  VK carries approved templates only
               validity_period_viber  minutes; default: the step's ttl_minutes
               timezone           of the gateway's clock (default Europe/Moscow),
                                  for time_change_state (time_send is never sent: the
                                  engine dispatches each message when it is due)
               currency           of the prices it reports (default RUB)
               identical_request_seconds  the gateway's "identical request" window (60)
  sender_names viber, sms

Decisions where the documents are silent or loose:

* Idempotency: our key goes in `client_id_message`, which the gateway
  documents as a number. An all-digit key of at most 17 digits without a
  leading zero is sent as it is (reversible). Any other key is hashed to an
  18-digit number, 10**17 + sha256(key) mod 9*10**17, so the two ranges never
  meet. A hashed number cannot be turned back into the key; answers are matched
  to recipients by client_id_message within the request we just built (then by
  phone, then by position), so nothing needs reversing. Collision odds are
  about n**2 / 1.8e18 (one in two million for a million keys).
* A repeated client_id_message: the cascade docs say only "not sent again". The
  same platform's SMS API answers with the earlier message's id, and one of its
  per-number texts is "Данное сообщение уже было отправлено.". Either answer
  is taken as accepted (already sent): with the earlier id when the gateway
  gives one, without an id (so not pollable) otherwise.
* Flavours: JSON and XML carry many phones per message and many messages per
  request; recipients with identical content share one message, up to
  `max_batch` (200) recipients per request. GET sends ONE recipient per
  request: client_id_message is per recipient (and undocumented for GET,
  though it is the same platform script), and a GET answer for several phones
  is a bare list of ids in which one refused phone would sink the others. A
  GET URL with a long Cyrillic text passes the docs' ~2,000 characters
  advice; prefer JSON for long texts.
* send_viber/send_vk/send_sms are always sent, 0 for unused channels, so
  nothing depends on the gateway's defaults. The order is the step's channel
  then OutgoingMessage.fallback_channels (channels this gateway cannot carry
  are left out).
* "Identical requests at most once a minute" (stated for GET; assumed for all
  flavours): the gateway's refusal is a transient ProviderError. For status
  polls the backend keeps a per-account, per-process memo of the last poll
  bodies and skips (returns no events for) a poll identical to one sent less
  than a minute ago; ids are sorted, so the same set makes the same body.
* Statuses: the answer has an overall `state` and one per channel. Each
  channel that reached a final word becomes a StatusEvent with `channel` set
  (with that channel's price, and num_parts_sms for SMS); a channel still at
  "send" ("not sent": not reached yet, or never) gives no event. Then one event
  with channel "" carries the overall state (the only one the GET flavour
  has); it comes last so a step's own channel report is applied first, and it
  carries no price so nothing is counted twice.
* partly_deliver ("sent, but no status ever came"; final at the gateway) maps
  to UNKNOWN: the gateway charged and stopped, but whether the phone got it is
  not known. Calling it delivered would overstate our statistics; calling it
  expired would make a fallback send a probable duplicate. UNKNOWN moves no
  status (a delivery stays `sent`), and the event keeps the word and says why.
* 2023 revision Viber words: read -> read, link (clicked the link) -> read,
  unsubscribe -> delivered (received; whether it was read is unknown).
* No callbacks: parse_callback returns no events (an authenticated stray
  request is answered 200 and changes nothing).
* Clients' replies: the seeds document no inbound webhook, though the
  platform's cabinet forwards incoming Viber (and SMS) replies. We take them at
  the account's webhook URL plus `replies/`, as one JSON document, which the
  simulator sends the same way (times on the gateway's clock):
      {"incoming": [{"id_incoming": "5001", "id_message": "1000123",
                     "phone": "79001234567", "channel": "viber",
                     "text": "STOP", "time_receive": "2026-12-07 13:00:00"}]}
  id_message is the gateway's id of the message answered (may be absent);
  id_incoming identifies the reply, so a redelivered one is kept once.
"""

# The gateway speaks Russian: its error texts are Cyrillic on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree as ET  # building only; parsing goes through defusedxml
from zoneinfo import ZoneInfo

import defusedxml
import defusedxml.ElementTree as SafeET

from providers.base import Backend as BaseBackend
from providers.base import (
    Chunk,
    ConfigurationError,
    InboundMessage,
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
from providers.status import DeliveryStatus

logger = logging.getLogger(__name__)

CHANNELS = ("viber", "vk", "sms")
FLAVOURS = ("json", "xml", "get")
MAX_INBOUND_ITEMS = 1000
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the gateway's clock, in options["timezone"]
STATE_CHUNK = 200  # ids per JSON/XML status request; the docs give no limit
VIBER_MAX_TTL_MINUTES = 14 * 24 * 60  # Viber keeps a business message two weeks at most

STATUS_MAP: dict[str, str] = {
    "send": DeliveryStatus.SENT,  # overall: in progress
    "deliver": DeliveryStatus.DELIVERED,
    "not_deliver": DeliveryStatus.UNDELIVERABLE,
    "expired": DeliveryStatus.EXPIRED,
    "partly_deliver": DeliveryStatus.UNKNOWN,  # see the module docstring
    # Viber words of the 2023 revision
    "read": DeliveryStatus.READ,
    "link": DeliveryStatus.READ,
    "unsubscribe": DeliveryStatus.DELIVERED,
}

STATUS_NOTES = {
    "partly_deliver": "Sent, but the gateway never received a delivery report (final on its "
    "side); its support can tell why.",
    "link": "The recipient followed the link.",
    "unsubscribe": "The recipient unsubscribed from the sender.",
}

# The gateway's error texts (protocols-sources §3.8 and the seed):
# (Russian text, code, English, permanent).
_ERRORS = [
    # document level
    (
        "Неправильный формат XML документа",
        "bad_document",
        "The gateway could not parse our XML document",
        True,
    ),
    (
        "Неправильный формат JSON документа",
        "bad_document",
        "The gateway could not parse our JSON document",
        True,
    ),
    ("Ваш аккаунт заблокирован", "account_blocked", "The gateway account is blocked", True),
    ("Аккаунт заблокирован.", "account_blocked", "The gateway account is blocked", True),
    ("Неправильный логин или пароль", "bad_credentials", "Wrong gateway login or password", True),
    ("POST данные отсутствуют", "no_post_data", "The gateway received no POST data", True),
    (
        "Попытка отправки более одного одинакового запроса в течение минуты",
        "identical_request",
        "Identical request sent twice within a minute; retry later",
        False,
    ),
    # per number
    (
        "У нас закончились SMS. Для разрешения проблемы свяжитесь с менеджером.",
        "out_of_sms",
        "The gateway has run out of SMS; its manager must fix it",
        False,
    ),
    ("Закончились SMS.", "out_of_sms", "The account has run out of SMS", False),
    ("Укажите номер телефона.", "no_phone", "No phone number", True),
    (
        "Номер телефона присутствует в стоп-листе.",
        "stop_list",
        "The phone number is stop-listed",
        True,
    ),
    (
        "Данное направление закрыто для вас.",
        "direction_closed",
        "This destination is closed for the account",
        True,
    ),
    ("Данное направление закрыто.", "direction_closed", "This destination is closed", True),
    (
        "Недостаточно средств для отправки SMS. SMS будет отправлена как только вы пополните счет по данному направлению.",
        "insufficient_funds",
        "Not enough funds; the gateway sends it once the account is topped up",
        False,
    ),
    (
        "Текст SMS отклонен модератором.",
        "text_rejected",
        "The moderator rejected the SMS text",
        True,
    ),
    ("Нет отправителя.", "no_sender", "No sender name", True),
    (
        "Отправитель не должен превышать 15 символов для цифровых номеров и 11 символов для буквенно-числовых.",
        "sender_too_long",
        "Sender too long: at most 15 digits or 11 alphanumeric characters",
        True,
    ),
    (
        "Номер телефона должен быть меньше 15 символов.",
        "phone_too_long",
        "The phone number must be under 15 characters",
        True,
    ),
    ("Нет текста сообщения.", "no_text", "No message text", True),
    ("Нет ссылки.", "no_link", "No link (a button needs both caption and URL)", True),
    ("Такого отправителя Нет.", "unknown_sender", "The sender name is not registered", True),
    (
        "Отправитель не прошел модерацию.",
        "sender_not_moderated",
        "The sender name has not passed moderation",
        True,
    ),
    (
        "Данное сообщение уже было отправлено.",
        "already_sent",
        "Already sent: the gateway did not send it again",
        False,
    ),
    (
        "Сообщение с таким ID не принималось",
        "unknown_id",
        "The gateway has no message with this id",
        True,
    ),
]

# Whole-request refusals: the GET flavour answers them as plain text like any
# per-number error, so this set tells which kind a text is.
REQUEST_LEVEL = {
    "bad_document",
    "account_blocked",
    "bad_credentials",
    "no_post_data",
    "identical_request",
}


def normalize_error(text: str) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    text = re.sub(r"^error\s*:\s*", "", text, flags=re.IGNORECASE)
    return text.rstrip(".").strip().lower()


# Looked up by normalized text: lower case, no "error:" prefix, no final full stop.
ERROR_TEXTS: dict[str, tuple[str, str, bool]] = {
    normalize_error(russian): (code, english, permanent)
    for russian, code, english, permanent in _ERRORS
}


def explain_error(text: str) -> tuple[str, str, bool]:
    """(code, English message, permanent) for a gateway error text; unknown texts are permanent."""
    known = ERROR_TEXTS.get(normalize_error(text))
    if known:
        return known
    return "gateway_error", f"Gateway error: {str(text).strip()}", True


def client_id_for(key: str) -> str:
    """Our idempotency key as the number client_id_message must be (see the module docstring)."""
    if key.isdigit() and len(key) <= 17 and (key == "0" or not key.startswith("0")):
        return key
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return str(10**17 + digest % (9 * 10**17))


def _int(value: Any) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0


def _looks_malformed(text: str) -> bool:
    """A plain-text answer that is really an HTML page, a JSON/XML body, or nothing."""
    stripped = text.strip()
    return not stripped or stripped[0] in "<{["


# Status polls sent recently: (account, body digest) -> monotonic time. Shared
# by every backend instance of the process, since Cascade builds a new backend
# object per task.
_recent_polls: dict[tuple[Any, str], float] = {}
_recent_polls_lock = threading.Lock()


def reset_poll_memo() -> None:
    """Forget the polls sent (tests; a deployment never needs to)."""
    with _recent_polls_lock:
        _recent_polls.clear()


class _Group:
    """Recipients whose message fields are identical: one `message` on the wire."""

    def __init__(self, fields: dict[str, Any], members=None):
        self.fields = fields
        # (index in the batch, message, its client_id_message)
        self.members: list[tuple[int, OutgoingMessage, str]] = members or []


class Backend(BaseBackend):
    name = "cascade_gateway"
    channels = CHANNELS
    max_batch = 200
    supports_native_cascade = True
    idempotent_submit = True
    has_callbacks = False
    polls_statuses = True

    # ---- settings ----
    def flavour(self) -> str:
        return self.option_choice("flavour", FLAVOURS, "json")

    def gateway_tz(self) -> ZoneInfo:
        return self.option_time_zone("timezone")

    @property
    def currency(self) -> str:
        return str(self.options.get("currency") or "RUB")

    @property
    def identical_request_seconds(self) -> float:
        return float(self.options.get("identical_request_seconds", 60))

    # ---- building the message fields ----
    def cascade_for(self, message: OutgoingMessage) -> list[str]:
        order = []
        for channel in [message.channel, *message.fallback_channels]:
            if channel in CHANNELS and channel not in order:
                order.append(channel)
        return order

    def text_for(self, message: OutgoingMessage, channel: str) -> str:
        if channel == message.channel:
            return message.text
        if channel == "sms":
            return message.sms_text or message.text
        return message.text

    def message_fields(self, message: OutgoingMessage, cascade: list[str]) -> dict[str, Any]:
        """One message's fields, in the seed's order; values are strings as in its samples."""
        fields: dict[str, Any] = {
            f"send_{channel}": str(cascade.index(channel) + 1 if channel in cascade else 0)
            for channel in CHANNELS
        }
        name_delivery = str(self.options.get("name_delivery") or "")
        if name_delivery:
            fields["name_delivery"] = name_delivery
        if "viber" in cascade:
            fields["sender_viber"] = self.sender_for("viber")
            fields["text_viber"] = self.text_for(message, "viber")
            if message.button_caption:
                fields["button_text"] = message.button_caption
            if message.button_url:
                fields["button_url"] = message.button_url
            if message.image_url:
                fields["image_url"] = message.image_url
            validity = self.options.get("validity_period_viber") or message.ttl_minutes
            fields["validity_period_viber"] = str(max(1, min(int(validity), VIBER_MAX_TTL_MINUTES)))
            fields["finale_viber_read"] = "1" if self.options.get("finale_viber_read") else "0"
        if "sms" in cascade:
            fields["sender_sms"] = self.sender_for("sms")
            fields["text_sms"] = self.text_for(message, "sms")
        if "vk" in cascade:
            template_id = self.options.get("vk_template_id")
            if not template_id:
                raise ConfigurationError(
                    f"Provider account {self.account.name!r} needs options['vk_template_id'] "
                    "to send VK messages (VK carries approved templates only)."
                )
            fields["templateId"] = str(template_id)
            data = self.options.get("vk_template_data") or {}
            if not isinstance(data, dict):
                raise ConfigurationError(
                    f"Provider account {self.account.name!r}: options['vk_template_data'] "
                    "must be an object of template values."
                )
            fields["templateData"] = {str(key): str(value) for key, value in data.items()}
        return {key: value for key, value in fields.items() if value != ""}

    def group(self, items: list[Item]) -> list[_Group]:
        """Recipients grouped by identical content: one `message` on the wire each."""
        groups: dict[str, _Group] = {}
        for index, message in items:
            fields = self.message_fields(message, self.cascade_for(message))
            signature = json.dumps(fields, sort_keys=True, ensure_ascii=False)
            group = groups.get(signature)
            if group is None:
                group = groups[signature] = _Group(fields)
            group.members.append((index, message, client_id_for(message.idempotency_key)))
        return list(groups.values())

    # ---- the three wire shapes ----
    def json_send_document(self, groups: list[_Group]) -> dict[str, Any]:
        return {
            "login": self.credential("login"),
            "password": self.credential("password"),
            "message": [
                {
                    **group.fields,
                    "phones": [
                        {"phone": message.phone, "client_id_message": client_id}
                        for _index, message, client_id in group.members
                    ],
                }
                for group in groups
            ],
        }

    def _xml_root(self) -> ET.Element:
        root = ET.Element("request")
        security = ET.SubElement(root, "security")
        ET.SubElement(security, "login", value=self.credential("login"))
        ET.SubElement(security, "password", value=self.credential("password"))
        return root

    @staticmethod
    def _xml_text(value: str) -> str:
        # The document must not contain line breaks; the docs ask for "\n" in data instead.
        return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")

    @staticmethod
    def _xml_document(root: ET.Element) -> str:
        return '<?xml version="1.0" encoding="utf-8" ?>' + ET.tostring(root, encoding="unicode")

    def xml_send_document(self, groups: list[_Group]) -> str:
        root = self._xml_root()
        for group in groups:
            element = ET.SubElement(root, "message")
            for key, value in group.fields.items():
                child = ET.SubElement(element, key)
                if isinstance(value, dict):
                    for name, item in value.items():
                        if not re.fullmatch(r"[A-Za-z_][\w.-]*", name):
                            raise ConfigurationError(
                                f"Provider account {self.account.name!r}: template field "
                                f"{name!r} cannot be an XML element name."
                            )
                        ET.SubElement(child, name).text = self._xml_text(item)
                else:
                    child.text = self._xml_text(value)
            for _index, message, client_id in group.members:
                ET.SubElement(element, "abonent", phone=message.phone, client_id_message=client_id)
        return self._xml_document(root)

    # The seed's GET sample order, then the JSON/XML fields it does not show.
    GET_ORDER = (
        "send_viber",
        "sender_viber",
        "text_viber",
        "button_text",
        "button_url",
        "image_url",
        "send_sms",
        "sender_sms",
        "text_sms",
        "validity_period_viber",
        "finale_viber_read",
        "send_vk",
        "templateId",
        "templateData",
        "time_send",
        "name_delivery",
    )

    def get_send_params(self, fields: dict[str, Any], phone: str, client_id: str) -> list[tuple]:
        params = [
            ("login", self.credential("login")),
            ("password", self.credential("password")),
            ("phone", phone),
        ]
        for key in self.GET_ORDER:
            if key in fields:
                value = fields[key]
                if isinstance(value, dict):  # "in a GET request it must be JSON"
                    value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
                params.append((key, value))
        params.append(("client_id_message", client_id))
        return params

    def json_state_document(self, ids: list[str]) -> dict[str, Any]:
        return {
            "login": self.credential("login"),
            "password": self.credential("password"),
            "state": [{"id_message": message_id} for message_id in ids],
        }

    def xml_state_document(self, ids: list[str]) -> str:
        root = self._xml_root()
        state = ET.SubElement(root, "state")
        for message_id in ids:
            ET.SubElement(state, "id_message").text = message_id
        return self._xml_document(root)

    # ---- HTTP ----
    def _answer(self, response) -> str:
        if response.status_code != 200:
            raise ProviderError(
                f"{self.name}: gateway answered HTTP {response.status_code}",
                permanent=response.status_code not in (408, 409, 425),
                status_code=response.status_code,
                response_text=response.text[:2000],
            )
        return response.content.decode("utf-8", errors="replace")

    def post(self, path: str, body: str, content_type: str) -> str:
        response = self.request(
            "POST",
            f"{self.base_url()}/{path}",
            data=body.encode("utf-8"),
            headers={"Content-Type": content_type},
        )
        return self._answer(response)

    def post_json(self, path: str, document: dict[str, Any]) -> str:
        body = json.dumps(document, ensure_ascii=False)
        return self.post(path, body, "application/json; charset=utf-8")

    def get(self, params: list[tuple]) -> str:
        response = self.request("GET", f"{self.base_url()}/sendmessage.php", params=params)
        return self._answer(response)

    def malformed(self, text: str, what: str) -> ProviderError:
        return ProviderError(
            f"{self.name}: malformed {what} from the gateway",
            permanent=False,
            response_text=text[:2000],
        )

    def request_error(self, text: str) -> ProviderError:
        code, english, permanent = explain_error(text)
        return ProviderError(
            f"{self.name}: {english}",
            permanent=permanent,
            code=code,
            response_text=str(text)[:2000],
        )

    def load_json(self, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as error:
            raise self.malformed(text, "JSON") from error

    def load_xml(self, text: str) -> ET.Element:
        try:
            root = SafeET.fromstring(text.encode("utf-8"))
        except (ET.ParseError, defusedxml.DefusedXmlException) as error:
            raise self.malformed(text, "XML") from error
        if root.tag != "response":
            raise self.malformed(text, "XML (no <response>)")
        return root

    # ---- the send pipeline (providers/base.py) ----
    def chunk(self, items: list[Item]) -> list[Chunk]:
        """JSON/XML: requests of at most batch_size() recipients, a large group split across
        them. GET: one request per recipient (the module docstring says why)."""
        groups = self.group(items)
        if self.flavour() == "get":
            return [
                Chunk([member[:2]], [_Group(group.fields, [member])])
                for group in groups
                for member in group.members
            ]
        size = self.batch_size()
        chunks: list[Chunk] = []
        parts: list[_Group] = []
        count = 0
        for group in groups:
            for start in range(0, len(group.members), size):
                part = _Group(group.fields, group.members[start : start + size])
                if count + len(part.members) > size:
                    chunks.append(self.chunk_of(parts))
                    parts, count = [], 0
                parts.append(part)
                count += len(part.members)
        if parts:
            chunks.append(self.chunk_of(parts))
        return chunks

    @staticmethod
    def chunk_of(groups: list[_Group]) -> Chunk:
        items = [(index, message) for group in groups for index, message, _c in group.members]
        return Chunk(items, groups)

    def submit(self, chunk: Chunk) -> str:
        groups = chunk.detail
        flavour = self.flavour()
        if flavour == "json":
            return self.post_json("sendmessagejson.php", self.json_send_document(groups))
        if flavour == "xml":
            return self.post(
                "xml/message.php", self.xml_send_document(groups), "text/xml; charset=utf-8"
            )
        [group] = groups
        [(_index, message, client_id)] = group.members
        return self.get(self.get_send_params(group.fields, message.phone, client_id))

    def parse_results(self, chunk: Chunk, answer: str) -> dict[int, SendResult]:
        flavour = self.flavour()
        if flavour == "json":
            return self.parse_json_send_answer(answer, chunk.detail)
        if flavour == "xml":
            return self.parse_xml_send_answer(answer, chunk.detail)
        [(index, message)] = chunk.items
        return {index: self.parse_get_send_answer(answer, message)}

    # ---- reading send answers ----
    def parse_json_send_answer(self, text: str, groups: list[_Group]) -> dict[int, SendResult]:
        document = self.load_json(text)
        if not isinstance(document, dict):
            raise self.malformed(text, "JSON (not an object)")
        if "message" not in document:
            if "error" in document:
                raise self.request_error(document["error"])
            raise self.malformed(text, "JSON (no 'message')")
        entries = document["message"]
        if not isinstance(entries, list):
            raise self.malformed(text, "JSON ('message' is not a list)")
        results: dict[int, SendResult] = {}
        for position, group in enumerate(groups):
            entry = entries[position] if position < len(entries) else None
            if isinstance(entry, dict) and "error" in entry:
                raw = json.dumps(entry, ensure_ascii=False)
                results.update(self.group_refused(group, str(entry["error"]), raw))
            elif isinstance(entry, list):
                items = [
                    (item, json.dumps(item, ensure_ascii=False))
                    for item in entry
                    if isinstance(item, dict)
                ]
                results.update(self.match_items(group, items))
            else:
                results.update(self.match_items(group, []))
        return results

    def parse_xml_send_answer(self, text: str, groups: list[_Group]) -> dict[int, SendResult]:
        root = self.load_xml(text)
        error = root.find("error")
        if error is not None:
            raise self.request_error(error.text or "")
        entries = root.findall("message")
        results: dict[int, SendResult] = {}
        for position, group in enumerate(groups):
            entry = entries[position] if position < len(entries) else None
            message_error = entry.find("error") if entry is not None else None
            if message_error is not None:
                raw = ET.tostring(entry, encoding="unicode")
                results.update(self.group_refused(group, message_error.text or "", raw))
                continue
            items = []
            for information in entry.findall("information") if entry is not None else []:
                item = dict(information.attrib)
                status_text = (information.text or "").strip()
                if status_text and status_text != "send":
                    item["error"] = status_text
                items.append((item, ET.tostring(information, encoding="unicode")))
            results.update(self.match_items(group, items))
        return results

    def parse_get_send_answer(self, text: str, message: OutgoingMessage) -> SendResult:
        if _looks_malformed(text):
            raise self.malformed(text, "answer")
        answer = text.strip()
        ids = [part.strip() for part in answer.split(",")]
        if all(part.isdigit() for part in ids):
            return self.recipient_result(message, {"id_message": ids[0]}, answer)
        code, _english, _permanent = explain_error(answer)
        if code in REQUEST_LEVEL:
            raise self.request_error(answer)
        return self.recipient_result(message, {"error": answer}, answer)

    def group_refused(self, group: _Group, text: str, raw: str) -> dict[int, SendResult]:
        """A message-level error: every recipient of that message is refused with it."""
        return {
            index: self.recipient_result(message, {"error": text}, raw)
            for index, message, _client_id in group.members
        }

    def match_items(self, group: _Group, items: list[tuple[dict, str]]) -> dict[int, SendResult]:
        """Per-phone answers to recipients: by client_id_message, then phone, then position."""
        pending = list(group.members)
        results: dict[int, SendResult] = {}
        for item, raw in items:
            client_id = str(item.get("client_id_message") or "").strip()
            phone = str(item.get("phone") or "").strip()
            member = next((m for m in pending if client_id and m[2] == client_id), None)
            member = member or next((m for m in pending if phone and m[1].phone == phone), None)
            member = member or (pending[0] if pending and not client_id and not phone else None)
            if member is None:
                continue
            pending.remove(member)
            results[member[0]] = self.recipient_result(member[1], item, raw)
        # A recipient the answer does not mention is left to the base class: not answered,
        # and safe to resend (client_id_message deduplicates).
        return results

    def recipient_result(self, message: OutgoingMessage, item: dict, raw: str) -> SendResult:
        message_id = str(item.get("id_message") or "").strip()
        error_text = str(item.get("error") or "").strip()
        code, english, permanent = explain_error(error_text) if error_text else ("", "", True)
        if (message_id and message_id != "0") or code == "already_sent":
            # Accepted, or accepted earlier under the same client_id_message.
            if code == "already_sent" and not message_id:
                english += " (the gateway did not say the earlier id, so it cannot be polled)"
            return SendResult(
                message.delivery_id,
                message.idempotency_key,
                accepted=True,
                provider_message_id=message_id if message_id != "0" else "",
                status=DeliveryStatus.SENT,
                error_code=code,
                error_message=english,
                parts=_int(item.get("count_message")),
                raw=raw,
            )
        if not error_text:
            return refusal(
                message,
                "no_id",
                "The gateway answered without a message id",
                permanent=False,
                raw=raw,
            )
        return refusal(message, code, english, permanent=permanent, raw=raw)

    # ---- statuses ----
    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusEvent]:
        by_id: dict[str, ProviderRef] = {}
        for ref in refs:
            if ref.provider_message_id:  # the gateway answers statuses by its own id only
                by_id.setdefault(str(ref.provider_message_id), ref)
        ids = sorted(by_id, key=lambda value: (len(value), value))
        flavour = self.flavour()
        if flavour == "get":
            jobs = [lambda i=message_id: self.state_get(i, by_id) for message_id in ids]
        elif flavour == "json":
            jobs = [
                lambda chunk=ids[start : start + STATE_CHUNK]: self.state_json(chunk, by_id)
                for start in range(0, len(ids), STATE_CHUNK)
            ]
        else:
            jobs = [
                lambda chunk=ids[start : start + STATE_CHUNK]: self.state_xml(chunk, by_id)
                for start in range(0, len(ids), STATE_CHUNK)
            ]
        events: list[StatusEvent] = []
        for position, job in enumerate(jobs):
            try:
                events.extend(job())
            except ProviderError as error:
                if position == 0:
                    raise
                logger.warning("%s: status poll stopped after a failure: %s", self.name, error)
                break
        return events

    def poll_allowed(self, body: str) -> bool:
        """False when an identical poll went out less than the gateway's window ago."""
        account_key = (getattr(self.account, "pk", None) or id(self.account), self.account.base_url)
        key = (account_key, hashlib.sha256(body.encode()).hexdigest())
        now = time.monotonic()
        window = self.identical_request_seconds
        with _recent_polls_lock:
            last = _recent_polls.get(key)
            if last is not None and now - last < window:
                return False
            _recent_polls[key] = now
            if len(_recent_polls) > 10000:
                for old_key, when in list(_recent_polls.items()):
                    if now - when >= window:
                        del _recent_polls[old_key]
        return True

    def _polled(self, body: str, send: Callable[[], str]) -> str | None:
        if not self.poll_allowed(body):
            logger.info("%s: skipped a poll identical to one sent under a minute ago", self.name)
            return None
        return send()

    def state_json(self, ids: list[str], by_id: dict[str, ProviderRef]) -> list[StatusEvent]:
        document = self.json_state_document(ids)
        text = self._polled(
            json.dumps(document, ensure_ascii=False),
            lambda: self.post_json("sendmessagejson.php", document),
        )
        return [] if text is None else self.parse_json_state_answer(text, by_id)

    def state_xml(self, ids: list[str], by_id: dict[str, ProviderRef]) -> list[StatusEvent]:
        body = self.xml_state_document(ids)
        text = self._polled(
            body, lambda: self.post("xml/state_message.php", body, "text/xml; charset=utf-8")
        )
        return [] if text is None else self.parse_xml_state_answer(text, by_id)

    def state_get(self, message_id: str, by_id: dict[str, ProviderRef]) -> list[StatusEvent]:
        params = [
            ("login", self.credential("login")),
            ("password", self.credential("password")),
            ("id_message", message_id),
        ]
        text = self._polled(f"GET {message_id}", lambda: self.get(params))
        return [] if text is None else self.parse_get_state_answer(text, message_id, by_id)

    def parse_json_state_answer(
        self, text: str, by_id: dict[str, ProviderRef]
    ) -> list[StatusEvent]:
        document = self.load_json(text)
        if not isinstance(document, dict):
            raise self.malformed(text, "JSON (not an object)")
        if "state" not in document:
            if "error" in document:
                raise self.request_error(document["error"])
            raise self.malformed(text, "JSON (no 'state')")
        if not isinstance(document["state"], list):
            raise self.malformed(text, "JSON ('state' is not a list)")
        events = []
        for item in document["state"]:
            if isinstance(item, dict):
                events.extend(self.state_events(item, by_id, json.dumps(item, ensure_ascii=False)))
        return events

    def parse_xml_state_answer(self, text: str, by_id: dict[str, ProviderRef]) -> list[StatusEvent]:
        root = self.load_xml(text)
        error = root.find("error")
        if error is not None:
            raise self.request_error(error.text or "")
        events = []
        for element in root.findall("state"):
            item = dict(element.attrib)
            item["state"] = (element.text or "").strip()
            events.extend(self.state_events(item, by_id, ET.tostring(element, encoding="unicode")))
        return events

    def parse_get_state_answer(
        self, text: str, message_id: str, by_id: dict[str, ProviderRef]
    ) -> list[StatusEvent]:
        if _looks_malformed(text):
            raise self.malformed(text, "status answer")
        answer = text.strip()
        if answer not in STATUS_MAP and explain_error(answer)[0] in REQUEST_LEVEL:
            raise self.request_error(answer)
        return self.state_events({"id_message": message_id, "state": answer}, by_id, answer)

    def state_events(
        self, item: dict, by_id: dict[str, ProviderRef], raw: str
    ) -> list[StatusEvent]:
        """One status item: an event per channel that reached a final word, then the overall one."""
        message_id = str(item.get("id_message") or "").strip()
        ref = by_id.get(message_id)
        if ref is None:
            return []
        occurred_at = parse_time(item.get("time_change_state"), TIME_FORMAT, self.gateway_tz())
        events = []
        for channel in CHANNELS:
            word = str(item.get(f"state_{channel}") or "").strip()
            if not word or word == "send":  # "not sent": not reached yet, or never
                continue
            events.append(
                StatusEvent(
                    status=STATUS_MAP.get(word, DeliveryStatus.UNKNOWN),
                    provider_status=word,
                    provider_message_id=message_id,
                    idempotency_key=ref.idempotency_key,
                    channel=channel,
                    occurred_at=occurred_at,
                    price=parse_decimal(item.get(f"price_{channel}")),
                    currency=self.currency,
                    parts=(_int(item.get("num_parts_sms")) or None) if channel == "sms" else None,
                    error_message=STATUS_NOTES.get(word, "")
                    if word in STATUS_MAP
                    else explain_error(word)[1],
                    raw=raw,
                )
            )
        overall = str(item.get("state") or "").strip()
        if overall in STATUS_MAP:
            note = STATUS_NOTES.get(overall, "")
        else:  # "any other value is an error text", e.g. an unknown id
            note = explain_error(overall)[1] if overall else "The gateway gave no status"
        events.append(
            StatusEvent(
                status=STATUS_MAP.get(overall, DeliveryStatus.UNKNOWN),
                provider_status=overall,
                provider_message_id=message_id,
                idempotency_key=ref.idempotency_key,
                occurred_at=occurred_at,
                error_message=note,
                raw=raw,
            )
        )
        return events

    def parse_callback(self, request) -> list[StatusEvent]:
        """The cascade API has no callbacks; a stray request changes nothing."""
        return []

    has_inbound = True

    def parse_inbound(self, request) -> list[InboundMessage]:
        """The replies of one inbound webhook call (format in the module docstring)."""
        document = json.loads(request.body or b"null")
        if not isinstance(document, dict) or not isinstance(document.get("incoming"), list):
            raise ValueError('expected a JSON object with an "incoming" list')
        items = document["incoming"]
        if len(items) > MAX_INBOUND_ITEMS:
            raise ValueError(f"at most {MAX_INBOUND_ITEMS} replies per call, got {len(items)}")
        replies = []
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValueError(f"incoming[{position}] is not an object")
            reply_id = str(item.get("id_incoming") or "").strip()
            phone = str(item.get("phone") or "").strip()
            text = item.get("text")
            channel = str(item.get("channel") or "").strip().lower()
            if not reply_id or len(reply_id) > 100:
                raise ValueError(f"incoming[{position}].id_incoming is missing or too long")
            if not phone.isdigit() or not 5 <= len(phone) <= 15:
                raise ValueError(f"incoming[{position}].phone is not a phone number")
            if not isinstance(text, str) or len(text) > 2000:
                raise ValueError(
                    f"incoming[{position}].text must be text of at most 2000 characters"
                )
            if channel and channel not in CHANNELS:
                raise ValueError(
                    f"incoming[{position}].channel {channel!r} is not one of {CHANNELS}"
                )
            replies.append(
                InboundMessage(
                    provider_reply_id=reply_id,
                    phone=phone,
                    text=text,
                    channel=channel,
                    provider_message_id=str(item.get("id_message") or "").strip()[:100],
                    received_at=parse_time(
                        item.get("time_receive"), TIME_FORMAT, self.gateway_tz()
                    ),
                    raw=json.dumps(item, ensure_ascii=False)[:2000],
                )
            )
        return replies
