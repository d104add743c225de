"""Properties, checked on generated inputs: the wire formats, the phone normalizer, SMS parts, statuses.

- DataContract XML (and JSON, and forms): any typed request written out and read
  back is the same typed request, whatever the member order, letter case,
  prefixes and nil spelling; arbitrary bytes only ever raise ParseError (of
  which FormatError is one) or RequestDataTooBig.
- `normalize_phone`: every written form of a Russian number gives the same
  digits, and normalizing those again changes nothing; any input gives valid
  E.164 digits or a ValidationError. Bare stored digits can be ambiguous (a
  foreign number that is also a Russian national form), so the admin shows
  them with their '+', and every region's example number reads back the same.
- `sms_segments` and `highlight` against independent oracles.
- `can_move`: applied to any sequence of statuses, the end state is the one a
  plain model of the rules predicts (first final status wins, delivered may
  still become read, otherwise the highest rank), and replaying is harmless;
  the same through `apply_status_events`, in batches, with the database.
"""

# ruff: noqa: RUF001 - Cyrillic letters are what some of these inputs are about

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import urlencode
from xml.sax.saxutils import quoteattr

import phonenumbers
import pytest
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.utils import timezone
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from campaigns.models import Delivery, DeliveryEvent, Message
from campaigns.preview import (
    GSM7,
    GSM7_BASIC,
    GSM7_EXTENSION,
    PER_PART_WHEN_SPLIT,
    SINGLE_PART,
    UCS2,
    highlight,
    sms_segments,
)
from campaigns.statuses import apply_status_events
from clients.admin import ClientAdminForm
from clients.models import Client
from clients.phones import normalize_phone
from config.lcmanager.extension import MESSAGE_STATUS_REQUEST
from config.lcmanager.parsers import (
    DataContractFormParser,
    DataContractJSONParser,
    DataContractXMLParser,
)
from config.lcmanager.renderers import render_json, render_xml
from config.lcmanager.schemas import (
    CLIENT_UPDATE_COMMUNICATION_REQUEST,
    MAX_LIST_ITEMS,
    SEND_MESSAGE_PROCESS_REQUEST,
    XSI_NAMESPACE,
    Contract,
    Field,
)
from config.lcmanager.validation import DECIMAL_MAX, INT64_MAX, INT64_MIN, validate
from providers.base import StatusEvent
from providers.status import (
    FAILURE_STATUSES,
    FINAL_STATUSES,
    STATUS_RANK,
    DeliveryStatus,
    can_move,
    is_final,
)
from tests.phones import every_regions_example_numbers

REQUESTS = [
    SEND_MESSAGE_PROCESS_REQUEST,
    CLIENT_UPDATE_COMMUNICATION_REQUEST,
    MESSAGE_STATUS_REQUEST,
]
PROPERTIES = settings(max_examples=150, deadline=None, database=None)
QUICK = settings(max_examples=60, deadline=None, database=None)


def parse(parser_class, body: bytes, contract: Contract, media_type: str):
    context = {"view": SimpleNamespace(request_contract=contract)}
    return parser_class().parse(io.BytesIO(body), media_type, context)


def read(parser_class, body: bytes, contract: Contract, media_type: str) -> dict:
    """Parse and validate, as the views do."""
    return validate(contract, parse(parser_class, body, contract, media_type))


# --- Typed requests: what `validate` hands the views -----------------------------------

# Text a field may hold and XML 1.0 can carry: no C0 controls but tab, LF and CR
# (validation refuses them), no surrogates, no U+FFFE/U+FFFF.
FIELD_TEXT_CHARACTERS = st.characters(
    exclude_categories=("Cs",),
    exclude_characters=[chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"]
    + ["\ufffe", "\uffff"],
)


def dotnet_decimals() -> st.SearchStrategy[Decimal]:
    """Every .NET decimal: a 96-bit integer scaled by 10^-0..10^-28, built exactly."""
    return st.builds(
        lambda digits, scale: Decimal(f"{digits}E-{scale}"),
        st.one_of(st.integers(-(2**96 - 1), 2**96 - 1), st.sampled_from([2**96 - 1, -(2**96 - 1)])),
        st.integers(0, 28),
    )


def values_of(field: Field) -> st.SearchStrategy:
    if field.kind == "list":
        assert field.item is not None
        # Validation gives [] for an absent or null list, never None.
        return st.lists(typed_requests(field.item), max_size=3)
    kinds = {
        "string": st.text(FIELD_TEXT_CHARACTERS, max_size=min(field.max_length, 40)),
        "integer": st.integers(INT64_MIN, INT64_MAX),
        "byte": st.integers(0, 255),
        "decimal": dotnet_decimals(),
        "boolean": st.booleans(),
    }
    return st.one_of(st.none(), kinds[field.kind])


def typed_requests(contract: Contract) -> st.SearchStrategy[dict]:
    # In the contract's order, as `validate` writes them.
    return st.fixed_dictionaries({f.name: values_of(f) for f in contract.fields}).map(
        lambda values: {field.name: values[field.name] for field in contract.fields}
    )


def contracts_and_requests() -> st.SearchStrategy[tuple[Contract, dict]]:
    return st.sampled_from(REQUESTS).flatmap(
        lambda contract: st.tuples(st.just(contract), typed_requests(contract))
    )


def assert_same(actual, expected, path="body"):
    """Equal and of the same types all the way down (1 == Decimal(1) == True otherwise)."""
    assert type(actual) is type(expected), f"{path}: {actual!r} is not {expected!r}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), path
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


# --- DataContract XML: round trips ------------------------------------------------------


@PROPERTIES
@given(contracts_and_requests())
def test_a_typed_request_written_as_datacontract_xml_reads_back_the_same(contract_and_request):
    contract, request = contract_and_request
    body = render_xml(contract, request)
    assert_same(read(DataContractXMLParser, body, contract, "application/xml"), request)


@PROPERTIES
@given(contracts_and_requests())
def test_a_typed_request_written_as_json_reads_back_the_same(contract_and_request):
    contract, request = contract_and_request
    body = render_json(contract, request)
    assert_same(read(DataContractJSONParser, body, contract, "application/json"), request)


def as_form(request: dict, contract: Contract) -> bytes:
    """A browser's form: no key for a null text, an empty value for any other null."""
    pairs = []

    def add(key: str, field: Field, value) -> None:
        if value is None:
            if field.kind != "string":
                pairs.append((key, ""))
        elif isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        else:
            pairs.append((key, str(value)))

    for field in contract.fields:
        value = request[field.name]
        if field.kind != "list":
            add(field.name, field, value)
            continue
        for index, item in enumerate(value):
            for member in field.item.fields:
                add(f"{field.name}[{index}].{member.name}", member, item[member.name])
    return urlencode(pairs).encode()


@PROPERTIES
@given(contracts_and_requests())
def test_a_typed_request_sent_as_a_form_reads_back_the_same(contract_and_request):
    contract, request = contract_and_request
    # A list item whose members are all null text has nothing to send in a form.
    for field in contract.fields:
        if field.kind == "list":
            for item in request[field.name]:
                assume(
                    any(item[m.name] is not None or m.kind != "string" for m in field.item.fields)
                )
    body = as_form(request, contract)
    assert_same(
        read(DataContractFormParser, body, contract, "application/x-www-form-urlencoded"),
        request,
    )


@pytest.mark.parametrize(
    "bonus", [DECIMAL_MAX, DECIMAL_MAX.copy_negate(), Decimal("7.9228162514264337593543950335")]
)
def test_the_largest_dotnet_decimals_are_accepted_and_survive_xml(bonus):
    # decimal.MaxValue has 29 digits, one more than Python's default context keeps.
    request = {"CardPhoneClientList": [{"Bonus": str(bonus)}]}
    typed = validate(SEND_MESSAGE_PROCESS_REQUEST, request)
    assert typed["CardPhoneClientList"][0]["Bonus"] == bonus
    body = render_xml(SEND_MESSAGE_PROCESS_REQUEST, typed)
    assert read(DataContractXMLParser, body, SEND_MESSAGE_PROCESS_REQUEST, "text/xml") == typed


# --- DataContract XML as partners write it by hand ----------------------------------------


def xml_text(text: str) -> str:
    # CR as a reference, or the reader turns it into LF.
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")
    )


@st.composite
def handwritten_xml(draw, contract: Contract, request: dict, *, root: bool = True) -> str:
    """The request in any member order, letter case, namespace spelling and nil spelling."""

    def name(text: str) -> str:
        return draw(st.sampled_from([text, text.lower(), text.upper()]))

    def element(tag: str, inner: str | None) -> str:
        prefix = draw(st.sampled_from(["", "a:"]))
        xmlns = ' xmlns:a="urn:anything"' if prefix else ""
        if inner is None:
            nil = draw(st.sampled_from(['i:nil="true"', 'i:nil="1"', 'i:nil=" true "']))
            return f"<{prefix}{tag}{xmlns} {nil}/>"
        return f"<{prefix}{tag}{xmlns}>{inner}</{prefix}{tag}>"

    members = []
    for field in draw(st.permutations(contract.fields)):
        value = request[field.name]
        if value is None:
            # An absent member reads as null too.
            if draw(st.booleans()):
                members.append(element(name(field.name), None))
        elif field.kind == "list":
            if not value and draw(st.booleans()):
                continue  # an absent list reads as []
            items = "".join(_item(draw, field.item, item) for item in value)
            members.append(element(name(field.name), items))
        elif isinstance(value, bool):
            members.append(element(name(field.name), draw(st.sampled_from(BOOLEANS[value]))))
        elif isinstance(value, str):
            members.append(element(name(field.name), xml_text(value)))
        else:
            spaces = draw(st.sampled_from(["", " ", "\n  "]))
            members.append(element(name(field.name), f"{spaces}{value}{spaces}"))
    body = "".join(members)
    if not root:
        return body
    declaration = draw(st.sampled_from(["", '<?xml version="1.0" encoding="utf-8"?>\n']))
    tag = name(contract.root)
    return (
        f'{declaration}<{tag} xmlns:i="{XSI_NAMESPACE}" xmlns={quoteattr(contract.namespace)}>'
        f"{body}</{tag}>"
    )


BOOLEANS = {True: ["true", "True", "1", " true "], False: ["false", "FALSE", "0"]}


def _item(draw, contract: Contract, item: dict) -> str:
    tag = draw(st.sampled_from([contract.root, "Item", "x"]))
    return f"<{tag}>{draw(handwritten_xml(contract, item, root=False))}</{tag}>"


@PROPERTIES
@given(st.data())
def test_member_order_case_prefixes_and_nil_spelling_do_not_change_what_is_read(data):
    contract, request = data.draw(contracts_and_requests())
    # Text with leading or trailing spaces is read as written; numbers may have spaces around.
    body = data.draw(handwritten_xml(contract, request)).encode()
    assert_same(read(DataContractXMLParser, body, contract, "application/xml"), request)


# --- Arbitrary bytes: only the errors the views turn into 400 and 413 -----------------------

PARSERS = {
    "xml": (DataContractXMLParser, "application/xml"),
    "json": (DataContractJSONParser, "application/json"),
    "form": (DataContractFormParser, "application/x-www-form-urlencoded"),
}
CHARSETS = st.one_of(
    st.just(""),
    st.sampled_from(["utf-8", "UTF-16", "cp1251", "koi8-r", "latin-1", "ascii", "rot13", "x"]),
    st.text(max_size=12),
).map(lambda charset: f"; charset={charset}" if charset else "")

XML_WORDS = [
    "SendMessageProcessRequest",
    "ClientUpdateCommunicationRequest",
    "MessageStatusRequest",
]
XML_WORDS += [field.name for contract in REQUESTS for field in contract.fields] + ["i:nil", "x"]
XML_PIECES = st.sampled_from(
    [
        "<",
        ">",
        "</",
        "/>",
        "=",
        '"',
        '"true"',
        "&amp;",
        "&#0;",
        "&#x1F;",
        "&lt;",
        "&x;",
        "<!DOCTYPE r [",
        '<!ENTITY x "y">',
        "]>",
        "<![CDATA[",
        "]]>",
        "<?xml version='1.0' encoding='utf-16'?>",
        f' xmlns:i="{XSI_NAMESPACE}"',
        " ",
        "\n",
        "\x00",
        "\ufeff",
        "\ud800",
        "-1",
        "1e400",
        "9" * 30,
        "NaN",
        "true",
        *XML_WORDS,
    ]
)


def xmlish() -> st.SearchStrategy[bytes]:
    """Fragments of XML about our contracts, stuck together any old way."""
    return st.lists(st.one_of(XML_PIECES, st.text(max_size=5)), max_size=40).map(
        lambda pieces: "".join(pieces).encode("utf-8", "surrogatepass")
    )


def json_values() -> st.SearchStrategy:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
        st.sampled_from(["1", " 2 ", "1e5", "true", "0x10", "NaN", "", "\x00"]),
    )
    keys = st.one_of(st.sampled_from(XML_WORDS), st.text(max_size=5))
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=20,
    )


FORM_KEYS = st.one_of(
    st.sampled_from(XML_WORDS),
    st.builds(
        lambda name, index, member, style: (
            f"{name}[{index}].{member}" if style else f"{name}[{index}][{member}]"
        ),
        st.sampled_from(["Files", "CardPhoneClientList", "files", "X"]),
        st.one_of(st.integers(0, 3), st.integers(0, 10**9), st.text("0123456789-", max_size=11)),
        st.sampled_from(["Id", "Phone", "Client", "Card", "Bonus", "Url", "x", ""]),
        st.booleans(),
    ),
    st.text(max_size=8),
)


def forms() -> st.SearchStrategy[bytes]:
    pairs = st.lists(st.tuples(FORM_KEYS, st.text(max_size=8)), max_size=12)
    return st.one_of(
        pairs.map(lambda p: urlencode(p).encode()),
        st.binary(max_size=200),
        st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


def only_the_errors_the_views_answer(parser_class, body: bytes, contract, media_type: str):
    with contextlib.suppress(ParseError, RequestDataTooBig):  # FormatError is a ParseError
        read(parser_class, body, contract, media_type)


@PROPERTIES
@given(
    st.sampled_from(sorted(PARSERS)),
    st.sampled_from(REQUESTS),
    st.one_of(
        st.binary(max_size=300), xmlish(), json_values().map(lambda v: json.dumps(v).encode())
    ),
    CHARSETS,
)
def test_any_bytes_raise_nothing_but_parse_errors(format_name, contract, body, charset):
    parser_class, media_type = PARSERS[format_name]
    only_the_errors_the_views_answer(parser_class, body, contract, media_type + charset)


@PROPERTIES
@given(st.sampled_from(REQUESTS), xmlish())
def test_xml_made_of_our_own_words_raises_nothing_but_parse_errors(contract, body):
    only_the_errors_the_views_answer(DataContractXMLParser, body, contract, "application/xml")


@PROPERTIES
@given(st.sampled_from(REQUESTS), st.data())
def test_well_formed_xml_of_any_shape_raises_nothing_but_parse_errors(contract, data):
    tag = contract.root

    def tree(depth: int) -> str:
        name = data.draw(st.sampled_from([*XML_WORDS[:-2], "Item", "a:B"]))
        attributes = data.draw(st.sampled_from(["", ' i:nil="true"', ' i:nil="0"', " x='1'"]))
        if depth > 3 or data.draw(st.booleans()):
            text = xml_text(data.draw(st.text(FIELD_TEXT_CHARACTERS, max_size=8)))
            return f"<{name}{attributes}>{text}</{name}>"
        children = "".join(tree(depth + 1) for _ in range(data.draw(st.integers(0, 3))))
        return f"<{name}{attributes}>{children}</{name}>"

    children = "".join(tree(0) for _ in range(data.draw(st.integers(0, 4))))
    body = f'<{tag} xmlns:i="{XSI_NAMESPACE}" xmlns:a="u">{children}</{tag}>'.encode()
    only_the_errors_the_views_answer(DataContractXMLParser, body, contract, "application/xml")


@PROPERTIES
@given(st.sampled_from(REQUESTS), json_values())
def test_json_of_any_shape_raises_nothing_but_parse_errors(contract, value):
    body = json.dumps(value).encode()
    only_the_errors_the_views_answer(DataContractJSONParser, body, contract, "application/json")


@PROPERTIES
@given(st.sampled_from(REQUESTS), forms(), CHARSETS)
def test_forms_of_any_shape_raise_nothing_but_parse_errors(contract, body, charset):
    media_type = "application/x-www-form-urlencoded" + charset
    only_the_errors_the_views_answer(DataContractFormParser, body, contract, media_type)


@pytest.mark.parametrize("format_name", sorted(PARSERS))
@pytest.mark.parametrize("charset", ["\x00", "utf-8\x00", "a" * 300])
def test_a_charset_no_codec_can_be_named_is_a_parse_error(format_name, charset):
    parser_class, media_type = PARSERS[format_name]
    with pytest.raises(ParseError):
        parse(parser_class, b"{}", SEND_MESSAGE_PROCESS_REQUEST, f"{media_type}; charset={charset}")


def test_lists_stop_at_their_limit_in_every_format():
    row = {"Client": 1}
    for count, readable in ((MAX_LIST_ITEMS, True), (MAX_LIST_ITEMS + 1, False)):
        body = json.dumps({"CardPhoneClientList": [row] * count}).encode()
        try:
            read(DataContractJSONParser, body, SEND_MESSAGE_PROCESS_REQUEST, "application/json")
        except ParseError:
            assert not readable
        else:
            assert readable


# --- The phone normalizer ------------------------------------------------------------------


def valid_russian_numbers() -> st.SearchStrategy[str]:
    """Ten national digits of a valid Russian number (mobile 9xx, or a landline)."""
    return (
        st.tuples(st.sampled_from("34589"), st.text("0123456789", min_size=9, max_size=9))
        .map("".join)
        .filter(lambda n: phonenumbers.is_valid_number(phonenumbers.parse(f"+7{n}")))
    )


def written_forms(national: str) -> list:
    code, a, b, c = national[:3], national[3:6], national[6:8], national[8:]
    return [
        f"+7 ({code}) {a}-{b}-{c}",
        f"8 {code} {a} {b} {c}",
        f"8({code}){a}{b}{c}",
        f"+7-{code}-{a}-{b}-{c}",
        f"  +7{national}  ",
        f"7{national}",
        f"8{national}",
        national,
        int(f"7{national}"),
        int(f"8{national}"),
        f"+7\u00a0{code}\u00a0{a}{b}{c}",  # no-break spaces, as word processors paste them
    ]


@PROPERTIES
@given(valid_russian_numbers())
def test_every_written_form_of_a_russian_number_gives_the_same_digits(national):
    assert {normalize_phone(form) for form in written_forms(national)} == {f"7{national}"}


@PROPERTIES
@given(valid_russian_numbers(), st.integers(0, 10))
def test_normalizing_a_russian_number_again_changes_nothing(national, form):
    once = normalize_phone(written_forms(national)[form])
    assert normalize_phone(once) == once
    assert normalize_phone(int(once)) == once


@PROPERTIES
@given(
    st.one_of(
        st.text(max_size=30),
        st.text("+()- 0123456789", max_size=20),
        st.integers(),
        st.integers(10**6, 10**15),
        st.text("٠١٢٣٤٥٦٧٨٩0123456789²", max_size=15),  # other digits Python calls digits
    )
)
def test_anything_gives_e164_digits_or_a_validation_error(raw):
    try:
        digits = normalize_phone(raw)
    except ValidationError:
        return
    # E.164 has at most 15 digits; Niue and Saint Helena numbers have 7 in all.
    assert digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15, digits
    assert phonenumbers.is_valid_number(phonenumbers.parse(f"+{digits}"))
    if str(digits).startswith("7"):
        assert normalize_phone(digits) == digits


def test_the_admin_gives_every_stored_number_back_in_a_form_that_reads_the_same():
    # Bare stored digits are ambiguous (29 example numbers are also a Russian national
    # form, e.g. Maldives 9607712345 is the mobile 960 771-23-45), so the admin shows
    # them with their '+'; normalizing what it shows must give the stored digits back.
    changed = {}
    for international in every_regions_example_numbers():
        stored = normalize_phone(international)
        shown = ClientAdminForm(instance=Client(phone=stored)).initial["phone"]
        if normalize_phone(shown) != stored:
            changed[international] = normalize_phone(shown)
    assert not changed, f"{len(changed)} numbers change: {sorted(changed.items())[:5]}"


# --- SMS parts ---------------------------------------------------------------------------

GSM = set(GSM7_BASIC) | set(GSM7_EXTENSION)
SMS_TEXT = st.text(
    st.one_of(
        st.sampled_from(GSM7_BASIC),
        st.sampled_from(GSM7_EXTENSION),
        st.sampled_from("абвгдеёжзЖЩЯçÇ€’“”😀🎉👍❤"),
        st.characters(),
    ),
    max_size=400,
)


@PROPERTIES
@given(SMS_TEXT)
@example("x" * 160)
@example("x" * 161)
@example("x" * 152 + "€")
@example("ж" * 70)
@example("ж" * 66 + "😀")
@example("")
def test_sms_parts_agree_with_an_independent_count(text):
    info = sms_segments(text)
    gsm = all(char in GSM for char in text)
    assert info.encoding == (GSM7 if gsm else UCS2)
    assert info.ucs2_characters == tuple(dict.fromkeys(c for c in text if c not in GSM))
    if gsm:
        length = sum(2 if char in GSM7_EXTENSION else 1 for char in text)
    else:
        length = len(text.encode("utf-16-le", "surrogatepass")) // 2
    assert info.length == length
    single, split = SINGLE_PART[info.encoding], PER_PART_WHEN_SPLIT[info.encoding]
    if not text:
        assert (info.segments, info.remaining) == (0, single)
        return
    assert (info.segments == 1) == (length <= single)
    assert info.per_segment == (single if info.segments == 1 else split)
    assert info.segments * info.per_segment >= length
    assert 0 <= info.remaining < info.per_segment or length == 0
    if info.segments > 1:
        # A pair (escape + code, or a surrogate pair) is never cut, so a part may
        # carry one unit less, never more than that.
        assert math.ceil(length / split) <= info.segments <= math.ceil(length / (split - 1))
        assert info.segments * split - info.remaining >= length


@QUICK
@given(SMS_TEXT)
def test_highlight_runs_give_the_text_back_and_mark_exactly_what_forces_ucs2(text):
    runs = highlight(text)
    assert "".join(run for run, _ in runs) == text
    assert all(run for run, _ in runs)
    assert all(a[1] != b[1] for a, b in itertools.pairwise(runs))
    for run, forces in runs:
        assert all((char not in GSM) == forces for char in run)


# --- The delivery status machine ---------------------------------------------------------

STATUSES = st.sampled_from(list(DeliveryStatus))


def apply(current: str, events) -> str:
    for status in events:
        if can_move(current, status):
            current = status
    return current


def model(start: str, events) -> str:
    """The rules of providers/status.py, said plainly."""
    sequence = [start, *events]
    finals = [i for i, status in enumerate(sequence) if status in FINAL_STATUSES]
    if finals:
        first = finals[0]
        if sequence[first] == DeliveryStatus.DELIVERED and DeliveryStatus.READ in sequence[first:]:
            return DeliveryStatus.READ
        return sequence[first]
    return max(sequence, key=lambda status: STATUS_RANK[status])


@PROPERTIES
@given(STATUSES, st.lists(STATUSES, max_size=12))
def test_statuses_end_where_the_plain_rules_say(start, events):
    assert apply(start, events) == model(start, events)


@PROPERTIES
@given(STATUSES, st.lists(STATUSES, max_size=12))
def test_statuses_only_climb_and_a_final_one_only_leaves_delivered_for_read(start, events):
    current, delivered = start, start == DeliveryStatus.DELIVERED
    for status in events:
        if can_move(current, status):
            assert STATUS_RANK[status] > STATUS_RANK[current]
            if is_final(current):
                assert (current, status) == (DeliveryStatus.DELIVERED, DeliveryStatus.READ)
            current = status
        delivered = delivered or current == DeliveryStatus.DELIVERED
    if is_final(start):
        assert current in FINAL_STATUSES
    if delivered:  # a late sent, or a failure, never overwrites delivered
        assert current in (DeliveryStatus.DELIVERED, DeliveryStatus.READ)


@PROPERTIES
@given(STATUSES, st.lists(STATUSES, max_size=12), st.data())
def test_replayed_and_duplicated_callbacks_change_nothing(start, events, data):
    once = apply(start, events)
    assert apply(once, events) == once  # the same batch again
    duplicated = [status for status in events for _ in range(data.draw(st.integers(1, 3)))]
    assert apply(start, duplicated) == once
    late = data.draw(st.lists(st.sampled_from(events), max_size=6)) if events else []
    assert apply(once, late) == once  # stragglers of the same batch, in any order


@QUICK
@given(st.lists(STATUSES, max_size=12), st.randoms(use_true_random=False))
def test_without_a_final_status_the_order_of_callbacks_does_not_matter(events, random):
    events = [status for status in events if status not in FINAL_STATUSES]
    shuffled = list(events)
    random.shuffle(shuffled)
    assert apply(DeliveryStatus.PENDING, shuffled) == apply(DeliveryStatus.PENDING, events)


def test_a_late_sent_never_overwrites_delivered_and_failures_are_final():
    assert not can_move(DeliveryStatus.DELIVERED, DeliveryStatus.SENT)
    for failure in FAILURE_STATUSES:
        assert all(not can_move(failure, status) for status in DeliveryStatus)


# The same rules through the status service, with the database: batches of gateway reports.
GATEWAY_STATUSES = [
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.READ,
    DeliveryStatus.UNDELIVERABLE,
    DeliveryStatus.EXPIRED,
    DeliveryStatus.REJECTED,
    DeliveryStatus.FAILED,
    DeliveryStatus.UNKNOWN,
]


def test_reports_in_batches_end_where_the_rules_say_and_replaying_them_changes_nothing(world):
    template = world["delivery"]
    started = timezone.now()
    made = iter(range(10**6))

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(st.sampled_from(GATEWAY_STATUSES), min_size=1, max_size=8), st.data())
    def run(statuses, data):
        n = next(made)
        message = Message.objects.create(
            operator=template.operator,
            campaign=template.campaign,
            client=template.message.client,
            recipient_key=f"fuzz:{n}",
            phone=template.message.phone,
        )
        delivery = Delivery.objects.create(
            operator=template.operator,
            message=message,
            campaign=template.campaign,
            channel=template.channel,
            account=template.account,
            idempotency_key=f"fuzz{n}",
            provider_message_id=f"F{n}",
            status=DeliveryStatus.SENT,
        )
        reports = [
            StatusEvent(
                status=status,
                provider_status=status,
                provider_message_id=f"F{n}",
                occurred_at=started + timedelta(seconds=i),
            )
            for i, status in enumerate(statuses)
        ]
        cuts = sorted(data.draw(st.sets(st.integers(1, len(reports)), max_size=3)) | {len(reports)})
        start = 0
        for cut in cuts:
            apply_status_events(
                account_id=delivery.account_id, events=reports[start:cut], source="callback"
            )
            start = cut
        delivery.refresh_from_db()
        assert delivery.status == model(DeliveryStatus.SENT, statuses)

        rows = (Delivery.objects.count(), DeliveryEvent.objects.count())
        replay = data.draw(st.permutations(reports)) + data.draw(
            st.lists(st.sampled_from(reports), max_size=4)
        )
        changed = apply_status_events(
            account_id=delivery.account_id, events=replay, source="callback"
        )
        delivery.refresh_from_db()
        assert (changed, delivery.status) == (0, model(DeliveryStatus.SENT, statuses))
        assert (Delivery.objects.count(), DeliveryEvent.objects.count()) == rows

    run()
