"""BSG's REST API 1.0 (Viber with SMS alt_route, and SMS), as far as Cascade uses it.

Routes (under /rest, the legacy app.bsg.hk layout):
  PUT|POST /rest/viber/create          up to 50 recipients; options.viber.alt_route = SMS fallback
  PUT|POST /rest/sms/create            destination "phones" (one body, many phones) or "phone"
  GET /rest/viber/<id>, /rest/viber/reference/<reference>
  GET /rest/sms/<id>,   /rest/sms/reference/<reference>   (SMS-only messages and alt_route legs)

Validation follows protocols-sources §4: X-API-KEY (1), more than 50 recipients (12), a
request without messages (3) or without to/msisdn/text (44; 24 for SMS), tariff 0-9 (6),
validity (48; 28 for SMS), and per recipient: invalid phone (41/21), bad reference (47/27),
repeated reference (43/23: *not* accepted again), phone twice in one `to` list (51/31),
alpha_name longer than 14 or not registered (45), empty or too long text (46), img without
caption+action, a caption without action or the reverse, or a bad alt_route (49).

Choices where BSG documents nothing (see the backend's docstring too):
- HTTP status codes: 401 for a bad key, 404 for "not found", 400 for other whole-request
  errors, 200 when the request went through (per-recipient errors inside the result).
- validity: the docs say seconds 15-86400 but their own examples send 1 and 24, so any
  whole number from 1 to 86400 is accepted. SMS validity is in hours, 1-72.
- References are one namespace for the Viber and SMS APIs (stricter than BSG may be).
- The "individual" SMS mode is not simulated (answered 24).
- Callbacks: when a message reaches its final status, its status answer (the same JSON as
  GET /rest/viber/<id>, or /rest/sms/<id> for SMS-only messages) is POSTed to its
  callback_url; a second one follows when an alt_route SMS leg reaches its own final
  status. Anything but HTTP 200 is retried after 10 s and then 60 s (3 tries in all),
  scaled by callback_time_scale.
- Fates: Viber from outcome_mix; when Viber ends undeliverable or expired and alt_route was
  given, an SMS leg (its own id) is created then and ends delivery_delay later with a fate
  from sms_outcome_mix (default: outcome_mix); "read" is reported as "delivered" for SMS.
  Viber is charged only when delivered or read (the seed's undeliverable answer has price 0).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from providers.simulators.base import (
    OUTCOMES,
    SimMessage,
    SimRequest,
    SimResponse,
    Simulator,
    SimulatorConfig,
    json_response,
)

REFERENCE = re.compile(r"[A-Za-z0-9]{1,32}")
MSISDN = re.compile(r"[1-9][0-9]{9,14}")
MAX_RECIPIENTS = 50
MAX_SENDER = 14
MAX_VIBER_TEXT = 1000
CALLBACK_RETRY_DELAYS = [10.0, 60.0]
FAILED = ("undeliverable", "expired")

ERROR_TEXT = {
    0: "No errors",
    1: "Invalid API key",
    3: "Not enough params",
    6: "Invalid price grid parameter",
    12: "Exceeded batch size limit",
    20: "SMS not found",
    21: "Invalid MSISDN",
    22: "External ID absent",
    23: "External ID already exists",
    24: "Invalid request payload",
    25: "Invalid originator",
    26: "Invalid sms text",
    27: "Invalid External ID",
    28: "Invalid validity time",
    31: "MSISDN already present in request",
    40: "Message not found",
    41: "Invalid MSISDN",
    43: "External ID already exists",
    44: "Invalid request payload",
    45: "Invalid or unregistered sender",
    46: "Invalid message text",
    47: "Invalid External ID",
    48: "Invalid validity time",
    49: "Invalid combination of Viber options",
    51: "Duplicate phone",
}


def bsg_error(code: int, status: int = 400) -> SimResponse:
    return json_response({"error": code, "errorDescription": ERROR_TEXT[code]}, status)


def whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def bsg_time(moment: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment)) if moment else None


class PrefixRoutes(dict):
    """A route table where a key ending in "/" also matches one path segment below it.

    The base class looks routes up by exact path; BSG's status paths carry the id.
    """

    def get(self, key, default=None):
        handler = super().get(key)
        if handler is not None:
            return handler
        method, path = key
        for (route_method, prefix), candidate in self.items():
            rest = path[len(prefix) :]
            if (
                route_method == method
                and prefix.endswith("/")
                and path.startswith(prefix)
                and rest
                and "/" not in rest
            ):
                return candidate
        return default


class BsgSimulator(Simulator):
    name = "bsg"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SimulatorConfig | None = None,
        *,
        api_keys: set[str] | None = None,
        senders: set[str] | None = None,
        sms_outcome_mix: dict[str, float] | None = None,
        viber_price: str = "0.023",
        sms_price: str = "0.015",
        currency: str = "EUR",
    ):
        self.api_keys = set(api_keys) if api_keys is not None else {"live_test"}
        # None: any name of 1-14 characters counts as registered (a test account).
        self.senders = set(senders) if senders is not None else None
        self.sms_outcome_mix = sms_outcome_mix
        self.viber_price = Decimal(viber_price)
        self.sms_price = Decimal(sms_price)
        self.currency = currency
        self._tasks = itertools.count(21902)
        super().__init__(host, port, config)
        self._routes = PrefixRoutes(
            {
                ("PUT", "/rest/viber/create"): self.viber_create,
                ("POST", "/rest/viber/create"): self.viber_create,
                ("PUT", "/rest/sms/create"): self.sms_create,
                ("POST", "/rest/sms/create"): self.sms_create,
                ("GET", "/rest/viber/reference/"): self.viber_by_reference,
                ("GET", "/rest/viber/"): self.viber_by_id,
                ("GET", "/rest/sms/reference/"): self.sms_by_reference,
                ("GET", "/rest/sms/"): self.sms_by_id,
            }
        )

    def reset(self) -> None:
        with self.lock:
            super().reset()
            self.sms_legs: dict[str, str] = {}  # alt_route SMS id -> Viber message id

    def routes(self) -> dict[tuple[str, str], Callable[[SimRequest], SimResponse]]:
        return self._routes

    # ---- helpers ----
    def key_refused(self, request: SimRequest) -> SimResponse | None:
        if request.headers.get("x-api-key") not in self.api_keys:
            return bsg_error(1, 401)
        return None

    def sender_ok(self, name: Any) -> bool:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_SENDER:
            return False
        return self.senders is None or name in self.senders

    def choose_sms_outcome(self) -> str:
        if self.sms_outcome_mix is None:
            return self.choose_outcome()
        mix = {k: v for k, v in self.sms_outcome_mix.items() if k in OUTCOMES and v > 0}
        if not mix:
            return "delivered"
        return self.rng.choices(list(mix), weights=list(mix.values()))[0]

    @staticmethod
    def read_json(request: SimRequest) -> Any:
        try:
            return json.loads(request.body or b"null")
        except ValueError:
            return None

    def recipient_error(
        self, reference: Any, msisdn: str, seen: set[str], codes: dict[str, int]
    ) -> int:
        """The per-recipient error code, 0 when the recipient can be accepted."""
        if isinstance(reference, str):
            self.received(reference)  # counted before the repeated-reference check
        if not MSISDN.fullmatch(msisdn):
            return codes["phone"]
        if msisdn in seen:
            return codes["duplicate_phone"]
        if reference is None:
            return codes.get("no_reference", 0)
        if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
            return codes["reference"]
        if reference in self.by_key:
            return codes["exists"]
        return 0

    def refusal(self, code: int, reference: Any) -> dict[str, Any]:
        self.rejected_total += 1
        entry: dict[str, Any] = {"error": code, "errorDescription": ERROR_TEXT[code]}
        if reference is not None:
            entry["reference"] = reference
        return entry

    def accepted(self, message: SimMessage, price: Decimal) -> dict[str, Any]:
        return {
            "error": 0,
            "errorDescription": ERROR_TEXT[0],
            "reference": message.key,
            "id": message.id,
            "price": float(price),
            "currency": self.currency,
        }

    # ---- Viber ----
    def viber_message_error(self, message: dict) -> int:
        """Errors that concern a whole message object (so each of its recipients)."""
        if not self.sender_ok(message.get("alpha_name")):
            return 45
        text = message.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_VIBER_TEXT:
            return 46
        viber = (message.get("options") or {}).get("viber") or {}
        if not isinstance(viber, dict):
            return 49
        img, caption, action = viber.get("img"), viber.get("caption"), viber.get("action")
        if img and not (caption and action):
            return 49
        if bool(caption) != bool(action):
            return 49
        alt_route = viber.get("alt_route")
        if alt_route is not None:
            if not isinstance(alt_route, dict) or not self.sender_ok(alt_route.get("originator")):
                return 49
            if not isinstance(alt_route.get("text"), str) or not alt_route["text"].strip():
                return 49
        return 0

    def viber_create(self, request: SimRequest) -> SimResponse:
        if refused := self.key_refused(request):
            return refused
        body = self.read_json(request)
        if not isinstance(body, dict):
            return bsg_error(44)
        messages = body.get("messages")
        if not messages:
            return bsg_error(3)
        if not isinstance(messages, list) or not all(
            isinstance(m, dict)
            and isinstance(m.get("to"), list)
            and m["to"]
            and "text" in m
            and all(isinstance(to, dict) and "msisdn" in to for to in m["to"])
            for m in messages
        ):
            return bsg_error(44)
        if sum(len(m["to"]) for m in messages) > MAX_RECIPIENTS:
            return bsg_error(12)
        validity = whole_number(body.get("validity", 86400))
        if validity is None or not 1 <= validity <= 86400:
            return bsg_error(48)
        tariff = whole_number(body.get("tariff", 0))
        if tariff is None or not 0 <= tariff <= 9:
            return bsg_error(6)
        codes = {"phone": 41, "duplicate_phone": 51, "reference": 47, "exists": 43}
        results = []
        total = Decimal(0)
        with self.lock:  # one reference is accepted once, even by concurrent requests
            for message in messages:
                problem = self.viber_message_error(message)
                viber = (message.get("options") or {}).get("viber") or {}
                alt_route = viber.get("alt_route") if isinstance(viber, dict) else None
                seen: set[str] = set()
                for to in message["to"]:
                    reference, msisdn = to.get("reference"), str(to.get("msisdn") or "")
                    code = problem or self.recipient_error(reference, msisdn, seen, codes)
                    if code:
                        results.append(self.refusal(code, reference))
                        continue
                    seen.add(msisdn)
                    accepted = self.accept_viber(message, reference or "", msisdn, alt_route)
                    results.append(self.accepted(accepted, self.viber_price))
                    total += self.viber_price
        return json_response(
            {"result": results, "currency": self.currency, "total_price": float(total)}
        )

    def accept_viber(
        self, message: dict, reference: str, msisdn: str, alt_route: dict | None
    ) -> SimMessage:
        accepted = self.accept(
            key=reference,
            phone=msisdn,
            channels=["viber", "sms"] if alt_route else ["viber"],
            callback_url=str(message.get("callback_url") or ""),
            request=message,
            extra={"api": "viber", "alt_route": bool(alt_route)},
        )
        if alt_route:
            if self.sms_outcome_mix is not None:
                accepted.outcomes["sms"] = self.choose_sms_outcome()
            if accepted.outcomes["viber"] in FAILED:
                leg_id = self.next_id()
                accepted.extra["sms_id"] = leg_id
                accepted.extra["sms_final_at"] = accepted.final_at + self.config.delivery_delay
                self.sms_legs[leg_id] = accepted.id
        return accepted

    def viber_status(self, message: SimMessage, now: float) -> dict[str, Any]:
        final = now >= message.final_at
        fate = message.outcomes["viber"]
        answer: dict[str, Any] = {
            "error": 0,
            "errorDescription": ERROR_TEXT[0],
            "id": message.id,
            "msisdn": message.phone,
            "reference": message.key,
            "time_in": bsg_time(message.accepted_at),
            "time_sent": bsg_time(message.accepted_at),
            "time_dr": bsg_time(message.final_at) if final else None,
            "status": fate if final else "sent",
            "price": float(self.viber_price) if fate not in FAILED else 0.0,
            "currency": self.currency,
        }
        if message.extra.get("alt_route"):
            legs = []
            if final and message.extra.get("sms_id"):
                legs.append(
                    {
                        "channel": "sms",
                        "id": message.extra["sms_id"],
                        "status": self.sms_leg_word(message, now),
                        "price": str(self.sms_price),
                    }
                )
            answer["alt_route"] = legs
        return answer

    def sms_leg_word(self, message: SimMessage, now: float) -> str:
        if now < message.extra["sms_final_at"]:
            return "sent"
        return sms_word(message.outcomes["sms"])

    def viber_message(self, message_id: str | None) -> SimMessage | None:
        message = self.messages.get(message_id or "")
        return message if message and message.extra.get("api") == "viber" else None

    def viber_by_id(self, request: SimRequest) -> SimResponse:
        if refused := self.key_refused(request):
            return refused
        with self.lock:
            message = self.viber_message(request.path.rsplit("/", 1)[1])
            if message is None:
                return bsg_error(40, 404)
            return json_response(self.viber_status(message, time.time()))

    def viber_by_reference(self, request: SimRequest) -> SimResponse:
        if refused := self.key_refused(request):
            return refused
        with self.lock:
            message = self.viber_message(self.by_key.get(request.path.rsplit("/", 1)[1]))
            if message is None:
                return bsg_error(40, 404)
            return json_response(self.viber_status(message, time.time()))

    # ---- SMS ----
    def sms_create(self, request: SimRequest) -> SimResponse:
        if refused := self.key_refused(request):
            return refused
        body = self.read_json(request)
        if not isinstance(body, dict):
            return bsg_error(24)
        destination = body.get("destination")
        if destination == "phone":
            phones = [{"msisdn": body.get("msisdn"), "reference": body.get("reference")}]
        elif destination == "phones":
            phones = body.get("phones")
            if not phones:
                return bsg_error(3)
            if not isinstance(phones, list) or not all(
                isinstance(phone, dict) and "msisdn" in phone for phone in phones
            ):
                return bsg_error(24)
        else:
            return bsg_error(24)
        if len(phones) > MAX_RECIPIENTS:
            return bsg_error(12)
        if not self.sender_ok(body.get("originator")):
            return bsg_error(25)
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            return bsg_error(26)
        validity = whole_number(body.get("validity", 72))
        if validity is None or not 1 <= validity <= 72:
            return bsg_error(28)
        tariff = whole_number(body.get("tariff", 0))
        if tariff is None or not 0 <= tariff <= 9:
            return bsg_error(6)
        codes = {
            "phone": 21,
            "duplicate_phone": 31,
            "no_reference": 22,
            "reference": 27,
            "exists": 23,
        }
        results = []
        total = Decimal(0)
        seen: set[str] = set()
        with self.lock:
            for phone in phones:
                reference, msisdn = phone.get("reference"), str(phone.get("msisdn") or "")
                code = self.recipient_error(reference, msisdn, seen, codes)
                if code:
                    results.append(self.refusal(code, reference))
                    continue
                seen.add(msisdn)
                accepted = self.accept(
                    key=reference,
                    phone=msisdn,
                    channels=["sms"],
                    callback_url=str(body.get("callback_url") or ""),
                    request={key: value for key, value in body.items() if key != "phones"},
                    extra={"api": "sms"},
                )
                if self.sms_outcome_mix is not None:
                    accepted.outcomes["sms"] = self.choose_sms_outcome()
                results.append(self.accepted(accepted, self.sms_price))
                total += self.sms_price
        if destination == "phone":
            return json_response({"result": results[0]})
        return json_response(
            {
                "result": results,
                "error": 0,
                "errorDescription": ERROR_TEXT[0],
                "totalprice": float(total),
                "currency": self.currency,
                "task_id": str(next(self._tasks)),
            }
        )

    def sms_status(self, message: SimMessage, now: float) -> dict[str, Any]:
        final = now >= message.final_at
        return {
            "error": 0,
            "errorDescription": ERROR_TEXT[0],
            "id": message.id,
            "msisdn": message.phone,
            "reference": message.key,
            "time_in": bsg_time(message.accepted_at),
            "time_sent": bsg_time(message.accepted_at),
            "time_dr": bsg_time(message.final_at) if final else None,
            "status": sms_word(message.outcomes["sms"]) if final else "sent",
            "price": float(self.sms_price),
            "currency": self.currency,
        }

    def sms_leg_status(self, parent: SimMessage, now: float) -> dict[str, Any]:
        final = now >= parent.extra["sms_final_at"]
        return {
            "error": 0,
            "errorDescription": ERROR_TEXT[0],
            "id": parent.extra["sms_id"],
            "msisdn": parent.phone,
            "reference": parent.key,
            "time_in": bsg_time(parent.final_at),
            "time_sent": bsg_time(parent.final_at),
            "time_dr": bsg_time(parent.extra["sms_final_at"]) if final else None,
            "status": self.sms_leg_word(parent, now),
            "price": float(self.sms_price),
            "currency": self.currency,
        }

    def sms_answer(self, message_id: str | None) -> SimResponse:
        now = time.time()
        message = self.messages.get(message_id or "")
        if message and message.extra.get("api") == "sms":
            return json_response(self.sms_status(message, now))
        parent = self.messages.get(self.sms_legs.get(message_id or "", ""))
        # A leg exists once Viber has failed; before that BSG has no SMS to show.
        if parent and now >= parent.final_at:
            return json_response(self.sms_leg_status(parent, now))
        return bsg_error(20, 404)

    def sms_by_id(self, request: SimRequest) -> SimResponse:
        if refused := self.key_refused(request):
            return refused
        with self.lock:
            return self.sms_answer(request.path.rsplit("/", 1)[1])

    def sms_by_reference(self, request: SimRequest) -> SimResponse:
        if refused := self.key_refused(request):
            return refused
        with self.lock:
            message_id = self.by_key.get(request.path.rsplit("/", 1)[1])
            message = self.messages.get(message_id or "")
            if message is None or message.extra.get("api") != "sms":
                return bsg_error(20, 404)
            return self.sms_answer(message_id)

    # ---- callbacks ----
    def fire_callback(self, message: SimMessage) -> None:
        now = time.time()
        with self.lock:
            if message.extra.get("api") == "sms":
                payload = self.sms_status(message, now)
            else:
                payload = self.viber_status(message, now)
            leg_final_at = message.extra.get("sms_final_at")
        self.deliver_callback("POST", message.callback_url, CALLBACK_RETRY_DELAYS, json=payload)
        if leg_final_at and now < leg_final_at:
            # Once more when the SMS leg has its own final status.
            self.schedule(leg_final_at, lambda: self.fire_callback(message))


def sms_word(outcome: str) -> str:
    return "delivered" if outcome == "read" else outcome  # SMS has no "read"
