"""Write answers the way LCManager's ASP.NET service writes them.

JSON is what Json.NET writes by default: compact, members in the contract's
(declaration) order, non-ASCII as is, UTF-8, decimals always with a fraction
(`1.0`), null for None.

XML is what the DataContract serializer writes, checked against the help
pages' samples: no XML declaration, the root with `xmlns:i` then the class's
default namespace, members in DataContract order (base class first, then
alphabetical), inherited members re-declaring the base namespace as their
default, None as `<X i:nil="true" />`, lists as one element per item named
after the item class. Text is escaped, CR is written as `&#xD;` so that it
survives the reader's newline normalisation, and characters XML 1.0 cannot
carry become U+FFFD: an answer must always be readable, even when a message
quotes a partner's bad input.

The data is a dict keyed by wire names. A missing key is written as null; a
key the contract does not have is a programming error (usually a DRF error
answer that the view's exception handler did not turn into ErrorCode and
Message) and raises ValueError rather than being dropped.
"""

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.renderers import BaseRenderer

from .schemas import XSI_NAMESPACE, Contract, Field

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def render_json(contract: Contract, data: Mapping[str, Any]) -> bytes:
    return _json_object(contract, data).encode("utf-8")


def render_xml(contract: Contract, data: Mapping[str, Any]) -> bytes:
    parts = [f'<{contract.root} xmlns:i="{XSI_NAMESPACE}" xmlns="{contract.namespace}">']
    _xml_members(parts, contract, data, default_namespace=contract.namespace)
    parts.append(f"</{contract.root}>")
    return "".join(parts).encode("utf-8")


class DataContractJSONRenderer(BaseRenderer):
    """Renders the view's `response_contract`; answers as application/json or text/json."""

    media_type = "application/json"
    media_types = ("application/json", "text/json")
    format = "json"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        return render_json(_response_contract(renderer_context), data)


class DataContractXMLRenderer(BaseRenderer):
    """Renders the view's `response_contract`; answers as application/xml or text/xml."""

    media_type = "application/xml"
    media_types = ("application/xml", "text/xml")
    format = "xml"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        return render_xml(_response_contract(renderer_context), data)


def _response_contract(renderer_context: Mapping[str, Any] | None) -> Contract:
    view = (renderer_context or {}).get("view")
    contract = getattr(view, "response_contract", None)
    if contract is None:
        raise ImproperlyConfigured(
            f"{type(view).__name__} needs a response_contract attribute to render LCManager answers."
        )
    return contract


def _check_members(contract: Contract, data: Any) -> None:
    if not isinstance(data, Mapping):
        raise TypeError(f"{contract.root} is rendered from a dict, got {type(data).__name__}.")
    unknown = set(data) - {field.name for field in contract.fields}
    if unknown:
        raise ValueError(
            f"{contract.root} has no member {', '.join(sorted(map(str, unknown)))}; "
            f"it has {', '.join(field.name for field in contract.fields)}."
        )


def _json_object(contract: Contract, data: Mapping[str, Any]) -> str:
    _check_members(contract, data)
    members = []
    for field in contract.fields:
        value = data.get(field.name)
        members.append(f"{json.dumps(field.name)}:{_json_value(contract, field, value)}")
    return "{" + ",".join(members) + "}"


def _json_value(contract: Contract, field: Field, value: Any) -> str:
    if value is None:
        return "null"
    if field.kind == "list":
        assert field.item is not None
        _check_list(contract, field, value)
        return "[" + ",".join(_json_object(field.item, item) for item in value) + "]"
    if field.kind == "string":
        text = _SURROGATE.sub("\ufffd", _string(contract, field, value))
        return json.dumps(text, ensure_ascii=False)
    text = _scalar_text(contract, field, value)
    if field.kind == "decimal" and not any(c in text for c in ".eE"):
        text += ".0"  # Json.NET always writes a decimal with a fraction
    return text


def _xml_members(
    parts: list[str], contract: Contract, data: Mapping[str, Any], default_namespace: str
) -> None:
    _check_members(contract, data)
    for field in contract.xml_fields:
        namespace = contract.namespace_of(field)
        start = field.name
        if namespace != default_namespace:
            start += f' xmlns="{namespace}"'
        value = data.get(field.name)
        if value is None:
            parts.append(f'<{start} i:nil="true" />')
        elif field.kind == "list":
            assert field.item is not None
            item_start = field.item.root
            if field.item.namespace != namespace:
                item_start += f' xmlns="{field.item.namespace}"'
            _check_list(contract, field, value)
            parts.append(f"<{start}>")
            for item in value:
                parts.append(f"<{item_start}>")
                _xml_members(parts, field.item, item, field.item.namespace)
                parts.append(f"</{field.item.root}>")
            parts.append(f"</{field.name}>")
        elif field.kind == "string":
            parts.append(f"<{start}>{_xml_text(_string(contract, field, value))}</{field.name}>")
        else:
            parts.append(f"<{start}>{_scalar_text(contract, field, value)}</{field.name}>")


def _xml_text(text: str) -> str:
    text = _NOT_XML.sub("\ufffd", text)
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")
    )


def _check_list(contract: Contract, field: Field, value: Any) -> None:
    if not isinstance(value, list | tuple):
        raise TypeError(f"{contract.root}.{field.name} must be a list, got {value!r}.")


def _string(contract: Contract, field: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{contract.root}.{field.name} must be a str, got {value!r}.")
    return value


def _scalar_text(contract: Contract, field: Field, value: Any) -> str:
    """Integers, bytes, booleans and decimals as both JSON and XML write them."""
    where = f"{contract.root}.{field.name}"
    if field.kind == "boolean":
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be a bool, got {value!r}.")
        return "true" if value else "false"
    if field.kind in ("integer", "byte"):
        low, high = (0, 255) if field.kind == "byte" else (INT64_MIN, INT64_MAX)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an int, got {value!r}.")
        if not low <= value <= high:
            raise ValueError(f"{where} must be from {low} to {high}, got {value}.")
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"{where} must be a Decimal, got {value!r}.")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r}.")
        value = Decimal(repr(value))
    number = Decimal(value)
    # .NET's range and scale; also keeps format(number, "f") short.
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -28 or number.adjusted() > 28:
        raise ValueError(f"{where} must be a finite .NET decimal, got {value!r}.")
    return format(number, "f")
