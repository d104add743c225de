"""Cascade's table of partner API `ErrorCode` values: the one place they are defined.

LCManager never published its codes, so these are ours (README, "Partner API
error codes", is generated from this table by a test that compares them).
Partners written against LCManager read `ErrorCode` and `Message` whatever the
HTTP status, and check `status == 200 && ErrorCode == 0` for success; the HTTP
status is there for everyone else. 10 is kept for "unexpected error" because
LCManager answered exceptions with 10.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import translation
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class ErrorCode:
    code: int
    http_status: int
    # The answer's Message, English unless the request asked for Russian
    # (config.middleware.PartnerApiLanguageMiddleware); a detail may follow after ": ".
    message: str


OK = ErrorCode(0, 200, _("OK"))
INVALID_REQUEST = ErrorCode(1, 400, _("The request is not valid"))
MALFORMED_BODY = ErrorCode(2, 400, _("The body could not be read"))
UNSUPPORTED_MEDIA_TYPE = ErrorCode(3, 415, _("Unsupported Content-Type"))
BODY_TOO_LARGE = ErrorCode(4, 413, _("The body is too large"))
METHOD_NOT_ALLOWED = ErrorCode(5, 405, _("Method not allowed"))
INTERNAL_ERROR = ErrorCode(10, 500, _("Unexpected error; nothing was changed"))
CREDENTIALS_MISSING = ErrorCode(11, 401, _("Give Operator and Token, or SiteCode"))
CREDENTIALS_INVALID = ErrorCode(12, 401, _("Unknown Token or SiteCode for this operator"))
CREDENTIAL_REVOKED = ErrorCode(13, 403, _("This Token or SiteCode has been revoked"))
THROTTLED = ErrorCode(14, 429, _("Too many requests"))
UNKNOWN_COMMUNICATION_TYPE = ErrorCode(20, 400, _("Unknown CommunicationType"))
NO_RECIPIENT = ErrorCode(21, 400, _("No recipient"))
NO_CONTENT = ErrorCode(22, 400, _("Nothing to send"))
NOT_FOUND = ErrorCode(30, 404, _("Not found"))
NO_CONSENT = ErrorCode(40, 422, _("Not sent: the client has not consented to this channel"))
NO_CLIENT = ErrorCode(41, 422, _("Not sent: not a known client, so no consent is on record"))
NO_ADDRESS = ErrorCode(42, 422, _("Not sent: no address for this channel"))
NO_ROUTE = ErrorCode(43, 422, _("Not sent: no provider serves this channel"))

ALL = [
    OK,
    INVALID_REQUEST,
    MALFORMED_BODY,
    UNSUPPORTED_MEDIA_TYPE,
    BODY_TOO_LARGE,
    METHOD_NOT_ALLOWED,
    INTERNAL_ERROR,
    CREDENTIALS_MISSING,
    CREDENTIALS_INVALID,
    CREDENTIAL_REVOKED,
    THROTTLED,
    UNKNOWN_COMMUNICATION_TYPE,
    NO_RECIPIENT,
    NO_CONTENT,
    NOT_FOUND,
    NO_CONSENT,
    NO_CLIENT,
    NO_ADDRESS,
    NO_ROUTE,
]

# The dispatcher's skip reasons (campaigns.eligibility.skip_reason) as answers.
BY_SKIP_REASON = {
    "no_consent": NO_CONSENT,
    "no_client": NO_CLIENT,
    "no_address": NO_ADDRESS,
    "no_route": NO_ROUTE,
}


def markdown_table() -> str:
    """The README's table, in English: the language partners get by default."""
    lines = ["| ErrorCode | HTTP | Message |", "|---|---|---|"]
    with translation.override("en"):
        lines += [f"| {e.code} | {e.http_status} | {e.message} |" for e in ALL]
    return "\n".join(lines)
