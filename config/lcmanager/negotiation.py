"""Pick the parser by Content-Type and the answer's format the way ASP.NET Web API does.

The answer follows `Accept` when it names JSON or XML (application/ or text/;
the highest q-value wins, a tie goes to the type listed first; `*/*` and types
we cannot write express no preference). Otherwise it follows the request's own
format: a JSON body gets JSON, an XML body XML, in the very media type the
partner sent; a form or anything else gets application/json.

It never raises NotAcceptable: partners written against .NET have never seen
a 406, and an answer in a format they did not ask for is more use to them
than none. `?format=` is not read, so a partner's own query parameter of that
name cannot change the answer.

The renderer chosen is told which of its media types to announce (its
`media_type` is set on the per-request instance), so a `text/xml` request is
answered `text/xml; charset=utf-8`, as ASP.NET does.
"""

from typing import Any

from django.utils.http import parse_header_parameters
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

JSON_TYPES = ("application/json", "text/json")
XML_TYPES = ("application/xml", "text/xml")

MAX_ACCEPT_LENGTH = 8192  # as DRF: never parse an unbounded header
MAX_ACCEPT_TOKENS = 64


class RequestFormatNegotiation(BaseContentNegotiation):
    def select_parser(self, request: Any, parsers: list[BaseParser]) -> BaseParser | None:
        content_type = _base_type(request.content_type)
        for parser in parsers:
            if content_type in _media_types(parser):
                return parser
        return None

    def select_renderer(
        self, request: Any, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        wanted = _preferred_in_accept(request.headers.get("Accept", ""))
        if wanted is None:
            content_type = _base_type(request.content_type)
            wanted = content_type if content_type in JSON_TYPES + XML_TYPES else "application/json"
        for media_type in (wanted, "application/json"):
            for renderer in renderers:
                if media_type in _media_types(renderer):
                    renderer.media_type = media_type
                    return renderer, media_type
        return renderers[0], renderers[0].media_type


def _preferred_in_accept(header: str) -> str | None:
    """The JSON or XML media type with the highest q-value in Accept, if any."""
    best: str | None = None
    best_quality = 0.0
    for token in header[:MAX_ACCEPT_LENGTH].split(",")[:MAX_ACCEPT_TOKENS]:
        media_type, params = parse_header_parameters(token.strip())
        if media_type not in JSON_TYPES + XML_TYPES:
            continue
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            continue
        # Strictly greater: among equals, the first listed wins.
        if 0 < quality <= 1 and quality > best_quality:
            best, best_quality = media_type, quality
    return best


def _base_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    return parse_header_parameters(content_type)[0]


def _media_types(parser_or_renderer: Any) -> tuple[str, ...]:
    return getattr(parser_or_renderer, "media_types", (parser_or_renderer.media_type,))
