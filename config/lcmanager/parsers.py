"""DRF parsers for the three LCManager request formats: JSON, XML and HTML forms.

Each parser turns the body into a raw mapping (str/int/Decimal/bool/None values,
lists of dicts) and stops at syntax: whether the values fit the contract is
`validation.validate`'s job. Syntax problems are `ParseError`s; a problem that
belongs to one field (a field given twice, a form list with a gap) is a
`FormatError`, which is also a `ParseError`, naming the field.

Each parser lists every media type it reads in `media_types` (JSON is also
sent as text/json, XML as text/xml); `RequestFormatNegotiation` reads that list,
DRF's default negotiation only knows the single `media_type`.

Decisions, all in the partner's favour where it is safe:

- Bodies are limited to Django's DATA_UPLOAD_MAX_MEMORY_SIZE (RequestDataTooBig,
  as `request.body` would raise): DRF hands these parsers the raw request
  stream, which bypasses Django's own check.
- Text is UTF-8 unless the Content-Type's charset (or, for XML, a byte order
  mark or the XML declaration) says otherwise; a short list of encodings a
  Russian .NET partner might use is accepted. A UTF-8 byte order mark, which
  .NET writers like to add, is skipped. Bytes that do not decode are refused:
  we never guess.
- JSON is strict (no NaN or Infinity); numbers with a fraction become
  `Decimal`, so a bonus of 0.1 stays 0.1 and an 18-digit token written as a
  float is not rounded; a property given twice in one object is refused.
- XML is parsed with defusedxml with DTDs forbidden, which stops XXE, external
  DTDs, billion laughs and quadratic blowup alike; control characters, nesting
  deeper than MAX_XML_DEPTH and more than MAX_XML_ELEMENTS elements are
  refused. Elements match by local name in any order (the DataContract
  serializer insists on its namespaces and order; partners' hand-written XML
  rarely gets both right). `i:nil="true"` is None, items of a list field may
  have any element name, an empty element is "". A document declaring
  encoding="utf-16" that is plainly not UTF-16 is read as UTF-8: that is what
  .NET's XmlSerializer writes into a StringWriter before the text is sent.
- Forms: flat keys, ASP.NET MVC list keys `Files[0].Id` and jQuery's
  `Files[0][Id]`. List indexes must run 0, 1, 2... without gaps. Keys that
  look like list members of a contract field but cannot be read are refused
  rather than silently dropped; other unknown keys are kept and later ignored.
"""

import codecs
import json
import re
from decimal import Decimal
from typing import IO, Any
from urllib.parse import parse_qsl
from xml.etree.ElementTree import Element, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError as XMLSyntaxError
from defusedxml.ElementTree import XMLParser
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.utils.http import parse_header_parameters
from django.utils.translation import gettext
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from .errors import FormatError
from .schemas import MAX_LIST_ITEMS, XSI_NAMESPACE, Contract

MAX_XML_DEPTH = 10
# Two full 10,000-item lists of six elements each, plus the flat fields.
MAX_XML_ELEMENTS = 2 * MAX_LIST_ITEMS * 6 + 100

# Normalised codec names (codecs.lookup(...).name) a partner may declare.
_ENCODINGS = {
    "utf-8",
    "utf-8-sig",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "cp1251",
    "koi8-r",
    "cp1252",
    "iso8859-1",
    "ascii",
}
_XML_DECLARED_ENCODING = re.compile(
    rb"<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z][A-Za-z0-9._-]{0,40})[\"']"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_NIL = f"{{{XSI_NAMESPACE}}}nil"
_FORM_LIST_KEY = re.compile(
    r"(?P<name>[^\[\].]+)\[(?P<index>[0-9]{1,9})\](?:\.(?P<dotted>[^\[\].]+)|\[(?P<bracketed>[^\[\].]+)\])"
)


class DataContractJSONParser(BaseParser):
    media_type = "application/json"
    media_types = ("application/json", "text/json")

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        text = _decode(_read_body(stream), _charset(media_type) or "utf-8")
        try:
            return json.loads(
                text,
                parse_float=Decimal,
                parse_int=_json_int,
                parse_constant=_refuse_json_constant,
                object_pairs_hook=_json_object,
            )
        except json.JSONDecodeError as err:
            raise ParseError(
                gettext("The body is not valid JSON: %(error)s at line %(line)s column %(column)s.")
                % {"error": err.msg, "line": err.lineno, "column": err.colno}
            ) from err
        except RecursionError as err:
            raise ParseError(
                gettext("The body is not valid JSON for this API: it nests too deeply.")
            ) from err


class DataContractXMLParser(BaseParser):
    """Needs the view's `request_contract`: the root name and which fields are lists."""

    media_type = "application/xml"
    media_types = ("application/xml", "text/xml")

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        contract = _request_contract(parser_context)
        body = _read_body(stream)
        text = _decode(body, _xml_encoding(body, _charset(media_type)), xml=True)
        if match := _CONTROL.search(text):
            line, column = _line_and_column(text, match.start())
            raise ParseError(
                gettext(
                    "The XML contains the control character U+%(code)s at line "
                    "%(line)s, column %(column)s; XML cannot carry control characters."
                )
                % {"code": f"{ord(match.group()):04X}", "line": line, "column": column}
            )
        root = _parse_xml(text)
        name = _local_name(root.tag)
        if name.lower() != contract.root.lower():
            raise ParseError(
                gettext("The XML root element must be %(root)s, got %(name)s.")
                % {"root": contract.root, "name": name}
            )
        if _is_nil(root):
            return None
        return _object_from_element(root, contract, path="")


class DataContractFormParser(BaseParser):
    """Reads list keys against the view's `request_contract` when it has one."""

    media_type = "application/x-www-form-urlencoded"
    media_types = ("application/x-www-form-urlencoded",)

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        view = (parser_context or {}).get("view")
        contract: Contract | None = getattr(view, "request_contract", None)
        list_names = set()
        if contract is not None:
            list_names = {f.name.lower() for f in contract.fields if f.kind == "list"}
        encoding = _codec(_charset(media_type) or "utf-8")
        text = _decode(_read_body(stream), encoding)
        try:
            pairs = parse_qsl(text, keep_blank_values=True, encoding=encoding, errors="strict")
        except UnicodeDecodeError as err:
            raise ParseError(
                gettext("The form is not valid %(encoding)s once its %%-escapes are decoded.")
                % {"encoding": _label(encoding)}
            ) from err
        return _form_to_raw(pairs, list_names)


def _read_body(stream: IO[bytes] | None) -> bytes:
    if stream is None:
        return b""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:
        return stream.read()
    body = stream.read(limit + 1)
    if len(body) > limit:
        # What Django's request.body raises for the same setting.
        raise RequestDataTooBig(
            f"The body is larger than {limit} bytes, the most this service accepts."
        )
    return body


def _charset(media_type: str | None) -> str | None:
    if not media_type:
        return None
    _, params = parse_header_parameters(media_type)
    return params.get("charset") or None


def _codec(name: str) -> str:
    try:
        codec = codecs.lookup(name).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        codec = ""
    if codec not in _ENCODINGS:
        raise ParseError(
            gettext("The body's encoding %(encoding)s is not supported; send UTF-8.")
            % {"encoding": repr(name)}
        )
    # utf-8-sig also reads text without a byte order mark.
    return "utf-8-sig" if codec == "utf-8" else codec


def _label(codec: str) -> str:
    return "UTF-8" if codec.startswith("utf-8") else codec.upper()


def _decode(body: bytes, encoding: str, *, xml: bool = False) -> str:
    codec = _codec(encoding)
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as err:
        if xml:
            message = gettext(
                "The body is not valid %(encoding)s: the byte 0x%(byte)s at position "
                "%(position)s cannot be decoded; send UTF-8 or declare the encoding."
            )
        else:
            message = gettext(
                "The body is not valid %(encoding)s: the byte 0x%(byte)s at position "
                "%(position)s cannot be decoded."
            )
        raise ParseError(
            message
            % {"encoding": _label(codec), "byte": f"{body[err.start]:02X}", "position": err.start}
        ) from err
    # A UTF-16 byte order mark, or one given twice, survives decoding.
    return text.removeprefix("\ufeff")


def _xml_encoding(body: bytes, charset: str | None) -> str:
    """The encoding in force: Content-Type charset, byte order mark, XML declaration, UTF-8."""
    if charset:
        return charset
    if body.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    match = _XML_DECLARED_ENCODING.match(body)
    if match is None:
        return "utf-8"
    declared = match.group(1).decode("ascii")
    if declared.lower().startswith("utf-16"):
        # We read the declaration as ASCII bytes, so the body is not UTF-16.
        return "utf-8"
    return declared


def _json_int(text: str) -> int | Decimal:
    # Python refuses to convert more than 4,300 digits; a Decimal lets validation
    # report "out of range" instead.
    return int(text) if len(text) <= 40 else Decimal(text)


def _refuse_json_constant(name: str) -> None:
    raise ParseError(
        gettext("The body is not valid JSON: %(name)s is not a JSON number.") % {"name": name}
    )


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ParseError(
                gettext(
                    "The body is not valid JSON for this API: %(key)s appears twice in one object."
                )
                % {"key": repr(key)}
            )
        result[key] = value
    return result


class _LimitedTreeBuilder:
    """An ElementTree builder that stops at the depth and size limits while parsing."""

    def __init__(self) -> None:
        self._builder = TreeBuilder()
        self._depth = 0
        self._count = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self._depth += 1
        self._count += 1
        if self._depth > MAX_XML_DEPTH:
            raise ParseError(
                gettext("The XML nests deeper than %(max)s levels.") % {"max": MAX_XML_DEPTH}
            )
        if self._count > MAX_XML_ELEMENTS:
            raise ParseError(
                gettext("The XML has more than %(max)s elements.") % {"max": MAX_XML_ELEMENTS}
            )
        return self._builder.start(tag, attrs)

    def end(self, tag: str) -> Element:
        self._depth -= 1
        return self._builder.end(tag)

    def data(self, data: str) -> None:
        self._builder.data(data)

    def close(self) -> Element:
        return self._builder.close()


def _parse_xml(text: str) -> Element:
    parser = XMLParser(
        target=_LimitedTreeBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(text)
        return parser.close()
    except DefusedXmlException as err:
        raise ParseError(gettext("DTDs and entities are not allowed in XML requests.")) from err
    except XMLSyntaxError as err:
        raise ParseError(
            gettext("The body is not well-formed XML: %(error)s.") % {"error": err}
        ) from err


def _object_from_element(element: Element, contract: Contract | None, path: str) -> dict[str, Any]:
    lists = {}
    if contract is not None:
        lists = {f.name.lower(): f.item for f in contract.fields if f.kind == "list"}
    result: dict[str, Any] = {}
    seen: set[str] = set()
    for child in element:
        name = _local_name(child.tag)
        child_path = f"{path}.{name}" if path else name
        if name.lower() in seen:
            raise FormatError(
                gettext("%(field)s is given more than once.") % {"field": child_path},
                field=child_path,
            )
        seen.add(name.lower())
        if name.lower() in lists:
            result[name] = _list_from_element(child, lists[name.lower()], child_path)
        else:
            result[name] = _value_from_element(child, child_path)
    return result


def _list_from_element(element: Element, item: Contract | None, path: str) -> Any:
    if _is_nil(element):
        return None
    if len(element) == 0:
        # Text where items belong is handed on for validation to refuse.
        return (element.text or "").strip() or []
    items: list[Any] = []
    for index, child in enumerate(element):
        if _is_nil(child):
            items.append(None)
        elif len(child) == 0 and not (child.text or "").strip():
            items.append({})  # an item with every member absent
        elif len(child) == 0:
            items.append(child.text)
        else:
            items.append(_object_from_element(child, item, f"{path}[{index}]"))
    return items


def _value_from_element(element: Element, path: str) -> Any:
    if _is_nil(element):
        return None
    if len(element):
        # Children where a single value belongs: validation says "got an object".
        return _object_from_element(element, None, path)
    return element.text or ""


def _is_nil(element: Element) -> bool:
    return element.get(_NIL, "").strip() in ("true", "1")


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def _line_and_column(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


def _form_to_raw(pairs: list[tuple[str, str]], list_names: set[str]) -> dict[str, Any]:
    flat: dict[str, str] = {}
    spelled: dict[str, str] = {}  # lower-case list name -> the spelling first seen
    lists: dict[str, dict[int, dict[str, str]]] = {}
    # Lower-cased keys already given; sets, so that a hostile form of 100,000
    # keys costs 100,000 look-ups rather than 100,000 squared.
    seen_flat: set[str] = set()
    seen_members: set[tuple[str, int, str]] = set()
    for key, value in pairs:
        match = _FORM_LIST_KEY.fullmatch(key)
        if match is None:
            name = key.partition("[")[0].partition(".")[0]
            if name != key and name.lower() in list_names:
                raise FormatError(
                    gettext(
                        "The form field %(key)s cannot be read: write list members as "
                        "%(name)s[0].Id or %(name)s[0][Id]."
                    )
                    % {"key": repr(key), "name": name},
                    field=name,
                )
            if key.lower() in seen_flat:
                raise FormatError(
                    gettext("%(field)s is given more than once.") % {"field": key}, field=key
                )
            seen_flat.add(key.lower())
            flat[key] = value
            continue
        name, index = match["name"], int(match["index"])
        member = match["dotted"] or match["bracketed"]
        if index >= MAX_LIST_ITEMS:
            raise FormatError(
                gettext(
                    "%(field)s is past the end of a list: lists have at most "
                    "%(max)s items, numbered from 0."
                )
                % {"field": f"{name}[{index}]", "max": MAX_LIST_ITEMS},
                field=f"{name}[{index}]",
            )
        if (name.lower(), index, member.lower()) in seen_members:
            path = f"{name}[{index}].{member}"
            raise FormatError(
                gettext("%(field)s is given more than once.") % {"field": path}, field=path
            )
        seen_members.add((name.lower(), index, member.lower()))
        spelled.setdefault(name.lower(), name)
        lists.setdefault(name.lower(), {}).setdefault(index, {})[member] = value

    raw: dict[str, Any] = dict(flat)
    for lower_name, items in lists.items():
        name = spelled[lower_name]
        if lower_name in seen_flat:
            raise FormatError(
                gettext("%(field)s is given both as a single value and as a list.")
                % {"field": name},
                field=name,
            )
        indexes = sorted(items)
        missing = next((n for n, index in enumerate(indexes) if n != index), None)
        if missing is not None:
            raise FormatError(
                gettext(
                    "%(field)s has no item %(missing)s but has item %(last)s: list indexes must "
                    "start at 0 and have no gaps."
                )
                % {"field": name, "missing": missing, "last": indexes[-1]},
                field=name,
            )
        raw[name] = [items[index] for index in indexes]
    return raw


def _request_contract(parser_context: dict[str, Any] | None) -> Contract:
    view = (parser_context or {}).get("view")
    contract = getattr(view, "request_contract", None)
    if contract is None:
        raise ImproperlyConfigured(
            f"{type(view).__name__} needs a request_contract attribute to parse LCManager XML."
        )
    return contract
