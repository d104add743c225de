"""OpenAPI 3 descriptions of the partner endpoints, with the seed samples as examples.

The views take no DRF serializers (the contracts in `schemas.py` are the one
description of each message), so drf-spectacular gets raw schemas made from
those contracts and the seed samples from the fixtures the tests also use.
"""

from __future__ import annotations

from pathlib import Path

from django.utils import translation
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema

from config.lcmanager import codes
from config.lcmanager.schemas import openapi_schema

SAMPLES = Path(__file__).resolve().parent / "samples"
REQUEST_TYPES = ("application/json", "text/json", "application/xml", "text/xml")
FORM = "application/x-www-form-urlencoded"

# The schema documents the default (English) texts, whatever language the process starts in.
with translation.override("en"):
    ERROR_TABLE = "\n".join(f"- `{e.code}` (HTTP {e.http_status}): {e.message}" for e in codes.ALL)


def _sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def _examples(stem: str, *, response: bool = False) -> list[OpenApiExample]:
    import json

    json_name, xml_name = f"{stem}.json", f"{stem}.xml"
    return [
        OpenApiExample(
            f"{stem} (JSON)",
            value=json.loads(_sample(json_name)),
            media_type="application/json",
            request_only=not response,
            response_only=response,
        ),
        OpenApiExample(
            f"{stem} (XML)",
            value=_sample(xml_name),
            media_type="application/xml",
            request_only=not response,
            response_only=response,
        ),
    ]


def _query_parameters(contract) -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            name,
            type={k: v for k, v in schema.items() if k not in ("xml", "description")},
            location=OpenApiParameter.QUERY,
            description=schema.get("description", ""),
        )
        for name, schema in openapi_schema(contract)["properties"].items()
    ]


def describe(
    *,
    request_contract,
    response_contract,
    summary: str,
    description: str,
    stem: str = "",
    in_query: bool = False,
):
    """`in_query`: the request's fields are query parameters (a GET) rather than a body."""
    request_schema = openapi_schema(request_contract)
    response_schema = openapi_schema(response_contract)
    return extend_schema(
        summary=summary,
        description=f"{description}\n\nErrorCode values:\n{ERROR_TABLE}",
        request=None
        if in_query
        else {**{t: request_schema for t in REQUEST_TYPES}, FORM: request_schema},
        parameters=_query_parameters(request_contract) if in_query else None,
        # The answer comes in the request's own media type (see negotiation.py), text/ ones too.
        responses={
            (status, *REQUEST_TYPES): OpenApiResponse(response=response_schema, description=text)
            for status, text in (
                (200, "ErrorCode 0"),
                (400, "Invalid or unreadable request"),
                (401, "Missing or unknown credentials"),
                (403, "Revoked credential"),
                (404, "An id not found in this operator"),
                (413, "Body too large"),
                (415, "Unsupported Content-Type"),
                (422, "Refused: no consent, address or route (recorded)"),
                (429, "Throttled"),
            )
        },
        examples=(
            _examples(f"{stem}_request") + _examples(f"{stem}_response", response=True)
            if stem
            else []
        ),
        auth=[],
    )
