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


@dataclass(frozen=True)
class ErrorCode:
    code: int
    http_status: int
    message: str  # the answer's Message; a detail may follow after ": "


OK = ErrorCode(0, 200, "OK")
INVALID_REQUEST = ErrorCode(1, 400, "The request is not valid")
MALFORMED_BODY = ErrorCode(2, 400, "The body could not be read")
UNSUPPORTED_MEDIA_TYPE = ErrorCode(3, 415, "Unsupported Content-Type")
BODY_TOO_LARGE = ErrorCode(4, 413, "The body is too large")
METHOD_NOT_ALLOWED = ErrorCode(5, 405, "Method not allowed")
INTERNAL_ERROR = ErrorCode(10, 500, "Unexpected error; nothing was changed")
CREDENTIALS_MISSING = ErrorCode(11, 401, "Give Operator and Token, or SiteCode")
CREDENTIALS_INVALID = ErrorCode(12, 401, "Unknown Token or SiteCode for this operator")
CREDENTIAL_REVOKED = ErrorCode(13, 403, "This Token or SiteCode has been revoked")
THROTTLED = ErrorCode(14, 429, "Too many requests")
UNKNOWN_COMMUNICATION_TYPE = ErrorCode(20, 400, "Unknown CommunicationType")
NO_RECIPIENT = ErrorCode(21, 400, "No recipient")
NO_CONTENT = ErrorCode(22, 400, "Nothing to send")
NOT_FOUND = ErrorCode(30, 404, "Not found")
NO_CONSENT = ErrorCode(40, 422, "Not sent: the client has not consented to this channel")
NO_CLIENT = ErrorCode(41, 422, "Not sent: not a known client, so no consent is on record")
NO_ADDRESS = ErrorCode(42, 422, "Not sent: no address for this channel")
NO_ROUTE = ErrorCode(43, 422, "Not sent: no provider serves this channel")

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
    lines = ["| ErrorCode | HTTP | Message |", "|---|---|---|"]
    lines += [f"| {e.code} | {e.http_status} | {e.message} |" for e in ALL]
    return "\n".join(lines)
