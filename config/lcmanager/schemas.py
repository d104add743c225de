"""Request and response contracts of the LCManager partner API, as plain data.

The source of truth is the service's own help pages (seeds 000 and 001), which
show the same class serialized by Json.NET and by the DataContract serializer:

- `Contract.fields` is in JSON order: the class's own members in declaration
  order, then the members inherited from the base request/response class
  (`Operator`, `Token`, `SiteCode`; `ErrorCode`, `Message`). That is the order
  the JSON samples show and the order `render_json` writes.
- XML order is the DataContract rule, which `Contract.xml_fields` derives: the
  base class's members first, then the class's own, each group sorted by
  ordinal name. Inherited members live in the base class's XML namespace.
- "integer" is a 64-bit integer (phones, 18-digit tokens and card numbers do not
  fit in 32 bits); "byte" is 0..255; "decimal" is .NET's decimal.
- Every field may be absent: the help pages mark none as required, so which
  ones a method needs is the business layer's decision, not the wire format's.
"""

from dataclasses import dataclass
from typing import Any

KINDS = ("string", "integer", "byte", "decimal", "boolean", "list")

DEFAULT_MAX_LENGTH = 4000
MAX_LIST_ITEMS = 10_000

XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
_DATACONTRACT = "http://schemas.datacontract.org/2004/07/"
ABSTRACTIONS_NAMESPACE = _DATACONTRACT + "LCManagerPartner.Implementation.Abstractions"
MARKETING_REQUEST_NAMESPACE = (
    _DATACONTRACT + "LCManagerPartner.Implementation.Request.MarketingRequest"
)
MARKETING_RESPONSE_NAMESPACE = (
    _DATACONTRACT + "LCManagerPartner.Implementation.Response.MarketingResponse"
)
MODELS_NAMESPACE = _DATACONTRACT + "LCManagerPartner.Models"


@dataclass(frozen=True)
class Field:
    """One member of a contract, named as on the wire."""

    name: str
    kind: str
    item: "Contract | None" = None  # the shape of each item, for kind "list"
    max_length: int = DEFAULT_MAX_LENGTH  # strings only
    inherited: bool = False  # declared on the base class: base namespace in XML
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: unknown kind {self.kind!r}")
        if (self.kind == "list") != (self.item is not None):
            raise ValueError(f"{self.name}: a list field needs an item contract, others none")


@dataclass(frozen=True)
class Contract:
    """A request or response class: its XML root name, namespaces and members."""

    root: str
    namespace: str
    fields: tuple[Field, ...]
    base_namespace: str | None = None  # namespace of the inherited members

    def __post_init__(self) -> None:
        if any(field.inherited for field in self.fields) and self.base_namespace is None:
            raise ValueError(f"{self.root}: inherited fields need a base_namespace")

    @property
    def xml_fields(self) -> tuple[Field, ...]:
        inherited = sorted((f for f in self.fields if f.inherited), key=lambda f: f.name)
        own = sorted((f for f in self.fields if not f.inherited), key=lambda f: f.name)
        return (*inherited, *own)

    def namespace_of(self, field: Field) -> str:
        if field.inherited:
            assert self.base_namespace is not None
            return self.base_namespace
        return self.namespace


def _operator() -> Field:
    return Field("Operator", "integer", inherited=True, description="Loyalty program operator id.")


def _token() -> Field:
    return Field(
        "Token", "integer", inherited=True, description="Token of the user making the request."
    )


def _site_code() -> Field:
    return Field(
        "SiteCode",
        "string",
        inherited=True,
        description="Unique code of the gift-certificate widget making the request.",
    )


SEND_MESSAGE_PROCESS_FILE = Contract(
    root="SendMessageProcessRequest.SendMessageProcessFile",
    namespace=MARKETING_REQUEST_NAMESPACE,
    fields=(
        Field("Id", "integer", description="File id."),
        Field("Url", "string", description="Where the file can be downloaded."),
        Field("Type", "string", description="File type."),
        Field("Name", "string", description="File name."),
        Field("LevelStep", "byte", description="Level step."),
    ),
)

SEND_MESSAGE_PROCESS_CARD_PHONE_CLIENT = Contract(
    root="SendMessageProcessRequest.SendMessageProcessCardPhoneClientList",
    namespace=MARKETING_REQUEST_NAMESPACE,
    fields=(
        Field("Id", "integer", description="Row id."),
        Field("Phone", "integer", description="Phone number, international digits."),
        Field("Client", "integer", description="Client id."),
        Field("Card", "integer", description="Card number."),
        Field("Bonus", "decimal", description="Bonus amount."),
    ),
)

SEND_MESSAGE_PROCESS_REQUEST = Contract(
    root="SendMessageProcessRequest",
    namespace=MARKETING_REQUEST_NAMESPACE,
    base_namespace=ABSTRACTIONS_NAMESPACE,
    fields=(
        Field("PosCode", "string", description="Point of sale code."),
        Field(
            "CommunicationType",
            "byte",
            description="Channel: 1 sms, 2 email, 3 push, 4 telegram, 5 whatsapp, 6 viber, 7 call code.",
        ),
        Field("Phone", "integer", description="Client's or user's phone, international digits."),
        Field("Email", "string", description="Client's or user's email."),
        Field("Subscriber", "integer", description="Subscriber id."),
        Field("ChatId", "integer", description="Group or channel id to send the message to."),
        Field("Client", "integer", description="Client id."),
        Field("User", "integer", description="User id."),
        Field("Person", "integer", description="Person id."),
        Field("Leads", "integer", description="Lead id."),
        Field(
            "Files", "list", item=SEND_MESSAGE_PROCESS_FILE, description="Files for the message."
        ),
        Field(
            "CardPhoneClientList",
            "list",
            item=SEND_MESSAGE_PROCESS_CARD_PHONE_CLIENT,
            description="Cards, phones or clients to build a marketing list from.",
        ),
        Field("TypeOpen", "string", description="Registration SMS flag (not used)."),
        Field("IdTypeOpen", "string", description="Registration SMS flag (not used)."),
        Field("MessageTemplate", "integer", description="Message template id."),
        Field("Title", "string", description="Message title."),
        # Long enough for an email body; SMS and messenger texts are far shorter.
        Field("TextMessage", "string", max_length=10_000, description="Message text."),
        _operator(),
        _token(),
        _site_code(),
    ),
)

SEND_MESSAGE_PROCESS_RESPONSE = Contract(
    root="SendMessageProcessResponse",
    namespace=MARKETING_RESPONSE_NAMESPACE,
    base_namespace=ABSTRACTIONS_NAMESPACE,
    fields=(
        Field("MessageId", "integer", description="Id of the message sent."),
        Field("ErrorCode", "integer", inherited=True, description="0 on success."),
        Field("Message", "string", inherited=True, description="What went wrong, if anything."),
    ),
)

CLIENT_UPDATE_COMMUNICATION_REQUEST = Contract(
    root="ClientUpdateCommunicationRequest",
    namespace=MODELS_NAMESPACE,
    base_namespace=ABSTRACTIONS_NAMESPACE,
    fields=(
        Field("Client", "integer", description="Participant (client) id."),
        Field("AllowSms", "boolean", description="Permission to receive SMS."),
        Field("AllowEmail", "boolean", description="Permission to receive email."),
        Field("AllowPush", "boolean", description="Permission to receive push notifications."),
        Field(
            "AllowEmailOnlineCheque",
            "boolean",
            description="Permission to send online cheques by email.",
        ),
        _operator(),
        _token(),
        _site_code(),
    ),
)

# Unlike the marketing response, this class is not derived from the shared base:
# the seed shows ErrorCode and Message in the Models namespace.
CLIENT_UPDATE_COMMUNICATION_RESPONSE = Contract(
    root="ClientUpdateCommunicationResponse",
    namespace=MODELS_NAMESPACE,
    fields=(
        Field("ErrorCode", "integer", description="0 on success."),
        Field("Message", "string", description="What went wrong, if anything."),
    ),
)


def openapi_schema(contract: Contract) -> dict[str, Any]:
    """An OpenAPI 3.0 schema object for the contract (for drf-spectacular raw schemas)."""
    properties: dict[str, Any] = {}
    for field in contract.fields:
        schema = _field_schema(field)
        if field.inherited:
            schema["xml"] = {"namespace": contract.namespace_of(field)}
        properties[field.name] = schema
    return {
        "type": "object",
        "properties": properties,
        "xml": {"name": contract.root, "namespace": contract.namespace},
    }


def _field_schema(field: Field) -> dict[str, Any]:
    schema: dict[str, Any]
    if field.kind == "string":
        schema = {"type": "string", "maxLength": field.max_length}
    elif field.kind == "integer":
        schema = {"type": "integer", "format": "int64"}
    elif field.kind == "byte":
        schema = {"type": "integer", "minimum": 0, "maximum": 255}
    elif field.kind == "decimal":
        schema = {"type": "number", "format": "decimal"}
    elif field.kind == "boolean":
        schema = {"type": "boolean"}
    else:
        assert field.item is not None
        schema = {
            "type": "array",
            "items": openapi_schema(field.item),
            "maxItems": MAX_LIST_ITEMS,
            "xml": {"wrapped": True},
        }
    schema["nullable"] = True
    if field.description:
        schema["description"] = field.description
    return schema
