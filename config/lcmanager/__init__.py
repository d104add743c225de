"""The LCManager partner API: an entry point of its own (../shared/docs/protocols.md §1).

LCManager is an ASP.NET Web API service whose partners send JSON, XML (the
DataContract serializer's shape) or HTML-form bodies. This package turns any of
the three into the same typed dict, authenticates the caller, hands the request
to the engine (`campaigns.partner`, `clients.services.change_consent`) and
writes answers in the shape the .NET help pages show. The engine never imports
it (tests/test_layers.py).

Wire formats, without database access:

- `schemas`: the contracts (field names, kinds, XML namespaces).
- `parsers`: DRF parsers, body bytes -> raw mapping (`ParseError` on bad syntax).
- `validation`: raw mapping -> typed dict (`FormatError`, from `errors`, naming the field).
- `renderers`: typed dict -> JSON or XML bytes, and the DRF renderers.
- `negotiation`: which format the answer is written in.
- `codes`: Cascade's table of `ErrorCode` values.
- `openapi`: the OpenAPI descriptions, with the seed samples as examples.

The HTTP side:

- `auth`: who is calling (token or site code), rate limits and failed-login throttling.
- `views`: the two LCManager methods and Cascade's status extension (`extension`).
"""
