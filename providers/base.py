"""The contract every gateway backend fulfils.

A backend is one module in providers/backends/ exposing a class named
`Backend`. It turns Cascade's OutgoingMessages into the gateway's requests and
the gateway's answers, status replies and callbacks into SendResults and
StatusEvents in the normalized vocabulary of providers/status.py. It keeps the
gateway's raw text on every result so nothing it said is lost.

Errors: a failure of the whole request raises ProviderError (permanent or
transient); a failure of one recipient inside an accepted request is a
SendResult with accepted=False. A missing or malformed account setting is a
ConfigurationError, deliberately outside ProviderError so no retry loop can
swallow it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
import urllib3
from requests.adapters import HTTPAdapter

from providers.status import DeliveryStatus

logger = logging.getLogger(__name__)
# Every request and answer, secrets masked, at DEBUG: turn it on to see the wire.
wire_log = logging.getLogger("providers.wire")

# A step's lifetime when the campaign sets none: a day, the common gateway default.
DEFAULT_TTL_MINUTES = 1440


class ConfigurationError(Exception):
    """The provider account is set up wrongly; names the setting to fix."""


class ProviderError(Exception):
    """A request to the gateway failed as a whole.

    permanent=True: resending the same request cannot succeed (bad credentials,
    invalid parameters); the step fails and the cascade moves on.
    permanent=False: network trouble, 5xx, throttling; retry with backoff.

    may_have_reached: whether the gateway may have taken the messages despite the
    error (a read timeout, a 502, a connection lost after the request went out).
    Unless told otherwise a transient error is assumed to have reached it: on a
    gateway without idempotency keys a wrong guess that way waits for a report,
    a wrong guess the other way sends twice. A permanent error never reached it.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: str = "",
        response_text: str = "",
        status_code: int | None = None,
        may_have_reached: bool | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.may_have_reached = (not permanent) if may_have_reached is None else may_have_reached
        self.code = code
        self.response_text = response_text
        self.status_code = status_code

    def __str__(self) -> str:
        kind = "permanent" if self.permanent else "transient"
        code = f" [{self.code}]" if self.code else ""
        return f"{self.message}{code} ({kind})"


@dataclass
class OutgoingMessage:
    """One recipient of one cascade step, rendered and ready for the wire."""

    delivery_id: int
    idempotency_key: str  # [A-Za-z0-9]{1,32}; sent where the gateway deduplicates
    channel: str  # the channel of this step
    phone: str = ""  # international digits without '+'
    email: str = ""
    push_tokens: list[str] = field(default_factory=list)
    title: str = ""
    text: str = ""  # text for this step's channel
    html: str = ""
    sms_text: str = ""  # SMS fallback text when the backend runs the cascade natively
    button_caption: str = ""
    button_url: str = ""
    image_url: str = ""
    # Channels after this one that the backend should run itself when it can
    # (native cascade); empty means this channel only.
    fallback_channels: list[str] = field(default_factory=list)
    ttl_minutes: int = DEFAULT_TTL_MINUTES
    callback_url: str = ""
    is_promotional: bool = True
    unsubscribe_url: str = ""  # email: the one-click unsubscribe link (RFC 8058)


@dataclass
class SendResult:
    delivery_id: int
    idempotency_key: str
    accepted: bool
    provider_message_id: str = ""
    status: str = "sent"  # normalized status after submit
    error_code: str = ""
    error_message: str = ""
    permanent: bool = True  # for accepted=False: may a resubmit succeed?
    # For accepted=False and not permanent: may the gateway have it anyway (the request
    # was lost on the way back)? Then a gateway without idempotency keys is not resent to.
    may_have_reached: bool = False
    price: Decimal | None = None
    currency: str = ""
    parts: int = 0
    raw: str = ""


@dataclass
class ProviderRef:
    """What we know about a submitted delivery, for status polling."""

    delivery_id: int
    provider_message_id: str
    idempotency_key: str = ""


@dataclass
class StatusEvent:
    status: str  # normalized (providers.status.DeliveryStatus)
    provider_status: str  # the gateway's own word or code
    provider_message_id: str = ""
    idempotency_key: str = ""
    channel: str = ""  # which channel of a native cascade this is about; "" = the step's
    occurred_at: datetime | None = None
    price: Decimal | None = None
    currency: str = ""
    parts: int | None = None
    error_message: str = ""
    raw: str = ""


@dataclass(frozen=True)
class InboundMessage:
    """A message a client sent back (a reply in Viber, an SMS to the sender's number)."""

    provider_reply_id: str  # the gateway's id of the reply: a redelivery is recognised by it
    phone: str
    text: str
    channel: str = ""  # the channel it came on ("viber", "sms", ...); "" when not said
    provider_message_id: str = ""  # the gateway's id of the message it answers, if known
    received_at: datetime | None = None
    raw: str = ""


Item = tuple[int, OutgoingMessage]  # (position in the batch, message)


@dataclass
class Chunk:
    """The recipients of one gateway request, and what the backend grouped them by."""

    items: list[Item]
    # Whatever submit() needs beyond the recipients: the shared content of a group, the
    # API a request goes to. The base class never looks inside.
    detail: Any = None


class Backend:
    """Base class: the account, a pooled HTTP session and the fixed send pipeline.

    send() is the same for every backend and is not overridden:

      prepare(batch)          which messages can go at all; the others get a refusal
      chunk(items)            how the rest are split into gateway requests
      submit(chunk)           one request on the wire; its answer, or ProviderError
      parse_results(chunk, answer)   the answer as one SendResult per recipient

    The base class owns what every gateway needs the same way: results in batch order,
    a recipient the answer does not mention, a request that fails after earlier ones
    went through (those results stand, the failed one is as its error says, the later
    ones never left), the resend decision (after_failure) and wire logging with the
    account's secrets masked. A backend implements the wire steps, plus
    fetch_statuses and parse_callback for statuses.
    """

    name: ClassVar[str] = ""
    channels: ClassVar[tuple[str, ...]] = ()
    # The most recipients the protocol takes in one request; an account's max_batch (how
    # many dispatch sends at once) may be lower, never higher (ProviderAccount.clean).
    max_batch: ClassVar[int] = 1
    supports_native_cascade: ClassVar[bool] = False
    idempotent_submit: ClassVar[bool] = False  # the gateway refuses a repeated key
    has_callbacks: ClassVar[bool] = False
    # When polling is the only way to learn statuses (or a backstop to callbacks).
    polls_statuses: ClassVar[bool] = True

    def __init__(self, account: Any):
        self.account = account
        self.own_session: requests.Session | None = None

    # ---- the send pipeline (fixed) ----
    def send(self, batch: list[OutgoingMessage]) -> list[SendResult]:
        """One result per message, in batch order.

        Raises ProviderError only when the batch's single request failed as a whole, so
        the caller can treat every message of it alike.
        """
        items, results = self.prepare(batch)
        chunks = self.chunk(items) if items else []
        with self.session_scope():
            for position, chunk in enumerate(chunks):
                try:
                    answer = self.submit(chunk)
                    parsed = self.parse_results(chunk, answer)
                except ProviderError as error:
                    if len(chunks) == 1:
                        raise
                    if position:
                        logger.warning("%s: batch stopped after a failure: %s", self.name, error)
                    later = [item for rest in chunks[position + 1 :] for item in rest.items]
                    results.update(failed(chunk.items, error, may_have_reached=None))
                    results.update(failed(later, error, may_have_reached=False))
                    break
                for index, message in chunk.items:
                    results[index] = parsed.get(index) or refusal(
                        message,
                        "no_answer",
                        "The gateway's answer did not mention this recipient",
                        permanent=False,
                    )
        return [results[index] for index in range(len(batch))]

    def prepare(self, batch: list[OutgoingMessage]) -> tuple[list[Item], dict[int, SendResult]]:
        """The messages that can be sent, and a refusal for each one that cannot."""
        items: list[Item] = []
        refused: dict[int, SendResult] = {}
        for index, message in enumerate(batch):
            if message.channel not in self.channels:
                refused[index] = refusal(
                    message, "channel", f"{self.name} cannot send over {message.channel!r}"
                )
            elif not self.address(message):
                refused[index] = refusal(message, "no_address", f"No address for {message.channel}")
            else:
                items.append((index, message))
        return items, refused

    def address(self, message: OutgoingMessage) -> str:
        """Where the message goes on its channel; "" when the client has no address there."""
        if message.channel == "email":
            return message.email
        if message.channel == "push":
            return ",".join(message.push_tokens)
        return message.phone

    def chunk(self, items: list[Item]) -> list[Chunk]:
        """Requests of at most batch_size() recipients, in batch order."""
        size = self.batch_size()
        return [Chunk(items[start : start + size]) for start in range(0, len(items), size)]

    def session_scope(self) -> AbstractContextManager:
        """Held around all requests of one send (SMTP opens its connection here)."""
        return contextlib.nullcontext()

    def submit(self, chunk: Chunk) -> Any:
        """Send one request; return the gateway's answer. Raise ProviderError when the
        request failed as a whole."""
        raise NotImplementedError

    def parse_results(self, chunk: Chunk, answer: Any) -> dict[int, SendResult]:
        """Results by position in the batch; a recipient left out is reported by the base
        as not answered (transient: a gateway with idempotency keys takes a resend)."""
        raise NotImplementedError

    def after_failure(self, *, permanent: bool, may_have_reached: bool) -> str:
        """The resend decision for a failed submit to this gateway (see after_failure)."""
        return after_failure(
            permanent=permanent,
            may_have_reached=may_have_reached,
            idempotent=self.idempotent_submit,
        )

    # ---- statuses ----
    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusEvent]:
        raise NotImplementedError

    def parse_callback(self, request) -> list[StatusEvent]:
        """Turn a webhook request (Django HttpRequest) into status events."""
        raise NotImplementedError

    # Gateways that forward clients' replies set this and parse them here.
    has_inbound = False

    def parse_inbound(self, request) -> list[InboundMessage]:
        """Turn an inbound-messages webhook request (Django HttpRequest) into replies."""
        raise NotImplementedError

    def batch_size(self) -> int:
        """Recipients per request: the account's choice, within what the protocol takes."""
        chosen = int(getattr(self.account, "max_batch", 0) or self.max_batch)
        return max(1, min(chosen, self.max_batch))

    def messages_within(self, requests: int) -> int:
        """How many messages `requests` gateway round trips carry at worst: the budget
        that keeps a claim inside its lease (campaigns.claims.claim_size)."""
        return requests * self.batch_size()

    # ---- account settings ----
    @property
    def options(self) -> dict[str, Any]:
        return getattr(self.account, "options", None) or {}

    def option_flag(self, name: str) -> bool:
        return str(self.options.get(name, "")).strip().lower() in ("1", "true", "yes", "on")

    def option_choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        """options[name] as one of `choices` (compared in the choices' case)."""
        value = str(self.options.get(name) or default)
        value = value.upper() if choices[0].isupper() else value.lower()
        if value not in choices:
            raise ConfigurationError(
                f"Provider account {self.account.name!r}: options[{name!r}] must be "
                f"{' or '.join(choices)}, not {value!r}."
            )
        return value

    def option_time_zone(self, name: str, default: str = "Europe/Moscow") -> ZoneInfo:
        value = str(self.options.get(name) or default)
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ConfigurationError(
                f"Provider account {self.account.name!r}: options[{name!r}] = {value!r} "
                "is not a known time zone."
            ) from error

    @property
    def session(self) -> requests.Session:
        if getattr(self.account, "pk", None) is None:
            # An unsaved account (a test's, a benchmark's) has no key to share a session
            # by, and keying by id() would hand a recycled id another account's session:
            # this backend keeps its own.
            if self.own_session is None:
                self.own_session = _new_session()
            return self.own_session
        return session_for(self.account)

    @property
    def timeout(self) -> float:
        return float(getattr(self.account, "timeout_seconds", 10) or 10)

    def credential(self, key: str) -> str:
        value = (self.account.credentials or {}).get(key)
        if value in (None, ""):
            raise ConfigurationError(
                f"Provider account {self.account.name!r} needs credentials[{key!r}] "
                f"for the {self.name} backend."
            )
        return str(value)

    def base_url(self) -> str:
        if not self.account.base_url:
            raise ConfigurationError(f"Provider account {self.account.name!r} needs a base_url.")
        return self.account.base_url.rstrip("/")

    def sender_for(self, channel: str) -> str:
        senders = self.account.sender_names or {}
        return str(senders.get(channel) or senders.get("default") or "")

    # ---- HTTP ----
    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        """One HTTP call; network failures and 5xx/429 become transient ProviderErrors."""
        started = time.monotonic()
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            wire_log.debug(
                "%s %s %s failed: %s",
                self.name,
                method,
                without_query(url),
                self.masked(without_query(error)),
            )
            if never_connected(error):
                raise ProviderError(
                    f"{self.name}: could not connect: {without_query(error)}",
                    permanent=False,
                    may_have_reached=False,
                ) from error
            if isinstance(error, requests.Timeout):
                # Connected and sent, then no answer in time: the gateway may have it.
                raise ProviderError(
                    f"{self.name}: timed out after {self.timeout:g} s waiting for the answer",
                    permanent=False,
                ) from error
            raise ProviderError(
                f"{self.name}: connection failed: {without_query(error)}", permanent=False
            ) from error
        if wire_log.isEnabledFor(logging.DEBUG):
            self.log_exchange(response, time.monotonic() - started)
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderError(
                f"{self.name}: gateway answered HTTP {response.status_code}",
                permanent=False,
                status_code=response.status_code,
                response_text=response.text[:2000],
                # 429 and 503 say the gateway turned the request away; a 500, 502 or 504
                # may come after (or from in front of) a gateway that stored the message.
                may_have_reached=response.status_code not in REFUSED_UNSEEN,
            )
        return response

    def log_exchange(self, response: requests.Response, seconds: float) -> None:
        """Request and answer at DEBUG on providers.wire, the account's secrets masked."""
        sent = response.request
        body = sent.body or b""
        if isinstance(body, bytes):
            body = body.decode("utf-8", errors="replace")
        wire_log.debug(
            "%s %s %s -> HTTP %s in %.0f ms\n> %s\n< %s",
            self.name,
            sent.method,
            self.masked(without_query(sent.url or "")),
            response.status_code,
            seconds * 1000,
            self.masked(body[:2000]),
            self.masked(response.text[:2000]),
        )

    def masked(self, text: str) -> str:
        """`text` with every credential of the account (and its URL-encoded form) replaced."""
        for value in (getattr(self.account, "credentials", None) or {}).values():
            value = str(value)
            if len(value) >= 4:
                text = text.replace(value, "***").replace(quote(value, safe=""), "***")
        return text


# HTTP answers by which a gateway says it did not take the request in.
REFUSED_UNSEEN = (429, 503)


def never_connected(error: Exception) -> bool:
    """True when the request cannot have left: no connection was ever made (refused,
    unresolvable host, connect timeout). urllib3 keeps the cause as `reason` of the
    MaxRetryError that requests wraps."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    cause = error.args[0] if error.args else None
    reason = getattr(cause, "reason", cause)
    return isinstance(
        reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
    )


def after_failure(*, permanent: bool, may_have_reached: bool, idempotent: bool) -> str:
    """What becomes of a delivery whose submit failed; one rule for dispatch and the sweeper.

    "fail": resending cannot help, the step fails and the cascade moves on.
    "retry": resend later; safe when the gateway cannot have it, or refuses a repeated key.
    "wait": the gateway may have it and would send it again: wait for its report (or a
    status query) and let the TTL expire it, never resend blindly.
    """
    if permanent:
        return "fail"
    if may_have_reached and not idempotent:
        return "wait"
    return "retry"


def refusal(
    message: OutgoingMessage,
    code: str,
    text: str,
    *,
    permanent: bool = True,
    may_have_reached: bool = False,
    raw: str = "",
) -> SendResult:
    """The result of a message the gateway did not take (or we did not send)."""
    return SendResult(
        message.delivery_id,
        message.idempotency_key,
        accepted=False,
        status=DeliveryStatus.REJECTED if permanent else DeliveryStatus.FAILED,
        error_code=code,
        error_message=text,
        permanent=permanent,
        may_have_reached=may_have_reached,
        raw=raw,
    )


def failed(
    items: list[Item], error: ProviderError, *, may_have_reached: bool | None
) -> dict[int, SendResult]:
    """A result per recipient of a request that failed as a whole; may_have_reached=None
    takes the error's own judgement."""
    reached = error.may_have_reached if may_have_reached is None else may_have_reached
    return {
        index: refusal(
            message,
            error.code or "request_failed",
            str(error),
            permanent=error.permanent,
            may_have_reached=reached,
            raw=error.response_text,
        )
        for index, message in items
    }


def parse_decimal(value: Any) -> Decimal | None:
    """A price or balance as the gateway wrote it ("1.25", "1,25", 1.25); None if absent."""
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        return None


def parse_time(value: Any, format: str, zone: tzinfo) -> datetime | None:
    """A gateway timestamp in `format` and `zone`, aware; None for a blank or placeholder."""
    if not value:
        return None
    try:
        return datetime.strptime(str(value).strip(), format).replace(tzinfo=zone)
    except ValueError:  # "0000-00-00 00:00:00" and other placeholders
        return None


def without_query(error: Exception) -> str:
    """The error's text without query strings: requests repeats the URL, and the query of a
    GET gateway holds the login, password or token (and our callback URL with its secret)."""
    return re.sub(r"\?[^\s'\"]*", "?…", str(error))


_sessions: dict[tuple[Any, ...], requests.Session] = {}
_sessions_lock = threading.Lock()


def session_for(account: Any) -> requests.Session:
    """A keep-alive session per saved account (and per process), rebuilt when it changes."""
    key = (account.pk, str(getattr(account, "updated_at", "")))
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = _new_session()
        return session


def reset_sessions() -> None:
    """Close and forget every pooled session (tests, and a worker after a fork)."""
    with _sessions_lock:
        for session in _sessions.values():
            session.close()
        _sessions.clear()


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "Cascade/0.1"
    return session
