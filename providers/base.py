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

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import requests
import urllib3
from requests.adapters import HTTPAdapter


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
    ttl_minutes: int = 1440
    send_at: datetime | None = None
    callback_url: str = ""
    is_promotional: bool = True


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
    # Ids per channel when the gateway runs a native cascade, e.g. {"viber": "1", "sms": "2"}.
    channel_ids: dict[str, str] = field(default_factory=dict)
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


class Backend:
    """Base class: holds the account and a pooled HTTP session.

    Subclasses set the class attributes and implement send, fetch_statuses and
    parse_callback.
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

    # ---- the contract ----
    def send(self, batch: list[OutgoingMessage]) -> list[SendResult]:
        raise NotImplementedError

    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusEvent]:
        raise NotImplementedError

    def parse_callback(self, request) -> list[StatusEvent]:
        """Turn a webhook request (Django HttpRequest) into status events."""
        raise NotImplementedError

    def batch_size(self) -> int:
        """Recipients per request: the account's choice, within what the protocol takes."""
        chosen = int(getattr(self.account, "max_batch", 1) or 1)
        return max(1, min(chosen, self.max_batch))

    def messages_within(self, requests: int) -> int:
        """How many messages `requests` gateway round trips carry at worst: the budget
        that keeps a claim inside its lease (campaigns.dispatch.claim_size)."""
        return requests * self.batch_size()

    # ---- helpers for subclasses ----
    @property
    def session(self) -> requests.Session:
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

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        """One HTTP call; network failures and 5xx/429 become transient ProviderErrors."""
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
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


def failed_results(
    messages: list[OutgoingMessage], error: ProviderError, *, may_have_reached: bool
) -> list[SendResult]:
    """One result per message of a request that failed as a whole (for a backend that
    sends several requests per batch and keeps the results of those that went through)."""
    return [
        SendResult(
            message.delivery_id,
            message.idempotency_key,
            accepted=False,
            status="failed",
            error_code=error.code,
            error_message=str(error),
            permanent=error.permanent,
            may_have_reached=may_have_reached,
            raw=error.response_text,
        )
        for message in messages
    ]


def without_query(error: Exception) -> str:
    """The error's text without query strings: requests repeats the URL, and the query of a
    GET gateway holds the login, password or token (and our callback URL with its secret)."""
    return re.sub(r"\?[^\s'\"]*", "?…", str(error))


_sessions: dict[tuple[Any, ...], requests.Session] = {}
_sessions_lock = threading.Lock()


def session_for(account: Any) -> requests.Session:
    """A keep-alive session per account (and per process), rebuilt when the account changes.

    An unsaved account (a test's or a benchmark's) carries its own session:
    keying by id() would hand a recycled id another account's session.
    """
    if getattr(account, "pk", None) is None:
        session = getattr(account, "_cascade_session", None)
        if session is None:
            session = _new_session()
            account._cascade_session = session
        return session
    key = (account.pk, str(getattr(account, "updated_at", "")))
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = _new_session()
        return session


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "Cascade/0.1"
    return session
