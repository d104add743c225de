"""The LCManager partner API's wire formats: contracts, parsing, validation, rendering.

LCManager is an ASP.NET Web API service whose partners send JSON, XML (the
DataContract serializer's shape) or HTML-form bodies. This package turns any of
the three into the same typed dict and writes answers in the shape the .NET
help pages show. It holds no database access, views or authentication.

- `schemas`: the contracts (field names, kinds, XML namespaces) and OpenAPI schemas.
- `parsers`: DRF parsers, body bytes -> raw mapping (`ParseError` on bad syntax).
- `validation`: raw mapping -> typed dict (`FormatError` naming the field).
- `renderers`: typed dict -> JSON or XML bytes, and the DRF renderers.
- `negotiation`: which format the answer is written in.
"""
